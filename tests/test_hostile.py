"""Hostile and careless input (issue #12): every class of it is refused at the boundary with one
line naming the file, the line and the key, in bounded time, and untrusted text never reorders
a built page.

Unit tables for the parser (milliseconds), and one end-to-end build for the page's bidi escapes.
"""

from __future__ import annotations

import contextlib
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import generate as generate_fence

from generator.errors import DirectiveError
from generator.models import Resolver
from generator.plan import parse_page
from generator.store import Store
from generator.types import Context

BIDI = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "abc" + BIDI + "fdp.exe" shows as "abcexe.pdf"
# embeddings and overrides, isolates, the marks LRM, RLM and ALM
BIDI_CONTROLS = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E,
                                  0x200F, 0x061C)]


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    """A site with the tiny model and a small Parquet dataset `t`."""
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist([
        {"key": "000000000", "URL": "https://example.com/a.jpg", "TEXT": "a portrait",
         "WIDTH": 512, "HEIGHT": 512, "aesthetic": 6.0, "punsafe": 0.1, "pwatermark": 0.1,
         "similarity": 0.3, "LANGUAGE": "en"}]), tmp_path / "data" / "t.parquet")
    return Context(tmp_path, tmp_path / "docs", Resolver({"default": "tiny"}, tmp_path),
                   Store(tmp_path / ".unmake"), {"datasets": {"t": "data/t.parquet"}})


PAGE_HEAD = "# Title\n\nProse.\n\n"  # the fence opens on line 5; its body starts on line 6


def page(kind: str, body: str) -> str:
    return f"{PAGE_HEAD}```{kind}\n{body}\n```\n"


def error_of(ctx: Context, kind: str, body: str) -> DirectiveError:
    with pytest.raises(DirectiveError) as info:
        parse_page(page(kind, body), "docs/p.md", ctx)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith("docs/p.md:"), message
    return info.value


def body_line(body: str, needle: str, nth: int = 0) -> int:
    """The page line of the nth line of a directive body holding `needle`."""
    hits = [i for i, line in enumerate(body.splitlines()) if needle in line]
    return 6 + hits[nth]


# -- 1. a key written twice ----------------------------------------------------------------------
DUPLICATES = {
    "top level": ("generate", "prompt: a\nseeds: 2\nsteps: 3\nseeds: 3", "seeds", "seeds: 3"),
    "sweep": ("generate", "prompt: a\nsweep:\n  steps: [1, 2]\n  guidance: [1, 2]\n"
                          "  steps: [3, 4]", "sweep.steps", "steps: [3, 4]"),
    "flow mapping": ("generate", "prompt: a\ngrid: {rows: prompt, rows: seed}", "grid.rows",
                     "grid:"),
    "clip set": ("measure", "of: x\nclip:\n  gender: [a man, a woman]\n  gender: [a, b]",
                 "clip.gender", "gender: [a, b]"),
    "clip labels": ("measure", "of: x\nclip:\n  gender:\n    labels: [a, b]\n    labels: [c, d]",
                    "clip.gender.labels", "labels: [c, d]"),
    "inside a list": ("dataset", "dataset: t\nfilters:\n  aesthetic: ['> 1', '< 9']\n"
                                 "sample: {n: 2, n: 3}", "sample.n", "sample:"),
    "one number two ways": ("generate", "prompt: a\n1: x\n0x1: y", "1", "0x1"),
}


@pytest.mark.parametrize("case", DUPLICATES)
def test_a_key_given_twice_is_an_error_at_its_second_line(ctx: Context, case: str) -> None:
    kind, body, key, second = DUPLICATES[case]
    err = error_of(ctx, kind, body)
    assert (err.line, err.key) == (body_line(body, second), key), str(err)
    assert "given twice" in str(err)


def test_a_merged_key_set_again_is_an_override_but_a_repeat_is_not(ctx: Context) -> None:
    merged = "sweep:\n  <<: &base {steps: [1, 2]}\n  steps: [3, 4]\nprompt: a"
    (directive,) = parse_page(page("generate", merged), "docs/p.md", ctx)
    assert directive.spec.sweep == (("steps", (3, 4)),)
    err = error_of(ctx, "generate", merged + "\nprompt: b")
    assert (err.key, err.line) == ("prompt", body_line(merged + "\nprompt: b", "prompt: b"))


