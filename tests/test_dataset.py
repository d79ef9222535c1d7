"""The `dataset` directive: validation with file:line, lookups in real DuckDB over Parquet the
tests make, escaping of hostile captions in the built site, frozen builds and invalidation."""

from __future__ import annotations

import html
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from generator import datasets
from generator.errors import DirectiveError
from generator.execute import execute
from generator.models import Resolver
from generator.plan import parse_page, plan_site
from generator.store import Store
from generator.types import Context

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = '"><img src=x onerror=alert(1)>'
JINJA = "{{ config }}"
EVIL_URL = 'https://cdn.evil.example/x"><svg/onload=alert(1)>.jpg'
HOSTILE_CAPTIONS = [f"Portrait of a man {SCRIPT} in a suit",
                    f"Studio portrait {BREAKOUT} of a woman",
                    f"Portrait of {JINJA} {{% raw %}} a painter"]


# -- made data ----------------------------------------------------------------------------------
def rows() -> list[dict[str, Any]]:
    """A small LAION-shaped table whose counts the tests know by construction."""
    out: list[dict[str, Any]] = []

    def add(n: int, text: str, url: str, *, w: int = 600, h: int = 800, aes: float = 6.0,
            unsafe: float | None = 0.01, wm: float = 0.1, lang: str | None = "en") -> None:
        for _ in range(n):
            i = len(out)
            out.append({"key": f"{i:09d}", "URL": url.format(i=i), "TEXT": text, "WIDTH": w,
                        "HEIGHT": h, "similarity": 0.3, "punsafe": unsafe, "pwatermark": wm,
                        "aesthetic": aes, "LANGUAGE": lang})

    add(10, "Portrait of a smiling nurse woman", "https://image.shutterstock.com/{i}.jpg",
        wm=0.8, aes=6.2)  # 0..9
    add(4, "Nurses on strike outside a hospital", "https://www.theguardian.com/{i}.jpg",
        w=1024, h=400, aes=4.5)  # 10..13
    add(6, "Portrait of a CEO man in a dark suit", "https://i.pinimg.com/{i}.jpg",
        w=1024, h=1024, aes=5.5)  # 14..19
    add(3, "Beautiful portrait, revealing", "https://nsfw.example.com/{i}.jpg",
        unsafe=0.9, aes=7.1)  # 20..22: unsafe
    add(2, "portrait with no safety score", "https://www.flickr.com/{i}.jpg",
        unsafe=None)  # 23..24
    add(8, "Ein rotes Auto vor dem Haus", "https://static.example.de/{i}.jpg", lang="de",
        w=300, h=200, aes=4.0)  # 25..32
    add(5, "Une maison au bord de la mer", "https://img.exemple.fr/{i}.jpg", lang="fr",
        aes=5.2)  # 33..37
    for caption in HOSTILE_CAPTIONS:  # 38..40
        add(1, caption, "https://evil.example/" + "x%22%3E.jpg", w=1024, h=1024)
    out[39]["URL"] = EVIL_URL
    out[40]["LANGUAGE"] = "<b>xx</b>"
    add(1, "portrait link javascript", "javascript:alert(1)")  # 41
    return out


