"""The README documents what the code offers, and opens with the two commands CI runs.

Each list comes from the code, not from a copy of it: a plugin setting, a directive kind, a key a
directive reads, an instrument, a command or a flag added without a line in the README fails here.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest

from generator.cli import COMMANDS_HELP, _parser
from generator.instruments import INSTRUMENTS
from generator.kinds import KINDS
from generator.kinds import generate as generate_kind
from generator.models import Resolver
from generator.plugin import UnmakeConfig
from generator.specs import Body
from generator.store import Store
from generator.types import Context

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"
LABELS = ("Build the example zine", "Run the whole test suite")

# A small valid directive of each kind, to ask its parser which keys it reads (Body.used).
EXAMPLES: dict[str, dict[str, Any]] = {
    "generate": {"prompt": "a photo of a {teacher|pilot}", "seeds": 2},
    "ecosystem": {"model": "default"},
    "actors": {"data": "map.yml", "focus": "a", "depth": 1, "types": ["built"],
               "period": [2020, 2021], "show": ["graph"]},
    "dataset": {"dataset": "sample", "search": "portrait"},
    "measure": {"of": "professions", "clip": {"gender": ["a man", "a woman"]}, "palette": 3,
                "faces": True, "diversity": True, "reference": {"doctor": {"a woman": 0.38}},
                "reference_source": "US Bureau of Labor Statistics, 2022"},
    "neighbors": {"dataset": "sample", "query": "a portrait of a nurse", "k": 6,
                  "threshold": 0.95},
    "trail": {"seeds": 2, "model": "default", "negative": "", "guidance": 5, "size": 32,
              "scheduler": "ddim",
              "steps": [{"prompt": "an Italian family", "note": "*ambiguous*", "steps": 2},
                        {"prompt": "a family in Italy", "seeds": [1, 2]}]},
    "iterate": {"of": "professions", "mode": "img2img", "rounds": 5, "prompt": "a portrait",
                "strength": 0.5, "seed": 3, "model": "default", "steps": 4, "guidance": 7,
                "scheduler": "ddim", "negative": "text"},
    "attend": {"of": "professions", "words": ["doctor", "nurse"]},
}


def _readme() -> str:
    return README.read_text("utf-8")


def blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(opening, closing) line indexes of every fenced block; a fence closes only on a line of
    the same character at least as long, so ````markdown blocks may hold ``` fences."""
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(`{3,}|~{3,})", lines[i])
        if m:
            mark = m.group(1)
            close = re.compile(rf"^{re.escape(mark[0])}{{{len(mark)},}}\s*$")
            j = next((j for j in range(i + 1, len(lines)) if close.match(lines[j])), len(lines))
            out.append((i, j))
            i = j
        i += 1
    return out


def sections(text: str) -> list[tuple[int, str, str]]:
    """(level, heading, body) of every Markdown heading; a body runs to the next heading of the
    same or a higher level. Lines inside code fences (YAML comments!) are not headings."""
    lines = text.splitlines()
    fenced = {n for i, j in blocks(lines) for n in range(i, j + 1)}
    heads = [(i, len(m.group(1)), m.group(2)) for i, line in enumerate(lines)
             if i not in fenced and (m := re.match(r"^(#{1,6}) (.+)$", line))]
    out = []
    for n, (i, level, heading) in enumerate(heads):
        end = next((j for j, lv, _ in heads[n + 1:] if lv <= level), len(lines))
        out.append((level, heading, "\n".join(lines[i + 1 : end])))
    return out


def section_of(text: str, name: str) -> str:
    """The body of the first heading that names `name` in code (`name` or `name:`)."""
    for _, heading, body in sections(text):
        if re.search(rf"`{re.escape(name)}:?`", heading):
            return body
    raise AssertionError(f"README.md has no section whose heading names `{name}`")


def ci_command() -> str:
    """The command `.ci/run` runs last: the README's test command, verbatim."""
    lines = [line for line in CI.read_text("utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return lines[-1].strip()


def parse_keys(kind: str, tmp_path: Path) -> set[str]:
    """Every key the kind's parser reads from a directive body (what `finish()` calls known)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"URL": ["https://example.com/a.jpg"], "TEXT": ["a portrait"]}),
                   tmp_path / "data" / "sample.parquet")
    config = {"datasets": {"sample": {"metadata": "data/sample.parquet"}}}
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "map.yml").write_text(
        "actors: [{name: a, kind: person}]\nrelations: [{from: a, type: built, to: a}]\n")
    ctx = Context(tmp_path, tmp_path / "docs", Resolver({"default": "tiny"}, tmp_path),
                  Store(tmp_path / ".unmake"), config)
    body = Body(dict(EXAMPLES[kind]), 1)
    KINDS[kind].parse(body, ctx)
    consumes = {"of"} if KINDS[kind].consumes else set()  # read by the planner, not the kind
    return body.used | consumes


# -- the top of the README -----------------------------------------------------------------------
def test_the_two_repository_commands_open_the_readme_labelled() -> None:
    text = _readme()
    lines = text.splitlines()
    first_heading = next(i for i, line in enumerate(lines) if line.startswith("## "))
    (build_at, build_end), (test_at, test_end) = blocks(lines)[:2]
    build = "\n".join(lines[build_at + 1 : build_end])
    test = "\n".join(lines[test_at + 1 : test_end])
    assert test_at < first_heading, "both commands come before the first section"
    assert LABELS[0] in "\n".join(lines[:build_at])
    assert LABELS[1] in "\n".join(lines[build_at + 1 : test_at])
    assert test == ci_command(), "the test command must be what .ci/run runs, verbatim"
    assert build.startswith("python3.11 -m venv .venv") and build.endswith("unmake build")
    for script in re.findall(r"scripts/[\w/]+\.py", build):
        assert (ROOT / script).is_file(), script


def test_the_readme_figure_is_there() -> None:
    assert "](readme/figure.png)" in _readme()
    assert (ROOT / "readme" / "figure.png").is_file(), (
        "readme/figure.png is written by tests/test_browser.py::"
        "test_readme_figure_renders_on_a_laptop_a_phone_and_without_javascript")


# -- reference sections --------------------------------------------------------------------------
def test_every_plugin_setting_is_documented() -> None:
    text = _readme()
    settings = [name for name, _ in UnmakeConfig._schema]
    assert {"store", "mode", "models", "clip_models"} <= set(settings)
    assert [name for name in settings if f"`{name}`" not in text] == []
    plugin_config = next(body for _, heading, body in sections(text)
                         if heading.lower().startswith("plugin config"))
    assert [name for name in settings if f"| `{name}` |" not in plugin_config] == [], (
        "every setting has a row in the plugin config table")


def test_every_directive_kind_has_a_section() -> None:
    text = _readme()
    for name in KINDS:
        assert f"```{name}" in section_of(text, name), f"the `{name}` section shows an example"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_key_a_directive_reads_is_in_its_section(kind: str, tmp_path: Path) -> None:
    assert set(EXAMPLES) == set(KINDS), "add a small example of each new kind to EXAMPLES"
    body = section_of(_readme(), kind)
    missing = sorted(key for key in parse_keys(kind, tmp_path) if f"`{key}`" not in body)
    assert missing == [], f"keys of `{kind}` missing from its README section"


def test_every_generate_key_has_a_row(tmp_path: Path) -> None:
    body = section_of(_readme(), "generate")
    rows = [line for line in body.splitlines() if line.startswith("| `")]
    keys = parse_keys("generate", tmp_path) | set(generate_kind.SWEEPABLE)
    assert {"prompt", "seeds", "sweep", "grid"} <= keys
    assert sorted(k for k in keys if not any(f"`{k}`" in row for row in rows)) == []
    assert [a for a in generate_kind.AXES if f"`{a}`" not in body] == [], "grid axes"
    assert [s for s in generate_kind.SCHEDULERS if f"`{s}`" not in body] == []


def test_every_instrument_has_a_section_in_measure() -> None:
    measure = section_of(_readme(), "measure")
    for name in INSTRUMENTS:
        found = [body for _, heading, body in sections(measure) if f"`{name}:`" in heading]
        assert found and found[0].strip(), f"the `measure` section has a `{name}:` section"


def test_every_command_and_flag_is_documented() -> None:
    text = _readme()
    for name in COMMANDS_HELP:
        assert f"`unmake {name}" in text, name
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    flags = {option for parser in sub.choices.values() for action in parser._actions
             for option in action.option_strings if option.startswith("--")}
    assert sorted(f for f in flags - {"--help"} if f"`{f}" not in text) == []
