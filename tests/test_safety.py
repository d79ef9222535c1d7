"""The safety checker: its verdict in every record, a flagged image withheld from the page (a box,
never the black square) and from `measure` (counted, not measured), and the config's switch.

Nothing of diffusers is mocked. The checkers are real `StableDiffusionSafetyChecker`s, tiny and
seeded, saved into copies of the tiny model with a `CLIPImageProcessor`; their concept thresholds
decide the verdict deterministically: a concept scores cosine − threshold, and a score above 0
flags the image, so a threshold of −10 flags every image and +10 none.

Three tiers: images put into a store as if generated, measured and rendered in-process (every
instrument's count); the runner in-process on a checked model (the config's switch); and
end-to-end builds.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import Elements, Zine, generate, make_zine, sha256
from PIL import Image

from generator.execute import execute
from generator.kinds import KINDS
from generator.models import Resolver
from generator.plan import plan_site
from generator.render import PageRender, Renderer
from generator.store import Result, Store
from generator.types import Context, Job

WITHHELD = "withheld by the model's safety checker"


def measure(**body: Any) -> str:
    text = yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=1000)
    return f"```measure\n{text}```\n"


def figure(html: str, figure_id: str) -> str:
    start = html.rindex("<figure", 0, html.index(f'id="{figure_id}"'))
    return html[start:html.index("</figure>", start)]


def words(html: str) -> str:
    return " ".join(Elements(html).text().split())


# -- models with a checker -----------------------------------------------------------------------
def add_checker(folder: Path, threshold: float) -> None:
    """Save a tiny seeded safety checker and its feature extractor into a model folder."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import (
        StableDiffusionSafetyChecker,
    )
    from transformers import CLIPConfig, CLIPImageProcessor

    layers = {"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2,
              "num_hidden_layers": 1}
    torch.manual_seed(0)
    checker = StableDiffusionSafetyChecker(CLIPConfig(
        text_config=layers, vision_config={**layers, "image_size": 32, "patch_size": 8},
        projection_dim=8)).eval()
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(threshold)
        checker.special_care_embeds_weights.fill_(10.0)  # never "special care" (+0.01 to all)
    checker.save_pretrained(folder / "safety_checker", safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
                       ).save_pretrained(folder / "feature_extractor")
    index = json.loads((folder / "model_index.json").read_text("utf-8"))
    index.update(safety_checker=["stable_diffusion", "StableDiffusionSafetyChecker"],
                 feature_extractor=["transformers", "CLIPImageProcessor"],
                 requires_safety_checker=True)
    (folder / "model_index.json").write_text(json.dumps(index, indent=2), "utf-8")


@pytest.fixture(scope="module")
def checked_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two copies of the tiny model with a safety checker: `flagging` flags every image,
    `passing` none."""
    from generator.backends.tiny import write_pipeline
    from generator.models import TINY_RECIPE

    root = tmp_path_factory.mktemp("checked")
    base = root / "base"
    write_pipeline(base, TINY_RECIPE, "# tiny, with a safety checker\n")
    models = {}
    for name, threshold in (("flagging", -10.0), ("passing", 10.0)):
        shutil.copytree(base, root / name)
        add_checker(root / name, threshold)
        models[name] = str(root / name)
    return models


# -- every instrument counts withheld images and skips them (in-process) -------------------------
PAGE = ("# Known images\n\n" + generate(id="made", prompt=["kept", "held"], seeds=[1, 2]) + "\n"
        + measure(id="readings", of="made", clip={"medium": ["a photo", "a drawing"]},
                  palette=2, faces=True, diversity={"clusters": 2}))
HELD = {("held", 1), ("kept", 2)}  # the images the checker flagged: one of each group


def png(rgb: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.tile(np.array(rgb, np.uint8), (32, 32, 1))).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def measured_in_process(tmp_path_factory: pytest.TempPathFactory,
                        unmake_env: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The `made` figure's images put into a store, two of them flagged (black, as the pipeline
    returns them), then measured by `execute` and rendered: (measure HTML, its sections)."""
    root = tmp_path_factory.mktemp("known")
    store = Store(root / ".unmake")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNMAKE_CACHE", unmake_env["UNMAKE_CACHE"])  # tiny-clip, written once

        def plan() -> Any:
            ctx = Context(root, root / "docs", Resolver({"default": "tiny"}, root), store, {})
            return plan_site({"p.md": ("docs/p.md", PAGE)}, ctx)

        for job in plan().missing:
            if job.type == "generate.image":
                flagged = (job.inputs["prompt"], job.inputs["seed"]) in HELD
                store.put(job.key, job.describe(), Result(
                    data={"safety": {"checked": True, "flagged": flagged}},
                    files={"image": (png((0, 0, 0) if flagged else (200, 40, 40)), "png")}))
        measuring = plan()
        assert execute(measuring, store, {"device": "cpu"}) == {}
    [_, planned] = measuring.pages["p.md"]
    html = KINDS["measure"].render(planned, PageRender(Renderer(store), lambda path: path))
    return html, {"plan": measuring, "planned": planned, "store": store}


