"""Directives as a graph: site-wide ids, `of:` references, two-pass planning, consumer keys that
carry their upstream keys, upstream-first execution, and a build whose upstream job fails.

Two tiers: tables planned in-process with `plan_site` (milliseconds; no built-in kind both
produces and consumes, so cycles use a throwaway `echo` kind registered for the test), then
end-to-end builds of one shared zine (built once per module, copied by every test that changes
it) whose measure page sorts before the page it measures.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import Elements, Zine, generate, make_zine

from generator import kinds
from generator.errors import DirectiveError
from generator.execute import execute
from generator.instruments.vectors import decode_vector, probabilities
from generator.models import Resolver
from generator.plan import plan_site
from generator.stats import wilson
from generator.store import Result, Store, StoreView
from generator.types import Context, Job, Kind, Output, Plan, Planned


def fence(kind: str, **body: Any) -> str:
    """A ```kind fence with `body` as its YAML."""
    text = yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=1000)
    return f"```{kind}\n{text}```\n"


def measure(**body: Any) -> str:
    return fence("measure", **body)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.fixture
def root(tmp_path: Path, unmake_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("UNMAKE_CACHE", unmake_env["UNMAKE_CACHE"])  # where tiny-clip lives
    return tmp_path


def context(root: Path, config: dict[str, Any] | None = None) -> Context:
    """A fresh build's context: each plan starts with no figures known."""
    return Context(root, root / "docs", Resolver({"default": "tiny"}, root),
                   Store(root / ".unmake"), config or {})


def plan_of(root: Path, pages: dict[str, str], config: dict[str, Any] | None = None) -> Plan:
    return plan_site({name: (f"docs/{name}", text) for name, text in pages.items()},
                     context(root, config))


def planning_error(root: Path, pages: dict[str, str], **kwargs: Any) -> str:
    with pytest.raises(DirectiveError) as err:
        plan_of(root, pages, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


# -- a throwaway kind that both produces and consumes images -------------------------------------
@dataclass(frozen=True)
class EchoSpec:
    id: str | None
    caption: str | None = None


def _echo_expand(spec: EchoSpec, ctx: Context, upstream: list[Planned]) -> list[Job]:
    images = [o.job for p in upstream for o in kinds.KINDS[p.directive.kind].outputs(p)]
    return [Job("echo.copy", {"image": image.key, **{k: image.inputs[k] for k in
                                                      ("prompt", "seed", "width", "height")}},
                group=("echo",), run=image.run, needs=(image.key,)) for image in images]


def echo_runner(jobs: list[Job], options: dict[str, Any]) -> Iterator[tuple[Job, Result]]:
    """Copies each upstream image; notes what kind of store it was handed."""
    store = options["store"]
    writers = [n for n in ("put", "put_blob", "put_derived", "write_atomic", "memo")
               if hasattr(store, n)]
    for job in jobs:
        image = store.read_bytes(job.inputs["image"], "image")
        yield job, Result(data={"view": isinstance(store, StoreView), "writers": writers},
                          files={"image": (image, "png")})


ECHO = Kind(
    name="echo",
    parse=lambda body, ctx: EchoSpec(body.take_str("id", None)),
    expand=_echo_expand,
    render=lambda planned, page: "",
    runners={"echo.copy": f"{__name__}:echo_runner"},
    produces="images",
    outputs=lambda planned: [Output(job, {"prompt": job.inputs["prompt"],
                                          "seed": f"seed {job.inputs['seed']}"})
                             for job in planned.jobs],
    consumes=("images",),
)


@pytest.fixture
def echo(monkeypatch: pytest.MonkeyPatch) -> Kind:
    monkeypatch.setitem(kinds.KINDS, "echo", ECHO)
    monkeypatch.setitem(kinds.RUNNERS, "echo.copy", ECHO.runners["echo.copy"])
    monkeypatch.setitem(kinds.JOB_KINDS, "echo.copy", ECHO)
    return ECHO


# -- references: unknown, unreadable, cyclic -----------------------------------------------------
PORTRAIT_PROMPT = "a photo of a {doctor|nurse}"
PORTRAITS = "# Who the model draws\n\n" + generate(id="portraits", prompt=PORTRAIT_PROMPT,
                                                   seeds=[1, 2])


def test_unknown_id_names_both_places_with_a_did_you_mean(root: Path) -> None:
    reader = "# Reader\n\n" + measure(of="portrait", palette=2)
    message = planning_error(root, {"a.md": PORTRAITS, "b.md": reader})
    assert message == ("docs/b.md:4: measure: 'of' no figure of the site has the id 'portrait'; "
                       "did you mean 'portraits' (docs/a.md:3)?")
    far = "# Reader\n\n" + measure(palette=2, of=["portraits", "zebras"])
    message = planning_error(root, {"a.md": PORTRAITS, "b.md": far})
    assert message == ("docs/b.md:5: measure: 'of' no figure of the site has the id 'zebras' "
                       "(ids: portraits)")


@pytest.mark.parametrize(("kind", "body"), [
    ("dataset", {"id": "rows", "dataset": "t", "sample": 1}),
    ("ecosystem", {"id": "rows", "model": "default"}),
])
def test_of_a_figure_whose_results_cannot_be_read(root: Path, kind: str,
                                                  body: dict[str, Any]) -> None:
    (root / "data").mkdir()
    pq.write_table(pa.Table.from_pylist([{"key": "000000001", "URL": "https://a.example/1.jpg",
                                          "TEXT": "a nurse"}]), root / "data" / "t.parquet")
    pages = {"a.md": "# Reader\n\n" + measure(of="rows", palette=2),
             "b.md": "# Source\n\nProse.\n\n" + fence(kind, **body)}
    message = planning_error(root, pages,
                             config={"datasets": {"t": {"metadata": "data/t.parquet"}}})
    article = "an" if kind == "ecosystem" else "a"
    assert message == (f"docs/a.md:4: measure: 'of' 'rows' is {article} {kind} figure "
                       "(docs/b.md:5), whose results a measure cannot read (it reads images "
                       "from: generate, trail)")


def test_a_self_reference_is_a_cycle(root: Path, echo: Kind) -> None:
    page = "# Loop\n\n" + fence("echo", id="me", of="me")
    assert planning_error(root, {"a.md": page}) == (
        "docs/a.md:5: echo: 'of' makes a cycle: docs/a.md:3 (me) -> docs/a.md:3 (me)")


def test_a_cycle_across_three_pages_names_every_place(root: Path, echo: Kind) -> None:
    # one -> three -> two -> one; `two` also reads a figure outside the cycle
    pages = {"a.md": PORTRAITS + "\n" + fence("echo", id="one", of="three"),
             "b.md": "# B\n\n" + fence("echo", id="two", of=["portraits", "one"]),
             "c.md": "# C\n\nProse.\n\n" + fence("echo", id="three", of="two")}
    one = line_of(pages["a.md"], "```echo")
    assert planning_error(root, pages) == (
        "docs/b.md:5: echo: 'of' makes a cycle: "
        f"docs/a.md:{one} (one) -> docs/c.md:5 (three) -> docs/b.md:3 (two) -> "
        f"docs/a.md:{one} (one)")


