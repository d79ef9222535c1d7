"""The `measure` directive: its figure, its numbers against the stored records, bad input, and
its instruments' readings of images whose content is known, through the whole runner path.

Three tiers: bad input planned in-process (milliseconds); images of known content put into a
store as if a `generate` had made them, then measured by `execute` and rendered in-process; and
one end-to-end build (tiny model, built-in tiny-clip, CPU) shared by the module, copied where a
test changes it.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import yaml
from conftest import Elements, Run, Zine, generate, make_zine
from PIL import Image

from generator.errors import DirectiveError
from generator.execute import execute
from generator.instruments.diversity import cluster, cluster_shares, exemplars
from generator.instruments.palette import group_palette
from generator.instruments.vectors import decode_vector, probabilities
from generator.kinds import KINDS
from generator.models import Resolver
from generator.plan import plan_site
from generator.render import PageRender, Renderer
from generator.stats import vendi, wilson
from generator.store import Result, Store
from generator.types import Context, Plan

LABEL_W, BAR_W = 200, 240  # the clip chart's geometry (templates/measure.html)
SOURCE = "US Bureau of Labor Statistics, 2022"
PROMPTS = ("a photo of a doctor", "a photo of a nurse")


def measure(**body: Any) -> str:
    """A ```measure fence with `body` as its YAML."""
    text = yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=1000)
    return f"```measure\n{text}```\n"


def pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def words(html: str) -> str:
    """The text of an HTML fragment as a reader sees it, whitespace collapsed."""
    return " ".join(Elements(html).text().split())


def figure_of(html: str, figure_id: str) -> str:
    start = html.rindex("<figure", 0, html.index(f'id="{figure_id}"'))
    return html[start:html.index("</figure>", start) + len("</figure>")]


def section(figure: str, name: str) -> str:
    start = figure.index(f'class="unmake-instrument unmake-{name}"')
    return figure[start:figure.index("</section>", start)]


def rows(table: str) -> dict[str, list[str]]:
    """Row label -> the inner HTML of its cells, for each body row of a table."""
    return {m[1]: re.findall(r"<td[^>]*>(.*?)</td>", m[2], re.S)
            for m in re.finditer(r'<tr><th scope="row">(.*?)</th>(.*?)</tr>', table, re.S)}


# -- the end-to-end build ------------------------------------------------------------------------
WORK = generate(id="work", prompt="a photo of a {doctor|nurse}", seeds=[1, 2, 3],
                caption="Doctors and nurses.")
READINGS = measure(
    id="readings", of="work", by="prompt",
    clip={"gender": {"labels": ["a man", "a woman"], "template": "a photo of {}"}},
    reference={"doctor": {"a woman": 0.38}}, reference_source=SOURCE,
    palette=3, faces=True, diversity={"clusters": 2},
    caption="What the machine reads in them.")
PAGES = {
    "index.md": "# Who works\n\nProse.\n\n" + WORK + "\nBetween.\n\n" + READINGS,
    # two figures sharing an image (seed 2), measured together and grouped by figure
    "doors.md": "# Doors\n\n" + generate(id="left", prompt="a red door", seeds=[1, 2]) + "\n"
                + generate(id="right", prompt="a red door", seeds=[2, 3]) + "\n"
                + measure(id="door-readings", of=["left", "right"], by="figure", palette=2),
}


class Built(NamedTuple):
    zine: Zine
    run: Run


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory, unmake_env: dict[str, str]) -> Built:
    zine = make_zine(tmp_path_factory.mktemp("measured") / "zine", PAGES, unmake_env,
                     nav=["index.md", "doors.md"])
    run = zine.unmake("build")
    assert run.rc == 0, run.output
    return Built(zine, run)


def stored(zine: Zine) -> dict[str, dict[str, Any]]:
    return {key: zine.record(key) for key in zine.records()}


def of_type(records: dict[str, dict[str, Any]], job_type: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in records.items() if r["type"] == job_type}


def embedding(record: dict[str, Any]) -> np.ndarray:
    """The vector a `measure.embed` record holds (in the record: there is no file of it)."""
    data = record["data"]
    assert "embedding" not in record.get("files", {})
    vector = decode_vector(data["embedding"])
    assert vector.shape == (data["dim"],)
    return vector


def label_set(record: dict[str, Any], n: int) -> tuple[np.ndarray, float]:
    """(prompt embeddings, logit scale) of a `measure.text` record of n prompts."""
    data = record["data"]
    assert len(record["inputs"]["prompts"]) == len(data["embeddings"]) == n
    assert data["logit_scale"] > 0
    return np.stack([decode_vector(v) for v in data["embeddings"]]), data["logit_scale"]


def work_images(records: dict[str, dict[str, Any]]) -> dict[str, tuple[str, int]]:
    """Image key -> (group label, seed) of the images of `work`, in figure order."""
    found = {k: (r["inputs"]["prompt"], r["inputs"]["seed"])
             for k, r in of_type(records, "generate.image").items()
             if r["inputs"]["prompt"] in PROMPTS}
    ordered = sorted(found.items(), key=lambda kv: (PROMPTS.index(kv[1][0]), kv[1][1]))
    return {k: (prompt.split()[-1], seed) for k, (prompt, seed) in ordered}


def test_build_runs_each_measurement_once(measured: Built) -> None:
    # index.md: 6 images, each embedded, its palette and faces read, and the label set's
    # prompts embedded once; doors.md: 3 images (seed 2 is in both figures, one job) and 3
    # palettes
    assert "31 jobs: 0 cached, 31 to run" in measured.run.output
    assert re.search(r"ran 31 job\(s\) in [\d.]+ s \(9 generate\.image, 6 measure\.embed, "
                     r"6 measure\.faces, 9 measure\.palette, 1 measure\.text\), 0 failed",
                     measured.run.output), measured.run.output


def test_figure_shows_each_instrument_its_images_and_its_method(measured: Built) -> None:
    zine = measured.zine
    html = zine.html("index.md")
    page = Elements(html)
    assert [f["id"] for f in page.all("figure", "unmake-figure")] == ["work", "readings"]
    figure = figure_of(html, "readings")
    text = words(figure)
    assert "Figure 2. What the machine reads in them." in text
    assert re.search(r"machine's readings of generated images .* people in them do not exist", text)
    fence = zine.line_of("index.md", "```generate")
    assert (f"Measured: 6 image(s) of work (docs/index.md:{fence}), grouped by prompt."
            in text)
    assert re.findall(r'class="unmake-instrument unmake-(\w+)"', figure) == [
        "clip", "palette", "faces", "diversity"]
    for name, tables in (("clip", 1), ("palette", 0), ("faces", 1), ("diversity", 2)):
        assert section(figure, name).count('<table class="unmake-table">') == tables, name

    # thumbnails: a row per group, every image of it, each a file of the site
    thumbs = re.findall(r'<div class="unmake-thumb-row"><span class="unmake-thumb-label">(.*?)'
                        r"</span>(.*?)</div>", figure, re.S)
    assert [label for label, _ in thumbs] == ["doctor", "nurse"]
    for label, cells in thumbs:
        imgs = Elements(cells).all("img", "unmake-thumb")
        assert [i["alt"] for i in imgs] == [f"a photo of a {label} (seed {s})" for s in (1, 2, 3)]
        for img in imgs:
            assert zine.site_file("index.md", img["src"]).is_file()

    # the chart: a bar and an interval per group and label, one reference tick
    clip = section(figure, "clip")
    (svg,) = re.findall(r'<svg class="unmake-ci".*?</svg>', clip, re.S)
    assert svg.count('class="unmake-share"') == 4
    assert svg.count('stroke="#000"') == 4
    ticks = re.findall(r'<line x1="([\d.]+)" x2="([\d.]+)"[^>]*stroke="#c00"', svg)
    assert ticks == [(f"{LABEL_W + BAR_W * 0.38:.1f}",) * 2]

    # how each number was obtained
    records = stored(zine)
    (fingerprint,) = {r["inputs"]["clip"] for t in ("measure.embed", "measure.text")
                      for r in of_type(records, t).values()}
    assert fingerprint.startswith("tiny-clip:")
    how = words(clip.split('class="unmake-how"')[1])
    for part in (f"CLIP default {fingerprint}", "“a photo of a man”, “a photo of a woman”",
                 "(template “a photo of {}”)", "highest-scoring label",
                 "share of the group's n images", "95 % Wilson score interval",
                 f"the world's share, from {SOURCE}"):
        assert part in how, part
    assert '<th scope="col">n</th>' in clip
    assert ("each image's 3 dominant colours by k-means in CIELAB"
            in words(section(figure, "palette")))
    opencv = metadata.version("opencv-python-headless")
    assert f"OpenCV's Haar cascade (opencv {opencv})" in words(section(figure, "faces"))
    diversity = words(section(figure, "diversity"))
    assert f"the Vendi score (Friedman & Dieng 2023) of the group's CLIP default {fingerprint}" \
        in diversity
    assert "average-linkage hierarchical clustering" in diversity


