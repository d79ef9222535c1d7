"""Datasets: LAION-style metadata in Parquet, declared in mkdocs.yml, queried in place by DuckDB.

Declared under the `unmake` plugin in mkdocs.yml (paths relative to mkdocs.yml):

    datasets:
      sample:
        metadata: data/sample/metadata.parquet  # a file, a glob or a list (one or more shards)
        images: data/sample/images              # optional: img2dataset folder <shard>/<key>.jpg
        embeddings: data/sample/embeddings      # optional: CLIP .npy shards, row-aligned
        columns: {aesthetic: AESTHETIC_SCORE}   # optional: LAION name -> the file's own name
        unsafe_threshold: 0.5                   # samples leave out rows with punsafe above it
        hotlink: false                          # true: samples may show remote images by URL
        description: Made-up rows in LAION's shape.
    filter_chains:                              # optional; `sd-v1-improved-aesthetics` ships
      my-chain:
        title: What this chain is
        source: Where it is documented
        stages:
          - {label: "original size ≥ 512", size: ">= 512"}
          - {aesthetic: "> 5"}

LAION column names (any may be missing; a directive that needs one says which): URL, TEXT, WIDTH,
HEIGHT, similarity, punsafe, pwatermark, aesthetic, LANGUAGE, key. A column is found by its name,
then case-insensitively, then under a known variant (AESTHETIC_SCORE, caption…), unless `columns:`
names it.

Conditions (a directive's `filters:` and each stage of a filter chain) are typed:

    aesthetic, similarity, punsafe, pwatermark, width, height: "> 5", ">= 512", "< 0.5", "= 3",
        "!= 0", a bare number (equal to), or a list of these that must all hold ([">= 5", "< 6"])
    size:      the shorter side, min(WIDTH, HEIGHT), compared like a number (">= 512")
    language:  a code or a list of codes, compared case-insensitively with LANGUAGE
    domain:    a registered domain or a list (shutterstock.com matches image.shutterstock.com)

A row with no value in a condition's column does not pass it.

A dataset's fingerprint is a hash of (path, size, mtime_ns) of each Parquet file (and, apart, of
each .npy file): changing a file changes the key of every lookup on that dataset and no other.
Fingerprints and column lists are remembered in the store (memo/datasets.json), so a `--frozen`
build finds the stored lookups on a machine without the data.

A lookup (job type "dataset.lookup") answers one directive in a handful of statements: one scan
of the Parquet that keeps the matching rows (only the columns the directive needs) in a temp
table, then GROUP BYs, counts and a seeded ordering over that table. Every value reaches DuckDB as
a bound parameter and every column name as a quoted identifier.

The modules, along the data flow (duckdb is imported by the runner only, when a lookup runs):

    config.py     LAION column names, typed conditions, filter chains, `datasets:` entries
    domains.py    the host of a URL and its registered domain (tldextract's bundled list)
    registry.py   the build's datasets as found on disk: files, schemas, fingerprints, images
    sql.py        the statements of a lookup: text and bound parameters, built without DuckDB
    generator/backends/duckdb_lookup.py   the runner: DuckDB runs them, the answer is shaped

This package re-exports what the `dataset` kind, the tests and the benchmark use.
"""

from .config import (
    LAION_COLUMNS,
    Chain,
    Condition,
    DatasetError,
    conditions_from,
    parse_conditions,
)
from .domains import HOST_RE, domain_of, extractor, registered_domain
from .registry import Dataset, Datasets, for_context
from .sql import ALGO_VERSION, FACETS, search_regex

__all__ = [
    "ALGO_VERSION",
    "FACETS",
    "HOST_RE",
    "LAION_COLUMNS",
    "Chain",
    "Condition",
    "Dataset",
    "DatasetError",
    "Datasets",
    "conditions_from",
    "domain_of",
    "extractor",
    "for_context",
    "parse_conditions",
    "registered_domain",
    "search_regex",
]
