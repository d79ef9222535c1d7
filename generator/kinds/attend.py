"""`attend`: where in an image each word of its prompt acted, as cross-attention heat maps.

    ```attend
    of: professions              # the figure whose images are read
    words: [doctor, nurse]       # default: every content word of each prompt
    caption: Where "doctor" and "nurse" looked.
    ```

One `attend.maps` job per upstream image (generator/backends/attention.py: the DAAM method of
Tang et al. 2023 on diffusers' attention processors) makes the image again with the attention
recorded and stores one map per word, each summing to 1, as a compressed array. The figure draws
each image with an overlay per word (a row per image, a column per word), all on one colour
scale: the largest share of a pixel against an even spread, over the whole figure, so maps of
different images and words compare. The overlays are drawn at render time from the stored
arrays (numpy and PIL, no torch) and cached beside the store.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..render import ASSETS, PageRender
from ..specs import Body, is_text, preview
from ..types import Context, Job, Kind, Planned
from .measure import images_of

VERSION = 1
MAX_WORDS = 12
MAX_IMAGES = 256
# words that name no thing: left out of the default (every content word of the prompt)
STOPWORDS = frozenset((
    "a", "an", "the", "of", "in", "on", "at", "to", "for", "with", "and", "or", "by", "from",
    "as", "is", "are", "be", "this", "that", "these", "those", "its", "it", "their", "his",
    "her", "very", "some", "any", "into", "over", "under", "near"))
_WORD = re.compile(r"[\w'’-]+")
# the colour scale: dark blue (no attention) through red to pale yellow (the figure's maximum)
SCALE = np.array([(20, 20, 60), (90, 30, 120), (200, 40, 60), (250, 150, 40), (255, 250, 190)],
                 dtype=np.float64)


@dataclass(frozen=True)
class AttendSpec:
    id: str | None
    caption: str | None
    words: tuple[str, ...] | None  # None: every content word of each prompt


def parse(body: Body, ctx: Context) -> AttendSpec:
    words = body.raw("words", None)
    if words is not None:
        items = words if isinstance(words, list) else [words]
        if not items or len(items) > MAX_WORDS:
            raise body.error("words", f"must list 1–{MAX_WORDS} words, got {preview(words)}")
        for i, item in enumerate(items):
            if not is_text(item) or not _WORD.fullmatch(str(item)):
                raise body.error("words", f"must be single words (letters, digits, ' or -), got "
                                 f"{preview(item)}", at=f"words[{i}]")
        words = tuple(dict.fromkeys(str(i) for i in items))
    return AttendSpec(id=body.take_str("id", None), caption=body.take_str("caption", None),
                      words=words)


def content_words(prompt: str) -> list[str]:
    """The words of a prompt that name something, in order, once each."""
    found = [w for w in _WORD.findall(prompt) if w.lower() not in STOPWORDS]
    return list(dict.fromkeys(found))[:MAX_WORDS]


def expand(spec: AttendSpec, ctx: Context, upstream: list[Planned]) -> list[Job]:
    from ..errors import DirectiveError

    images = list({o.job.key: o.job for o in images_of(upstream)}.values())
    if len(images) > MAX_IMAGES:
        raise DirectiveError(f"reads {len(images)} images; at most {MAX_IMAGES} per attend",
                             key="of")
    jobs = []
    for image in images:
        prompt = str(image.inputs["prompt"])
        words = content_words(prompt) if spec.words is None else list(spec.words)
        jobs.append(Job("attend.maps", {"words": words, "v": VERSION}, group=image.group,
                        run={**image.run, "image": image.inputs}, needs=(image.key,)))
    return jobs


# -- rendering -----------------------------------------------------------------------------------
def colours(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB (uint8) on the figure's colour scale."""
    stops = np.linspace(0, 1, len(SCALE))
    return np.stack([np.interp(values, stops, SCALE[:, c]) for c in range(3)], -1).astype(
        np.uint8)


