"""`unmake index DATASET`: CLIP embeddings of a dataset's local images and captions, in
clip-retrieval's layout, and a faiss index over them (what the `neighbors` directive searches).

Layout, in the folder the dataset's `embeddings:` names (relative to mkdocs.yml):

    img_emb/img_emb_N.npy          float32 (rows × d), L2-normalised CLIP image embeddings
    text_emb/text_emb_N.npy        the same rows' caption embeddings
    metadata/metadata_N.parquet    the same rows: key, row (its row number in the dataset's
                                   Parquet, counted over its files in order), caption, url,
                                   punsafe, image (where the local picture is)
    image.index                    a faiss index over every img_emb row, shards in order
    index.json                     the manifest: CLIP model and its fingerprint, width, shards,
                                   index type, parameters and recall, and the fingerprint of it
                                   all ("idx:" + hash of (path, size, mtime_ns) of every file)

Rows are the dataset rows that have a local picture (an img2dataset folder of shard folders or
`.tar` shards), in Parquet order; shard N holds rows N·S … N·S+S−1 of them.

Contract: a run that dies leaves whole shards or none (every file goes through the store's one
atomic write, the metadata file last, so it marks its shard done). A second run keeps each shard
whose metadata lists exactly the rows it should hold and was made by the same CLIP model, and
embeds only the rest; the faiss index and the manifest are written after every shard is there,
the manifest last. So a kill then a rerun gives the same files as one uninterrupted run.

Up to `exact_max` rows (default 1,000,000) the index is exact inner product (faiss IndexFlatIP);
above, IVF-PQ with exact re-ranking of its candidates, its parameters recorded and its recall@10
against exact search measured on a seeded sample of the rows at build time.

torch, open_clip and faiss are imported only when an index is built or searched.
"""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clipmodels import ClipRef
from .datasets import Dataset, DatasetError, Datasets
from .datasets.registry import IMAGE_EXTS, file_print, resolve_path
from .log import log
from .store import Store

if TYPE_CHECKING:
    import numpy as np

FORMAT = "unmake-index/1"
MANIFEST = "index.json"
INDEX_FILE = "image.index"
SHARD_SIZE = 10_000  # rows per shard: a kill loses at most one shard's work
EXACT_MAX = 1_000_000  # above this many rows, IVF-PQ instead of exact search
RECALL_SAMPLE = 1_000  # queries of the recall@10 check of an approximate index
# Test-only (as in execute.py): UNMAKE_TEST_KILL_AFTER=N kills `unmake index` with SIGKILL right
# after its N-th written shard, so tests can stop it at a known point.
KILL_AFTER = "UNMAKE_TEST_KILL_AFTER"


class IndexProblem(DatasetError):
    """An index that is missing, incomplete, or made by another CLIP model."""


@dataclass(frozen=True)
class Item:
    """One dataset row with a local picture: what gets embedded."""

    row: int
    key: str
    caption: str
    url: str | None
    punsafe: float | None
    image: str  # "<shard>/<key>.jpg" in a folder, or "<shard>.tar:<key>.jpg"


def folder_of(dataset: Dataset) -> Path:
    """The dataset's `embeddings:` folder (where `unmake index` writes)."""
    if not dataset.config.embeddings:
        raise IndexProblem(f"mkdocs.yml: plugins.unmake.datasets.{dataset.alias}.embeddings: not "
                          "set; name a folder for the CLIP embeddings and index (e.g. "
                          f"data/{dataset.alias}/clip) and run `unmake index {dataset.alias}`")
    return resolve_path(dataset.root, dataset.config.embeddings)


# -- local images: img2dataset folders and .tar shards ------------------------------------------
def local_images(folder: Path) -> dict[str, str]:
    """key -> where its picture is, for every image in an img2dataset output folder."""
    found: dict[str, str] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            for path in sorted(entry.iterdir()):
                if path.suffix.lower() in IMAGE_EXTS:
                    found.setdefault(path.stem, f"{entry.name}/{path.name}")
        elif entry.suffix == ".tar" and entry.is_file():
            with tarfile.open(entry) as tar:
                for member in tar.getmembers():
                    name = Path(member.name)
                    if member.isfile() and name.suffix.lower() in IMAGE_EXTS:
                        found.setdefault(name.stem, f"{entry.name}:{member.name}")
    return found


