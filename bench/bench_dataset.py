"""How much does the `dataset` directive add to DuckDB, on a LAION-sized shard?

Makes (once) a 10-million-row Parquet file in LAION's shape in bench/out/dataset/ — made-up
captions from a fixed vocabulary, URLs on 220 hosts, sizes, scores and languages, all derived
from a hash of the row number, so the same command makes the same file — then times, in one
process, alternating, --repeat times each:

  directive  the page's ```dataset block (search: portrait; facets: domain, language, aesthetic,
             size) parsed, planned and keyed, then run by the "dataset.lookup" runner and stored
  raw        the same search and facets as one hand-written DuckDB statement: the matching rows
             in a CTE, one GROUPING SETS over host, language, aesthetic bucket and size bucket,
             and the row count, with the same caption predicate

and prints the medians, their ratio (target: <= 1.05) and rows/s (rows scanned per second by the
directive). Both sides read the file from the OS page cache after a warm-up run; DuckDB uses its
default thread count on both.

Run: .venv/bin/python bench/bench_dataset.py [--rows 10000000] [--repeat 5] [--search portrait]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _util import OUT, ROOT, load_note, median, table

sys.path.insert(0, str(ROOT))

TARGET = 1.05
VOCABULARY = (
    "a photo of the portrait woman man red blue dress house garden city night street old new "
    "vintage wooden table chair painting art print poster canvas wall decor kitchen modern black "
    "white green sunset beach mountain lake forest tree flower rose cat dog bird horse car bike "
    "shoes shirt jacket girl boy child family wedding bride cake food bread coffee cup mug book "
    "cover design logo vector illustration icon pattern seamless texture background abstract "
    "watercolor oil sketch drawing nurse doctor ceo engineer teacher chef police soldier farmer "
    "artist model fashion style beauty hair makeup smile face eyes hands ring necklace gold "
    "silver diamond jewelry luxury hotel room bedroom bathroom living sofa lamp light window door "
    "pool summer winter snow rain sky cloud Portrait PORTRAIT portraits"
)
WORDS = VOCABULARY.split()
HOSTS = [
    "i.pinimg.com", "cdn.shopify.com", "images.example.org", "www.shutterstock.com",
    "image.shutterstock.com", "media.gettyimages.com", "i.ebayimg.com", "www.flickr.com",
    "live.staticflickr.com", "upload.wikimedia.org", "www.amazon.com", "m.media-amazon.com",
    "images.fineartamerica.com", "www.etsy.com", "i.etsystatic.com", "blog.foo.co.uk",
    "www.bbc.co.uk", "cdn.bar.com.au", "static.baz.de", "img.qux.fr",
    *(f"www.site{i}.com" for i in range(200)),
]
LANGS = ["en", "en", "en", "en", "de", "fr", "es", "it", "nl", "pt", "ja", "zh", "ru", "pl", ""]


def make_parquet(path: Path, rows: int) -> float:
    """Write the made-up table with DuckDB (deterministic: every value is a hash of the row)."""
    import duckdb

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    started = time.perf_counter()
    con = duckdb.connect()
    pick = "$h[(1 + hash(i, 11) % {n})::BIGINT]"
    con.execute(f"""
        COPY (SELECT
            lpad(CAST(i AS VARCHAR), 9, '0') AS key,
            'https://' || {pick.format(n=len(HOSTS))} || '/img/' || i || '.jpg' AS URL,
            array_to_string(list_transform(range(4 + (hash(i, 1) % 12)::INT),
                lambda j: $w[(1 + hash(i, j, 2) % {len(WORDS)})::BIGINT]), ' ') AS TEXT,
            (64 + hash(i, 3) % 1600)::INTEGER AS WIDTH,
            (64 + hash(i, 4) % 1600)::INTEGER AS HEIGHT,
            ((hash(i, 5) % 10000) / 30000.0 + 0.2)::FLOAT AS similarity,
            pow((hash(i, 6) % 10000) / 10000.0, 4)::FLOAT AS punsafe,
            ((hash(i, 7) % 10000) / 10000.0)::FLOAT AS pwatermark,
            (3.0 + (hash(i, 8) % 5000) / 1000.0)::FLOAT AS aesthetic,
            $l[(1 + hash(i, 9) % {len(LANGS)})::BIGINT] AS LANGUAGE
        FROM range({rows}) t(i))
        TO '{tmp}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)
    """, {"h": HOSTS, "w": WORDS, "l": LANGS})
    con.close()
    tmp.replace(path)
    return time.perf_counter() - started


def ensure_parquet(rows: int) -> tuple[Path, str]:
    folder = OUT / "dataset"
    path = folder / f"laion-{rows}.parquet"
    stamp = folder / f"laion-{rows}.json"
    if path.is_file() and stamp.is_file() and json.loads(stamp.read_text())["rows"] == rows:
        return path, "reused"
    seconds = make_parquet(path, rows)
    stamp.write_text(json.dumps({"rows": rows, "seconds": round(seconds, 1)}))
    return path, f"made in {seconds:.0f} s ({path.stat().st_size / 1e6:.0f} MB)"


def directive_side(parquet: Path, search: str) -> tuple[float, dict]:
    """Parse, plan, key, run and store the directive, as a build does (minus mkdocs)."""
    from generator.backends import duckdb_lookup
    from generator.models import Resolver
    from generator.plan import plan_site
    from generator.store import Store
    from generator.types import Context

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        ctx = Context(root, root, Resolver({"default": "tiny"}, root), Store(root / ".unmake"),
                      {"datasets": {"big": {"metadata": str(parquet)}}})
        page = ("```dataset\ndataset: big\nsearch: " + search +
                "\nfacets: [domain, language, aesthetic, size]\n```\n")
        plan = plan_site({"p.md": ("p.md", page)}, ctx)
        (job,) = plan.missing
        ((_, result),) = list(duckdb_lookup.run([job], {}))
        if isinstance(result, Exception):
            raise result
        ctx.store.put(job.key, job.describe(), result)
        return time.perf_counter() - started, result.data


RAW = """
WITH m AS (
    SELECT lower(regexp_extract(URL, '{host}', 1)) AS host, LANGUAGE AS lang,
           CAST(floor(aesthetic) AS INTEGER) AS aes,
           CASE WHEN least(WIDTH, HEIGHT) < 256 THEN 0 WHEN least(WIDTH, HEIGHT) < 512 THEN 1
                WHEN least(WIDTH, HEIGHT) < 768 THEN 2 WHEN least(WIDTH, HEIGHT) < 1024 THEN 3
                ELSE 4 END AS size
    FROM read_parquet($file) WHERE regexp_matches(TEXT, $pattern))
