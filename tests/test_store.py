"""The store: atomic writes, immutable records, content-addressed blobs, verification."""

from __future__ import annotations

import json
import os
from pathlib import Path

from generator.keys import digest
from generator.store import Result, Store


def put_one(store: Store, key: str = "k" * 64, data: bytes = b"png-bytes") -> dict:
    return store.put(key, {"type": "t", "inputs": {"a": 1}},
                     Result(data={"n": 1}, files={"image": (data, "png")}, env={"torch": "x"},
                            seconds=0.123456))


def test_put_then_get_round_trips(tmp_path: Path) -> None:
    store = Store(tmp_path)
    record = put_one(store)
    again = Store(tmp_path).get("k" * 64)
    assert again == record
    assert again["files"]["image"]["sha256"] == digest(b"png-bytes")
    assert Store(tmp_path).file(again, "image").read_bytes() == b"png-bytes"
    assert again["seconds"] == 0.1235 and again["inputs"] == {"a": 1}


def test_missing_key_is_none(tmp_path: Path) -> None:
    assert Store(tmp_path).get("0" * 64) is None
    assert not Store(tmp_path).has("0" * 64)


def test_identical_blobs_are_stored_once(tmp_path: Path) -> None:
    store = Store(tmp_path)
    put_one(store, "a" * 64)
    put_one(store, "b" * 64)
    assert len(list((tmp_path / "blobs").rglob("*.png"))) == 1


def test_writes_leave_nothing_in_tmp(tmp_path: Path) -> None:
    store = Store(tmp_path)
    put_one(store)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_stale_temp_files_of_a_killed_build_are_swept_and_never_read(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir(parents=True)
    stale = tmp_path / "tmp" / "half.json.123"
    stale.write_text("{ half")
    os.utime(stale, (1, 1))
    store = Store(tmp_path)
    put_one(store)
    assert not stale.exists()
    assert store.verify() == []


def test_verify_finds_corrupt_and_missing_blobs(tmp_path: Path) -> None:
    store = Store(tmp_path)
    record = put_one(store)
    blob = store.file(record, "image")
    blob.write_bytes(b"tampered")
    put_one(store, "c" * 64, b"other")
    store.file(Store(tmp_path).get("c" * 64), "image").unlink()
    (tmp_path / "records" / "dd").mkdir()
    (tmp_path / "records" / "dd" / ("d" * 64 + ".json")).write_text("{not json")
    problems = Store(tmp_path).verify()
    assert len(problems) == 3
    assert any("does not match its hash" in p for p in problems)
    assert any("blob missing" in p for p in problems)
    assert any("unreadable record" in p for p in problems)


def test_records_are_plain_json_on_disk(tmp_path: Path) -> None:
    store = Store(tmp_path)
    put_one(store)
    on_disk = json.loads(store.record_path("k" * 64).read_text())
    assert on_disk["key"] == "k" * 64
    assert set(on_disk) >= {"type", "inputs", "data", "files", "env", "seconds", "created"}
