"""A new user's first hour, end to end: sweeps over every parameter (models included), failed
builds that leave site/ alone, one-line errors with file:line, no machine paths in the site,
figure anchors, YAML and fence typos, `unmake new`, and a quiet build of the example zine.

Builds are shared where they can be: one zine holds every sweep (built once per module), and the
failed-build tests start from copies of conftest's `built` zine, whose results are all stored.
"""

from __future__ import annotations

import gzip
import itertools
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import PY, TINY, Elements, Run, Zine, example_zine, generate, make_zine, sha256
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a lighthouse at dusk"


# -- helpers -----------------------------------------------------------------------------------
def fence(body: str, kind: str = "generate") -> str:
    return f"```{kind}\n{body}```\n"


def tiny_folder(built: Zine) -> Path:
    """The built-in tiny model as a diffusers folder (the `built` build has written it)."""
    from generator.models import tiny_ref

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNMAKE_CACHE", built.env["UNMAKE_CACHE"])
        return Path(tiny_ref().path)


def reweighted_copy(source: Path, dest: Path, seed: int) -> Path:
    """A copy of a model folder whose UNet weights carry seeded noise: another real model, with
    another fingerprint, that makes other pictures."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    shutil.copytree(source, dest)
    weights = dest / "unet" / "diffusion_pytorch_model.safetensors"
    with safe_open(str(weights), "np") as fh:
        metadata = fh.metadata()
    rng = np.random.default_rng(seed)
    tensors = {name: (value + rng.normal(0.0, 0.05, value.shape)).astype(value.dtype)
               for name, value in load_file(weights).items()}
    save_file(tensors, weights, metadata=metadata)
    return dest


def without_vae_weights(source: Path, dest: Path) -> Path:
    """A model folder that fails to load, with an error naming the folder's absolute path."""
    shutil.copytree(source, dest)
    for path in (dest / "vae").glob("*.safetensors"):
        path.unlink()
    return dest


def configure(zine: Zine, **extra: Any) -> None:
    """Add top-level keys to the zine's mkdocs.yml, and `models=` to the plugin's aliases."""
    path = zine.root / "mkdocs.yml"
    config = yaml.safe_load(path.read_text("utf-8"))
    unmake = next(p["unmake"] for p in config["plugins"] if isinstance(p, dict) and "unmake" in p)
    unmake["models"].update(extra.pop("models", {}))
    config.update(extra)
    path.write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")