def test_clip_shares_and_intervals_are_the_stored_readings(measured: Built) -> None:
    records = stored(measured.zine)
    images = work_images(records)
    labels = ["a man", "a woman"]
    # each image counts for its most probable label, from its stored embedding and the label
    # set's stored prompt embeddings
    (text,) = of_type(records, "measure.text").values()
    assert text["inputs"]["prompts"] == ["a photo of a man", "a photo of a woman"]
    prompts, scale = label_set(text, 2)
    tops: dict[str, list[str]] = {"doctor": [], "nurse": []}
    for record in of_type(records, "measure.embed").values():
        (probs,) = probabilities(embedding(record)[None, :], prompts, scale)
        assert probs.sum() == pytest.approx(1.0, abs=1e-12)
        tops[images[record["inputs"]["image"]][0]].append(labels[int(np.argmax(probs))])
    assert {g: len(t) for g, t in tops.items()} == {"doctor": 3, "nurse": 3}

    clip = section(figure_of(measured.zine.html("index.md"), "readings"), "clip")
    table = rows(clip.split("<svg")[0])
    charts = re.findall(r'<g transform="translate\(0 \d+\)">\s*<title>(.*?)</title>(.*?)</g>',
                        clip, re.S)
    assert len(charts) == 4
    bars = iter(charts)
    for group in ("doctor", "nurse"):
        n = len(tops[group])
        assert table[group][0] == str(n)
        for label, cell in zip(labels, table[group][1:], strict=True):
            k = tops[group].count(label)
            low, high = wilson(k, n)
            reference = 0.38 if (group, label) == ("doctor", "a woman") else None
            world = f"<br><small>world: {pct(reference)}</small>" if reference else ""
            assert cell == f"{pct(k / n)} <small>({pct(low)}–{pct(high)})</small>{world}"
            title, shapes = next(bars)
            assert title == (f"{group}, {label}: {k} of {n} ({pct(k / n)}, 95 % interval "
                             f"{pct(low)}–{pct(high)})"
                             + (f"; world {pct(reference)}" if reference else ""))
            assert f'class="unmake-share" x="{LABEL_W}" y="3" width="{BAR_W * k / n:.1f}"' \
                in shapes
            assert (f'<line x1="{LABEL_W + BAR_W * low:.1f}" x2="{LABEL_W + BAR_W * high:.1f}"'
                    in shapes)


