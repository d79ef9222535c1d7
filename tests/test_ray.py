"""The Ray executor (`executor: ray`): the same plan on a local Ray cluster of 2 CPUs, started
inside the test run by the build itself.

- the example zine built on Ray stores exactly the images a local build stores (bit for bit);
- a worker that dies mid-build (the test hook UNMAKE_TEST_RAY_DIE_AFTER) loses no finished image,
  its batch runs again on a fresh actor, and the build completes;
- a bad `ray:` section is one clear line.

Skipped with a reason where the `ray` extra is not installed; `.ci/run` installs it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import Zine, example_zine, generate, make_zine, sha256

from generator.store import Store

pytest.importorskip("ray", reason="the Ray extra is not installed: pip install 'unmake[ray]'")

REPO = Path(__file__).resolve().parents[1]
RAY = {"address": "local", "num_cpus": 2}


def images(zine: Zine) -> dict[str, str]:
    """The key of each job a model made an image in (generate, trail, iterate) -> the sha256
    of its stored PNG."""
    found = {}
    for key in zine.records():
        record = zine.record(key)
        if record["type"].startswith(("generate.", "iterate.")) and "image" in record["files"]:
            found[key] = sha256(zine.blob(record))
    return found


def example(root: Path, env: dict[str, str], **plugin: object) -> Zine:
    """The example zine, readied as README command 1 readies it, with `plugin` added to its
    plugin section as an author would write it."""
    zine = example_zine(root, env)
    if plugin:
        data = yaml.safe_load((root / "mkdocs.yml").read_text("utf-8"))
        for entry in data["plugins"]:
            if isinstance(entry, dict) and "unmake" in entry:
                entry["unmake"].update(plugin)
        (root / "mkdocs.yml").write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
    return zine


@pytest.mark.slow
def test_the_example_zine_on_ray_stores_the_same_images(built: Zine, tmp_path: Path) -> None:
    local = example(tmp_path / "local", built.env)
    run = local.unmake("build", timeout=900)
    assert run.rc == 0, run.output
    ray = example(tmp_path / "ray", built.env, executor="ray", ray=RAY)
    run = ray.unmake("build", timeout=900)
    assert run.rc == 0, run.output
    assert re.search(r"unmake: ray: 2 actor\(s\) \(1 CPU each\) on a local cluster", run.output)
    assert "0 failed" in run.output
    # every job of the plan ran on the actors and was stored by the build (the keys of dataset
    # jobs differ between the two copies: a dataset's fingerprint includes its files' mtimes)
    assert len(ray.records()) == len(local.records())
    made = images(ray)
    assert made and made == images(local)  # not one pixel differs
    assert Store(ray.store).verify() == []
    assert (ray.site / "index.html").is_file()


@pytest.mark.slow
def test_a_worker_that_dies_loses_only_its_batch(built: Zine, tmp_path: Path) -> None:
    pages = {"index.md": "# Dies\n\n" + generate(
        id="grid", prompt="a {red|green|blue} {cat|dog}", seeds=[1, 2, 3, 4]) + "\n"}
    local = make_zine(tmp_path / "local", pages, built.env)
    assert local.unmake("build").rc == 0
    z = make_zine(tmp_path / "ray", pages, built.env, plugin={"executor": "ray", "ray": RAY})
    # the first actor to start its third batch exits at once, two batches made and stored
    run = z.unmake("build", env={**built.env, "UNMAKE_TEST_RAY_DIE_AFTER": "2"}, timeout=600)
    assert run.rc == 0, run.output
    assert "an actor died" in run.output  # the worker's death is told, in one line of ours
    assert "ran 24 job(s)" in run.output and "0 failed" in run.output
    # and nothing else of Ray's reaches the terminal: every line is mkdocs' or unmake's
    quiet = re.compile(r"(INFO|WARNING) +-  |unmake: +\d+%")
    assert [line for line in run.stderr.splitlines() if line.strip() and not quiet.match(line)] \
        == []
    assert images(z) == images(local)  # 24 images, none lost, none changed
    assert Store(z.store).verify() == []
    again = z.unmake("build", "--frozen")
    assert again.rc == 0, again.output


@pytest.mark.slow
def test_a_worker_error_is_still_told(built: Zine, tmp_path: Path) -> None:
    """Ray's own lines are quiet, a job's error on an actor is not: `cpu_offload` fails on an
    actor without CUDA, and the build says why, naming the config key, for each job."""
    z = make_zine(tmp_path / "ray", {"index.md": generate(prompt="a cat", seeds=[1, 2])},
                  built.env, plugin={"executor": "ray", "ray": RAY, "cpu_offload": "model"})
    run = z.unmake("build", timeout=600)
    assert run.rc != 0
    told = [line for line in run.output.splitlines()
            if "ConfigError: plugins.unmake.cpu_offload: 'model' needs a CUDA device" in line]
    assert len(told) == 2, run.output
    assert "Token authentication" not in run.output


@pytest.mark.parametrize(("ray", "says"), [
    ({"adress": "local"}, "ray: unknown key(s) adress; expected address, gpus_per_worker"),
    ({"actors": 0}, "ray.actors: expected a whole number of at least 1, got 0"),
    ({"gpus_per_worker": "one"}, "ray.gpus_per_worker: expected a number above 0, got 'one'"),
])
def test_a_bad_ray_section_is_one_line(zine, ray: dict[str, object], says: str) -> None:
    z = zine({"index.md": generate(prompt="a cat", seeds=[1])},
             plugin={"executor": "ray", "ray": ray})
    run = z.unmake("build")
    assert run.rc != 0
    assert says in run.output
    assert "Traceback" not in run.output
    assert not z.records()
