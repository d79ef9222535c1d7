"""The SQL a `dataset` lookup runs (generator.datasets.sql), checked as text without DuckDB:
search patterns, quoted identifiers, conditions as WHERE terms, and values only ever bound."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from generator.datasets.config import (
    LAION_COLUMNS,
    PRESET_CHAINS,
    Condition,
    parse_chain,
    parse_conditions,
)
from generator.datasets.domains import HOST_RE
from generator.datasets.sql import (
    IMAGE_KEYS,
    LookupSql,
    Sql,
    condition_sql,
    lookup_sql,
    quote_ident,
    search_regex,
    term_regex,
)

ROOT = Path(__file__).resolve().parents[1]
EDGE = r"[^\pL\pN_]"
HOST = f"lower(regexp_extract(\"URL\", '{HOST_RE}', 1))"
LENS = parse_chain("sd-v1-improved-aesthetics", PRESET_CHAINS["sd-v1-improved-aesthetics"])


def job(columns: dict[str, str] | None = None, threshold: float | None = 0.5,
        run: dict[str, Any] | None = None, **query: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A lookup job's inputs and run fields, as `kinds/dataset.py` expands them."""
    normal = {"search": None, "filters": [], "facets": [], "facet_top": None,
              "cooccurrence": None, "sample": None, "lens": None, **query}
    inputs = {"query": normal, "columns": columns or {c: c for c in LAION_COLUMNS},
              "unsafe_threshold": threshold}
    return inputs, {"files": ["data/t.parquet"], "union_by_name": False, **(run or {})}


def statements(q: LookupSql) -> list[str]:
    """Every statement of a lookup, in the order the runner sends them."""
    out = [q.keep, q.total, q.aggregate, *(q.cooccurrence or ()), q.image_keys, *(q.sample or ()),
           q.drop]
    return [s for s in out if s]


def sample(n: int = 12, seed: int = 0, **flags: bool) -> dict[str, Any]:
    return {"n": n, "seed": seed, "with_images": False, "include_unsafe": False, **flags}


FULL: dict[str, Any] = {
    "search": {"all": ["portrait"], "any": ["nurse*", "red car"], "none": ["cartoon"],
               "match": "words"},
    "filters": [["aesthetic", ">", 5.0], ["domain", "in", ["shutterstock.com"]],
                ["language", "in", ["de", "en"]], ["size", ">=", 512.0]],
    "facets": ["domain", "language", "aesthetic", "size"], "facet_top": 10,
    "cooccurrence": {"top": 20, "max_rows": 1000}, "sample": sample(with_images=True),
    "lens": LENS.normal(),
}


# -- caption search patterns --------------------------------------------------------------------
@pytest.mark.parametrize(("terms", "match", "pattern"), [
    (["portrait"], "words", rf"(?i)(?:(?:^|{EDGE})portrait(?:$|{EDGE}))"),
    (["nurse*"], "words", rf"(?i)(?:(?:^|{EDGE})nurse[\pL\pN]*(?:$|{EDGE}))"),
    (["red car"], "words", rf"(?i)(?:(?:^|{EDGE})red\s+car(?:$|{EDGE}))"),
    (["<script>"], "words", r"(?i)(?:\<script\>)"),  # no letter at either end: no edge
    (["c++"], "words", rf"(?i)(?:(?:^|{EDGE})c\+\+)"),
    (["portrait", "woman"], "words",
     rf"(?i)(?:(?:^|{EDGE})portrait(?:$|{EDGE})|(?:^|{EDGE})woman(?:$|{EDGE}))"),
    (["portrait", "woman"], "substring", r"(?i)(?:portrait|woman)"),
    (["a.b (c)"], "substring", r"(?i)(?:a\.b\s+\(c\))"),
    (["café"], "substring", r"(?i)(?:café)"),  # only ASCII punctuation is escaped
    (["*"], "substring", r"(?i)(?:\*)"),  # a lone star is a character, not "any ending"
])
def test_search_patterns(terms: list[str], match: str, pattern: str) -> None:
    assert search_regex(terms, match) == pattern


def test_a_star_means_any_ending_only_at_the_end_of_a_word() -> None:
    assert term_regex("nurse* aide") == r"nurse[\pL\pN]*\s+aide"
    assert term_regex("a*b") == r"a\*b"