def site_hashes(site: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under a site folder."""
    return {p.relative_to(site).as_posix(): sha256(p) for p in sorted(site.rglob("*"))
            if p.is_file()}


def leftovers(zine: Zine) -> list[str]:
    """Folders a build made beside site/ and did not clean up."""
    return sorted(p.name for p in zine.root.iterdir() if p.name.startswith(".site.unmake"))


def figure_html(html: str, figure_id: str) -> str:
    match = re.search(rf'<figure class="unmake-figure[^"]*" id="{figure_id}">(.*?)</figure>',
                      html, re.S)
    assert match, f"no figure {figure_id!r}"
    return match[1]


def cells(zine: Zine, html: str) -> list[dict[str, Any]]:
    """Each image cell of a figure, in page order: its record, <img> and decoded pixels."""
    records = {key[:16]: zine.record(key) for key in zine.records()}
    keys = re.findall(r"<dt>record</dt><dd><code>([0-9a-f]{16})</code>", html)
    images = Elements(html).all("img")
    assert len(keys) == len(images)
    out = []
    for key, img in zip(keys, images, strict=True):
        record = records[key]
        with Image.open(zine.blob(record)) as im:
            pixels = im.convert("RGB").tobytes()
            size = im.size
        out.append({"record": record, "inputs": record["inputs"], "img": img, "pixels": pixels,
                    "size": size})
    return out


def headers(html: str) -> tuple[list[str], list[str]]:
    """(column headers without the corner, row headers) of a figure's grid(s)."""
    cols = re.findall(r'<th scope="col"[^>]*>(.*?)</th>', html)
    rows = re.findall(r'<th scope="row">(.*?)</th>', html)
    return cols[1:], rows


# -- one zine, every sweep ---------------------------------------------------------------------
# id -> the sweep, and keys the figure sets besides TINY (a swept key is not also set)
SWEEPS: dict[str, tuple[dict[str, list[Any]], dict[str, Any]]] = {
    "model-folders": ({"model": ["inside", "outside"]}, {"seeds": [1, 2]}),
    "model-default": ({"model": ["default", "inside"]}, {}),
    "steps-sweep": ({"steps": [1, 2]}, {}),
    "guidance-sweep": ({"guidance": [1.0, 7.5]}, {}),
    "size-sweep": ({"size": [32, [40, 32]]}, {}),
    "width-sweep": ({"width": [32, 40]}, {"height": 32}),
    "height-sweep": ({"height": [32, 40]}, {"width": 32}),
    "scheduler-sweep": ({"scheduler": ["ddim", "euler"]}, {}),
    "negative-sweep": ({"negative": ["blurry", "a red sky"]}, {}),
    "model-by-guidance": ({"model": ["default", "outside"], "guidance": [1.0, 7.5]},
                          {"grid": {"rows": "model", "cols": "guidance"}}),
    "size-by-scheduler": ({"size": [32, 40], "scheduler": ["ddim", "euler"]}, {}),
}
# page -> the figures on it
PAGES = {
    "index.md": ("steps-sweep",),
    "params.md": ("guidance-sweep", "size-sweep", "width-sweep", "height-sweep",
                  "scheduler-sweep", "negative-sweep", "size-by-scheduler"),
    "models.md": ("model-folders", "model-default", "model-by-guidance"),
}


def sweep_figure(figure_id: str) -> str:
    sweep, extra = SWEEPS[figure_id]
    body: dict[str, Any] = {"id": figure_id, "prompt": PROMPT, "seeds": [1], **TINY, **extra,
                            "sweep": sweep}
    for name in sweep:
        if name in ("size", "width", "height"):
            body.pop("size")
        body.pop(name, None)
    return "```generate\n" + yaml.safe_dump(body, sort_keys=False, width=1000) + "```\n"


def swept_value(cell: dict[str, Any], name: str) -> Any:
    """The value of a swept parameter that made a cell's image (a model by its alias, as the
    image's alt text gives it)."""
    inputs = cell["inputs"]
    if name == "size":
        return (inputs["width"], inputs["height"])
    if name == "model":
        return re.search(r", model ([^,)]+)", cell["img"]["alt"])[1]
    return inputs[name]


def normalised(name: str, value: Any) -> Any:
    """A value as the directive wrote it -> as swept_value reads it back."""
    if name == "size":
        return tuple(value) if isinstance(value, list) else (value, value)
    return float(value) if name == "guidance" else value


def label(name: str, value: Any) -> str:
    """The grid header of a (normalised) value."""
    if name == "size":
        return f"{value[0]}×{value[1]}"
    return f"{name} {value}" if name in ("steps", "guidance") else str(value)


@pytest.fixture(scope="module")
def sweeps(built: Zine, tmp_path_factory: pytest.TempPathFactory,
           unmake_env: dict[str, str]) -> tuple[Zine, Run, Path]:
    """Every sweep on three pages, built once with --strict. Two real model folders: `inside`
    (./models/x, a copy of the tiny model) and `outside` (an absolute path outside the project,
    the tiny model with other UNet weights)."""
    base = tmp_path_factory.mktemp("sweeps")
    root = base / "zine"
    tiny = tiny_folder(built)
    shutil.copytree(tiny, root / "models" / "x")
    outside = reweighted_copy(tiny, base / "elsewhere" / "mymodel", seed=1)
    figures = {page: "\n".join(sweep_figure(i) for i in ids) for page, ids in PAGES.items()}
    pages = {
        "index.md": ("# Sweeps\n\nSee [the steps sweep](#steps-sweep) and "
                     "[two folders](models.md#model-folders).\n\n" + figures["index.md"]),
        "params.md": "# Parameters\n\n" + figures["params.md"],
        "models.md": ("# Models\n\n" + figures["models.md"] + "\n"
                      + fence("id: facts\nmodels: [default, inside, outside]\n", "ecosystem")),
    }
    zine = make_zine(root, pages, unmake_env, nav=list(PAGES),
                     models={"inside": "./models/x", "outside": str(outside)})
    # a link to a missing anchor is a warning, so --strict fails on it
    configure(zine, validation={"links": {"anchors": "warn"}})
    run = zine.unmake("build", "--strict")
    assert run.rc == 0, run.output
    return zine, run, outside


def test_every_sweep_builds_strict_with_figure_anchors(sweeps: tuple[Zine, Run, Path]) -> None:
    zine, run, _ = sweeps
    assert "no such anchor" not in run.output
    assert not run.lines("WARNING")
    assert "Traceback" not in run.output
    # the link target is the figure itself
    html = zine.html("index.md")
    assert 'href="#steps-sweep"' in html
    assert len(re.findall(r'id="steps-sweep"', html)) == 1
    assert 'href="models/#model-folders"' in html


@pytest.mark.parametrize("figure_id", list(SWEEPS))
def test_a_sweep_is_one_grid_of_its_values(sweeps: tuple[Zine, Run, Path],
                                           figure_id: str) -> None:
    zine, _, _ = sweeps
    sweep, extra = SWEEPS[figure_id]
    page = next(page for page, ids in PAGES.items() if figure_id in ids)
    html = figure_html(zine.html(page), figure_id)
    assert "unmake-failure" not in html
    assert "unmake-missing" not in html
    assert html.count('<table class="unmake-grid">') == 1
    found = cells(zine, html)
    seeds = extra.get("seeds", [1])
    assert len(found) == len(seeds) * int(np.prod([len(v) for v in sweep.values()]))
    assert len({c["record"]["key"] for c in found}) == len(found)  # one job per cell

    # every combination of the swept values, each once
    made = {tuple(swept_value(c, name) for name in sweep) for c in found}
    assert made == {tuple(normalised(name, v) for name, v in zip(sweep, combo, strict=True))
                    for combo in itertools.product(*sweep.values())}
    # each image is the size its inputs say, on the page and in the file; unswept keys hold
    for cell in found:
        inputs = cell["inputs"]
        assert cell["size"] == (inputs["width"], inputs["height"])
        assert (cell["img"]["width"], cell["img"]["height"]) == (str(inputs["width"]),
                                                                 str(inputs["height"]))
        if "steps" not in sweep:
            assert inputs["steps"] == TINY["steps"]
        if not {"size", "width", "height"} & set(sweep):
            assert (inputs["width"], inputs["height"]) == (TINY["size"], TINY["size"])
    # the headers are the swept values (rows and columns as `grid:` asks)
    cols, rows = headers(html)
    labels = {name: [label(name, normalised(name, v)) for v in values]
              for name, values in sweep.items()}
    if len(seeds) > 1:
        labels["seed"] = [f"seed {s}" for s in seeds]
    assert set(cols) | (set(rows) - {""}) == {text for texts in labels.values() for text in texts}
    if "grid" in extra:
        assert rows == labels[extra["grid"]["rows"]]
        assert cols == labels[extra["grid"]["cols"]]
    # what a sweep changes changes the picture; the tiny model and its copy in ./models/x are
    # the same weights, but two models with two fingerprints
    if figure_id == "model-default":
        assert len({c["inputs"]["model"] for c in found}) == 2
    else:
        assert len({c["pixels"] for c in found}) == len(found)


def test_two_model_folders_are_one_grid_rows_model_cols_seed(
        sweeps: tuple[Zine, Run, Path]) -> None:
    zine, _, _ = sweeps
    html = figure_html(zine.html("models.md"), "model-folders")
    assert html.count('<table class="unmake-grid">') == 1
    assert re.findall(r'<th scope="col"[^>]*>(.*?)</th>', html) == [
        "model \\ seed", "seed 1", "seed 2"]
    assert re.findall(r'<th scope="row">(.*?)</th>', html) == ["inside", "outside"]
    found = cells(zine, html)
    alts = [c["img"]["alt"] for c in found]
    assert alts == [f"{PROMPT} (seed {s}, model {m})" for m in ("inside", "outside")
                    for s in (1, 2)]
    inside, outside = found[:2], found[2:]
    assert {c["inputs"]["model"] for c in inside} != {c["inputs"]["model"] for c in outside}
    assert all(c["inputs"]["model"].startswith("folder:") for c in found)
    for a, b in zip(inside, outside, strict=True):
        assert a["inputs"]["seed"] == b["inputs"]["seed"]
        assert a["pixels"] != b["pixels"]  # two models, two pictures
    # the plan counts each folder's images under its own alias
    plan = zine.unmake("plan")
    assert plan.rc == 0, plan.output
    assert "generate.image [model inside]:" in plan.stdout
    assert "generate.image [model outside]:" in plan.stdout
    assert "0 to run" in plan.stdout.splitlines()[0]


# -- no path of the build machine in the site --------------------------------------------------
def machine_paths(zine: Zine, *more: Path) -> list[str]:
    """The project's folder, the home folder, unmake's cache (where the tiny model lives) and
    `more`, as absolute paths."""
    paths = {str(zine.root), str(zine.root.resolve())}
    for path in (Path(zine.env["UNMAKE_CACHE"]), *more):
        paths |= {str(path), str(path.resolve())}
    home = str(Path.home())
    if len(home) > 1:
        paths.add(home)
    return sorted(paths)


def paths_in(folder: Path, paths: list[str]) -> list[tuple[str, str]]:
    """(file, path) for every machine path found in any file under `folder` (gzip unpacked)."""
    hits = []
    for file in sorted(folder.rglob("*")):
        if not file.is_file():
            continue
        data = file.read_bytes()
        if file.suffix == ".gz":
            data = gzip.decompress(data)
        hits += [(file.relative_to(folder).as_posix(), p) for p in paths if p.encode() in data]
    return hits


def test_site_shows_no_machine_paths(sweeps: tuple[Zine, Run, Path]) -> None:
    zine, _, outside = sweeps
    site = zine.site
    assert (site / "search" / "search_index.json").is_file()
    assert (site / "sitemap.xml").is_file()
    assert paths_in(site, machine_paths(zine, outside.parent)) == []
    # (the local records do keep the full paths)
    assert any(str(outside).encode() in p.read_bytes() for p in zine.records().values())
    html = zine.html("models.md")
    assert "inside → ./models/x" in html
    assert "outside → a folder outside the project" in html
    facts = figure_html(html, "facts")
    assert "./models/x" in facts
    assert "a folder outside the project" in facts


def test_failing_jobs_show_no_machine_paths(sweeps: tuple[Zine, Run, Path],
                                            tmp_path: Path) -> None:
    zine = sweeps[0].copy(tmp_path / "zine")
    outside = sweeps[2]
    # two folders that fail to load, with errors naming them: one in the project, one outside
    without_vae_weights(zine.root / "models" / "x", zine.root / "models" / "broken")
    far = without_vae_weights(outside, tmp_path / "elsewhere" / "broken")
    configure(zine, models={"broken": "./models/broken", "far": str(far)})
    zine.write("broken.md", "# Broken\n\n" + generate(prompt="a broken model", seeds=[1],
                                                      sweep={"model": ["broken", "far"]}))
    before = site_hashes(zine.site)
    run = zine.unmake("build")
    assert run.rc != 0
    assert "Traceback" not in run.output
    assert "2 job(s) failed" in run.output
    # the messages name the folders (on the console, where the full path helps) ...
    assert f"{zine.root}/models/broken/vae" in run.output
    assert f"{far}/vae" in run.output
    # ... but no page shows them: site/ is as it was
    assert site_hashes(zine.site) == before
    assert leftovers(zine) == []
    assert paths_in(zine.site, machine_paths(zine, outside.parent, far.parent)) == []
    # and the failed build kept aside shows the project's folder as ./
    failed = zine.store / "failed-site"
    assert "./models/broken/vae" in (failed / "broken" / "index.html").read_text("utf-8")
    assert paths_in(failed, machine_paths(zine, outside.parent, far.parent)) == []


# -- a failed build leaves site/ as it was -----------------------------------------------------
def _typo(zine: Zine) -> None:
    zine.write("new.md", "# New\n\n" + generate(prompt="an owl", seeds=[1], steeps=3))


def _alias(zine: Zine) -> None:
    zine.write("new.md", "# New\n\n" + generate(prompt="an owl", seeds=[1], model="nosuch"))


def _missing(zine: Zine) -> None:
    zine.write("new.md", "# New\n\n" + generate(prompt="an owl never made", seeds=[1]))


def _runtime(zine: Zine) -> None:
    # a model folder whose model_index.json is cut short: resolving it hashes its files, reading
    # its facts (the job, no torch needed) fails
    broken = zine.root / "broken-model"
    shutil.copytree(tiny_folder(zine), broken)
    (broken / "model_index.json").write_text('{"_class_name": ', "utf-8")
    configure(zine, models={"broken": "./broken-model"})
    zine.write("new.md", "# New\n\n" + fence("model: broken\n", "ecosystem"))


def _warning(zine: Zine) -> None:
    zine.write("new.md", "# New\n\n" + fence("model: default\n", "ecosytem"))


# case -> (how to break the zine, `unmake` arguments, `mkdocs` arguments, environment, what
# the output says)
FAILED_BUILDS = {
    "typo'd key": (_typo, ["build"], ["build"], {}, "'steeps' is not a known key"),
    "wrong model alias": (_alias, ["build"], ["build"], {}, "'model' 'nosuch' not found"),
    "frozen, results missing": (_missing, ["build", "--frozen"], ["build"],
                                {"UNMAKE_MODE": "frozen"}, "1 of 7 results are not in the store"),
    "job fails at run time": (_runtime, ["build"], ["build"], {},
                              "1 job(s) failed; site/ was left as it was"),
    "strict, a warning": (_warning, ["build", "--strict"], ["build", "--strict"], {},
                          "1 warning(s) in strict mode; site/ was left as it was"),
}


@pytest.mark.parametrize("front_end", ["unmake build", "mkdocs build"])
@pytest.mark.parametrize("case", list(FAILED_BUILDS))
def test_failed_build_leaves_site_as_it_was_then_a_good_one_replaces_it(
        built: Zine, tmp_path: Path, case: str, front_end: str) -> None:
    zine = built.copy(tmp_path / "zine")
    before = site_hashes(zine.site)
    assert before
    breaks, unmake_args, mkdocs_args, env, says = FAILED_BUILDS[case]

    def build() -> Run:
        if front_end == "unmake build":
            return zine.unmake(*unmake_args)
        return zine.python("-m", "mkdocs", *mkdocs_args, env=env)

    breaks(zine)
    run = build()
    assert run.rc != 0, run.output
    assert says in run.output
    assert "Traceback" not in run.output
    assert site_hashes(zine.site) == before
    assert leftovers(zine) == []

    # the page fixed, the same command builds and the new site takes the old one's place
    zine.write("new.md", "# New\n\nFixed.\n")
    zine.write("index.md", zine.read("index.md").replace("A grid of foxes.", "Foxes, again."))
    run = build()
    assert run.rc == 0, run.output
    after = site_hashes(zine.site)
    assert "Fixed." in zine.html("new.md")
    assert "Foxes, again." in zine.html("index.md")
    assert after["index.html"] != before["index.html"]
    assert leftovers(zine) == []
    # mkdocs names the folder the site ends up in, not the one it was built in
    assert f"Building documentation to directory: {zine.site.resolve()}" in run.output


# -- directive errors: one line with file:line, from plan and build alike ----------------------
PROSE = "# Page\n\nSome prose.\n\n"
# case -> (pages, (page, text on the line the error names), what the line must say)
ERRORS: dict[str, tuple[dict[str, str], tuple[str, str], list[str]]] = {
    "typo'd key": ({"index.md": PROSE + fence("prompt: a cat\nsteeps: 2\n")},
                   ("index.md", "steeps:"),
                   ["'steeps' is not a known key", "did you mean 'steps'?"]),
    "wrong model alias": ({"index.md": PROSE + fence("prompt: a cat\nmodel: nosuch\n")},
                          ("index.md", "model:"), ["'model' 'nosuch' not found"]),
    "braces then text": ({"index.md": PROSE + fence("seeds: 2\nprompt: {a|b} at work\n")},
                         ("index.md", "prompt:"),
                         ["must be quoted", 'write: prompt: "{a|b} at work"']),
    "colon in a prompt": ({"index.md": PROSE + fence("prompt: a portrait: studio light\n")},
                          ("index.md", "prompt:"),
                          ["must be quoted", 'write: prompt: "a portrait: studio light"']),
    "braces alone": ({"index.md": PROSE + fence("prompt: {a|b}\nseeds: 2\n")},
                     ("index.md", "prompt:"), ["put the text in quotes"]),
    "promt for prompt": ({"index.md": PROSE + fence("seeds: 2\npromt: a cat\n")},
                         ("index.md", "promt:"),
                         ["'promt' is not a known key; did you mean 'prompt'?"]),
    "negative set and swept": (
        {"index.md": PROSE + fence("prompt: a cat\nnegative: ugly\nsweep:\n"
                                   "  negative: [blurry, dark]\n")},
        ("index.md", "negative: [blurry"),
        ["'sweep.negative' is both set and swept; remove 'negative:' or the sweep"]),
    "id not an anchor": ({"index.md": PROSE + fence("prompt: a cat\nid: Steps_Sweep\n")},
                         ("index.md", "id:"), ["must be an anchor", "'Steps_Sweep'"]),
    "id of a heading": ({"index.md": PROSE + "## Steps sweep\n\n"
                         + fence("prompt: a cat\nid: steps-sweep\n")},
                        ("index.md", "id:"), ["'steps-sweep' is also the anchor of a heading"]),
    "id on two pages": ({"a.md": PROSE + fence("prompt: a cat\nid: twice\n"),
                         "b.md": PROSE + "More.\n\n" + fence("prompt: a dog\nid: twice\n")},
                        ("b.md", "id:"),
                        ["'twice' is already the id of the figure at docs/a.md:{a}"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_directive_error_is_one_line_with_file_and_line(zine: Any, case: str) -> None:
    pages, (page, needle), says = ERRORS[case]
    z = zine(pages)
    where = f"docs/{page}:{z.line_of(page, needle)}: generate: "
    says = [s.format(a=z.line_of("a.md", "```generate")) if "{a}" in s else s for s in says]

    plan = z.unmake("plan")
    assert plan.rc != 0
    assert "Traceback" not in plan.output
    (line,) = plan.output.strip().splitlines()
    assert line.startswith(f"unmake: {where}"), line
    for text in says:
        assert text in line, line

    build = z.unmake("build")
    assert build.rc != 0
    assert "Traceback" not in build.output
    (line,) = build.lines("ERROR")
    assert line.startswith(f"ERROR   -  {where}"), line
    for text in says:
        assert text in line, line
    assert not z.site.exists()


# -- a misspelt directive name -----------------------------------------------------------------
def test_misspelt_directive_warns_and_fails_strict(zine: Any) -> None:
    z = zine({"index.md": PROSE + fence("models: [default]\n", "ecosytem") + "\n"
              + fence("prompt: a cat\n", "generat") + "\n" + fence("print('a cat')\n", "python")
              + "\n" + fence("echo ecosystem\n", "sh")})
    run = z.unmake("build")
    assert run.rc == 0, run.output
    eco, gen = z.line_of("index.md", "```ecosytem"), z.line_of("index.md", "```generat")
    assert run.lines("WARNING") == [
        f"WARNING -  docs/index.md:{eco}: 'ecosytem' is not a directive; did you mean "
        "'ecosystem'? (it is shown as a code block)",
        f"WARNING -  docs/index.md:{gen}: 'generat' is not a directive; did you mean "
        "'generate'? (it is shown as a code block)",
    ]
    strict = z.unmake("build", "--strict")
    assert strict.rc != 0
    assert "Traceback" not in strict.output
    assert "2 warning(s) in strict mode" in strict.output


# -- unmake new --------------------------------------------------------------------------------
def test_new_prints_next_steps_that_work(tmp_path: Path, unmake_env: dict[str, str]) -> None:
    run = Zine(tmp_path, unmake_env).unmake("new", "my zine")
    assert run.rc == 0, run.output
    steps = [line.strip() for line in run.stdout.splitlines()
             if line.strip().startswith(("cd ", "unmake "))]
    assert [shlex.split(s, comments=True)[:2] for s in steps] == [
        ["cd", "my zine"], ["unmake", "build"], ["unmake", "serve"]]
    # run what it printed, as printed, up to the build (serve would not return)
    script = 'set -e\nunmake() { "$UNMAKE_PYTHON" -m generator.cli "$@"; }\n' + "\n".join(
        steps[:2]) + "\n"
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={**unmake_env, "UNMAKE_PYTHON": PY}, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    index = tmp_path / "my zine" / "site" / "index.html"
    html = index.read_text("utf-8")
    assert "unmake-figure" in html
    assert "unmake-failure" not in html
    assert "unmake-missing" not in html
    assert len(Elements(html).all("a", "glightbox")) == 4


# -- the example zine --------------------------------------------------------------------------
def test_accelerate_is_a_declared_dependency() -> None:
    # without it diffusers warns on every build that loads a model ("... `accelerate` was not
    # found ..."), a warning a user cannot act on but by installing it
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]
    assert any(re.match(r"accelerate\b", dep) for dep in project["dependencies"])


@pytest.mark.slow
def test_example_zine_builds_without_warnings(tmp_path: Path,
                                              unmake_env: dict[str, str]) -> None:
    root = tmp_path / "example"
    zine = example_zine(root, unmake_env)
    run = zine.unmake("build", timeout=900)
    assert run.rc == 0, run.output
    assert "Traceback" not in run.output
    assert "accelerate" not in run.output.lower()
    assert "no such anchor" not in run.output
    assert "WARNING" not in run.output
