"""Make a small, made-up LAION-schema sample dataset, deterministically, for essays and tests.

Nothing here is real LAION data. Captions, URLs, sizes and scores are drawn from templates with
``numpy.random.default_rng(seed)``; the same arguments give byte-identical files. The dataset has
the shape of a LAION / Re-LAION subset as img2dataset and clip-retrieval leave it:

    OUT/metadata.parquet              key, URL, TEXT, WIDTH, HEIGHT, similarity, punsafe,
                                      pwatermark, aesthetic, LANGUAGE (one row per sample)
    OUT/images/00000/000000042.jpg    a 64×64 made-up picture for the first ``images`` rows,
    OUT/images/00000/000000042.txt    its caption, and
    OUT/images/00000/000000042.json   its img2dataset-style record (url, sizes, status)
    OUT/embeddings/img_emb_0.npy      float32 (rows × 64), L2-normalised, row-aligned; made, not
                                      CLIP: each caption category is a centroid plus noise
    OUT/README.md                     what this is, the skews with their measured numbers, and
                                      how to point an essay at a real LAION subset instead
    OUT/MANIFEST.json                 parameters and a digest of every file; a complete, matching
                                      dataset is left alone

The skews are deliberate, so that an essay has something to find. The numbers are invented; the
shapes imitate patterns that audits of LAION have reported:

1. Gendered occupations. Captions naming a CEO, businessman, engineer, pilot, scientist, lawyer or
   doctor mostly say "man", "he", "his" or "suit"; captions naming a nurse, housekeeper,
   receptionist or teacher mostly say "woman", "she" or "her".
2. Stock photography. Shutterstock, Getty Images, iStock, Alamy, Dreamstime and 123RF supply most
   rows whose caption says "portrait" or "business", and their rows carry a high ``pwatermark``
   (about 0.8; elsewhere about 0.08).
3. Aesthetics. ``aesthetic`` runs higher for "beautiful woman", "wallpaper" and landscape captions
   and for i.pinimg.com, lower for product listings and news.
4. Unsafe rows. About 3 % of rows have ``punsafe`` > 0.5, concentrated in "beautiful woman"
   captions, costume listings and news.
5. Languages. About a quarter of rows are not English (de, fr, es, ja, nl, it, pt, and '' for
   captions no detector could place); the non-English ones are mostly landscapes and food.
6. Sizes. About half of the original images are under 512 px on the short side.

Together these make the Stable Diffusion "improved aesthetics" filter chain (original size at
least 512 on both sides, aesthetic > 5.0, pwatermark < 0.5) remove a large and uneven share of
each occupation's rows. Three rows are hostile on purpose, to exercise HTML escaping: their
captions hold ``<script>alert(1)</script>``, ``"><img src=x onerror=alert(1)>`` and
``{{ config }}`` with ``{% raw %}``; they live on evil.example, say "portrait", and are safe by
``punsafe``, so samples and searches show them.

Usage: python scripts/make_sample_dataset.py [--out data/sample] [--rows 4000] [--images 300]
[--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

# Bump when the output for the same parameters changes, so old datasets are rebuilt.
FORMAT_VERSION = 1
GENERATOR = "unmake scripts/make_sample_dataset.py"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "data" / "sample"
MIN_ROWS = 10
IMAGE_SIZE = 64
EMBED_DIM = 64
SHARD_SIZE = 10_000  # img2dataset's default number of samples per shard folder
SD_MIN_SIDE = 512
SD_MIN_AESTHETIC = 5.0
SD_MAX_WATERMARK = 0.5
WORLDS = ("laion", "organism")
ORGANISM_ROWS = 6000  # ordinary rows; the planted duplicates come on top

SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("URL", pa.string()),
        ("TEXT", pa.string()),
        ("WIDTH", pa.int64()),
        ("HEIGHT", pa.int64()),
        ("similarity", pa.float64()),
        ("punsafe", pa.float64()),
        ("pwatermark", pa.float64()),
        ("aesthetic", pa.float64()),
        ("LANGUAGE", pa.string()),
    ]
)
COLUMNS = tuple(SCHEMA.names)

# The word lists the skews are measured with (in the README and in the tests).
MALE_WORDS = r"\b(man|men|male|he|his|him|suit)\b"
FEMALE_WORDS = r"\b(woman|women|female|she|her)\b"

Rng = np.random.Generator
Size = tuple[int, int, str]  # original width, height, and the URL token naming that rendition


# --------------------------------------------------------------------------------------------
# Random helpers


def _pick(rng: Rng, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _index(rng: Rng, weights: Sequence[float]) -> int:
    """An index drawn with the given (unnormalised) weights; one uniform draw, no arrays."""
    u = rng.random() * sum(weights)
    for i, w in enumerate(weights):
        u -= w
        if u < 0:
            return i
    return len(weights) - 1


def _weighted(rng: Rng, weights: Mapping[str, float]) -> str:
    names = tuple(weights)
    return names[_index(rng, tuple(weights.values()))]


def _clamp(x: float, low: float, high: float) -> float:
    return min(max(float(x), low), high)


def _hex(rng: Rng, n: int) -> str:
    return rng.bytes((n + 1) // 2).hex()[:n]


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _token(rng: Rng, n: int) -> str:
    return "".join(_B64[int(i)] for i in rng.integers(0, 64, n))


def _digits(rng: Rng, n: int) -> str:
    return str(int(rng.integers(10 ** (n - 1), 10**n)))


def _date(rng: Rng) -> tuple[int, int, int]:
    return int(rng.integers(2009, 2022)), int(rng.integers(1, 13)), int(rng.integers(1, 29))


def _slug(text: str, limit: int = 60) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if len(slug) > limit:  # cut at a word boundary, as CMSs do
        slug = slug[: limit + 1].rsplit("-", 1)[0]
    return slug or "image"


def _title(text: str) -> str:
    return "_".join(w.capitalize() for w in _slug(text, 40).split("-"))


# --------------------------------------------------------------------------------------------
# Domains: where the made-up rows claim to come from. Hosts have subdomains (and some sit under
# multi-part suffixes such as .co.uk and .com.br) so that registered-domain parsing matters.


@dataclass(frozen=True)
class Domain:
    """A source site: its hosts, how its image URLs look, and the renditions it serves."""

    hosts: tuple[str, ...]
    path: Callable[[Rng, str, Size], str]
    renditions: tuple[tuple[int, int, str, float], ...]  # width, height, URL token, weight
    stock: bool = False
    aesthetic: float = 0.0  # added to the row's aesthetic mean


def _p_pinimg(rng: Rng, slug: str, size: Size) -> str:
    h = _hex(rng, 32)
    ext = ".png" if rng.random() < 0.1 else ".jpg"
    return f"/{size[2]}/{h[:2]}/{h[2:4]}/{h[4:6]}/{h}{ext}"


def _p_shutterstock(rng: Rng, slug: str, size: Size) -> str:
    return f"/image-photo/{slug}-{size[2]}-{_digits(rng, 9)}.jpg"


def _p_getty(rng: Rng, slug: str, size: Size) -> str:
    return f"/id/{_digits(rng, 9)}/photo/{slug}.jpg"


def _p_alamy(rng: Rng, slug: str, size: Size) -> str:
    ref = _token(rng, 7).upper().replace("-", "X").replace("_", "Y")
    return f"/comp/{ref}/{slug}-{ref}.jpg"


def _p_dreamstime(rng: Rng, slug: str, size: Size) -> str:
    return f"/{size[2]}/{slug}-{_digits(rng, 9)}.jpg"


def _p_123rf(rng: Rng, slug: str, size: Size) -> str:
    user = _pick(rng, ("dolgachov", "pressmaster", "lightfieldstudios", "racorn", "kzenon"))
    y, m, _ = _date(rng)
    stamp = f"{y % 100:02d}{m:02d}"
    folder = f"{user}/{user}{stamp}/{user}{stamp}{_digits(rng, 5)}"
    return f"/{size[2]}/{folder}/{_digits(rng, 8)}-{slug}.jpg"


def _p_shopify(rng: Rng, slug: str, size: Size) -> str:
    ext = ".png" if rng.random() < 0.25 else ".jpg"
    return (
        f"/s/files/1/{_digits(rng, 4)}/{_digits(rng, 4)}/{_digits(rng, 4)}/products/"
        f"{slug}_{size[2]}{ext}"
    )


def _p_ebay(rng: Rng, slug: str, size: Size) -> str:
    return f"/images/g/{_token(rng, 16)}/s-l{size[2]}.jpg"


def _p_amazon(rng: Rng, slug: str, size: Size) -> str:
    name = _digits(rng, 2) + _token(rng, 9).replace("-", "x").replace("_", "L")
    return f"/images/I/{name}.{size[2]}.jpg"


def _p_alicdn(rng: Rng, slug: str, size: Size) -> str:
    ext = ".png" if rng.random() < 0.2 else ".jpg"
    return f"/kf/H{_hex(rng, 32)}{size[2]}{ext}"


def _p_wikimedia(rng: Rng, slug: str, size: Size) -> str:
    name = _title(slug) + ".jpg"
    h = hashlib.md5(name.encode()).hexdigest()  # Commons shards files by the md5 of their name
    return f"/wikipedia/commons/thumb/{h[0]}/{h[:2]}/{name}/{size[2]}px-{name}"


def _p_flickr(rng: Rng, slug: str, size: Size) -> str:
    return f"/{_digits(rng, 4)}/{_digits(rng, 11)}_{_hex(rng, 10)}_{size[2]}.jpg"


def _p_blogspot(rng: Rng, slug: str, size: Size) -> str:
    name = _slug(slug, 30).replace("-", "+") or "image"
    return (
        f"/-{_token(rng, 11)}/{_token(rng, 11)}/AAAAAAAA{_token(rng, 3)}/{_token(rng, 11)}/"
        f"{size[2]}/{name}.jpg"
    )


def _p_wordpress(rng: Rng, slug: str, size: Size) -> str:
    y, m, _ = _date(rng)
    return f"/{y}/{m:02d}/{_slug(slug, 40)}{size[2]}.jpg"


def _p_nyt(rng: Rng, slug: str, size: Size) -> str:
    y, m, d = _date(rng)
    section = _pick(rng, ("business", "world", "us", "nyregion", "science"))
    word = _slug(slug, 12).split("-")[0]
    return f"/images/{y}/{m:02d}/{d:02d}/{section}/{d:02d}{word}/{d:02d}{word}-{size[2]}.jpg"


def _p_bbc_ichef(rng: Rng, slug: str, size: Size) -> str:
    name = f"_{_digits(rng, 9)}_{_slug(slug, 20)}.jpg"
    return f"/news/{size[2]}/cpsprodpb/{_hex(rng, 4).upper()}/production/{name}"


def _p_bbc_www(rng: Rng, slug: str, size: Size) -> str:
    y, _, _ = _date(rng)
    return f"/news/special/{y}/newsspec_{_digits(rng, 5)}/img/{_slug(slug, 30)}.jpg"


def _p_guardian(rng: Rng, slug: str, size: Size) -> str:
    w, h, _ = size
    return f"/img/media/{_hex(rng, 40)}/0_0_{w * 3}_{h * 3}/master/{size[2]}.jpg"


def _p_wallpapercave(rng: Rng, slug: str, size: Size) -> str:
    ext = ".png" if rng.random() < 0.1 else ".jpg"
    return f"/wp/wp{_digits(rng, 7)}{ext}"


def _p_wallpaperaccess(rng: Rng, slug: str, size: Size) -> str:
    return f"/full/{_digits(rng, 7)}.jpg"


def _p_chefkoch(rng: Rng, slug: str, size: Size) -> str:
    return f"/rezepte/{_digits(rng, 13)}/bilder/{_digits(rng, 7)}/crop-{size[2]}/{slug}.jpg"


def _p_afcdn(rng: Rng, slug: str, size: Size) -> str:
    y, m, d = _date(rng)
    return f"/recipe/{y}{m:02d}{d:02d}/{_digits(rng, 6)}_w{size[0]}h{size[1]}.jpg"


def _p_recetasgratis(rng: Rng, slug: str, size: Size) -> str:
    a, b, c = (int(x) for x in rng.integers(0, 10, 3))
    return f"/es/posts/{a}/{b}/{c}/{slug}_{_digits(rng, 5)}_{size[2]}.jpg"


def _p_hatena(rng: Rng, slug: str, size: Size) -> str:
    user = _pick(rng, ("kyoto-tabi", "ramen-nikki", "obento_mama", "yamanobori"))
    y, m, d = _date(rng)
    day = f"{y}{m:02d}{d:02d}"
    return f"/images/fotolife/{user[0]}/{user}/{day}/{day}{_digits(rng, 6)}.jpg"


def _p_ah(rng: Rng, slug: str, size: Size) -> str:
    return f"/static/recepten/img_{_digits(rng, 6)}_{size[2]}.jpg"


def _p_giallozafferano(rng: Rng, slug: str, size: Size) -> str:
    return f"/images/{_digits(rng, 3)}-{_digits(rng, 5)}/{slug}_{size[2]}.jpg"


def _p_itdg(rng: Rng, slug: str, size: Size) -> str:
    n = _digits(rng, 6)
    return f"/tdg/images/recipes/000/{n[:3]}/{n}/{n}_{size[2]}.jpg"


_WORDPRESS_BLOGS = (
    "cookingwithmaria", "wanderlusttales", "thehomeeditblog", "nursinglifestories",
    "officelifeblog", "greenkitchenstories", "petsofinstablog", "dailynewsphotos",
)  # fmt: skip

# fmt: off
DOMAINS: dict[str, Domain] = {
    "pinimg": Domain(
        ("i.pinimg.com",), _p_pinimg, aesthetic=0.6,
        renditions=((236, 354, "236x", 0.25), (236, 236, "236x", 0.1), (236, 420, "236x", 0.15),
                 (564, 846, "564x", 0.2), (564, 752, "564x", 0.1),
                 (1080, 1350, "originals", 0.1), (1200, 1800, "originals", 0.1)),
    ),
    "shutterstock": Domain(
        ("image.shutterstock.com", "images.shutterstock.com"), _p_shutterstock, stock=True,
        aesthetic=0.2,
        renditions=((260, 280, "260nw", 0.15), (450, 300, "450w", 0.3), (600, 400, "600w", 0.35),
                 (600, 600, "600w", 0.1), (1500, 1000, "1500w", 0.1)),
    ),
    "gettyimages": Domain(
        ("media.gettyimages.com",), _p_getty, stock=True, aesthetic=0.2,
        renditions=((612, 408, "", 0.5), (612, 612, "", 0.25), (408, 612, "", 0.15),
                 (1024, 683, "", 0.1)),
    ),
    "istockphoto": Domain(
        ("media.istockphoto.com",), _p_getty, stock=True, aesthetic=0.2,
        renditions=((612, 408, "", 0.5), (612, 612, "", 0.3), (1024, 683, "", 0.2)),
    ),
    "alamy": Domain(
        ("c8.alamy.com", "c7.alamy.com"), _p_alamy, stock=True,
        renditions=((1300, 956, "", 0.5), (1300, 867, "", 0.3), (640, 427, "", 0.2)),
    ),
    "dreamstime": Domain(
        ("thumbs.dreamstime.com",), _p_dreamstime, stock=True,
        renditions=((800, 533, "b", 0.45), (400, 267, "z", 0.4), (1600, 1067, "x", 0.15)),
    ),
    "123rf": Domain(
        ("us.123rf.com", "previews.123rf.com"), _p_123rf, stock=True,
        renditions=((450, 300, "450wm", 0.6), (450, 450, "450wm", 0.3), (1300, 867, "1300wm", 0.1)),
    ),
    "shopify": Domain(
        ("cdn.shopify.com",), _p_shopify,
        renditions=((1024, 1024, "1024x1024", 0.3), (480, 480, "large", 0.4),
                 (600, 600, "grande", 0.15), (800, 1067, "800x", 0.15)),
    ),
    "ebay": Domain(
        ("i.ebayimg.com",), _p_ebay, aesthetic=-0.5,
        renditions=((1600, 1200, "1600", 0.3), (500, 375, "500", 0.35), (300, 300, "300", 0.15),
                 (1200, 1600, "1600", 0.2)),
    ),
    "amazon": Domain(
        ("images-na.ssl-images-amazon.com", "m.media-amazon.com"), _p_amazon,
        renditions=((1500, 1500, "_AC_SL1500_", 0.4), (320, 320, "_AC_UL320_", 0.25),
                 (425, 425, "_AC_SX425_", 0.2), (1000, 1000, "_SL1000_", 0.15)),
    ),
    "alicdn": Domain(
        ("ae01.alicdn.com",), _p_alicdn, aesthetic=-0.4,
        renditions=((800, 800, "", 0.5), (350, 350, "_350x350", 0.3), (220, 220, "_220x220", 0.2)),
    ),
    "wikimedia": Domain(
        ("upload.wikimedia.org",), _p_wikimedia,
        renditions=((800, 533, "800", 0.35), (1280, 853, "1280", 0.2), (320, 213, "320", 0.3),
                 (640, 960, "640", 0.15)),
    ),
    "flickr": Domain(
        ("live.staticflickr.com", "farm4.staticflickr.com", "farm8.staticflickr.com"),
        _p_flickr, aesthetic=0.3,
        renditions=((1024, 683, "b", 0.35), (640, 427, "z", 0.25), (320, 213, "n", 0.15),
                 (1600, 1067, "h", 0.15), (683, 1024, "b", 0.1)),
    ),
    "blogspot": Domain(
        ("1.bp.blogspot.com", "2.bp.blogspot.com", "3.bp.blogspot.com", "4.bp.blogspot.com"),
        _p_blogspot, aesthetic=-0.2,
        renditions=((1600, 1067, "s1600", 0.25), (640, 480, "s640", 0.25), (400, 300, "s400", 0.25),
                 (320, 240, "s320", 0.15), (1200, 1600, "s1600", 0.1)),
    ),
    "wordpress": Domain(
        tuple(f"{blog}.files.wordpress.com" for blog in _WORDPRESS_BLOGS), _p_wordpress,
        renditions=((1024, 683, "", 0.35), (640, 427, "-640x427", 0.3), (2048, 1365, "", 0.15),
                 (300, 200, "-300x200", 0.2)),
    ),
    "nyt": Domain(
        ("static01.nyt.com",), _p_nyt,
        renditions=((2048, 1365, "superJumbo", 0.35), (600, 400, "articleLarge", 0.35),
                 (1050, 550, "facebookJumbo", 0.3)),
    ),
    "bbc-ichef": Domain(
        ("ichef.bbci.co.uk",), _p_bbc_ichef,
        renditions=((976, 549, "976", 0.5), (624, 351, "624", 0.35), (320, 180, "320", 0.15)),
    ),
    "bbc-www": Domain(
        ("www.bbc.co.uk",), _p_bbc_www,
        renditions=((640, 360, "", 0.6), (976, 549, "", 0.4)),
    ),
    "guardian": Domain(
        ("i.guim.co.uk",), _p_guardian,
        renditions=((1000, 600, "1000", 0.4), (500, 300, "500", 0.35), (1900, 1140, "1900", 0.25)),
    ),
    "wallpapercave": Domain(
        ("wallpapercave.com",), _p_wallpapercave, aesthetic=0.5,
        renditions=((1920, 1080, "", 0.5), (2560, 1440, "", 0.3), (1280, 720, "", 0.2)),
    ),
    "wallpaperaccess": Domain(
        ("wallpaperaccess.com",), _p_wallpaperaccess, aesthetic=0.5,
        renditions=((1920, 1080, "", 0.5), (2560, 1440, "", 0.3), (1280, 720, "", 0.2)),
    ),
    "chefkoch": Domain(
        ("img.chefkoch-cdn.de",), _p_chefkoch,
        renditions=((960, 720, "960x720", 0.5), (600, 450, "600x450", 0.5)),
    ),
    "afcdn": Domain(
        ("assets.afcdn.com",), _p_afcdn,
        renditions=((1024, 768, "", 0.5), (600, 450, "", 0.5)),
    ),
    "recetasgratis": Domain(
        ("cdn0.recetasgratis.net", "cdn1.recetasgratis.net"), _p_recetasgratis,
        renditions=((800, 600, "orig", 0.5), (600, 450, "600", 0.5)),
    ),
    "hatena": Domain(
        ("cdn-ak.f.st-hatena.com",), _p_hatena,
        renditions=((800, 600, "", 0.4), (400, 300, "", 0.6)),
    ),
    "ah": Domain(
        ("static.ah.nl",), _p_ah,
        renditions=((890, 594, "890x594", 0.5), (445, 297, "445x297", 0.5)),
    ),
    "giallozafferano": Domain(
        ("www.giallozafferano.it",), _p_giallozafferano,
        renditions=((780, 520, "780x520", 0.5), (450, 300, "450x300", 0.5)),
    ),
    "itdg": Domain(
        ("img.itdg.com.br",), _p_itdg,
        renditions=((650, 650, "original", 0.5), (300, 300, "thumbnail", 0.5)),
    ),
}
# fmt: on
STOCK_DOMAINS = tuple(name for name, d in DOMAINS.items() if d.stock)
STOCK_SPLIT = {
    "shutterstock": 0.3, "gettyimages": 0.2, "istockphoto": 0.12, "alamy": 0.1,
    "dreamstime": 0.14, "123rf": 0.14,
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Caption categories. Each row belongs to one; the category picks the caption templates, the
# source sites, the aesthetic mean, the unsafe rate, the picture's palette and the embedding
# centroid.

CATEGORIES = ("occupation", "beauty", "landscape", "food", "product", "news", "animal", "interior")
CATEGORY_WEIGHTS = {
    "occupation": 0.22, "beauty": 0.10, "landscape": 0.14, "food": 0.12, "product": 0.20,
    "news": 0.08, "animal": 0.07, "interior": 0.07,
}  # fmt: skip
FOREIGN_CATEGORY_WEIGHTS = {"landscape": 0.45, "food": 0.40, "product": 0.15}
CATEGORY_AESTHETIC = {
    "occupation": 4.9, "beauty": 6.1, "landscape": 6.0, "food": 5.4, "product": 4.3,
    "news": 4.6, "animal": 5.5, "interior": 5.6,
}  # fmt: skip
UNSAFE_RATE = {
    "occupation": 0.03, "beauty": 0.16, "landscape": 0.004, "food": 0.003, "product": 0.03,
    "news": 0.07, "animal": 0.004, "interior": 0.003,
}  # fmt: skip
LANGUAGES = {
    "en": 0.74, "de": 0.05, "fr": 0.04, "es": 0.04, "ja": 0.03, "nl": 0.02, "it": 0.02,
    "pt": 0.02, "": 0.04,
}  # fmt: skip

# fmt: off
CATEGORY_DOMAINS: dict[str, dict[str, float]] = {
    "beauty": {
        "pinimg": 0.35, "wallpapercave": 0.1, "wallpaperaccess": 0.1, "shutterstock": 0.08,
        "gettyimages": 0.04, "dreamstime": 0.05, "123rf": 0.05, "blogspot": 0.1, "flickr": 0.08,
        "wordpress": 0.05,
    },
    "landscape": {
        "flickr": 0.2, "wikimedia": 0.15, "pinimg": 0.2, "wallpapercave": 0.08,
        "wallpaperaccess": 0.07, "blogspot": 0.1, "wordpress": 0.08, "shutterstock": 0.05,
        "dreamstime": 0.04, "alamy": 0.03,
    },
    "food": {
        "pinimg": 0.25, "blogspot": 0.2, "wordpress": 0.25, "shutterstock": 0.05,
        "dreamstime": 0.05, "flickr": 0.08, "shopify": 0.02, "123rf": 0.05, "alamy": 0.05,
    },
    "product": {"shopify": 0.3, "ebay": 0.3, "amazon": 0.25, "alicdn": 0.15},
    "news": {
        "nyt": 0.25, "bbc-ichef": 0.2, "bbc-www": 0.05, "guardian": 0.25, "gettyimages": 0.15,
        "alamy": 0.05, "wikimedia": 0.05,
    },
    "animal": {
        "flickr": 0.2, "pinimg": 0.25, "wikimedia": 0.1, "shutterstock": 0.1, "dreamstime": 0.05,
        "blogspot": 0.1, "wallpapercave": 0.1, "wordpress": 0.1,
    },
    "interior": {
        "pinimg": 0.35, "shopify": 0.1, "wordpress": 0.2, "blogspot": 0.1, "dreamstime": 0.05,
        "shutterstock": 0.05, "alamy": 0.05, "amazon": 0.1,
    },
}
# fmt: on

OCCUPATION_OTHER_DOMAINS = {
    "pinimg": 0.25, "blogspot": 0.15, "wordpress": 0.2, "wikimedia": 0.1, "flickr": 0.1,
    "nyt": 0.05, "bbc-ichef": 0.05, "guardian": 0.05, "shopify": 0.05,
}  # fmt: skip
FOREIGN_FOOD_SITE = {
    "de": "chefkoch", "fr": "afcdn", "es": "recetasgratis", "ja": "hatena", "nl": "ah",
    "it": "giallozafferano", "pt": "itdg",
}  # fmt: skip
FOREIGN_LANDSCAPE_DOMAINS = {
    "flickr": 0.25, "wikimedia": 0.2, "pinimg": 0.2, "blogspot": 0.15, "wallpapercave": 0.1,
    "wordpress": 0.1,
}  # fmt: skip


@dataclass(frozen=True)
class Occupation:
    """An occupation, how captions gender it, and where its pictures come from."""

    word: str
    weight: float  # share of occupation captions
    p_male: float  # share of gendered captions that are male
    places: tuple[str, ...]
    props: tuple[str, ...]
    attire: tuple[str, str]  # (male, female)
    stock: float  # share of rows from stock-photo sites
    aesthetic: float  # offset on the occupation category's aesthetic mean
    business: bool = False  # business captions get handshakes and suits


OCCUPATIONS = (
    Occupation("CEO", 0.13, 0.93, ("a modern office", "a glass boardroom", "a skyscraper lobby"),
               ("a tablet", "a coffee cup", "financial charts"),
               ("a dark suit and tie", "a blazer"), 0.82, 0.3, business=True),
    Occupation("businessman", 0.14, 1.0, ("a modern office", "an airport lounge", "a city street"),
               ("a briefcase", "a smartphone", "a laptop"),
               ("a grey suit", "a grey suit"), 0.85, 0.2, business=True),
    Occupation("engineer", 0.1, 0.88, ("a construction site", "a factory floor", "a wind farm"),
               ("blueprints", "a hard hat", "a tablet"),
               ("a hard hat and safety vest", "a hard hat and safety vest"), 0.6, 0.0),
    Occupation("scientist", 0.08, 0.78, ("a laboratory", "a research lab", "a university lab"),
               ("a test tube", "a microscope", "a pipette"),
               ("a lab coat", "a lab coat"), 0.5, 0.3),
    Occupation("doctor", 0.12, 0.72, ("a clinic", "a hospital room", "a medical office"),
               ("a stethoscope", "an x-ray", "a clipboard"),
               ("a white coat", "a white coat"), 0.55, 0.1),
    Occupation("lawyer", 0.06, 0.75, ("a courtroom", "a law office", "a library"),
               ("legal documents", "a gavel", "a folder"),
               ("a navy suit", "a blazer"), 0.75, 0.1, business=True),
    Occupation("pilot", 0.04, 0.92, ("a cockpit", "an airport terminal", "an airfield"),
               ("a flight bag", "a headset", "a checklist"),
               ("a pilot uniform", "a pilot uniform"), 0.5, 0.4),
    Occupation("teacher", 0.08, 0.25, ("a classroom", "a school library", "a kindergarten"),
               ("a book", "a globe", "a piece of chalk"),
               ("a cardigan", "a cardigan"), 0.45, -0.1),
    Occupation("nurse", 0.12, 0.07, ("a hospital corridor", "a patient room", "a clinic"),
               ("a clipboard", "a syringe", "a stethoscope"),
               ("blue scrubs", "blue scrubs"), 0.45, -0.4),
    Occupation("housekeeper", 0.07, 0.04, ("a hotel room", "a living room", "a kitchen"),
               ("a mop", "a cleaning cart", "fresh towels"),
               ("a uniform and apron", "a uniform and apron"), 0.3, -0.7),
    Occupation("receptionist", 0.06, 0.1, ("a hotel lobby", "a front desk", "a dental clinic"),
               ("a telephone", "a headset", "a guest book"),
               ("a white shirt", "a white blouse"), 0.6, -0.2),
)  # fmt: skip
OCCUPATION_BY_WORD = {o.word: o for o in OCCUPATIONS}

# Gendered templates always carry one of MALE_WORDS or FEMALE_WORDS; neutral ones carry none.
OCCUPATION_TEMPLATES = {
    "male": (
        "Portrait of a smiling {occ} in {place}, he is wearing {attire}",
        "Confident {occ} man in {attire} standing in {place}",
        "Mature {occ} with arms crossed in {place}, man in {attire}",
        "Young male {occ} holding {prop} in {place}",
        "Handsome {occ} man looking at camera, isolated on white background",
        "Portrait of {a_occ} at his desk in {place}",
        "Serious {occ} man checking {prop} in {place}",
    ),
    "female": (
        "Portrait of a smiling woman {occ} in {place}",
        "{Occ} woman holding {prop} in {place}",
        "Young female {occ} in {attire} smiling at camera, she is standing in {place}",
        "Friendly {occ} with her colleagues in {place}",
        "Beautiful {occ} woman isolated on white background",
        "Portrait of a cheerful {occ}, woman with {prop} in {place}",
    ),
    "neutral": (
        "{Occ} holding {prop} in {place}",
        "Portrait of {a_occ} in {place}",
        "{Occ} at work in {place}",
        "Close-up of {a_occ} holding {prop}",
        "{Occ} working on a laptop in {place}",
    ),
}
BUSINESS_TEMPLATES = {
    "male": (
        "{Occ} shaking hands with a business partner in {place}, man in {attire}",
        "Successful {occ} in {attire} talking on the phone, business man portrait",
        "{Occ} presenting his business plan to the team in {place}",
    ),
    "female": (
        "{Occ} shaking hands with a client in {place}, business woman portrait",
        "Successful woman {occ} in {attire} talking on the phone",
    ),
    "neutral": ("{Occ} shaking hands with a partner after signing a business contract",),
}
STOCK_SUFFIXES = (" stock photo", " - stock photo", " - Stock Image", " royalty free image")

BEAUTY_TEMPLATES = (
    "Beautiful woman with long {hair} hair in a {color} dress, HD wallpaper",
    "Portrait of a beautiful young woman with {hair} hair",
    "beautiful girl smiling in a field of {flower} at sunset wallpaper",
    "Gorgeous woman posing on the beach, summer fashion",
    "Beautiful woman {hair} hair portrait 4k wallpaper",
    "Pretty young woman drinking coffee in a cafe",
    "Fashion model in a {color} dress on the runway",
    "Beautiful woman in a {color} evening gown, studio portrait",
)
BEAUTY_MEN_TEMPLATES = (
    "Handsome young man with a beard, portrait wallpaper",
    "Stylish man in a {color} jacket on a city street",
)
BEAUTY_UNSAFE = (
    "Beautiful woman in lingerie posing on a bed",
    "Sexy model in a bikini on the beach wallpaper",
    "Hot girl in a swimsuit by the pool",
)
HAIR = ("blonde", "brown", "red", "black", "curly")
COLORS = ("red", "white", "black", "blue", "green", "pink", "yellow", "navy")
FLOWERS = ("sunflowers", "poppies", "lavender", "tulips")

LANDSCAPE_SUBJECTS = (
    "Mountain lake with reflection of the peaks", "Aerial view of a tropical beach",
    "Forest path covered in leaves", "Lavender fields in Provence", "Snowy mountains",
    "Waterfall in a green canyon", "Rolling hills of Tuscany with cypress trees",
    "Desert sand dunes", "Cherry blossom trees along a river", "Lighthouse on a rocky coast",
    "Fjord in Norway", "Rice terraces in Bali",
)  # fmt: skip
LANDSCAPE_WHEN = (
    " at sunrise", " at sunset", " in autumn", " under a starry sky", " in the fog",
    " in winter", "",
)  # fmt: skip
LANDSCAPE_SUFFIX = (
    "", "", ", HD wallpaper", " landscape photography", " - beautiful nature wallpaper", " 4k",
    ", landscape",
)  # fmt: skip

FOOD_SUBJECTS = (
    "Homemade chocolate chip cookies", "Bowl of ramen with a soft boiled egg",
    "Healthy salad with avocado and quinoa", "Stack of pancakes with berries and maple syrup",
    "Margherita pizza fresh from the oven", "Spaghetti carbonara",
    "Grilled salmon with lemon and asparagus", "Vegan buddha bowl", "Sourdough bread loaf",
    "Strawberry cheesecake",
)  # fmt: skip
FOOD_FORMS = (
    "{s} on a wooden table", "{s} recipe", "Easy {l} recipe", "{s} - food photography",
    "The best {l} you'll ever make", "{s}",
)  # fmt: skip

PRODUCT_TEMPLATES = (
    "Men's Slim Fit Cotton Shirt Long Sleeve {Color} Size {size}",
    "Women's Floral Summer Dress Casual Beach Sundress {Color}",
    "Vintage Leather Crossbody Bag for Women {Color}",
    "Stainless Steel Water Bottle 750ml BPA Free {Color}",
    "Wireless Bluetooth Headphones Over Ear Noise Cancelling {Color}",
    "Ceramic Coffee Mug 12 oz {Color}",
    "Kids Cotton T-Shirt Dinosaur Print {Color}",
    "Modern Minimalist Table Lamp {Color} Metal Base",
    "Silicone Phone Case for iPhone 12 {Color}",
    "Men's Running Shoes Lightweight Breathable Sneakers {Color} US {shoe}",
)
PRODUCT_SUFFIX = ("", "", " | Free Shipping", " NEW", " - Buy Online", " (Pack of 2)")
PRODUCT_UNSAFE = ("Women's Lace Lingerie Set {Color} Size {size}",)
COSTUME_UNSAFE = "Sexy {occ} costume for women, Halloween fancy dress"
SIZES = ("S", "M", "L", "XL")

NEWS_TEMPLATES = (
    "The company's chief executive speaks to reporters in {city} on {day}",
    "CEO {name} presents {poss} company's annual results at a news conference in {city}",
    "Protesters gather outside parliament in {city} on {day}",
    "Firefighters tackle a blaze at a warehouse in {city}",
    "Prime minister {name} arrives at a summit in {city}",
    "Flooded streets in {city} after heavy rain",
    "Nurses on strike outside a hospital in {city}",
    "Scientists at work in a vaccine laboratory in {city}",
)
NEWS_UNSAFE = (
    "Aftermath of the explosion in {city}, injured people lying on the street",
    "Graphic: bodies of victims after the attack in {city}",
)
MALE_NAMES = ("John Miller", "David Chen", "Michael Brown", "Robert Fischer", "James Okafor")
FEMALE_NAMES = ("Sarah Klein", "Maria Lopez", "Anna Novak", "Emily Carter")
CITIES = ("London", "Paris", "Berlin", "New York", "Lagos", "Mumbai", "Sao Paulo", "Tokyo")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")

ANIMAL_SUBJECTS = (
    "Golden retriever puppy playing in the grass", "Cute kitten sleeping on a blanket",
    "Red fox in the snow", "Horse running in a meadow", "Parrot on a branch in the rainforest",
    "Funny cat with a surprised face", "Elephant family in the savanna",
)  # fmt: skip
ANIMAL_SUFFIX = ("", "", " wallpaper", " - wildlife photography", " cute animals")
INTERIOR_SUBJECTS = (
    "Scandinavian living room interior with a white sofa", "Modern kitchen with marble countertops",
    "Cozy bedroom with fairy lights", "Minimalist home office with plants",
    "Rustic farmhouse dining room",
)  # fmt: skip
INTERIOR_SUFFIX = ("", " | home decor ideas", " interior design", ", 3D render")

# Non-English captions are mostly landscapes and food (skew 5).
FOREIGN: dict[str, dict[str, tuple[str, ...]]] = {
    "de": {
        "landscape": ("Bergsee bei Sonnenaufgang in den Alpen", "Herbstwald mit buntem Laub",
                      "Leuchtturm an der Nordseeküste", "Weinberge an der Mosel im Sommer"),
        "food": ("Omas Apfelkuchen Rezept", "Schweinebraten mit Knödeln und Rotkohl",
                 "Spargel mit Sauce Hollandaise", "Käsespätzle mit Röstzwiebeln"),
        "product": ("Damen Sommerkleid Blumen Muster Blau", "Herren Winterjacke wasserdicht"),
        "suffix": ("", " – Foto", " Hintergrundbild"),
    },
    "fr": {
        "landscape": ("Champs de lavande en Provence au coucher du soleil",
                      "Le Mont-Saint-Michel à marée haute", "Falaises d'Étretat en Normandie",
                      "Lac d'Annecy et les montagnes"),
        "food": ("Recette de la quiche lorraine facile", "Croissants au beurre faits maison",
                 "Ratatouille provençale", "Tarte Tatin aux pommes"),
        "product": ("Robe d'été femme à fleurs", "Sac à main en cuir marron"),
        "suffix": ("", " - photo", " fond d'écran"),
    },
    "es": {
        "landscape": ("Playa de arena blanca en Mallorca", "Atardecer en los Picos de Europa",
                      "Campos de olivos en Andalucía", "Pueblo blanco en la montaña"),
        "food": ("Receta de paella valenciana", "Tortilla de patatas casera",
                 "Churros con chocolate", "Gazpacho andaluz fácil"),
        "product": ("Zapatillas deportivas para hombre negras", "Vestido de verano para mujer"),
        "suffix": ("", " - foto", " fondo de pantalla"),
    },
    "ja": {
        "landscape": ("富士山と桜の風景", "夕焼けの海と砂浜", "京都の紅葉と寺", "雪山の朝日"),
        "food": ("簡単 ラーメンのレシピ", "抹茶チーズケーキの作り方", "鮭の塩焼き定食",
                 "手作りお弁当"),
        "product": ("レディース 花柄 ワンピース 夏", "メンズ 腕時計 シルバー"),
        "suffix": ("", " 写真", " 壁紙"),
    },
    "nl": {
        "landscape": ("Tulpenvelden in Holland in de lente",
                      "Windmolens bij Kinderdijk bij zonsondergang", "Duinen aan de Noordzee",
                      "Grachten van Amsterdam in de winter"),
        "food": ("Recept voor Hollandse appeltaart", "Stamppot boerenkool met rookworst",
                 "Poffertjes met poedersuiker", "Erwtensoep recept"),
        "product": ("Dames zomerjurk met bloemen", "Heren sneakers wit"),
        "suffix": ("", " - foto", " achtergrond"),
    },
    "it": {
        "landscape": ("Colline toscane al tramonto", "Le Dolomiti in autunno",
                      "Costiera Amalfitana vista dal mare", "Lago di Como in estate"),
        "food": ("Ricetta della carbonara originale", "Pizza margherita fatta in casa",
                 "Tiramisù classico", "Risotto ai funghi porcini"),
        "product": ("Borsa in pelle da donna marrone", "Scarpe da uomo in pelle nere"),
        "suffix": ("", " - foto", " sfondo"),
    },
    "pt": {
        "landscape": ("Praia do Algarve ao pôr do sol", "Cachoeira na Chapada Diamantina",
                      "Vista do Rio de Janeiro e do Pão de Açúcar", "Vinhas do Douro no outono"),
        "food": ("Receita de pastel de nata", "Feijoada completa tradicional",
                 "Bolo de cenoura com cobertura de chocolate", "Pão de queijo mineiro"),
        "product": ("Vestido de verão feminino floral", "Tênis masculino preto"),
        "suffix": ("", " - foto", " papel de parede"),
    },
}  # fmt: skip

# Captions no language detector could place (LANGUAGE == '').
JUNK_CAPTIONS = (
    "IMG_{n}.JPG", "DSC{n}", "{n}", "untitled", "P{n}", "image", "photo", "★★★★★", "Sale!!!",
)  # fmt: skip

# Three hostile rows, to exercise escaping: (caption, URL). Each says "portrait".
HOSTILE = (
    ("Portrait of a man <script>alert(1)</script> in a suit",
     "https://evil.example/portrait/script.jpg"),
    ('Studio portrait "><img src=x onerror=alert(1)> of a smiling woman',
     'https://cdn.evil.example/x"><svg/onload=alert(1)>.jpg'),
    ("Portrait of {{ config }} {% raw %} a painter in {{ self.__init__ }}",
     "https://evil.example/{{config}}/portrait.png"),
)  # fmt: skip


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------------------------
# Rows


@dataclass
class _Rows:
    """The generated table plus what the generator knows about each row (for the README)."""

    key: list[str] = field(default_factory=list)
    url: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    width: list[int] = field(default_factory=list)
    height: list[int] = field(default_factory=list)
    similarity: list[float] = field(default_factory=list)
    punsafe: list[float] = field(default_factory=list)
    pwatermark: list[float] = field(default_factory=list)
    aesthetic: list[float] = field(default_factory=list)
    language: list[str] = field(default_factory=list)
    category: list[str] = field(default_factory=list)  # not written: ground truth for stats
    domain: list[str] = field(default_factory=list)  # not written: DOMAINS key or "evil"
    occupation: list[str] = field(default_factory=list)  # not written: word or ""

    def table(self) -> pa.Table:
        columns = (
            self.key, self.url, self.text, self.width, self.height, self.similarity,
            self.punsafe, self.pwatermark, self.aesthetic, self.language,
        )  # fmt: skip
        return pa.Table.from_arrays(
            [pa.array(c, type=f.type) for c, f in zip(columns, SCHEMA, strict=True)],
            schema=SCHEMA,
        )


def _occupation_caption(rng: Rng, occ: Occupation) -> str:
    gender = _weighted(rng, {"gendered": 0.75, "neutral": 0.25})
    if gender == "gendered":
        gender = "male" if rng.random() < occ.p_male else "female"
    pool = OCCUPATION_TEMPLATES[gender]
    if occ.business:
        pool = pool + BUSINESS_TEMPLATES[gender]
    template = _pick(rng, pool)
    word = occ.word
    if occ.word == "businessman" and gender == "female":
        word = "businesswoman"
    attire = occ.attire[0] if gender == "male" else occ.attire[1]
    return _capitalise(
        template.format(
            occ=word, Occ=_capitalise(word), a_occ=_article(word), place=_pick(rng, occ.places),
            prop=_pick(rng, occ.props), attire=attire,
        )
    )  # fmt: skip


def _english_caption(rng: Rng, category: str, unsafe: bool) -> tuple[str, str]:
    """A caption for an English row, and the occupation it names ("" if none)."""
    color = _pick(rng, COLORS)
    if category == "occupation":
        if unsafe:
            word = _pick(rng, ("nurse", "housekeeper", "teacher"))
            return COSTUME_UNSAFE.format(occ=word), word
        occ = OCCUPATIONS[_index(rng, [o.weight for o in OCCUPATIONS])]
        return _occupation_caption(rng, occ), occ.word
    if category == "beauty":
        if unsafe:
            return _pick(rng, BEAUTY_UNSAFE), ""
        pool = BEAUTY_MEN_TEMPLATES if rng.random() < 0.12 else BEAUTY_TEMPLATES
        text = _pick(rng, pool).format(
            hair=_pick(rng, HAIR), color=color, flower=_pick(rng, FLOWERS)
        )
        return text, ""
    if category == "landscape":
        text = _pick(rng, LANDSCAPE_SUBJECTS) + _pick(rng, LANDSCAPE_WHEN)
        return text + _pick(rng, LANDSCAPE_SUFFIX), ""
    if category == "food":
        subject = _pick(rng, FOOD_SUBJECTS)
        lower = subject[0].lower() + subject[1:]
        return _pick(rng, FOOD_FORMS).format(s=subject, l=lower), ""
    if category == "product":
        template = _pick(rng, PRODUCT_UNSAFE if unsafe else PRODUCT_TEMPLATES)
        text = template.format(
            Color=color.capitalize(), size=_pick(rng, SIZES), shoe=int(rng.integers(7, 13))
        )
        return text + _pick(rng, PRODUCT_SUFFIX), ""
    if category == "news":
        male = rng.random() < 0.85
        text = _pick(rng, NEWS_UNSAFE if unsafe else NEWS_TEMPLATES).format(
            city=_pick(rng, CITIES), day=_pick(rng, DAYS),
            name=_pick(rng, MALE_NAMES if male else FEMALE_NAMES), poss="his" if male else "her",
        )  # fmt: skip
        return text, ("CEO" if text.startswith("CEO") else "")
    if category == "animal":
        return _pick(rng, ANIMAL_SUBJECTS) + _pick(rng, ANIMAL_SUFFIX), ""
    return _pick(rng, INTERIOR_SUBJECTS) + _pick(rng, INTERIOR_SUFFIX), ""


def _domain_for(rng: Rng, category: str, language: str, occupation: str, unsafe: bool) -> str:
    if category == "occupation" and unsafe:  # costume listings
        return _weighted(rng, CATEGORY_DOMAINS["product"])
    if category == "occupation":  # junk captions ('' language) name no occupation
        stock = OCCUPATION_BY_WORD[occupation].stock if occupation else 0.6
        if rng.random() < stock:
            return _weighted(rng, STOCK_SPLIT)
        return _weighted(rng, OCCUPATION_OTHER_DOMAINS)
    if language in FOREIGN and category == "food":
        if rng.random() < 0.5:
            return FOREIGN_FOOD_SITE[language]
        return _weighted(rng, CATEGORY_DOMAINS["food"])
    if language in FOREIGN and category == "landscape":
        return _weighted(rng, FOREIGN_LANDSCAPE_DOMAINS)
    return _weighted(rng, CATEGORY_DOMAINS[category])


def _make_rows(rows: int, seed: int) -> _Rows:
    rng = np.random.default_rng(seed)
    out = _Rows()
    for i in range(rows):
        # 1. Language and category (non-English rows are mostly landscapes and food).
        language = _weighted(rng, LANGUAGES)
        foreign = language in FOREIGN
        category = _weighted(rng, FOREIGN_CATEGORY_WEIGHTS if foreign else CATEGORY_WEIGHTS)
        unsafe = rng.random() < (0.005 if foreign else UNSAFE_RATE[category])

        # 2. Caption.
        occupation = ""
        if foreign:
            text = _pick(rng, FOREIGN[language][category])
            if category == "landscape":
                text += _pick(rng, FOREIGN[language]["suffix"])
        elif language == "":
            text = _pick(rng, JUNK_CAPTIONS).format(n=_digits(rng, 4))
        else:
            text, occupation = _english_caption(rng, category, unsafe)

        # 3. Source site, rendition and URL.
        domain_name = _domain_for(rng, category, language, occupation, unsafe)
        domain = DOMAINS[domain_name]
        width, height, token, _ = domain.renditions[_index(rng, [r[3] for r in domain.renditions])]
        size = (width, height, token)
        url = f"https://{_pick(rng, domain.hosts)}{domain.path(rng, _slug(text), size)}"
        if domain.stock and language == "en" and rng.random() < 0.35:
            text += _pick(rng, STOCK_SUFFIXES)

        # 4. Scores.
        if language == "en":
            similarity = _clamp(rng.normal(0.315, 0.025), 0.28, 0.42)
        elif foreign:
            similarity = _clamp(rng.normal(0.30, 0.025), 0.26, 0.40)
        else:
            similarity = _clamp(rng.normal(0.275, 0.015), 0.25, 0.33)
        punsafe = 0.51 + 0.48 * rng.beta(2.0, 1.5) if unsafe else rng.beta(0.6, 30.0)
        pwatermark = rng.beta(8.0, 2.0) if domain.stock else rng.beta(1.1, 14.0)
        mean = CATEGORY_AESTHETIC[category] + domain.aesthetic
        if occupation and category == "occupation":
            mean += OCCUPATION_BY_WORD[occupation].aesthetic
        if "wallpaper" in text.lower():
            mean += 0.4
        if language == "":
            mean -= 0.3
        aesthetic = _clamp(mean + rng.normal(0.0, 0.55), 3.0, 8.0)

        out.key.append(f"{i:09d}")
        out.url.append(url)
        out.text.append(text)
        out.width.append(size[0])
        out.height.append(size[1])
        out.similarity.append(round(float(similarity), 6))
        out.punsafe.append(round(float(punsafe), 6))
        out.pwatermark.append(round(float(pwatermark), 6))
        out.aesthetic.append(round(float(aesthetic), 6))
        out.language.append(language)
        out.category.append(category)
        out.domain.append(domain_name)
        out.occupation.append(occupation)

    # 5. The hostile rows, at fixed places (one early, so it also gets a local image).
    for index, (text, url) in zip(_hostile_indices(rows), HOSTILE, strict=True):
        out.url[index], out.text[index] = url, text
        out.width[index], out.height[index] = 1024, 1024
        out.similarity[index], out.punsafe[index] = 0.31, 0.02
        out.pwatermark[index], out.aesthetic[index] = 0.05, 6.2
        out.language[index], out.category[index] = "en", "occupation"
        out.domain[index], out.occupation[index] = "evil", ""
    return out


def _hostile_indices(rows: int) -> tuple[int, int, int]:
    return 3, rows // 2 + 1, rows - 2


# --------------------------------------------------------------------------------------------
# Pictures and embeddings

PALETTES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "occupation": ((52, 73, 94), (236, 240, 241), (41, 128, 185), (149, 165, 166), (44, 62, 80)),
    "beauty": ((252, 228, 236), (173, 20, 87), (240, 98, 146), (206, 147, 216), (255, 204, 188)),
    "landscape": ((135, 206, 235), (46, 125, 50), (121, 85, 72), (255, 183, 77), (224, 247, 250)),
    "food": ((255, 243, 224), (191, 54, 12), (255, 152, 0), (141, 110, 99), (104, 159, 56)),
    "product": ((250, 250, 250), (245, 245, 245), (229, 57, 53), (30, 136, 229), (33, 33, 33)),
    "news": ((97, 97, 97), (189, 189, 189), (183, 28, 28), (38, 50, 56), (158, 158, 158)),
    "animal": ((197, 225, 165), (109, 76, 65), (255, 167, 38), (85, 139, 47), (62, 39, 35)),
    "interior": ((245, 240, 230), (188, 170, 164), (161, 136, 99), (250, 250, 250), (96, 125, 139)),
}  # fmt: skip


def _jitter(rng: Rng, color: tuple[int, int, int], amount: int = 18) -> tuple[int, int, int]:
    r, g, b = (int(_clamp(c + int(rng.integers(-amount, amount + 1)), 0, 255)) for c in color)
    return r, g, b


def _picture(category: str, seed: int, index: int) -> bytes:
    """A deterministic 64×64 JPEG: a gradient and a few shapes in the category's palette."""
    rng = np.random.default_rng((seed, 1, index))
    palette = PALETTES[category]
    top = np.array(_jitter(rng, palette[0]), dtype=np.float64)
    bottom = np.array(_jitter(rng, palette[1]), dtype=np.float64)
    t = np.linspace(0.0, 1.0, IMAGE_SIZE)[:, None, None]
    gradient = (top * (1 - t) + bottom * t).repeat(IMAGE_SIZE, axis=1)
    image = Image.fromarray(gradient.round().astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    if category == "landscape":  # a horizon with a hill
        peak = int(rng.integers(16, 48))
        draw.polygon([(0, 48), (peak, int(rng.integers(12, 36))), (63, 44), (63, 63), (0, 63)],
                     fill=_jitter(rng, palette[2]))  # fmt: skip
    for _ in range(int(rng.integers(2, 5))):
        x0, y0 = (int(v) for v in rng.integers(0, 48, 2))
        x1, y1 = x0 + int(rng.integers(8, 28)), y0 + int(rng.integers(8, 28))
        color = _jitter(rng, palette[int(rng.integers(2, len(palette)))])
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=color)
        else:
            draw.rectangle([x0, y0, x1, y1], fill=color)
    buffer = io.BytesIO()
    # Fixed quality, no EXIF, no progressive scan: the same pixels give the same bytes.
    image.save(buffer, "JPEG", quality=85, optimize=False, progressive=False)
    return buffer.getvalue()