def test_palette_faces_and_diversity_are_the_stored_readings(measured: Built) -> None:
    zine = measured.zine
    records = stored(zine)
    images = work_images(records)
    figure = figure_of(zine.html("index.md"), "readings")

    def readings(job_type: str) -> dict[str, dict[str, Any]]:
        """image key -> the record measuring it"""
        return {r["inputs"]["image"]: r for r in of_type(records, job_type).values()
                if r["inputs"]["image"] in images}

    palettes, faces, embeds = (readings(t) for t in ("measure.palette", "measure.faces",
                                                     "measure.embed"))
    assert len(palettes) == len(faces) == len(embeds) == 6
    swatches = re.findall(r'<div class="unmake-palette-row"><span class="unmake-thumb-label">'
                          r"(.*?)</span>(.*?)</div>", section(figure, "palette"), re.S)
    assert [g for g, _ in swatches] == ["doctor", "nurse"]
    for group, row in swatches:
        mine = [palettes[k]["data"] for k, (g, _) in images.items() if g == group]
        expected = group_palette(mine, 3)
        assert re.findall(r'title="(#[0-9a-f]{6}): (\d+ %)"', row) == [
            (c["hex"], pct(c["share"])) for c in expected["colours"]]
        assert (f"L* {expected['lightness']:.0f}, chroma {expected['saturation']:.0f} (n = 3)"
                in words(row))

    table = rows(section(figure, "faces"))
    for group in ("doctor", "nurse"):
        mine = [faces[k]["data"] for k, (g, _) in images.items() if g == group]
        assert table[group][:3] == ["3", str(sum(d["count"] > 0 for d in mine)),
                                    str(sum(d["count"] for d in mine))]
        assert sum(int(c) for c in re.findall(r">(\d+)</span>", table[group][4])) == \
            sum(d["count"] for d in mine)

    # Vendi per group, and the clusters of all six, from the stored embeddings (float64, as
    # the figure computes them)
    vectors = {k: embedding(embeds[k]).astype(np.float64) for k in images}
    vendi_table, cluster_table = section(figure, "diversity").split("</table>")[:2]
    vendi_rows = rows(vendi_table)
    for group in ("doctor", "nurse"):
        mine = np.stack([v for k, v in vectors.items() if images[k][0] == group])
        assert vendi_rows[group] == ["3", f"{vendi(mine):.2f}"]
    matrix = np.stack(list(vectors.values()))
    labels = cluster(matrix, 2)
    shares = cluster_shares(labels, [g for g, _ in images.values()])
    found = sorted({int(x) for x in labels})
    assert rows(cluster_table) == {g: [pct(shares[g][c]) for c in found]
                                   for g in ("doctor", "nurse")}
    chosen = exemplars(matrix, labels)
    keys = list(images)
    alts = [a["alt"] for a in Elements(cluster_table).all("img", "unmake-thumb")]
    assert alts == [f"exemplar of cluster {n}: a photo of a {images[keys[chosen[c]]][0]} "
                    f"(seed {images[keys[chosen[c]]][1]})" for n, c in enumerate(found, 1)]


