"""End-to-end builds of the `generate` path: real diffusers (tiny model, CPU), real mkdocs.

Most tests start from the shared `built` zine (conftest.py), copied when they change anything.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
from importlib import metadata
from pathlib import Path

import pytest
from conftest import GRID_SEEDS, HOSTILE, Elements, Zine, example_zine, generate, sha256
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FOXES = ("a photo of a red fox", "a photo of a blue fox")  # what GRID_PROMPT expands to


def by_prompt_seed(zine: Zine) -> dict[tuple[str, int], dict]:
    records = (zine.record(key) for key in zine.records())
    return {(r["inputs"]["prompt"], r["inputs"]["seed"]): r for r in records}


def error_lines(run) -> list[str]:
    return run.lines("ERROR")


# -- a build and its page ----------------------------------------------------------------------
def test_grid_page_has_labels_images_provenance_and_sheet(built: Zine) -> None:
    html = built.html("index.md")
    page = Elements(html)
    assert [f["id"] for f in page.all("figure", "unmake-figure")] == ["foxes"]
    text = page.text()
    assert "Figure 1." in text
    assert "Two foxes, two seeds: only the colour changes." in text
    # rows are the prompt variants (shortened to what differs), columns the seeds
    assert re.findall(r'<th scope="row">(.*?)</th>', html) == ["red", "blue"]
    assert re.findall(r'<th scope="col"[^>]*>(.*?)</th>', html) == [
        "prompt \\ seed", "seed 3", "seed 5"]

    records = by_prompt_seed(built)
    images = [a for a in page.all("img") if "assets/unmake/img/" in a["src"]]
    expected_alts = {f"{p} (seed {s})" for p in FOXES for s in GRID_SEEDS}
    assert {img["alt"] for img in images} == expected_alts
    assert len(images) == 4
    for img in images:
        assert img["loading"] == "lazy"
        assert img["src"].endswith(".webp")
        with Image.open(built.site_file("index.md", img["src"])) as im:
            assert im.format == "WEBP"
            assert im.size == (32, 32)
    # each image opens in the lightbox, which shows the web copy
    anchors = page.all("a", "glightbox")
    assert [a["href"] for a in anchors] == [img["src"] for img in images]
    assert all(a["data-gallery"] == "foxes" for a in anchors)

    # one provenance panel per image, naming everything that made it
    panels = re.findall(r'<details class="unmake-prov"[^>]*>(.*?)</details>', html, re.S)
    assert len(panels) == 4
    for panel in panels:
        short_key = re.search(r"<dt>record</dt><dd><code>([0-9a-f]{16})</code>", panel)[1]
        (record,) = [r for r in records.values() if r["key"].startswith(short_key)]
        inputs = record["inputs"]
        assert f"<dd>{inputs['prompt']}</dd>" in panel
        assert f"<dt>seed</dt><dd>{inputs['seed']}</dd>" in panel
        assert inputs["model"].startswith("tiny:")
        assert inputs["model"] in panel
        assert f"diffusers {metadata.version('diffusers')}" in panel
        assert f"torch {metadata.version('torch')}" in panel
        png = re.search(r'<a href="([^"]+\.png)" download[^>]*>original PNG</a>', panel)[1]
        path = built.site_file("index.md", png)
        assert sha256(path) == record["files"]["image"]["sha256"]
        with Image.open(path) as im:
            assert im.format == "PNG"

    sheets = page.all("a", "unmake-sheet")
    assert len(sheets) == 1
    with Image.open(built.site_file("index.md", sheets[0]["href"])) as im:
        im.load()
        assert im.format == "PNG"
        assert im.width > 2 * 32 and im.height > 2 * 32


def test_png_carries_a1111_parameters(built: Zine) -> None:
    from generator import __version__

    records = by_prompt_seed(built)
    assert records
    for (prompt, seed), record in records.items():
        with Image.open(built.blob(record)) as im:
            parameters = im.info["parameters"]
        assert parameters.splitlines()[0] == prompt
        assert "Steps: 2, Sampler: PLMS," in parameters  # the tiny model's PNDM, in A1111's words
        assert f"Seed: {seed}," in parameters
        assert "Size: 32x32," in parameters
        # a diffusers folder has no A1111 model hash: unmake's fingerprint, quoted (a colon)
        assert "Model hash" not in parameters
        assert f'Model: default, Model fingerprint: "{record["inputs"]["model"]}"' in parameters
        assert parameters.endswith(f", Version: unmake {__version__}")
        assert parameters == record["data"]["parameters"]


def test_identical_jobs_on_two_pages_run_once(built: Zine) -> None:
    # index.md and again.md hold the same grid (4 images); hostile.md 2 more
    records = by_prompt_seed(built)
    assert len(built.records()) == len(records) == 6
    assert {p for p, _ in records} == {*FOXES, *HOSTILE}
    srcs = {page: [a["src"].rsplit("/", 1)[1] for a in Elements(built.html(page)).all("img")
                   if "assets/unmake/img/" in a["src"]]
            for page in ("index.md", "again.md")}
    assert srcs["index.md"] == srcs["again.md"]
    assert len(srcs["index.md"]) == 4


def test_hostile_prompts_are_escaped(built: Zine) -> None:
    html = built.html("hostile.md")
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    page = Elements(html)
    assert "alert(" not in "\n".join(page.scripts)
    assert not [a for a in page.all("img") if a.get("src") == "x" or "onerror" in a]
    text = page.text()
    for prompt in HOSTILE:
        assert prompt in text  # shown, as text
        (img,) = [a for a in page.all("img") if a.get("alt") == f"{prompt} (seed 0)"]
        (anchor,) = [a for a in page.all("a", "glightbox") if a["href"] == img["src"]]
        # the lightbox inserts its title as HTML, so the attribute holds it escaped once more
        assert anchor["data-title"].startswith(("&lt;script&gt;", "&#34;&gt;&lt;img"))


# -- rebuilding --------------------------------------------------------------------------------
def test_second_build_runs_nothing_and_never_imports_torch(built: Zine, tmp_path: Path) -> None:
    zine = built.copy(tmp_path / "z")
    before = zine.stamps()
    run = zine.unmake_noting_torch("build")
    assert run.rc == 0, run.output
    assert "nothing to run (6 jobs: 6 cached, 0 to run)" in run.output
    assert run.stdout.splitlines()[-1] == "TORCH False"
    assert zine.stamps() == before
    assert len(Elements(zine.html("index.md")).all("a", "glightbox")) == 4


def test_editing_one_prompt_variant_runs_only_its_images(built: Zine, tmp_path: Path) -> None:
    zine = built.copy(tmp_path / "z")
    before = zine.stamps()
    zine.write("index.md", zine.read("index.md").replace("{red|blue}", "{red|green}"))
    run = zine.unmake("build")
    assert run.rc == 0, run.output
    assert "8 jobs: 6 cached, 2 to run" in run.output
    after = zine.stamps()
    new = set(after) - set(before)
    assert {(zine.record(k)["inputs"]["prompt"], zine.record(k)["inputs"]["seed"])
            for k in new} == {("a photo of a green fox", s) for s in GRID_SEEDS}
    assert {k: after[k] for k in before} == before  # nothing old was touched
    assert re.findall(r'<th scope="row">(.*?)</th>', zine.html("index.md")) == ["red", "green"]


def test_force_regenerates_identical_images(built: Zine, tmp_path: Path) -> None:
    zine = built.copy(tmp_path / "z")
    before = zine.stamps()
    images = {k: zine.record(k)["files"]["image"]["sha256"] for k in before}
    run = zine.unmake("build", "--force")
    assert run.rc == 0, run.output
    assert "6 jobs: 0 cached, 6 to run" in run.output
    after = zine.stamps()
    assert set(after) == set(before)
    assert all(after[k] != before[k] for k in before)  # every record written anew
    assert {k: zine.record(k)["files"]["image"]["sha256"] for k in after} == images


def test_kill_during_generation_then_build_again(built: Zine, zine) -> None:
    # (`built` has written the tiny model, so the kill lands in generation, not in writing it)
    # 8 images in batches of 2, each stored as it finishes; execute.py's test hook kills the
    # build with SIGKILL right after the third is stored: in the middle of the second batch,
    # whose other image is made but not stored, and whose claims (locks) are left behind
    z = zine({"index.md": "# Many\n\n" + generate(
        prompt="a {small|large} house at {dawn|night}", seeds=[1, 2], steps=3)},
        plugin={"batch_size": 2})
    killed = z.unmake("build", env={"UNMAKE_TEST_KILL_AFTER": "3"})
    assert killed.rc == -signal.SIGKILL, killed.output
    done = z.stamps()
    created = {k: z.record(k)["created"] for k in done}
    assert len(done) == 3
    assert list((z.store / "locks").glob("*.lock"))  # stale: their holder is dead

    run = z.unmake("build")
    assert run.rc == 0, run.output
    assert "8 jobs: 3 cached, 5 to run" in run.output
    assert "ran 5 job(s)" in run.output  # none waits for the dead build
    after = z.stamps()
    assert len(after) == 8
    assert not list((z.store / "locks").glob("*.lock"))
    # finished images were not made twice
    assert {k: after[k] for k in done} == done
    assert {k: z.record(k)["created"] for k in done} == created
    for key in after:
        record = z.record(key)
        blob = z.blob(record)
        assert sha256(blob) == record["files"]["image"]["sha256"]
        with Image.open(blob) as im:
            im.load()
            assert im.size == (32, 32)
    for blob in (z.store / "blobs").glob("*/*.png"):  # blobs of unrecorded images too
        assert sha256(blob) == blob.stem
        with Image.open(blob) as im:
            im.load()
    verify = z.unmake("verify")
    assert verify.rc == 0, verify.output
    assert "8 records, 0 problem(s)" in verify.output


# -- author errors -----------------------------------------------------------------------------
BAD = {
    "yaml": ("prompt: a fox: b\nseeds: 2\n", "prompt:", "YAML error: mapping values"),
    "unknown key": ("prompt: a fox\npromt: a fox\n", "promt:",
                    "'promt' is not a known key"),
    "steps": ("prompt: a fox\nsteps: -3\n", "steps:", "'steps' must be 1–150, got -3"),
    "model": ("prompt: a fox\nmodel: nosuch\n", "model:", "'model' 'nosuch' not found"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_directive_is_one_error_line(zine, case: str) -> None:
    body, line_with, message = BAD[case]
    z = zine({"index.md": f"# Bad\n\nSome prose.\n\n```generate\n{body}```\n"})
    run = z.unmake("build")
    assert run.rc != 0
    assert "Traceback" not in run.output
    (line,) = error_lines(run)
    where = f"docs/index.md:{z.line_of('index.md', line_with)}: generate: "
    assert line.startswith(f"ERROR   -  {where}"), line
    assert message in line
    assert not (z.store / "records").exists()


# -- frozen builds -----------------------------------------------------------------------------
def test_frozen_build_lists_every_missing_image(built: Zine, tmp_path: Path) -> None:
    zine = built.copy(tmp_path / "z")
    before = zine.stamps()
    zine.write("new.md", "# New\n\n" + generate(prompt="an {owl|eel}", seeds=[1])
               + "\nMore prose.\n\n" + generate(prompt="a heron", seeds=[1, 2]))
    run = zine.unmake_noting_torch("build", "--frozen")
    assert run.rc != 0
    assert "Traceback" not in run.output
    assert "TORCH False" in run.stdout
    assert "4 of 10 results are not in the store" in run.output
    first = zine.line_of("new.md", "```generate", 0)
    second = zine.line_of("new.md", "```generate", 1)
    for where, prompt, seed in [(first, "an owl", 1), (first, "an eel", 1),
                                (second, "a heron", 1), (second, "a heron", 2)]:
        assert re.search(rf"docs/new\.md:{where}: generate\.image '{prompt}' seed {seed},",
                         run.output), (where, prompt, run.output)
    assert zine.stamps() == before


def test_frozen_build_with_everything_stored(built: Zine, tmp_path: Path) -> None:
    zine = built.copy(tmp_path / "z")
    shutil.rmtree(zine.site)
    run = zine.unmake_noting_torch("build", "--frozen")
    assert run.rc == 0, run.output
    assert run.stdout.splitlines()[-1] == "TORCH False"
    assert len(Elements(zine.html("index.md")).all("a", "glightbox")) == 4


# -- failures at run time ----------------------------------------------------------------------
# Three ways a job fails while others go on. A broken model is real: a diffusers folder whose UNet
# weights are garbage. A scheduler that cannot load is real: a model folder whose scheduler config
# asks for two sigma schedules at once, which Euler refuses and PNDM (which has none) ignores. One
# prompt failing inside a batch cannot be provoked for real on a CPU (the real cause is running out
# of GPU memory), so the driver wraps the runner's batch call to raise for that prompt only.
FLAKY_DRIVER = """\
import sys

