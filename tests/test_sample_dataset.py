"""Tests for scripts/make_sample_dataset.py: determinism, schema, skews, layout and the manifest."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_sample_dataset.py"
COLUMNS = [
    "key", "URL", "TEXT", "WIDTH", "HEIGHT",
    "similarity", "punsafe", "pwatermark", "aesthetic", "LANGUAGE",
]  # fmt: skip


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unmake_make_sample_dataset", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def msd() -> ModuleType:
    return _load()


@pytest.fixture(scope="module")
def small(msd: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return msd.make_sample_dataset(tmp_path_factory.mktemp("small") / "sample", rows=400, images=20)


@pytest.fixture(scope="module")
def full(msd: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default size (the skews are statistical), with few pictures to keep it quick."""
    return msd.make_sample_dataset(tmp_path_factory.mktemp("full") / "sample", images=5)


@pytest.fixture(scope="module")
def con(full: Path) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{full}/metadata.parquet')")
    return connection


def _one(con: duckdb.DuckDBPyConnection, sql: str, *params: object) -> float:
    row = con.execute(sql, list(params)).fetchone()
    assert row is not None
    return row[0]


def _share(con: duckdb.DuckDBPyConnection, what: str, among: str) -> float:
    """Share of rows matching regex `among` that also match regex `what` (case-insensitive)."""
    return _one(
        con,
        "SELECT avg(CASE WHEN regexp_matches(TEXT, ?, 'i') THEN 1.0 ELSE 0.0 END) FROM t "
        "WHERE regexp_matches(TEXT, ?, 'i')",
        what,
        among,
    )


# --------------------------------------------------------------------------------------------
# Determinism and the manifest


def test_same_seed_same_bytes(msd: ModuleType, tmp_path: Path) -> None:
    a = msd.make_sample_dataset(tmp_path / "a", rows=400, images=20)
    b = msd.make_sample_dataset(tmp_path / "b", rows=400, images=20)
    assert (a / "metadata.parquet").read_bytes() == (b / "metadata.parquet").read_bytes()
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_other_seed_other_rows(msd: ModuleType, small: Path, tmp_path: Path) -> None:
    other = msd.make_sample_dataset(tmp_path / "other", rows=400, images=20, seed=1)
    texts = pq.read_table(small / "metadata.parquet").column("TEXT").to_pylist()
    other_texts = pq.read_table(other / "metadata.parquet").column("TEXT").to_pylist()
    assert texts != other_texts


def test_complete_dataset_is_left_alone(msd: ModuleType, tmp_path: Path) -> None:
    out = msd.make_sample_dataset(tmp_path / "s", rows=50, images=5)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert msd.build(out, rows=50, images=5) == (out, False)
    assert msd.make_sample_dataset(out, rows=50, images=5) == out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    manifest = json.loads((out / "MANIFEST.json").read_text(encoding="utf-8"))
    assert manifest["params"] == {"rows": 50, "images": 5, "seed": 0}


def test_changed_params_or_damage_rebuild(msd: ModuleType, tmp_path: Path) -> None:
    out = msd.make_sample_dataset(tmp_path / "s", rows=50, images=5)
    assert msd.build(out, rows=60, images=5) == (out, True)
    assert pq.read_metadata(out / "metadata.parquet").num_rows == 60
    (out / "images" / "00000" / "000000001.jpg").unlink()  # a half-deleted folder is redone
    assert msd.build(out, rows=60, images=5) == (out, True)
    assert (out / "images" / "00000" / "000000001.jpg").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temp or old folders left