def test_two_figures_are_grouped_by_figure_and_a_shared_image_measured_once(
        measured: Built) -> None:
    zine = measured.zine
    records = stored(zine)
    doors = {k for k, r in of_type(records, "generate.image").items()
             if r["inputs"]["prompt"] == "a red door"}
    assert len(doors) == 3  # seed 2 of `left` and of `right` is one image
    palettes = [r for r in of_type(records, "measure.palette").values()
                if r["inputs"]["image"] in doors]
    assert sorted(r["inputs"]["image"] for r in palettes) == sorted(doors)

    figure = figure_of(zine.html("doors.md"), "door-readings")
    left = zine.line_of("doors.md", "```generate", 0)
    right = zine.line_of("doors.md", "```generate", 1)
    assert (f"Measured: 3 image(s) of left (docs/doors.md:{left}), right "
            f"(docs/doors.md:{right}), grouped by figure." in words(figure))
    thumbs = re.findall(r'<span class="unmake-thumb-label">(.*?)</span>(.*?)</div>',
                        figure.split('class="unmake-instrument')[0], re.S)
    assert [(g, [i["alt"] for i in Elements(cells).all("img")]) for g, cells in thumbs] == [
        ("left", ["a red door (seed 1)", "a red door (seed 2)"]),
        ("right", ["a red door (seed 2)", "a red door (seed 3)"])]
    assert re.findall(r"\(n = (\d+)\)", section(figure, "palette")) == ["2", "2"]