def test_a_chain_without_a_cycle_plans_upstream_first_in_any_page_order(root: Path,
                                                                       echo: Kind) -> None:
    pages = {"a.md": "# A\n\n" + fence("echo", id="copies-of-copies", of="copies"),
             "b.md": "# B\n\n" + fence("echo", id="copies", of="portraits"),
             "c.md": PORTRAITS}
    plan = plan_of(root, pages)
    (deep,), (copies,), (source,) = (plan.pages[p] for p in ("a.md", "b.md", "c.md"))
    assert deep.upstream == [copies] and copies.upstream == [source]
    assert [j.needs for j in copies.jobs] == [(j.key,) for j in source.jobs]
    assert [j.needs for j in deep.jobs] == [(j.key,) for j in copies.jobs]


# -- ids are anchors -----------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["Portraits", "fox_grid", "two words", "-lead", "double--dash",
                                 "café", "2x", "1990s-ads"])
def test_ids_are_anchors(root: Path, bad: str) -> None:
    page = "# Title\n\n" + generate(prompt="a fox", id=bad)
    where = f"docs/p.md:{line_of(page, 'id:')}"
    assert planning_error(root, {"p.md": page}) == (
        f"{where}: generate: 'id' must be an anchor of lowercase letters, digits and single "
        f"hyphens, starting with a letter (like 'steps-sweep'), got {bad!r}")


