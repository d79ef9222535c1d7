"""Fuzzing every registered directive kind: whatever an author writes, a page either plans or
stops with exactly one DirectiveError naming the file, the line and (for anything but a
whole-body problem) the key, on one line, in bounded time. Never another exception.

Bodies are random YAML of random shapes and sizes: each kind's own keys, near misses of them and
strangers; nested lists and mappings; hostile text (bidirectional controls, control characters,
prompt templates, thousands of characters), huge numbers, NaN and infinity; and raw edits of
the YAML text (a line written twice, aliases, tabs, a cut). A small Parquet dataset `t` and a
`generate` figure `work` exist, so `dataset` and `measure` bodies get past their first key.

500 examples per kind in CI (about 3 s each); UNMAKE_FUZZ_EXAMPLES=10000 runs more, with a
random seed instead of the fixed one.
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator import datasets as ds
from generator.errors import DirectiveError
from generator.instruments import INSTRUMENTS
from generator.kinds import KINDS
from generator.kinds import generate as generate_kind
from generator.models import Resolver
from generator.plan import parse_page, plan_site
from generator.specs import Body
from generator.store import Store
from generator.types import Context

EXAMPLES = int(os.environ.get("UNMAKE_FUZZ_EXAMPLES", "500"))
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=3),
                derandomize="UNMAKE_FUZZ_EXAMPLES" not in os.environ, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])

SOURCE = ("# The figure measured\n\n```generate\nid: work\nprompt: a photo of a {doctor|nurse}\n"
          "seeds: 2\nsteps: 2\nsize: 32\n```\n")
PAGE_HEAD = "# Title\n\nSome prose.\n\n"
# errors about a whole body, not one key: the only ones that may come without a key
WHOLE_BODY = ("YAML error", "body must be a YAML mapping", "body is ", "spells out ",
              "nests lists and mappings", "an alias (*name)", "measures nothing",
              "asks for ", "fence opened here is never closed")

# A small valid body of each kind, to ask its parser which keys it reads; a kind added later
# without an example is fuzzed with strangers' keys and every other kind's.
VALID: dict[str, str] = {
    "generate": "prompt: a {b|c}\nseeds: 2",
    "ecosystem": "model: default",
    "dataset": "dataset: t\nsearch: portrait",
    "measure": "of: work\nclip: {gender: [a man, a woman]}\npalette: 3\nfaces: true\n"
               "diversity: true\nreference: {doctor: {a woman: 0.38}}\nreference_source: s",
    "trail": "seeds: 2\nsteps:\n  - {prompt: a fox, note: '*n*', guidance: 3}\n"
             "  - {prompt: a red fox}",
    "iterate": "of: work\nrounds: 2\nstrength: 0.5\nseed: 3\nprompt: a fox\nsteps: 4",
    "attend": "of: work\nwords: [doctor, nurse]",
}
NESTED: dict[str, tuple[Any, ...]] = {
    "sweep": generate_kind.SWEEPABLE, "grid": ("rows", "cols"),
    "clip": ("gender", "labels", "template"), "reference": ("doctor", "nurse", "a woman"),
    "sample": ("n", "seed", "layout", "with_images", "include_unsafe"),
    "facets": ("by", "top"), "cooccurrence": ("top", "max_rows"),
    "filters": ds.config.CONDITION_FIELDS, "search": ("all", "any", "none"),
    "diversity": ("clusters",),
}
WORDS = ("default", "tiny", "t", "tiny-clip", "work", "prompt", "seed", "model", "figure",
         "steps", "guidance", "size", "ddim", "euler_a", "domain", "language", "aesthetic",
         "a man", "a woman", "doctor", "nurse", "pipeline", "card", "grid", "table", "portrait",
         "sd-v1-improved-aesthetics", "shutterstock.com", "en", "a photo of {}", "true")
HOSTILE = ("\u202e", "\u2066", "\u200f", "\u061c", "\x00", "\x07", "\x1b[31m", "\r", "\n",
           "\t", "\u2028", "\ufeff", "{", "}", "|", "$$", "__", "${", "~", "@", "#", ": ",
           "```", "*", "&", "!", "%", "<script>", "{{ config }}", "'", '"', "\\", "é", "…")
NUMBER_TEXT = ("0-1000000000", "100-107", "9-3", "-1-5", "0-4095", "> 5", ">= 512", "< 0.5",
               "!= 0", "> 1e999", "nan", ".inf", "1e309", "0x10", "1_000", "12:30")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Context:
    """A project with the tiny model, tiny-clip and a one-shard dataset `t`, warmed up."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "data").mkdir()
    pq.write_table(pa.Table.from_pylist([
        {"key": f"{i:09d}", "URL": f"https://img.example.com/{i}.jpg", "TEXT": f"a portrait {i}",
         "WIDTH": 512 + i, "HEIGHT": 640, "aesthetic": 5.0 + i / 10, "punsafe": 0.1,
         "pwatermark": 0.2, "similarity": 0.3, "LANGUAGE": "en"} for i in range(8)]),
        root / "data" / "t.parquet")
    ctx = Context(root, root / "docs", Resolver({"default": "tiny"}, root),
                  Store(root / ".unmake"), {"datasets": {"t": "data/t.parquet"}})
    for kind, body in VALID.items():  # every valid example plans: the fuzz starts from there
        plan_site({"src.md": ("docs/src.md", SOURCE),
                   "p.md": ("docs/p.md", page(kind, body))}, fresh(ctx))
    return ctx