@pytest.mark.parametrize(("terms", "match", "text", "found"), [
    (["portrait"], "words", "A PORTRAIT of a nurse", True),
    (["portrait"], "words", "portraiture", False),
    (["portrait"], "substring", "portraiture", True),
    (["nurse*"], "words", "two nurses, smiling", True),
    (["nurse*"], "words", "a nurse.", True),
    (["nurse*"], "words", "anurses", False),
    (["red car"], "words", "red \t car", True),
    (["red car"], "words", "redcar", False),
    (["élan"], "words", "avec Élan !", True),
    (["élan"], "words", "xélan", False),  # the edge knows letters beyond ASCII
    (["<script>"], "words", "x<script>y", True),
    (["c++"], "words", "I like C++ a lot", True),
])
def test_search_patterns_match_what_they_say(terms: list[str], match: str, text: str,
                                             found: bool) -> None:
    regex = pytest.importorskip("regex")  # Python's re has no \pL; DuckDB's RE2 and regex do
    assert bool(regex.search(search_regex(terms, match), text)) is found


# -- identifiers and parameters -----------------------------------------------------------------
@pytest.mark.parametrize(("name", "quoted"), [
    ("TEXT", '"TEXT"'),
    ("caption v2", '"caption v2"'),
    ('a"b', '"a""b"'),
    ('x"; DROP TABLE m; --', '"x""; DROP TABLE m; --"'),
    ("", '""'),
])
def test_identifiers_are_always_quoted_with_quotes_doubled(name: str, quoted: str) -> None:
    assert quote_ident(name) == quoted


def test_parameters_are_named_in_order_and_each_statement_gets_only_its_own() -> None:
    sql = Sql()
    assert [sql.param(v) for v in ("a", 1, [2])] == ["$p0", "$p1", "$p2"]
    assert sql.only("SELECT $p2, $p0") == {"p0": "a", "p2": [2]}
    assert sql.only("SELECT 1") == {}


def test_the_host_pattern_can_sit_inside_a_sql_literal() -> None:
    assert "'" not in HOST_RE  # host_sql puts it between single quotes


# -- conditions -> WHERE terms ------------------------------------------------------------------
@pytest.mark.parametrize(("cond", "text", "params"), [
    (Condition("aesthetic", ">", 5.0), '("aesthetic" > $p0)', [5.0]),
    (Condition("width", "<=", 640.0), '("WIDTH" <= $p0)', [640.0]),
    (Condition("pwatermark", "!=", 0.0), '("pwatermark" != $p0)', [0.0]),
    (Condition("size", ">=", 512.0), '(LEAST("WIDTH", "HEIGHT") >= $p0)', [512.0]),
    (Condition("language", "in", ("de", "en")),
     'list_contains($p0, lower(CAST("LANGUAGE" AS VARCHAR)))', [["de", "en"]]),
    (Condition("domain", "in", ("a.com", "b.co.uk")),
     f"(({HOST} = $p0 OR ends_with({HOST}, '.' || $p0)) OR "
     f"({HOST} = $p1 OR ends_with({HOST}, '.' || $p1)))", ["a.com", "b.co.uk"]),
])
def test_conditions_become_where_terms_with_bound_values(cond: Condition, text: str,
                                                         params: list[Any]) -> None:
    sql = Sql()
    assert condition_sql(cond, quote_ident, sql.param) == text
    assert list(sql.params.values()) == params


def test_conditions_from_yaml_to_where_terms() -> None:
    def error(key: str | None, message: str) -> Exception:
        return ValueError(f"{key}: {message}")

    conds = parse_conditions({"aesthetic": [">= 5", "< 6"], "height": 512,
                              "language": ["EN", "de"]}, error)
    sql = Sql()
    where = [condition_sql(c, quote_ident, sql.param) for c in conds]
    assert where == ['("aesthetic" >= $p0)', '("aesthetic" < $p1)', '("HEIGHT" = $p2)',
                     'list_contains($p3, lower(CAST("LANGUAGE" AS VARCHAR)))']
    assert sql.params == {"p0": 5.0, "p1": 6.0, "p2": 512.0, "p3": ["de", "en"]}