def test_an_id_may_not_be_a_heading_anchor_of_its_page(root: Path) -> None:
    page = "# Fox grid\n\n" + generate(id="fox-grid", prompt="a fox")
    assert planning_error(root, {"p.md": page}) == (
        f"docs/p.md:{line_of(page, 'id:')}: generate: 'id' 'fox-grid' is also the anchor of a "
        "heading on this page; links would go to one of them. Pick another id")
    # a heading of another page, or text inside a code fence, is no anchor of this page
    other = "# Notes\n\n```text\n# Fox grid\n```\n\n" + generate(id="fox-grid", prompt="a fox")
    plan_of(root, {"a.md": "# Fox grid\n", "p.md": other})


def test_the_same_id_on_two_pages_names_the_first_place(root: Path) -> None:
    again = "# Again\n\nProse.\n\n" + generate(prompt="an owl", id="portraits")
    assert planning_error(root, {"a.md": PORTRAITS, "b.md": again}) == (
        f"docs/b.md:{line_of(again, 'id:')}: generate: 'id' 'portraits' is already the id of "
        "the figure at docs/a.md:3; ids are unique across the site")


# -- two passes, keys that carry their upstream keys ---------------------------------------------
READINGS = measure(of="portraits", clip={"gender": ["a man", "a woman"]}, palette=2, faces=True,
                   diversity=True)


@pytest.mark.parametrize(("reader", "source"), [("a-readings.md", "b-portraits.md"),
                                                ("b-readings.md", "a-portraits.md")])
def test_a_consumer_plans_before_or_after_its_source_page(root: Path, reader: str,
                                                          source: str) -> None:
    plan = plan_of(root, {reader: "# Readings of portraits\n\n" + READINGS, source: PORTRAITS})
    (readings,), (portraits,) = plan.pages[reader], plan.pages[source]
    assert readings.upstream == [portraits]
    images = {job.key for job in portraits.jobs}
    assert len(images) == 4
    by_type: dict[str, list[Job]] = {}
    for job in readings.jobs:
        by_type.setdefault(job.type, []).append(job)
    # one of each per image (`clip:` and `diversity:` share the embedding, asked for once),
    # and one for the label set: its prompts, embedded once, whatever the images
    assert {t: len(js) for t, js in by_type.items()} == {
        "measure.embed": 4, "measure.text": 1, "measure.palette": 4, "measure.faces": 4}
    for job in by_type["measure.embed"] + by_type["measure.palette"] + by_type["measure.faces"]:
        assert job.needs == (job.inputs["image"],) and job.inputs["image"] in images
        assert job.origins == [f"docs/{reader}:3"]
    (text,) = by_type["measure.text"]
    assert text.needs == () and "image" not in text.inputs
    assert text.inputs["prompts"] == ["a photo of a man", "a photo of a woman"]
    assert text.origins == [f"docs/{reader}:3"]
    assert len(plan.jobs) == 17 and len(plan.missing) == 17


def test_a_job_key_includes_the_keys_it_needs() -> None:
    one = Job("measure.palette", {"k": 2}, needs=("a" * 64,))
    assert one.inputs == {"k": 2, "needs": ["a" * 64]}
    assert one.key != Job("measure.palette", {"k": 2}, needs=("b" * 64,)).key
    assert one.key == Job("measure.palette", {"k": 2}, needs=("a" * 64,)).key