def write_parquet(path: Path, table_rows: list[dict[str, Any]],
                  drop: tuple[str, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(table_rows)
    if drop:
        table = table.drop_columns(list(drop))
    pq.write_table(table, path)
    return path


def write_images(folder: Path, keys: list[str]) -> None:
    """img2dataset layout: <folder>/<5-digit shard>/<key>.jpg."""
    from PIL import Image

    for key in keys:
        path = folder / key[:5] / f"{key}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (int(key) * 7 % 255, 80, 120)).save(buf, "JPEG")
        path.write_bytes(buf.getvalue())


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """tmp_path/data: t.parquet (all columns), images for rows 0, 20, 38 and 39."""
    folder = tmp_path / "data"
    write_parquet(folder / "t.parquet", rows())
    write_images(folder / "images", [f"{i:09d}" for i in (0, 20, 38, 39)])
    return folder


def config(**extra: Any) -> dict[str, Any]:
    return {"datasets": {"t": {"metadata": "data/t.parquet", "images": "data/images", **extra}}}


def context(root: Path, plugin: dict[str, Any], frozen: bool = False) -> Context:
    return Context(root, root / "docs", Resolver({"default": "tiny"}, root, frozen=frozen),
                   Store(root / ".unmake"), plugin)


def fence(body: dict[str, Any] | str) -> str:
    text = body if isinstance(body, str) else yaml.safe_dump(body, sort_keys=False,
                                                             allow_unicode=True)
    return f"```dataset\n{text}```\n"


def lookup(root: Path, body: dict[str, Any], plugin: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    """Plan and run one directive; return its stored record."""
    ctx = context(root, plugin or config())
    plan = plan_site({"p.md": ("docs/p.md", "# p\n\n" + fence(body))}, ctx)
    failures = execute(plan, ctx.store, {})
    assert not failures, failures
    (job,) = plan.jobs.values()
    record = ctx.store.get(job.key)
    assert record is not None
    return record


def parse_error(root: Path, body: dict[str, Any] | str, plugin: dict[str, Any] | None = None
                ) -> str:
    text = "# title\n\nSome prose.\n\n" + fence(body)
    with pytest.raises(DirectiveError) as info:
        parse_page(text, "docs/p.md", context(root, plugin or config()))
    message = str(info.value)
    assert "\n" not in message
    return message


# -- validation ---------------------------------------------------------------------------------
def test_unknown_alias_names_the_line_and_the_known_aliases(tmp_path: Path, data: Path) -> None:
    message = parse_error(tmp_path, {"dataset": "laion"})
    assert message.startswith("docs/p.md:6: dataset: 'dataset' unknown dataset 'laion'")
    assert "(known: t)" in message


def test_missing_column_names_column_dataset_and_key_line(tmp_path: Path) -> None:
    write_parquet(tmp_path / "data/t.parquet", rows(), drop=("aesthetic",))
    body = "dataset: t\nsearch: portrait\nfilters:\n  language: en\n  aesthetic: '> 5'\n"
    message = parse_error(tmp_path, body)
    assert message.startswith("docs/p.md:10: dataset: 'filters.aesthetic' needs the column "
                              "'aesthetic', which dataset 't' (data/t.parquet) does not have")
    # facets and lens stages say which column they needed too
    message = parse_error(tmp_path, {"dataset": "t", "facets": ["language", "aesthetic"]})
    assert "'facets' facet 'aesthetic' needs the column 'aesthetic'" in message
    message = parse_error(tmp_path, {"dataset": "t", "lens": "sd-v1-improved-aesthetics"})
    assert "'lens' stage 2 of 'sd-v1-improved-aesthetics' (aesthetic score > 5.0) needs the " \
           "column 'aesthetic'" in message


def test_column_mapping_finds_a_renamed_column(tmp_path: Path) -> None:
    table = rows()
    for row in table:
        row["AESTHETIC_SCORE"] = row.pop("aesthetic")
        row["caption_v2"] = row.pop("TEXT")
    write_parquet(tmp_path / "data/t.parquet", table)
    plugin = config(columns={"TEXT": "caption_v2"})
    record = lookup(tmp_path, {"dataset": "t", "search": "portrait",
                               "filters": {"aesthetic": "> 7"}}, plugin)
    assert record["data"]["matches"] == 3
    assert record["inputs"]["columns"]["aesthetic"] == "AESTHETIC_SCORE"  # a known variant
    assert record["inputs"]["columns"]["TEXT"] == "caption_v2"  # mapped in mkdocs.yml


@pytest.mark.parametrize(("body", "line", "expected"), [
    ("dataset: t\nfilters:\n  aesthetic: about five\n", 8,
     "'filters.aesthetic' must be a comparison like \"> 5\""),
    ("dataset: t\nfilters:\n  colour: red\n", 8, "'filters.colour' is not a known condition"),
    ("dataset: t\nfilters:\n  punsafe: '< 50'\n", 8, "'filters.punsafe' is a probability"),
    ("dataset: t\nfilters:\n  domain: https://x.com/a\n", 8, "'filters.domain' must be a domain"),
    ("dataset: t\nfilters:\n  domain: co.uk\n", 8, "is a public suffix"),
    ("dataset: t\nfilters: [aesthetic]\n", 7, "'filters' must be a mapping"),
    ("dataset: t\nsearch: {every: [a]}\n", 7, "'search.every' is not a known key"),
    ("dataset: t\nsearch: '!!'\n", 7, "'search' needs at least one letter or digit"),
    ("dataset: t\nmatch: words\n", 7, "'match' applies to 'search:'"),
    ("dataset: t\nsearch: a\nmatch: regex\n", 8, "'match' must be one of words, substring"),
    ("dataset: t\nfacets: [colour]\n", 7, "'facets' must list facets from domain"),
    ("dataset: t\nsample: {n: 0}\n", 7, "'sample.n' must be 1–500"),
    ("dataset: t\nsample: 501\n", 7, "'sample' must be 1–500"),
    ("dataset: t\nsample: {count: 3}\n", 7, "'sample.count' is not a known key"),
    ("dataset: t\nlens: sd\n", 7, "'lens' unknown filter chain 'sd' (known: "
     "sd-v1-improved-aesthetics)"),
    ("dataset: t\nsampel: 3\n", 7, "'sampel' is not a known key"),
])
def test_bad_directives_give_one_line_with_file_line_and_key(
        tmp_path: Path, data: Path, body: str, line: int, expected: str) -> None:
    message = parse_error(tmp_path, body)
    assert message.startswith(f"docs/p.md:{line}: dataset: "), message
    assert expected in message


def test_with_images_needs_an_image_folder(tmp_path: Path, data: Path) -> None:
    plugin = {"datasets": {"t": {"metadata": "data/t.parquet"}}}
    message = parse_error(tmp_path, {"dataset": "t", "sample": {"n": 2, "with_images": True}},
                          plugin)
    assert "'sample.with_images' dataset 't' declares no local images" in message


def test_malformed_parquet_is_one_line_with_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "data/t.parquet"
    bad.parent.mkdir()
    bad.write_bytes(b"PAR1 this is not parquet at all")
    message = parse_error(tmp_path, {"dataset": "t"})
    assert message.startswith("docs/p.md:6: dataset: 'dataset' ")
    assert f"{bad}: not a readable Parquet file" in message


@pytest.mark.parametrize(("entry", "expected"), [
    ({"metadata": "data/t.parquet", "hotlink": "yes"},
     "mkdocs.yml: plugins.unmake.datasets.t.hotlink: must be true or false"),
    ({"metadata": "data/t.parquet", "colums": {}},
     "mkdocs.yml: plugins.unmake.datasets.t.colums: is not a known key"),
    ({"metadata": "data/t.parquet", "unsafe_threshold": 5},
     "mkdocs.yml: plugins.unmake.datasets.t.unsafe_threshold: must be a number in 0–1"),
    ({"metadata": "data/t.parquet", "columns": {"score": "x"}},
     "mkdocs.yml: plugins.unmake.datasets.t.columns.score: is not a LAION column"),
    ({"metadata": 3}, "mkdocs.yml: plugins.unmake.datasets.t.metadata: must be a Parquet file"),
    ({"metadata": "data/none.parquet"},
     "mkdocs.yml: plugins.unmake.datasets.t.metadata: data/none.parquet not found"),
])
def test_bad_dataset_config_names_the_key_in_mkdocs_yml(
        tmp_path: Path, data: Path, entry: dict[str, Any], expected: str) -> None:
    message = parse_error(tmp_path, {"dataset": "t"}, {"datasets": {"t": entry}})
    assert message.startswith("docs/p.md:")
    assert expected in message


def test_bad_filter_chain_names_the_stage(tmp_path: Path, data: Path) -> None:
    chains = {"mine": {"stages": [{"size": ">= 512"}, {"label": "pretty", "aesthetic": "nice"}]}}
    message = parse_error(tmp_path, {"dataset": "t", "lens": "mine"},
                          {**config(), "filter_chains": chains})
    assert ("mkdocs.yml: plugins.unmake.filter_chains.mine.stages[1].aesthetic: must be a "
            "comparison") in message


def test_a_site_without_dataset_directives_reads_no_dataset_config(tmp_path: Path) -> None:
    ctx = context(tmp_path, {"datasets": {"broken": {"metadata": 3}}})
    plan = plan_site({"p.md": ("docs/p.md", "# just prose\n")}, ctx)
    assert not plan.jobs
    assert "_unmake_datasets" not in vars(ctx)


# -- lookups ------------------------------------------------------------------------------------
def test_totals_facets_and_lens(tmp_path: Path, data: Path) -> None:
    record = lookup(tmp_path, {"dataset": "t", "search": "portrait",
                               "facets": ["domain", "language", "aesthetic", "size"],
                               "lens": "sd-v1-improved-aesthetics"})
    d = record["data"]
    # portrait: rows 0-9, 14-19, 20-22, 23-24, 38-41 (the hostile ones say "portrait" too)
    assert (d["total"], d["matches"]) == (42, 25)
    domains = dict(map(tuple, d["facets"]["domain"]["rows"]))
    assert domains["shutterstock.com"] == 10  # image.shutterstock.com -> registered domain
    assert domains["pinimg.com"] == 6
    assert domains["evil.example"] == 3  # evil.example and cdn.evil.example
    assert d["facets"]["domain"]["missing"] == 1  # the javascript: URL has no host
    languages = dict(map(tuple, d["facets"]["language"]["rows"]))
    assert languages == {"en": 24, "<b>xx</b>": 1}
    assert dict(map(tuple, d["facets"]["aesthetic"]["rows"])) == {
        "5–6": 6, "6–7": 16, "7–8": 3}
    sizes = dict(map(tuple, d["facets"]["size"]["rows"]))
    assert sizes == {"512–767": 16, "≥ 1024": 9}
    # size >= 512 keeps all 25; aesthetic > 5 keeps all 25; pwatermark < 0.5 drops the 10
    # shutterstock rows
    assert [s["count"] for s in d["lens"]["stages"]] == [25, 25, 15]


def test_search_any_all_none_words_and_substrings(tmp_path: Path, data: Path) -> None:
    def matches(body: dict[str, Any]) -> int:
        return lookup(tmp_path, {"dataset": "t", **body})["data"]["matches"]

    assert matches({"search": "nurse"}) == 10  # whole words: not "Nurses"
    assert matches({"search": "nurse*"}) == 14
    assert matches({"search": "nurse", "match": "substring"}) == 14
    assert matches({"search": ["nurse", "ceo"]}) == 16
    assert matches({"search": {"all": ["portrait", "suit"]}}) == 7  # 6 CEOs + the script row
    assert matches({"search": {"any": ["portrait"], "none": ["suit", "nurse"]}}) == 8
    assert matches({"search": "DARK   suit"}) == 6  # a phrase, any case, any spacing
    assert matches({"search": "<script>"}) == 1  # punctuation is literal, not regex
    assert matches({"search": "o'brien\"; drop table m; --"}) == 0
    assert matches({"filters": {"language": ["DE", "fr"]}}) == 13
    assert matches({"filters": {"domain": "shutterstock.com"}}) == 10
    assert matches({"filters": {"aesthetic": [">= 5", "< 6"], "size": ">= 512"}}) == 11
    assert matches({"filters": {"width": 1024, "height": "!= 1024"}}) == 4


def test_equal_queries_share_a_key(tmp_path: Path, data: Path) -> None:
    ctx = context(tmp_path, config())
    page = fence({"dataset": "t", "search": ["b", "A"], "facets": ["size", "domain"],
                  "filters": {"language": "en", "aesthetic": "> 5"}})
    same = fence({"dataset": "t", "search": ["a", "b"], "facets": ["domain", "size"],
                  "filters": {"aesthetic": ">5", "language": ["EN"]}})
    plan = plan_site({"a.md": ("a.md", page), "b.md": ("b.md", same)}, ctx)
    assert len(plan.jobs) == 1


def test_sample_is_seeded_holds_back_unsafe_rows_and_counts_them(tmp_path: Path,
                                                                 data: Path) -> None:
    body = {"dataset": "t", "search": "portrait", "sample": {"n": 30, "seed": 3}}
    d = lookup(tmp_path, body)["data"]
    keys = [r["key"] for r in d["sample"]["rows"]]
    assert d["held_back"] == 3 and d["punsafe_unknown"] == 2
    assert d["sample"]["eligible"] == 22 == len(keys)
    assert not {"000000020", "000000021", "000000022"} & set(keys)
    # the same seed gives the same rows in the same order (run afresh); another seed another
    shutil.rmtree(tmp_path / ".unmake")
    assert [r["key"] for r in lookup(tmp_path, body)["data"]["sample"]["rows"]] == keys
    other = lookup(tmp_path, {**body, "sample": {"n": 30, "seed": 4}})["data"]["sample"]["rows"]
    assert sorted(r["key"] for r in other) == sorted(keys)
    assert [r["key"] for r in other] != keys
    # a smaller sample is the start of the larger one
    small = lookup(tmp_path, {**body, "sample": {"n": 5, "seed": 3}})["data"]["sample"]["rows"]
    assert [r["key"] for r in small] == keys[:5]
    # opting in shows the unsafe rows
    d = lookup(tmp_path, {**body, "sample": {"n": 30, "seed": 3, "include_unsafe": True}})
    assert {"000000020", "000000021", "000000022"} <= {
        r["key"] for r in d["data"]["sample"]["rows"]}


def test_sample_carries_local_images_as_files(tmp_path: Path, data: Path) -> None:
    record = lookup(tmp_path, {"dataset": "t", "search": "portrait",
                               "sample": {"n": 10, "with_images": True,
                                          "include_unsafe": True}})
    rows_ = record["data"]["sample"]["rows"]
    assert sorted(r["key"] for r in rows_) == ["000000000", "000000020", "000000038",
                                               "000000039"]
    for row in rows_:
        assert row["image"] in record["files"]
        assert record["files"][row["image"]]["ext"] == "jpg"
    assert record["data"]["sample"]["eligible"] == 4


def test_cooccurrence_counts_captions_and_leaves_out_the_query(tmp_path: Path,
                                                               data: Path) -> None:
    d = lookup(tmp_path, {"dataset": "t", "search": "nurse*", "cooccurrence": 10})["data"]
    c = d["cooccurrence"]
    assert c["docs"] == c["of"] == 14
    words = dict(map(tuple, c["words"]))
    assert words["portrait"] == 10 and words["woman"] == 10 and words["strike"] == 4
    assert "nurse" not in words and "nurses" not in words and "of" not in words
    bigrams = dict(map(tuple, c["bigrams"]))
    assert bigrams["nurse woman"] == 10 and bigrams["smiling nurse"] == 10
    capped = lookup(tmp_path, {"dataset": "t", "search": "nurse*",
                               "cooccurrence": {"top": 5, "max_rows": 3}})["data"]
    assert capped["cooccurrence"]["docs"] == 3


def test_a_dataset_over_several_files_with_different_columns(tmp_path: Path) -> None:
    table = rows()
    write_parquet(tmp_path / "data/a.parquet", table[:20])
    write_parquet(tmp_path / "data/b.parquet", table[20:], drop=("pwatermark",))
    plugin = {"datasets": {"t": {"metadata": ["data/a.parquet", "data/b*.parquet"]}}}
    d = lookup(tmp_path, {"dataset": "t", "search": "portrait",
                          "filters": {"pwatermark": "< 0.5"}}, plugin)["data"]
    assert d["total"] == 42
    assert d["matches"] == 6  # only a.parquet has pwatermark; missing values do not pass


def test_domain_parsing_makes_no_network_call(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    datasets.extractor.cache_clear()
    datasets.registered_domain.cache_clear()
    assert datasets.registered_domain("a.b.example.co.uk") == "example.co.uk"
    assert datasets.domain_of("https://user@Image.Shutterstock.com:443/x.jpg") == \
        "shutterstock.com"
    assert datasets.domain_of("not a url") == ""


# -- whole builds -------------------------------------------------------------------------------
PAGE = "# Data\n\n" + fence({
    "id": "everything", "dataset": "t", "search": "portrait",
    "facets": ["domain", "language", "aesthetic", "size"], "cooccurrence": 20,
    "sample": {"n": 30, "with_images": False}, "lens": "sd-v1-improved-aesthetics",
    "caption": "Everything about portraits.",
}) + "\n" + fence({
    "id": "table", "dataset": "t", "search": "portrait",
    "sample": {"n": 30, "layout": "table"},
}) + "\n" + fence({
    "id": "pictures", "dataset": "t", "search": "portrait",
    "sample": {"n": 10, "with_images": True},
})


def write_zine(root: Path, pages: dict[str, str], plugin: dict[str, Any]) -> Path:
    mkdocs = {
        "site_name": "dataset test", "docs_dir": "docs", "site_dir": "site",
        "theme": {"name": "material", "font": False},
        "plugins": [{"glightbox": {"skip_classes": ["off-glb"]}},
                    {"unmake": {"store": ".unmake", "models": {"default": "tiny"}, **plugin}}],
    }
    (root / "mkdocs.yml").write_text(yaml.safe_dump(mkdocs, sort_keys=False), "utf-8")
    for name, text in pages.items():
        (root / "docs").mkdir(exist_ok=True)
        (root / "docs" / name).write_text(text, "utf-8")
    return root


def unmake(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNMAKE_")}
    env["NO_MKDOCS_2_WARNING"] = "1"
    return subprocess.run([sys.executable, "-m", "generator.cli", *args], cwd=root, env=env,
                          capture_output=True, text=True, check=False, timeout=300)


def summary(run: subprocess.CompletedProcess[str]) -> str:
    found = re.findall(r"(\d+ jobs?: \d+ cached, \d+ to run)", run.stderr + run.stdout)
    assert found, run.stderr
    return found[-1]


class Parsed(HTMLParser):
    """A page as a browser tokenises it: elements with their attributes, text by element."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.stack: list[str] = []
        self.texts: list[tuple[tuple[str, ...], str]] = []  # (open elements, text)
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in ("img", "br", "meta", "link", "input", "rect", "path", "hr"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        self.texts.append((tuple(self.stack), data))

    def text_in(self, tag: str) -> list[str]:
        return [text for stack, text in self.texts if tag in stack]


def test_hostile_captions_render_as_text_everywhere(tmp_path: Path, data: Path) -> None:
    write_zine(tmp_path, {"index.md": PAGE}, config())
    run = unmake(tmp_path, "build")
    assert run.returncode == 0, run.stderr
    for page in (tmp_path / "site").rglob("*.html"):
        parsed = Parsed(page.read_text("utf-8"))
        # nothing from the data became markup: no event handler, no injected element or script
        for tag, attrs in parsed.tags:
            assert not [a for a in attrs if a.startswith("on")], (page, tag, attrs)
            assert tag != "b"
            assert not attrs.get("href", "").lower().startswith("javascript:")
        assert not any("alert(1)" in t for t in parsed.text_in("script"))
    page = Parsed((tmp_path / "site/index.html").read_text("utf-8"))
    text = "".join(t for _, t in page.texts)
    # each hostile caption is there as the text it is: in the sample grid and the sample table
    for caption in HOSTILE_CAPTIONS:
        cells = [t for t in page.text_in("td") if t == caption]
        grid = [t for stack, t in page.texts if t == caption and "p" in stack]
        assert cells and grid, caption
    # GLightbox inserts data-title as HTML, so it holds the caption escaped once more
    titles = [a["data-title"] for t, a in page.tags if t == "a" and "data-title" in a]
    for caption in HOSTILE_CAPTIONS[:2]:  # the two with local images
        (title,) = {t for t in titles if html.unescape(t) == caption}
        assert "<" not in title and ">" not in title
    alts = [a["alt"] for t, a in page.tags if t == "img"]
    assert HOSTILE_CAPTIONS[0] in alts
    # SVG chart labels (facets, co-occurring words) and table cells: as text
    svg_text = page.text_in("svg")
    assert "<b>xx</b>" in svg_text  # a language facet bar
    assert "script" in svg_text and "onerror" in svg_text  # co-occurring words
    assert "<b>xx</b>" in page.text_in("td")
    # the URL that breaks out of an attribute stays inside its href; javascript: is no link
    hrefs = [a["href"] for t, a in page.tags if t == "a" and "rel" in a]
    assert EVIL_URL in hrefs
    urls = {row["URL"] for row in rows()}
    data_links = [a for t, a in page.tags if t == "a" and a.get("href") in urls]
    assert len(data_links) >= 20
    assert all(a["rel"] == "nofollow noopener noreferrer" for a in data_links)
    # no remote image is hotlinked; the local images are published from the store
    srcs = [a["src"] for t, a in page.tags if t == "img" and "src" in a]
    assert srcs and all(s.startswith("assets/unmake/data/") for s in srcs)
    for src in srcs:
        assert (tmp_path / "site" / src).is_file()
    assert "3 matching rows with punsafe above 0.5" in " ".join(text.split())
    assert JINJA in text


def test_errors_stop_the_build_with_one_line(tmp_path: Path, data: Path) -> None:
    write_zine(tmp_path, {"index.md": "# x\n\n" + fence({"dataset": "laoin"})}, config())
    run = unmake(tmp_path, "build")
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if "laoin" in line]
    assert len(errors) == 1
    assert "docs/index.md:4: dataset: 'dataset' unknown dataset 'laoin' (known: t)" in errors[0]


def test_frozen_build_renders_from_the_store_without_the_data(tmp_path: Path,
                                                              data: Path) -> None:
    write_zine(tmp_path, {"index.md": PAGE}, config())
    assert unmake(tmp_path, "build").returncode == 0
    built = (tmp_path / "site/index.html").read_text("utf-8")
    shutil.move(data, tmp_path / "elsewhere")
    shutil.rmtree(tmp_path / "site")
    run = unmake(tmp_path, "build", "--frozen")
    assert run.returncode == 0, run.stderr
    assert "3 jobs: 3 cached, 0 to run" in summary(run)
    html = (tmp_path / "site/index.html").read_text("utf-8")
    strip = re.compile(r"<dd>made with.*?</dd>|looked up [^<]*", re.S)
    assert strip.sub("", html) == strip.sub("", built)
    for src in re.findall(r'<img[^>]* src="([^"]*)"', html):
        assert (tmp_path / "site" / src).is_file()
    # a plain build without the data says which file is missing, in one line
    run = unmake(tmp_path, "build")
    assert run.returncode != 0
    assert "plugins.unmake.datasets.t.metadata: data/t.parquet not found" in run.stderr


def test_changing_a_dataset_reruns_exactly_its_lookups(tmp_path: Path, data: Path) -> None:
    write_parquet(data / "u.parquet", rows()[:20])
    plugin = {"datasets": {"t": {"metadata": "data/t.parquet"},
                           "u": {"metadata": "data/u.parquet"}}}
    pages = {"a.md": "# a\n\n" + fence({"dataset": "t", "search": "portrait"})
             + fence({"dataset": "t", "search": "nurse*", "facets": ["domain"]}),
             "b.md": "# b\n\n" + fence({"dataset": "u", "search": "portrait"})}
    write_zine(tmp_path, pages, plugin)
    assert summary(unmake(tmp_path, "build")) == "3 jobs: 0 cached, 3 to run"
    store = Store(tmp_path / ".unmake")
    before = {r["key"]: r["run"]["dataset"] for r in store.records()}
    assert sorted(before.values()) == ["t", "t", "u"]
    assert "nothing to run" in unmake(tmp_path, "build").stderr

    table = rows()
    table[0]["TEXT"] = "Portrait of a smiling doctor"
    write_parquet(data / "t.parquet", table)
    run = unmake(tmp_path, "build")
    assert summary(run) == "3 jobs: 1 cached, 2 to run"
    after = {r["key"]: r["run"]["dataset"] for r in Store(tmp_path / ".unmake").records()}
    new = {k: v for k, v in after.items() if k not in before}
    assert sorted(new.values()) == ["t", "t"]
    nurse = [r for r in Store(tmp_path / ".unmake").records()
             if r["key"] in new and r["inputs"]["query"]["search"]["any"] == ["nurse*"]]
    assert nurse[0]["data"]["matches"] == 13


def test_the_fingerprint_memo_lets_a_frozen_plan_find_the_keys(tmp_path: Path,
                                                               data: Path) -> None:
    ctx = context(tmp_path, config())
    body = "# p\n\n" + fence({"dataset": "t", "search": "portrait", "sample": 2})
    first = plan_site({"p.md": ("p.md", body)}, ctx)
    memo = json.loads((tmp_path / ".unmake/memo/datasets.json").read_text("utf-8"))
    assert any(entry["fingerprint"].startswith("parquet:") for entry in memo["entries"].values())
    shutil.rmtree(data)
    frozen = plan_site({"p.md": ("p.md", body)}, context(tmp_path, config(), frozen=True))
    assert set(frozen.jobs) == set(first.jobs)
    with pytest.raises(DirectiveError, match="not found"):
        plan_site({"p.md": ("p.md", body)}, context(tmp_path, config()))


def test_malformed_parquet_stops_the_build_with_one_line(tmp_path: Path, data: Path) -> None:
    (data / "t.parquet").write_bytes(b"not parquet")
    write_zine(tmp_path, {"index.md": "# x\n\n" + fence({"dataset": "t", "search": "a"})},
               config())
    run = unmake(tmp_path, "build")
    assert run.returncode != 0
    (line,) = [x for x in run.stderr.splitlines() if "t.parquet" in x]
    assert "docs/index.md:4: dataset: 'dataset' " in line
    assert "not a readable Parquet file" in line


def test_damaged_parquet_pages_fail_the_lookup_in_a_failure_box(tmp_path: Path) -> None:
    table = rows() * 200
    path = write_parquet(tmp_path / "data/t.parquet", table)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 4: len(blob) // 4 + 64] = b"\xff" * 64  # a data page; the footer reads
    path.write_bytes(bytes(blob))
    write_zine(tmp_path, {"index.md": "# x\n\n" + fence({"dataset": "t", "search": "portrait",
                                                          "facets": ["domain"]})},
               {"datasets": {"t": {"metadata": "data/t.parquet"}}})
    run = unmake(tmp_path, "build")
    assert run.returncode != 0
    assert re.search(r"docs/index.md:3: DatasetError: dataset 't': DuckDB: ", run.stderr)
    # site/ is left as it was; the failed build, failure box and all, is kept aside
    assert not (tmp_path / "site").exists()
    assert ".unmake/failed-site/" in run.stderr
    assert "unmake-failure" in (tmp_path / ".unmake/failed-site/index.html").read_text("utf-8")


def test_a_missing_image_folder_is_named_with_the_directive(tmp_path: Path, data: Path) -> None:
    shutil.rmtree(data / "images")
    ctx = context(tmp_path, config())
    with pytest.raises(DirectiveError) as info:
        plan_site({"p.md": ("docs/p.md", "# p\n\n" + fence({"dataset": "t", "sample": 3}))},
                  ctx)
    assert str(info.value).startswith("docs/p.md:3: dataset: 'sample' mkdocs.yml: "
                                      "plugins.unmake.datasets.t.images: folder ")


@pytest.mark.browser
def test_in_a_browser_hostile_captions_stay_text_and_nothing_is_fetched(tmp_path: Path,
                                                                        data: Path) -> None:
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        if os.environ.get("UNMAKE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests are required here, but {chromium} is missing")
        pytest.skip(f"{chromium} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    write_zine(tmp_path, {"index.md": PAGE}, config())
    assert unmake(tmp_path, "build").returncode == 0
    seen: dict[str, list[str]] = {"requests": [], "dialogs": [], "errors": []}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.on("request", lambda r: seen["requests"].append(r.url))
        page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: seen["errors"].append(str(e)))
        page.goto((tmp_path / "site/index.html").as_uri(), wait_until="load")
        for img in page.locator("img.off-glb").all():
            img.scroll_into_view_if_needed()
        for caption in HOSTILE_CAPTIONS[:2]:  # the two with local pictures open in the lightbox
            anchor = page.locator("#pictures a.glightbox").filter(
                has=page.locator(f'img[alt="{caption.replace(chr(34), chr(92) + chr(34))}"]'))
            anchor.click()
            title = page.locator(".glightbox-container .gslide.current .gslide-title")
            title.wait_for(state="visible")
            assert title.inner_text() == caption
            assert page.locator(".glightbox-container script, img[src='x']").count() == 0
            page.keyboard.press("Escape")
            page.locator(".glightbox-container").wait_for(state="detached")
        svg_labels = page.locator("svg.unmake-bar text").all_text_contents()
        assert "<b>xx</b>" in svg_labels
        browser.close()
    assert seen["dialogs"] == [] and seen["errors"] == []
    assert [u for u in seen["requests"] if not u.startswith(("file:", "data:", "blob:"))] == []


def test_cooccurrence_without_a_search_counts_every_caption(tmp_path: Path, data: Path) -> None:
    d = lookup(tmp_path, {"dataset": "t", "filters": {"language": "de"},
                          "cooccurrence": 3})["data"]["cooccurrence"]
    assert d["docs"] == 8 and d["left_out"] == []
    assert d["words"] == [["auto", 8], ["dem", 8], ["haus", 8]]  # "ein" is a stopword
    assert d["bigrams"] == [["auto vor", 8], ["dem haus", 8], ["rotes auto", 8]]


def test_hotlinking_shows_remote_images_only_when_the_dataset_opts_in(tmp_path: Path,
                                                                     data: Path) -> None:
    page = "# x\n\n" + fence({"dataset": "t", "search": "portrait",
                              "sample": {"n": 30, "include_unsafe": True}})
    write_zine(tmp_path, {"index.md": page}, config(hotlink=True))
    assert unmake(tmp_path, "build").returncode == 0
    parsed = Parsed((tmp_path / "site/index.html").read_text("utf-8"))
    srcs = [a["src"] for t, a in parsed.tags if t == "img"]
    remote = [s for s in srcs if not s.startswith("assets/")]
    assert len(remote) == 25 - 4 - 1  # not those with a local picture, not javascript:
    assert all(s.startswith("https://") for s in remote)
    assert all(a.get("referrerpolicy") == "no-referrer"
               for t, a in parsed.tags if t == "img" and a["src"] in remote)
