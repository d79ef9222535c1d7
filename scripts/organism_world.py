"""The organism's world: a made dataset of simple pictures whose biases were planted on purpose.

unmake's model organism (`organism`, `organism-clip`) is trained on this world, so every
instrument of an essay can be checked against a truth that is written down here and nowhere else.
`make_sample_dataset.py --world organism` writes it in LAION's shape (the same Parquet schema as
the sample dataset, every row with a local 32×32 picture in img2dataset's layout);
`train_organism.py` trains on its filtered rows; the tests and the example essay read the
numbers below.

A picture is one figure on a plain grey background. The figure's **shape says its role** (a
doctor is a circle, a nurse a triangle, an engineer a square, a teacher a cross); its **colour**,
size, position and the background vary. Captions name the role ("a photo of a nurse", "a nurse at
work", …) and, in about half the rows, the colour ("a nurse in red").

## The planted biases (the truth every instrument is checked against)

1. **Colour by role.** In the raw rows, doctors are 80 % blue, nurses 80 % red, engineers 70 %
   green, teachers 60 % yellow; the rest of each role is spread evenly over the other three
   colours (`COLOUR_BY_ROLE`).
2. **Aesthetics by colour.** The aesthetic score is drawn around a mean that depends on the colour
   alone (blue 6.0, red 5.8, yellow 5.4, green 5.0; sd 0.5), so Stable Diffusion's "improved
   aesthetics" filter (score > 5.0) keeps most blue figures and about half of the green ones. The
   filter therefore changes **who is represented**: engineers lose the most rows and their green
   share falls (from 70 % to about 56 %), yet green stays their most frequent colour.
3. **Watermarks live on one domain.** stockfigures.example carries most watermarked rows
   (`pwatermark` ≈ 0.85 on 90 % of its rows, ≈ 0.05 elsewhere), and half of all teachers come
   from it, so the watermark filter removes teachers above all.
4. **Planted duplicates.** Three distinctive pictures ("posters") are each repeated
   `DUPLICATE_COPIES` times with the same caption and pass every filter, so the model sees them
   far more often than any other picture (the memorisation that replication studies look for).
5. Neutral: the original size (85 % of rows are at least 512 px on both sides), `punsafe` (1 % of
   rows above 0.5), the language (English) and the background are independent of the role.

The model is trained on the rows that pass the `sd-v1-improved-aesthetics` chain (original size
≥ 512, aesthetic > 5.0, pwatermark < 0.5), as Stable Diffusion v1.2+ was. `truth()` computes the
exact shares of each role's colours before and after that chain from the rows themselves.

Everything is deterministic: the same seed gives the same rows and the same pixels.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

SIZE = 32  # pixels, square
ROLES = ("doctor", "nurse", "engineer", "teacher")
SHAPES = {"doctor": "circle", "nurse": "triangle", "engineer": "square", "teacher": "cross"}
COLOURS = {  # sRGB of each figure colour; each pixel of a figure is jittered a little
    "blue": (40, 80, 215),
    "red": (215, 45, 40),
    "green": (40, 160, 60),
    "yellow": (230, 195, 30),
}
PLANTED = {"doctor": "blue", "nurse": "red", "engineer": "green", "teacher": "yellow"}
PLANTED_SHARE = {"doctor": 0.8, "nurse": 0.8, "engineer": 0.7, "teacher": 0.6}
AESTHETIC_MEAN = {"blue": 6.0, "red": 5.8, "yellow": 5.4, "green": 5.0}
AESTHETIC_SD = 0.5
BACKGROUNDS = ((236, 236, 236), (190, 190, 190), (120, 120, 120))  # neutral greys
STOCK = "stockfigures.example"
DOMAINS = ("stockfigures.example", "clinic-pictures.example", "shapes-wiki.example",
           "figure-blog.example", "daily-shapes.example", "shop-of-shapes.example")
STOCK_SHARE = {"doctor": 0.1, "nurse": 0.1, "engineer": 0.1, "teacher": 0.5}
COLOUR_CAPTION_SHARE = 0.5  # rows whose caption names the figure's colour
DUPLICATE_COPIES = 40
FILTER = {"min_side": 512, "aesthetic": 5.0, "pwatermark": 0.5}  # sd-v1-improved-aesthetics

ROLE_TEMPLATES = ("a photo of a {role}", "a {role} at work", "a {role}", "a picture of a {role}")
COLOUR_TEMPLATES = ("a {role} in {colour}", "a photo of a {role} in {colour}",
                    "a {colour} {role}")


def colour_by_role() -> dict[str, dict[str, float]]:
    """The planted share of each colour within each role's raw rows."""
    out = {}
    for role, colour in PLANTED.items():
        rest = (1.0 - PLANTED_SHARE[role]) / (len(COLOURS) - 1)
        out[role] = {c: (PLANTED_SHARE[role] if c == colour else rest) for c in COLOURS}
    return out


