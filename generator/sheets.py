"""Contact sheets: a figure's grids as one labelled PNG that carries every cell's provenance.

A sheet is the form in which a figure leaves the site (a slide, a chat, a print), so it says
what the page says: the title, each panel's title, row and column labels (wrapped and shortened
by measured width), the settings all cells share, and, in an iTXt chunk `unmake`, a JSON list of
every cell with its labels, record key and A1111 `parameters`. One scale for the whole sheet, so
that a size sweep still shows its sizes: small images are enlarged by a whole factor with
NEAREST (their pixels are the evidence, not to be smoothed), large ones reduced. Pillow only.
"""

from __future__ import annotations

import functools
import io
import json
import math
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .keys import canonical_json, digest

if TYPE_CHECKING:
    from PIL import ImageDraw

# Part of every sheet's cache name: bump it when the drawing changes, so old sheets are redrawn.
LAYOUT = 2
CELL_MAX = 256  # longest side of a large image in a sheet
CELL_MIN = 192  # a smaller image is enlarged to at least this (a 32 px image would be a speck)
FONT = 14  # px: labels; Pillow's default font at 10 px runs words together
TITLE_FONT = 18
PAD = 8
ELLIPSIS = "…"
# Fonts with wide coverage (accents, Greek, Cyrillic), where the system has one; otherwise
# Pillow's own (Aileron, ASCII only), with what it cannot draw spelled in ASCII (see `drawable`).
FONTS = ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "Arial Unicode.ttf", "arial.ttf")
ASCII_STANDINS = {"×": "x", "—": "-", "–": "-", "→": "->", "€": "EUR", "£": "GBP", "ß": "ss"}


def sheet_name(title: str, panels: list[dict[str, Any]]) -> str:
    """The derived file name of a sheet: a digest of everything drawn or embedded in it."""
    content = [LAYOUT, CELL_MAX, CELL_MIN, provenance(title, panels), shared_settings(panels)]
    return digest(canonical_json(content))[:32] + ".png"