def fresh(ctx: Context) -> Context:
    """A context for one example: the site's models, store and caches, no planned figures."""
    return Context(ctx.root, ctx.docs_dir, ctx.resolver, ctx.store, ctx.config, ctx.cache)


def page(kind: str, body: str) -> str:
    return f"{PAGE_HEAD}```{kind}\n{body}\n```\n"


def known_keys(kind: str) -> list[str]:
    from generator.directives import Directive, parse_body

    keys: set[str] = set()
    for other, text in VALID.items():
        keys |= set(parse_body(Directive(other, "p.md", 1, 9, text)).data)
    body = Body(dict(parse_body(Directive(kind, "p.md", 1, 9, VALID.get(kind, ""))).data), 1)
    ctx = Context(Path("."), Path("docs"), Resolver({"default": "tiny"}, Path(".")),
                  Store(Path(".unmake-fuzz-keys")), {})
    with contextlib.suppress(Exception):  # the keys it asked for before it stopped count too
        KINDS[kind].parse(body, ctx)
    return sorted(keys | body.used | {"id", "caption", "of", *INSTRUMENTS})


def near_misses(word: str) -> st.SearchStrategy[str]:
    """`seed` for `seeds`, `Steps`, `step s`, `stepss`: what a hurried author types."""
    return st.one_of(
        st.integers(0, max(0, len(word) - 1)).map(lambda i: word[:i] + word[i + 1:]),
        st.integers(0, max(0, len(word) - 2)).map(
            lambda i: word[:i] + word[i + 1:i + 2] + word[i:i + 1] + word[i + 2:]),
        st.just(word.capitalize()), st.just(word + "s"), st.just(word.replace("_", "-")),
        st.just(f" {word}"), st.just(word + "\u200f"))


def text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(WORDS), st.sampled_from(NUMBER_TEXT), st.text(max_size=40),
        st.lists(st.sampled_from(HOSTILE + WORDS), max_size=12).map("".join),
        st.builds(lambda piece, n: piece * n,
                  st.sampled_from(("{a|b} ", "x", "\u202e", "{2$$a|b|c}", "word ", "{")),
                  st.integers(0, 2100)),
        st.builds(lambda *parts: "".join(parts), st.sampled_from(WORDS), st.sampled_from(HOSTILE),
                  st.sampled_from(WORDS)),
        st.builds(lambda k, n, m: f"${{x={{{k}$$" + "a|" * n + "b}}" + "${x}" * m,
                  st.integers(0, 120), st.integers(0, 120), st.integers(0, 400)))


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(), text(),
        st.integers(-5, 5000), st.integers(), st.integers(-2**70, 2**70),
        st.sampled_from((0, 1, 2, 12, 150, 151, 4096, 4097, 2**31, 2**63, 10**300)),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from((0.5, 0.38, 7.5, float("nan"), float("inf"), -float("inf"), 1e308)))


def plausible(values: st.SearchStrategy[Any]) -> dict[str, st.SearchStrategy[Any]]:
    """Values near what each key takes, so parsers get past their first check."""
    words = st.one_of(st.sampled_from(WORDS), text())
    number = st.one_of(scalars(), st.sampled_from(NUMBER_TEXT))
    return {
        "prompt": st.one_of(words, st.lists(words, max_size=5)),
        "seeds": st.one_of(number, st.lists(number, max_size=6)),
        "sweep": st.dictionaries(st.sampled_from(generate_kind.SWEEPABLE),
                                 st.lists(st.one_of(number, words), max_size=4), max_size=3),
        "grid": st.dictionaries(st.sampled_from(("rows", "cols")),
                                st.sampled_from(generate_kind.AXES), max_size=2),
        "clip": st.dictionaries(words, st.one_of(
            st.lists(words, max_size=4),
            st.fixed_dictionaries({"labels": st.lists(words, max_size=4)},
                                  optional={"template": words})), max_size=3),
        "reference": st.dictionaries(words, st.dictionaries(words, number, max_size=3),
                                     max_size=3),
        "filters": st.dictionaries(st.sampled_from(ds.config.CONDITION_FIELDS), st.one_of(
            number, words, st.lists(st.one_of(number, words), max_size=3)), max_size=3),
        "search": st.one_of(words, st.lists(words, max_size=3), st.dictionaries(
            st.sampled_from(("all", "any", "none")), st.one_of(words, st.lists(words)),
            max_size=3)),
        "sample": st.one_of(number, st.dictionaries(st.sampled_from(NESTED["sample"]),
                                                    st.one_of(number, words), max_size=4)),
        "facets": st.one_of(st.lists(st.sampled_from((*ds.FACETS, "colour")), max_size=4),
                            st.dictionaries(st.sampled_from(("by", "top")),
                                            st.one_of(number, st.lists(words)), max_size=2)),
        "cooccurrence": st.one_of(number, st.dictionaries(
            st.sampled_from(("top", "max_rows")), number, max_size=2)),
        "diversity": st.one_of(st.booleans(), st.dictionaries(st.just("clusters"), number)),
        "models": st.lists(words, max_size=9),
        "facts": st.lists(words, max_size=4),
        "of": st.one_of(words, st.lists(words, max_size=3)),
    }


