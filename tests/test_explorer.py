"""The grid explorer of `generate` figures with three or more axes (templates/unmake.js), in a
real headless Chromium: real clicks and keys, each image shown checked against the record of
its cell in the store; the plain panels without JavaScript; the example's roles grid at a
laptop's and a phone's width.

One small zine, built once: a 4-axis figure (2 prompts whose labels are markup × 2 seeds ×
2 guidance scales × 2 step counts, 16 images of 32 px on the tiny model) and the roles
figure of investigations/output.md, as written there but on the tiny model at 32 px.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Elements, Zine, generate, make_zine
from test_browser import _OVERFLOWING, LAPTOP, PHONE, Watched, _served, browser, open_page

from generator.kinds.generate import explorer_json

__all__ = ["browser"]  # the fixture, shared with test_browser
in_chromium = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
NEW_CONFIG = REPO / "templates" / "new" / "mkdocs.yml"
# labels that are markup: the explorer must show them as text
PROMPTS = ["a </script><script>alert(1)</script> fox", "a <b>bold</b> fox"]
LABELS = ["</script><script>alert(1)</script>", "<b>bold</b>"]
AXES = {"prompt": PROMPTS, "seed": [1, 2], "guidance": [1.0, 7.5], "steps": [1, 2]}
SHOWN = {"prompt": LABELS, "seed": ["seed 1", "seed 2"],
         "guidance": ["guidance 1.0", "guidance 7.5"], "steps": ["steps 1", "steps 2"]}
EXPLORED = generate(id="sweep", prompt=PROMPTS, seeds=[1, 2],
                    sweep={"guidance": [1.0, 7.5], "steps": [1, 2]},
                    caption="Four axes, two values each.").replace("steps: 2\n", "", 1)


def roles_fence() -> str:
    """The `roles` figure of the example zine, on the tiny model, small and fast."""
    text = (REPO / "investigations" / "output.md").read_text("utf-8")
    for body in re.findall(r"^```generate\n(.*?)^```", text, re.M | re.S):
        spec = yaml.safe_load(body)
        if spec.get("id") == "roles":
            spec.pop("model", None)
            return generate(**{**spec, "steps": 2, "size": 32})
    raise AssertionError("investigations/output.md has no generate figure `roles`")


# -- without a browser -------------------------------------------------------------------------
def test_the_explorer_data_cannot_end_its_script_block() -> None:
    text = explorer_json([("prompt", tuple(PROMPTS)), ("seed", (1, 2)), ("steps", (1, 2))],
                         dict(zip(PROMPTS, [*LABELS[:1], "a\u2028<!--" + "\u202e"], strict=True)),
                         "prompt", "seed", [[0, 0, 0], [1, 1, 1]])
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    data = json.loads(text)
    assert data["axes"][0]["labels"] == [LABELS[0], "a\u2028<!--⟨U+202E⟩"]  # bidi shown
    assert data["axes"][1] == {"name": "seed", "labels": ["seed 1", "seed 2"]}
    assert (data["rows"], data["cols"], data["cells"]) == (0, 1, [[0, 0, 0], [1, 1, 1]])


# -- in Chromium -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def zine(tmp_path_factory: pytest.TempPathFactory, unmake_env: dict[str, str]) -> Zine:
    root = tmp_path_factory.mktemp("explorer") / "zine"
    made = make_zine(root, {"index.md": "# Explore\n\n" + EXPLORED,
                            "roles.md": "# Jobs\n\n" + roles_fence()},
                     unmake_env, nav=["index.md", "roles.md"])
    config = yaml.safe_load((root / "mkdocs.yml").read_text("utf-8"))
    config["theme"]["palette"] = yaml.safe_load(NEW_CONFIG.read_text("utf-8"))["theme"]["palette"]
    (root / "mkdocs.yml").write_text(yaml.safe_dump(config), "utf-8")
    run = made.unmake("build")
    assert run.rc == 0, run.output
    return made


@pytest.fixture(scope="module")
def site(zine: Zine) -> Iterator[str]:
    with _served(zine.site) as base:
        yield base


@pytest.fixture(scope="module")
def truth(zine: Zine) -> dict[tuple[Any, ...], str]:
    """(prompt, seed, guidance, steps) -> the sha256 of that image, from the store's records."""
    out = {}
    for key in zine.records():
        record = zine.record(key)
        if record["type"] == "generate.image" and record["inputs"]["prompt"] in PROMPTS:
            i = record["inputs"]
            out[i["prompt"], i["seed"], i["guidance"], i["steps"]] = \
                record["files"]["image"]["sha256"]
    assert len(out) == 16
    return out


