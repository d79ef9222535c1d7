"""Find directive fences in Markdown, parse their YAML safely, and validate them into specs."""

from __future__ import annotations

import codecs
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import DirectiveError
from .specs import Body, one_line, shown_key

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


def read_page(path: Path, shown: str) -> str:
    """A page's text, read as UTF-8 (a byte-order mark is dropped); a page that is not UTF-8 is
    one error naming the line and column of its first bad byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)
        line = data.count(b"\n", 0, start) + 1
        before = data[data.rfind(b"\n", 0, start) + 1 : start]
        column = len(before.decode("utf-8", "replace").removeprefix("\ufeff")) + 1
        raise DirectiveError(f"is not UTF-8 text: byte 0x{data[start]:02x} at column {column} "
                             "cannot be decoded; save the page as UTF-8", file=shown,
                             line=line) from None


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

# Bounds on one directive's body, checked before anything reads it: the text, then its values
# once every alias (`*name`) is spelled out, and how deep its lists and mappings nest. A body
# that stays inside them can be walked, quoted and hashed by everything after this module at no
# risk; one that does not (an alias "billion laughs" is 10 lines that spell a billion values)
# stops here, in time and memory proportional to its text.
MAX_BODY_CHARS = 100_000  # about fifty prompts at the 2,000-character limit, with room to spare
MAX_VALUES = 20_000  # a 4,096-seed list, or 400 label sets of 50 labels, fits
MAX_DEPTH = 32  # lists and mappings inside each other; real directives use 4


def _load(text: str, loader_class: Any, directive: Directive) -> tuple[Any, Any]:
    """(the root node, the data) of one YAML document, its size, nesting and keys checked
    before it is constructed."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_shape(node, directive)
        _check_keys(node, "", directive, yaml.constructor.SafeConstructor())
        return node, loader.construct_document(node)
    finally:
        loader.dispose()