def measurements(plan: Plan) -> dict[str, tuple[Any, ...]]:
    """key -> (job type, prompt, seed, prompts) of every measure job: what it measures, how
    (a label set's job measures no one image: its prompt and seed are None)."""
    images = {k: (j.inputs["prompt"], j.inputs["seed"]) for k, j in plan.jobs.items()
              if j.type == "generate.image"}
    images[None] = (None, None)
    return {k: (j.type, *images[j.inputs.get("image")], tuple(j.inputs.get("prompts", ())))
            for k, j in plan.jobs.items() if j.type.startswith("measure.")}


def test_new_upstream_results_mean_new_consumer_keys_and_nothing_else(root: Path) -> None:
    def plan(seeds: list[int], labels: list[str]) -> dict[str, tuple[Any, ...]]:
        source = "# Who the model draws\n\n" + generate(id="portraits", prompt=PORTRAIT_PROMPT,
                                                        seeds=seeds)
        reader = "# Readings\n\n" + measure(of="portraits", clip={"gender": labels}, palette=2,
                                            faces=True, diversity=True)
        return measurements(plan_of(root, {"a.md": reader, "b.md": source}))

    before = plan([1, 2], ["a man", "a woman"])
    assert len(before) == 13  # 4 images x (embed, palette, faces), and the label set's prompts
    # one seed changed: the other seed's measurements and the label set's keep their keys, the
    # new seed's are new
    changed = plan([1, 3], ["a man", "a woman"])
    assert {k for k in changed if k in before} == {k for k, v in before.items()
                                                   if v[2] in (1, None)}
    assert sorted(v[:3] for k, v in changed.items() if k not in before) == sorted(
        (t, p, 3) for t in ("measure.embed", "measure.faces", "measure.palette")
        for p in ("a photo of a doctor", "a photo of a nurse"))
    # a seed added: everything kept, three jobs for each new image
    added = plan([1, 2, 3], ["a man", "a woman"])
    assert set(before) < set(added) and len(added) == 19
    # a label set changed: one job is new, the set's prompts; every image's jobs are kept
    relabelled = plan([1, 2], ["a man", "a woman", "a person"])
    kept = {k for k in relabelled if k in before}
    assert kept == {k for k, v in before.items() if v[0] != "measure.text"}
    assert [v for k, v in relabelled.items() if k not in before] == [
        ("measure.text", None, None, ("a photo of a man", "a photo of a woman",
                                      "a photo of a person"))]


# -- running upstream first ----------------------------------------------------------------------
def test_missing_by_group_puts_upstream_groups_first() -> None:
    gen_a = Job("generate.image", {"prompt": "a"}, group=("tiny",))
    gen_b = Job("generate.image", {"prompt": "b"}, group=("tiny",))
    cached = Job("generate.image", {"prompt": "c"}, group=("tiny",))
    embed_a = Job("measure.embed", {"image": gen_a.key}, group=("clip",), needs=(gen_a.key,))
    embed_c = Job("measure.embed", {"image": cached.key}, group=("clip",), needs=(cached.key,))
    text = Job("measure.text", {"prompts": ["a photo of a fox"]}, group=("clip",))
    copy_b = Job("echo.copy", {"image": gen_b.key}, group=("echo",), needs=(gen_b.key,))
    # the same type and group at two depths: a palette of a generated image and one of a copy
    palette_a = Job("measure.palette", {"image": gen_a.key}, group=("palette",),
                    needs=(gen_a.key,))
    palette_copy = Job("measure.palette", {"image": copy_b.key}, group=("palette",),
                       needs=(copy_b.key,))
    missing = [palette_copy, palette_a, copy_b, embed_c, embed_a, gen_b, gen_a, text]
    plan = Plan({}, {j.key: j for j in [*missing, cached]}, {cached.key}, missing)

    groups = list(plan.missing_by_group().items())
    ran = [job for _, jobs in groups for job in jobs]
    assert sorted(j.key for j in ran) == sorted(j.key for j in missing)  # each once, none lost
    position = {job.key: i for i, (_, jobs) in enumerate(groups) for job in jobs}
    for job in ran:
        for need in job.needs:
            if need in position:
                assert position[need] < position[job.key], (job.type, plan.jobs[need].type)
    for key, jobs in groups:
        assert {(j.type, *j.group) for j in jobs} == {key[:2]}  # one runner call, one group
    assert groups[0][0][:2] == ("generate.image", "tiny")
    assert [j.key for j in groups[0][1]] == [gen_b.key, gen_a.key]  # in the plan's order
    # the embedding of a cached image is upstream-ready at once: the first group of its kind
    # runs with the generated images' embeddings, not after them
    assert position[embed_c.key] == position[embed_a.key]
    # a job that needs nothing (a label set's prompts) waits for no image
    assert [key for key, jobs in groups if text in jobs] == [("measure.text", "clip", 0)]
    assert position[text.key] < position[embed_a.key]


