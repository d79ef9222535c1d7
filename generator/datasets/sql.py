"""The SQL a lookup runs, built as text and bound parameters without DuckDB (it runs elsewhere)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import NUMERIC_FIELDS, Condition, conditions_from
from .domains import HOST_RE

ALGO_VERSION = 1  # bump when the same inputs would give a different lookup result
FACETS = ("domain", "language", "aesthetic", "size")
FACET_KEYS = {"domain": "_host", "language": "_lang", "aesthetic": "_aes", "size": "_size"}
SIZE_BUCKETS = (256, 512, 768, 1024)  # shorter-side bucket edges
SAMPLE_COLUMNS = ("key", "TEXT", "URL", "WIDTH", "HEIGHT", "aesthetic", "punsafe", "pwatermark",
                  "similarity", "LANGUAGE")
TOKEN_RE = r"[\pL\pN]+"  # noqa: S105 (a pattern, not a password)
# Function words only: pronouns stay in, since who a caption says "he" or "she" about is a finding.
_STOPWORDS = """
a an the and or but of in on at to for from by with without into onto over under as is are was
were be been being it its this that these those there here not no yes so if then than too very can
will just do does did has have had about after before up down out off all any some more most other
such only own same s t de la le les el en et und der die das des du di da y e o il lo los las un une
ein eine im am zu von mit
"""
STOPWORDS = tuple(sorted(set(_STOPWORDS.split())))  # left out of co-occurrence counts
# Fills temp table imgkeys with the local image folder's keys, bound as $k when the sample runs.
IMAGE_KEYS = "CREATE OR REPLACE TEMP TABLE imgkeys AS SELECT unnest($k::VARCHAR[]) AS k"


def quote_ident(name: str) -> str:
    """A column name as a DuckDB identifier: always quoted, embedded quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


