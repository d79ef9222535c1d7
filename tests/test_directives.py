"""Finding fences and parsing their YAML: places, other languages, errors with lines."""

from __future__ import annotations

import pytest

from generator import directives as dirs
from generator.errors import DirectiveError

KINDS = {"generate", "dataset"}


def test_finds_only_registered_kinds_with_lines() -> None:
    text = "# t\n\n```python\nx = 1\n```\n\n```generate\nprompt: a\n```\n\n~~~dataset\nq: b\n~~~\n"
    found = dirs.find(text, "p.md", KINDS)
    assert [(d.kind, d.line, d.end, d.body) for d in found] == [
        ("generate", 7, 9, "prompt: a"),
        ("dataset", 11, 13, "q: b"),
    ]
    assert found[0].where == "p.md:7"


def test_directive_inside_a_longer_fence_is_an_example_not_a_directive() -> None:
    text = "````markdown\n```generate\nprompt: a\n```\n````\n"
    assert dirs.find(text, "p.md", KINDS) == []


def test_info_string_must_start_with_the_kind() -> None:
    text = "```yaml generate\nprompt: a\n```\n```generate {.wide}\nprompt: b\n```\n"
    found = dirs.find(text, "p.md", KINDS)
    assert [d.body for d in found] == ["prompt: b"]


def test_unclosed_directive_fence_is_an_error_at_its_line() -> None:
    with pytest.raises(DirectiveError, match=r"^p\.md:3: generate: fence opened here"):
        dirs.find("a\n\n```generate\nprompt: x\n", "p.md", KINDS)


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("prompt: [a, b", 2, "YAML error"),  # the fence is line 1, the body starts at line 2
        ("prompt: a\n  bad: indent: here", 3, "YAML error"),
        ("- a\n- b", 1, "body must be a YAML mapping"),
        ("just text", 1, "body must be a YAML mapping"),
    ],
)
def test_yaml_errors_name_the_line(body: str, line: int, message: str) -> None:
    directive = dirs.Directive("generate", "p.md", 1, 99, body)
    with pytest.raises(DirectiveError) as err:
        dirs.parse_body(directive)
    assert err.value.line == line
    assert message in str(err.value)
    assert str(err.value).startswith(f"p.md:{line}: generate: ")


def test_key_lines_are_absolute_and_dotted() -> None:
    directive = dirs.Directive("generate", "p.md", 10, 20,
                               "prompt: a\nsweep:\n  guidance: [1, 2]\nseeds: 2")
    body = dirs.parse_body(directive)
    assert body.key_lines == {"prompt": 11, "sweep": 12, "sweep.guidance": 13, "seeds": 14}


def test_yaml_is_loaded_safely() -> None:
    unsafe = "prompt: !!python/object/apply:os.system [ls]"
    directive = dirs.Directive("generate", "p.md", 1, 3, unsafe)
    with pytest.raises(DirectiveError, match="YAML error"):
        dirs.parse_body(directive)


def test_empty_body_is_an_empty_mapping() -> None:
    assert dirs.parse_body(dirs.Directive("generate", "p.md", 1, 2, "")).data == {}