def test_runners_read_upstream_results_through_a_read_only_view(root: Path, echo: Kind) -> None:
    page = ("# Chain\n\n" + generate(id="source", prompt=["red", "blue"], seeds=[1]) + "\n"
            + fence("echo", id="copies", of="source") + "\n"
            + measure(of=["source", "copies"], by="figure", palette=1))
    pages = {"p.md": page}
    first = plan_of(root, pages)
    store = Store(root / ".unmake")
    colours = {"red": (255, 0, 0), "blue": (0, 0, 255)}
    for job in first.missing:  # made images stand in for the generated ones
        if job.type == "generate.image":
            store.put(job.key, job.describe(),
                      Result(files={"image": (png(solid(colours[job.inputs["prompt"]])), "png")}))
    plan = plan_of(root, pages)
    assert plan.summary() == "8 jobs: 2 cached, 6 to run"
    assert execute(plan, store, {}) == {}
    assert all(store.has(key) for key in plan.jobs)
    copies = [j for j in plan.jobs.values() if j.type == "echo.copy"]
    for job in copies:
        record = store.get(job.key)
        assert record is not None
        assert record["data"] == {"view": True, "writers": []}
        assert record["files"]["image"] == store.get(job.inputs["image"])["files"]["image"]
    palettes = [j for j in plan.jobs.values() if j.type == "measure.palette"]
    assert len(palettes) == 4  # two images and their two copies
    for job in palettes:
        prompt = plan.jobs[job.inputs["image"]].inputs["prompt"]
        colours = store.get(job.key)["data"]["colours"]
        assert [(c["hex"], c["share"]) for c in colours] == [
            ({"red": "#ff0000", "blue": "#0000ff"}[prompt], 1.0)]
    # what a view offers: reading, nothing else
    offered = [n for n in dir(StoreView) if not n.startswith("_")]
    assert {"get", "file", "read_bytes"} <= set(offered)
    assert not [n for n in offered if n.startswith(("put", "write", "save", "delete", "memo"))]


def solid(rgb: tuple[int, int, int], size: int = 32) -> np.ndarray:
    return np.tile(np.array(rgb, dtype=np.uint8), (size, size, 1))