# -- 2. values quoted in short; aliases bounded --------------------------------------------------
LONG = "x" * 5000
PREVIEWS = {
    "scheduler": ("generate", f"prompt: a\nscheduler: {LONG}"),
    "steps": ("generate", f"prompt: a\nsteps: '{LONG}'"),
    "guidance": ("generate", f"prompt: a\nguidance: [{LONG}]"),
    "seeds": ("generate", f"prompt: a\nseeds: {LONG}-1"),
    "sweep": ("generate", f"prompt: a\nsweep:\n  scheduler: [ddim, {LONG}]"),
    "grid": ("generate", f"prompt: a\nseeds: 2\ngrid: {{rows: {LONG}}}"),
    "a huge number": ("generate", f"prompt: a\nsteps: {'9' * 4000}"),
    "id": ("generate", f"prompt: a\nid: {LONG}"),
    "model": ("ecosystem", f"model: {LONG}"),
    "fact": ("ecosystem", f"facts: [{LONG}]"),
    "layout": ("dataset", f"dataset: t\nsample: {{layout: {LONG}}}"),
    "facet": ("dataset", f"dataset: t\nfacets: [{LONG}]"),
    "filter": ("dataset", f"dataset: t\nfilters: {{aesthetic: '> {LONG}'}}"),
    "palette": ("measure", f"of: x\npalette: {LONG}"),
    "faces": ("measure", f"of: x\nfaces: {LONG}"),
    "diversity": ("measure", f"of: x\ndiversity: {LONG}"),
    "template": ("measure", f"of: x\nclip: {{g: {{labels: [a, b], template: {LONG}}}}}"),
    "share": ("measure", f"of: x\nclip: {{g: [a, b]}}\nreference_source: s\n"
                         f"reference: {{p: {{a: {LONG}}}}}"),
    "of": ("measure", f"palette: 3\nof: [{{{LONG}: 1}}]"),
    "a long key": ("generate", f"prompt: a\n{LONG[:1000]}: 1"),  # YAML's longest plain key
    "escapes": ("generate", f'prompt: a\nscheduler: "ab{BIDI}c\\nd\\u0007{LONG}"'),
}


@pytest.mark.parametrize("case", PREVIEWS)
def test_an_error_quotes_a_long_value_in_short(ctx: Context, case: str) -> None:
    kind, body = PREVIEWS[case]
    message = str(error_of(ctx, kind, body))
    assert len(message) < 600, message
    assert "xxxx" in message or "9999" in message, message  # the value is quoted, in short
    assert "…" in message, message  # and where it was cut
    assert message.isprintable(), message  # control and bidi characters come escaped
    if case == "escapes":
        assert "'ab\\u202ec\\nd\\x07xxx" in message and "(5007 characters)" in message


@contextlib.contextmanager
def bounded_memory(limit: int = 64 * 2**20) -> Iterator[None]:
    """The block allocates at most `limit` bytes at its peak (Python allocations, traced): what
    would be materialised here (a billion values, 10^18 prompts) is far beyond it."""
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit, f"peak {peak / 2**20:.0f} MiB"


BILLION_LAUGHS = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    + ["prompt: *i"])


def test_an_alias_bomb_is_refused_in_bounded_time_at_its_line(ctx: Context) -> None:
    with bounded_memory():  # expanding it would take gigabytes (no timing: CI machines vary)
        err = error_of(ctx, "generate", BILLION_LAUGHS)
    # 9**9 "lol"s under `i`, twice (`prompt: *i`), with every list and key on the way
    assert "spells out 926177115 values once its aliases" in str(err), str(err)
    assert err.line == body_line(BILLION_LAUGHS, "e: &e")  # the first to pass the bound


def test_an_alias_inside_itself_is_refused(ctx: Context) -> None:
    err = error_of(ctx, "generate", "prompt: a\nsweep: &s {steps: [1, *s]}")
    assert "refers to the list or mapping that holds it" in str(err)
    assert err.line == 7


# -- 3. a page that is not UTF-8 -----------------------------------------------------------------
def plan_pages(ctx: Context, pages: dict[str, bytes]) -> Any:
    from generator.plugin import UnmakePlugin

    plugin = UnmakePlugin()
    plugin.cli_mode = "off"
    plugin.ctx, plugin.docs_shown = ctx, "docs"
    files = []
    for name, data in pages.items():
        path = ctx.root / "docs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files.append(SimpleNamespace(src_uri=name, abs_src_path=str(path)))
    return plugin.make_plan(SimpleNamespace(documentation_pages=lambda: files))