def test_frozen_build_renders_the_same_figure_without_torch(measured: Built,
                                                           tmp_path: Path) -> None:
    import shutil

    zine = measured.zine.copy(tmp_path / "z")
    before = zine.stamps()
    shutil.rmtree(zine.site)
    run = zine.unmake_noting_torch("build", "--frozen")
    assert run.rc == 0, run.output
    assert run.stdout.splitlines()[-1] == "TORCH False"
    for page, figure in (("index.md", "readings"), ("doors.md", "door-readings")):
        assert figure_of(zine.html(page), figure) == figure_of(measured.zine.html(page), figure)
    assert zine.stamps() == before


# -- bad input -----------------------------------------------------------------------------------
GENDER = {"gender": ["a man", "a woman"]}
BAD = {
    "by": ({"by": "colour", "palette": 2}, "by:",
           "'by' must name an axis of the measured figures (model, prompt, seed), got 'colour'"),
    "by figure": ({"by": "figure", "palette": 2}, "by:",
                  "'by' must name an axis of the measured figures (model, prompt, seed), "
                  "got 'figure'"),
    "reference group": ({"clip": GENDER, "reference": {"teacher": {"a woman": 0.5}},
                         "reference_source": SOURCE}, "teacher:",
                        "'reference.teacher' names no group of the figure (groups: doctor, "
                        "nurse)"),
    "reference label": ({"clip": GENDER, "reference": {"doctor": {"a child": 0.5}},
                         "reference_source": SOURCE}, "a child:",
                        "'reference.doctor.a child' is not a label of any set under 'clip:' "
                        "(labels: a man, a woman)"),
    "share": ({"clip": GENDER, "reference": {"doctor": {"a woman": 38}},
               "reference_source": SOURCE}, "a woman: 38",
              "'reference.doctor.a woman' must be a share from 0 to 1, got 38"),
    "no source": ({"clip": GENDER, "reference": {"doctor": {"a woman": 0.38}}}, "reference:",
                  "'reference' needs 'reference_source:'"),
    "source alone": ({"clip": GENDER, "reference_source": SOURCE}, "reference_source:",
                     "'reference_source' is given without 'reference:'"),
    "one label": ({"clip": {"gender": ["a man"]}}, "gender:",
                  "'clip.gender' 'labels' must list at least two texts, got ['a man']"),
    "template": ({"clip": {"gender": {"labels": ["a man", "a woman"],
                                      "template": "a portrait"}}}, "template:",
                 "'clip.gender' 'template' must hold '{}' once, where the label goes; got "
                 "'a portrait'"),
    "palette": ({"palette": 50}, "palette:",
                "'palette' must be a number of colours from 1 to 12 (or true for 5), got 50"),
    "clusters": ({"diversity": {"clusters": 1}}, "clusters:",
                 "'diversity.clusters' must be a number from 2 to 12, got 1"),
    "faces": ({"faces": "maybe"}, "faces:", "'faces' must be true or false, got 'maybe'"),
    "nothing": ({"caption": "Nothing."}, "```measure",
                "measures nothing: give at least one of clip, palette, faces, diversity"),
    "no of": ({"palette": 3}, "```measure", "'of' is required"),
    "clip model": ({"clip_model": "nope", "clip": GENDER}, "clip_model:",
                   "'clip_model' CLIP model 'nope' is not declared; known: default, "
                   "organism-clip, tiny-clip."),
    "clip model typo": ({"clip_model": "tiny-clp", "diversity": True}, "clip_model:",
                        "'clip_model' CLIP model 'tiny-clp' is not declared; did you mean "
                        "'tiny-clip'?"),
}
SOURCE_PAGE = "# Who works\n\nProse.\n\n" + generate(
    id="work", prompt="a photo of a {doctor|nurse}", seeds=[1, 2]) + "\n"


