"""How much do `neighbors` and `unmake index` add to faiss and open_clip used by hand?

Part 1, knn (target: directive / raw faiss <= 1.1x). A made embedding set of --rows (1,000,000)
unit vectors of width 64 (the built-in tiny-clip's), drawn around 1,000 centres like real
embeddings cluster, is written once in clip-retrieval's layout under bench/out/neighbors/made/
(img_emb and text_emb shards of 100,000 rows, metadata Parquet with key, row, caption, url,
punsafe) and indexed by `generator.index.finish`, the code `unmake index` ends with: exact below
--exact-max rows (default 1,000,001, so exact at a million), IVF-PQ above (`--ivf` forces it;
its recall@10 against exact search on 1,000 sampled rows is printed: the issue asks >= 0.9).
Then, in this process, alternating (and alternating which goes first), --repeat times each:

  directive  `generator.backends.faiss_index.run_search` over 1,000 "neighbors.search" jobs,
             each a text query with k 10, as a build runs them: embed the 1,000 texts with
             tiny-clip, one faiss search, shape each result (its metadata rows, their domains);
             nothing stored
  raw        tiny-clip `embed_texts` of the same texts, `index.search` with k 10

The CLIP model and the index are loaded before timing on both sides (warm: a build opens them
once); opening is timed apart (directive: index + its metadata; raw: `faiss.read_index`). Both
sides must find the same rows.

Part 2, index (target: unmake / bare <= 1.05x). A made dataset with --images pictures
(scripts/make_sample_dataset.py, 64x64 JPEGs with captions) is indexed by `unmake index` in a
subprocess (fresh embeddings folder each run: load, embed pictures and captions, shards, faiss,
manifest) and by bench/_bare_index.py in a subprocess (open_clip over the same files by hand,
two .npy files), both timed from python start to exit; images/s of each.

Run: .venv/bin/python bench/bench_neighbors.py [--rows 1000000] [--repeat 3] [--ivf]
     [--images 3000] [--skip-knn] [--skip-index]
Writes bench/out/neighbors.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from _util import BIN, OUT, ROOT, child_env, fresh, load_note, median, run_timed, table

sys.path.insert(0, str(ROOT))

KNN_TARGET, INDEX_TARGET = 1.1, 1.05
BASE = OUT / "neighbors"
SHARD = 100_000
QUERIES, K = 1_000, 10


def make_embeddings(rows: int, exact_max: int) -> tuple[Path, dict[str, Any]]:
    """The made embedding set and its index (kept between runs for the same parameters)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from generator import index
    from generator.clipmodels import tiny_clip_ref
    from generator.store import Store

    folder = BASE / f"made-{rows}-{exact_max}"
    manifest = index.read_manifest(folder)
    if manifest is not None:
        return folder, manifest
    fresh(folder)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1000, 64))
    sizes = [min(SHARD, rows - s) for s in range(0, rows, SHARD)]
    for n, size in enumerate(sizes):
        x = centres[rng.integers(0, 1000, size)] + 0.5 * rng.normal(size=(size, 64))
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        paths = index.shard_paths(n)
        for name in ("img_emb", "text_emb"):
            (folder / paths[name]).parent.mkdir(parents=True, exist_ok=True)
            np.save(folder / paths[name], x)
        first = n * SHARD
        (folder / paths["metadata"]).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({
            "key": [f"{first + i:09d}" for i in range(size)],
            "row": list(range(first, first + size)),
            "caption": [f"made row {first + i}" for i in range(size)],
            "url": [f"https://img.example{i % 50}.com/{first + i}.jpg" for i in range(size)],
            "punsafe": [0.01] * size, "image": [None] * size,
        }, schema=pa.schema([("key", pa.string()), ("row", pa.int64()),
                             ("caption", pa.string()), ("url", pa.string()),
                             ("punsafe", pa.float64()), ("image", pa.string())])),
            folder / paths["metadata"])
    clip = tiny_clip_ref()
    t0 = time.perf_counter()
    manifest = index.finish(Store(folder), folder, sizes, {
        "dataset": "made", "dataset_fingerprint": "made", "images": None,
        "clip": {"name": clip.name, "arch": clip.arch, "fingerprint": clip.fingerprint},
        "shard_size": SHARD}, exact_max)
    print(f"made {rows:,} rows, {manifest['index']['type']} index in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    return folder, manifest


def knn(args: argparse.Namespace) -> dict[str, Any]:
    import faiss

    from generator.backends import clip as clip_backend
    from generator.backends import faiss_index
    from generator.clipmodels import tiny_clip_ref
    from generator.store import Store, StoreView
    from generator.types import Job

    exact_max = 0 if args.ivf else args.exact_max
    folder, manifest = make_embeddings(args.rows, exact_max)
    texts = [f"a photo of made thing number {i}" for i in range(QUERIES)]
    clip = tiny_clip_ref()
    run = {"dataset": "made", "folder": str(folder), "images": None, "clip": clip.as_dict()}
    jobs = [Job("neighbors.search", {"index": manifest["fingerprint"], "k": K,
                                     "unsafe_threshold": 0.5, "text": t}, run=run)
            for t in texts]
    options = {"store": StoreView(Store(BASE / "store"))}
    loaded = clip_backend._loaded(jobs[0], options)  # warm: the model, on both sides

    faiss_index._OPEN.clear()
    t0 = time.perf_counter()
    faiss_index.open_index(folder, manifest["fingerprint"])
    open_directive = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = faiss.read_index(str(folder / manifest["index"]["file"]))
    faiss_index.configure(index, manifest["index"]["params"])
    open_raw = time.perf_counter() - t0

    def directive() -> tuple[float, list[list[int]]]:
        t0 = time.perf_counter()
        results = list(faiss_index.run_search(jobs, options))
        seconds = time.perf_counter() - t0
        return seconds, [[n["index_row"] for n in r.data["neighbors"]] for _, r in results]

    def raw() -> tuple[float, list[list[int]]]:
        t0 = time.perf_counter()
        queries = clip_backend.embed_texts(loaded, texts)
        _, found = index.search(queries, K)
        return time.perf_counter() - t0, found.tolist()

    times: dict[str, list[float]] = {"directive": [], "raw": []}
    answers: dict[str, list[list[int]]] = {}
    for i in range(args.repeat):
        for name, side in ((("directive", directive), ("raw", raw)) if i % 2 == 0
                           else (("raw", raw), ("directive", directive))):
            seconds, answers[name] = side()
            times[name].append(seconds)
            print(f"  knn {name:9s} run {i + 1}: {seconds:.3f} s", flush=True)
    same = answers["directive"] == answers["raw"]
    ratio = median(times["directive"]) / median(times["raw"])
    return {"rows": args.rows, "queries": QUERIES, "k": K, "index": manifest["index"],
            "directive_s": times["directive"], "raw_s": times["raw"], "ratio": ratio,
            "open_directive_s": open_directive, "open_raw_s": open_raw,
            "same_rows": same}


def index_part(args: argparse.Namespace) -> dict[str, Any]:
    base = BASE / "index"
    data = base / "zine" / "data" / "made"
    if not (data / "MANIFEST.json").is_file():
        fresh(base / "zine")
        run_timed([str(BIN / "python"), str(ROOT / "scripts" / "make_sample_dataset.py"),
                   "--out", str(data), "--rows", str(args.images), "--images",
                   str(args.images)], cwd=ROOT)
    (base / "zine" / "docs").mkdir(exist_ok=True)
    (base / "zine" / "docs" / "index.md").write_text("# bench\n", "utf-8")
    (base / "zine" / "mkdocs.yml").write_text(
        "site_name: bench\ndocs_dir: docs\ntheme: {name: material, font: false}\nplugins:\n"
        "  - unmake:\n      store: .unmake\n      datasets:\n        made:\n"
        "          metadata: data/made/metadata.parquet\n          images: data/made/images\n"
        "          embeddings: data/made/clip\n          clip_model: tiny-clip\n", "utf-8")
    env = child_env(args.threads)
    unmake = [str(BIN / "python"), "-m", "generator.cli", "index", "made", "--batch-size",
              str(args.batch_size)]
    bare = [str(BIN / "python"), str(ROOT / "bench" / "_bare_index.py"),
            str(data / "images"), str(base / "bare"), str(args.batch_size)]
    for cmd in (unmake, bare):  # untimed warm-up: the tiny-clip file, the file cache
        shutil.rmtree(data / "clip", ignore_errors=True)
        run_timed(cmd, cwd=base / "zine", env=env)
    times: dict[str, list[float]] = {"unmake": [], "bare": []}
    for i in range(args.repeat):
        order = [("unmake", unmake), ("bare", bare)]
        for name, cmd in (order if i % 2 == 0 else order[::-1]):
            shutil.rmtree(data / "clip" if name == "unmake" else base / "bare",
                          ignore_errors=True)
            timed = run_timed(cmd, cwd=base / "zine", env=env)
            times[name].append(timed.wall)
            print(f"  index {name:6s} run {i + 1}: {timed.wall:.2f} s wall, {timed.cpu:.2f} s "
                  f"cpu, {args.images / timed.wall:.0f} images/s", flush=True)
    mine = np.load(data / "clip" / "img_emb" / "img_emb_0.npy")
    theirs = np.load(base / "bare" / "img_emb_0.npy")
    return {"images": args.images, "unmake_s": times["unmake"], "bare_s": times["bare"],
            "ratio": median(times["unmake"]) / median(times["bare"]),
            "max_abs_difference": float(np.abs(mine[: len(theirs)] - theirs).max())
            if mine.shape == theirs.shape else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--exact-max", type=int, default=1_000_001)
    parser.add_argument("--ivf", action="store_true", help="IVF-PQ whatever the size")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--skip-knn", action="store_true")
    parser.add_argument("--skip-index", action="store_true")
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": platform.platform(), "load": load_note()}
    rows = []
    if not args.skip_knn:
        report["knn"] = k = knn(args)
        what = k["index"]["type"] + (f", recall@10 {k['index']['recall_at_10']:.3f}"
                                     if k["index"]["recall_at_10"] is not None else "")
        rows.append([f"knn: {QUERIES:,} queries, {args.rows:,} rows ({what})",
                     f"{median(k['directive_s']):.3f}", f"{median(k['raw_s']):.3f}",
                     f"{k['ratio']:.2f}x", f"<= {KNN_TARGET}x",
                     ("same rows" if k["same_rows"] else "ROWS DIFFER")
                     + f"; open {k['open_directive_s']:.1f} s vs {k['open_raw_s']:.1f} s"])
    if not args.skip_index:
        report["index"] = x = index_part(args)
        rows.append([f"index: {args.images:,} pictures + captions",
                     f"{median(x['unmake_s']):.2f}", f"{median(x['bare_s']):.2f}",
                     f"{x['ratio']:.2f}x", f"<= {INDEX_TARGET}x",
                     f"max |diff| {x['max_abs_difference']}"])
    print(table("bench_neighbors (median seconds)",
                ["what", "unmake", "raw/bare", "ratio", "target", "check"], rows))
    print(report["load"] + "; " + load_note())
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "neighbors.json").write_text(json.dumps(report, indent=1), "utf-8")


if __name__ == "__main__":
    main()
