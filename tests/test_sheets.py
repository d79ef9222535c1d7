"""Contact sheets: scale, labels fitted by measured width, provenance in the PNG, and the sheet
of a real build."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Elements, Zine
from PIL import Image, ImageFont

from generator import __version__, sheets
from generator.render import Renderer
from generator.store import Store

RED, BLUE = (255, 0, 0), (0, 0, 255)


@pytest.mark.parametrize(("longest", "scale"), [
    (32, 8.0),  # the test images: 256 px
    (64, 4.0),  # the tiny model's own size: 256 px
    (100, 2.0),
    (150, 2.0),  # a whole factor, at least CELL_MIN
    (192, 1.0),
    (256, 1.0),
    (512, 0.5),
    (1024, 0.25),
])
def test_one_scale_per_sheet(longest: int, scale: float) -> None:
    assert sheets.scale_for(longest) == scale
    assert sheets.CELL_MIN <= longest * scale <= max(sheets.CELL_MAX, 2 * longest)


def test_the_label_font_is_scalable_and_legible() -> None:
    font = sheets.load_font(sheets.FONT)
    assert isinstance(font, ImageFont.FreeTypeFont)
    assert font.size == sheets.FONT >= 14
    # Pillow's own font scales too (>= 10.1), the fallback where no system font is installed
    assert isinstance(ImageFont.load_default(size=sheets.FONT), ImageFont.FreeTypeFont)


def test_labels_wrap_by_measured_width_not_by_characters() -> None:
    font = ImageFont.load_default(size=14)
    wide, narrow = "WWWW " * 8, "iiii " * 8  # the same number of characters
    assert len(sheets.fit(wide, font, 120, 10)) > len(sheets.fit(narrow, font, 120, 10))
    for text in (wide, narrow, "a-single-word-much-wider-than-the-line-it-has-to-fit-in"):
        lines = sheets.fit(text, font, 120, 10)
        assert all(font.getlength(line) <= 120 for line in lines)
        assert "".join(lines).replace(" ", "") == text.replace(" ", "")  # nothing lost


def test_what_does_not_fit_ends_in_an_ellipsis() -> None:
    font = ImageFont.load_default(size=14)
    text = "an oil painting of a lighthouse keeper reading by candlelight in a storm"
    lines = sheets.fit(text, font, 100, 2)
    assert len(lines) == 2
    assert lines[-1].endswith(sheets.ELLIPSIS)
    assert all(font.getlength(line) <= 100 for line in lines)
    assert sheets.fit("red", font, 100, 1) == ["red"]


def test_characters_a_font_lacks_get_ascii_standins() -> None:
    pillows = ImageFont.load_default(size=14)  # Aileron: ASCII only
    assert sheets.drawable("café, 32×32 — Ωmega", pillows) == "cafe, 32x32 - ?mega"
    assert sheets.drawable("plain ascii", pillows) == "plain ascii"


# -- a sheet drawn from a made store -----------------------------------------------------------
def _png(colour_left: tuple[int, int, int], size: int) -> bytes:
    """Left half one pure colour, right half white: its pixel count is exact after NEAREST."""
    im = Image.new("RGB", (size, size), "white")
    im.paste(colour_left, (0, 0, size // 2, size))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _panels(store: Store, size: int = 32) -> list[dict[str, Any]]:
    rows = []
    for r, (label, colour) in enumerate([("red", RED), ("blue", BLUE)]):
        cells = []
        for seed in (3, 5):
            art = store.put_blob(_png(colour, size), "png")
            blob = store.blob_path(art["sha256"], "png").relative_to(store.root)
            inputs = {"prompt": f"a {label} fox", "negative": "", "seed": seed, "steps": 2,
                      "guidance": 7.5, "width": size, "height": size, "scheduler": "default",
                      "model": "tiny:0"}
            cells.append({"key": f"{r}{seed}" * 8, "status": "ok", "width": size,
                          "height": size, "blob": str(blob), "inputs": inputs,
                          "run": {"model": "default"},
                          "parameters": f"a {label} fox\nSteps: 2, Sampler: PLMS, Seed: {seed}"})
        rows.append({"label": label, "cells": cells})
    return [{"title": "", "cols": ["seed 3", "seed 5"], "rows": rows}]


def test_small_images_are_enlarged_pixel_for_pixel(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    png = sheets.draw("Foxes", _panels(store), store.root)
    with Image.open(io.BytesIO(png)) as im:
        rgb = im.convert("RGB")
    counts = {colour: n for n, colour in rgb.getcolors(1 << 20)}
    # 8x NEAREST: each cell's 16x32 block of pure colour becomes exactly 64 times as many pixels
    assert counts[RED] == counts[BLUE] == 2 * 16 * 32 * 64
    assert rgb.width >= 2 * sheets.CELL_MIN and rgb.height >= 2 * sheets.CELL_MIN


def test_large_images_are_reduced(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    png = sheets.draw("Foxes", _panels(store, size=512), store.root)
    with Image.open(io.BytesIO(png)) as im:
        assert im.width < 2 * 512  # two columns of 256 px, not 512
        assert im.width >= 2 * sheets.CELL_MAX


def test_the_sheet_carries_every_cells_provenance(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    panels = _panels(store)
    with Image.open(io.BytesIO(sheets.draw("Foxes, two seeds", panels, store.root))) as im:
        info = dict(im.info)
    assert info["Title"] == "Foxes, two seeds"
    assert info["Software"] == f"unmake {__version__}"
    data = json.loads(info["unmake"])
    assert data["title"] == "Foxes, two seeds"
    assert data["cells"] == [
        {"panel": "", "row": row["label"], "column": col, "key": cell["key"],
         "parameters": cell["parameters"]}
        for row in panels[0]["rows"]
        for col, cell in zip(panels[0]["cols"], row["cells"], strict=True)]


def test_the_sheets_name_follows_what_it_shows(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    panels = _panels(store)
    name = sheets.sheet_name("Foxes", panels)
    assert sheets.sheet_name("Foxes", panels) == name
    assert sheets.sheet_name("Other foxes", panels) != name
    panels[0]["rows"][0]["label"] = "crimson"
    assert sheets.sheet_name("Foxes", panels) != name


def test_renderer_draws_a_sheet_once_and_none_while_an_image_is_missing(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    panels = _panels(store)
    renderer = Renderer(store)
    site_path = renderer.contact_sheet("Foxes", panels)
    assert site_path is not None
    path = renderer.assets[site_path]
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    assert Renderer(store).contact_sheet("Foxes", panels) == site_path
    assert path.stat().st_mtime_ns == stamp  # cached in the store, not redrawn
    panels[0]["rows"][1]["cells"][0]["status"] = "missing"
    assert Renderer(store).contact_sheet("Foxes", panels) is None


# -- the sheet of a real build -----------------------------------------------------------------
def test_built_sheet_is_legible_and_names_its_records(built: Zine) -> None:
    page = Elements(built.html("index.md"))
    (link,) = page.all("a", "unmake-sheet")
    with Image.open(built.site_file("index.md", link["href"])) as im:
        im.load()
        size, info = im.size, dict(im.info)
    # 2 x 2 cells of 32 px images, each enlarged to at least CELL_MIN
    assert size[0] >= 2 * sheets.CELL_MIN and size[1] >= 2 * sheets.CELL_MIN
    data = json.loads(info["unmake"])
    assert data["title"] == "Two foxes, two seeds: only the colour changes."
    assert [(c["row"], c["column"]) for c in data["cells"]] == [
        ("red", "seed 3"), ("red", "seed 5"), ("blue", "seed 3"), ("blue", "seed 5")]
    for cell in data["cells"]:
        record = built.record(cell["key"])
        assert cell["parameters"] == record["data"]["parameters"]
        assert cell["parameters"].startswith(record["inputs"]["prompt"] + "\n")
