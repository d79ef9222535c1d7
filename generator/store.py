"""The store (.unmake/): content-addressed artifacts and one immutable JSON record per job.

Layout:

    blobs/ab/<sha256>.<ext>    artifact bytes, named by their hash
    records/ab/<key>.json      what a job was given and what it made (points at blobs)
    derived/<name>             caches computed from blobs (web images, contact sheets)
    memo/<name>.json           memos of pure functions (prompt expansions, file fingerprints)
    tmp/                       half-written files; never read, swept at open

Every write goes to tmp/ and is moved into place with os.replace, blobs before the record that
names them, so a build killed at any moment leaves either a whole record with whole blobs, or no
record (and the job simply runs again).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .keys import digest


@dataclass
class Result:
    """What a runner hands back for one job."""

    data: dict[str, Any] = field(default_factory=dict)  # JSON-able findings
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # name -> (bytes, ext)
    env: dict[str, Any] = field(default_factory=dict)  # library versions, device, dtype
    seconds: float = 0.0


class Store:
    """A folder of records and blobs. Safe to share between builds run one after another."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._cache: dict[str, dict[str, Any] | None] = {}
        self._swept = False
        self._memos: dict[str, Memo] = {}
        self._made: set[Path] = set()  # folders known to exist (a mkdir per write costs ~10 %)

    # -- paths -------------------------------------------------------------------------------
    def record_path(self, key: str) -> Path:
        return self.root / "records" / key[:2] / f"{key}.json"

    def blob_path(self, sha: str, ext: str) -> Path:
        return self.root / "blobs" / sha[:2] / f"{sha}.{ext}"

    def derived_path(self, name: str) -> Path:
        return self.root / "derived" / name[:2] / name

    # -- reading -----------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def get(self, key: str) -> dict[str, Any] | None:
        """The record of a job, or None. Records are immutable, so reads are memoised."""
        if key not in self._cache:
            try:
                self._cache[key] = json.loads(self.record_path(key).read_text("utf-8"))
            except FileNotFoundError:
                self._cache[key] = None
        return self._cache[key]

    def file(self, record: dict[str, Any], name: str) -> Path:
        art = record["files"][name]
        return self.blob_path(art["sha256"], art["ext"])

    def records(self) -> Iterator[dict[str, Any]]:
        for path in sorted((self.root / "records").glob("*/*.json")):
            yield json.loads(path.read_text("utf-8"))

    # -- writing -----------------------------------------------------------------------------
    def _folder(self, path: Path) -> Path:
        if path not in self._made:
            path.mkdir(parents=True, exist_ok=True)
            self._made.add(path)
        return path

    def _tmp(self) -> Path:
        tmp = self._folder(self.root / "tmp")
        if not self._swept:  # leftovers of a killed build are garbage by construction
            self._swept = True
            for stale in tmp.iterdir():
                if stale.is_file() and time.time() - stale.stat().st_mtime > 5:
                    stale.unlink(missing_ok=True)
        return tmp

    def write_atomic(self, path: Path, data: bytes) -> None:
        """Write bytes so that `path` is either absent or whole, even if the process dies."""
        try:
            self._write(path, data)
        except FileNotFoundError:  # a folder removed behind our back: make it again, once
            self._made.clear()
            self._write(path, data)

    def _write(self, path: Path, data: bytes) -> None:
        self._folder(path.parent)
        tmp = self._tmp() / f"{path.name}.{os.getpid()}.{time.monotonic_ns()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def put_blob(self, data: bytes, ext: str) -> dict[str, Any]:
        sha = digest(data)
        path = self.blob_path(sha, ext)
        if not path.exists():
            self.write_atomic(path, data)
        return {"sha256": sha, "ext": ext, "bytes": len(data)}

    def put(self, key: str, job: dict[str, Any], result: Result) -> dict[str, Any]:
        """Store a finished job: its blobs first, then the record that names them."""
        files = {name: self.put_blob(data, ext) for name, (data, ext) in result.files.items()}
        record = {
            "key": key,
            **job,
            "data": result.data,
            "files": files,
            "env": result.env,
            "seconds": round(result.seconds, 4),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        text = json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False)
        self.write_atomic(self.record_path(key), text.encode("utf-8"))
        self._cache[key] = record
        return record

    def put_derived(self, name: str, data: bytes) -> Path:
        path = self.derived_path(name)
        self.write_atomic(path, data)
        return path

    def memo(self, name: str, version: str = "") -> Memo:
        """The memo `name` of this store (one object per store and name), loaded on first use."""
        if name not in self._memos:
            self._memos[name] = Memo(self, name, version)
        return self._memos[name]

    def save_memos(self) -> None:
        """Write every memo that changed since it was loaded or last saved."""
        for memo in self._memos.values():
            memo.save()

    # -- checking ----------------------------------------------------------------------------
    def verify(self) -> list[str]:
        """Every problem found: records that do not parse, blobs missing or not matching."""
        problems = []
        for path in sorted((self.root / "records").glob("*/*.json")):
            try:
                record = json.loads(path.read_text("utf-8"))
            except (OSError, ValueError) as exc:
                problems.append(f"{path}: unreadable record ({exc})")
                continue
            for name, art in record.get("files", {}).items():
                blob = self.blob_path(art["sha256"], art["ext"])
                if not blob.exists():
                    problems.append(f"{path}: {name} blob missing ({blob})")
                elif digest(blob.read_bytes()) != art["sha256"]:
                    problems.append(f"{path}: {name} blob does not match its hash ({blob})")
        return problems


class StoreView:
    """A read-only view of a store, for runners that read upstream results (never write)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, key: str) -> dict[str, Any] | None:
        return self._store.get(key)

    def file(self, key: str, name: str) -> Path:
        """The blob `name` of the record `key` (KeyError when the record or file is absent)."""
        record = self._store.get(key)
        if record is None:
            raise KeyError(f"no stored result {key[:12]}")
        return self._store.file(record, name)

    def read_bytes(self, key: str, name: str) -> bytes:
        return self.file(key, name).read_bytes()


def link_or_copy(src: Path, dst: Path) -> None:
    """Put a store file into the site: a hard link where possible (fast), else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


class Memo(dict[str, Any]):
    """A dict kept in the store between builds (memo/<name>.json), for pure functions of files
    or an author's text: prompt expansions, file fingerprints, dataset schemas.

    A memo is a cache, never a result: a missing, unreadable or other-version file is an empty
    memo, and concurrent builds may overwrite each other's additions (the loser recomputes).
    Writes go through the store's one atomic write, so no reader sees half a file.
    """

    def __init__(self, store: Store, name: str, version: str = "") -> None:
        super().__init__()
        self.path = store.root / "memo" / f"{name}.json"
        self.version = version
        self._store = store
        self._dirty = False
        try:
            saved = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            saved = {}
        if isinstance(saved, dict) and saved.get("version") == version:
            entries = saved.get("entries")
            self.update(entries if isinstance(entries, dict) else {})

    def remember(self, key: str, value: Any) -> None:
        """Set `key`, marking the memo for saving only when the value changed."""
        if self.get(key) != value:
            self[key] = value
            self._dirty = True

    def save(self) -> None:
        if self._dirty:
            data = {"version": self.version, "entries": dict(self)}
            self._store.write_atomic(self.path, json.dumps(data, ensure_ascii=False,
                                                           sort_keys=True).encode("utf-8"))
            self._dirty = False