def read_image(folder: Path, where: str) -> bytes:
    """The bytes of a picture `local_images` found."""
    if ".tar:" in where:
        tar_name, _, member = where.partition(":")
        with tarfile.open(folder / tar_name) as tar:
            fh = tar.extractfile(member)
            if fh is None:
                raise OSError(f"{tar_name}: {member} is not a file")
            return fh.read()
    return (folder / where).read_bytes()


def items_of(dataset: Dataset) -> list[Item]:
    """The dataset's rows that have a local picture, in Parquet order."""
    import pyarrow.parquet as pq

    images_dir = dataset.images_dir()
    if images_dir is None or not images_dir.is_dir():
        raise IndexProblem(f"mkdocs.yml: plugins.unmake.datasets.{dataset.alias}.images: "
                          + ("not set" if images_dir is None else f"folder {images_dir} not found")
                          + "; `unmake index` embeds a dataset's local pictures")
    key_col = dataset.require("key")
    columns = {"key": key_col, "TEXT": dataset.column("TEXT"), "URL": dataset.column("URL"),
               "punsafe": dataset.column("punsafe")}
    wanted = [c for c in columns.values() if c]
    pictures = local_images(images_dir)
    items: list[Item] = []
    row = 0
    for file in dataset.files:
        have = set(pq.read_schema(file).names)
        table = pq.read_table(file, columns=[c for c in wanted if c in have]).to_pydict()
        n = len(next(iter(table.values()), []))
        get = {name: table.get(col) if col else None for name, col in columns.items()}
        for i in range(n):
            key = get["key"][i] if get["key"] else None
            if key is not None and str(key) in pictures:
                items.append(Item(row + i, str(key), str((get["TEXT"] or [""] * n)[i] or ""),
                                  (get["URL"] or [None] * n)[i],
                                  (get["punsafe"] or [None] * n)[i], pictures[str(key)]))
        row += n
    if not items:
        raise IndexProblem(f"dataset '{dataset.alias}': none of its rows has a picture in "
                          f"{images_dir} (pictures are matched to rows by the key column)")
    return items


# -- the manifest -------------------------------------------------------------------------------
def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None


def index_files(folder: Path, manifest: dict[str, Any]) -> list[Path]:
    """Every file the manifest's fingerprint covers."""
    out = []
    for shard in manifest["shards"]:
        out += [folder / shard[name] for name in ("img_emb", "text_emb", "metadata")]
    return [*out, folder / manifest["index"]["file"]]


def index_print(registry: Datasets, dataset: Dataset, clip: ClipRef) -> dict[str, Any]:
    """What a `neighbors` job's key needs of a dataset's index: its fingerprint, rows and width;
    remembered in the store, so a `--frozen` build without the data still finds its results.

    Raises IndexProblem when there is no finished index, or the CLIP model that made it is not
    the one the config names for this dataset."""
    memo_key = f"index:{dataset.alias}"
    folder = folder_of(dataset)
    manifest = read_manifest(folder)
    if manifest is None:
        known = registry._known(memo_key)
        if registry.frozen and known:
            return dict(known)
        state = ("has no finished index (index.json)" if folder.is_dir()
                 else "does not exist")
        raise IndexProblem(f"dataset '{dataset.alias}': {folder_shown(dataset)} {state}; run "
                          f"`unmake index {dataset.alias}` first")
    if manifest["dataset_fingerprint"] != dataset.fingerprint and dataset.present:
        raise IndexProblem(f"dataset '{dataset.alias}': its index was made from other metadata "
                           f"({manifest['dataset_fingerprint']}, now {dataset.fingerprint}); run "
                           f"`unmake index {dataset.alias}` again")
    if manifest["clip"]["fingerprint"] != clip.fingerprint:
        raise IndexProblem(
            f"dataset '{dataset.alias}' was indexed with CLIP model "
            f"'{manifest['clip']['name']}' ({manifest['clip']['fingerprint']}), but its "
            f"clip_model is '{clip.name}' ({clip.fingerprint}); queries must use the model "
            f"that made the embeddings: run `unmake index {dataset.alias}` again, or set "
            f"plugins.unmake.datasets.{dataset.alias}.clip_model")
    entry = {"fingerprint": manifest["fingerprint"], "rows": manifest["rows"],
             "dim": manifest["dim"], "index": manifest["index"]["type"]}
    registry._remember(memo_key, entry)
    return entry


