"""The store (.unmake/): content-addressed artifacts and one immutable JSON record per job.

Layout:

    blobs/ab/<sha256>.<ext>    artifact bytes, named by their hash; read-only on disk
    records/ab/<key>.json      what a job was given and what it made (points at blobs)
    derived/ab/<name>          caches computed from blobs (web images, contact sheets); read-only
    memo/<name>.json           memos of pure functions (prompt expansions, file fingerprints)
    locks/<key>.lock           a job some build is running now (Store.claim); <name>.hold: a
                               short step builds must not interleave (Store.hold)
    tmp/                       half-written files; never read, swept at open

Every write goes to tmp/ under a name no other process uses and is moved into place with
os.replace, blobs before the record that names them, so a build killed at any moment leaves
either a whole record with whole blobs, or no record (and the job simply runs again). Records and
memos are strict JSON (no NaN or infinity): a result that is not fails before anything is written.

Blobs and derived files are published into sites as hard links, so they are made read-only:
editing a file of a built site must not alter the store (an editor that replaces the file leaves
the store alone anyway; one that writes in place is refused).

Several builds may share a store at the same time: a build claims a job before it runs it
(`Store.claim`), so a job is run by one build while the others wait for its record.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .keys import digest, job_key
from .log import log

READ_ONLY = 0o444


@dataclass
class Result:
    """What a runner hands back for one job."""

    data: dict[str, Any] = field(default_factory=dict)  # JSON-able findings
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # name -> (bytes, ext)
    env: dict[str, Any] = field(default_factory=dict)  # library versions, device, dtype
    seconds: float = 0.0


class NotStrictJSON(ValueError):
    """A value that strict JSON cannot hold (NaN or ±infinity), with where it is."""


def strict_json(value: Any, **options: Any) -> str:
    """`json.dumps` that refuses NaN and infinity (which other JSON readers reject), naming the
    first place that holds one (`data.scores[2]`)."""
    try:
        return json.dumps(value, allow_nan=False, **options)
    except ValueError:
        where = _non_finite(value, "")
        if where is None:
            raise
        raise NotStrictJSON(f"not strict JSON: {where[1]} at {where[0] or 'the top'} "
                            "(NaN and infinity cannot be stored)") from None


def _non_finite(value: Any, path: str) -> tuple[str, float] | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    if isinstance(value, dict):
        items: Any = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for sub, item in items:
        if (found := _non_finite(item, sub)) is not None:
            return found
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not strict JSON: {name}")


def _alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


@dataclass
class Unused:
    """A file of the store that no kept record needs (what `unmake gc` lists and removes)."""

    path: Path
    size: int
    record: dict[str, Any] | None = None  # for a record: its content, to say what it was


class Store:
    """A folder of records and blobs. Safe to share between builds, one after another or at
    the same time."""

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

    def lock_path(self, key: str) -> Path:
        return self.root / "locks" / f"{key}.lock"

    # -- reading -----------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def get(self, key: str, fresh: bool = False) -> dict[str, Any] | None:
        """The record of a job, or None. Records are immutable, so reads are memoised; `fresh`
        reads the disk again (another build may have written the record since)."""
        if fresh or key not in self._cache:
            try:
                self._cache[key] = json.loads(self.record_path(key).read_text("utf-8"))
            except FileNotFoundError:
                self._cache[key] = None
        return self._cache[key]

    def record_stamp(self, key: str) -> int | None:
        """The record's modification time (ns), or None: a record written anew gets a new one."""
        try:
            return self.record_path(key).stat().st_mtime_ns
        except FileNotFoundError:
            return None

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
                # a file of a build running now (its pid is in the name) is not a leftover
                _, _, pid = stale.name.rpartition(".")[0].rpartition(".")
                if pid.isdigit() and _alive(int(pid)):
                    continue
                try:
                    if stale.is_file() and time.time() - stale.stat().st_mtime > 5:
                        stale.unlink(missing_ok=True)
                except FileNotFoundError:  # another build swept it first
                    pass
        return tmp

    def write_atomic(self, path: Path, data: bytes, read_only: bool = False) -> None:
        """Write bytes so that `path` is either absent or whole, even if the process dies, and
        even if another process writes the same path at the same time (the last one wins)."""
        try:
            self._write(path, data, read_only)
        except FileNotFoundError:  # a folder removed behind our back: make it again, once
            self._made.clear()
            self._write(path, data, read_only)

    def _write(self, path: Path, data: bytes, read_only: bool) -> None:
        self._folder(path.parent)
        tmp = self._tmp() / f"{path.name}.{os.getpid()}.{time.monotonic_ns()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            if read_only:
                os.fchmod(fh.fileno(), READ_ONLY)
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def put_blob(self, data: bytes, ext: str) -> dict[str, Any]:
        art = _artifact(data, ext)
        self._put_blob(data, art)
        return art

    def _put_blob(self, data: bytes, art: dict[str, Any]) -> None:
        path = self.blob_path(art["sha256"], art["ext"])
        if not path.exists():
            self.write_atomic(path, data, read_only=True)

    def put(self, key: str, job: dict[str, Any], result: Result) -> dict[str, Any]:
        """Store a finished job: its blobs first, then the record that names them.

        Raises NotStrictJSON, before writing anything, when the record would not be strict
        JSON (a NaN in the result): that is a failure of the job, not a record to keep."""
        files = {name: _artifact(data, ext) for name, (data, ext) in result.files.items()}
        record = {
            "key": key,
            **job,
            "data": result.data,
            "files": files,
            "env": result.env,
            "seconds": round(result.seconds, 4),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        text = strict_json(record, indent=1, sort_keys=True, ensure_ascii=False)
        for name, (data, _) in result.files.items():
            self._put_blob(data, files[name])
        self.write_atomic(self.record_path(key), text.encode("utf-8"))
        self._cache[key] = record
        return record

    def put_derived(self, name: str, data: bytes) -> Path:
        path = self.derived_path(name)
        self.write_atomic(path, data, read_only=True)  # published into sites as a hard link
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

    # -- builds running at the same time -----------------------------------------------------
    def claim(self, key: str, what: str = "") -> Claim | None:
        """Claim the job `key` for this process, or None while another live process holds it.

        A claim is a file locks/<key>.lock made with one atomic link (so it is whole when it
        appears) that says who holds it: pid, host, boot and process start time, since when,
        and `what` (the directive's place). A lock whose holder is gone (killed, crashed, the
        machine rebooted; a pid reused by another process does not count) is stale: it is
        removed and the job claimed anew. A lock from another host is taken as live."""
        path = self.lock_path(key)
        for _ in range(5):  # each turn, a holder let go or a stale lock was removed
            if self._link_new(path, {**_me(), "since": time.time(), "what": what}):
                held = Path(os.path.abspath(path))
                _HELD.add(held)
                return Claim(held)
            if not path.exists():
                continue  # let go while we looked
            if not self._stale(key):
                return None
            with self.hold("removing-stale-claims"):  # judged again, as no one else removes
                if self._stale(key):
                    log.debug("unmake: removing the stale lock %s (%s)", path, self.holder(key))
                    path.unlink(missing_ok=True)
        return None

    def _link_new(self, path: Path, note: dict[str, Any]) -> bool:
        self._folder(path.parent)
        tmp = self._tmp() / f"{path.name}.{os.getpid()}.{time.monotonic_ns()}"
        tmp.write_text(json.dumps(note), "utf-8")
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except FileNotFoundError:  # locks/ removed behind our back
            self._made.clear()
            self._folder(path.parent)
            return self._link_new(path, note)
        except OSError:  # a filesystem without hard links: create exclusively, then write
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(note))
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def _live(self, key: str, holder: dict[str, Any]) -> bool:
        """Whether the process that wrote this lock runs still (as far as this host can tell)."""
        me = _me()
        if holder.get("host") != me["host"]:
            return True  # another machine's process: nothing here can tell
        if holder.get("boot") and me["boot"] and holder["boot"] != me["boot"]:
            return False
        pid = holder.get("pid")
        if not isinstance(pid, int):
            return False
        if pid == me["pid"]:
            # this process: live while it holds the claim (a lock it wrote and did not release
            # is left from a build it abandoned)
            return Path(os.path.abspath(self.lock_path(key))) in _HELD
        started = _start_time(pid)
        if holder.get("start") is not None and started is not None:
            return bool(holder["start"] == started)
        return _alive(pid)

    def _stale(self, key: str) -> bool:
        """Whether the lock of `key` is left by a process that is gone (False while there is
        none, or while it is being written where links are not atomic)."""
        holder = self.holder(key)
        if holder is not None:
            return not self._live(key, holder)
        try:
            return time.time() - self.lock_path(key).stat().st_mtime > 10
        except FileNotFoundError:
            return False

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Hold the lock locks/<name>.hold for a `with` block, waiting for it: for short steps
        that processes sharing this store must not interleave (removing a stale claim, moving
        a built site into place). An flock: it dies with its process, so it is never stale."""
        try:
            import fcntl
        except ImportError:  # no flock (Windows): nothing to hold
            yield
            return
        path = self._folder(self.root / "locks") / f"{name}.hold"
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:  # a filesystem without locks: go on, and say so
                log.debug("unmake: cannot lock %s (%s)", path, exc)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def holder(self, key: str) -> dict[str, Any] | None:
        """Who holds the lock of `key`, as the holder wrote it, or None when there is none."""
        try:
            info = json.loads(self.lock_path(key).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def held(self) -> list[dict[str, Any]]:
        """The jobs live processes hold now: each holder's note, with the job's key."""
        found = []
        for path in sorted((self.root / "locks").glob("*.lock")):
            holder = self.holder(path.stem)
            if holder is not None and self._live(path.stem, holder):
                found.append({"key": path.stem, **holder})
        return found

    # -- checking ----------------------------------------------------------------------------
    def verify(self) -> list[str]:
        """Every problem found: records that do not parse, are not strict JSON or whose inputs
        do not hash to their key, blobs missing or not matching their hash."""
        problems = []
        for path in sorted((self.root / "records").glob("*/*.json")):
            try:
                record = json.loads(path.read_text("utf-8"), parse_constant=_reject_constant)
            except (OSError, ValueError) as exc:
                problems.append(f"{path}: unreadable record ({exc})")
                continue
            if not isinstance(record, dict):
                problems.append(f"{path}: unreadable record (not a JSON object)")
                continue
            if record.get("key") != path.stem:
                problems.append(f"{path}: its key is {record.get('key')!r}, not its file name")
            elif ("type" in record
                  and job_key(record["type"], record.get("inputs") or {}) != path.stem):
                problems.append(f"{path}: its type and inputs do not hash to its key (the "
                                "record was changed after it was written)")
            for name, art in record.get("files", {}).items():
                blob = self.blob_path(art["sha256"], art["ext"])
                if not blob.exists():
                    problems.append(f"{path}: {name} blob missing ({blob})")
                elif digest(blob.read_bytes()) != art["sha256"]:
                    problems.append(f"{path}: {name} blob does not match its hash ({blob})")
        return problems

    # -- collecting garbage ------------------------------------------------------------------
    def unused(self, keep: set[str]) -> list[Unused]:
        """What no kept job needs: records not in `keep` (nor read by one that is), blobs that
        no kept record names, web copies of those blobs, and contact sheets that show an image
        of no kept record. Memos, locks, tmp/ and derived files of unknown kinds are kept."""
        # 1. Records: the kept ones and, transitively, every record they read (`needs`).
        paths = {p.stem: p for p in (self.root / "records").glob("*/*.json")}
        kept: set[str] = set()
        todo = [k for k in keep if k in paths]
        while todo:
            key = todo.pop()
            if key in kept:
                continue
            kept.add(key)
            record = self._read(paths[key])
            needs = (record or {}).get("inputs", {}).get("needs", [])
            todo.extend(k for k in needs if isinstance(k, str) and k in paths)
        unused = [Unused(p, p.stat().st_size, self._read(p))
                  for key, p in sorted(paths.items()) if key not in kept]
        # 2. Blobs: every file a kept record names.
        shas = {art.get("sha256") for key in kept
                for art in ((self._read(paths[key]) or {}).get("files") or {}).values()}
        for blob in sorted((self.root / "blobs").glob("*/*")):
            if blob.name.split(".")[0] not in shas:
                unused.append(Unused(blob, blob.stat().st_size))
        # 3. Derived files: `<sha>.webp` goes with its blob; a sheet with the images it shows.
        for path in sorted((self.root / "derived").glob("*/*")):
            stem = path.name.split(".")[0]
            if len(stem) == 64 and all(c in "0123456789abcdef" for c in stem):
                if stem not in shas:
                    unused.append(Unused(path, path.stat().st_size))
            elif (cells := _sheet_keys(path)) is not None and not cells <= kept:
                unused.append(Unused(path, path.stat().st_size))
        return unused

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            record = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None


def _artifact(data: bytes, ext: str) -> dict[str, Any]:
    return {"sha256": digest(data), "ext": ext, "bytes": len(data)}


def _sheet_keys(path: Path) -> set[str] | None:
    """The record keys a contact sheet shows (its `unmake` chunk), or None if it is not one."""
    if path.suffix != ".png":
        return None
    from PIL import Image

    try:
        with Image.open(path) as im:
            chunk = im.info.get("unmake")
        cells = json.loads(chunk)["cells"] if chunk else None
        return {c["key"] for c in cells} if isinstance(cells, list) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Claim:
    """A job this process is running, held until `release` (or until the process ends: its
    lock is then stale, and the next claim removes it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def release(self) -> None:
        if self.path in _HELD:
            _HELD.discard(self.path)
            self.path.unlink(missing_ok=True)


_HELD: set[Path] = set()  # the lock files this process holds (absolute paths)
_ME: dict[str, Any] = {}


def _me() -> dict[str, Any]:
    """Who this process is, as a lock says it (looked up once per process: a fork is another)."""
    if _ME.get("pid") != os.getpid():
        try:
            boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        except OSError:
            boot = ""
        _ME.clear()
        _ME.update(pid=os.getpid(), host=socket.gethostname(), boot=boot,
                   start=_start_time(os.getpid()))
    return _ME


def _start_time(pid: int) -> int | None:
    """When a process started (clock ticks since boot; Linux), or None where that is unknown:
    with the pid, it tells a process from a later one that got the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


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
    """Put a store file into the site: a hard link where possible (fast), else a copy.

    Store files are read-only, so a site's file that is a link to one cannot be edited in
    place into a different store file."""
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
    Writes go through the store's one atomic write, so no reader sees half a file; like records,
    memos are strict JSON (an entry that is not is left out, with a warning).
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
        if not self._dirty:
            return
        entries = dict(self)
        try:
            text = strict_json({"version": self.version, "entries": entries},
                               ensure_ascii=False, sort_keys=True)
        except NotStrictJSON:
            for key, value in list(entries.items()):
                try:
                    strict_json(value)
                except NotStrictJSON as exc:
                    log.warning("unmake: memo %s: entry %r left out: %s", self.path.stem, key,
                                exc)
                    del entries[key]
                    del self[key]
            text = strict_json({"version": self.version, "entries": entries},
                               ensure_ascii=False, sort_keys=True)
        self._store.write_atomic(self.path, text.encode("utf-8"))
        self._dirty = False