from generator.backends import diffusion as backend

real = backend.generate_batch


def flaky(pipe, jobs):
    if any("FAIL-ME" in job.inputs["prompt"] for job in jobs):
        raise RuntimeError("simulated: CUDA out of memory for FAIL-ME")
    return real(pipe, jobs)


backend.generate_batch = flaky
from generator.cli import main

sys.exit(main(["build"]))
"""


def broken_model(built: Zine, dest: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from generator.models import tiny_ref

    monkeypatch.setenv("UNMAKE_CACHE", built.env["UNMAKE_CACHE"])
    shutil.copytree(tiny_ref().path, dest)  # the tiny model, written by the `built` build
    (dest / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00garbage" * 64)
    return dest


def odd_scheduler_model(built: Zine, dest: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny model, with a scheduler config that Euler refuses to load and PNDM loads."""
    from generator.models import tiny_ref

    monkeypatch.setenv("UNMAKE_CACHE", built.env["UNMAKE_CACHE"])
    shutil.copytree(tiny_ref().path, dest)
    config = dest / "scheduler" / "scheduler_config.json"
    settings = json.loads(config.read_text("utf-8"))
    assert settings["_class_name"] == "PNDMScheduler"
    config.write_text(json.dumps({**settings, "use_karras_sigmas": True,
                                  "use_exponential_sigmas": True}), "utf-8")
    return dest


