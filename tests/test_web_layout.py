"""The site's figures at a laptop's and a phone's width, and in both colour schemes (Chromium).

Grids keep to the content column (cells shrink from 160 px to no less than 48 px; only a grid
too wide even then scrolls, inside its own wrapper); an opened provenance panel is as wide as
the column, not a word a line; the light/dark toggle of `unmake new`'s mkdocs.yml switches the
scheme and chart labels stay readable in both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Zine, generate
from test_browser import _OVERFLOWING, LAPTOP, PHONE, Watched, _served, browser, open_page
from test_dataset import fence, rows, write_images, write_parquet

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the fixture, shared with test_browser

NEW_CONFIG = Path(__file__).resolve().parents[1] / "templates" / "new" / "mkdocs.yml"
PAGES = {
    "index.md": "# Layout\n\n"
    + generate(id="professions", prompt="a portrait photo of a {doctor|nurse|CEO|housekeeper}",
               seeds=3, size=64, caption="Four professions, three seeds each.")
    + "\n"
    + generate(id="wide", prompt="a {cat|dog}", seeds=8, caption="Eight seeds: wide.")
    + "\n```measure\nid: measured\nof: professions\nby: prompt\n"
    "clip: {gender: [a man, a woman]}\ncaption: A chart with labels.\n```\n",
    # a sample table of long captions and URLs: it once made a phone's page 575 px wide
    "data.md": "# Data\n\n" + fence({"id": "table", "dataset": "t", "search": "portrait",
                                      "sample": {"n": 30, "layout": "table"}})
    + fence({"id": "facets", "dataset": "t", "search": "portrait", "facets": ["domain"]}),
}
MIN_CELL = 48  # px: the smallest an image of a grid gets before its grid scrolls


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, unmake_env: dict[str, str]) -> Iterator[str]:
    """A zine with the palette toggle of `unmake new`, built once; yields its served URL."""
    from conftest import make_zine

    root = tmp_path_factory.mktemp("layout") / "zine"
    write_parquet(root / "data" / "t.parquet", rows())
    write_images(root / "data" / "images", [f"{i:09d}" for i in (0, 20, 38, 39)])
    zine: Zine = make_zine(root, PAGES, unmake_env, plugin={"datasets": {"t": {
        "metadata": "data/t.parquet", "images": "data/images"}}})
    config = yaml.safe_load((zine.root / "mkdocs.yml").read_text("utf-8"))
    config["theme"]["palette"] = yaml.safe_load(NEW_CONFIG.read_text("utf-8"))["theme"]["palette"]
    (zine.root / "mkdocs.yml").write_text(yaml.safe_dump(config), "utf-8")
    run = zine.unmake("build")
    assert run.rc == 0, run.output
    with _served(zine.site) as base:
        yield base


@contextlib.contextmanager
def _page(browser: Any, base: str, viewport: dict[str, int]) -> Iterator[Any]:
    with contextlib.closing(browser.new_context(viewport=viewport)) as context:
        watched = Watched(context.new_page())
        page = open_page(watched, base)
        for img in page.locator("figure img").all():
            img.scroll_into_view_if_needed()
        page.wait_for_load_state("networkidle")
        yield page
        watched.assert_clean()


_GRIDS = """() => [...document.querySelectorAll("figure.unmake-generate .unmake-grid-wrap")].map(
  w => ({id: w.closest("figure").id, scroll: w.scrollWidth, client: w.clientWidth,
         column: document.querySelector("article").clientWidth,
         imgs: [...w.querySelectorAll("img")].map(i => i.getBoundingClientRect().width)}))"""


def test_grids_fit_the_column_on_a_laptop(browser: Any, site: str) -> None:
    with _page(browser, site, LAPTOP) as page:
        grids = page.evaluate(_GRIDS)
        assert [g["id"] for g in grids] == ["professions", "wide"]
        for grid in grids:
            assert grid["scroll"] <= grid["client"], f"{grid['id']} scrolls at 1280 px: {grid}"
            assert grid["client"] <= grid["column"]
            assert min(grid["imgs"]) >= MIN_CELL
        # the 3-seed grid keeps its 160 px images; the 8-seed one shrinks to fit
        assert min(grids[0]["imgs"]) == pytest.approx(160, abs=1)
        assert max(grids[1]["imgs"]) < 160
        assert page.evaluate("() => document.documentElement.scrollWidth") <= LAPTOP["width"]


def test_a_phone_never_scrolls_sideways_and_grids_stay_legible(browser: Any, site: str) -> None:
    with _page(browser, site, PHONE) as page:
        width = page.evaluate("() => document.documentElement.clientWidth")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width
        assert page.evaluate(_OVERFLOWING) == []
        grids = {g["id"]: g for g in page.evaluate(_GRIDS)}
        # professions (3 seeds) fits; the 8-seed grid cannot at 48 px a cell and scrolls in its
        # own wrapper, never the page
        assert grids["professions"]["scroll"] <= grids["professions"]["client"]
        assert grids["wide"]["scroll"] > grids["wide"]["client"]
        for grid in grids.values():
            assert min(grid["imgs"]) >= MIN_CELL - .5, grid


def test_a_dataset_table_scrolls_in_itself_on_a_phone(browser: Any, site: str) -> None:
    with _page(browser, site + "data/", PHONE) as page:
        width = page.evaluate("() => document.documentElement.clientWidth")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width
        assert page.evaluate(_OVERFLOWING) == []
        table = page.locator("figure#table table.unmake-table")
        assert table.locator("tbody tr").count() >= 10
        assert table.evaluate("t => t.scrollWidth > t.clientWidth")  # wide: scrolls in itself
        assert page.locator("figure#facets svg.unmake-bar").count() >= 1


def test_provenance_opens_as_wide_as_the_column(browser: Any, site: str) -> None:
    with _page(browser, site, PHONE) as page:
        details = page.locator("figure#professions details.unmake-prov").first
        summary = details.locator("summary")
        summary.scroll_into_view_if_needed()
        summary.click()
        panel = details.locator("dl")
        assert panel.is_visible()
        box, below = panel.bounding_box(), summary.bounding_box()
        column = page.evaluate("() => document.querySelector('article').clientWidth")
        assert box["width"] >= .8 * column, (box, column)  # not a word a line
        assert box["y"] >= below["y"] + below["height"] - 1  # below the summary it opens from
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        assert "seed" in panel.inner_text()


_CONTRAST = """sel => {
  const rgba = s => {
    const v = s.match(/[\\d.]+/g).map(Number);
    return [...v.slice(0, 3), v[3] ?? 1];
  };
  const lum = c => { const [r, g, b] = c.map(v => { v /= 255;
      return v <= .03928 ? v / 12.92 : ((v + .055) / 1.055) ** 2.4; });
    return .2126 * r + .7152 * g + .0722 * b; };
  const bg = rgba(getComputedStyle(document.body).backgroundColor);
  const text = rgba(getComputedStyle(document.querySelector(sel)).fill);
  const shown = [0, 1, 2].map(i => text[3] * text[i] + (1 - text[3]) * bg[i]);  // over the page
  const [hi, lo] = [lum(shown), lum(bg.slice(0, 3))].sort((a, b) => b - a);
  return [document.body.getAttribute("data-md-color-scheme"), (hi + .05) / (lo + .05)];
}"""


def test_the_dark_toggle_switches_and_chart_labels_stay_readable(browser: Any,
                                                                 site: str) -> None:
    # the dataset's bar chart (its labels were dark on dark) and measure's interval chart
    with _page(browser, site + "data/", LAPTOP) as page:
        for chart in ("svg.unmake-bar text", "svg.unmake-bar text.unmake-bar-n"):
            scheme, contrast = page.evaluate(_CONTRAST, chart)
            assert scheme == "default" and contrast >= 4.5, (chart, scheme, contrast)
        page.locator("label.md-header__button[for=__palette_1]").click()
        page.wait_for_function("() => document.body.dataset.mdColorScheme === 'slate'")
        for chart in ("svg.unmake-bar text", "svg.unmake-bar text.unmake-bar-n"):
            scheme, contrast = page.evaluate(_CONTRAST, chart)
            assert scheme == "slate" and contrast >= 4.5, (chart, scheme, contrast)
        page.goto(site)  # the choice is remembered from page to page
        page.wait_for_load_state("networkidle")
        scheme, contrast = page.evaluate(_CONTRAST, "svg.unmake-ci text")
        assert scheme == "slate" and contrast >= 4.5, (scheme, contrast)