def parse_body(directive: Directive) -> Body:
    """Safe-load the YAML body into a mapping, remembering the line of each (dotted) key."""
    offset = directive.line + 1  # line 0 of the body is the line after the fence
    if len(directive.body) > MAX_BODY_CHARS:
        raise DirectiveError(f"body is {len(directive.body)} characters long; at most "
                             f"{MAX_BODY_CHARS} per directive", file=directive.file,
                             line=directive.line, kind=directive.kind)
    try:
        try:
            node, data = _load(directive.body, _FAST_LOADER, directive)
        except yaml.YAMLError as exc:
            if "nesting depth" in str(getattr(exc, "problem", "")):  # libyaml's 1,000 levels:
                raise RecursionError from None  # the pure-Python parser would take a second
            node, data = _load(directive.body, yaml.SafeLoader, directive)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = directive.line + (mark.line + 1 if mark else 0)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        hint, at = _quote_hint(directive.body, mark.line if mark else None)
        raise DirectiveError(f"YAML error: {one_line(problem)}{hint}", file=directive.file,
                             line=line if at is None else directive.line + 1 + at,
                             kind=directive.kind) from None
    except RecursionError:  # the pure-Python parser on lists inside lists a thousand deep
        raise DirectiveError(f"YAML error: lists and mappings nest too deeply (at most "
                             f"{MAX_DEPTH} levels)", file=directive.file, line=directive.line,
                             kind=directive.kind) from None
    except ValueError as exc:  # a value YAML reads but Python will not hold
        problem = ("a number has more digits than Python reads (4,300)" if "digits" in str(exc)
                   else one_line(str(exc)))
        raise DirectiveError(f"YAML error: {problem}", file=directive.file,
                             line=directive.line, kind=directive.kind) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DirectiveError("body must be a YAML mapping of keys to values",
                             file=directive.file, line=directive.line, kind=directive.kind)
    key_lines: dict[str, int] = {}
    item_lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        _key_lines(node, "", offset, key_lines, item_lines, yaml.constructor.SafeConstructor())
    return Body(data=data, line=directive.line, key_lines=key_lines, item_lines=item_lines)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_shape(root: yaml.Node, directive: Directive) -> None:
    """Refuse a body whose values, aliases spelled out, exceed MAX_VALUES or nest deeper than
    MAX_DEPTH, or whose alias refers to the list or mapping that holds it.

    Aliases make the composed document a graph that shares nodes, so the spelled-out size is
    counted, not walked: each node's size is 1 + its children's, computed once per node (post
    order, no recursion), so the count is exact and costs what the text costs."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()
    too_big: yaml.Node | None = None
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        ident = id(node)
        if done:
            children = _children(node)
            size[ident] = 1 + sum(size[id(c)] for c in children)
            if isinstance(node, yaml.ScalarNode):
                depth[ident] = 0
            else:
                depth[ident] = 1 + max((depth[id(c)] for c in children), default=0)
            open_nodes.discard(ident)
            if too_big is None and size[ident] > MAX_VALUES:
                too_big = node  # the first (innermost) node that passes the bound
            continue
        if ident in size:
            continue
        if ident in open_nodes:  # reached again from inside itself
            raise DirectiveError("an alias (*name) refers to the list or mapping that holds it; "
                                 "a value cannot contain itself", file=directive.file,
                                 line=directive.line + 1 + node.start_mark.line,
                                 kind=directive.kind)
        open_nodes.add(ident)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in size)
    total = size[id(root)]
    if too_big is not None:
        raise DirectiveError(f"spells out {total} values once its aliases (*name) are "
                             f"expanded; at most {MAX_VALUES} per directive",
                             file=directive.file,
                             line=directive.line + 1 + too_big.start_mark.line,
                             kind=directive.kind)
    if depth[id(root)] > MAX_DEPTH:
        raise DirectiveError(f"nests lists and mappings {depth[id(root)]} deep; at most "
                             f"{MAX_DEPTH}", file=directive.file, line=directive.line,
                             kind=directive.kind)


_MERGE = "tag:yaml.org,2002:merge"


def _key_name(node: yaml.Node, constructor: Any) -> Any:
    """A mapping key as the constructed data holds it (`1` and `0x1` are one key, `yes` is
    True), or a unique object when it is not a plain scalar."""
    if isinstance(node, yaml.ScalarNode):
        try:
            return constructor.construct_object(node)
        except (yaml.YAMLError, ValueError):  # construct_document reports it, with its line
            return node.value
    return object()  # a list or mapping as a key: never equal to another


def _child(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _check_keys(node: yaml.Node, prefix: str, directive: Directive, constructor: Any) -> None:
    """Refuse a key written twice in one mapping, anywhere in the body: YAML keeps the last one
    silently, so `seeds: 2` under an earlier `seeds: 3` would win unseen. A key that `<<:`
    merges in and the mapping sets again is an override, as YAML means it, not a repeat."""
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_keys(item, f"{prefix}[{i}]", directive, constructor)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[Any, int] = {}
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE:
            continue
        key = _key_name(key_node, constructor)
        try:
            first = seen.get(key)
            seen.setdefault(key, key_node.start_mark.line)
        except TypeError:  # an unhashable key (a list): construct_document refuses it
            first = None
        if first is not None:
            raise DirectiveError(
                f"is given twice (first on line {directive.line + 1 + first}); YAML would keep "
                f"only this one, silently: remove one of them", file=directive.file,
                line=directive.line + 1 + key_node.start_mark.line, kind=directive.kind,
                key=shown_key(_child(prefix, key)))
        _check_keys(value_node, _child(prefix, key), directive, constructor)


def _key_lines(node: yaml.Node, prefix: str, offset: int, keys: dict[str, int],
               items: dict[str, int], constructor: Any) -> None:
    """The line of every key (`sweep.steps`, into `keys`) and of every list item and key
    inside one (`seeds[2]`, `clip.gender.labels[0]`, into `items`) under `prefix`, named as
    the data names them (`yes:` is the key True)."""
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            name = f"{prefix}[{i}]"
            items[name] = item.start_mark.line + offset
            _key_lines(item, name, offset, items, items, constructor)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    # after construction, keys merged in by `<<:` come first, so the mapping's own keys, later,
    # give their own lines
    for key_node, value_node in node.value:
        name = _child(prefix, _key_name(key_node, constructor))
        keys[name] = key_node.start_mark.line + offset
        _key_lines(value_node, name, offset, keys, items, constructor)


# A plain YAML value may not hold `: ` or ` #`, nor start with one of these: the usual cause is a
# prompt like `prompt: {a|b} at work` or `prompt: portrait: studio light`.
_PLAIN_KEY_VALUE = re.compile(r"^(?P<indent>\s*(?:- )?)(?P<key>[\w.-]+):[ \t]+(?P<value>.+?)\s*$")
_INDICATORS = tuple("{[&*!|>%@`'\"")
_HINT_CHARS = 60  # of the value the hint quotes back


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
        if len(value) > _HINT_CHARS or not value.isprintable():
            value = one_line(value, _HINT_CHARS)
        quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return (f". Text with {{ }}, [ ], ': ' or ' #' in it must be quoted; write: "
                f"{match['indent'].strip()}{match['key']}: {quoted}"), i
    return "", None
