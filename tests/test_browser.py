"""The built site in a real headless Chromium: loads clean and offline, lightbox, provenance.

Uses Debian's Chromium (/usr/bin/chromium) through Playwright; never `playwright install`.
Skipped when Chromium is missing, unless UNMAKE_REQUIRE_BROWSER=1 (as in CI), then it fails.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import HOSTILE, Zine, generate

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


def _unavailable() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is missing"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _unavailable()
    if reason:
        if os.environ.get("UNMAKE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests are required here, but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield chromium
        chromium.close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site(built: Zine) -> Iterator[str]:
    """The shared zine's site served on 127.0.0.1; yields its base URL."""
    handler = functools.partial(_Quiet, directory=str(built.site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class Watched:
    """A page with everything it did recorded: requests, console errors, page errors, dialogs."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.requests: list[str] = []
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def foreign_requests(self) -> list[str]:
        return [u for u in self.requests
                if urlsplit(u).scheme not in ("data", "blob", "about")
                and urlsplit(u).hostname not in ("127.0.0.1", "localhost")]

    def assert_clean(self) -> None:
        assert self.console_errors == []
        assert self.page_errors == []
        assert self.dialogs == []
        assert self.foreign_requests() == []


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield Watched(page)
    context.close()


def open_page(watched: Watched, url: str) -> Any:
    page = watched.page
    page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")
    return page


def test_pages_load_clean_and_offline(watched: Watched, site: str) -> None:
    for path in ("", "hostile/", "again/"):
        page = open_page(watched, site + path)
        # lazy images load once scrolled to
        for img in page.locator("img.off-glb").all():
            img.scroll_into_view_if_needed()
        page.wait_for_load_state("networkidle")
        loaded = page.eval_on_selector_all(
            "img.off-glb", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
        assert loaded and all(loaded), path
    assert any(u.endswith(".webp") for u in watched.requests)
    watched.assert_clean()


def test_clicking_an_image_opens_the_lightbox(watched: Watched, site: str) -> None:
    page = open_page(watched, site)
    first = page.locator("a.glightbox").first
    href = first.get_attribute("href")
    first.click()
    slide = page.locator(".glightbox-container .gslide.current")
    slide.locator("img").wait_for(state="visible")
    src = slide.locator("img").get_attribute("src")
    assert src.endswith(href.rsplit("/", 1)[1])
    assert slide.locator(".gslide-title").inner_text() == "a photo of a red fox (seed 3)"
    page.keyboard.press("Escape")
    page.locator(".glightbox-container").wait_for(state="detached")
    watched.assert_clean()


@pytest.mark.parametrize("prompt", HOSTILE)
def test_lightbox_shows_hostile_prompt_as_text(watched: Watched, site: str, prompt: str) -> None:
    page = open_page(watched, site + "hostile/")
    page.locator(f'img[alt="{prompt.replace(chr(34), chr(92) + chr(34))} (seed 0)"]').click()
    slide = page.locator(".glightbox-container .gslide.current")
    title = slide.locator(".gslide-title")
    title.wait_for(state="visible")
    assert title.inner_text() == f"{prompt} (seed 0)"
    assert slide.locator(".gslide-desc").inner_text().startswith(prompt)
    # the text stayed text: no element was made from it, no script ran
    assert page.locator(".glightbox-container script").count() == 0
    assert page.locator("img[src='x']").count() == 0
    page.wait_for_timeout(300)
    watched.assert_clean()


def test_provenance_panel_opens(watched: Watched, site: str) -> None:
    page = open_page(watched, site)
    details = page.locator("details.unmake-prov").first
    assert details.get_attribute("open") is None
    assert not details.locator("dl").is_visible()
    details.locator("summary").click()
    assert details.get_attribute("open") is not None
    dl = details.locator("dl")
    assert dl.is_visible()
    assert "seed" in dl.inner_text()
    assert "tiny:" in dl.inner_text()
    assert details.locator("a", has_text="original PNG").is_visible()
    watched.assert_clean()


# -- the README's picture: a grid and a measure of it, on a laptop, on a phone, without JS ------
README_FIGURE = Path(__file__).resolve().parents[1] / "readme" / "figure.png"
LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
MEASURE = """```measure
id: professions-measured
of: professions
by: prompt
clip:
  gender: {labels: ["a man", "a woman", "a person"], template: "a portrait photo of {}"}
reference:
  doctor: {a woman: 0.38}
  nurse: {a woman: 0.87}
reference_source: "US Bureau of Labor Statistics, 2022"
palette: 3
faces: true
diversity: true
caption: What a machine reads in the grid (the built-in CLIP has random weights).
```
"""
MEASURED_PAGES = {
    "index.md": "# Who the model shows at work\n\n"
    + generate(id="professions", prompt="a portrait photo of a {doctor|nurse|CEO|housekeeper}",
               seeds=3, size=64, caption="Four professions, three seeds each.")
    + "\nThe figure below measures every image of [the grid](#professions).\n\n" + MEASURE,
}
FIGURES = ("figure#professions", "figure#professions-measured")


@contextlib.contextmanager
def _served(folder: Path) -> Iterator[str]:
    """A built site served on 127.0.0.1 for the length of the block; yields its base URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _load_every_image(page: Any) -> None:
    """Scroll each image of the figures into view (they load lazily) and wait for them all."""
    for img in page.locator(", ".join(f"{f} img" for f in FIGURES)).all():
        img.scroll_into_view_if_needed()
    page.wait_for_load_state("networkidle")
    loaded = page.eval_on_selector_all(
        ", ".join(f"{f} img" for f in FIGURES),
        "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
    assert loaded and all(loaded), loaded


def _write_if_changed(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one rename (a reader never sees half a PNG); no write when
    the bytes are the same, so a rerun leaves the working tree as it was."""
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# The smallest box around every element the selectors name, in page (not viewport) pixels.
_UNION = """sels => {
  const rects = sels.map(s => document.querySelector(s).getBoundingClientRect());
  const top = Math.min(...rects.map(r => r.top)), left = Math.min(...rects.map(r => r.left));
  return {x: left + scrollX, y: top + scrollY, width: Math.max(...rects.map(r => r.right)) - left,
          height: Math.max(...rects.map(r => r.bottom)) - top};
}"""

# Elements of a page that stick out past the right edge of the viewport and are not inside a
# box that scrolls or clips them: what makes a phone's page scroll sideways.
_OVERFLOWING = """() => {
  const width = document.documentElement.clientWidth;
  const clipped = el => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const x = getComputedStyle(p).overflowX;
      if (x === "auto" || x === "scroll" || x === "hidden" || x === "clip") return true;
    }
    return false;
  };
  return [...document.querySelectorAll("body *")]
    .filter(el => el.getBoundingClientRect().right > width + 1 && !clipped(el))
    .map(el => `${el.tagName.toLowerCase()}.${[...el.classList].join(".")} right=` +
               Math.round(el.getBoundingClientRect().right))
    .slice(0, 10);
}"""


def test_readme_figure_renders_on_a_laptop_a_phone_and_without_javascript(
        browser: Any, zine: Any) -> None:
    built = zine(MEASURED_PAGES)
    run = built.unmake("build")
    assert run.rc == 0, run.output
    with _served(built.site) as base:
        # 1. A laptop: both figures whole, every image loaded; their union is the README's figure.
        with contextlib.closing(browser.new_context(viewport=LAPTOP)) as context:
            watched = Watched(context.new_page())
            page = open_page(watched, base)
            _load_every_image(page)
            page.evaluate("() => window.scrollTo(0, 0)")  # the sticky header stays above the clip
            box = page.evaluate(_UNION, list(FIGURES))
            pad = 16
            clip = {"x": max(0, box["x"] - pad), "y": max(0, box["y"] - pad),
                    "width": min(box["width"] + 2 * pad, LAPTOP["width"]),
                    "height": box["height"] + 2 * pad}
            png = page.screenshot(full_page=True, clip=clip, animations="disabled")
            watched.assert_clean()
        assert clip["height"] > 300 and png.startswith(b"\x89PNG")
        _write_if_changed(README_FIGURE, png)

        # 2. No JavaScript (as in print): images, tables and the SVG chart are all there.
        with contextlib.closing(browser.new_context(viewport=LAPTOP,
                                                    java_script_enabled=False)) as context:
            page = context.new_page()
            page.goto(base, wait_until="load")
            page.wait_for_load_state("networkidle")
            grid, measured = (page.locator(f) for f in FIGURES)
            assert grid.locator("table.unmake-grid tbody tr").count() == 4
            assert grid.locator("img").count() == 12
            for section in ("clip", "faces", "diversity"):
                rows = measured.locator(f".unmake-{section} table.unmake-table tbody tr")
                assert rows.count() == 4, section
            assert measured.locator("svg.unmake-ci rect.unmake-share").count() == 12
            assert measured.locator(".unmake-palette-row .unmake-swatch").count() == 4 * 3
            for figure in (*FIGURES, f"{FIGURES[1]} svg.unmake-ci"):
                assert page.locator(figure).is_visible(), figure
            loaded = page.eval_on_selector_all(
                ", ".join(f"{f} img" for f in FIGURES),
                "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
            assert loaded and all(loaded), loaded

        # 3. A phone: the page never scrolls sideways; what is wider scrolls in its own wrapper.
        with contextlib.closing(browser.new_context(viewport=PHONE)) as context:
            watched = Watched(context.new_page())
            page = open_page(watched, base)
            _load_every_image(page)
            sizes = page.evaluate("() => [document.documentElement.clientWidth, "
                                  "document.documentElement.scrollWidth, "
                                  "document.body.scrollWidth]")
            overflowing = page.evaluate(_OVERFLOWING)
            assert sizes[1] <= sizes[0] and sizes[2] <= sizes[0], (sizes, overflowing)
            assert overflowing == []
            scrolling = page.eval_on_selector_all(
                ".unmake-grid-wrap", "ws => ws.filter(w => w.scrollWidth > w.clientWidth).length")
            assert scrolling >= 1, "a table wider than a phone scrolls inside its wrapper"
            watched.assert_clean()
