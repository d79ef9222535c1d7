"""The built site in a real headless Chromium: loads clean and offline, lightbox, provenance.

Uses Debian's Chromium (/usr/bin/chromium) through Playwright; never `playwright install`.
Skipped when Chromium is missing, unless UNMAKE_REQUIRE_BROWSER=1 (as in CI), then it fails.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import HOSTILE, Zine

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
