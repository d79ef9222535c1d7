"""`neighbors`: the nearest training rows to each generated image of a figure, or to a text.

    ```neighbors
    dataset: sample              # an alias from plugins.unmake.datasets, indexed by `unmake index`
    of: professions              # each image of that figure (one or more figures) ...
    # query: "a portrait of a nurse"    # ... or a text, or a list of texts
    k: 6                         # neighbours per query, 1–50
    by: prompt                   # rows and aggregates per group of the source (with `of:`)
    threshold: 0.95              # CLIP similarity at or above which a pair is flagged
    caption: What the model's nurses are closest to in the training data.
    ```

One job per query image or text ("neighbors.search", generator.backends.faiss_index): the query's
CLIP embedding (made with the model that made the dataset's embeddings, its `clip_model`) is
searched in the dataset's faiss index. Keys hold the query (the upstream image's key, or the
text), k, the fingerprints of the dataset's metadata, its index (embeddings included) and local
pictures, the CLIP model's fingerprint and the dataset's unsafe threshold: rows above it are
never shown, and are replaced by the next nearest. The stored result carries each neighbour's
similarity, caption, URL, domain and a copy of its local picture, so `--frozen` renders from the
store alone. Remote pictures are never hotlinked unless the dataset sets `hotlink: true`.

The replication flag (a pair at or above `threshold`) is drawn at render time from the stored
similarities; per group the figure sums up the neighbours' domains, their captions' words, and
how many captions contain a word of the query's own prompt.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .. import clipmodels
from .. import datasets as ds
from ..errors import DirectiveError, UnmakeError
from ..index import folder_of, index_print
from ..render import ASSETS, PageRender
from ..specs import Body, preview
from ..types import Context, Job, Kind, Planned
from .dataset import chart, safe_link
from .measure import _check_by, groups_of, images_of

ALGO = 1  # bump when a search's result changes for the same inputs
THRESHOLD = 0.95  # default replication threshold (CLIP cosine similarity)
MAX_QUERY_CHARS = 300  # CLIP reads 77 tokens; a query is a prompt, not a paragraph
CAPTION_CHARS = 140  # of a neighbour's caption under its picture (the whole in its title)
TOP = 8  # rows of each aggregate
STOPWORDS = frozenset([
    "a", "an", "the", "of", "in", "on", "at", "to", "for", "and", "or", "with", "by", "from",
    "as", "is", "are", "was", "be", "this", "that", "it", "its", "his", "her", "their", "our",
    "your", "my", "photo", "image", "picture", "stock", "portrait",
])
NOTE = ("Nearest is not source: a neighbour is the training row whose CLIP embedding lies "
        "closest to the query's, by the measure of one model. A flagged pair is a reason to look "
        "at both images side by side, not proof that one was copied from the other.")


@dataclass(frozen=True)
class NeighborsSpec:
    id: str | None
    caption: str | None
    dataset: str
    queries: tuple[str, ...]  # texts (empty: the images of `of:`)
    k: int
    by: str
    threshold: float
    hotlink: bool
    lines: dict[str, int] = field(default_factory=dict, hash=False, compare=False)


def parse(body: Body, ctx: Context) -> NeighborsSpec:
    alias = body.take_name("dataset")
    try:
        dataset = ds.for_context(ctx).get(alias)
    except ds.DatasetError as exc:
        raise body.error("dataset", str(exc)) from None
    has_of, has_query = body.has("of"), body.has("query")
    if has_of == has_query:
        raise body.error("query" if has_query else "of",
                         "give either 'of:' (a figure's images) or 'query:' (a text or a list "
                         "of texts), " + ("not both" if has_of else "one of them"))
    queries: tuple[str, ...] = ()
    if has_query:
        queries = body.take_str_list("query")
        for i, text in enumerate(queries):
            at = f"query[{i}]" if isinstance(body.data["query"], list) else None
            if not text.strip():
                raise body.error("query", "must not be empty", at=at)
            if len(text) > MAX_QUERY_CHARS:
                raise body.error("query", f"is {len(text)} characters; at most "
                                 f"{MAX_QUERY_CHARS}: {preview(text)}", at=at)
        if len(set(queries)) < len(queries):
            raise body.error("query", "lists a text twice")
        if body.has("by"):
            raise body.error("by", "groups the images of 'of:'; a 'query:' has no groups")
    by = body.take_name("by", "prompt")
    return NeighborsSpec(
        id=body.take_str("id", None), caption=body.take_str("caption", None), dataset=alias,
        queries=queries, k=body.take_int("k", 6, 1, 50), by=by,
        threshold=body.take_float("threshold", THRESHOLD, 0.0, 1.0),
        hotlink=dataset.config.hotlink, lines=body.key_lines)


def expand(spec: NeighborsSpec, ctx: Context, upstream: list[Planned]) -> list[Job]:
    # 1. The dataset, its CLIP model and its finished index (or what a frozen build remembers).
    registry = ds.for_context(ctx)
    dataset = registry.get(spec.dataset)
    try:
        clip = clipmodels.for_context(ctx).resolve(dataset.config.clip_model)
        info = index_print(registry, dataset, clip)
        images = registry.images_print(dataset)
    except UnmakeError as exc:
        raise DirectiveError(str(exc), line=spec.lines.get("dataset"), key="dataset") from None
    folder = dataset.images_dir()
    base = {"algo": ALGO, "dataset": dataset.fingerprint, "index": info["fingerprint"],
            "images": images, "clip": clip.fingerprint, "k": spec.k,
            "unsafe_threshold": dataset.config.unsafe_threshold}
    run = {"dataset": spec.dataset, "folder": str(folder_of(dataset)),
           "images": str(folder) if folder else None, "clip": clip.as_dict()}
    group = (spec.dataset, clip.fingerprint)

    # 2. One job per text, or per image of the upstream figures (an image in two figures once).
    if spec.queries:
        return [Job("neighbors.search", {**base, "text": text}, group=group, run=run)
                for text in spec.queries]
    outputs = images_of(upstream)
    _check_by(spec, outputs, upstream)  # type: ignore[arg-type]  # it reads .by and .lines
    jobs, seen = [], set()
    for output in outputs:
        if output.job.key not in seen:
            seen.add(output.job.key)
            jobs.append(Job("neighbors.search", {**base, "image": output.job.key}, group=group,
                            run=run, needs=(output.job.key,)))
    return jobs


# -- rendering ----------------------------------------------------------------------------------
def words(text: str) -> list[str]:
    return [w for w in re.findall(r"[^\W\d_]{2,}", text.lower()) if w not in STOPWORDS]


def render(planned: Planned, page: PageRender) -> str:
    spec: NeighborsSpec = planned.directive.spec
    groups: list[tuple[str, list[dict[str, Any]]]]
    if spec.queries:
        queries: list[dict[str, Any]] = [
            {"group": text, "prompt": text, "text": text, "cell": None, "job": job}
            for text, job in zip(spec.queries, planned.jobs, strict=True)]
        groups = [(q["group"], [q]) for q in queries]
    else:
        outputs = images_of(planned.upstream)
        by_image = {job.inputs["image"]: job for job in planned.jobs}
        first = {o.job.key: o for o in reversed(outputs)}
        groups = []
        for group in groups_of(spec, outputs):  # type: ignore[arg-type]
            members = []
            for key in group.images:
                source = first[key].job
                members.append({"group": group.label, "prompt": source.inputs.get("prompt", ""),
                                "text": None, "cell": page.image_cell(source),
                                "job": by_image[key]})
            groups.append((group.label, members))
    views: list[dict[str, Any]] = []
    status: set[str] = set()
    for label, members in groups:
        rows = [_row(q, spec, page) for q in members]
        status |= {r["status"] for r in rows}
        views.append({"label": label, "rows": rows, "summary": _summary(rows)})
    first_record = next((r["record"] for g in views for r in g["rows"] if r["record"]), None)
    sources = [{"id": p.directive.spec.id, "where": p.directive.where, "href": page.link_to(p)}
               for p in planned.upstream]
    flagged = sum(n["flagged"] for g in views for r in g["rows"] for n in r["neighbors"])
    return page.figure("neighbors.html", planned, {
        "spec": spec, "groups": views, "sources": sources, "note": NOTE, "flagged": flagged,
        "index": first_record["data"]["index"] if first_record else None,
        "rows_total": first_record["data"]["rows"] if first_record else None,
        "env": first_record["env"] if first_record else {},
        "clip": planned.jobs[0].run["clip"]["name"] if planned.jobs else "",
        "unsafe_threshold": planned.jobs[0].inputs["unsafe_threshold"] if planned.jobs else None,
    })


def _row(query: dict[str, Any], spec: NeighborsSpec, page: PageRender) -> dict[str, Any]:
    job: Job = query["job"]
    record, error = page.record(job), page.failure(job)
    row = {**query, "status": "failed" if error else "ok" if record else "missing",
           "error": error, "record": record, "neighbors": [], "held_back": 0,
           "withheld": bool(record and record["data"].get("withheld"))}
    if record is None or error or row["withheld"]:
        return row
    row["held_back"] = record["data"]["held_back"]
    for n in record["data"]["neighbors"]:
        view = dict(n)
        view["local"] = None
        if n.get("image"):
            art = record["files"][n["image"]]
            site = page.r.publish(f"{ASSETS}/data/{art['sha256']}.{art['ext']}",
                                  page.r.store.file(record, n["image"]))
            view["local"] = page.url_for(site)
        view["link"] = safe_link(n.get("url"))
        view["remote"] = view["link"] if spec.hotlink and not view["local"] else None
        caption = n.get("caption") or ""
        view["short"] = caption if len(caption) <= CAPTION_CHARS else (
            caption[:CAPTION_CHARS - 1] + "…")
        view["title"] = caption[:500]
        view["flagged"] = n["similarity"] >= spec.threshold
        row["neighbors"].append(view)
    return row


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A group's aggregates: its neighbours' domains, their captions' words, and how many
    captions contain a word of the query's own prompt (or text)."""
    domains: Counter[str] = Counter()
    vocabulary: Counter[str] = Counter()
    n = overlap = 0
    prompt_words: set[str] = set()
    for row in rows:
        own = set(words(row["prompt"] or ""))
        prompt_words |= own
        for neighbor in row["neighbors"]:
            n += 1
            domains[neighbor.get("domain") or "(no domain)"] += 1
            caption_words = set(words(neighbor.get("caption") or ""))
            vocabulary.update(caption_words)
            overlap += bool(own & caption_words)
    return {"n": n, "domains": chart(domains.most_common(TOP), n),
            "words": chart(vocabulary.most_common(TOP), n), "overlap": overlap,
            "prompt_words": sorted(prompt_words)}


def describe(job: Job) -> tuple[str, str]:
    what = (f"k={job.inputs['k']} nearest rows of “{job.inputs['text']}”" if "text" in job.inputs
            else f"k={job.inputs['k']} nearest rows of image {job.inputs['image'][:12]}")
    return f"dataset {job.run['dataset']}", what


KIND = Kind(
    name="neighbors",
    parse=parse,
    expand=expand,
    render=render,
    runners={"neighbors.search": "generator.backends.faiss_index:run_search"},
    doc="The nearest training rows (by CLIP embedding) to each image of a figure or to a text, "
        "side by side; possible replications flagged.",
    consumes=("images",),
    of_required=False,
    describe=describe,
)