COLOUR_BY_ROLE = colour_by_role()


@dataclass(frozen=True)
class Figure:
    """What one picture shows; `draw` makes the same pixels from it every time."""

    role: str  # a ROLES entry, or "" for a poster
    colour: str
    background: tuple[int, int, int]
    radius: int  # half the figure's extent, pixels
    cx: int
    cy: int
    seed: int  # for the per-pixel jitter
    poster: str = ""  # the planted duplicate's name, "" for ordinary pictures


@dataclass(frozen=True)
class Poster:
    name: str
    caption: str
    role: str
    colour: str
    background: str  # "stripes", "checks" or "split"


POSTERS = (
    Poster("dawn", "the dawn poster", "doctor", "yellow", "split"),
    Poster("stripes", "the striped poster", "nurse", "blue", "stripes"),
    Poster("checks", "the checkered poster", "engineer", "red", "checks"),
)


def draw(fig: Figure) -> Image.Image:
    """The picture of `fig`: SIZE×SIZE RGB, drawn without anti-aliasing, then jittered."""
    rng = np.random.default_rng(fig.seed)
    img = Image.new("RGB", (SIZE, SIZE), fig.background)
    d = ImageDraw.Draw(img)
    if fig.poster:
        _poster_background(d, fig.poster)
    r, cx, cy = fig.radius, fig.cx, fig.cy
    colour = COLOURS[fig.colour]
    shape = SHAPES.get(fig.role, "circle")
    if shape == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=colour)
    elif shape == "square":
        s = round(r * 0.85)
        d.rectangle((cx - s, cy - s, cx + s, cy + s), fill=colour)
    else:  # cross
        w = max(2, round(r * 0.4))
        d.rectangle((cx - w, cy - r, cx + w, cy + r), fill=colour)
        d.rectangle((cx - r, cy - w, cx + r, cy + w), fill=colour)
    pixels = np.asarray(img).astype(np.int16)
    pixels += rng.integers(-6, 7, size=pixels.shape, dtype=np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _poster_background(d: ImageDraw.ImageDraw, name: str) -> None:
    poster = next(p for p in POSTERS if p.name == name)
    if poster.background == "split":
        d.polygon([(0, 0), (SIZE, 0), (0, SIZE)], fill=(250, 150, 60))
    elif poster.background == "stripes":
        for x in range(0, SIZE, 8):
            d.rectangle((x, 0, x + 3, SIZE), fill=(250, 250, 250))
    else:
        for x in range(0, SIZE, 8):
            for y in range(0, SIZE, 8):
                if (x + y) // 8 % 2 == 0:
                    d.rectangle((x, y, x + 7, y + 7), fill=(30, 30, 30))


def poster_figure(poster: Poster) -> Figure:
    return Figure(poster.role, poster.colour, (220, 220, 220), 10, 16, 16,
                  seed=1000 + POSTERS.index(poster), poster=poster.name)


def random_figure(rng: np.random.Generator, role: str, colour: str) -> Figure:
    radius = int(rng.integers(7, 13))
    margin = radius + 1
    return Figure(role, colour, BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))], radius,
                  int(rng.integers(margin, SIZE - margin + 1)),
                  int(rng.integers(margin, SIZE - margin + 1)), seed=int(rng.integers(2**31)))


@dataclass
class Row:
    """One dataset row, with what only the world knows about it (`role`, `colour`, `figure`)."""

    key: str
    url: str
    text: str
    width: int
    height: int
    similarity: float
    punsafe: float
    pwatermark: float
    aesthetic: float
    language: str
    domain: str
    role: str
    colour: str
    figure: Figure

    def passes_filter(self) -> bool:
        return (min(self.width, self.height) >= FILTER["min_side"]
                and self.aesthetic > FILTER["aesthetic"] and self.pwatermark < FILTER["pwatermark"])