def png(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


# -- end to end: one zine whose measure page sorts before the page it measures --------------------
PROMPTS_2 = ["a photo of a man", "a photo of a woman"]  # the label sets, templated
PROMPTS_3 = [*PROMPTS_2, "a photo of a person"]


def readings_page(labels: tuple[str, ...] = ("a man", "a woman")) -> str:
    return "# What the machine reads\n\nProse before.\n\n" + measure(
        id="readings", of="portraits", by="prompt", clip_model="tiny-clip",
        clip={"gender": list(labels)}, palette=2, faces=True, diversity=True,
        caption="Readings of a page that sorts after this one.")


def portraits_page(seeds: list[int]) -> str:
    return "# Who the model draws\n\n" + generate(id="portraits", prompt=PORTRAIT_PROMPT,
                                                  seeds=seeds)


def ran(n: int, counts: str) -> str:
    """The build log line of a build that ran n jobs without failures."""
    return rf"ran {n} job\(s\) in [\d.]+ s \({re.escape(counts)}\), 0 failed"


def clip_table(zine: Zine) -> dict[str, list[str]]:
    """group -> its row of the readings' clip table, as text: n, then each label's cell."""
    html = zine.html("a-readings.md").split('class="unmake-instrument unmake-clip"')[1]
    table = html.split("</section>")[0].split("<svg")[0]
    return {m[1]: [Elements(cell).text().strip() for cell in
                   re.findall(r"<td[^>]*>(.*?)</td>", m[2], re.S)]
            for m in re.finditer(r'<tr><th scope="row">(.*?)</th>(.*?)</tr>', table, re.S)}


def counted(zine: Zine, seeds: list[int], prompts: list[str]) -> dict[str, list[int]]:
    """group -> [n, images counted for each label]: recomputed, as the figure computes them,
    from the stored embeddings of the portraits of these seeds and the label set's record."""
    records = {key: zine.record(key) for key in zine.records()}
    (text,) = [r for r in records.values()
               if r["type"] == "measure.text" and r["inputs"]["prompts"] == prompts]
    labels = np.stack([decode_vector(v) for v in text["data"]["embeddings"]])
    groups: dict[str, list[np.ndarray]] = {"doctor": [], "nurse": []}
    for record in records.values():
        if record["type"] == "measure.embed":
            image = records[record["inputs"]["image"]]["inputs"]
            if image["seed"] in seeds:
                groups[image["prompt"].split()[-1]].append(
                    decode_vector(record["data"]["embedding"]))
    out = {}
    for group, rows in groups.items():
        top = probabilities(np.stack(rows), labels, text["data"]["logit_scale"]).argmax(axis=1)
        out[group] = [len(rows), *(int((top == i).sum()) for i in range(len(prompts)))]
    return out


def as_table(counts: dict[str, list[int]]) -> dict[str, list[str]]:
    """The clip table's text for these counts: n, and each label's share with its interval."""
    def pct(x: float) -> str:
        return f"{100 * x:.0f} %"

    return {group: [str(n), *(f"{pct(k / n)} ({pct(wilson(k, n)[0])}–{pct(wilson(k, n)[1])})"
                              for k in ks)] for group, (n, *ks) in counts.items()}


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory, unmake_env: dict[str, str]) -> Zine:
    pages = {"a-readings.md": readings_page(), "b-portraits.md": portraits_page([1, 2])}
    zine = make_zine(tmp_path_factory.mktemp("graph") / "zine", pages, unmake_env,
                     models={"broken": "broken-model"})  # used by the failure test only
    run = zine.unmake("build")
    assert run.rc == 0, run.output
    assert "17 jobs: 0 cached, 17 to run" in run.output
    assert re.search(ran(17, "4 generate.image, 4 measure.embed, 4 measure.faces, "
                             "4 measure.palette, 1 measure.text"), run.output), run.output
    return zine


def test_the_measure_page_before_its_source_page_builds(graph: Zine) -> None:
    html = graph.html("a-readings.md")
    page = Elements(html)
    (figure,) = page.all("figure", "unmake-measure")
    assert figure["id"] == "readings"
    assert "unmake-failure" not in html
    thumbs = page.all("img", "unmake-thumb")
    assert {t["alt"] for t in thumbs} >= {f"a photo of a {p} (seed {s})"
                                          for p in ("doctor", "nurse") for s in (1, 2)}
    assert clip_table(graph) == as_table(counted(graph, [1, 2], PROMPTS_2))


def test_the_measure_figure_links_its_source_on_another_page(graph: Zine) -> None:
    html = graph.html("a-readings.md")
    href = re.search(r'<a href="([^"]*)">portraits</a>', html)[1]
    path, _, anchor = href.partition("#")
    target = (graph.html_path("a-readings.md").parent / path).resolve()
    assert anchor == "portraits"
    assert (target / "index.html" if target.is_dir() else target) == \
        graph.html_path("b-portraits.md").resolve()