def provenance(title: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    """What the `unmake` chunk holds: the title and every cell, in reading order."""
    cells = []
    for panel in panels:
        for row in panel["rows"]:
            for column, cell in zip(panel["cols"], row["cells"], strict=True):
                cells.append({"panel": panel["title"], "row": row["label"], "column": column,
                              "key": cell["key"], "parameters": cell.get("parameters", "")})
    return {"title": title, "generator": f"unmake {__version__}", "cells": cells}


def shared_settings(panels: list[dict[str, Any]]) -> str:
    """The settings every cell shares (the rest are the labels), as the sheet's last line."""
    cells = [c for p in panels for r in p["rows"] for c in r["cells"]]
    settings = {
        "model": lambda c: c["run"]["model"],
        "steps": lambda c: c["inputs"]["steps"],
        "CFG": lambda c: f"{c['inputs']['guidance']:g}",
        "size": lambda c: f"{c['inputs']['width']}×{c['inputs']['height']}",
        "scheduler": lambda c: c["inputs"]["scheduler"],
        "negative": lambda c: c["inputs"]["negative"],
    }
    parts = []
    for name, value in settings.items():
        values = {str(value(c)) for c in cells}
        if len(values) == 1 and (only := values.pop()):
            parts.append(f"{name} {only}")
    return " · ".join([*parts, f"unmake {__version__}"])


def scale_for(longest: int) -> float:
    """One scale for a sheet whose largest image has this longest side (px)."""
    if longest > CELL_MAX:
        return CELL_MAX / longest
    if longest >= CELL_MIN:
        return 1.0
    # a whole factor, so that every source pixel becomes an equal square
    return float(max(CELL_MAX // longest, math.ceil(CELL_MIN / longest)))


def fit(text: str, font: Any, width: float, max_lines: int) -> list[str]:
    """`text` wrapped into lines no wider than `width` px as `font` draws them; a word wider
    than a line is broken, and what does not fit in `max_lines` ends in an ellipsis."""
    lines: list[str] = []
    line = ""
    for word in drawable(text, font).split():
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = word
        while font.getlength(line) > width and len(line) > 1:
            cut = len(line) - 1
            while cut > 1 and font.getlength(line[:cut]) > width:
                cut -= 1
            lines.append(line[:cut])
            line = line[cut:]
    if line:
        lines.append(line)
    if len(lines) <= max_lines:
        return lines
    kept = lines[:max_lines]
    last = kept[-1]
    while last and font.getlength(last + ELLIPSIS) > width:
        last = last[:-1].rstrip()
    kept[-1] = last + ELLIPSIS
    return kept


@functools.cache
def load_font(size: int) -> Any:
    """A scalable font at `size` px: the first of FONTS installed, else Pillow's own."""
    from PIL import ImageFont

    for name in FONTS:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def drawable(text: str, font: Any) -> str:
    """`text` with each character `font` has no glyph for replaced by an ASCII stand-in
    (é -> e, × -> x), so that a label never shows empty boxes; the embedded JSON keeps the
    exact text."""
    return "".join(ch if _has_glyph(font, ch) else _standin(ch) for ch in text)


def _standin(ch: str) -> str:
    if ch in ASCII_STANDINS:
        return ASCII_STANDINS[ch]
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    return base if base.isascii() and base else "?"


def _has_glyph(font: Any, ch: str) -> bool:
    if ch.isascii():
        return True

    # a missing glyph draws as the font's .notdef box, the same as a private-use character's
    def mask(c: str) -> tuple[Any, bytes]:
        m = font.getmask(c)
        return m.size, bytes(m)

    return mask(ch) != mask("\U0010fffd")


def draw(title: str, panels: list[dict[str, Any]], root: Path) -> bytes:
    """The sheet as PNG bytes; each cell's image is read from `root` / cell["blob"]."""
    from PIL import Image, ImageDraw
    from PIL.PngImagePlugin import PngInfo

    # 1. One scale for every image; the grid's box fits the largest.
    cells = [c for p in panels for r in p["rows"] for c in r["cells"]]
    scale = scale_for(max(max(c["width"], c["height"]) for c in cells))
    box_w = max(round(c["width"] * scale) for c in cells)
    box_h = max(round(c["height"] * scale) for c in cells)
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS

    # 2. Measure: fonts, the row-label column, the sheet's width.
    font = load_font(FONT)
    title_font = load_font(TITLE_FONT)
    line_h = _line_height(font)
    row_labels = [r["label"] for p in panels for r in p["rows"] if r["label"]]
    label_w = 0
    if row_labels:
        widest = max(font.getlength(label) for label in row_labels)
        label_w = int(min(max(widest, 4 * FONT), max(box_w, 12 * FONT))) + PAD
    ncols = max(len(p["cols"]) for p in panels)
    width = PAD + label_w + ncols * (box_w + PAD)
    text_w = width - 2 * PAD

    # 3. Lay out every text block, top to bottom, before drawing (the height depends on it).
    title_lines = fit(title, title_font, text_w, 3)
    footer_lines = fit(shared_settings(panels), font, text_w, 3)
    layouts = []
    for panel in panels:
        head = fit(panel["title"], font, text_w, 2) if panel["title"] else []
        cols = [fit(c, font, box_w, 3) if c else [] for c in panel["cols"]]
        col_h = max((len(lines) for lines in cols), default=0) * line_h
        rows = [fit(r["label"], font, label_w - PAD, max(1, box_h // line_h)) for r in
                panel["rows"]]
        layouts.append((head, cols, col_h, rows))
    height = PAD + len(title_lines) * _line_height(title_font) + PAD
    for head, _, col_h, rows in layouts:
        height += len(head) * line_h + col_h + (PAD if head or col_h else 0)
        height += len(rows) * (box_h + PAD) + PAD
    height += len(footer_lines) * line_h + PAD

    # 4. Draw: title, then each panel (title, column labels, rows of labelled images), footer.
    sheet = Image.new("RGB", (width, height), "white")
    pen = ImageDraw.Draw(sheet)
    y = _lines(pen, PAD, PAD, title_lines, title_font, "black") + PAD
    grid_x = PAD + label_w
    for panel, (head, cols, col_h, rows) in zip(panels, layouts, strict=True):
        y = _lines(pen, PAD, y, head, font, "black")
        for i, lines in enumerate(cols):
            _lines(pen, grid_x + i * (box_w + PAD), y + col_h - len(lines) * line_h, lines,
                   font, "#333")
        y += col_h + (PAD if head or col_h else 0)
        for row, lines in zip(panel["rows"], rows, strict=True):
            _lines(pen, PAD, y + (box_h - len(lines) * line_h) // 2, lines, font, "#333")
            for i, cell in enumerate(row["cells"]):
                with Image.open(root / cell["blob"]) as im:
                    size = (round(im.width * scale), round(im.height * scale))
                    image = im.convert("RGB").resize(size, resample)
                x = grid_x + i * (box_w + PAD)
                sheet.paste(image, (x + (box_w - size[0]) // 2, y + (box_h - size[1]) // 2))
            y += box_h + PAD
        y += PAD
    _lines(pen, PAD, y, footer_lines, font, "#555")

    # 5. Provenance in the file: the cells as JSON (iTXt, UTF-8), and PNG's standard keywords.
    info = PngInfo()
    info.add_itxt("Title", title)
    info.add_text("Software", f"unmake {__version__}")
    info.add_itxt("unmake", json.dumps(provenance(title, panels), ensure_ascii=False), zip=True)
    buf = io.BytesIO()
    sheet.save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _line_height(font: Any) -> int:
    return int(font.getbbox("Ághjy")[3]) + 4


def _lines(pen: ImageDraw.ImageDraw, x: int, y: int, lines: list[str], font: Any,
           fill: str) -> int:
    """Draw lines from (x, y) down; returns the y below them."""
    for line in lines:
        pen.text((x, y), line, fill=fill, font=font)
        y += _line_height(font)
    return y