def test_failing_jobs_fail_alone(built: Zine, zine, monkeypatch: pytest.MonkeyPatch) -> None:
    z = zine({"index.md": "# Failures\n\n"
              + generate(id="one", prompt=["a calm lake", "FAIL-ME a storm", "a quiet road"],
                         seeds=[1])
              + "\n\n" + generate(id="broken", prompt="a broken model", seeds=[1, 2],
                                  model="broken")
              + "\n\n" + generate(id="schedulers", prompt="a lighthouse", seeds=[1],
                                  model="odd", sweep={"scheduler": ["euler", "pndm"]})},
             models={"broken": "broken-model", "odd": "odd-model"})
    broken_model(built, z.root / "broken-model", monkeypatch)
    odd_scheduler_model(built, z.root / "odd-model", monkeypatch)
    (z.root / "flaky_build.py").write_text(FLAKY_DRIVER, "utf-8")
    run = z.python("flaky_build.py")
    assert run.rc != 0
    assert "Traceback" not in run.output
    first, second, third = (z.line_of("index.md", "```generate", i) for i in range(3))
    assert ("4 job(s) failed; site/ was left as it was; this build, with a failure box "
            "in each failed figure, is in .unmake/failed-site/") in run.output
    assert not z.site.exists()  # there was no site before: there is none now
    assert f"docs/index.md:{first}: RuntimeError: simulated: CUDA out of memory" in run.output
    assert len(re.findall(rf"docs/index\.md:{second}: \w+Error", run.output)) == 2

    failed_site = z.store / "failed-site"
    html = (failed_site / "index.html").read_text("utf-8")
    one, rest = html.split('id="broken"')
    broken, schedulers = rest.split('id="schedulers"')
    # the failing prompt's cell shows why; the rest of its batch is there
    page = Elements(one)
    assert {a["alt"] for a in page.all("img")} == {"a calm lake (seed 1)",
                                                    "a quiet road (seed 1)"}
    for img in page.all("img"):
        assert (failed_site / img["src"]).is_file()
    assert one.count('class="unmake-failure') == 1
    assert "simulated: CUDA out of memory for FAIL-ME" in one
    # a model that will not load fails its own images only
    assert broken.count('class="unmake-failure') == 2
    assert "<img" not in broken
    # a scheduler that will not load fails its own column only
    assert schedulers.count('class="unmake-failure') == 1
    assert len(Elements(schedulers).all("img")) == 1
    assert re.search(rf"docs/index\.md:{third}: ValueError: Only one of `config\.use_beta_sigmas`"
                     ", `config.use_exponential_sigmas`, `config.use_karras_sigmas` can be used",
                     run.output)
    assert "Only one of" in schedulers
    assert len(z.records()) == 3
    # failures are not stored: the next build tries them again
    plan = z.unmake_noting_torch("plan")
    assert "7 jobs: 3 cached, 4 to run" in plan.output