@contextlib.contextmanager
def _page(browser: Any, url: str, **options: Any) -> Iterator[Any]:
    with contextlib.closing(browser.new_context(viewport=options.pop("viewport", LAPTOP),
                                                **options)) as context:
        watched = Watched(context.new_page())
        watched.page.set_default_timeout(15_000)
        yield open_page(watched, url)
        watched.assert_clean()  # no script error, no alert from a label, nothing remote


def _expect(view: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The parameters of each cell of a view (rows, cols and the other axes' values)."""
    out = []
    for r in AXES[view["rows"]]:
        row = []
        for c in AXES[view["cols"]]:
            row.append({**view["at"], view["rows"]: r, view["cols"]: c})
        out.append(row)
    return out


def _check_grid(page: Any, view: dict[str, Any], truth: dict[tuple[Any, ...], str]) -> None:
    """The explorer's grid shows, in each cell, the image of that cell's record."""
    grid = page.locator("figure#sweep table.unmake-explorer-grid")
    heads = grid.locator("thead th").all_inner_texts()
    assert heads[1:] == SHOWN[view["cols"]]
    assert grid.locator("tbody th").all_inner_texts() == SHOWN[view["rows"]]
    for r, row in enumerate(_expect(view)):
        for c, p in enumerate(row):
            img = grid.locator("tbody tr").nth(r).locator("td").nth(c).locator("img")
            assert img.is_visible()
            sha = truth[p["prompt"], p["seed"], p["guidance"], p["steps"]]
            assert img.get_attribute("src").endswith(f"/{sha}.webp"), (r, c, p)
            assert img.get_attribute("alt") == (f"{p['prompt']} (seed {p['seed']}, "
                                                f"guidance {p['guidance']}, steps {p['steps']})")
    # only the explorer's cells are on show: the plain panels are hidden
    assert page.locator("figure#sweep img:visible").count() == 4


def _choose(page: Any, axis: str, index: int) -> None:
    """Click the radio button of an axis value (the axis is neither rows nor columns)."""
    fieldset = page.locator("figure#sweep fieldset.unmake-explorer-axis").filter(
        has=page.locator(f"legend:text-is('{axis}')"))
    fieldset.locator("label").nth(index).click()


@in_chromium
def test_the_explorer_switches_axes_and_shows_the_right_images(browser: Any, site: str,
                                                               truth: Any) -> None:
    with _page(browser, site) as page:
        assert page.locator("figure#sweep .unmake-explorer").is_visible()
        # the figure's own rows and columns first, the other axes at their first values
        view = {"rows": "prompt", "cols": "seed", "at": {"guidance": 1.0, "steps": 1}}
        _check_grid(page, view, truth)
        _choose(page, "steps", 1)
        view["at"]["steps"] = 2
        _check_grid(page, view, truth)
        # guidance along the rows: prompt becomes a chosen value; pick the second prompt
        page.locator("figure#sweep select[aria-label=rows]").select_option(label="guidance")
        _choose(page, "prompt", 1)
        view = {"rows": "guidance", "cols": "seed", "at": {"prompt": PROMPTS[1], "steps": 2}}
        _check_grid(page, view, truth)
        # columns to guidance, the rows' axis: the two swap
        page.locator("figure#sweep select[aria-label=columns]").select_option(label="guidance")
        view = {**view, "rows": "seed", "cols": "guidance"}
        _check_grid(page, view, truth)
        page.locator("figure#sweep button.unmake-swap").click()
        view = {**view, "rows": "guidance", "cols": "seed"}
        _check_grid(page, view, truth)
        # labels that are markup read as text, and make no element
        page.locator("figure#sweep select[aria-label=rows]").select_option(label="prompt")
        assert page.locator("figure#sweep table.unmake-explorer-grid tbody th") \
            .all_inner_texts() == LABELS
        assert page.locator("figure#sweep table.unmake-explorer-grid b").count() == 0
        assert page.locator("figure#sweep .unmake-explorer-status").inner_text() == \
            "Showing 4 of 16 images (guidance 1.0, steps 2)."


@in_chromium
def test_a_moved_cell_keeps_its_lightbox_and_provenance(browser: Any, site: str,
                                                        truth: Any) -> None:
    with _page(browser, site) as page:
        page.locator("figure#sweep select[aria-label=rows]").select_option(label="steps")
        _choose(page, "guidance", 1)
        cell = _cell(page, 1, 0)  # steps 2, seed 1, guidance 7.5, the first prompt
        sha = truth[PROMPTS[0], 1, 7.5, 2]
        cell.locator("summary").click()
        assert "7.5" in cell.locator("details.unmake-prov dl").inner_text()
        cell.locator("summary").click()
        cell.locator("img").click()
        slide = page.locator(".glightbox-container .gslide.current")
        slide.locator("img").wait_for(state="visible")
        assert slide.locator("img").get_attribute("src").endswith(f"/{sha}.webp")
        assert slide.locator(".gslide-title").inner_text() == \
            f"{PROMPTS[0]} (seed 1, guidance 7.5, steps 2)"
        page.keyboard.press("Escape")
        page.locator(".glightbox-container").wait_for(state="detached")
        # Escape in the lightbox closed only the lightbox
        assert page.locator("figure#sweep .unmake-explorer").is_visible()


@in_chromium
def test_a_view_opens_from_the_address_and_is_kept_there(browser: Any, site: str,
                                                          truth: Any) -> None:
    from urllib.parse import parse_qs, urlsplit

    # steps out of range and an unknown axis are ignored; the rest applies
    url = site + "?sweep=rows:guidance,cols:steps,prompt:1,seed:1,steps:9,colour:0&other=1#sweep"
    with _page(browser, url) as page:
        view = {"rows": "guidance", "cols": "steps", "at": {"prompt": PROMPTS[1], "seed": 2}}
        _check_grid(page, view, truth)
        assert urlsplit(page.url).query == urlsplit(url).query  # opening it writes nothing
        page.locator("figure#sweep button.unmake-swap").click()
        _choose(page, "seed", 0)
        address = urlsplit(page.url)
        assert parse_qs(address.query) == {
            "sweep": ["rows:steps,cols:guidance,prompt:1,seed:0"], "other": ["1"]}
        assert address.fragment == "sweep"
        page.reload()
        page.wait_for_load_state("networkidle")
        _check_grid(page, {"rows": "steps", "cols": "guidance",
                           "at": {"prompt": PROMPTS[1], "seed": 1}}, truth)


def _cell(page: Any, r: int, c: int) -> Any:
    return page.locator("figure#sweep table.unmake-explorer-grid tbody tr").nth(r) \
        .locator("td").nth(c)


def _compared(page: Any) -> list[str]:
    return [img.get_attribute("src")
            for img in page.locator("figure#sweep .unmake-compare img").all()]


@in_chromium
def test_compare_shows_two_cells_picked_across_any_axis(browser: Any, site: str,
                                                        truth: Any) -> None:
    with _page(browser, site) as page:
        compare = page.locator("figure#sweep .unmake-compare")
        _cell(page, 0, 0).locator("button.unmake-pick").click()
        assert not compare.is_visible()
        assert "Pick a second cell" in page.locator("figure#sweep .unmake-explorer-status") \
            .inner_text()
        _choose(page, "guidance", 1)  # the second from another panel of the plain figure
        _cell(page, 1, 1).locator("button.unmake-pick").click()
        assert compare.is_visible()
        a = truth[PROMPTS[0], 1, 1.0, 1]
        b = truth[PROMPTS[1], 2, 7.5, 1]
        assert [src.rsplit("/", 1)[1] for src in _compared(page)] == [f"{a}.webp", f"{b}.webp"]
        # what differs is marked, in words as well as in weight
        differs = compare.locator("figure").first.locator("dd.unmake-differs")
        assert [d.get_attribute("data-axis") for d in differs.all()] == \
            ["prompt", "seed", "guidance"]
        assert all(t.startswith("≠ ") for t in differs.all_inner_texts())
        assert compare.locator("figure").nth(1).locator("dd[data-axis=steps]").inner_text() \
            == "steps 1"
        # a third pick replaces the oldest; picking a picked cell again unpicks it
        _cell(page, 0, 1).locator("button.unmake-pick").click()
        assert [src.rsplit("/", 1)[1] for src in _compared(page)] == \
            [f"{b}.webp", f"{truth[PROMPTS[0], 2, 7.5, 1]}.webp"]
        _cell(page, 0, 1).locator("button.unmake-pick").click()
        assert not compare.is_visible()
        assert page.locator("figure#sweep button.unmake-pick[aria-pressed=true]").count() == 1
        # the close button
        _cell(page, 0, 0).locator("button.unmake-pick").click()
        compare.locator("button.unmake-compare-close").click()
        assert not compare.is_visible()
        assert page.locator("figure#sweep button.unmake-pick[aria-pressed=true]").count() == 0


_FOCUSED = """() => { const td = document.activeElement;
  const tr = td.closest("tr"); return td.tagName === "TD"
    ? [tr.rowIndex - 1, [...tr.cells].indexOf(td) - 1] : td.tagName; }"""


@in_chromium
def test_keyboard_moves_picks_and_escape_closes(browser: Any, site: str, truth: Any) -> None:
    with _page(browser, site) as page:
        first = _cell(page, 0, 0)
        assert first.get_attribute("tabindex") == "0"  # one tab stop for the whole grid
        assert page.locator("figure#sweep table.unmake-explorer-grid td[tabindex='0']").count() \
            == 1
        first.focus()
        page.keyboard.press("ArrowRight")
        assert page.evaluate(_FOCUSED) == [0, 1]
        page.keyboard.press("ArrowRight")  # the edge: stays
        assert page.evaluate(_FOCUSED) == [0, 1]
        page.keyboard.press("ArrowDown")
        assert page.evaluate(_FOCUSED) == [1, 1]
        page.keyboard.press("Enter")
        page.keyboard.press("Home")
        assert page.evaluate(_FOCUSED) == [1, 0]
        page.keyboard.press("ArrowUp")
        scrolled = page.evaluate("() => window.scrollY")
        page.keyboard.press(" ")
        assert page.evaluate("() => window.scrollY") == scrolled  # Space picked, not scrolled
        compare = page.locator("figure#sweep .unmake-compare")
        assert compare.is_visible()
        assert [src.rsplit("/", 1)[1] for src in _compared(page)] == [
            f"{truth[PROMPTS[1], 2, 1.0, 1]}.webp", f"{truth[PROMPTS[0], 1, 1.0, 1]}.webp"]
        page.keyboard.press("Escape")
        assert not compare.is_visible()
        assert page.evaluate(_FOCUSED) == [0, 0]  # focus stays in the grid, where it was
        assert page.locator("figure#sweep button.unmake-pick[aria-pressed=true]").count() == 0


@in_chromium
def test_without_javascript_every_panel_shows(browser: Any, site: str, zine: Zine) -> None:
    with _page(browser, site, java_script_enabled=False) as page:
        figure = page.locator("figure#sweep")
        assert figure.locator(".unmake-explorer").count() == 0
        assert figure.locator(".unmake-panel-title").all_inner_texts() == [
            "guidance 1.0, steps 1", "guidance 1.0, steps 2",
            "guidance 7.5, steps 1", "guidance 7.5, steps 2"]
        imgs = figure.locator("table.unmake-grid img")
        assert imgs.count() == 16
        for img in imgs.all():
            assert img.is_visible()
    # the figure's data travels with it; a two-axis figure gets none
    page = Elements(zine.html("index.md"))
    assert len(page.all("td", "unmake-cell")) == 16
    assert len(page.all("script", "unmake-explorer-data")) == 1
    assert not Elements(zine.html("roles.md")).all("script", "unmake-explorer-data")


_GRID = """sel => { const w = document.querySelector(sel);
  return {scroll: w.scrollWidth, client: w.clientWidth,
          imgs: [...w.querySelectorAll("img")].map(i => i.getBoundingClientRect().width)}; }"""


@in_chromium
def test_the_roles_grid_fits_a_laptop_and_reads_on_a_phone(browser: Any,
                                                                 site: str) -> None:
    sel = "figure#roles .unmake-grid-wrap"
    with _page(browser, site + "roles/") as page:
        grid = page.evaluate(_GRID, sel)
        assert grid["scroll"] <= grid["client"], grid  # no scrollbar at 1280 px
        assert page.evaluate("() => document.documentElement.scrollWidth") <= LAPTOP["width"]
    with _page(browser, site + "roles/", viewport=PHONE) as page:
        assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
        assert page.evaluate(_OVERFLOWING) == []
        grid = page.evaluate(_GRID, sel)
        assert min(grid["imgs"]) >= 48 - .5, grid  # readable: cells no smaller than 48 px
        labels = page.locator("figure#roles th[scope=row]").all()
        assert all(label.bounding_box()["width"] >= 40 for label in labels)


_CONTRAST = r"""sel => {
  const rgba = s => {
    const v = s.match(/[\d.]+/g).map(Number);
    return [...v.slice(0, 3), v[3] ?? 1];
  };
  const rgb = s => rgba(s).slice(0, 3);
  const lum = c => { const [r, g, b] = c.map(v => { v /= 255;
      return v <= .03928 ? v / 12.92 : ((v + .055) / 1.055) ** 2.4; });
    return .2126 * r + .7152 * g + .0722 * b; };
  const opaque = s => !/^rgba\(.*, 0\)$/.test(s) && s !== "transparent";
  const under = e => {  // the background the text is drawn on: its own, or the nearest one
    for (; e; e = e.parentElement) {
      const bg = getComputedStyle(e).backgroundColor;
      if (opaque(bg)) return rgb(bg);
    }
    return rgb(getComputedStyle(document.body).backgroundColor);
  };
  return [...document.querySelectorAll(sel)].map(e => {
    const bg = under(e), text = rgba(getComputedStyle(e).color);
    const shown = [0, 1, 2].map(i => text[3] * text[i] + (1 - text[3]) * bg[i]);
    const [hi, lo] = [lum(shown), lum(bg)].sort((a, b) => b - a);
    return [e.className || e.tagName, (hi + .05) / (lo + .05)]; }); }"""
_TEXTS = ("figure#sweep .unmake-explorer-controls label, figure#sweep legend, "
          "figure#sweep select, figure#sweep button, figure#sweep .unmake-explorer-status, "
          "figure#sweep .unmake-compare dd")


@in_chromium
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_explorer_reads_in_both_schemes_and_on_a_phone(browser: Any, site: str,
                                                           scheme: str) -> None:
    with _page(browser, site, viewport=PHONE, color_scheme=scheme) as page:
        expected = "slate" if scheme == "dark" else "default"
        assert page.evaluate("() => document.body.dataset.mdColorScheme") == expected
        _cell(page, 0, 0).locator("button.unmake-pick").click()
        _cell(page, 1, 1).locator("button.unmake-pick").click()
        contrasts = page.evaluate(_CONTRAST, _TEXTS)
        assert len(contrasts) > 10
        assert [c for c in contrasts if c[1] < 4.5] == [], contrasts
        assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
        assert page.evaluate(_OVERFLOWING) == []
        grid = page.evaluate(_GRID, "figure#sweep .unmake-explorer .unmake-grid-wrap")
        assert grid["scroll"] <= grid["client"] and min(grid["imgs"]) >= 48 - .5, grid


def test_the_print_zine_prints_the_plain_panels(zine: Zine, tmp_path: Path) -> None:
    """WeasyPrint runs no script: a 4-axis figure prints as its panels, its data block unseen."""
    from pypdf import PdfReader

    printed = zine.copy(tmp_path / "zine")
    run = printed.unmake("zine")
    assert run.rc == 0, run.output
    text = "\n".join(page.extract_text() for page in PdfReader(printed.root / "zine.pdf").pages)
    for title in ("guidance 1.0, steps 1", "guidance 1.0, steps 2", "guidance 7.5, steps 1",
                  "guidance 7.5, steps 2"):
        assert title in text
    assert "Figure 1. Four axes, two values each." in text
    for script_text in ('"axes"', "\\u003c", "compare", "Arrow keys"):
        assert script_text not in text


@in_chromium
def test_a_template_that_marks_no_cells_keeps_its_panels(browser: Any, zine: Zine,
                                                         tmp_path: Path) -> None:
    """A zine's own _macros.html from before the explorer: its panels stay, nothing is lost."""
    own = zine.copy(tmp_path / "zine")
    macros = (REPO / "templates" / "_macros.html").read_text("utf-8")
    marked = ' data-unmake-cell="{{ cell.explore }}"'
    assert marked in macros
    (own.root / "templates").mkdir()
    (own.root / "templates" / "_macros.html").write_text(macros.replace(marked, ""), "utf-8")
    run = own.unmake("build")
    assert run.rc == 0, run.output
    with _served(own.site) as base, _page(browser, base) as page:
        figure = page.locator("figure#sweep")
        assert figure.locator(".unmake-explorer").count() == 0
        assert figure.locator("table.unmake-grid img:visible").count() == 16