def test_a_page_that_is_not_utf8_is_one_error_at_its_first_bad_byte(ctx: Context) -> None:
    from mkdocs.exceptions import PluginError

    latin1 = "# Café\n\nSome prose.\nNaïve ünïcode\n".encode("latin-1")
    with pytest.raises(PluginError) as info:
        plan_pages(ctx, {"good.md": b"# Fine\n", "bad.md": latin1})
    assert str(info.value) == ("docs/bad.md:1: is not UTF-8 text: byte 0xe9 at column 6 cannot "
                               "be decoded; save the page as UTF-8")
    # a byte-order mark is not an error: it is dropped
    bom = plan_pages(ctx, {"p.md": "\ufeff# Title\n\n```generate\nprompt: a\n```\n".encode()})
    assert len(bom.jobs) == 1


def test_the_line_counts_from_the_bad_bytes_offset(ctx: Context) -> None:
    from mkdocs.exceptions import PluginError

    data = "\ufeff# Tïtle\n\nfine ü\n".encode() + b"abc \xff\n"
    with pytest.raises(PluginError, match=r"^docs/p\.md:4: .* byte 0xff at column 5 "):
        plan_pages(ctx, {"p.md": data})


# -- 4. counts checked before anything is made ---------------------------------------------------
COUNTS = {
    "a seed range": ("prompt: a\nseeds: 0-1000000000", "seeds",
                     "range '0-1000000000' holds 1000000001 seeds; at most 4096 per directive"),
    "a seed list": ("prompt: a\nseeds: [" + ", ".join(map(str, range(5000))) + "]", "seeds",
                    "lists 5000 seeds; at most 4096"),
    "2^20 prompts": ("prompt: '" + "{a|b} " * 20 + "'", "prompt",
                     "spells 1048576 prompts; at most 4096 per directive"),
    "ordered picks": ("prompt: '{12$$a|b|c|d|e|f|g|h|i|j|k|l}'", "prompt",
                      "spells 479001600 prompts"),
    "an astronomic template": ("prompt: '${x={99$$" + "a|" * 100 + "a}}" + "${x}" * 300 + "'",
                               "prompt", "spells more than 10^18 prompts"),
    "a list of templates": ("prompt: ['{a|b} {c|d} " + "{e|f} " * 10 + "', '{x|y}', z]",
                            "prompt", "spells 4099 prompts"),
}


@pytest.mark.parametrize("case", COUNTS)
def test_counts_are_arithmetic_and_true(ctx: Context, case: str) -> None:
    body, key, fragment = COUNTS[case]
    with bounded_memory():  # counted, not spelled out
        err = error_of(ctx, "generate", body)
    assert err.key == key and fragment in str(err), str(err)
    assert err.line == body_line(body, f"{key}:")


def test_the_image_count_names_its_factors(ctx: Context) -> None:
    err = error_of(ctx, "generate", "prompt: '{a|b}'\nseeds: 64\nsweep:\n  steps: [1, 2, 3]\n"
                   "  guidance: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]")
    assert str(err).endswith("asks for 4224 images (2 prompts × 64 seeds × 3 steps × "
                             "11 guidance); at most 4096 per directive"), str(err)


def test_a_template_that_makes_no_prompt_is_an_error(ctx: Context) -> None:
    err = error_of(ctx, "generate", "prompt: '{3$$a|a|b}'")
    assert "makes no prompt" in str(err) and err.key == "prompt"


# -- 5. NaN and infinity -------------------------------------------------------------------------
NOT_FINITE = {
    "guidance": ("generate", "prompt: a\nguidance: .nan", "guidance", "must be a finite number"),
    "swept guidance": ("generate", "prompt: a\nsweep:\n  guidance: [1, .NaN]", "sweep.guidance",
                       "must be a finite number, got nan"),
    "caption": ("generate", "prompt: a\ncaption: .nan", "caption", "must be text"),
    "prompt": ("generate", "prompt: -.inf", "prompt", "must be text"),
    "condition": ("dataset", "dataset: t\nfilters: {aesthetic: '> 1e999'}", "filters.aesthetic",
                  "must compare with a finite number"),
    "language": ("dataset", "dataset: t\nfilters: {language: .nan}", "filters.language",
                 "must be text"),
    "search": ("dataset", "dataset: t\nsearch: .inf", "search", "must be a word or phrase"),
}