def bodies(kind: str) -> st.SearchStrategy[str]:
    keys = known_keys(kind)
    nested = sorted({str(k) for ks in NESTED.values() for k in ks})
    key = st.one_of(st.sampled_from(keys), st.sampled_from(keys).flatmap(near_misses),
                    st.text(max_size=12), st.integers(-3, 3), st.booleans())
    inner_key = st.one_of(st.sampled_from(nested), st.sampled_from(WORDS), key)
    values = st.recursive(scalars(), lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(inner_key, children, max_size=5)), max_leaves=25)
    near = plausible(values)
    entry = st.one_of(
        st.sampled_from(keys).flatmap(lambda k: st.tuples(st.just(k), st.one_of(
            near.get(k, values), values))),
        st.tuples(key, values))
    valid = yaml.safe_load(VALID.get(kind, "")) or {}
    # mostly the valid body with a few keys changed or added, so parsing runs deep
    mapping = st.builds(lambda drop, extra: {**{k: v for k, v in valid.items() if k not in drop},
                                             **dict(extra)},
                        st.one_of(st.just(set()), st.just(set()),
                                  st.sets(st.sampled_from(sorted(valid) or [""]))),
                        st.lists(entry, min_size=1, max_size=4))
    single = st.builds(lambda kv: {**valid, kv[0]: kv[1]}, entry)  # one key changed or added
    dumped = st.builds(_dump, st.integers(0, 2).flatmap(lambda i: single if i else mapping),
                       st.booleans(), st.sampled_from((80, 1000)))
    raw = st.one_of(st.text(max_size=200), st.lists(st.sampled_from(
        HOSTILE + WORDS + (": ", "- ", "  ", "\n")), max_size=40).map("".join))
    edited = st.builds(_edit, dumped, st.sampled_from(EDITS), st.integers(0, 10**6))
    # one_of picks its branches evenly (repeating one does not weigh it): pick by a number
    return st.integers(0, 9).flatmap(lambda i: dumped if i < 7 else edited if i < 9 else raw)


def _dump(data: dict[Any, Any], flow: bool, width: int) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, default_flow_style=flow,
                          width=width)


def _edit(body: str, edit: str, n: int) -> str:
    """A raw edit of the YAML text, at a place picked by n."""
    lines = body.splitlines() or [""]
    i = n % len(lines)
    if edit == "repeat a line":
        return "\n".join([*lines[: i + 1], lines[i], *lines[i + 1:]])
    if edit == "cut":
        return body[: n % (len(body) + 1)]
    if edit == "indent":
        return "\n".join([*lines[:i], "  " + lines[i], *lines[i + 1:]])
    if edit == "tab":
        return "\n".join([*lines[:i], "\t" + lines[i], *lines[i + 1:]])
    if edit == "anchor and alias":
        return body + "\nx-a: &a [1, 2, 3]\nx-b: [*a, *a, {<<: {k: *a}}]\n"
    if edit == "billion laughs":
        levels = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"] + [
            f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 10)}]" for k in range(1, 8)]
        return body + "\n" + "\n".join(levels)
    if edit == "self alias":
        return body + "\nx: &s [1, *s]"
    if edit == "deep":
        return body + "\nx: " + "[" * (n % 2000) + "]" * (n % 2000)
    if edit == "fence":
        return "\n".join([*lines[:i], "```", *lines[i:]])
    return body


EDITS = ("repeat a line", "cut", "indent", "tab", "anchor and alias", "billion laughs",
         "self alias", "deep", "fence")


def plan_one(ctx: Context, kind: str, body: str) -> str:
    """Parse the page (and, for a consumer, plan it with the figure it reads); the page text."""
    text = page(kind, body)
    try:
        if KINDS[kind].consumes:
            plan_site({"src.md": ("docs/src.md", SOURCE), "p.md": ("docs/p.md", text)}, ctx)
        else:
            for directive in parse_page(text, "docs/p.md", ctx):
                assert directive.spec is not None
    except DirectiveError as err:
        check(err, text)
    return text


def check(err: DirectiveError, text: str) -> None:
    message = str(err)
    assert err.file == "docs/p.md", message
    assert isinstance(err.line, int) and 1 <= err.line <= len(text.splitlines()) + 1, message
    assert len(message.splitlines()) == 1 and message.isprintable(), repr(message)
    assert len(message) < 2000, message
    assert err.key is not None or any(f in message for f in WHOLE_BODY), message


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_any_body_plans_or_is_one_located_error(site: Context, kind: str) -> None:
    @FUZZ
    @given(body=bodies(kind))
    def run(body: str) -> None:
        plan_one(fresh(site), kind, body)

    run()
