"""Runner for "dataset.lookup": DuckDB runs the statements of each lookup and shapes its answer."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..datasets.config import DatasetError, one_line
from ..datasets.domains import domain_of, registered_domain
from ..datasets.registry import ImageFolder
from ..datasets.sql import SIZE_BUCKETS, LookupSql, lookup_sql
from ..errors import UnmakeError

if TYPE_CHECKING:
    from ..store import Result
    from ..types import Job

MAX_IMAGE_BYTES = 8 << 20  # a sample's local image larger than this is left out of the record


def run(jobs: list[Job], options: dict[str, Any]) -> Iterator[tuple[Job, Result | Exception]]:
    """Runner for "dataset.lookup": one DuckDB connection for the group, one lookup per job."""
    from importlib import metadata

    import duckdb

    from ..store import Result

    con = duckdb.connect()
    env = {"duckdb": duckdb.__version__, "tldextract": metadata.version("tldextract")}
    folders: dict[str | None, ImageFolder] = {}  # one walk of an image folder per run at most
    try:
        for job in jobs:
            started = time.perf_counter()
            where = job.run.get("images")
            folder = folders.setdefault(where, ImageFolder(Path(where) if where else None))
            try:
                missing = [f for f in job.run["files"] if not Path(f).is_file()]
                if missing:
                    raise DatasetError(f"dataset '{job.run['dataset']}': {missing[0]} not found")
                data, files = lookup(con, job.inputs, job.run, folder)
            except duckdb.Error as exc:
                yield job, DatasetError(f"dataset '{job.run['dataset']}': DuckDB: "
                                        f"{one_line(exc)}")
                continue
            except (OSError, UnmakeError) as exc:
                yield job, exc
                continue
            yield job, Result(data=data, files=files, env=env,
                              seconds=time.perf_counter() - started)
    finally:
        con.close()


def lookup(con: Any, inputs: dict[str, Any], run: dict[str, Any],
           images: ImageFolder) -> tuple[dict[str, Any], dict[str, tuple[bytes, str]]]:
    """Answer one directive: counts, facets, filter lens, co-occurrence, sample.

    One scan of the Parquet files finds the matching rows. Counts, facets and the lens come from
    one aggregate over them (GROUPING SETS, one set per facet and one for the totals). Only when
    a sample or co-occurrence needs the rows themselves are the matches kept, in a temp table
    holding just the columns those steps read; otherwise the aggregate reads the scan directly.
    """
    # 1. Every statement, built before any runs (generator.datasets.sql: values bound by name).
    q = lookup_sql(inputs, run)
    query = inputs["query"]
    facets, lens = query["facets"], query["lens"]
    statements: list[str] = []

    def execute(text: str) -> Any:
        statements.append(text)
        return con.execute(text, q.sql.only(text))

    # 2. The matching rows, kept in temp table m when a sample or co-occurrence reads them.
    if q.keep:
        execute(q.keep)

    # 3. Totals: the row count comes from the Parquet footers.
    total = execute(q.total).fetchone()[0]

    # 4. One aggregate: matches, held back, per facet value, per lens stage.
    used = q.grouped
    if used:
        rows = execute(q.aggregate).fetchall()
    else:
        rows = [(0, *row) for row in execute(q.aggregate).fetchall()]
    everything = (1 << len(used)) - 1  # grouping() sets a bit for each column not grouped by
    totals = next(r[1 + len(used):] for r in rows if r[0] == everything)
    matches = totals[0]
    held_back, unknown = (totals[1], totals[2]) if q.held_back else (None, None)
    data: dict[str, Any] = {"total": total, "matches": matches, "held_back": held_back,
                            "punsafe_unknown": unknown, "files": list(run["shown"])}
    if facets:
        data["facets"] = {}
        for i, facet in enumerate(facets):
            only = everything ^ (1 << (len(used) - 1 - i))
            groups = [(r[1 + i], r[1 + len(used)]) for r in rows if r[0] == only]
            data["facets"][facet] = _facet_rows(facet, groups, query["facet_top"])
    if lens:
        counts = totals[3 if q.held_back else 1:]
        data["lens"] = {"stages": [{"label": s["label"], "count": n}
                                   for s, n in zip(lens["stages"], counts, strict=True)]}

    # 5. Words and bigrams in matching captions (document frequency), over at most max_rows.
    if q.cooccurrence:
        words_sql, bigrams_sql, captions_sql = q.cooccurrence
        words = execute(words_sql).fetchall()
        bigrams = execute(bigrams_sql).fetchall()
        counted = execute(captions_sql).fetchone()[0]
        data["cooccurrence"] = {"docs": counted, "of": matches, "left_out": list(q.own_words),
                                "words": [[w, n] for w, n in words],
                                "bigrams": [[b, n] for b, n in bigrams]}

    # 6. A seeded sample: the first n eligible matches in md5 order.
    files_out: dict[str, tuple[bytes, str]] = {}
    if q.sample:
        data["sample"], files_out = _sample(execute, con, q, images)
    if q.drop:
        execute(q.drop)
    data["sql"] = statements
    return data, files_out


def _facet_rows(facet: str, groups: list[tuple[Any, int]], top: int) -> dict[str, Any]:
    missing = sum(n for v, n in groups if v is None or v == "")
    present = [(v, n) for v, n in groups if v is not None and v != ""]
    if facet == "domain":
        counts: Counter[str] = Counter()
        for host, n in present:
            counts[registered_domain(host)] += n
        present = list(counts.items())
    if facet in ("domain", "language"):
        present.sort(key=lambda vn: (-vn[1], vn[0]))
        shown, rest = present[:top], present[top:]
        rows = [[str(v), n] for v, n in shown]
        return {"rows": rows, "other": sum(n for _, n in rest), "other_values": len(rest),
                "distinct": len(present), "missing": missing}
    present.sort()
    if facet == "aesthetic":
        rows = [[f"{v}–{v + 1}", n] for v, n in present]
    else:
        edges = SIZE_BUCKETS
        names = [f"< {edges[0]}", *(f"{a}–{b - 1}" for a, b in itertools.pairwise(edges)),
                 f"≥ {edges[-1]}"]
        rows = [[names[v], n] for v, n in present]
    return {"rows": rows, "other": 0, "other_values": 0, "distinct": len(present),
            "missing": missing}


def _sample(execute: Callable[[str], Any], con: Any, q: LookupSql,
            images: ImageFolder) -> tuple[dict[str, Any], dict[str, tuple[bytes, str]]]:
    assert q.sample
    eligible_sql, rows_sql = q.sample
    if q.image_keys:  # not kept in the record's statements: its parameter is the folder's keys
        con.execute(q.image_keys, {"k": sorted(images.index())})
    eligible = execute(eligible_sql).fetchone()[0]
    rows = execute(rows_sql).fetchall()
    out_rows = []
    files: dict[str, tuple[bytes, str]] = {}
    for i, values in enumerate(rows):
        row = dict(zip(q.sample_columns, values, strict=True))
        item: dict[str, Any] = {
            "caption": row.get("TEXT"), "url": row.get("URL"), "domain": domain_of(row.get("URL")),
            "key": None if row.get("key") is None else str(row["key"]),
            **{k: _plain(row.get(c)) for k, c in (
                ("width", "WIDTH"), ("height", "HEIGHT"), ("aesthetic", "aesthetic"),
                ("punsafe", "punsafe"), ("pwatermark", "pwatermark"),
                ("similarity", "similarity"), ("language", "LANGUAGE"))},
            "image": None,
        }
        path = images.find(item["key"]) if item["key"] is not None else None
        if path is not None:
            blob = path.read_bytes()
            if len(blob) <= MAX_IMAGE_BYTES:
                name = f"sample-{i}"
                files[name] = (blob, path.suffix.lower().lstrip("."))
                item["image"] = name
        out_rows.append(item)
    return {"rows": out_rows, "eligible": eligible}, files


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    return value
