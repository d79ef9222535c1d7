"""faiss: build a dataset's nearest-neighbour index, and run the `neighbors` directive's searches.

An index is exact inner product (IndexFlatIP) up to `exact_max` rows; above, IVF-PQ whose
candidates are re-ranked by exact inner product (faiss's `RFlat` refinement), with its recall@10
against exact search measured on a seeded sample of the rows. Embeddings are unit vectors, so
inner product is cosine similarity.

The runner ("neighbors.search") opens each index once per build, embeds every query of a group
with one CLIP load (upstream images read from the store's read-only view, or texts), searches
them in one faiss call, and stores per query its k nearest rows: similarity, caption, URL,
domain, punsafe and a copy of the local picture (so a `--frozen` build shows them without the
dataset).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import domain_of
from ..index import RECALL_SAMPLE, IndexProblem, metadata_table, read_image, read_manifest
from ..models import dist_version
from ..render import withheld
from ..store import Result
from ..types import Job

RECALL_K = 10
EXTRA = 32  # rows searched beyond k again, for a query that lost rows to the unsafe threshold


@dataclass
class Made:
    data: bytes  # the serialised index
    kind: str  # "flat-ip" | "ivf-pq"
    params: dict[str, Any]
    recall: float | None  # recall@10 against exact search (None: the index is exact)
    sample: int  # queries the recall was measured on


def ivf_params(n: int, dim: int) -> dict[str, Any]:
    """IVF-PQ parameters for n rows of width dim: about 4·√n lists (a power of two, at least
    39 training rows each, as faiss's k-means wants), dim/2 sub-quantizers of 4 bits scanned
    with faiss's SIMD "fast scan" (16 centroids a sub-quantizer train in a fraction of the time
    256 take; the exact re-ranking recovers the precision), a 64th of the lists probed, and
    64 × k candidates re-ranked exactly: on a million made rows of width 64 the 4-bit codes
    alone find 56 % of the true top 10 at 8 × k, 89 % at 32 × k and 99 % at 64 × k, for
    about 0.1 ms a query more (measured with bench/bench_neighbors.py, November 2026)."""
    nlist = 2 ** round(math.log2(max(1.0, 4 * math.sqrt(n))))
    nlist = max(1, min(nlist, n // 39))
    even = [d for d in range(2, dim // 2 + 1, 2) if dim % d == 0]  # fast scan packs pairs
    m = even[-1] if even else 1
    return {"nlist": nlist, "m": m, "nbits": 4 if even else 8, "nprobe": max(16, nlist // 64),
            "k_factor": 64, "train_rows": min(n, 64 * nlist)}


def build(vectors: np.ndarray, exact_max: int, seed: int = 0) -> Made:
    """The index over `vectors` (rows × d, unit rows), serialised, with what it is."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    if n <= exact_max:
        flat = faiss.IndexFlatIP(dim)
        flat.add(x)
        return Made(faiss.serialize_index(flat).tobytes(), "flat-ip", {"metric": "inner product"},
                    None, 0)
    params = ivf_params(n, dim)
    index = faiss.index_factory(dim, f"IVF{params['nlist']},PQ{params['m']}x{params['nbits']}"
                                f"{'fs' if params['nbits'] == 4 else ''},"
                                "RFlat", faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    train = x[np.sort(rng.choice(n, params["train_rows"], replace=False))]
    faiss.extract_index_ivf(index).cp.seed = seed  # the k-means of the lists, seeded
    index.train(train)
    index.add(x)
    configure(index, params)
    queries = x[np.sort(rng.choice(n, min(n, RECALL_SAMPLE), replace=False))]
    recall = recall_at(index, x, queries, RECALL_K)
    return Made(faiss.serialize_index(index).tobytes(), "ivf-pq",
                {"metric": "inner product", **params}, recall, len(queries))


def configure(index: Any, params: dict[str, Any]) -> None:
    """Set the search-time parameters an IVF-PQ index was measured with."""
    import faiss

    if "nprobe" in params:
        faiss.extract_index_ivf(index).nprobe = params["nprobe"]
        refine: Any = faiss.downcast_index(index)
        refine.k_factor = float(params["k_factor"])


def recall_at(index: Any, x: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Mean share of each query's exact top k that the index returns in its top k."""
    import faiss

    _, exact = faiss.knn(queries, x, k, metric=faiss.METRIC_INNER_PRODUCT)
    _, found = index.search(queries, k)
    hits = sum(len(set(a) & set(b)) for a, b in zip(exact.tolist(), found.tolist(), strict=True))
    return hits / (k * len(queries))


# -- searching ----------------------------------------------------------------------------------
@dataclass
class Opened:
    folder: Path
    manifest: dict[str, Any]
    index: Any
    meta: Any  # pyarrow.Table of the metadata, in index order


_OPEN: dict[str, Opened] = {}  # index fingerprint -> opened index: one read per build


def open_index(folder: Path, fingerprint: str) -> Opened:
    """The index in `folder`, checked against the fingerprint its jobs were planned with."""
    import faiss

    if fingerprint not in _OPEN:
        manifest = read_manifest(folder)
        if manifest is None or manifest["fingerprint"] != fingerprint:
            raise IndexProblem(f"the index in {folder.name}/ changed or went away since the "
                               "build was planned; build again")
        index = faiss.deserialize_index(np.fromfile(folder / manifest["index"]["file"],
                                                    dtype=np.uint8))
        configure(index, manifest["index"]["params"])
        _OPEN[fingerprint] = Opened(folder, manifest, index, metadata_table(folder, manifest))
    return _OPEN[fingerprint]


def search(opened: Opened, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, rows) of the k nearest rows of each query (rows −1 where fewer exist)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    return opened.index.search(q, min(k, opened.manifest["rows"]))  # type: ignore[no-any-return]


def run_search(jobs: list[Job], options: dict[str, Any]) -> Iterator[tuple[Job, Any]]:
    """Runner for "neighbors.search": one group is one dataset index and one CLIP model."""
    from PIL import Image

    from . import clip as clip_backend

    # 1. Open the index (once per build) and load the CLIP model (once per build).
    first = jobs[0]
    opened = open_index(Path(first.run["folder"]), first.inputs["index"])
    loaded = clip_backend._loaded(first, options)
    if loaded.embed_dim != opened.manifest["dim"]:
        raise IndexProblem(f"CLIP model '{loaded.ref.name}' makes {loaded.embed_dim}-wide "
                           f"embeddings, but the index of dataset '{first.run['dataset']}' holds "
                           f"{opened.manifest['dim']}-wide ones: it was made by another model")
    env = {**clip_backend.environment(loaded), "faiss": dist_version("faiss-cpu"),
           "index": opened.manifest["index"]["type"]}
    store = options["store"]

    # 2. Embed the queries: texts in one pass, upstream images in batches.
    ready: list[Job] = []
    rows: list[np.ndarray] = []
    pictures, picture_jobs = [], []
    for job in jobs:
        if "text" in job.inputs:
            ready.append(job)
            continue
        try:
            record = store.get(job.inputs["image"])
            if record is not None and withheld(record):
                yield job, Result(data={"withheld": True}, env=env)
                continue
            with Image.open(store.file(job.inputs["image"], "image")) as im:
                pictures.append(im.convert("RGB"))
            picture_jobs.append(job)
        except (OSError, KeyError) as exc:
            yield job, exc
    t0 = time.perf_counter()
    if ready:
        rows.append(clip_backend.embed_texts(loaded, [j.inputs["text"] for j in ready]))
    if picture_jobs:
        batch = max(1, int(options.get("clip_batch_size", 32)))
        rows.append(clip_backend.embed_images(loaded, pictures, batch))
        ready += picture_jobs
    if not ready:
        return
    queries = np.concatenate(rows)

    # 3. One search for every query, for k rows; a query that lost rows to the unsafe
    #    threshold is searched again for more, until it has k or the index has no more.
    k = max(j.inputs["k"] for j in ready)
    sims, found = search(opened, queries, k)
    meta: dict[int, dict[str, Any]] = {}
    while True:
        _take(opened, found, meta)
        short = [i for i, job in enumerate(ready) if _shown(job, found[i], meta) < job.inputs["k"]
                 and (found[i] >= 0).all() and found.shape[1] < opened.manifest["rows"]]
        if not short:
            break
        more = min(2 * found.shape[1] + EXTRA, opened.manifest["rows"])
        again_sims, again = search(opened, queries[short], more)
        grown = np.full((len(ready), more), -1, dtype=found.dtype)
        grown_sims = np.full((len(ready), more), -np.inf, dtype=sims.dtype)
        grown[:, :found.shape[1]], grown_sims[:, :found.shape[1]] = found, sims
        grown[short], grown_sims[short] = again, again_sims
        found, sims = grown, grown_sims
    each = (time.perf_counter() - t0) / len(ready)
    images_dir = Path(first.run["images"]) if first.run.get("images") else None
    for job, sim_row, row_ids in zip(ready, sims, found, strict=True):
        yield job, _result(job, opened, meta, sim_row, row_ids, images_dir, env, each)


def _take(opened: Opened, found: np.ndarray, meta: dict[int, dict[str, Any]]) -> None:
    """Add the metadata of every row found and not yet known (taken from Arrow at once)."""
    hit = np.setdiff1d(np.unique(found[found >= 0]), np.fromiter(meta, dtype=np.int64))
    meta.update(zip(hit.tolist(), opened.meta.take(hit).to_pylist(), strict=True))


def _shown(job: Job, rows: np.ndarray, meta: dict[int, dict[str, Any]]) -> int:
    """How many of these rows the figure may show (those not above the unsafe threshold)."""
    threshold = job.inputs["unsafe_threshold"]
    return sum(1 for i in rows.tolist() if i >= 0 and not (
        threshold is not None and meta[i]["punsafe"] is not None
        and meta[i]["punsafe"] > threshold))


def _result(job: Job, opened: Opened, meta: dict[int, dict[str, Any]], sims: np.ndarray,
            rows: np.ndarray, images_dir: Path | None, env: dict[str, Any],
            seconds: float) -> Result:
    threshold = job.inputs["unsafe_threshold"]
    out: list[dict[str, Any]] = []
    files: dict[str, tuple[bytes, str]] = {}
    held_back = 0
    for sim, i in zip(sims.tolist(), rows.tolist(), strict=True):
        if i < 0 or len(out) == job.inputs["k"]:
            break
        row = meta[i]
        punsafe = row["punsafe"]
        if threshold is not None and punsafe is not None and punsafe > threshold:
            held_back += 1
            continue
        rank = len(out)
        name = None
        if images_dir is not None and row["image"]:
            try:
                picture = read_image(images_dir, row["image"])
            except OSError:
                picture = b""
            if picture:
                name = f"n{rank}"
                ext = Path(row["image"].rpartition(":")[2]).suffix.lstrip(".").lower()
                files[name] = (picture, ext or "jpg")
        out.append({"rank": rank, "similarity": float(sim), "index_row": int(i),
                    "row": row["row"], "key": row["key"], "caption": row["caption"],
                    "url": row["url"], "domain": domain_of(row["url"]),
                    "punsafe": punsafe, "image": name})
    data = {"neighbors": out, "held_back": held_back, "rows": opened.manifest["rows"],
            "index": {"type": opened.manifest["index"]["type"],
                      "params": opened.manifest["index"]["params"],
                      "recall_at_10": opened.manifest["index"]["recall_at_10"]}}
    return Result(data=data, files=files, env=env, seconds=seconds)

