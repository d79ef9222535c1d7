"""Find directive fences in Markdown, parse their YAML safely, and validate them into specs."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import DirectiveError
from .specs import Body

# An opening fence: up to three spaces, three or more backticks or tildes, then the info string.
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n]*)$")


@dataclass
class Directive:
    """One directive block: where it is, its raw body, and its validated spec."""

    kind: str
    file: str  # path as the author knows it, e.g. investigations/bias.md
    line: int  # 1-based line of the opening fence
    end: int  # 1-based line of the closing fence
    body: str
    spec: Any = None
    upstream: tuple[str, ...] = ()  # figure ids it reads (`of:`), for consumer kinds
    key_lines: dict[str, int] = field(default_factory=dict)  # dotted key -> line in the file

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def find(text: str, file: str, kinds: set[str]) -> list[Directive]:
    """Every fenced block whose info string is a directive kind; other fences are skipped whole."""
    lines = text.splitlines()
    found: list[Directive] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence = match["fence"]
        info = match["info"].strip()
        if fence[0] == "`" and "`" in info:  # not a fence, an inline code span
            i += 1
            continue
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        kind = info.split()[0] if info else ""
        if kind in kinds:
            if j >= len(lines):
                raise DirectiveError(f"fence opened here is never closed (expected {fence})",
                                     file=file, line=i + 1, kind=kind)
            found.append(Directive(kind, file, i + 1, j + 1, "\n".join(lines[i + 1 : j])))
        i = j + 1
    return found


def near_misses(text: str, kinds: set[str]) -> list[tuple[int, str, str]]:
    """(line, word, kind) for each opening fence whose language is a near miss of a directive
    kind (```ecosytem): Markdown would show it as a code block, silently."""
    out = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        match = _FENCE.match(line)
        if not match:
            continue
        if fence is not None:  # inside a fence: only its closing line matters
            if match["fence"][0] == fence[0] and len(match["fence"]) >= len(fence) \
                    and not match["info"].strip():
                fence = None
            continue
        fence = match["fence"]
        word = (match["info"].split() or [""])[0]
        if word and word not in kinds:
            near = difflib.get_close_matches(word.lower(), sorted(kinds), n=1, cutoff=0.75)
            if near:
                out.append((number, word, near[0]))
    return out


# libyaml's safe loader, where PyYAML has it, is about 8 times faster than the pure-Python one
# (a site of 1,000 directives plans 0.4 s sooner); a body it rejects is loaded again by the
# pure-Python loader, whose error messages and lines are the ones reported.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load(text: str, loader_class: Any) -> tuple[Any, Any]:
    """(the root node, the data) of one YAML document."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def parse_body(directive: Directive) -> Body:
    """Safe-load the YAML body into a mapping, remembering the line of each (dotted) key."""
    offset = directive.line + 1  # line 0 of the body is the line after the fence
    try:
        try:
            node, data = _load(directive.body, _FAST_LOADER)
        except yaml.YAMLError:
            node, data = _load(directive.body, yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = directive.line + (mark.line + 1 if mark else 0)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        hint, at = _quote_hint(directive.body, mark.line if mark else None)
        raise DirectiveError(f"YAML error: {problem}{hint}", file=directive.file,
                             line=line if at is None else directive.line + 1 + at,
                             kind=directive.kind) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DirectiveError("body must be a YAML mapping of keys to values",
                             file=directive.file, line=directive.line, kind=directive.kind)
    key_lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        _key_lines(node, "", offset, key_lines)
    return Body(data=data, line=directive.line, key_lines=key_lines)


# A plain YAML value may not hold `: ` or ` #`, nor start with one of these: the usual cause is a
# prompt like `prompt: {a|b} at work` or `prompt: portrait: studio light`.
_PLAIN_KEY_VALUE = re.compile(r"^(?P<indent>\s*(?:- )?)(?P<key>[\w.-]+):[ \t]+(?P<value>.+?)\s*$")
_INDICATORS = tuple("{[&*!|>%@`'\"")


def _quote_hint(body: str, index: int | None) -> tuple[str, int | None]:
    """For the line YAML stopped at (or the one before it): the line with its value quoted,
    and that line's index in the body."""
    if index is None:
        return "", None
    lines = body.splitlines()
    for i in (index, index - 1):
        if not 0 <= i < len(lines):
            continue
        match = _PLAIN_KEY_VALUE.match(lines[i])
        if not match:
            continue
        value = match["value"]
        if value[0] in "'\"" and value[-1] == value[0]:
            continue  # already quoted
        if not (value.startswith(_INDICATORS) or ": " in value or " #" in value):
            continue
        quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return (f". Text with {{ }}, [ ], ': ' or ' #' in it must be quoted; write: "
                f"{match['indent'].strip()}{match['key']}: {quoted}"), i
    return "", None


def _key_lines(node: yaml.MappingNode, prefix: str, offset: int, out: dict[str, int]) -> None:
    for key_node, value_node in node.value:
        name = f"{prefix}{key_node.value}"
        out[name] = key_node.start_mark.line + offset
        if isinstance(value_node, yaml.MappingNode):
            _key_lines(value_node, name + ".", offset, out)
