"""`unmake zine`: the print PDF (generator/zine.py), checked with pypdf and pdftoppm.

Unit tables for lengths and page sizes; imposition against the published schemes with
numbered, coloured blank pages; end-to-end zines of the shared built zine (subprocesses): page
boxes, captions, appendix, catalogue plates, a remote image that must never be requested, and
pixel snapshots of the cover and a grid page (UNMAKE_UPDATE_SNAPSHOTS=1 rewrites them).
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import subprocess
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import HOSTILE, Zine, generate
from PIL import Image, ImageChops, ImageStat
from pypdf import PdfReader

from generator.errors import UnmakeError
from generator.zine import PAGE_SIZES, impose, length, page_size

MM = 72 / 25.4  # PDF points per millimetre
SNAPSHOTS = Path(__file__).parent / "snapshots" / "zine"
PDFTOPPM = shutil.which("pdftoppm")


# -- units ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "mm"), [("3mm", 3), ("1cm", 10), ("0.5in", 12.7),
                                          ("72pt", 25.4), (" 2.5 mm ", 2.5)])
def test_lengths(text: str, mm: float) -> None:
    assert length(text, "--bleed") == pytest.approx(mm)


@pytest.mark.parametrize("text", ["3", "mm", "-3mm", "3 px", ""])
def test_a_length_needs_a_unit(text: str) -> None:
    with pytest.raises(UnmakeError, match=r"--bleed takes a length with a unit"):
        length(text, "--bleed")


@pytest.mark.parametrize(("text", "size"), [("a5", (148, 210)), ("A4", (210, 297)),
                                            ("letter", (215.9, 279.4)),
                                            ("120mmx180mm", (120, 180)), ("5inx8in", (127, 203.2))])
def test_page_sizes(text: str, size: tuple[float, float]) -> None:
    assert page_size(text) == pytest.approx(size)


@pytest.mark.parametrize("text", ["a3", "120x180", "10mmx180mm", "120mm"])
def test_a_bad_page_size_says_what_is_allowed(text: str) -> None:
    with pytest.raises(UnmakeError, match=r"--page takes a5, a4, letter or WIDTHxHEIGHT"):
        page_size(text)


# -- imposition: numbered blank pages, each its own colour, with a black band at its top ------

COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230)]


def numbered_pdf(pages: int) -> bytes:
    w, h = (round(x * MM) for x in PAGE_SIZES["a5"])
    images = []
    for n in range(pages):
        im = Image.new("RGB", (w, h), COLOURS[n])
        im.paste((0, 0, 0), (0, 0, w, h // 8))  # the top: upright pages have it up
        images.append(im)
    buf = io.BytesIO()
    images[0].save(buf, "PDF", save_all=True, append_images=images[1:], resolution=72)
    return buf.getvalue()


def cells(pdf: bytes, tmp_path: Path, rows: int, cols: int) -> list[list[tuple[int, bool]]]:
    """Each sheet side as rows of (page number, upright) read from the pixels."""
    assert PDFTOPPM, "pdftoppm is missing (apt-get install poppler-utils)"
    (tmp_path / "in.pdf").write_bytes(pdf)
    subprocess.run([PDFTOPPM, "-r", "20", "-png", str(tmp_path / "in.pdf"),
                    str(tmp_path / "side")], check=True)
    sides = []
    for png in sorted(tmp_path.glob("side-*.png")):
        im = Image.open(png).convert("RGB")
        cw, ch = im.width / cols, im.height / rows
        side = []
        for r in range(rows):
            for c in range(cols):
                x = int((c + .5) * cw)
                centre = im.getpixel((x, int((r + .5) * ch)))
                top = im.getpixel((x, int((r + .06) * ch)))
                number = min(range(8), key=lambda n, px=centre: sum(
                    (a - b) ** 2 for a, b in zip(COLOURS[n], px, strict=True))) + 1
                side.append((number, sum(top) < 60))  # black band at the top: upright
        sides.append(side)
    return sides


def test_saddle_imposition_follows_the_booklet_scheme(tmp_path: Path) -> None:
    imposed, count = impose(numbered_pdf(8), "saddle")
    assert count == 4  # two sheets, printed on both sides
    sides = cells(imposed, tmp_path, rows=1, cols=2)
    # the saddle-stitch scheme: outer sheet 8|1 and 2|7, inner sheet 6|3 and 4|5
    assert [[n for n, _ in side] for side in sides] == [[8, 1], [2, 7], [6, 3], [4, 5]]
    assert all(up for side in sides for _, up in side)


def test_onesheet_imposition_follows_the_one_page_zine_scheme(tmp_path: Path) -> None:
    imposed, count = impose(numbered_pdf(8), "onesheet")
    assert count == 1
    (side,) = cells(imposed, tmp_path, rows=2, cols=4)
    # the classic one-page zine: top row upside down 5 4 3 2, bottom row 6 7 8 1
    assert side == [(5, False), (4, False), (3, False), (2, False),
                    (6, True), (7, True), (8, True), (1, True)]


def test_onesheet_refuses_more_than_eight_pages() -> None:
    with pytest.raises(UnmakeError, match="onesheet holds 8 pages"):
        impose(numbered_pdf(8) and _pages(9), "onesheet")


def _pages(n: int) -> bytes:
    images = [Image.new("RGB", (100, 140), "white") for _ in range(n)]
    buf = io.BytesIO()
    images[0].save(buf, "PDF", save_all=True, append_images=images[1:])
    return buf.getvalue()


# -- end to end: the shared built zine, printed -----------------------------------------------


@pytest.fixture(scope="module")
def printed(built: Zine, tmp_path_factory: pytest.TempPathFactory) -> tuple[Zine, Any]:
    """The shared zine (3 pages, 3 figures) printed with bleed and marks."""
    zine = built.copy(tmp_path_factory.mktemp("zine") / "zine")
    run = zine.unmake("zine", "--bleed", "3mm", "--marks")
    assert run.rc == 0, run.output
    assert "zine.pdf: " in run.stdout and "3 figures" in run.stdout, run.stdout
    return zine, run


def text_of(pdf: Path) -> list[str]:
    return [page.extract_text() for page in PdfReader(pdf).pages]


def test_zine_pages_boxes_and_captions(printed: tuple[Zine, Any]) -> None:
    zine, run = printed
    pdf = zine.root / "zine.pdf"
    reader = PdfReader(pdf)
    # cover, contents, one chapter per page of the nav, the appendix
    assert len(reader.pages) >= 6
    assert f"{len(reader.pages)} pages" in run.stdout
    for page in reader.pages:
        trim, bleed = page.trimbox, page.bleedbox
        assert float(trim.width) == pytest.approx(148 * MM, abs=.1)
        assert float(trim.height) == pytest.approx(210 * MM, abs=.1)
        assert float(bleed.width) == pytest.approx((148 + 6) * MM, abs=.1)
        assert float(trim.left) - float(bleed.left) == pytest.approx(3 * MM, abs=.1)
    texts = text_of(pdf)
    whole = "\n".join(texts)
    assert "test zine" in texts[0]  # the cover: site_name
    assert "Contents" in texts[1] and "Fox grid" in texts[1] and "Hostile" in texts[1]
    # figures numbered through the zine, in nav order, with their captions
    fox = whole.index("Figure 1. Two foxes, two seeds: only the colour changes.")
    hostile = whole.index("Figure 2. Prompts are data, not markup.")
    again = whole.index("Figure 3. Two foxes, two seeds")
    assert fox < hostile < again
    # the running header names the chapter; page numbers print
    chapter = next(t for t in texts if "Figure 2." in t)
    assert chapter.count("Hostile") >= 2 and str(texts.index(chapter) + 1) in chapter
    # the appendix: one block per figure, with the model's fingerprint and library versions
    assert "Provenance of the figures" in whole
    appendix = whole[whole.rindex("Provenance of the figures"):]
    for n in (1, 2, 3):
        assert f"Figure {n}" in appendix
    assert "tiny:" in appendix and "diffusers" in appendix and "3 | 5" in appendix
    # hostile prompts are text in the PDF, not markup that vanished
    assert HOSTILE[0].replace(" ", "") in whole.replace(" ", "").replace("\n", "")


def test_zine_holds_no_path_of_this_machine(printed: tuple[Zine, Any]) -> None:
    zine, _ = printed
    data = (zine.root / "zine.pdf").read_bytes()
    reader = PdfReader(zine.root / "zine.pdf")
    whole = "\n".join(text_of(zine.root / "zine.pdf"))
    links = [str(a.get_object().get("/A", {})) for page in reader.pages
             for a in page.get("/Annots", []) or []]
    for secret in (str(zine.root), str(zine.root.resolve()), os.path.expanduser("~"),
                   tempfile.gettempdir() + "/"):
        assert secret not in whole
        assert secret.encode() not in data
        assert not any(secret in link for link in links)
    assert not any("file:" in link for link in links)


def test_zine_prints_the_original_pngs(printed: tuple[Zine, Any]) -> None:
    zine, _ = printed
    reader = PdfReader(zine.root / "zine.pdf")
    sizes = {(im.image.width, im.image.height) for page in reader.pages for im in page.images}
    assert (32, 32) in sizes  # the stored 32x32 originals, not a resampled copy
    # scaled nearest-neighbour: no image asks the reader to smooth it
    images = [o.get_object() for page in reader.pages
              for o in (page["/Resources"].get("/XObject") or {}).values()]
    assert images and all(o.get("/Interpolate") is not True for o in images)


def _compare(pdf: Path, page: int, name: str, tmp_path: Path) -> None:
    assert PDFTOPPM, "pdftoppm is missing (apt-get install poppler-utils)"
    out = tmp_path / name
    subprocess.run([PDFTOPPM, "-r", "30", "-png", "-singlefile", "-f", str(page), "-l",
                    str(page), str(pdf), str(out)], check=True)
    got = Image.open(f"{out}.png").convert("RGB")
    snapshot = SNAPSHOTS / f"{name}.png"
    if os.environ.get("UNMAKE_UPDATE_SNAPSHOTS") == "1" or not snapshot.exists():
        if os.environ.get("UNMAKE_UPDATE_SNAPSHOTS") != "1":
            pytest.fail(f"{snapshot} is missing; UNMAKE_UPDATE_SNAPSHOTS=1 writes it")
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        got.save(snapshot)
    want = Image.open(snapshot).convert("RGB")
    assert got.size == want.size
    diff = ImageStat.Stat(ImageChops.difference(got, want).convert("L"))
    # fonts' hinting and the tiny model's last bits may differ between machines; a moved or
    # missing block (a caption, a row of images, the cover) changes far more than this
    assert diff.mean[0] < 4, f"{name}: mean difference {diff.mean[0]:.2f} from the snapshot"


def test_zine_snapshots_of_the_cover_and_a_grid_page(printed: tuple[Zine, Any],
                                                     tmp_path: Path) -> None:
    zine, _ = printed
    pdf = zine.root / "zine.pdf"
    texts = text_of(pdf)
    grid_page = next(i for i, t in enumerate(texts) if "Figure 1." in t) + 1
    _compare(pdf, 1, "cover", tmp_path)
    _compare(pdf, grid_page, "grid", tmp_path)
    # the cover's dark background fills the bleed, to the sheet's very corner
    out = tmp_path / "corner"
    subprocess.run([PDFTOPPM, "-r", "30", "-png", "-singlefile", "-f", "1", "-l", "1",
                    str(pdf), str(out)], check=True)
    cover = Image.open(f"{out}.png").convert("RGB")
    assert sum(cover.getpixel((cover.width // 2, 1))) < 150


def test_catalogue_prints_one_plate_per_image_with_a_wall_label(built: Zine,
                                                                tmp_path: Path) -> None:
    zine = built.copy(tmp_path / "zine")
    config = yaml.safe_load((zine.root / "mkdocs.yml").read_text("utf-8"))
    config["plugins"][2]["unmake"]["zine"] = {"title": "Foxes, a catalogue",
                                             "authors": ["A. Curator"], "plates": ["foxes"],
                                             "cover": "foxes-again"}
    (zine.root / "mkdocs.yml").write_text(yaml.safe_dump(config), "utf-8")
    run = zine.unmake("zine", "--layout", "catalogue", "--page", "a4", "-o", "cat.pdf")
    assert run.rc == 0, run.output
    reader = PdfReader(zine.root / "cat.pdf")
    assert float(reader.pages[0].trimbox.width) == pytest.approx(210 * MM, abs=.1)
    texts = [p.extract_text() for p in reader.pages]
    assert "Foxes, a catalogue" in texts[0] and "A. Curator" in texts[0]
    # the cover figure's four images, drawn on the cover (XObjects drawn with `Do`)
    assert len(re.findall(rb"/\w+ Do\b", reader.pages[0].get_contents().get_data())) == 4
    plates = [t for t in texts if "«a photo of a" in t]
    assert len(plates) == 4  # the 2 x 2 grid of `foxes`, one image a page
    assert sorted((("red" in t), ("seed" in t and ("3" in t or "5" in t))) for t in plates) \
        == [(False, True), (False, True), (True, True), (True, True)]
    assert all("built-in tiny" in t for t in plates)

    config["plugins"][2]["unmake"]["zine"] = {"plates": ["foxs"]}
    (zine.root / "mkdocs.yml").write_text(yaml.safe_dump(config), "utf-8")
    run = zine.unmake("zine", "--layout", "catalogue", "-o", "cat.pdf")
    assert run.rc == 1
    assert run.stderr.strip().endswith("plugins.unmake.zine.plates: no figure has the id "
                                       "'foxs' (ids: foxes, foxes-again, hostile-prompts)")
    assert "mkdocs.yml" in run.stderr and "Traceback" not in run.stderr


def test_a_bad_zine_key_is_one_line(built: Zine, tmp_path: Path) -> None:
    zine = built.copy(tmp_path / "zine")
    config = yaml.safe_load((zine.root / "mkdocs.yml").read_text("utf-8"))
    config["plugins"][2]["unmake"]["zine"] = {"titel": "x"}
    (zine.root / "mkdocs.yml").write_text(yaml.safe_dump(config), "utf-8")
    run = zine.unmake("zine")
    assert run.rc == 1
    assert run.stderr.strip() == ("unmake: mkdocs.yml: plugins.unmake.zine.titel: not a known key "
                                  "(known: title, subtitle, authors, date, cover, plates)")
    assert not (zine.root / "zine.pdf").exists()


class _Counting(SimpleHTTPRequestHandler):
    hits: list[str] = []  # noqa: RUF012  (shared on purpose: the test reads it)

    def do_GET(self) -> None:
        self.hits.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_no_request_leaves_the_zine_build(zine: Any, tmp_path: Path) -> None:
    """A page with a remote image: the zine prints without it and the server sees nothing."""
    (tmp_path / "www").mkdir()
    Image.new("RGB", (8, 8), "red").save(tmp_path / "www" / "x.png")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        _Counting, directory=str(tmp_path / "www")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/x.png"
    try:
        # the server works: a fetch that is allowed would be seen
        import urllib.request

        with urllib.request.urlopen(url) as response:
            assert response.status == 200
        _Counting.hits.clear()
        z = zine({"index.md": f"# Remote\n\n![a remote image]({url})\n\n"
                              f"<img src=\"{url}?again\" alt=\"raw html\">\n"})
        run = z.unmake("zine")
        assert run.rc == 0, run.output
        assert _Counting.hits == []
        assert f"not loaded (no network, project files only): {url}" in run.stdout
    finally:
        server.shutdown()
        server.server_close()


def test_missing_results_print_as_such_and_are_listed(zine: Any) -> None:
    """Nothing was built: the zine runs no model, says what is missing, still prints."""
    z = zine({"index.md": "# Never built\n\n" + generate(id="unbuilt", prompt="a fox",
                                                         seeds=[1, 2], caption="Unbuilt.")})
    run = z.unmake("zine")
    assert run.rc == 0, run.output
    assert run.lines("unmake zine: missing  docs/index.md:3: generate.image") != []
    assert len(run.lines("unmake zine: missing")) == 2
    assert "2 result(s) are not in the store" in run.stdout
    assert not (z.store / "records").exists() or not list((z.store / "records").glob("*/*"))
    whole = "\n".join(text_of(z.root / "zine.pdf"))
    assert "not generated yet" in whole and "Figure 1. Unbuilt." in whole


def test_a_pdf_on_another_file_system_is_written_whole(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's atomic write renames across folders; onto another disk (EXDEV, which this
    machine's single file system cannot produce) the PDF is written beside its target."""
    import errno

    from generator.store import Store
    from generator.zine import _write

    store = Store(tmp_path / "store")

    def cross_device(path: Path, data: bytes, read_only: bool = False) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(store, "write_atomic", cross_device)
    target = tmp_path / "usb" / "zine.pdf"
    _write(store, target, b"%PDF-1.7 whole")
    assert target.read_bytes() == b"%PDF-1.7 whole"
    assert [p.name for p in target.parent.iterdir()] == ["zine.pdf"]  # no temporary file left