def test_conditions_read_the_files_own_column_names() -> None:
    sql = Sql()
    mapped = {"aesthetic": "AESTHETIC_SCORE"}
    text = condition_sql(Condition("aesthetic", ">", 5.0),
                         lambda name: quote_ident(mapped[name]), sql.param)
    assert text == '("AESTHETIC_SCORE" > $p0)'


# -- the statements of one lookup ---------------------------------------------------------------
def test_no_value_is_ever_part_of_the_sql_text() -> None:
    sentinels: dict[str, Any] = {
        "files": ["data/o'brien-73519.parquet"], "search": "zebra'x", "none": "qux7",
        "aesthetic": 5.125, "language": "xx'yy", "domain": "evil-sentinel.com", "seed": 987654,
        "n": 433, "top": 17, "max_rows": 4321, "threshold": 0.4321,
    }
    inputs, run = job(
        threshold=sentinels["threshold"], run={"files": sentinels["files"]},
        search={"all": [], "any": [sentinels["search"]], "none": [sentinels["none"]],
                "match": "substring"},
        filters=[["aesthetic", ">", sentinels["aesthetic"]],
                 ["language", "in", [sentinels["language"]]],
                 ["domain", "in", [sentinels["domain"]]]],
        facets=["domain"], facet_top=10,
        cooccurrence={"top": sentinels["top"], "max_rows": sentinels["max_rows"]},
        sample=sample(n=sentinels["n"], seed=sentinels["seed"]), lens=LENS.normal())
    q = lookup_sql(inputs, run)
    text = "\n".join(statements(q))
    bound = repr(list(q.sql.params.values()))
    for shown in ("o'brien-73519", "zebra", "qux7", "5.125", "xx'yy", "evil-sentinel", "987654",
                  "433", "4321", "0.4321"):
        assert shown not in text, shown
        assert shown in bound, shown  # each value is a parameter instead
    # every parameter is used by some statement, and each statement names only known ones
    used = {name for s in statements(q) for name in q.sql.only(s)}
    assert used == set(q.sql.params)


def test_hostile_column_names_appear_only_quoted() -> None:
    hostile = 'score"); DELETE FROM x; --'
    columns = {c: c for c in LAION_COLUMNS} | {"aesthetic": hostile, "TEXT": 'cap"tion'}
    inputs, run = job(columns=columns, search={"all": ["a"], "any": [], "none": [],
                                               "match": "words"},
                      filters=[["aesthetic", ">", 5.0]], facets=["aesthetic"], facet_top=10,
                      cooccurrence={"top": 5, "max_rows": 10}, sample=sample())
    text = "\n".join(statements(lookup_sql(inputs, run)))
    assert text.count("DELETE FROM x") == text.count(quote_ident(hostile)) > 0
    assert text.count("tion") == text.count('"cap""tion"') > 0


def test_a_count_only_lookup_aggregates_the_scan_directly() -> None:
    q = lookup_sql(*job(search={"all": [], "any": ["portrait"], "none": [], "match": "words"}))
    assert (q.keep, q.cooccurrence, q.sample, q.image_keys, q.drop) == (None,) * 5
    assert q.total == "SELECT count(*) FROM read_parquet($p0)"
    assert q.aggregate == ('SELECT count(*) FROM (SELECT 1 FROM read_parquet($p0) '
                           'WHERE regexp_matches("TEXT", $p1))')
    assert q.grouped == () and not q.held_back


def test_facets_are_grouping_sets_in_the_directives_order() -> None:
    q = lookup_sql(*job(facets=["size", "domain"], facet_top=10))
    assert q.grouped == ("_size", "_host")
    assert q.aggregate.startswith("SELECT grouping(_size, _host), _size, _host, count(*) FROM "
                                  "(SELECT ")
    assert q.aggregate.endswith("GROUP BY GROUPING SETS ((_size), (_host), ())")
    assert f'{HOST} AS "_host"' in q.aggregate