SELECT grouping(host, lang, aes, size) AS g, host, lang, aes, size, count(*) AS n
FROM m GROUP BY GROUPING SETS ((host), (lang), (aes), (size), ())
"""


def raw_side(parquet: Path, search: str) -> tuple[float, dict]:
    """The same search and facets, written by hand: one statement, plus the total row count."""
    import duckdb

    from generator.datasets import HOST_RE, search_regex

    started = time.perf_counter()
    con = duckdb.connect()
    total = con.execute("SELECT count(*) FROM read_parquet($file)",
                        {"file": str(parquet)}).fetchone()[0]
    rows = con.execute(RAW.format(host=HOST_RE),
                       {"file": str(parquet), "pattern": search_regex([search], "words")}
                       ).fetchall()
    con.close()
    seconds = time.perf_counter() - started
    matches = next(r[-1] for r in rows if r[0] == 15)
    return seconds, {"total": total, "matches": matches, "groups": len(rows)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--search", default="portrait")
    args = parser.parse_args()

    parquet, how = ensure_parquet(args.rows)
    print(f"bench: {parquet.relative_to(ROOT)}: {args.rows:,} rows, {how}")
    # warm-up: page cache, DuckDB and tldextract imports, the public suffix list
    _, data = directive_side(parquet, args.search)
    _, raw = raw_side(parquet, args.search)
    if (data["total"], data["matches"]) != (raw["total"], raw["matches"]):
        raise SystemExit(f"bench: the two sides disagree: {data['matches']} vs {raw['matches']}")
    times: dict[str, list[float]] = {"directive": [], "raw": []}
    for _ in range(args.repeat):
        times["directive"].append(directive_side(parquet, args.search)[0])
        times["raw"].append(raw_side(parquet, args.search)[0])
    d, r = median(times["directive"]), median(times["raw"])
    ratio = d / r
    print(table(
        f"search {args.search!r} + facets domain, language, aesthetic, size: "
        f"{data['matches']:,} of {data['total']:,} rows match (median of {args.repeat})",
        ["side", "median s", "min s", "max s", "rows/s"],
        [[name, f"{median(ts):.3f}", f"{min(ts):.3f}", f"{max(ts):.3f}",
          f"{args.rows / median(ts):,.0f}"] for name, ts in times.items()]))
    verdict = "ok" if ratio <= TARGET else "over target"
    print(f"ratio directive/raw: {ratio:.3f} (target <= {TARGET}): {verdict}")
    print(f"directive: {args.rows / d:,.0f} rows/s scanned")
    note = load_note()
    if note:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