def folder_shown(dataset: Dataset) -> str:
    return f"plugins.unmake.datasets.{dataset.alias}.embeddings ({dataset.config.embeddings})"


# -- building -----------------------------------------------------------------------------------
@dataclass
class Options:
    shard_size: int = SHARD_SIZE
    batch_size: int = 32
    exact_max: int = EXACT_MAX
    device: str = "auto"


def shard_paths(n: int) -> dict[str, str]:
    return {"img_emb": f"img_emb/img_emb_{n}.npy", "text_emb": f"text_emb/text_emb_{n}.npy",
            "metadata": f"metadata/metadata_{n}.parquet"}


def shard_done(folder: Path, n: int, items: list[Item], clip: ClipRef) -> bool:
    """Whether shard n is whole and holds exactly these rows, made by this CLIP model."""
    import pyarrow.parquet as pq

    paths = {k: folder / v for k, v in shard_paths(n).items()}
    if not all(p.is_file() for p in paths.values()):
        return False
    try:
        meta = pq.read_table(paths["metadata"], columns=["key", "row"])
        stamp = (meta.schema.metadata or {}).get(b"unmake:clip", b"").decode()
    except Exception:
        return False
    return (stamp == clip.fingerprint and meta.column("row").to_pylist() == [i.row for i in items]
            and meta.column("key").to_pylist() == [i.key for i in items])


def build(dataset: Dataset, registry: Datasets, clip: ClipRef, options: Options,
          say: Callable[[str], None] = print) -> dict[str, Any]:
    """Embed the dataset's pictures and captions shard by shard, index them, write the manifest;
    return it. Shards already whole (by an earlier, perhaps killed, run) are kept."""

    from .backends import clip as clip_backend
    from .log import progress

    started = time.perf_counter()
    folder = folder_of(dataset)
    store = Store(folder)  # its atomic write; tmp/ inside the folder, swept on the next run
    images_dir = dataset.images_dir()
    assert images_dir is not None

    # 1. The rows to embed and their shards.
    items = items_of(dataset)
    size = options.shard_size
    shards = [items[i:i + size] for i in range(0, len(items), size)]
    todo = [n for n, part in enumerate(shards) if not shard_done(folder, n, part, clip)]
    say(f"unmake index {dataset.alias}: {len(items):,} rows with a local picture in "
        f"{len(shards)} shard(s) of up to {size:,}; {len(shards) - len(todo)} already done")

    # 2. Embed what is missing: the model loaded once, batched, a progress bar with ETA.
    kill_after = int(os.environ.get(KILL_AFTER) or 0)
    written = 0
    if todo:
        from .backends.diffusion import pick_device

        device, _ = pick_device(options.device)
        loaded = clip_backend.load(clip, "cpu" if device == "mps" else device)
        total = sum(len(shards[n]) for n in todo)
        with progress(total, f"index {dataset.alias}") as bar:
            for n in todo:
                _write_shard(store, folder, images_dir, n, shards[n], loaded, clip,
                             options.batch_size, bar)
                written += 1
                if kill_after and written == kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)

    # 3. The faiss index over every shard, in order, then the manifest.
    manifest = finish(store, folder, [len(part) for part in shards], {
        "dataset": dataset.alias, "dataset_fingerprint": dataset.fingerprint,
        "images": registry.images_print(dataset),
        "clip": {"name": clip.name, "arch": clip.arch, "fingerprint": clip.fingerprint},
        "shard_size": size}, options.exact_max, say)
    dim = manifest["dim"]
    made = manifest["index"]["type"]
    say(f"unmake index {dataset.alias}: {len(items):,} rows × {dim} in {folder_shown(dataset)}, "
        f"{made} index, {written} shard(s) embedded in "
        f"{time.perf_counter() - started:.1f} s")
    return manifest