@pytest.mark.parametrize("case", BAD)
def test_bad_measure_is_one_error_naming_the_key(tmp_path: Path, case: str) -> None:
    body, line_with, message = BAD[case]
    page = SOURCE_PAGE + measure(**({} if case == "no of" else {"of": "work"}), **body)
    ctx = Context(tmp_path, tmp_path / "docs", Resolver({"default": "tiny"}, tmp_path),
                  Store(tmp_path / ".unmake"), {})
    with pytest.raises(DirectiveError) as err:
        plan_site({"p.md": ("docs/p.md", page)}, ctx)
    text = str(err.value)
    assert "\n" not in text
    line = next(i for i, t in enumerate(page.splitlines(), 1) if line_with in t
                and i > page.splitlines().index("```measure"))
    assert text.startswith(f"docs/p.md:{line}: measure: {message}"), text


def test_bad_measure_stops_the_build_with_one_line(zine) -> None:
    z = zine({"index.md": SOURCE_PAGE + measure(of="work", by="colour", palette=2)})
    run = z.unmake("build")
    assert run.rc != 0
    assert "Traceback" not in run.output
    assert run.lines("ERROR") == [
        f"ERROR   -  docs/index.md:{z.line_of('index.md', 'by: colour')}: measure: 'by' must "
        "name an axis of the measured figures (model, prompt, seed), got 'colour'"]
    assert not (z.store / "records").exists()


# -- known images through the whole runner path ---------------------------------------------------
KNOWN_PAGE = "# Known images\n\n" + generate(id="made", prompt=["same", "mixed"],
                                             seeds=[1, 2, 3, 4]) + "\n" + measure(
    of="made", clip={"medium": ["a photo", "a drawing", "a painting"]}, palette=2, faces=True,
    diversity=True)