def test_a_sample_keeps_the_matches_in_a_table_and_drops_it() -> None:
    q = lookup_sql(*job(sample=sample(n=5, seed=3)))
    assert q.keep is not None and q.sample is not None
    assert q.keep.startswith("CREATE OR REPLACE TEMP TABLE m AS SELECT md5(CAST($p1 AS VARCHAR)")
    assert "read_parquet($p0, filename=true, file_row_number=true)" in q.keep
    assert q.aggregate.endswith(" FROM m")
    assert q.held_back  # punsafe is there and so is a threshold
    eligible, rows = q.sample
    assert eligible == 'SELECT count(*) FROM m WHERE coalesce("punsafe" <= $p3, true)'
    assert rows.endswith('FROM m WHERE coalesce("punsafe" <= $p3, true) ORDER BY _order '
                         "LIMIT $p4")
    assert q.sql.params["p1"] == 3 and q.sql.params["p3"] == 0.5 and q.sql.params["p4"] == 5
    assert q.sample_columns[:3] == ("key", "TEXT", "URL")
    assert q.drop == "DROP TABLE m"


@pytest.mark.parametrize(("columns", "threshold", "include_unsafe", "held_back", "filtered"), [
    (None, 0.5, False, True, True),
    (None, 0.5, True, True, False),  # counted, but not left out of the sample
    (None, None, False, False, False),  # no threshold: nothing is held back
    ({c: c for c in LAION_COLUMNS if c != "punsafe"}, 0.5, False, False, False),
])
def test_unsafe_rows_are_held_back_only_where_the_data_can_say(
        columns: dict[str, str] | None, threshold: float | None, include_unsafe: bool,
        held_back: bool, filtered: bool) -> None:
    q = lookup_sql(*job(columns=columns, threshold=threshold,
                        sample=sample(include_unsafe=include_unsafe)))
    assert q.held_back is held_back
    assert ('"punsafe" IS NULL' in q.aggregate) is held_back
    assert q.sample is not None
    assert ('"punsafe" <=' in q.sample[0]) is filtered


def test_samples_with_images_draw_from_the_folders_keys() -> None:
    q = lookup_sql(*job(sample=sample(with_images=True)))
    assert q.image_keys == IMAGE_KEYS and "$k" in IMAGE_KEYS
    assert q.sample is not None
    assert all('CAST("key" AS VARCHAR) IN (SELECT k FROM imgkeys)' in s for s in q.sample)


def test_cooccurrence_leaves_out_the_querys_own_words() -> None:
    q = lookup_sql(*job(search={"all": [], "any": ["nurse*", "red car"], "none": [],
                                "match": "words"}, cooccurrence={"top": 5, "max_rows": 10}))
    assert q.own_words == ("car", "nurse*", "red")
    assert q.cooccurrence is not None
    words, bigrams, captions = q.cooccurrence
    assert "LIMIT $p" in words and "q[1] || ' ' || q[2]" in bigrams
    assert captions.startswith("SELECT count(*) FROM (SELECT regexp_extract_all(")
    assert r"(?:car|nurse[\pL\pN]*|red)" in q.sql.params.values()


def test_lens_stages_are_cumulative_counts() -> None:
    q = lookup_sql(*job(lens=LENS.normal()))
    size, aesthetic, watermark = ('(LEAST("WIDTH", "HEIGHT") >= $p1)', '("aesthetic" > $p2)',
                                  '("pwatermark" < $p3)')
    assert q.aggregate.startswith(
        f"SELECT count(*), count(*) FILTER (WHERE {size}), "
        f"count(*) FILTER (WHERE {size} AND {aesthetic}), "
        f"count(*) FILTER (WHERE {size} AND {aesthetic} AND {watermark}) FROM (SELECT ")


def test_shards_with_different_columns_are_read_by_name() -> None:
    q = lookup_sql(*job(run={"union_by_name": True}))
    assert q.total == "SELECT count(*) FROM read_parquet($p0, union_by_name=true)"


def test_building_statements_does_not_import_duckdb() -> None:
    # A fresh interpreter: other tests in this process may have imported duckdb already.
    script = (
        "import json, sys\n"
        "from generator.datasets.sql import lookup_sql\n"
        "inputs, run = json.load(sys.stdin)\n"
        "q = lookup_sql(inputs, run)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('duckdb', 'pyarrow'))\n"
        "print(json.dumps({'keep': q.keep, 'heavy': heavy}))\n")
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(job(**FULL)),
                          cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    out = json.loads(done.stdout)
    assert out["keep"].startswith("CREATE OR REPLACE TEMP TABLE m AS SELECT ")
    assert out["heavy"] == []
