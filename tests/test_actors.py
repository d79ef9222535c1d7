"""The `actors` directive and its data files: validation errors that name file, line and key;
focus, depth and filters against graphs whose answer is known; escaped hostile names;
byte-identical SVG across builds; snapshots of the graph and timeline."""

from __future__ import annotations

import itertools
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Elements
from safetensors.numpy import save_file

from generator import actors as data
from generator import svg
from generator.errors import DirectiveError
from generator.kinds import KINDS
from generator.kinds import actors as kind
from generator.models import Resolver
from generator.plan import plan_site
from generator.render import PageRender, Renderer
from generator.store import Store
from generator.types import Context

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("UNMAKE_UPDATE_SNAPSHOTS") == "1"

MAP = """\
actors:
  - name: Lab
    kind: organisation
    date: 2019
  - name: Data
    kind: dataset
    period: [2021-03, null]
  - name: Model
    kind: model
    date: 2022-08-22
  - name: Fund
    kind: funder
  - name: Licence
    kind: licence
relations:
  - from: Fund
    type: funded
    to: Lab
    date: 2020
    sources: ["@paper", "https://example.org/press"]
  - from: Lab
    type: built
    to: Model
    date: 2022-08
    sources: ["@paper"]
  - from: Model
    type: trained on
    to: Data
    period: [2022-03, 2022-07]
  - from: Model
    type: licensed under
    to: Licence
"""


BIB = "@misc{paper,\n  author = {Doe, Jane},\n  title = {A Paper},\n  year = {2021}\n}\n"


def ctx_for(root: Path, files: dict[str, str]) -> Context:
    for name, text in files.items():
        (root / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "docs" / name).write_text(text, "utf-8")
    (root / "refs.bib").write_text(BIB, "utf-8")
    return Context(root, root / "docs", Resolver({"default": "tiny"}, root),
                   Store(root / ".unmake"), {"bibliography": "refs.bib"})


def figure(ctx: Context, body: str) -> tuple[Any, str]:
    """(the planned figure, its HTML) for an actors directive with `body`."""
    page = f"# Page\n\n```actors\n{body}```\n"
    plan = plan_site({"p.md": ("docs/p.md", page)}, ctx)
    planned = plan.pages["p.md"][0]
    return planned, KINDS["actors"].render(planned, PageRender(Renderer(ctx.store), str))


def error_of(text: str) -> DirectiveError:
    with pytest.raises(DirectiveError) as info:
        data.parse_map(text, "docs/map.yml")
    return info.value


# -- data files: one located line per fault ---------------------------------------------------
@pytest.mark.parametrize(("edit", "line", "key", "words"), [
    # a YAML error: the line YAML stopped at
    (lambda t: t.replace("    kind: dataset", "    kind: [dataset"), 7, None, "YAML error"),
    # a relation to an actor the file does not have, with the nearest name
    (lambda t: t.replace("    to: Lab\n", "    to: Lab2\n"), 18, "relations[0].to",
     "names no actor of this file: 'Lab2'; did you mean 'Lab'?"),
    # a date that is not one
    (lambda t: t.replace("date: 2022-08\n", "date: 2022-13\n"), 24, "relations[1].date",
     "is not a date of the calendar"),
    (lambda t: t.replace("date: 2020\n", "date: last year\n"), 19, "relations[0].date",
     "must be a date written YYYY, YYYY-MM or YYYY-MM-DD"),
    (lambda t: t.replace("[2022-03, 2022-07]", "[2022-07, 2022-03]"), 29, "relations[2].period",
     "ends (2022-03) before it starts (2022-07)"),
    # a relation type one letter off a known one (the set is open, typos are not)
    (lambda t: t.replace("type: funded", "type: fundd"), 17, "relations[0].type",
     "did you mean 'funded'?"),
    (lambda t: t.replace("kind: funder", "kind: funders"), 12, "actors[3].kind",
     "did you mean 'funder'?"),
    (lambda t: t.replace("  - name: Licence", "  - name: Lab"), 13, "actors[4].name",
     "'Lab' is already the name of the actor on line 2"),
    (lambda t: t.replace('["@paper"]', '["paper"]'), 25, "relations[1].sources",
     "must be citation keys"),
    (lambda t: t.replace("    date: 2019", "    dat: 2019"), 4, "actors[0].dat",
     "did you mean 'date'?"),
    (lambda t: t.replace("relations:", "relation:"), 15, "relation", "did you mean 'relations'?"),
    (lambda t: t.replace("    kind: model\n", ""), 8, "actors[2]", "needs 'kind'"),
    (lambda t: t.replace("    date: 2019", "    date: 2019\n    date: 2020"), 5, "actors[0].date",
     "is given twice"),
])
def test_a_bad_data_file_is_one_line_naming_file_line_and_key(
        edit: Any, line: int, key: str | None, words: str) -> None:
    err = error_of(edit(MAP))
    assert err.file == "docs/map.yml" and err.line == line, str(err)
    assert err.key == key, str(err)
    assert words in str(err) and len(str(err).splitlines()) == 1
    assert str(err).startswith(f"docs/map.yml:{line}: actors data: ")


