"""The store: atomic writes, immutable records, content-addressed blobs, verification, strict
JSON, read-only blobs, and the locks of builds that share a store at the same time."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator.execute import execute
from generator.keys import digest, job_key
from generator.store import NotStrictJSON, Result, Store, link_or_copy
from generator.types import Job, Plan

KEY = job_key("t", {"a": 1})


def put_one(store: Store, key: str = KEY, data: bytes = b"png-bytes",
            inputs: dict | None = None) -> dict:
    return store.put(key, {"type": "t", "inputs": inputs or {"a": 1}},
                     Result(data={"n": 1}, files={"image": (data, "png")}, env={"torch": "x"},
                            seconds=0.123456))


def test_put_then_get_round_trips(tmp_path: Path) -> None:
    store = Store(tmp_path)
    record = put_one(store)
    again = Store(tmp_path).get(KEY)
    assert again == record
    assert again["files"]["image"]["sha256"] == digest(b"png-bytes")
    assert Store(tmp_path).file(again, "image").read_bytes() == b"png-bytes"
    assert again["seconds"] == 0.1235 and again["inputs"] == {"a": 1}


def test_missing_key_is_none(tmp_path: Path) -> None:
    assert Store(tmp_path).get("0" * 64) is None
    assert not Store(tmp_path).has("0" * 64)


def test_identical_blobs_are_stored_once(tmp_path: Path) -> None:
    store = Store(tmp_path)
    put_one(store, job_key("t", {"a": 2}), inputs={"a": 2})
    put_one(store, job_key("t", {"a": 3}), inputs={"a": 3})
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
    blob.chmod(0o644)  # blobs are read-only: this is someone who insists
    blob.write_bytes(b"tampered")
    other = job_key("t", {"a": 2})
    put_one(store, other, b"other", inputs={"a": 2})
    store.file(Store(tmp_path).get(other), "image").unlink()
    (tmp_path / "records" / "dd").mkdir()
    (tmp_path / "records" / "dd" / ("d" * 64 + ".json")).write_text("{not json")
    changed = job_key("t", {"a": 3})
    put_one(store, changed, b"third", inputs={"a": 3})
    path = store.record_path(changed)
    path.write_text(path.read_text("utf-8").replace('"a": 3', '"a": 4'), "utf-8")
    problems = Store(tmp_path).verify()
    assert len(problems) == 4
    assert any("does not match its hash" in p for p in problems)
    assert any("blob missing" in p for p in problems)
    assert any("unreadable record" in p for p in problems)
    assert f"{path}: its type and inputs do not hash to its key (the record was changed after " \
        "it was written)" in problems


def test_records_are_plain_json_on_disk(tmp_path: Path) -> None:
    store = Store(tmp_path)
    put_one(store)
    on_disk = json.loads(store.record_path(KEY).read_text())
    assert on_disk["key"] == KEY
    assert set(on_disk) >= {"type", "inputs", "data", "files", "env", "seconds", "created"}


# -- strict JSON -------------------------------------------------------------------------------
def strict(text: str) -> object:
    """Parse JSON as strict readers do: NaN and infinity are errors."""
    def refuse(name: str) -> None:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_a_result_with_nan_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    store = Store(tmp_path)
    result = Result(data={"scores": [0.5, float("nan")]}, files={"image": (b"png", "png")})
    with pytest.raises(NotStrictJSON, match=r"nan at data\.scores\[1\]"):
        store.put(KEY, {"type": "t", "inputs": {"a": 1}}, result)
    assert store.get(KEY) is None
    assert not (tmp_path / "records").exists()
    assert not (tmp_path / "blobs").exists()  # no blob without its record either
    with pytest.raises(NotStrictJSON, match=r"inf at env\.x"):
        store.put(KEY, {"type": "t", "inputs": {"a": 1}}, Result(env={"x": float("inf")}))


def nan_runner(jobs: list[Job], options: dict) -> Iterator[tuple[Job, Result]]:
    """A runner whose second job finds a NaN (as a measurement of a black image might)."""
    for job in jobs:
        yield job, Result(data={"value": float(job.inputs["value"])},
                          files={"image": (job.inputs["value"].encode(), "txt")})


def test_a_result_with_nan_fails_its_job_alone(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from generator import kinds

    monkeypatch.setitem(kinds.RUNNERS, "test.nan", f"{__name__}:nan_runner")
    jobs = [Job("test.nan", {"value": v}, origins=[f"docs/index.md:{i}"])
            for i, v in enumerate(["1.5", "nan", "2.5"])]
    store = Store(tmp_path)
    failures = execute(Plan({}, {j.key: j for j in jobs}, set(), list(jobs)), store, {})
    assert list(failures) == [jobs[1].key]
    assert failures[jobs[1].key].startswith("NotStrictJSON: not strict JSON: nan at data.value")
    assert [Store(tmp_path).get(j.key) is not None for j in jobs] == [True, False, True]
    for path in (tmp_path / "records").glob("*/*.json"):
        strict(path.read_text("utf-8"))
    assert Store(tmp_path).verify() == []


def test_verify_reports_a_record_that_is_not_strict_json(tmp_path: Path) -> None:
    store = Store(tmp_path)
    record = put_one(store)
    path = store.record_path(record["key"])
    path.write_text(path.read_text("utf-8").replace('"n": 1', '"n": NaN'), "utf-8")
    (problem,) = Store(tmp_path).verify()
    assert problem == f"{path}: unreadable record (not strict JSON: NaN)"


def test_memos_are_strict_json_and_leave_out_what_is_not(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = Store(tmp_path)
    memo = store.memo("schemas", "v1")
    memo.remember("good", {"rows": 3})
    memo.remember("bad", {"mean": float("nan")})
    with caplog.at_level(logging.WARNING, logger="mkdocs.plugins.unmake"):
        store.save_memos()
    saved = strict((tmp_path / "memo" / "schemas.json").read_text("utf-8"))
    assert saved == {"version": "v1", "entries": {"good": {"rows": 3}}}
    assert "memo schemas: entry 'bad' left out: not strict JSON: nan at mean" in caplog.text
    assert Store(tmp_path).memo("schemas", "v1") == {"good": {"rows": 3}}


# -- blobs are read-only -----------------------------------------------------------------------
# write in place (`1<>` opens for reading and writing, without truncating), or say 'refused'
EDIT = 'printf EDITED 1<>"$1" 2>/dev/null || echo refused'


def edit_in_place(path: Path, top: Path) -> str:
    """Write into `path` in place as its owner would, without privileges (root ignores file
    modes, so as root the file is handed to `nobody`, who then tries; every folder from `top`
    down is opened to others, so that nobody reaches it); 'refused' or ''."""
    if os.geteuid() != 0:
        try:
            with open(path, "r+b") as fh:
                fh.write(b"EDITED")
        except PermissionError:
            return "refused"
        return ""
    nobody = 65534
    for folder in [top, *(p for p in path.parents if p.is_relative_to(top))]:
        os.chmod(folder, os.stat(folder).st_mode | 0o005)
    os.chown(path, nobody, nobody)
    done = subprocess.run(["/bin/sh", "-c", EDIT, "sh", str(path)], user=nobody, group=nobody,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_editing_a_published_image_cannot_change_the_store() -> None:
    # not under pytest's tmp_path: as root the test hands the file to `nobody`, who must be able
    # to reach it, and pytest's folders are private to their owner
    root = Path(tempfile.mkdtemp(prefix="unmake-readonly-"))
    try:
        store = Store(root / ".unmake")
        record = put_one(store, data=b"the stored image")
        blob = store.file(record, "image")
        assert stat.S_IMODE(blob.stat().st_mode) == 0o444
        derived = store.put_derived("web.webp", b"web copy")
        assert stat.S_IMODE(derived.stat().st_mode) == 0o444
        site_copy = root / "site" / "assets" / "img.png"
        link_or_copy(blob, site_copy)  # still a hard link where the store and site share a disk
        assert site_copy.read_bytes() == b"the stored image"
        assert os.path.samefile(site_copy, blob)
        assert edit_in_place(site_copy, root) == "refused"
        assert blob.read_bytes() == b"the stored image"
        assert Store(root / ".unmake").verify() == []
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- locks -------------------------------------------------------------------------------------
HOLD = ("import sys, time\nfrom generator.store import Store\n"
        "claim = Store(sys.argv[1]).claim(sys.argv[2], 'docs/index.md:3')\n"
        "print('held' if claim else 'refused', flush=True)\ntime.sleep(120)\n")


def test_a_job_is_claimed_once_and_a_dead_holder_lets_go(tmp_path: Path) -> None:
    store = Store(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), KEY],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert store.claim(KEY) is None  # another live process holds it
        (held,) = store.held()
        assert held["key"] == KEY and held["pid"] == holder.pid
        assert held["what"] == "docs/index.md:3"
        os.kill(holder.pid, signal.SIGKILL)  # its lock stays behind, stale
        holder.wait()
        assert store.lock_path(KEY).is_file()
        assert store.held() == []
        claim = store.claim(KEY)
        assert claim is not None
        assert Store(tmp_path).claim(KEY) is None  # now ours: a second claim waits its turn
        claim.release()
        assert not store.lock_path(KEY).exists()
        again = Store(tmp_path).claim(KEY)
        assert again is not None
        again.release()
    finally:
        holder.kill()
        holder.wait()


def write_lock(store: Store, key: str, **note: object) -> None:
    store.lock_path(key).parent.mkdir(parents=True, exist_ok=True)
    store.lock_path(key).write_text(json.dumps({"since": 0, "what": "", **note}))


def test_whose_lock_is_stale(tmp_path: Path) -> None:
    store = Store(tmp_path)
    me = socket.gethostname()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead = int(finished.stdout)
    live = os.getppid()  # a process that runs, but did not write these locks
    start = int(Path(f"/proc/{live}/stat").read_text().rpartition(")")[2].split()[19])
    cases = {
        "a": ({"pid": dead, "host": me}, True),  # its process has ended
        "b": ({"pid": live, "host": me, "start": start + 1}, True),  # its pid was reused
        "c": ({"pid": live, "host": me, "start": start}, False),  # it runs
        "d": ({"pid": dead, "host": "another-machine"}, False),  # nothing here can tell
        "e": ({"pid": live, "host": me, "boot": "an-earlier-boot", "start": start}, True),
    }
    for name, (note, _) in cases.items():
        write_lock(store, name * 64, **note)
    claimed = {name: store.claim(name * 64) is not None for name in cases}
    assert claimed == {name: stale for name, (_, stale) in cases.items()}