# -- plan, imports, models ---------------------------------------------------------------------
def test_plan_counts_by_model_and_loads_nothing(built: Zine, tmp_path: Path) -> None:
    zine = built.copy(tmp_path / "z")
    config = zine.root / "mkdocs.yml"
    config.write_text(config.read_text("utf-8").replace("default: tiny",
                                                        "default: tiny\n      other: tiny"))
    zine.write("new.md", "# New\n\n" + generate(prompt="an owl", seeds=[1, 2])
               + "\n" + generate(prompt="an owl", seeds=[1], model="other"))
    run = zine.unmake_noting_torch("plan", "-v")
    assert run.rc == 0, run.output
    assert run.stdout.splitlines()[-1] == "TORCH False"
    assert "unmake plan: 8 jobs: 6 cached, 2 to run" in run.stdout
    # the `other` alias is the same model: its owl with seed 1 is the default alias's job
    assert "generate.image [model default]: 6 cached, 2 to run" in run.stdout
    line = zine.line_of("new.md", "```generate", 0)
    assert f"docs/new.md:{line}, docs/new.md:" in run.stdout  # asked for twice, runs once
    assert f"docs/new.md:{line}: generate.image 'an owl' seed 2, 2 steps, 32×32" in run.stdout


def test_front_ends_do_not_import_torch(unmake_env: dict[str, str]) -> None:
    code = ("import sys, generator.plugin, generator.cli, generator.render, generator.kinds\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'diffusers', 'transformers', 'open_clip')))")
    run = Zine(REPO, unmake_env).python("-c", code)
    assert run.rc == 0, run.output
    assert run.stdout.strip() == "[]"