def test_open_relation_types_and_all_date_forms_are_accepted() -> None:
    amap = data.parse_map(MAP.replace("type: licensed under", "type: was sold to"), "m.yml")
    assert [r.type for r in amap.relations][-1] == "was sold to"  # far from every known type
    assert str(amap.actor("Model").when) == "2022-08-22"  # YAML's date, as written
    assert str(amap.actor("Data").when) == "2021-03–now"
    assert amap.relations[3].sources == ()  # allowed, rendered as unsourced
    assert amap.citation_keys() == ["paper", "paper"]


def test_a_data_file_error_names_the_data_file_and_a_bad_path_the_page(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, {"map.yml": MAP.replace("to: Lab\n", "to: Lbb\n")})
    with pytest.raises(DirectiveError, match=r"^docs/map\.yml:18: actors data: "
                                             r"'relations\[0\]\.to' names no actor"):
        figure(ctx, "data: map.yml\n")
    for body, words in (("data: nope.yml\n", "names no file: docs/nope.yml"),
                        ("data: ../../etc/x.yml\n", "must name a file inside the project"),
                        ("data: map.txt\n", "must name a .yml or .yaml file"),
                        ("data: map.yml\nfocus: Lbb\n", None)):
        if words is None:
            continue
        with pytest.raises(DirectiveError) as info:
            figure(ctx, body)
        assert str(info.value).startswith("docs/p.md:4: actors: 'data' ") and words in str(
            info.value), str(info.value)


@pytest.mark.parametrize(("body", "key", "words"), [
    ("focus: Lob\n", "focus", "did you mean 'Lab'?"),
    ("depth: 2\n", "depth", "give focus too"),
    ("focus: Lab\ndepth: 9\n", "depth", "must be"),
    ("types: [fundd]\n", "types", "did you mean 'funded'?"),
    ("period: [2023, 2020]\n", "period", "ends (2020) before it starts (2023)"),
    ("show: [graph, graph]\n", "show", "once each"),
])
def test_bad_directive_keys_are_located(tmp_path: Path, body: str, key: str,
                                        words: str) -> None:
    ctx = ctx_for(tmp_path, {"map.yml": MAP})
    with pytest.raises(DirectiveError) as info:
        figure(ctx, "data: map.yml\n" + body)
    assert info.value.key == key and words in str(info.value), str(info.value)
    line = 5 + next(i for i, text in enumerate(body.splitlines()) if text.startswith(key))
    assert info.value.file == "docs/p.md" and info.value.line == line


# -- what is on show, against answers known by construction ---------------------------------------
CHAIN = "actors:\n" + "".join(f"  - {{name: {n}, kind: organisation}}\n" for n in "ABCDE") + \
    "relations:\n" + "".join(
        f"  - {{from: {a}, type: {t}, to: {b}, date: {d}}}\n"
        for a, b, t, d in (("A", "B", "funded", 2010), ("B", "C", "built", 2015),
                           ("C", "D", "funded", 2020), ("D", "E", "hosts", 2024)))


