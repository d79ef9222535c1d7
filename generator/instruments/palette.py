"""Palette instrument: an image's (or a group's) dominant colours, lightness, chroma and hues.

Contract: `image_palette(rgb, k)` and `group_palette(palettes, k)` return JSON-able dicts
    {"colours": [{"hex": "#rrggbb", "lab": [L, a, b], "share": s}, ...]  (share descending),
     "lightness": mean L*, "saturation": mean chroma C*ab, "hues": 12 shares}
computed deterministically: the same input and seed give the same output on every run. Floats
are rounded to 4 decimals so stored records do not differ by the last bits of a BLAS.

Method:
- colours are clustered by k-means in CIELAB, where Euclidean distance (ΔE76) roughly follows
  perceived difference, unlike in sRGB; k-means++ seeding from a seeded numpy Generator, then
  Lloyd iterations until no assignment changes (at most MAX_ITERATIONS);
- "saturation" is the mean CIELAB chroma C*ab = sqrt(a*² + b*²) (0 for greys, ~134 at sRGB
  blue), not HSV saturation, which calls near-black pixels fully saturated;
- "hues" has 12 bins of 30° of the CIELAB hue angle h_ab (bin 0 = 0–30°, reds and pinks; bin 1
  = 30–60°, sRGB red at 40°; bin 3 = 90–120°, yellows; bin 4 = 120–150°, greens; bin 10 = 300–330°,
  sRGB blue at 306°). Only pixels with chroma above CHROMA_MIN count, and each bin is a share of
  *all* pixels, so the bins sum to the colourful share of the image (0 for a greyscale one).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..colour import chroma, hue_angle, lab_to_hex, srgb_to_lab

Float = NDArray[np.float64]

MAX_PIXELS = 4096  # a 64 × 64 grid of samples: shares to ±1 %, and k-means in milliseconds
MAX_ITERATIONS = 100  # Lloyd iterations; on a few thousand colours it converges in 10–30
CHROMA_MIN = 10.0  # C*ab below this reads as grey (ΔE ≈ 10 from neutral) and has no hue
HUE_BINS = 12
DECIMALS = 4


def image_palette(rgb: NDArray[np.uint8], k: int, seed: int = 0) -> dict[str, Any]:
    """The k dominant colours of an (H, W, 3) uint8 sRGB image, with its lightness and hues.

    Images with more than MAX_PIXELS pixels are sampled on a regular grid of cell centres (the
    same pixels every time, spread evenly over the frame). An image with at most k distinct
    colours returns exactly those colours, so a palette never invents a colour.
    """
    # 1. Check inputs.
    _check_k(k)
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 \
            or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        shape = getattr(rgb, "shape", None)
        dtype = getattr(rgb, "dtype", type(rgb).__name__)
        raise ValueError(f"palette: need an (H, W, 3) uint8 RGB image, got {dtype} {shape}")
    # 2. Sample the pixels, then count each distinct colour once: k-means on the distinct
    #    colours weighted by their counts is the same as on the pixels, and much smaller.
    pixels = _grid_sample(rgb).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    lab = srgb_to_lab(colours)
    weights = counts.astype(np.float64) / counts.sum()
    # 3. Cluster and describe.
    centres, shares = _weighted_kmeans(lab, weights, k, seed)
    chromas = chroma(lab)
    return {
        "colours": _colour_list(centres, shares),
        "lightness": _round(np.sum(weights * lab[:, 0])),
        "saturation": _round(np.sum(weights * chromas)),
        "hues": [_round(v) for v in _hue_histogram(lab, weights)],
    }


def group_palette(palettes: list[dict[str, Any]], k: int, seed: int = 0) -> dict[str, Any]:
    """The k dominant colours of a group of images, from their `image_palette` results.

    Each image counts equally: its colours enter a weighted k-means with weight share / number
    of images. Lightness and saturation are the means over images, and each hue bin is the
    mean of the images' bins (the pooled share if every image had the same pixel count).
    """
    # 1. Check inputs.
    _check_k(k)
    if not palettes:
        raise ValueError("palette: a group needs at least one image palette, got none")
    # 2. Pool every image's colours; the same colour from two images becomes one point.
    n = len(palettes)
    lab_rows = [colour["lab"] for p in palettes for colour in p["colours"]]
    share_rows = [colour["share"] / n for p in palettes for colour in p["colours"]]
    points, inverse = np.unique(np.asarray(lab_rows, dtype=np.float64), axis=0,
                                return_inverse=True)
    weights = np.bincount(inverse.reshape(-1), weights=share_rows,
                          minlength=len(points)).astype(np.float64)
    # 3. Cluster the pooled colours and average the scalar measures.
    centres, shares = _weighted_kmeans(points, weights, k, seed)
    hues = np.mean([p["hues"] for p in palettes], axis=0)
    return {
        "colours": _colour_list(centres, shares),
        "lightness": _round(np.mean([p["lightness"] for p in palettes])),
        "saturation": _round(np.mean([p["saturation"] for p in palettes])),
        "hues": [_round(v) for v in hues],
        "images": n,
    }


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"palette: k must be a positive integer, got {k!r}")


def _grid_sample(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """At most MAX_PIXELS pixels on a regular grid of cell centres, in the image's proportions."""
    height, width = rgb.shape[:2]
    if height * width <= MAX_PIXELS:
        return rgb
    scale = np.sqrt(MAX_PIXELS / (height * width))
    rows, cols = max(1, int(height * scale)), max(1, int(width * scale))
    # Cell centres rather than np.linspace's end points: symmetric, so a half-and-half image
    # is sampled half and half.
    ys = ((np.arange(rows) + 0.5) * height / rows).astype(np.intp)
    xs = ((np.arange(cols) + 0.5) * width / cols).astype(np.intp)
    return rgb[np.ix_(ys, xs)]