def test_model_alias_overrides(built: Zine, tmp_path: Path) -> None:
    zine = built.copy(tmp_path / "z")
    # an alias pointed at a folder that is not there, from the environment
    missing = zine.root / "no-such-model"
    run = zine.unmake("build", env={"UNMAKE_MODEL_DEFAULT": "no-such-model"})
    assert run.rc != 0
    assert "Traceback" not in run.output
    (line,) = error_lines(run)
    assert re.search(r"docs/\w+\.md:\d+: generate: 'model' alias 'default' -> 'no-such-model' "
                     rf"not found; looked in: folder {re.escape(str(missing))}\.", line), line

    # ... and at a repo id that is not in the Hugging Face cache, from the command line
    hub = Path(zine.env["HF_HUB_CACHE"]) / "models--nobody--nothing"
    run = zine.unmake("build", "--model", "default=nobody/nothing")
    assert run.rc != 0
    assert "Traceback" not in run.output
    (line,) = error_lines(run)
    assert "alias 'default' -> 'nobody/nothing' not found" in line
    assert f"Hugging Face cache {hub}" in line

    # the config points `default` nowhere; the environment or --model put it back on tiny, whose
    # images are all stored, and --model wins over the environment
    config = zine.root / "mkdocs.yml"
    config.write_text(config.read_text("utf-8").replace("default: tiny", "default: ./gone"))
    assert "alias 'default' -> './gone' not found" in zine.unmake("plan").output
    run = zine.unmake("plan", env={"UNMAKE_MODEL_DEFAULT": "tiny"})
    assert run.rc == 0, run.output
    assert "6 jobs: 6 cached, 0 to run" in run.stdout
    run = zine.unmake_noting_torch("build", "--frozen", "--model", "default=tiny",
                                          env={"UNMAKE_MODEL_DEFAULT": "./gone"})
    assert run.rc == 0, run.output
    assert "TORCH False" in run.stdout


# -- the example zine in the repository --------------------------------------------------------
@pytest.mark.slow
def test_example_zine_builds_strict(unmake_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "example"
    zine = example_zine(root, unmake_env)
    run = zine.python("-m", "mkdocs", "build", "--strict", timeout=900)
    assert run.rc == 0, run.output
    assert "WARNING" not in run.output
    assert "Traceback" not in run.output
    pages = sorted((root / "site").rglob("*.html"))
    assert any("unmake-figure" in p.read_text("utf-8") for p in pages)
    for path in pages:
        html = path.read_text("utf-8")
        assert "unmake-failure" not in html, path
        assert "unmake-missing" not in html, path
        for url in re.findall(r'(?:src|href)="([^"]*assets/unmake/[^"]+)"', html):
            # 404.html links from the site root, every other page relative to itself
            base = root / "site" if url.startswith("/") else path.parent
            assert (base / url.lstrip("/")).is_file(), (path, url)