@pytest.mark.parametrize(("body", "names", "relations"), [
    ("", "ABCDE", ["A-B", "B-C", "C-D", "D-E"]),
    ("focus: C\n", "BCD", ["B-C", "C-D"]),  # depth 1, both directions
    ("focus: C\ndepth: 2\n", "ABCDE", ["A-B", "B-C", "C-D", "D-E"]),
    ("focus: A\ndepth: 2\n", "ABC", ["A-B", "B-C"]),
    ("types: [funded]\n", "ABCD", ["A-B", "C-D"]),
    ("period: [2014, 2021]\n", "BCD", ["B-C", "C-D"]),
    ("focus: A\ntypes: [built]\n", "A", []),  # A's only relation is of another type
])
def test_focus_depth_and_filters_select_what_is_known(tmp_path: Path, body: str, names: str,
                                                      relations: list[str]) -> None:
    ctx = ctx_for(tmp_path, {"chain.yml": CHAIN})
    planned, html = figure(ctx, "data: chain.yml\n" + body)
    shown, rels = kind.select(planned.directive.spec)
    assert "".join(shown) == names
    assert [f"{r.source}-{r.target}" for r in rels] == relations
    # the table lists exactly the relations on show
    rows = re.findall(r"<tr(?: class=\"[^\"]*\")?>\s*<td>(\w)</td><td>[\w ]+</td><td>(\w)</td>",
                      html)
    assert [f"{a}-{b}" for a, b in rows] == relations


# -- drawing --------------------------------------------------------------------------------------
HOSTILE = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "A & B </svg>"]


def test_hostile_names_are_escaped_in_svg_and_html(tmp_path: Path) -> None:
    actors = "".join(f"  - name: '{n}'\n    kind: person\n    date: 2020\n    note: '{n}'\n"
                     for n in HOSTILE) + "  - {name: x, kind: other, note: \"\\u202eevil\"}\n"
    rels = "".join(f"  - {{from: '{a}', type: '{b}', to: '{b}', date: 2021, note: '{a}'}}\n"
                   for a, b in itertools.pairwise(HOSTILE))
    ctx = ctx_for(tmp_path, {"bad.yml": f"actors:\n{actors}relations:\n{rels}"})
    _, html = figure(ctx, "data: bad.yml\ncaption: '<b>caption</b>'\n")
    page = Elements(html)
    assert not page.all("script") and not page.all("img") and not page.all("b")
    text = page.text()
    for name in HOSTILE:
        assert name in text  # shown as text, in the SVG labels and the table
    assert "\u202e" not in html and "⟨U+202E⟩evil" in text  # bidi shown, never applied
    for svg_text in re.findall(r"<svg.*?</svg>", html, re.S):
        ET.fromstring(svg_text)  # noqa: S314 (our own output) well-formed: no name broke out of its element


def test_kinds_differ_by_shape_not_only_colour() -> None:
    elements = {k: re.sub(r"[\d.,-]+", "", svg.shape(k, 0, 0)).replace(svg.COLOURS[k], "")
                for k in data.KINDS}
    assert len(set(elements.values())) == len(data.KINDS)


def test_labels_wrap_and_are_cut_never_dropped() -> None:
    assert svg.wrap("Short") == ["Short"]
    assert svg.wrap("Ludwig Maximilian University of Munich") == [
        "Ludwig Maximilian", "University of Munich"]
    long = svg.wrap("x" * 80)
    assert len(long) == 2 and all(len(line) <= svg.LABEL_CHARS for line in long)
    assert long[1].endswith("…")


def test_layout_is_deterministic_and_separates_nodes() -> None:
    names = [f"n{i}" for i in range(9)]
    edges = [(f"n{i}", f"n{(i * 4) % 9}") for i in range(9)]
    first = svg.layout(names, edges)
    assert first == svg.layout(list(reversed(names)), list(reversed(edges)))
    points = list(first.values())
    assert min(abs(a[0] - b[0]) + abs(a[1] - b[1])
               for i, a in enumerate(points) for b in points[i + 1:]) > 0.05


def _snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if UPDATE or not path.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text, "utf-8")
        if not UPDATE:
            pytest.fail(f"wrote the new snapshot {path.name}; look at it and run again")
    assert text == path.read_text("utf-8"), (
        f"{name} changed; if on purpose, run with UNMAKE_UPDATE_SNAPSHOTS=1 and look at it")


def test_graph_and_timeline_snapshots(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, {"map.yml": MAP})
    _, html = figure(ctx, "id: sd-map\ndata: map.yml\ncaption: A map.\n")
    graph, timeline = re.findall(r"<svg.*?</svg>", html, re.S)
    assert 'marker-end="url(#sd-map-arrow)"' in graph
    assert graph.count('stroke-dasharray="5 4" marker-end') == 2  # the two unsourced relations
    for label in ("Lab", "Model", "funded 2020", "trained on 2022-03–2022-07", "funder"):
        assert f">{label}</tspan>" in graph
    for label in ("Lab built Model, 2022-08", "Data, 2021-03–now", "Model, 2022-08-22"):
        assert f">{label}</tspan>" in timeline
    _snapshot("actors-graph.svg", graph + "\n")
    _snapshot("actors-timeline.svg", timeline + "\n")


