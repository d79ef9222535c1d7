"""`unmake index`: embeddings in clip-retrieval's layout, resumable shards, the faiss index.

Ground truth that holds with random CLIP weights: an image's embedding is a function of its
pixels, so identical pictures get identical rows; a shard kept from a killed run is byte for byte
what an uninterrupted run writes; an exact index finds every row's own vector first.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_zine

from generator import index
from generator.backends import faiss_index
from generator.clipmodels import tiny_clip_ref
from generator.datasets import Datasets

N_ROWS = 40
NO_PICTURE = (2, 30)  # rows without a local picture
DUPLICATE = (3, 7)  # row 7's picture is row 3's, byte for byte
UNSAFE_COPY = (5, 12)  # row 12's picture is row 5's, and row 12 is unsafe (punsafe 0.9)
HOSTILE = '<script>alert(1)</script> "><img src=x onerror=alert(1)>'


def key(i: int) -> str:
    return f"{i:09d}"


def picture(i: int) -> bytes:
    """A distinct, seeded 32×32 JPEG for row i."""
    from PIL import Image

    rng = np.random.default_rng(i)
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def make_dataset(folder: Path) -> None:
    """folder/meta.parquet (LAION columns) and folder/images/00000/<key>.jpg (img2dataset)."""
    rows: dict[str, list[Any]] = {"key": [], "URL": [], "TEXT": [], "punsafe": []}
    for i in range(N_ROWS):
        rows["key"].append(key(i))
        rows["URL"].append(f"https://img{i % 3}.example{i % 4}.com/p/{i}.jpg")
        rows["TEXT"].append(HOSTILE if i == 9 else f"a photo number {i} of a fox in the snow")
        rows["punsafe"].append(0.9 if i == UNSAFE_COPY[1] else 0.01)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), folder / "meta.parquet")
    shard = folder / "images" / "00000"
    shard.mkdir(parents=True, exist_ok=True)
    for i in range(N_ROWS):
        if i in NO_PICTURE:
            continue
        source = {DUPLICATE[1]: DUPLICATE[0], UNSAFE_COPY[1]: UNSAFE_COPY[0]}.get(i, i)
        (shard / f"{key(i)}.jpg").write_bytes(picture(source))


def dataset_config(root: str = "data") -> dict[str, Any]:
    return {"datasets": {"t": {"metadata": f"{root}/meta.parquet", "images": f"{root}/images",
                               "embeddings": f"{root}/clip", "clip_model": "tiny-clip"}}}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A made dataset, indexed in-process with the built-in CLIP, shards of 16 rows."""
    root = tmp_path_factory.mktemp("indexed")
    make_dataset(root / "data")
    registry = Datasets(dataset_config(), root, None, frozen=False)
    manifest = index.build(registry.get("t"), registry, tiny_clip_ref(),
                           index.Options(shard_size=16), say=lambda _: None)
    return root, manifest


def test_layout_is_clip_retrievals_and_row_aligned(indexed: tuple[Path, dict[str, Any]]) -> None:
    root, manifest = indexed
    folder = root / "data" / "clip"
    n = N_ROWS - len(NO_PICTURE)
    assert manifest["rows"] == n and manifest["dim"] == 64
    assert [s["rows"] for s in manifest["shards"]] == [16, 16, n - 32]
    assert sorted(p.name for p in (folder / "img_emb").iterdir()) == [
        "img_emb_0.npy", "img_emb_1.npy", "img_emb_2.npy"]
    meta = index.load_metadata(folder, manifest)
    # metadata rows: the dataset's rows with a picture, in order, with their row numbers
    assert meta["row"] == [i for i in range(N_ROWS) if i not in NO_PICTURE]
    assert meta["key"] == [key(i) for i in meta["row"]]
    assert meta["caption"][meta["row"].index(9)] == HOSTILE
    img, text = index.vectors(folder, manifest), index.vectors(folder, manifest, "text_emb")
    assert img.shape == text.shape == (n, 64) and img.dtype == np.float32
    assert np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    # identical pictures, identical rows; distinct pictures, distinct rows
    at = {r: i for i, r in enumerate(meta["row"])}
    assert np.array_equal(img[at[DUPLICATE[0]]], img[at[DUPLICATE[1]]])
    assert not np.array_equal(img[at[0]], img[at[1]])
    # row 9's caption embedding is the text embedding of its caption, made apart
    from generator.backends import clip as clip_backend

    loaded = clip_backend.load(tiny_clip_ref())
    again = clip_backend.embed_texts(loaded, [HOSTILE])[0]
    assert np.allclose(text[at[9]], again, atol=1e-5)
    assert manifest["index"]["type"] == "flat-ip" and manifest["index"]["recall_at_10"] is None
    assert manifest["fingerprint"].startswith("idx:")


def test_exact_index_finds_each_row_first(indexed: tuple[Path, dict[str, Any]]) -> None:
    root, manifest = indexed
    folder = root / "data" / "clip"
    opened = faiss_index.open_index(folder, manifest["fingerprint"])
    x = index.vectors(folder, manifest)
    sims, rows = faiss_index.search(opened, x, 1)
    assert np.allclose(sims[:, 0], 1.0, atol=1e-5)
    meta = index.load_metadata(folder, manifest)
    dup = {meta["row"].index(r) for r in DUPLICATE}
    for i, found in enumerate(rows[:, 0]):
        assert found == i or {i, found} <= dup or meta["row"][i] in UNSAFE_COPY