def test_every_instrument_counts_withheld_images_and_measures_the_rest(
        measured_in_process: tuple[str, dict[str, Any]]) -> None:
    html, _ = measured_in_process
    text = words(html)
    assert "Measured: 2 of 4 image(s) of" in text
    assert "2 withheld by the model's safety checker and not measured." in text
    for name in ("clip", "palette", "faces", "diversity"):
        start = html.index(f'class="unmake-instrument unmake-{name}"')
        section = words(html[start:html.index("</section>", start)])
        assert "2 image(s) withheld by the model's safety checker, not measured " \
               "(kept: 1, held: 1)." in section, name
        assert "not measured yet" not in section, name  # withheld is not missing
    # each group measures the one image it keeps
    for name in ("clip", "faces", "diversity"):
        start = html.index(f'class="unmake-instrument unmake-{name}"')
        table = html[start:html.index("</table>", start)]
        assert re.findall(r'<tr><th scope="row">(\w+)</th><td>(\d+)</td>', table) == [
            ("kept", "1"), ("held", "1")], name
    assert words(html[html.index("unmake-palettes"):]).count("(n = 1)") == 2


def test_the_measure_figure_shows_no_withheld_image(
        measured_in_process: tuple[str, dict[str, Any]]) -> None:
    html, known = measured_in_process
    store: Store = known["store"]
    withheld = {job.key for job in known["plan"].jobs.values() if job.type == "generate.image"
                and (job.inputs["prompt"], job.inputs["seed"]) in HELD}
    shas = {store.get(key)["files"]["image"]["sha256"] for key in withheld}
    srcs = [img["src"] for img in Elements(html).all("img")]
    assert len(srcs) >= 2  # the thumbnails of the kept images, and clusters' exemplars
    assert not [src for src in srcs if any(sha in src for sha in shas)]
    assert len(Elements(html).all("span", "unmake-withheld")) == 2


# -- the runner in-process: the verdict, and the config's switch ---------------------------------
def image_job(model: str, seed: int) -> Job:
    inputs = {"model": f"folder:{Path(model).name}", "prompt": "a red door", "negative": "",
              "seed": seed, "steps": 2, "guidance": 7.5, "width": 32, "height": 32,
              "scheduler": "default"}
    return Job("generate.image", inputs, group=(model,),
               run={"model": "checked", "ref": model, "source": "folder", "path": model,
                    "shown": "a folder outside the project"})


def black(image: bytes) -> bool:
    with Image.open(io.BytesIO(image)) as im:
        return not np.asarray(im.convert("RGB")).any()


@pytest.mark.parametrize(("model", "options", "safety", "is_black"), [
    ("flagging", {}, {"checked": True, "flagged": True}, True),
    ("passing", {}, {"checked": True, "flagged": False}, False),
    ("flagging", {"safety_checker": False}, {"checked": False, "disabled_by_config": True},
     False),
])
def test_the_runner_records_the_checkers_verdict(checked_models: dict[str, str], model: str,
                                                 options: dict[str, Any],
                                                 safety: dict[str, Any], is_black: bool) -> None:
    from generator.backends.diffusion import run

    jobs = [image_job(checked_models[model], seed) for seed in (1, 2)]
    results = list(run(jobs, {"device": "cpu", "batch_size": 2, **options}))
    assert [job for job, _ in results] == jobs
    for _, result in results:
        assert isinstance(result, Result), result
        assert result.data["safety"] == safety
        # a flagged image is stored as the pipeline returned it: black
        assert black(result.files["image"][0]) is is_black


def test_a_pipeline_without_a_checker_says_so(built: Zine) -> None:
    for key in built.records():
        assert built.record(key)["data"]["safety"] == {"checked": False}
    assert "<dt>safety checker</dt><dd>none in this pipeline: not checked" in built.html()


# -- end to end ------------------------------------------------------------------------------------
DOORS = ("# Doors\n\n" + generate(id="held", model="flagging", prompt="a red door", seeds=[1, 2])
         + "\n" + generate(id="passed", model="passing", prompt="a red door", seeds=[1, 2]) + "\n")


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory, unmake_env: dict[str, str],
          checked_models: dict[str, str]) -> Zine:
    zine = make_zine(tmp_path_factory.mktemp("doors") / "zine", {"index.md": DOORS},
                     unmake_env, models=checked_models)
    run = zine.unmake("build")
    assert run.rc == 0, run.output
    return zine