class Sql:
    """Named bound parameters for one lookup."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def param(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"${name}"

    def only(self, text: str) -> dict[str, Any]:
        """The parameters a statement uses (DuckDB rejects unused named parameters)."""
        used = set(re.findall(r"\$(p\d+)", text))
        return {k: v for k, v in self.params.items() if k in used}


def host_sql(url: str) -> str:
    """The lower-cased host of the URL column `url` (the same HOST_RE as domains.domain_of)."""
    return f"lower(regexp_extract({url}, '{HOST_RE}', 1))"


def condition_sql(cond: Condition, col: Callable[[str], str],
                  param: Callable[[Any], str]) -> str:
    """SQL text over columns named by `col` (LAION name -> SQL), values bound by `param`."""
    if isinstance(cond.value, tuple):
        if cond.field == "domain":
            host = host_sql(col("URL"))
            tests = [f"({host} = {p} OR ends_with({host}, '.' || {p}))"
                     for p in (param(v) for v in cond.value)]
            return "(" + " OR ".join(tests) + ")"
        language = f"lower(CAST({col('LANGUAGE')} AS VARCHAR))"
        return f"list_contains({param(list(cond.value))}, {language})"
    if cond.field == "size":
        target = f"LEAST({col('WIDTH')}, {col('HEIGHT')})"
    else:
        target = col(NUMERIC_FIELDS[cond.field])
    return f"({target} {cond.op} {param(float(cond.value))})"


# -- caption search -----------------------------------------------------------------------------
def term_regex(term: str) -> str:
    """An RE2 pattern for one word or phrase: ASCII punctuation escaped, any run of whitespace
    between words, and a trailing `*` on a word for any ending (nurse* finds nurses)."""
    words = []
    for word in term.split():
        stem, star = (word[:-1], True) if word.endswith("*") and len(word) > 1 else (word, False)
        escaped = "".join("\\" + ch if ch.isascii() and not ch.isalnum() else ch for ch in stem)
        words.append(escaped + (r"[\pL\pN]*" if star else ""))
    return r"\s+".join(words)


def search_regex(terms: list[str], match: str) -> str:
    """Case-insensitive RE2 pattern matching any of `terms`; whole words unless `match` is
    'substring'. Word edges are Unicode-aware (RE2's \\b knows ASCII letters only), and only
    where a term starts or ends with a letter or digit (so "<script>" needs no edge)."""
    if match == "substring":
        return "(?i)(?:" + "|".join(term_regex(t) for t in terms) + ")"
    edge = r"[^\pL\pN_]"
    alternatives = []
    for term in terms:
        head = f"(?:^|{edge})" if term[0].isalnum() else ""
        tail = f"(?:$|{edge})" if term[-1].isalnum() or term.endswith("*") else ""
        alternatives.append(f"{head}{term_regex(term)}{tail}")
    return "(?i)(?:" + "|".join(alternatives) + ")"


def search_sql(search: dict[str, Any] | None, col: Callable[[str], str], sql: Sql) -> list[str]:
    """The WHERE terms of a caption search ({all, any, none, match}), patterns bound by `sql`."""
    if not search:
        return []
    text = col("TEXT")
    out = []
    match = search["match"]
    if search["any"]:
        out.append(f"regexp_matches({text}, {sql.param(search_regex(search['any'], match))})")
    out += [f"regexp_matches({text}, {sql.param(search_regex([t], match))})"
            for t in search["all"]]
    if search["none"]:
        out.append(f"NOT coalesce(regexp_matches({text}, "
                   f"{sql.param(search_regex(search['none'], match))}), false)")
    return out


# -- the statements of one lookup ---------------------------------------------------------------
@dataclass(frozen=True)
class LookupSql:
    """The statements one lookup runs, in the order it runs them, and the values they bind.

    A statement that a lookup does not need is None. Every value is in `sql.params`; no value is
    ever part of the text.
    """

    sql: Sql
    keep: str | None  # the matching rows into temp table m, when a later step reads them
    total: str  # every row, counted from the Parquet footers
    aggregate: str  # matches, held back, per facet value, per lens stage
    grouped: tuple[str, ...]  # the aggregate's grouping columns, one per facet, in its order
    held_back: bool  # whether the aggregate counts rows above the unsafe threshold (and unknown)
    cooccurrence: tuple[str, str, str] | None  # top words, top bigrams, captions read
    own_words: tuple[str, ...]  # the query's own words, left out of co-occurrence
    image_keys: str | None  # IMAGE_KEYS, run before the sample when it needs local images
    sample: tuple[str, str] | None  # how many matches it may draw from; the rows, seeded order
    sample_columns: tuple[str, ...]  # the columns of the sample's rows, in order
    drop: str | None  # drops temp table m


def lookup_sql(inputs: dict[str, Any], run: dict[str, Any]) -> LookupSql:
    """The statements for one `dataset.lookup` job (its inputs and run fields); pure text."""
    query = inputs["query"]
    columns: dict[str, str] = inputs["columns"]  # LAION name -> file column (those in the file)
    facets, lens = query["facets"], query["lens"]
    sample, cooc = query["sample"], query["cooccurrence"]
    threshold = inputs["unsafe_threshold"]
    # unsafe rows are held back from samples, so they are counted only where there is one
    has_punsafe = bool(sample) and "punsafe" in columns and threshold is not None
    sql = Sql()
    union = ", union_by_name=true" if run.get("union_by_name") else ""
    files = sql.param(list(run["files"]))
    rows_id = ", filename=true, file_row_number=true" if sample or cooc else ""
    source = f"read_parquet({files}{rows_id}{union})"

    def src_col(name: str) -> str:
        return quote_ident(columns[name])

    # 1. The matching rows: search and filters over the files, with the columns later steps read.
    where = search_sql(query["search"], src_col, sql)
    where += [condition_sql(c, src_col, sql.param) for c in conditions_from(query["filters"])]
    keep: dict[str, str] = {}
    if "domain" in facets:
        keep["_host"] = host_sql(src_col("URL"))
    if "language" in facets:
        keep["_lang"] = f"CAST({src_col('LANGUAGE')} AS VARCHAR)"
    if "aesthetic" in facets:
        keep["_aes"] = f"CAST(floor({src_col('aesthetic')}) AS INTEGER)"
    if "size" in facets:
        side = f"LEAST({src_col('WIDTH')}, {src_col('HEIGHT')})"
        cases = " ".join(f"WHEN {side} < {e} THEN {i}" for i, e in enumerate(SIZE_BUCKETS))
        keep["_size"] = f"CASE WHEN {side} IS NULL THEN NULL {cases} ELSE {len(SIZE_BUCKETS)} END"
    needed: set[str] = {"punsafe"} if has_punsafe else set()
    stages = [conditions_from(stage["conditions"]) for stage in (lens or {}).get("stages", [])]
    needed.update(col for stage in stages for cond in stage for col in cond.columns)
    if cooc:
        needed.add("TEXT")
    if sample:
        needed.update(c for c in SAMPLE_COLUMNS if c in columns)
    if sample or cooc:  # a stable order: md5 of (seed, file name, row number)
        keep["_order"] = (f"md5(CAST({sql.param(sample['seed'] if sample else 0)} AS VARCHAR) "
                          "|| '|' || parse_filename(filename) || '|' || "
                          "CAST(file_row_number AS VARCHAR))")
    keep.update((name, src_col(name)) for name in sorted(needed))
    select = ", ".join(f"{expr} AS {quote_ident(alias)}" for alias, expr in keep.items()) or "1"
    matching = f"SELECT {select} FROM {source}" + (f" WHERE {' AND '.join(where)}"
                                                   if where else "")
    # Only when a sample or co-occurrence reads the rows themselves are they kept in a table;
    # otherwise the aggregate reads the scan directly.
    relation = "m" if sample or cooc else f"({matching})"

    # 2. Totals: the row count comes from the Parquet footers.
    total = f"SELECT count(*) FROM read_parquet({files}{union})"

    # 3. One aggregate: matches, held back, per facet value, per lens stage.
    aggs = ["count(*)"]
    if has_punsafe:
        aggs += [f"count(*) FILTER (WHERE \"punsafe\" > {sql.param(float(threshold))})",
                 "count(*) FILTER (WHERE \"punsafe\" IS NULL)"]
    cumulative: list[str] = []
    for stage in stages:
        cumulative += [condition_sql(c, quote_ident, sql.param) for c in stage]
        aggs.append(f"count(*) FILTER (WHERE {' AND '.join(cumulative)})")
    used = tuple(FACET_KEYS[f] for f in facets)
    if used:
        sets = ", ".join(f"({c})" for c in used)
        aggregate = (f"SELECT grouping({', '.join(used)}), {', '.join(used)}, "
                     f"{', '.join(aggs)} FROM {relation} GROUP BY GROUPING SETS ({sets}, ())")
    else:
        aggregate = f"SELECT {', '.join(aggs)} FROM {relation}"

    # 4. Words and bigrams in matching captions (document frequency), over at most max_rows.
    cooccurrence, own = _cooccurrence(sql, query) if cooc else (None, [])

    # 5. A seeded sample: the first n eligible matches in md5 order.
    image_keys, statements = None, None
    shown = tuple(c for c in SAMPLE_COLUMNS if c in columns) if sample else ()
    if sample:
        conds = []
        if has_punsafe and not sample["include_unsafe"]:
            conds.append(f"coalesce(\"punsafe\" <= {sql.param(float(threshold or 0.0))}, true)")
        if sample["with_images"]:
            image_keys = IMAGE_KEYS
            conds.append("CAST(\"key\" AS VARCHAR) IN (SELECT k FROM imgkeys)")
        cond = f" WHERE {' AND '.join(conds)}" if conds else ""
        statements = (f"SELECT count(*) FROM m{cond}",
                      f"SELECT {', '.join(quote_ident(c) for c in shown)} FROM m{cond} "
                      f"ORDER BY _order LIMIT {sql.param(sample['n'])}")
    kept = sample or cooc
    return LookupSql(
        sql=sql, keep=f"CREATE OR REPLACE TEMP TABLE m AS {matching}" if kept else None,
        total=total, aggregate=aggregate, grouped=used, held_back=has_punsafe,
        cooccurrence=cooccurrence, own_words=tuple(own), image_keys=image_keys,
        sample=statements, sample_columns=shown,
        drop="DROP TABLE m" if kept else None)


def _cooccurrence(sql: Sql, query: dict[str, Any]) -> tuple[tuple[str, str, str], list[str]]:
    """Statements for top words, top bigrams and the captions read; and the query's own words."""
    cooc = query["cooccurrence"]
    search = query["search"] or {"all": [], "any": [], "none": []}
    # the query's own words (nurse* covers nurses) are what every matching caption holds
    own = sorted({w for t in (*search["all"], *search["any"]) for w in t.split()})
    stop = sql.param(list(STOPWORDS))
    own_re = sql.param("(?:" + "|".join(term_regex(w) for w in own) + ")") if own else None

    def mine(w: str) -> str:  # a token the query itself asked for
        return f"regexp_full_match({w}, {own_re})" if own_re else "false"

    def plain(w: str) -> str:  # a token worth counting: not a stopword, a number, a letter
        return (f"len({w}) > 1 AND NOT list_contains({stop}, {w}) AND NOT "
                f"regexp_full_match({w}, '[0-9]+')")

    docs = (f"SELECT regexp_extract_all(lower(\"TEXT\"), {sql.param(TOKEN_RE)}) AS t FROM m "
            f"WHERE \"TEXT\" IS NOT NULL ORDER BY _order LIMIT {sql.param(cooc['max_rows'])}")
    top = sql.param(cooc["top"])
    words = (
        f"WITH d AS ({docs}) SELECT w, count(*) AS n FROM (SELECT unnest(list_distinct("
        f"list_filter(t, lambda w: {plain('w')} AND NOT {mine('w')}))) AS w "
        f"FROM d) GROUP BY w ORDER BY n DESC, w LIMIT {top}")
    bigrams = (
        f"WITH d AS ({docs}), p AS (SELECT list_transform(range(1, len(t)), "
        f"lambda i: [t[i], t[i + 1]]) AS pairs FROM d) "
        f"SELECT b, count(*) AS n FROM (SELECT unnest(list_distinct(list_transform("
        f"list_filter(pairs, lambda q: {plain('q[1]')} AND {plain('q[2]')} AND NOT "
        f"({mine('q[1]')} AND {mine('q[2]')})), "
        f"lambda q: q[1] || ' ' || q[2]))) AS b FROM p) "
        f"GROUP BY b ORDER BY n DESC, b LIMIT {top}")
    return (words, bigrams, f"SELECT count(*) FROM ({docs})"), own