# -- end to end -----------------------------------------------------------------------------------
@pytest.mark.e2e
def test_two_builds_give_byte_identical_svg(zine: Any) -> None:
    page = "# Map\n\n```actors\nid: the-map\ndata: map.yml\n```\n"
    z = zine({"index.md": page}, plugin={"bibliography": "refs.bib"})
    (z.docs / "map.yml").write_text(MAP, "utf-8")
    (z.root / "refs.bib").write_text(BIB, "utf-8")
    svgs = []
    for seed in ("1", "2"):  # another hash seed: no set order may leak into the drawing
        run = z.unmake("build", env={"PYTHONHASHSEED": seed})
        assert run.rc == 0, run.output
        svgs.append(re.findall(r'<svg [^>]*class="unmake-actors-.*?</svg>', z.html(), re.S))
    assert len(svgs[0]) == 2 and svgs[0] == svgs[1]
    assert "Lab built Model" in svgs[0][1] or "Lab built Model" in z.html()
    bad = z.docs / "map.yml"
    bad.write_text(MAP.replace("to: Lab\n", "to: Lub\n"), "utf-8")
    run = z.unmake("build")
    assert run.rc != 0
    assert "docs/map.yml:18: actors data: 'relations[0].to' names no actor of this file: " \
           "'Lub'; did you mean 'Lab'?" in run.output
    assert svgs[0][0] in z.html(), "the last good site is kept"


# -- lineage (ecosystem: lineage: true) -----------------------------------------------------------
def _model(folder: Path, base: str | None) -> None:
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (folder / "unet").mkdir()
    save_file({"w": np.zeros(2, np.float32)}, str(folder / "unet" / "m.safetensors"))
    if base is not None:
        (folder / "README.md").write_text(f"---\nbase_model: {base}\n---\n# card\n", "utf-8")


LINEAGE_ACTORS = """\
actors:
  - {name: org/base-v1, kind: model}
  - {name: org/base-v0, kind: model}
  - {name: Lab, kind: organisation}
relations:
  - {from: org/base-v1, type: fine-tuned from, to: org/base-v0, date: 2022-06,
     sources: ["@paper"]}
  - {from: Lab, type: released, to: org/base-v1}
"""


def test_lineage_follows_cards_through_local_models_then_the_actors_file(
        tmp_path: Path) -> None:
    # child (local) -> middle (local, by its folder path) -> org/base-v1 (no local copy: the
    # actors file goes on) -> org/base-v0 (nothing says more)
    _model(tmp_path / "middle", "org/base-v1")
    _model(tmp_path / "child", "./middle")
    ctx = ctx_for(tmp_path, {"lineage.yml": LINEAGE_ACTORS})
    ctx.resolver.aliases["child"] = "./child"
    page = ("# Page\n\n```ecosystem\nid: lin\nmodel: child\nfacts: [base_model]\n"
            "lineage: true\nactors: lineage.yml\n```\n")
    plan = plan_site({"p.md": ("docs/p.md", page)}, ctx)
    planned = plan.pages["p.md"][0]
    lineage = planned.directive.spec.lineage
    assert [(s.child, s.parent, s.via) for s in lineage.steps] == [
        ("child", "./middle", "card"), ("./middle", "org/base-v1", "card"),
        ("org/base-v1", "org/base-v0", "actors")]
    assert dict(lineage.nodes) == {"child": "local model", "./middle": "local model",
                                   "org/base-v1": "model", "org/base-v0": "model"}
    html = KINDS["ecosystem"].render(planned, PageRender(Renderer(ctx.store), str))
    graph = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(graph) == 1
    for label in ("child", "./middle", "org/base-v1", "org/base-v0", "base model",
                  "fine-tuned from"):
        assert f">{label}</tspan>" in graph[0], label
    assert "model card of child" in html and "<code>@paper</code>" in html
    ET.fromstring(graph[0])  # noqa: S314 (our own output)