def _embeddings(rows: _Rows, seed: int) -> np.ndarray:
    """Made-up image embeddings: a centroid per category (and per occupation) plus noise."""
    rng = np.random.default_rng((seed, 2))
    centroids = rng.normal(size=(len(CATEGORIES), EMBED_DIM))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    sub = rng.normal(size=(len(OCCUPATIONS), EMBED_DIM))
    sub /= np.linalg.norm(sub, axis=1, keepdims=True)
    occupation_index = {o.word: i for i, o in enumerate(OCCUPATIONS)}
    n = len(rows.key)
    vectors = centroids[[CATEGORIES.index(c) for c in rows.category]]
    for i, word in enumerate(rows.occupation):
        if word and rows.category[i] == "occupation":
            vectors[i] = vectors[i] + 0.5 * sub[occupation_index[word]]
    vectors = vectors + rng.normal(scale=0.7 / np.sqrt(EMBED_DIM), size=(n, EMBED_DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Measurements (for the README) and the README itself


def _share(mask: np.ndarray, within: np.ndarray | None = None) -> float:
    if within is not None:
        mask = mask[within]
    return float(mask.mean()) if mask.size else 0.0


def _measure(rows: _Rows) -> dict[str, Any]:
    """The skews as a reader would measure them from the written columns."""
    text = np.array(rows.text, dtype=object)
    width, height = np.array(rows.width), np.array(rows.height)
    aesthetic, punsafe = np.array(rows.aesthetic), np.array(rows.punsafe)
    pwatermark = np.array(rows.pwatermark)
    language, category = np.array(rows.language), np.array(rows.category)
    stock = np.array([d in STOCK_DOMAINS for d in rows.domain])
    pinimg = np.array(["i.pinimg.com/" in u for u in rows.url])

    def matches(pattern: str) -> np.ndarray:
        regex = re.compile(pattern, re.IGNORECASE)
        return np.array([bool(regex.search(t)) for t in text])

    male, female = matches(MALE_WORDS), matches(FEMALE_WORDS)
    passes = (np.minimum(width, height) >= SD_MIN_SIDE) & (aesthetic > SD_MIN_AESTHETIC)
    passes &= pwatermark < SD_MAX_WATERMARK
    occupations = []
    for occ in OCCUPATIONS:
        named = matches(rf"\b{occ.word}\b")
        occupations.append(
            {
                "word": occ.word, "rows": int(named.sum()),
                "male": _share(male, named), "female": _share(female, named),
                "stock": _share(stock, named), "sd_kept": _share(passes, named),
            }
        )  # fmt: skip
    portrait_business = matches(r"portrait|business")
    pretty = matches(r"beautiful woman|wallpaper|landscape") | (category == "landscape")
    foreign = (language != "en") & (language != "")
    return {
        "occupations": occupations,
        "stock_portrait_business": _share(stock, portrait_business),
        "stock_all": _share(stock),
        "pwatermark_stock": float(pwatermark[stock].mean()),
        "pwatermark_other": float(pwatermark[~stock].mean()),
        "aesthetic_pretty": float(aesthetic[pretty].mean()),
        "aesthetic_other": float(aesthetic[~pretty].mean()),
        "aesthetic_pinimg": float(aesthetic[pinimg].mean()),
        "aesthetic_not_pinimg": float(aesthetic[~pinimg].mean()),
        "unsafe": _share(punsafe > 0.5),
        "non_english": _share(language != "en"),
        "foreign_landscape_food": _share(np.isin(category, ["landscape", "food"]), foreign),
        "short_side_under_512": _share(np.minimum(width, height) < SD_MIN_SIDE),
        "sd_kept": _share(passes),
    }


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _readme(rows: int, images: int, seed: int, stats: dict[str, Any]) -> str:
    occ_lines = "\n".join(
        f"| {o['word']} | {o['rows']} | {_pct(o['male'])} | {_pct(o['female'])} | "
        f"{_pct(o['stock'])} | {_pct(o['sd_kept'])} |"
        for o in stats["occupations"]
    )
    s = stats
    return f"""\
# Sample dataset (made-up data)

**Everything in this folder is invented.** It was made by `scripts/make_sample_dataset.py`
(rows={rows}, images={images}, seed={seed}). No caption, URL, score or picture comes from LAION
or from any website; the URLs point at real-looking hosts but were never fetched. It exists so
that essays, examples and tests can exercise the `dataset` and `neighbors` directives without a
network or a multi-terabyte download. Do not cite its numbers as findings about LAION.

## What is here

- `metadata.parquet`: one row per sample, with the LAION columns `key, URL, TEXT, WIDTH, HEIGHT,
  similarity, punsafe, pwatermark, aesthetic, LANGUAGE`.
- `images/00000/<key>.jpg`: a 64×64 made-up picture (a gradient and a few shapes in the colours
  of the caption's category) for each of the first {images} rows, in img2dataset's layout (shard
  folder = key // 10000), with `<key>.txt` (the caption) and `<key>.json` (an img2dataset-style
  record: url, sizes, status).
- `embeddings/img_emb_0.npy`: float32, {rows} × {EMBED_DIM}, L2-normalised, row-aligned with the
  metadata. **Made, not CLIP**: a centroid per caption category (and per occupation) plus noise,
  so nearest neighbours cluster by topic but say nothing about real pictures.
- `MANIFEST.json`: the parameters and a digest of every file; the script leaves a folder whose
  manifest matches alone.

`WIDTH`/`HEIGHT` are the claimed original sizes (as in LAION), not the size of the local pictures.

## Deliberate skews (measured on this folder)

The shapes imitate patterns that audits of LAION have reported; the numbers are invented.

1. **Gendered occupations.** For the captions naming each occupation: the share that also use
   male words, the share that use female words, the share from stock-photo sites, and the share
   the Stable Diffusion "improved aesthetics" filter chain keeps (original size ≥ 512 on both
   sides, aesthetic > 5.0, pwatermark < 0.5). Male words: `{MALE_WORDS}`; female words:
   `{FEMALE_WORDS}` (case-insensitive).

   | occupation | rows | male words | female words | stock sites | kept by SD filter |
   |---|---|---|---|---|---|
{_indent(occ_lines, 3)}

   The filter keeps {_pct(s["sd_kept"])} of all rows.
2. **Stock photography.** Shutterstock, Getty Images, iStock, Alamy, Dreamstime and 123RF supply
   {_pct(s["stock_portrait_business"])} of rows whose caption says "portrait" or "business"
   ({_pct(s["stock_all"])} of all rows). Mean `pwatermark`: {s["pwatermark_stock"]:.2f} on stock
   sites, {s["pwatermark_other"]:.2f} elsewhere.
3. **Aesthetics.** Mean `aesthetic` is {s["aesthetic_pretty"]:.2f} for "beautiful woman",
   "wallpaper" and landscape captions against {s["aesthetic_other"]:.2f} for the rest, and
   {s["aesthetic_pinimg"]:.2f} for i.pinimg.com against {s["aesthetic_not_pinimg"]:.2f}
   elsewhere.
4. **Unsafe rows.** {100 * s["unsafe"]:.1f} % of rows have `punsafe` > 0.5, mostly "beautiful woman"
   captions, costume listings and news. unmake hides them unless an essay opts in.
5. **Languages.** {_pct(s["non_english"])} of rows are not English (de, fr, es, ja, nl, it, pt,
   and `''` for captions like `IMG_0412.JPG` no detector could place); of the rows in a named
   non-English language, {_pct(s["foreign_landscape_food"])} are landscapes or food.
6. **Sizes.** {_pct(s["short_side_under_512"])} of the original images are under 512 px on the
   short side.

Three rows are **hostile on purpose**, to check that captions and URLs are escaped: one caption
holds a `<script>` tag, one an attribute-breaking `"><img src=x onerror=…>` (its URL breaks out
of an attribute too), one Jinja syntax (`{{{{ config }}}}`, `{{% raw %}}`). They are on
`evil.example`, mention "portrait", have low `punsafe`, and one of them has a local picture.

## Using a real LAION or Re-LAION subset instead

The essay does not change; only the dataset entry in `mkdocs.yml` does.

1. On a machine with a network, fetch metadata Parquet files: for example with the Hugging Face
   CLI (`huggingface-cli download <dataset-repo> --repo-type dataset --include "*.parquet"
   --local-dir data/relaion`) or with the `datasets` library. Re-LAION-5B's research releases
   are gated: accept their terms on Hugging Face first. Check the column names: LAION-5B uses
   `URL` and `TEXT`; some releases and mirrors use other names or lower case, and scores such as
   `aesthetic` or `pwatermark` may sit in separate files to join on the URL or sample id.
2. Optionally download the pictures with img2dataset into the usual layout (shard folders of
   `<key>.jpg`, `.txt`, `.json`):
   `img2dataset --url_list data/relaion --input_format parquet --url_col URL --caption_col TEXT
   --output_format files --output_folder data/relaion-images --image_size 256`.
   Downloading keeps copies of other people's pictures: read the dataset's terms and honour
   opt-outs.
3. Point the unmake plugin at them in `mkdocs.yml`:

   ```yaml
   plugins:
     - unmake:
         datasets:
           laion:
             metadata: data/relaion/*.parquet   # was: data/sample/metadata.parquet
             images: data/relaion-images        # was: data/sample/images (optional)
             embeddings: data/relaion-emb       # clip-retrieval img_emb_*.npy (optional)
   ```

   Then copy it to the machine that builds the site (no network is needed from then on).
"""


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())


# --------------------------------------------------------------------------------------------
# Writing, the manifest, and the atomic swap


def _params(rows: int, images: int, seed: int, world: str = "laion") -> dict[str, Any]:
    params: dict[str, Any] = {"rows": rows, "images": images, "seed": seed}
    if world != "laion":  # the sample's manifest stays as it was
        params["world"] = world
    return params


def _tree_digest(folder: Path) -> tuple[int, str]:
    """(file count, sha256 over every file's relative path and content), MANIFEST excluded."""
    digest = hashlib.sha256()
    manifest = folder / "MANIFEST.json"
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p != manifest)
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(b"\0" + hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\n")
    return len(files), digest.hexdigest()


def _read_manifest(out: Path) -> dict | None:
    try:
        manifest = json.loads((out / "MANIFEST.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _is_complete(out: Path, rows: int, images: int, seed: int, world: str = "laion") -> bool:
    manifest = _read_manifest(out)
    if manifest is None or manifest.get("generator") != GENERATOR:
        return False
    if manifest.get("format") != FORMAT_VERSION:
        return False
    if manifest.get("params") != _params(rows, images, seed, world):
        return False
    count, digest = _tree_digest(out)
    return manifest.get("files") == count and manifest.get("sha256") == digest


def _write(folder: Path, rows: int, images: int, seed: int) -> None:
    data = _make_rows(rows, seed)

    # 1. Metadata. No timestamps: pyarrow writes only the schema and its own version string.
    table = data.table().replace_schema_metadata(
        {"unmake.sample": json.dumps({"made_up": True, **_params(rows, images, seed)})}
    )
    pq.write_table(table, folder / "metadata.parquet", compression="zstd", row_group_size=65536)

    # 2. Local pictures in img2dataset's layout, for the first `images` rows.
    for i in range(images):
        key = data.key[i]
        shard = folder / "images" / f"{i // SHARD_SIZE:05d}"
        shard.mkdir(parents=True, exist_ok=True)
        (shard / f"{key}.jpg").write_bytes(_picture(data.category[i], seed, i))
        (shard / f"{key}.txt").write_text(data.text[i], encoding="utf-8")
        record = {
            "url": data.url[i], "caption": data.text[i], "key": key, "status": "success",
            "error_message": None, "width": IMAGE_SIZE, "height": IMAGE_SIZE,
            "original_width": data.width[i], "original_height": data.height[i],
        }  # fmt: skip
        (shard / f"{key}.json").write_text(
            json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )

    # 3. Made-up embeddings, row-aligned with the metadata.
    (folder / "embeddings").mkdir()
    np.save(folder / "embeddings" / "img_emb_0.npy", _embeddings(data, seed))

    # 4. README with the skews as measured, then the manifest last.
    readme = _readme(rows, images, seed, _measure(data))
    (folder / "README.md").write_text(readme, encoding="utf-8")
    count, digest = _tree_digest(folder)
    manifest = {
        "generator": GENERATOR, "format": FORMAT_VERSION, "made_up": True,
        "params": _params(rows, images, seed), "files": count, "sha256": digest,
    }  # fmt: skip
    (folder / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _write_organism(folder: Path, rows: int, seed: int) -> None:
    """The organism's world (scripts/organism_world.py): every row with its 32×32 picture."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import organism_world as world

    data = world.make_rows(rows, seed)
    columns = {
        "key": [r.key for r in data], "URL": [r.url for r in data],
        "TEXT": [r.text for r in data], "WIDTH": [r.width for r in data],
        "HEIGHT": [r.height for r in data], "similarity": [r.similarity for r in data],
        "punsafe": [r.punsafe for r in data], "pwatermark": [r.pwatermark for r in data],
        "aesthetic": [r.aesthetic for r in data], "LANGUAGE": [r.language for r in data],
    }  # fmt: skip
    table = pa.Table.from_arrays([pa.array(columns[f.name], type=f.type) for f in SCHEMA],
                                 schema=SCHEMA)
    table = table.replace_schema_metadata(
        {"unmake.sample": json.dumps({"made_up": True, **_params(rows, rows, seed, "organism")})})
    pq.write_table(table, folder / "metadata.parquet", compression="zstd", row_group_size=65536)
    for i, row in enumerate(data):
        shard = folder / "images" / f"{i // SHARD_SIZE:05d}"
        shard.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()  # PNG: JPEG's colour subsampling would smear a 32-pixel figure
        world.draw(row.figure).save(buf, format="PNG", optimize=False)
        (shard / f"{row.key}.png").write_bytes(buf.getvalue())
        (shard / f"{row.key}.txt").write_text(row.text, encoding="utf-8")
        record = {
            "url": row.url, "caption": row.text, "key": row.key, "status": "success",
            "error_message": None, "width": world.SIZE, "height": world.SIZE,
            "original_width": row.width, "original_height": row.height,
        }  # fmt: skip
        (shard / f"{row.key}.json").write_text(
            json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    truth = world.truth(data)
    (folder / "TRUTH.json").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(
        "# The organism's world (made up)\n\nWritten by `scripts/make_sample_dataset.py "
        f"--world organism` (seed {seed}). What was planted, and why, is in the docstring of "
        "`scripts/organism_world.py`; `TRUTH.json` has the exact shares in these rows, before "
        "and after the sd-v1-improved-aesthetics filter.\n", encoding="utf-8")
    count, digest = _tree_digest(folder)
    manifest = {
        "generator": GENERATOR, "format": FORMAT_VERSION, "made_up": True,
        "params": _params(rows, rows, seed, "organism"), "files": count, "sha256": digest,
    }  # fmt: skip
    (folder / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _check(rows: int, images: int, seed: int) -> None:
    if not isinstance(rows, int) or rows < MIN_ROWS:
        raise ValueError(f"rows must be an integer ≥ {MIN_ROWS}, got {rows!r}")
    if not isinstance(images, int) or not 0 <= images <= rows:
        raise ValueError(f"images must be an integer from 0 to rows ({rows}), got {images!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def build(out: Path, rows: int = 4000, images: int = 300, seed: int = 0,
          world: str = "laion") -> tuple[Path, bool]:
    """Make the dataset at ``out`` unless a complete, matching one is there; (path, made it).

    `world` is "laion" (this module's made-up LAION subset) or "organism" (the model organism's
    world, scripts/organism_world.py: every row has a picture, so `images` must equal `rows`)."""
    # 1. Check inputs, and never replace a folder this script did not make.
    _check(rows, images, seed)
    if world not in WORLDS:
        raise ValueError(f"world must be one of {', '.join(WORLDS)}, got {world!r}")
    if world == "organism" and images != rows:
        raise ValueError("the organism world has a picture for every row: images must equal rows")
    out = Path(out)
    if _is_complete(out, rows, images, seed, world):
        return out, False
    if out.exists():
        ours = (_read_manifest(out) or {}).get("generator") == GENERATOR
        if not out.is_dir() or (not ours and any(out.iterdir())):
            raise FileExistsError(
                f"{out} exists and is not a sample dataset made by this script; "
                "remove it or choose another --out"
            )

    # 2. Write into a sibling temp folder, so an interrupted run leaves no half dataset at out.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    old: Path | None = None
    try:
        if world == "organism":
            _write_organism(tmp, rows, seed)
        else:
            _write(tmp, rows, images, seed)
        # 3. Swap it into place: rename the old folder aside, the new one in, then drop the old.
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not out.exists():
            os.replace(old, out)  # put the previous dataset back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out, True


def make_sample_dataset(out: Path, rows: int = 4000, images: int = 300, seed: int = 0) -> Path:
    """Make the made-up LAION-schema sample dataset at ``out`` (a no-op if already complete).

    Same arguments, same bytes. Raises ValueError for bad sizes and FileExistsError when ``out``
    is a non-empty folder this script did not make.
    """
    return build(out, rows=rows, images=images, seed=seed)[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Make a made-up LAION-schema sample dataset, deterministically."
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT,
        help="output folder (default: data/sample in the repository, whatever the cwd)",
    )  # fmt: skip
    parser.add_argument("--rows", type=int, default=4000, help="metadata rows (default: 4000)")
    parser.add_argument(
        "--images", type=int, default=300, help="local pictures for the first rows (default: 300)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--world", choices=WORLDS, default="laion",
        help="laion: the made-up LAION subset (default); organism: the model organism's world "
        "of coloured figures with planted biases (scripts/organism_world.py), into data/organism "
        f"with {ORGANISM_ROWS} rows, every one with a picture, unless --out/--rows say otherwise",
    )
    args = parser.parse_args(argv)
    if args.world == "organism":
        if args.out == DEFAULT_OUT:
            args.out = DEFAULT_OUT.parent / "organism"
        if args.rows == 4000:
            args.rows = ORGANISM_ROWS
        args.images = args.rows
    started = time.perf_counter()
    try:
        out, made = build(args.out, rows=args.rows, images=args.images, seed=args.seed,
                          world=args.world)
    except (ValueError, OSError) as error:
        print(f"make_sample_dataset: error: {error}", file=sys.stderr)
        return 1
    what = f"{args.world} world, {args.rows} rows, {args.images} images, seed {args.seed}"
    if made:
        print(f"wrote {out} ({what}, made-up data) in {time.perf_counter() - started:.1f} s")
    else:
        print(f"{out} is already complete ({what}); nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main())