def test_ivf_pq_above_exact_max_reports_recall() -> None:
    # 20,000 made unit vectors around 200 centres (embeddings cluster like this), exact_max 1000
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, 32))
    x = centres[rng.integers(0, 200, 20_000)] + 0.35 * rng.normal(size=(20_000, 32))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    made = faiss_index.build(x, exact_max=1000)
    assert made.kind == "ivf-pq" and made.sample == 1000
    assert made.params["nlist"] == 512 and made.params["m"] == 16
    assert made.recall is not None and made.recall >= 0.9, made.recall
    # the recorded recall is what the serialised index gives, measured again apart
    import faiss

    again = faiss.deserialize_index(np.frombuffer(made.data, dtype=np.uint8))
    faiss_index.configure(again, made.params)
    queries = x[rng.choice(len(x), 300, replace=False)]
    assert faiss_index.recall_at(again, x, queries, 10) >= 0.9


def test_recall_of_a_bad_index_is_low() -> None:
    """The recall check can fail: an index over other vectors finds the wrong rows."""
    import faiss

    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 16)).astype(np.float32)
    wrong = faiss.IndexFlatIP(16)
    wrong.add(rng.normal(size=(2000, 16)).astype(np.float32))
    assert faiss_index.recall_at(wrong, x, x[:100], 10) < 0.1


def test_index_print_refuses_another_clip_model(indexed: tuple[Path, dict[str, Any]],
                                                tmp_path: Path) -> None:
    root, _ = indexed
    registry = Datasets(dataset_config(), root, None, frozen=False)
    dataset = registry.get("t")
    assert index.index_print(registry, dataset, tiny_clip_ref())["dim"] == 64
    other = tiny_clip_ref().__class__(**{**tiny_clip_ref().as_dict(),
                                         "name": "vit", "fingerprint": "file:ViT-B-32:abc"})
    with pytest.raises(index.IndexProblem, match=r"indexed with CLIP model 'tiny-clip'.*"
                       r"clip_model is 'vit' \(file:ViT-B-32:abc\).*unmake index t"):
        index.index_print(registry, dataset, other)
    # no index yet: say what to run
    empty = Datasets({"datasets": {"t": {**dataset_config()["datasets"]["t"],
                                         "embeddings": "data/none"}}}, root, None, frozen=False)
    with pytest.raises(index.IndexProblem, match=r"does not exist; run `unmake index t` first"):
        index.index_print(empty, empty.get("t"), tiny_clip_ref())


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.parts[len(folder.parts)] != "tmp" and p.name != "index.json"}


@pytest.mark.slow
def test_killed_index_resumes_from_whole_shards(tmp_path: Path,
                                                unmake_env: dict[str, str]) -> None:
    zine = make_zine(tmp_path / "z", {"index.md": "# x\n"}, unmake_env, plugin=dataset_config())
    make_dataset(zine.root / "data")
    whole = zine.copy(tmp_path / "whole")

    # 1. Killed (SIGKILL) right after its second shard: two whole shards, no index, no manifest.
    run = zine.unmake("index", "t", "--shard-size", "10", env={index.KILL_AFTER: "2"})
    assert run.rc == -9, run.output
    folder = zine.root / "data" / "clip"
    assert sorted(p.name for p in (folder / "metadata").iterdir()) == [
        "metadata_0.parquet", "metadata_1.parquet"]
    assert not (folder / "index.json").exists() and not (folder / "image.index").exists()
    kept = {p: p.stat().st_mtime_ns for p in folder.rglob("*_[01].*")}
    assert len(kept) == 6

    # 2. Again: the two shards are kept (not rewritten), the other two embedded.
    run = zine.unmake("index", "t", "--shard-size", "10")
    assert run.rc == 0, run.output
    assert "4 shard(s) of up to 10; 2 already done" in run.output
    assert "2 shard(s) embedded" in run.output
    assert {p: p.stat().st_mtime_ns for p in kept} == kept

    # 3. The result equals an uninterrupted run's, file for file (the manifest but its print).
    run = whole.unmake("index", "t", "--shard-size", "10")
    assert run.rc == 0, run.output
    assert _files(folder) == _files(whole.root / "data" / "clip")
    a, b = (json.loads((f / "data" / "clip" / "index.json").read_text()) for f in
            (zine.root, whole.root))
    assert {**a, "fingerprint": ""} == {**b, "fingerprint": ""}

    # 4. A third run embeds nothing; a bad option is one clear line.
    run = zine.unmake("index", "t", "--shard-size", "10")
    assert "4 already done" in run.output and "0 shard(s) embedded" in run.output
    run = zine.unmake("index", "t", "--shard-size", "0")
    assert run.rc == 1 and run.stderr.strip() == "unmake: --shard-size must be at least 1, got 0"
    run = zine.unmake("index", "nope")
    assert run.rc == 1 and "unknown dataset 'nope' (known: t)" in run.stderr
    shutil.rmtree(zine.root / "data" / "images")
    run = zine.unmake("index", "t")
    assert run.rc == 1 and "datasets.t.images: folder" in run.stderr
    assert "Traceback" not in run.output


def test_tar_shards_are_read_like_folders(tmp_path: Path) -> None:
    """img2dataset's `--output_format webdataset`: <shard>.tar holding <key>.jpg, .txt, .json."""
    import tarfile

    images = tmp_path / "images"
    (images / "00001").mkdir(parents=True)
    (images / "00001" / f"{key(10001)}.jpg").write_bytes(picture(1))
    with tarfile.open(images / "00000.tar", "w") as tar:
        for i in (0, 1):
            for ext, data in ((".jpg", picture(i + 2)), (".txt", b"a caption")):
                info = tarfile.TarInfo(f"{key(i)}{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    found = index.local_images(images)
    assert found == {key(0): f"00000.tar:{key(0)}.jpg", key(1): f"00000.tar:{key(1)}.jpg",
                     key(10001): f"00001/{key(10001)}.jpg"}
    assert index.read_image(images, found[key(1)]) == picture(3)
    assert index.read_image(images, found[key(10001)]) == picture(1)