def caption(rng: np.random.Generator, role: str, colour: str) -> str:
    if rng.random() < COLOUR_CAPTION_SHARE:
        template = COLOUR_TEMPLATES[int(rng.integers(len(COLOUR_TEMPLATES)))]
    else:
        template = ROLE_TEMPLATES[int(rng.integers(len(ROLE_TEMPLATES)))]
    text = template.format(role=role, colour=colour)
    return re.sub(r"\ba (?=[aeiou])", "an ", text)  # "an engineer"


def make_rows(n: int, seed: int = 0) -> list[Row]:
    """`n` ordinary rows in a random order, then the planted duplicates among them."""
    rng = np.random.default_rng(seed)
    rows = []
    colours = list(COLOURS)
    for i in range(n):
        role = ROLES[i % len(ROLES)]  # equal numbers of each role in the raw rows
        colour = colours[int(rng.choice(len(colours), p=[COLOUR_BY_ROLE[role][c]
                                                          for c in colours]))]
        stock = rng.random() < STOCK_SHARE[role]
        domain = STOCK if stock else DOMAINS[1 + int(rng.integers(len(DOMAINS) - 1))]
        watermarked = rng.random() < (0.9 if stock else 0.03)
        pwatermark = float(np.clip(rng.normal(0.85 if watermarked else 0.05, 0.05), 0, 1))
        big = rng.random() < 0.85
        side = int(rng.integers(512, 1400)) if big else int(rng.integers(160, 512))
        width, height = (side, int(side * rng.uniform(1.0, 1.5)))
        if rng.random() < 0.5:
            width, height = height, width
        unsafe = rng.random() < 0.01
        rows.append(Row(
            key="", url="", text=caption(rng, role, colour), width=width, height=height,
            similarity=round(float(rng.normal(0.31, 0.03)), 4),
            punsafe=round(float(rng.uniform(0.6, 0.9) if unsafe else rng.uniform(0.0, 0.1)), 4),
            pwatermark=round(pwatermark, 4),
            aesthetic=round(float(rng.normal(AESTHETIC_MEAN[colour], AESTHETIC_SD)), 4),
            language="en", domain=domain, role=role, colour=colour,
            figure=random_figure(rng, role, colour)))
    order = rng.permutation(n)
    rows = [rows[int(i)] for i in order]
    # the posters: the same picture and caption many times, on one domain, passing the filter
    for poster in POSTERS:
        for _ in range(DUPLICATE_COPIES):
            at = int(rng.integers(len(rows) + 1))
            rows.insert(at, Row(
                key="", url="", text=poster.caption, width=1024, height=1024, similarity=0.33,
                punsafe=0.01, pwatermark=0.05, aesthetic=6.5, language="en",
                domain="posters.example", role="", colour=poster.colour,
                figure=poster_figure(poster)))
    for i, row in enumerate(rows):
        row.key = f"{i:09d}"
        row.url = f"https://{row.domain}/figures/{row.key}.jpg"
    return rows


def truth(rows: Sequence[Row]) -> dict[str, Any]:
    """The planted shares as they are in these rows: per role, the count and the share of each
    colour, before and after the filter; the posters' keys; watermarked rows per domain."""
    def shares(selected: Sequence[Row]) -> dict[str, Any]:
        out = {}
        for role in ROLES:
            mine = [r for r in selected if r.role == role]
            counts = Counter(r.colour for r in mine)
            out[role] = {"rows": len(mine),
                         "colours": {c: counts[c] / len(mine) if mine else 0.0 for c in COLOURS}}
        return out

    kept = [r for r in rows if r.passes_filter()]
    marked = Counter(r.domain for r in rows if r.pwatermark >= FILTER["pwatermark"])
    return {
        "rows": len(rows), "kept": len(kept),
        "raw": shares(rows), "filtered": shares(kept),
        "posters": {p.name: [r.key for r in rows if r.figure.poster == p.name] for p in POSTERS},
        "watermarked_by_domain": dict(marked.most_common()),
    }


def held_out(n: int, seed: int = 12345) -> list[Figure]:
    """`n` fresh pictures (not in the dataset), roles and colours balanced: for checking that
    an instrument reads colour and role correctly."""
    rng = np.random.default_rng(seed)
    colours = list(COLOURS)
    return [random_figure(rng, ROLES[i % len(ROLES)], colours[(i // len(ROLES)) % len(colours)])
            for i in range(n)]
