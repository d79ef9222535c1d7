"""`iterate`: rounds chained by the keys of their inputs (extend 5 -> 8 runs 3; a killed build
resumes), errors naming the key, the start file keyed by content, the image-to-image pipeline
made from the loaded components, a filmstrip snapshot, and real builds with the tiny model."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import Elements
from PIL import Image

from generator.errors import DirectiveError
from generator.kinds import KINDS
from generator.models import Resolver
from generator.plan import plan_site
from generator.render import PageRender, Renderer
from generator.store import Result, Store
from generator.types import Context, Plan

SNAPSHOTS = Path(__file__).parent / "snapshots"
SOURCE = ("# Source\n\n```generate\nid: src\nprompt: \"a {red|blue} fox\"\nseeds: [1]\n"
          "size: 32\nsteps: 2\n```\n\n")


def iterate(**body: Any) -> str:
    text = yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=1000)
    return f"```iterate\n{text}```\n"


def plan_of(root: Path, page: str, store: Store) -> Plan:
    ctx = Context(root, root / "docs", Resolver({"default": "tiny"}, root), store, {})
    return plan_site({"p.md": ("docs/p.md", page)}, ctx)


def png(rgb: tuple[int, int, int], size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.tile(np.array(rgb, np.uint8), (size, size, 1))).save(buf, "PNG")
    return buf.getvalue()


def fill(store: Store, plan: Plan) -> None:
    """A stored result for every missing job, as its runner would shape it (no model)."""
    for n, job in enumerate(plan.missing):
        data: dict[str, Any] = {"parameters": f"job {n}", "safety": {"checked": False}}
        if job.type == "iterate.describe":
            store.put(job.key, job.describe(), Result(data={"text": f"words {n}", "ranked": []}))
            continue
        store.put(job.key, job.describe(), Result(data=data, files={
            "image": (png((30 * n % 256, 100, 160)), "png")}))


# -- chains of rounds ---------------------------------------------------------------------------
def test_extending_rounds_runs_only_the_new_ones(tmp_path: Path) -> None:
    store = Store(tmp_path / ".unmake")
    five = plan_of(tmp_path, SOURCE + iterate(of="src", rounds=5, steps=2), store)
    [_, planned] = five.pages["p.md"]
    assert [j.type for j in planned.jobs] == ["iterate.image"] * 10  # 2 start images x 5
    # each round reads the one before it; the first reads the figure's image
    src = five.pages["p.md"][0].jobs
    assert planned.jobs[0].needs == (src[0].key,)
    assert [j.needs for j in planned.jobs[1:5]] == [(j.key,) for j in planned.jobs[:4]]
    assert planned.jobs[0].inputs["prompt"] == "a red fox"  # the start image's own prompt
    fill(store, five)
    eight = plan_of(tmp_path, SOURCE + iterate(of="src", rounds=8, steps=2), store)
    [_, longer] = eight.pages["p.md"]
    assert [j.key for j in longer.jobs[:5]] == [j.key for j in planned.jobs[:5]]
    assert len(eight.missing) == 6  # 3 new rounds of each of the two paths
    assert {j.key for j in eight.missing} == {j.key for j in longer.jobs[5:8] + longer.jobs[13:]}
    # a new strength is a new path from round 1
    other = plan_of(tmp_path, SOURCE + iterate(of="src", rounds=5, steps=2, strength=0.7), store)
    assert len(other.missing) == 10


def test_caption_rounds_chain_a_description_and_an_image(tmp_path: Path) -> None:
    store = Store(tmp_path / ".unmake")
    plan = plan_of(tmp_path, SOURCE + iterate(of="src", mode="caption", rounds=2, top=2,
                                              vocabulary=["a fox", "a dog", "noise"]), store)
    [src, planned] = plan.pages["p.md"]
    types = [j.type for j in planned.jobs]
    assert types == ["iterate.describe", "iterate.generate"] * 4
    describe, made, describe2, _ = planned.jobs[:4]
    assert describe.needs == (src.jobs[0].key,) and made.needs == (describe.key,)
    assert describe2.needs == (made.key,)
    assert describe.inputs["vocabulary"] == ["a fox", "a dog", "noise"]
    assert "prompt" not in made.inputs  # the description is the prompt, read at run time


def test_a_start_file_is_keyed_by_its_content(tmp_path: Path) -> None:
    store = Store(tmp_path / ".unmake")
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics/start.png").write_bytes(png((255, 0, 0)))
    page = "# F\n\n" + iterate(image="pics/start.png", prompt="a red square", rounds=2)
    first = plan_of(tmp_path, page, store).pages["p.md"][0].jobs
    assert [j.type for j in first] == ["iterate.file", "iterate.image", "iterate.image"]
    (tmp_path / "pics/start.png").write_bytes(png((0, 0, 255)))
    again = plan_of(tmp_path, page, store).pages["p.md"][0].jobs
    assert not {j.key for j in first} & {j.key for j in again}


BAD = {
    "nothing": ({"rounds": 2}, "```iterate", "'of' is required: the figure whose images"),
    "both": ({"of": "src", "image": "x.png"}, "image:", "'image' give either `of:`"),
    "outside": ({"image": "../x.png", "prompt": "p"}, "image:",
                "'image' must be a path inside the project"),
    "missing file": ({"image": "nope.png", "prompt": "p"}, "image:",
                     "'image' no such file in the project: 'nope.png'"),
    "no prompt for a file": ({"image": "start.png"}, "```iterate",
                             "'prompt' is required when starting from a file"),
    "prompts per round": ({"of": "src", "rounds": 3, "prompt": ["a", "b"]}, "prompt:",
                          "'prompt' lists 2 prompts for 3 rounds"),
    "rounds": ({"of": "src", "rounds": 51}, "rounds:", "'rounds' must be 1–50, got 51"),
    "strength": ({"of": "src", "strength": 0.2, "steps": 2}, "strength:",
                 "'strength' × steps (0.2 × 2) leaves no denoising step"),
    "mode": ({"of": "src", "mode": "dream"}, "mode:",
             "'mode' must be one of img2img, caption; got 'dream'"),
    "prompt in caption": ({"of": "src", "mode": "caption", "prompt": "x"}, "prompt:",
                          "'prompt' is for img2img mode"),
    "top": ({"of": "src", "mode": "caption", "vocabulary": ["a", "b"], "top": 3}, "top:",
            "'top' asks for 3 phrases of a vocabulary of 2"),
    "vocabulary twice": ({"of": "src", "mode": "caption", "vocabulary": ["a", "a"]}, "- a",
                         "'vocabulary' lists a phrase twice"),
    "size in img2img": ({"of": "src", "size": 32}, "size:", "'size' is the start image's"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_iterate_is_one_error_naming_the_key(tmp_path: Path, case: str) -> None:
    (tmp_path / "start.png").write_bytes(png((1, 2, 3)))
    body, line_with, message = BAD[case]
    page = SOURCE + iterate(**body)
    with pytest.raises(DirectiveError) as err:
        plan_of(tmp_path, page, Store(tmp_path / ".unmake"))
    text = str(err.value)
    assert "\n" not in text
    lines = page.splitlines()
    start = lines.index("```iterate")
    line = next(i for i, t in enumerate(lines, 1) if line_with in t and i > start)
    if case == "vocabulary twice":
        line += 1
    assert text.startswith(f"docs/p.md:{line}: iterate: {message}"), text


# -- the filmstrip ---------------------------------------------------------------------------------
def normalised(html: str) -> str:
    return re.sub(r"[0-9a-f]{64}", "<sha256>", html)


def test_filmstrip_html_snapshot(tmp_path: Path) -> None:
    store = Store(tmp_path / ".unmake")
    page = SOURCE + iterate(of="src", rounds=2, steps=2, caption="Round <and> round.") + \
        "\n" + iterate(of="src", mode="caption", rounds=2, vocabulary=["a", "b<i>"], top=1)
    fill(store, plan_of(tmp_path, page, store))
    planned = plan_of(tmp_path, page, store).pages["p.md"]
    view = PageRender(Renderer(store), lambda path: path)
    html = "\n".join(KINDS[p.directive.kind].render(p, view) for p in planned[1:])
    got = normalised(html) + "\n"
    snapshot = SNAPSHOTS / "iterate.html"
    if os.environ.get("UNMAKE_UPDATE_SNAPSHOTS") or not snapshot.exists():
        snapshot.parent.mkdir(exist_ok=True)
        snapshot.write_text(got, "utf-8")
    assert got == snapshot.read_text("utf-8")
    tags = Elements(html)
    assert "Round &lt;and&gt; round." in html
    # two paths of start + 2 rounds in each figure
    assert len(tags.all("li", "unmake-frame")) == 12
    assert len(tags.all("img")) == 12
    text = " ".join(tags.text().split())
    assert "from red, seed 1" in text and "prompt: a red fox" in text
    assert "“words" in text  # each caption round shows the words it was made from


# -- real runs with the tiny model ---------------------------------------------------------------
def test_the_image_to_image_pipeline_shares_the_loaded_components(
        unmake_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UNMAKE_CACHE", unmake_env["UNMAKE_CACHE"])
    from generator.backends import img2img

    store = Store(tmp_path / ".unmake")
    [_, planned] = plan_of(tmp_path, SOURCE + iterate(of="src", rounds=1, steps=2),
                           store).pages["p.md"]
    t2i, i2i, *_ = img2img.pipelines(planned.jobs[0], {"device": "cpu"})
    assert type(i2i).__name__ == "StableDiffusionImg2ImgPipeline"
    assert i2i.unet is t2i.unet and i2i.vae is t2i.vae and i2i.text_encoder is t2i.text_encoder
    again, *_ = img2img.pipelines(planned.jobs[0], {"device": "cpu"})
    assert again is t2i  # loaded once per build


@pytest.mark.slow
def test_a_killed_build_resumes_at_the_first_round_not_stored(zine) -> None:
    page = SOURCE.replace("{red|blue}", "red") + iterate(of="src", rounds=4, steps=2)
    z = zine({"index.md": page})
    # stored results: 1 the source image, 2 round 1, 3 round 2 -> killed right after it
    killed = z.unmake("build", env={"UNMAKE_TEST_KILL_AFTER": "3"})
    assert killed.rc != 0
    assert sum(1 for r in z.records().values()) == 3
    run = z.unmake("build", "--strict")
    assert run.rc == 0, run.output
    assert re.search(r"ran 2 job\(s\) in [\d.]+ s \(2 iterate.image\)", run.output), run.output
    assert [z.record(k)["type"] for k in z.records()].count("iterate.image") == 4
    html = z.html()
    assert len(Elements(html).all("li", "unmake-frame")) == 5


@pytest.mark.slow
def test_caption_loop_from_a_project_image(zine) -> None:
    page = "# Gaze\n\n" + iterate(image="start.png", mode="caption", rounds=2, top=2, steps=2,
                                  size=32, vocabulary=["a red square", "a blue sky", "a dog",
                                                       "noise"])
    z = zine({"index.md": page})
    Image.fromarray(np.tile(np.array((220, 20, 20), np.uint8), (40, 44, 1))).save(
        z.root / "start.png")
    run = z.unmake("build", "--strict")
    assert run.rc == 0, run.output
    records = {k: z.record(k) for k in z.records()}
    described = [r for r in records.values() if r["type"] == "iterate.describe"]
    made = [r for r in records.values() if r["type"] == "iterate.generate"]
    assert len(described) == 2 and len(made) == 2
    for record in described:
        ranked = record["data"]["ranked"]
        scores = [s for _, s in ranked]
        assert scores == sorted(scores, reverse=True)
        assert record["data"]["text"] == ", ".join(p for p, _ in ranked[:2])
    # each round's image was drawn from the words of the description it read
    texts = {r["data"]["text"] for r in described}
    assert {r["data"]["prompt"] for r in made} <= texts
    start = [r for r in records.values() if r["type"] == "iterate.file"]
    assert start, "the start image is cut to multiples of 8 (44 -> 40)"
    with Image.open(z.blob(start[0])) as im:
        assert im.size == (40, 40)
    text = " ".join(Elements(z.html()).text().split())
    for t in texts:
        assert f"“{t}”" in text