def by_figure(zine: Zine) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"held": [], "passed": []}
    for key in zine.records():
        record = zine.record(key)
        model = record["run"]["model"]
        out["held" if model == "flagging" else "passed"].append(record)
    return out


def test_a_flagged_image_is_stored_and_withheld_from_the_page(doors: Zine) -> None:
    records = by_figure(doors)
    assert len(records["held"]) == len(records["passed"]) == 2
    for record in records["held"]:
        assert record["data"]["safety"] == {"checked": True, "flagged": True}
        assert black(doors.blob(record).read_bytes())  # the bytes stay in the store
    for record in records["passed"]:
        assert record["data"]["safety"] == {"checked": True, "flagged": False}
        assert not black(doors.blob(record).read_bytes())

    html = doors.html()
    held, passed = figure(html, "held"), figure(html, "passed")
    assert "<img" not in held
    assert words(held).count(WITHHELD) == 2
    assert held.count("<dt>safety checker</dt><dd>flagged: the image is withheld") == 2
    assert "original PNG" not in held
    assert len(Elements(passed).all("img")) == 2
    assert passed.count("<dt>safety checker</dt><dd>checked, not flagged") == 2
    assert WITHHELD not in words(passed)

    # nothing of a withheld image is published: neither its web copy nor its PNG
    published = {p.name for p in (doors.site / "assets/unmake/img").iterdir()}
    for record in records["held"]:
        assert not [name for name in published
                    if name.startswith(record["files"]["image"]["sha256"])]
    for record in records["passed"]:
        assert f"{sha256(doors.blob(record))}.png" in published


def test_measure_counts_withheld_images_in_a_build(doors: Zine, tmp_path: Path) -> None:
    zine = doors.copy(tmp_path / "z")
    zine.write("index.md", DOORS + "\n" + measure(id="readings", of=["held", "passed"],
                                                  by="figure", palette=2))
    run = zine.unmake("build")
    assert run.rc == 0, run.output
    html = figure(zine.html(), "readings")
    text = words(html)
    assert "Measured: 2 of 4 image(s) of" in text
    assert "2 image(s) withheld by the model's safety checker, not measured (held: 2)." in text
    rows = dict(re.findall(r'unmake-thumb-label">(\w+)</span>(.*?)</div>',
                           html[html.index("unmake-palettes"):], re.S))
    assert "no palette" in rows["held"] and "(n = 2)" in words(rows["passed"])
    # the thumbnails: boxes for the withheld images, never the images
    held_shas = [zine.record(k)["files"]["image"]["sha256"] for k in zine.records()
                 if zine.record(k)["type"] == "generate.image"
                 and zine.record(k)["run"]["model"] == "flagging"]
    srcs = [img["src"] for img in Elements(html).all("img")]
    assert len(srcs) == 2 and not [s for s in srcs if any(sha in s for sha in held_shas)]
    assert len(Elements(html).all("span", "unmake-withheld")) == 2


def test_measure_publishes_no_withheld_image(doors: Zine, tmp_path: Path) -> None:
    zine = doors.copy(tmp_path / "z")
    zine.write("index.md", DOORS + "\n" + measure(of=["held", "passed"], by="figure",
                                                  palette=2))
    assert zine.unmake("build").rc == 0
    published = {p.name for p in (zine.site / "assets/unmake/img").iterdir()}
    for key in zine.records():
        record = zine.record(key)
        if record["data"].get("safety", {}).get("flagged"):
            sha = record["files"]["image"]["sha256"]
            assert not [name for name in published if name.startswith(sha)]


def test_the_config_can_disable_the_checker(doors: Zine, tmp_path: Path,
                                            checked_models: dict[str, str]) -> None:
    zine = make_zine(tmp_path / "z", {"index.md": DOORS}, doors.env, models=checked_models,
                     plugin={"safety_checker": False})
    run = zine.unmake("build", "--strict")
    assert run.rc == 0, run.output
    for key in zine.records():
        assert zine.record(key)["data"]["safety"] == {"checked": False,
                                                      "disabled_by_config": True}
    held = figure(zine.html(), "held")
    assert len(Elements(held).all("img")) == 2
    assert "disabled in the config" in held
    # an unchecked image never stands in for a checked one: with the checker back on, the same
    # directives are made again (and withheld where flagged) beside the unchecked records
    unchecked = set(zine.records())
    again = make_zine(zine.root, {"index.md": DOORS}, doors.env, models=checked_models)
    assert again.unmake("build").rc == 0
    checked = set(again.records()) - unchecked
    assert len(checked) == len(unchecked)
    assert all(again.record(k)["data"]["safety"]["checked"] for k in checked)
    assert "withheld by the model" in figure(again.html(), "held")