@pytest.mark.parametrize(("seeds", "summary"), [([1, 3], "17 jobs: 9 cached, 8 to run"),
                                                ([1, 2, 3], "25 jobs: 17 cached, 8 to run")],
                         ids=["one-seed-changed", "one-seed-added"])
def test_new_images_are_measured_and_nothing_else(graph: Zine, tmp_path: Path,
                                                  seeds: list[int], summary: str) -> None:
    zine = graph.copy(tmp_path / "z")
    before = zine.stamps()
    zine.write("b-portraits.md", portraits_page(seeds))
    run = zine.unmake("build")
    assert run.rc == 0, run.output
    assert summary in run.output
    assert re.search(ran(8, "2 generate.image, 2 measure.embed, 2 measure.faces, "
                            "2 measure.palette"), run.output), run.output
    after = zine.stamps()
    assert {k: after[k] for k in before} == before  # nothing stored was written again
    new = {k: zine.record(k) for k in set(after) - set(before)}
    images = {k for k, r in new.items() if r["type"] == "generate.image"}
    assert {new[k]["inputs"]["seed"] for k in images} == {3} and len(images) == 2
    # every other new record measures one of the new images, and reads nothing else
    for key, record in new.items():
        if key not in images:
            assert record["inputs"]["image"] in images, record["type"]
            assert record["inputs"]["needs"] == [record["inputs"]["image"]]
    assert sorted(r["type"] for r in new.values()) == sorted(
        2 * ["generate.image", "measure.embed", "measure.faces", "measure.palette"])
    alts = {t["alt"] for t in Elements(zine.html("a-readings.md")).all("img", "unmake-thumb")}
    assert {"a photo of a doctor (seed 3)", "a photo of a nurse (seed 3)"} <= alts
    assert ("a photo of a doctor (seed 2)" in alts) == (2 in seeds)
    # the label set's stored prompts count the new images with the kept ones
    assert clip_table(zine) == as_table(counted(zine, seeds, PROMPTS_2))


def test_a_new_label_set_reruns_only_its_prompts(graph: Zine, tmp_path: Path) -> None:
    zine = graph.copy(tmp_path / "z")
    before = zine.stamps()
    zine.write("a-readings.md", readings_page(("a man", "a woman", "a person")))
    where = f"docs/a-readings.md:{zine.line_of('a-readings.md', '```measure')}"
    prompts = " / ".join(PROMPTS_3)

    # 1. The plan says what will run, each job as its kind describes it; nothing is loaded.
    plan = zine.unmake_noting_torch("plan", "-v")
    assert plan.rc == 0, plan.output
    assert plan.stdout.splitlines()[-1] == "TORCH False"
    assert "unmake plan: 17 jobs: 16 cached, 1 to run" in plan.stdout
    for line in ("measure.text [CLIP tiny-clip]: 0 cached, 1 to run",
                 "measure.embed [CLIP tiny-clip]: 4 cached, 0 to run",
                 "measure.palette [palette]: 4 cached, 0 to run",
                 "measure.faces [faces]: 4 cached, 0 to run",
                 "generate.image [model default]: 4 cached, 0 to run"):
        assert f"  {line}\n" in plan.stdout, line
    listed = re.findall(rf"^    {re.escape(where)}: measure\.text embed the label prompts "
                        rf"{re.escape(prompts)}$", plan.stdout, re.M)
    assert len(listed) == 1

    # 2. A frozen build lists the same job the same way, with its key, and loads nothing.
    frozen = zine.unmake_noting_torch("build", "--frozen")
    assert frozen.rc != 0
    assert "Traceback" not in frozen.output
    assert frozen.stdout.splitlines()[-1] == "TORCH False"
    assert "1 of 17 results are not in the store" in frozen.output
    missing = re.findall(rf"^  {re.escape(where)}: measure\.text embed the label prompts "
                         rf"{re.escape(prompts)} \(CLIP tiny-clip\) \[([0-9a-f]{{12}})\]$",
                         frozen.output, re.M)
    assert len(missing) == 1
    assert zine.stamps() == before

    # 3. The build runs exactly that one: embeddings, palettes and faces stay cached.
    run = zine.unmake("build")
    assert run.rc == 0, run.output
    assert re.search(ran(1, "1 measure.text"), run.output), run.output
    after = zine.stamps()
    assert {k: after[k] for k in before} == before
    new = {k: zine.record(k) for k in set(after) - set(before)}
    assert [k[:12] for k in new] == missing
    (record,) = new.values()
    assert record["type"] == "measure.text"
    assert record["inputs"]["prompts"] == list(PROMPTS_3)
    assert len(record["data"]["embeddings"]) == 3 and record["data"]["logit_scale"] > 0
    # 4. The figure counts the kept embeddings against the new prompts.
    table = clip_table(zine)
    assert table == as_table(counted(zine, [1, 2], PROMPTS_3))
    assert all(len(row) == 4 for row in table.values())  # n and three labels
    clip = zine.html("a-readings.md").split('class="unmake-instrument unmake-clip"')[1]
    assert '<th scope="col">a person</th>' in clip.split("</section>")[0]