def _weighted_kmeans(points: Float, weights: Float, k: int, seed: int) -> tuple[Float, Float]:
    """Centres and their total weights (summing to the input's) of weighted k-means on points.

    Points must be distinct. With at most k points of positive weight, they are the centres.
    """
    points, weights = points[weights > 0], weights[weights > 0]  # no mass, no say
    if len(points) <= k:
        return points, weights
    rng = np.random.default_rng(seed)
    # 1. k-means++ seeding (Arthur & Vassilvitskii 2007): each next centre is drawn with
    #    probability proportional to weight × squared distance to the nearest centre so far.
    centres = [points[rng.choice(len(points), p=weights / weights.sum())]]
    nearest = np.sum((points - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        mass = weights * nearest
        centres.append(points[rng.choice(len(points), p=mass / mass.sum())])
        nearest = np.minimum(nearest, np.sum((points - centres[-1]) ** 2, axis=1))
    centre_array = np.array(centres)
    # 2. Lloyd iterations until no point changes cluster.
    labels = np.full(len(points), -1)
    for _ in range(MAX_ITERATIONS):
        distances = np.sum((points[:, None, :] - centre_array[None, :, :]) ** 2, axis=2)
        new_labels = np.argmin(distances, axis=1)  # ties go to the lower index: deterministic
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        mass = np.bincount(labels, weights=weights, minlength=k)
        for channel in range(points.shape[1]):
            sums = np.bincount(labels, weights=weights * points[:, channel], minlength=k)
            # A cluster left empty keeps its centre instead of dividing by zero.
            centre_array[:, channel] = np.where(mass > 0, sums / np.where(mass > 0, mass, 1),
                                                centre_array[:, channel])
    # 3. Drop clusters that ended empty.
    mass = np.bincount(labels, weights=weights, minlength=k).astype(np.float64)
    return centre_array[mass > 0], mass[mass > 0]


def _hue_histogram(lab: Float, weights: Float) -> Float:
    """Weight of the colourful points in each 30° bin of hue angle (see the module docstring)."""
    colourful = chroma(lab) > CHROMA_MIN
    bins = (hue_angle(lab[colourful]) // (360.0 / HUE_BINS)).astype(np.intp) % HUE_BINS
    return np.bincount(bins, weights=weights[colourful], minlength=HUE_BINS).astype(np.float64)


def _colour_list(centres: Float, shares: Float) -> list[dict[str, Any]]:
    """Colours by share, largest first; equal shares by lightness, so the order is total."""
    total = shares.sum()
    order = sorted(range(len(centres)), key=lambda i: (-shares[i], *centres[i]))
    return [{"hex": lab_to_hex(centres[i]), "lab": [_round(v) for v in centres[i]],
             "share": _round(shares[i] / total)} for i in order]


def _round(value: float | np.floating[Any]) -> float:
    # `+ 0.0` turns -0.0 into 0.0, so a grey's a* prints as 0.0, not -0.0.
    return round(float(value), DECIMALS) + 0.0


# -- the `palette:` key of a `measure` directive ------------------------------------------------
VERSION = 1  # bump when the same image and k would give another palette
MAX_K = 12


def parse(body: Any, ctx: Any) -> Any:
    from ..specs import preview

    value = body.raw("palette", None)
    if value is None or value is False:
        return None
    if value is True:
        value = 5
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_K:
        raise body.error("palette", f"must be a number of colours from 1 to {MAX_K} (or true "
                         f"for 5), got {preview(value)}")
    return {"k": value}


def jobs(settings: Any, image: Any, ctx: Any) -> list[Any]:
    from . import image_job

    return [image_job("measure.palette", settings, image, VERSION)]


def run(jobs: list[Any], options: dict[str, Any]) -> Any:
    """Runner for "measure.palette" (numpy only)."""
    from . import run_each

    env = {"numpy": np.__version__, "method": f"k-means in CIELAB, v{VERSION}"}
    yield from run_each(lambda rgb, job: image_palette(rgb, job.inputs["k"]), env, jobs,
                        options)


def summarise(settings: Any, groups: list[Any], by_image: dict[str, list[Any]],
              results: Any) -> dict[str, Any]:
    from . import without_withheld

    groups, held = without_withheld(groups, results)
    rows = []
    for group in groups:
        found = results.gather(group.images, by_image, lambda j: j.type == "measure.palette")
        palettes = [record["data"] for _, record in found]
        summary = group_palette(palettes, settings["k"]) if palettes else None
        rows.append({"group": group.label, "n": len(palettes), "palette": summary})
    return {"k": settings["k"], "rows": rows, "hue_bins": HUE_BINS, "chroma_min": CHROMA_MIN,
            "withheld": held, **results.problems()}


def describe(job: Any) -> tuple[str, str]:
    return "palette", f"{job.inputs['k']} colours of image {job.inputs['image'][:12]}"


def _instrument() -> Any:
    from . import Instrument

    return Instrument(
        name="palette", title="Palette",
        doc="dominant colours per image and group (k-means in CIELAB), lightness, chroma, hues",
        parse=parse, jobs=jobs, summarise=summarise,
        runners={"measure.palette": "generator.instruments.palette:run"}, describe=describe)


INSTRUMENT = _instrument()