@pytest.mark.parametrize("case", NOT_FINITE)
def test_nan_and_infinity_are_refused(ctx: Context, case: str) -> None:
    kind, body, key, fragment = NOT_FINITE[case]
    err = error_of(ctx, kind, body)
    assert err.key == key and fragment in str(err), str(err)
    assert err.line == body_line(body, key.split(".")[-1] + ":")


# -- 6. enormous prompts and bodies --------------------------------------------------------------
def test_a_prompt_over_the_limit_is_refused(ctx: Context) -> None:
    err = error_of(ctx, "generate", f"seeds: 2\nprompt: {'a' * 2001}")
    assert str(err).startswith("docs/p.md:7: generate: 'prompt' is 2001 characters long; at "
                               "most 2000 per prompt: 'aaaa"), str(err)


def test_a_negative_prompt_over_the_limit_is_refused(ctx: Context) -> None:
    err = error_of(ctx, "generate", f"prompt: a\nsweep:\n  negative: [b, {'c' * 2001}]")
    assert err.key == "sweep.negative" and "2001 characters long" in str(err)


def test_a_body_over_the_limit_is_refused_before_yaml_reads_it(ctx: Context) -> None:
    body = "prompt: a\ncaption: " + "word " * 20_001
    err = error_of(ctx, "generate", body)
    assert str(err) == ("docs/p.md:5: generate: body is 100024 characters long; at most 100000 "
                        "per directive")


# -- 7. errors point at the key they are about ---------------------------------------------------
PLACES = {
    "a missing nested key": ("dataset", "dataset: t\nfacets:\n  top: 3", "facets.by", "facets:"),
    "a nested key left empty": ("measure", "of: x\ndiversity: {}", "diversity.clusters",
                                "diversity:"),
    "a seed in a list": ("generate", "prompt: a\nseeds:\n- 1\n- -4", "seeds", "- -4"),
    "a swept value": ("generate", "prompt: a\nsweep:\n  steps:\n  - 2\n  - 999", "sweep.steps",
                      "- 999"),
    "a template in a list": ("generate", "prompt:\n- a cat\n- '{a|b'", "prompt", "- '{a|b'"),
    "clip labels": ("measure", "of: x\nclip:\n  gender:\n    template: a photo of {}\n"
                               "    labels: [a man]", "clip.gender", "labels:"),
    "a clip label": ("measure", "of: x\nclip:\n  gender:\n    labels:\n    - a man\n    - a man",
                     "clip.gender", "- a man", 1),
    "a YAML boolean key": ("generate", "prompt: a\nyes: 3", "True", "yes:"),
    "a fact": ("ecosystem", "facts:\n- card\n- licence", "facts", "- licence"),
    "a search term": ("dataset", "dataset: t\nsearch:\n  any:\n  - nurse\n  - '!!'",
                      "search.any", "- '!!'"),
}


@pytest.mark.parametrize("case", PLACES)
def test_an_error_points_at_its_key(ctx: Context, case: str) -> None:
    kind, body, key, needle, *nth = PLACES[case]
    err = error_of(ctx, kind, body)
    assert (err.key, err.line) == (key, body_line(body, needle, *nth)), str(err)


# -- 8. ids are anchors that start with a letter -------------------------------------------------
@pytest.mark.parametrize("bad", ["2x", "1990s-ads", "0"])
def test_an_id_may_not_start_with_a_digit(ctx: Context, bad: str) -> None:
    err = error_of(ctx, "generate", f"prompt: a\nid: '{bad}'")
    assert (err.key, err.line) == ("id", 7)
    assert "starting with a letter" in str(err)


# -- 9. bidirectional controls in a built page ---------------------------------------------------
def test_bidi_controls_show_as_visible_escapes_in_the_built_page(zine) -> None:
    prompt = f"a photo of a {BIDI}rotcod"
    caption = f"Isolated \u2066text\u2069 and an override: {BIDI}evil\u202c."
    z = zine({"index.md": "# Bidi\n\n" + generate_fence(prompt=prompt, caption=caption,
                                                       id="reordered") + "\n"})
    run = z.unmake("build")
    assert run.rc == 0, run.output
    html = z.html()
    assert not any(c in html for c in BIDI_CONTROLS)
    assert "a photo of a ⟨U+202E⟩rotcod" in html
    assert "Isolated ⟨U+2066⟩text⟨U+2069⟩ and an override: ⟨U+202E⟩evil⟨U+202C⟩." in html