def test_lineage_errors_and_a_card_naming_itself(tmp_path: Path) -> None:
    _model(tmp_path / "loop", "./loop")
    ctx = ctx_for(tmp_path, {"lineage.yml": LINEAGE_ACTORS})
    ctx.resolver.aliases["loop"] = "./loop"
    page = "# P\n\n```ecosystem\nmodel: loop\nlineage: true\n```\n"
    lineage = plan_site({"p.md": ("docs/p.md", page)}, ctx).pages["p.md"][0].directive.spec.lineage
    assert lineage.steps == () and "names the model itself" in lineage.notes[0]
    with pytest.raises(DirectiveError, match=r"^docs/p\.md:5: ecosystem: 'actors' is read for "
                                             r"the lineage; add `lineage: true`"):
        plan_site({"p.md": ("docs/p.md", "# P\n\n```ecosystem\nmodel: loop\n"
                            "actors: lineage.yml\n```\n")}, ctx)


# -- the shipped example, in a browser without JavaScript ------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


def _example_zine(zine: Any) -> Any:
    """The example's ecosystem page with its actors file and references; its `ecosystem`
    fact sheets (which need the example's models) left out."""
    from generator.directives import find

    text = (ROOT / "investigations" / "ecosystem.md").read_text("utf-8")
    lines = text.splitlines()
    for block in reversed(find(text, "ecosystem.md", {"ecosystem"})):
        del lines[block.line - 1 : block.end]
    z = zine({"ecosystem.md": "\n".join(lines) + "\n"}, plugin={"bibliography": "references.bib"})
    (z.docs / "ecosystem").mkdir()
    (z.docs / "ecosystem" / "stable-diffusion.yml").write_bytes(
        (ROOT / "investigations" / "ecosystem" / "stable-diffusion.yml").read_bytes())
    bib = ROOT / "investigations" / "references.bib"
    (z.root / "references.bib").write_bytes(bib.read_bytes())
    return z


def texts(locator: Any) -> list[str]:
    """The text of SVG elements (they have no innerText)."""
    return list(locator.evaluate_all("els => els.map(e => e.textContent)"))


@pytest.mark.e2e
@pytest.mark.browser
def test_the_example_map_reads_without_javascript(zine: Any, tmp_path: Path) -> None:
    from test_browser import ARGS, CHROMIUM, _unavailable

    reason = _unavailable()
    if reason:
        if os.environ.get("UNMAKE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests are required here, but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    z = _example_zine(zine)
    run = z.unmake("build")
    assert run.rc == 0, run.output
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            for width in (1280, 390):  # a laptop, a phone
                page = browser.new_page(viewport={"width": width, "height": 900},
                                        java_script_enabled=False)
                page.goto(z.html_path("ecosystem.md").as_uri())
                graph = page.locator("#sd-actors svg.unmake-actors-graph")
                timeline = page.locator("#sd-actors svg.unmake-actors-timeline")
                assert graph.count() == 1 and timeline.count() == 1
                box = graph.bounding_box()
                assert box and box["width"] >= min(560, width - 40) and box["height"] > 300
                labels = texts(graph.locator("text.label"))
                for name in ("LAION-5B", "Stability AI", "Common Crawl", "OpenAI"):
                    assert name in labels
                edges = texts(graph.locator("text.edge-label"))
                assert "filtered by" in edges and "released 2022-08-22" in edges
                assert any(t.startswith("Stability AI released") and t.endswith(", 2022-08-22")
                           for t in texts(timeline.locator("text.label")))
                # the focused, filtered map: LAION-5B's surroundings, no release
                focused = page.locator("#sd-data svg.unmake-actors-graph text.label")
                assert "LAION-5B" in texts(focused)
                assert "Stability AI" not in texts(focused)
                # every source a citation of the references list at the end
                refs = page.locator(".unmake-references p.unmake-reference")
                assert refs.count() == 11
                anchors = page.locator("#sd-actors .unmake-cite a").evaluate_all(
                    "els => els.map(e => e.getAttribute('href'))")
                ids = {f"#{i}" for i in refs.evaluate_all("els => els.map(e => e.id)")}
                assert anchors and set(anchors) <= ids
                page.screenshot(path=str(tmp_path / f"ecosystem-{width}.png"), full_page=True)
                page.close()
        finally:
            browser.close()