def finish(store: Store, folder: Path, rows: list[int], header: dict[str, Any], exact_max: int,
           say: Callable[[str], None] = print) -> dict[str, Any]:
    """Index the shards of `folder` (their sizes: `rows`) with faiss and write the manifest
    (`header` plus what the index is), last: its presence means the whole index is there."""
    import numpy as np

    from .backends import faiss_index

    # 1. The faiss index over every shard, in order; its recall if it is approximate.
    vectors = np.concatenate([np.load(folder / shard_paths(n)["img_emb"])
                              for n in range(len(rows))])
    made = faiss_index.build(vectors, exact_max)
    store.write_atomic(folder / INDEX_FILE, made.data)
    if made.recall is not None:
        say(f"unmake index: {made.kind} index of {len(vectors):,} rows, recall@10 against exact "
            f"search {made.recall:.3f} on {made.sample:,} sampled rows ({made.params})")

    # 2. The manifest, with the fingerprint of every file it names.
    manifest: dict[str, Any] = {
        "format": FORMAT, **header, "dim": int(vectors.shape[1]), "rows": len(vectors),
        "shards": [{"n": n, "rows": r, **shard_paths(n)} for n, r in enumerate(rows)],
        "index": {"file": INDEX_FILE, "type": made.kind, "params": made.params,
                  "recall_at_10": made.recall, "recall_sample": made.sample},
    }
    manifest["fingerprint"] = "idx:" + file_print(index_files(folder, manifest), folder)
    store.write_atomic(folder / MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))
    return manifest


def _write_shard(store: Store, folder: Path, images_dir: Path, n: int, items: list[Item],
                 loaded: Any, clip: ClipRef, batch_size: int, bar: Any) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from .backends import clip as clip_backend

    img_rows, text_rows = [], []
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        pictures = []
        for item in batch:
            with Image.open(io.BytesIO(read_image(images_dir, item.image))) as im:
                pictures.append(im.convert("RGB"))
        img_rows.append(clip_backend.embed_images(loaded, pictures, batch_size))
        text_rows.append(clip_backend.embed_texts(loaded, [i.caption for i in batch]))
        bar.update(len(batch))
    paths = shard_paths(n)
    for name, rows in (("img_emb", img_rows), ("text_emb", text_rows)):
        buf = io.BytesIO()
        np.save(buf, np.concatenate(rows).astype(np.float32, copy=False))
        store.write_atomic(folder / paths[name], buf.getvalue())
    table = pa.table({
        "key": pa.array([i.key for i in items], pa.string()),
        "row": pa.array([i.row for i in items], pa.int64()),
        "caption": pa.array([i.caption for i in items], pa.string()),
        "url": pa.array([i.url for i in items], pa.string()),
        "punsafe": pa.array([i.punsafe for i in items], pa.float64()),
        "image": pa.array([i.image for i in items], pa.string()),
    }).replace_schema_metadata({"unmake:clip": clip.fingerprint})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    store.write_atomic(folder / paths["metadata"], sink.getvalue().to_pybytes())
    log.debug("index shard %d: %d rows", n, len(items))


def metadata_table(folder: Path, manifest: dict[str, Any]) -> Any:
    """Every shard's metadata as one Arrow table, in index order (rows are taken from it as
    searches need them: a million rows stay columnar)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa.concat_tables([pq.read_table(folder / s["metadata"]) for s in manifest["shards"]])


def load_metadata(folder: Path, manifest: dict[str, Any]) -> dict[str, list[Any]]:
    """Every shard's metadata, concatenated: column -> values, in index order."""
    return metadata_table(folder, manifest).to_pydict()  # type: ignore[no-any-return]


def vectors(folder: Path, manifest: dict[str, Any], which: str = "img_emb") -> np.ndarray:
    """Every shard's embeddings of one kind, concatenated (float32, rows × d)."""
    import numpy as np

    return np.concatenate([np.load(folder / s[which]) for s in manifest["shards"]])