def test_a_failed_upstream_fails_its_consumers_visibly(graph: Zine, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from generator.models import tiny_ref

    zine = graph.copy(tmp_path / "z")
    monkeypatch.setenv("UNMAKE_CACHE", zine.env["UNMAKE_CACHE"])
    broken = zine.root / "broken-model"
    shutil.copytree(tiny_ref().path, broken)  # the tiny model with garbage UNet weights
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00garbage" * 64)
    zine.write("c-broken.md", "# Broken\n\n" + generate(
        id="broken-work", prompt="a broken model", seeds=[1, 2], model="broken")
        + "\nProse between.\n\n" + measure(
        id="broken-readings", of="broken-work", clip_model="tiny-clip",
        clip={"gender": ["a man", "a woman"]}, palette=2))
    site = {p: p.stat().st_mtime_ns for p in zine.site.rglob("*")}
    records = zine.stamps()

    run = zine.unmake("build")
    assert run.rc != 0
    assert "Traceback" not in run.output
    source = f"docs/c-broken.md:{zine.line_of('c-broken.md', '```generate')}"
    reader = f"docs/c-broken.md:{zine.line_of('c-broken.md', '```measure')}"
    # the label set's prompts are one job with a-readings.md's (the same set, the same CLIP
    # model), stored already: 17 jobs of the zine, the 6 new ones are the images' and theirs
    assert "23 jobs: 17 cached, 6 to run" in run.output, run.output
    # 2 images, and of each the embedding and the palette
    assert ("6 job(s) failed; site/ was left as it was; this build, with a failure box in each "
            "failed figure, is in .unmake/failed-site/") in run.output
    says = re.findall(rf"^  {re.escape(reader)}: (.*)$", run.output, re.M)
    assert len(says) == 4
    for line in says:
        assert line.startswith(f"not run: the generate.image job it reads failed ({source})"), line
    assert len(re.findall(rf"^  {re.escape(source)}: \w+", run.output, re.M)) == 2

    # site/ is untouched, failures are not stored, the failed build is kept to look at
    assert {p: p.stat().st_mtime_ns for p in zine.site.rglob("*")} == site
    assert not (zine.site / "c-broken").exists()
    assert zine.stamps() == records
    failed = zine.store / "failed-site"
    html = (failed / "c-broken" / "index.html").read_text("utf-8")
    images, readings = html.split('id="broken-readings"')
    assert images.count('class="unmake-failure') == 2
    assert readings.count('class="unmake-failure') == 2  # one box per instrument
    text = Elements(readings).text()
    assert text.count("2 measurement(s) failed") == 2
    assert text.count(f"not run: the generate.image job it reads failed ({source})") == 2
    # everything else is kept: the other pages render whole
    other = (failed / "a-readings" / "index.html").read_text("utf-8")
    assert "unmake-failure" not in other
    assert len(Elements(other).all("img", "unmake-thumb")) >= 4
    assert len(Elements((failed / "b-portraits" / "index.html").read_text("utf-8"))
               .all("a", "glightbox")) == 4