def overlay(image: Any, heat: np.ndarray, top: float) -> bytes:
    """The image in grey under the heat map (relative to an even spread, / the figure's top),
    upsampled smoothly to the image's size; PNG bytes."""
    from PIL import Image

    relative = heat * heat.size / top  # 1.0: the figure's largest share against even
    small = Image.fromarray(np.clip(relative, 0, 1).astype(np.float32), mode="F")
    big = np.asarray(small.resize(image.size, Image.Resampling.BILINEAR))
    grey = np.asarray(image.convert("L"), dtype=np.float64)[..., None]
    mixed = 0.35 * grey + 0.65 * colours(np.clip(big, 0, 1))
    buf = io.BytesIO()
    Image.fromarray(mixed.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def read_maps(store: Any, record: dict[str, Any]) -> dict[str, np.ndarray]:
    """The stored maps of one image, by word (np.load of the record's compressed arrays)."""
    if "maps" not in record.get("files", {}):
        return {}
    with np.load(store.file(record, "maps")) as npz:
        return {word: npz[f"w{n}"] for n, word in enumerate(record["data"]["words"])}


def render(planned: Planned, page: PageRender) -> str:
    from PIL import Image

    spec: AttendSpec = planned.directive.spec
    store = page.r.store
    # 1. Every stored map of the figure, for one colour scale across it.
    loaded: list[tuple[Job, dict[str, Any] | None, dict[str, np.ndarray]]] = []
    for job in planned.jobs:
        record = page.record(job)
        maps = read_maps(store, record) if record else {}
        loaded.append((job, record, maps))
    top = max((float(m.max()) * m.size for _, _, ms in loaded for m in ms.values()),
              default=1.0)
    # 2. A row per image: the image, then an overlay per word.
    rows = []
    columns = list(spec.words) if spec.words is not None else []
    for job, record, maps in loaded:
        image_job = Job("generate.image", job.run["image"], run=job.run, key=job.needs[0])
        cell = page.image_cell(image_job)
        if record is not None and "image" in record["files"]:
            # the image the maps are of: made again with recording (the same pixels, unless
            # the upstream one was made in a batch that rounds differently)
            cell = {**cell, "status": "ok", "web": page.url_for(page.r.web_image(record)[0])}
        overlays = []
        words = list(job.inputs["words"])
        for word in words:
            if word not in maps:
                overlays.append({"word": word, "status": "absent" if record else "missing",
                                 "error": page.failure(job)})
                continue
            art = record["files"]["image"] if record else None
            assert art is not None and record is not None
            name = hashlib.sha256(f"{art['sha256']} {record['files']['maps']['sha256']} "
                                  f"{word} {top:.6g}".encode()).hexdigest() + ".png"
            path = store.derived_path(name)
            if not path.exists():
                with Image.open(store.file(record, "image")) as im:
                    store.put_derived(name, overlay(im.convert("RGB"), maps[word], top))
            url = page.url_for(page.r.publish(f"{ASSETS}/attend/{name}", path))
            share = float(maps[word].max()) * maps[word].size
            overlays.append({"word": word, "status": "ok", "src": url, "peak": share,
                             "width": job.run["image"]["width"],
                             "height": job.run["image"]["height"]})
        rows.append({"cell": cell, "overlays": overlays, "prompt": job.run["image"]["prompt"],
                     "seed": job.run["image"]["seed"],
                     "same": (record or {}).get("data", {}).get("same_as_image"),
                     "failed": page.failure(job)})
        if spec.words is None:
            columns += [w for w in words if w not in columns]
    sources = [{"id": p.directive.spec.id, "where": p.directive.where, "href": page.link_to(p)}
               for p in planned.upstream]
    legend = [{"at": f"{top * f:.1f}×",
               "colour": "#" + "".join(f"{int(c):02x}" for c in colours(np.array(f)))}
              for f in (0, 0.25, 0.5, 0.75, 1)]
    return page.figure("attend.html", planned, {
        "spec": spec, "rows": rows, "top": top, "legend": legend, "sources": sources,
        "differs": sum(1 for r in rows if r["same"] is False), "columns": columns})


def describe(job: Job) -> tuple[str, str]:
    i = job.run["image"]
    return (f"model {job.run['model']}",
            f"attention of {', '.join(job.inputs['words'])} in {i['prompt']!r} seed {i['seed']}")


KIND = Kind(
    name="attend",
    parse=parse,
    expand=expand,
    render=render,
    runners={"attend.maps": "generator.backends.attention:run"},
    doc="Cross-attention heat maps per word of the prompt (DAAM, Tang et al. 2023), for the "
        "images of another figure, on one colour scale.",
    consumes=("images",),
    describe=describe,
)