def solid(rgb: tuple[int, int, int], size: int = 64) -> np.ndarray:
    return np.tile(np.array(rgb, dtype=np.uint8), (size, size, 1))


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class Known:
    store: Store
    plan: Plan
    html: str
    images: dict[tuple[str, int], str]  # (prompt, seed) -> the key of the image put there

    def record(self, job_type: str, image: str | None) -> dict[str, Any]:
        """The stored record of the one job of this type for this image (None: of no image)."""
        (job,) = [j for j in self.plan.jobs.values()
                  if j.type == job_type and j.inputs.get("image") == image]
        record = self.store.get(job.key)
        assert record is not None
        return record

    def reading(self, job_type: str, prompt: str, seed: int) -> dict[str, Any]:
        return self.record(job_type, self.images[(prompt, seed)])["data"]


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory, unmake_env: dict[str, str]) -> Known:
    """`same`: four identical red images; `mixed`: a photograph with a face, a blank grey,
    a solid blue and noise. Put in the store as the `made` figure's images, then measured."""
    astronaut = pytest.importorskip("skimage.data").astronaut()
    content = {("same", seed): solid((255, 0, 0)) for seed in (1, 2, 3, 4)}
    content |= {("mixed", 1): astronaut, ("mixed", 2): solid((128, 128, 128)),
                ("mixed", 3): solid((0, 0, 255)),
                ("mixed", 4): np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)}
    root = tmp_path_factory.mktemp("known")
    store = Store(root / ".unmake")
    pages = {"p.md": ("docs/p.md", KNOWN_PAGE)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNMAKE_CACHE", unmake_env["UNMAKE_CACHE"])  # tiny-clip, written once

        def plan() -> Plan:
            ctx = Context(root, root / "docs", Resolver({"default": "tiny"}, root), store, {})
            return plan_site(pages, ctx)

        images = {}
        for job in plan().missing:
            if job.type == "generate.image":
                where = (job.inputs["prompt"], job.inputs["seed"])
                images[where] = job.key
                store.put(job.key, job.describe(),
                          Result(files={"image": (png(content[where]), "png")}))
        measuring = plan()
        assert measuring.summary() == "33 jobs: 8 cached, 25 to run"
        assert {j.type for j in measuring.missing} == {
            "measure.embed", "measure.text", "measure.palette", "measure.faces"}
        assert execute(measuring, store, {"device": "cpu"}) == {}
    [_, planned] = measuring.pages["p.md"]
    html = KINDS["measure"].render(planned, PageRender(Renderer(store), lambda path: path))
    return Known(store, measuring, html, images)


def test_solid_colours_come_back_exactly(known: Known) -> None:
    for (prompt, seed), hexcode in [(("same", 1), "#ff0000"), (("same", 4), "#ff0000"),
                                    (("mixed", 2), "#808080"), (("mixed", 3), "#0000ff")]:
        colours = known.reading("measure.palette", prompt, seed)["colours"]
        assert [(c["hex"], c["share"]) for c in colours] == [(hexcode, 1.0)]
    (row,) = re.findall(r'<span class="unmake-thumb-label">same</span>(.*?)</div>',
                        section(known.html, "palette"), re.S)
    assert re.findall(r'title="([^"]*)"', row) == ["#ff0000: 100 %"]


def test_faces_are_found_where_there_is_one(known: Known) -> None:
    face = known.reading("measure.faces", "mixed", 1)
    assert face["count"] == 1
    assert 45 < face["faces"][0]["ita"] < 65
    for prompt, seed in [("mixed", 2), ("mixed", 3), ("mixed", 4), ("same", 1)]:
        assert known.reading("measure.faces", prompt, seed) == {"count": 0, "faces": []}
    table = rows(section(known.html, "faces"))
    assert table["same"][:4] == ["4", "0", "0", "–"]
    ita = face["faces"][0]["ita"]
    category = "very light" if ita > 55 else "light"
    assert table["mixed"][:4] == ["4", "1", "1", f"{ita:.0f} <small>({category})</small>"]


def test_clip_probabilities_sum_to_one_per_image(known: Known, unmake_env: dict[str, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from generator.backends import clip
    from generator.clipmodels import tiny_clip_ref

    labels = ["a photo", "a drawing", "a painting"]
    text = known.record("measure.text", None)
    assert text["inputs"]["prompts"] == [f"a photo of {label}" for label in labels]
    prompts, scale = label_set(text, 3)
    # the stored prompts are the model's embeddings of those texts, in order, with its scale
    monkeypatch.setenv("UNMAKE_CACHE", unmake_env["UNMAKE_CACHE"])
    ref = tiny_clip_ref()
    assert text["inputs"]["clip"] == ref.fingerprint
    loaded = clip.load(ref)
    np.testing.assert_allclose(prompts, clip.embed_texts(loaded, text["inputs"]["prompts"]),
                               atol=1e-6)
    assert scale == pytest.approx(clip.logit_scale(loaded), rel=1e-12)
    tops: dict[str, list[str]] = {"same": [], "mixed": []}
    for (prompt, seed) in known.images:
        vector = embedding(known.record("measure.embed", known.images[(prompt, seed)]))
        assert np.linalg.norm(vector) == pytest.approx(1, abs=1e-5)
        (probs,) = probabilities(vector[None, :], prompts, scale)
        assert probs.shape == (3,) and (probs >= 0).all()
        assert probs.sum() == pytest.approx(1.0, abs=1e-12)
        tops[prompt].append(labels[int(np.argmax(probs))])
    # the figure counts each image for that label; four identical images: one label takes all
    table = rows(section(known.html, "clip"))
    for group, top in tops.items():
        assert table[group][0] == "4"
        assert [cell.split(" <small>")[0] for cell in table[group][1:]] == [
            pct(top.count(label) / 4) for label in labels]
    assert sorted(cell.split(" <small>")[0] for cell in table["same"][1:]) == [
        "0 %", "0 %", "100 %"]


def test_identical_images_have_a_vendi_score_of_one(known: Known) -> None:
    table = rows(section(known.html, "diversity"))
    assert table["same"] == ["4", "1.00"]
    assert table["mixed"][0] == "4"
    assert float(table["mixed"][1]) > 1.05  # four clearly different images