def test_interrupted_run_leaves_nothing(
    msd: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(msd, "_embeddings", boom)
    with pytest.raises(KeyboardInterrupt):
        msd.make_sample_dataset(tmp_path / "s", rows=50, images=5)
    assert list(tmp_path.iterdir()) == []


def test_refuses_foreign_folder_and_bad_sizes(msd: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(FileExistsError, match="not a sample dataset"):
        msd.make_sample_dataset(tmp_path / "mine", rows=50, images=5)
    assert (tmp_path / "mine" / "notes.txt").read_text(encoding="utf-8") == "keep me"
    with pytest.raises(ValueError, match="rows must be"):
        msd.make_sample_dataset(tmp_path / "x", rows=3)
    with pytest.raises(ValueError, match="images must be"):
        msd.make_sample_dataset(tmp_path / "x", rows=50, images=51)


def test_cli_prints_one_line(tmp_path: Path) -> None:
    command = [sys.executable, str(SCRIPT), "--out", str(tmp_path / "s"), "--rows", "40"]
    command += ["--images", "3", "--seed", "2"]
    first = subprocess.run(command, capture_output=True, text=True, check=True)
    second = subprocess.run(command, capture_output=True, text=True, check=True)
    assert first.stdout.count("\n") == 1
    assert first.stdout.startswith("wrote ")
    assert second.stdout.count("\n") == 1
    assert "nothing to do" in second.stdout
    assert first.stderr == second.stderr == ""


def test_default_out_is_in_the_repository(msd: ModuleType) -> None:
    assert SCRIPT.parents[1] / "data" / "sample" == msd.DEFAULT_OUT


# --------------------------------------------------------------------------------------------
# Schema and layout


def test_schema_and_values(small: Path) -> None:
    table = pq.read_table(small / "metadata.parquet")
    assert table.column_names == COLUMNS
    types = {f.name: str(f.type) for f in table.schema}
    assert types == {
        "key": "string", "URL": "string", "TEXT": "string", "WIDTH": "int64", "HEIGHT": "int64",
        "similarity": "double", "punsafe": "double", "pwatermark": "double",
        "aesthetic": "double", "LANGUAGE": "string",
    }  # fmt: skip
    assert table.num_rows == 400
    columns = table.to_pydict()
    assert columns["key"] == [f"{i:09d}" for i in range(400)]
    assert all(0.25 <= v <= 0.45 for v in columns["similarity"])
    assert all(0.0 <= v <= 1.0 for v in columns["punsafe"] + columns["pwatermark"])
    assert all(3.0 <= v <= 8.0 for v in columns["aesthetic"])
    assert all(w > 0 and h > 0 for w, h in zip(columns["WIDTH"], columns["HEIGHT"], strict=True))
    assert set(columns["LANGUAGE"]) <= {"en", "de", "fr", "es", "ja", "nl", "it", "pt", ""}
    assert {"en", ""} <= set(columns["LANGUAGE"])
    assert all(t for t in columns["TEXT"])


def test_urls_look_real(con: duckdb.DuckDBPyConnection) -> None:
    urls = [r[0] for r in con.execute("SELECT URL FROM t").fetchall()]
    assert all(u.startswith("https://") for u in urls)
    assert all(u.endswith((".jpg", ".png")) for u in urls)
    hosts = {re.match(r"https://([^/]+)/", u).group(1) for u in urls}  # type: ignore[union-attr]
    assert len(hosts) >= 25
    assert {"i.pinimg.com", "upload.wikimedia.org", "static01.nyt.com", "www.bbc.co.uk"} <= hosts
    assert any(h.endswith(".bp.blogspot.com") for h in hosts)
    assert any(h.endswith(".com.br") for h in hosts)
    assert any(u.endswith(".png") for u in urls)


def test_images_in_img2dataset_layout(small: Path) -> None:
    table = pq.read_table(small / "metadata.parquet").to_pydict()
    shard = small / "images" / "00000"
    assert sorted(p.name for p in shard.glob("*.jpg")) == [f"{i:09d}.jpg" for i in range(20)]
    for i in range(20):
        key = table["key"][i]
        with Image.open(shard / f"{key}.jpg") as image:
            image.load()
            assert image.format == "JPEG"
            assert image.size == (64, 64)
            assert image.mode == "RGB"
        assert (shard / f"{key}.txt").read_text(encoding="utf-8") == table["TEXT"][i]
        record = json.loads((shard / f"{key}.json").read_text(encoding="utf-8"))
        assert record["key"] == key
        assert record["url"] == table["URL"][i]
        assert record["original_width"] == table["WIDTH"][i]


def test_embeddings_cluster_by_topic(full: Path, con: duckdb.DuckDBPyConnection) -> None:
    emb = np.load(full / "embeddings" / "img_emb_0.npy")
    assert emb.dtype == np.float32
    assert emb.shape == (4000, 64)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)

    def rows(pattern: str) -> np.ndarray:
        sql = "SELECT CAST(key AS INTEGER) FROM t WHERE regexp_matches(TEXT, ?, 'i')"
        return np.array([r[0] for r in con.execute(sql, [pattern]).fetchall()])

    ceo, recipe = emb[rows(r"\bCEO\b")], emb[rows("recipe")]
    assert len(ceo) > 20
    assert len(recipe) > 20
    within = float((ceo @ ceo.T).mean())
    across = float((ceo @ recipe.T).mean())
    assert within > across + 0.3


def test_readme_says_made_up(full: Path) -> None:
    readme = (full / "README.md").read_text(encoding="utf-8")
    assert "made-up data" in readme
    assert "Made, not CLIP" in readme
    assert "metadata:" in readme
    assert "img2dataset" in readme


# --------------------------------------------------------------------------------------------
# The deliberate skews, measured the way an essay would


MALE = r"\b(man|men|male|he|his|him|suit)\b"
FEMALE = r"\b(woman|women|female|she|her)\b"


@pytest.mark.parametrize("occupation", ["CEO", "businessman", "engineer"])
def test_men_in_suits(con: duckdb.DuckDBPyConnection, occupation: str) -> None:
    among = rf"\b{occupation}\b"
    assert _share(con, MALE, among) >= 0.6
    assert _share(con, FEMALE, among) <= 0.15


@pytest.mark.parametrize("occupation", ["nurse", "housekeeper"])
def test_women_in_care(con: duckdb.DuckDBPyConnection, occupation: str) -> None:
    among = rf"\b{occupation}\b"
    assert _share(con, FEMALE, among) >= 0.6
    assert _share(con, MALE, among) <= 0.05


STOCK = r"shutterstock|gettyimages|istockphoto|alamy|dreamstime|123rf"


def test_stock_sites_dominate_portraits_and_business(con: duckdb.DuckDBPyConnection) -> None:
    def stock_share(where: str) -> float:
        sql = f"SELECT avg(CASE WHEN regexp_matches(URL, ?) THEN 1.0 ELSE 0.0 END) FROM t {where}"
        return _one(con, sql, STOCK)

    portrait_business = stock_share("WHERE regexp_matches(TEXT, 'portrait|business', 'i')")
    assert portrait_business >= 0.5
    assert portrait_business > 2 * stock_share("")
    stock_wm = _one(con, "SELECT avg(pwatermark) FROM t WHERE regexp_matches(URL, ?)", STOCK)
    other_wm = _one(con, "SELECT avg(pwatermark) FROM t WHERE NOT regexp_matches(URL, ?)", STOCK)
    assert stock_wm > 0.7
    assert other_wm < 0.15


def test_aesthetics_favour_pretty_and_pinterest(con: duckdb.DuckDBPyConnection) -> None:
    pretty = "regexp_matches(TEXT, 'beautiful woman|wallpaper|landscape', 'i')"
    high = _one(con, f"SELECT avg(aesthetic) FROM t WHERE {pretty}")
    low = _one(con, f"SELECT avg(aesthetic) FROM t WHERE NOT {pretty}")
    assert high > low + 0.7
    pin = _one(con, "SELECT avg(aesthetic) FROM t WHERE URL LIKE 'https://i.pinimg.com/%'")
    rest = _one(con, "SELECT avg(aesthetic) FROM t WHERE URL NOT LIKE 'https://i.pinimg.com/%'")
    assert pin > rest + 0.5


def test_unsafe_fraction(con: duckdb.DuckDBPyConnection) -> None:
    unsafe = _one(con, "SELECT avg(CASE WHEN punsafe > 0.5 THEN 1.0 ELSE 0.0 END) FROM t")
    assert 0.01 <= unsafe <= 0.10


def test_non_english_is_mostly_landscape_and_food(
    msd: ModuleType, con: duckdb.DuckDBPyConnection
) -> None:
    rows = con.execute("SELECT LANGUAGE, TEXT FROM t WHERE LANGUAGE NOT IN ('en', '')").fetchall()
    assert 0.1 <= len(rows) / 4000 <= 0.35
    scenic = [
        text
        for language, text in rows
        if text.startswith(msd.FOREIGN[language]["landscape"] + msd.FOREIGN[language]["food"])
    ]
    assert len(scenic) / len(rows) >= 0.75
    assert not any(re.search(r"\b(CEO|engineer|nurse|doctor)\b", text) for _, text in rows)


def test_half_the_images_are_small(con: duckdb.DuckDBPyConnection) -> None:
    small = _one(
        con, "SELECT avg(CASE WHEN least(WIDTH, HEIGHT) < 512 THEN 1.0 ELSE 0.0 END) FROM t"
    )
    assert 0.4 <= small <= 0.6


def test_sd_filter_removes_an_uneven_share(con: duckdb.DuckDBPyConnection) -> None:
    kept = {}
    for occupation in ["CEO", "businessman", "engineer", "doctor", "nurse", "housekeeper"]:
        kept[occupation] = _one(
            con,
            "SELECT avg(CASE WHEN WIDTH >= 512 AND HEIGHT >= 512 AND aesthetic > 5.0 "
            "AND pwatermark < 0.5 THEN 1.0 ELSE 0.0 END) FROM t "
            "WHERE regexp_matches(TEXT, ?, 'i')",
            rf"\b{occupation}\b",
        )
    assert all(share < 0.5 for share in kept.values())  # the filter removes most of each
    assert max(kept.values()) - min(kept.values()) >= 0.1  # and not evenly


def test_hostile_captions(con: duckdb.DuckDBPyConnection, full: Path) -> None:
    rows = con.execute(
        "SELECT key, URL, TEXT, punsafe FROM t WHERE URL LIKE '%evil.example/%' ORDER BY key"
    ).fetchall()
    assert len(rows) == 3
    texts = " ".join(text for _, _, text, _ in rows)
    assert "<script>alert(1)</script>" in texts
    assert '"><img src=x onerror=alert(1)>' in texts
    assert "{{ config }}" in texts
    assert "{% raw %}" in texts
    assert all(punsafe < 0.5 for *_, punsafe in rows)
    portraits = {
        r[0] for r in con.execute("SELECT key FROM t WHERE TEXT ILIKE '%portrait%'").fetchall()
    }
    assert {key for key, *_ in rows} <= portraits
    first = rows[0][0]
    caption = (full / "images" / "00000" / f"{first}.txt").read_text(encoding="utf-8")
    assert "<script>" in caption  # one of them has a local picture too
