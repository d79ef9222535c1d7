"""Typed directive specs: validate a YAML body once, at the boundary, naming the key and line."""

from __future__ import annotations

import difflib
import math
import reprlib
from dataclasses import dataclass, field
from typing import Any

from .errors import DirectiveError

_MISSING: Any = object()

# An error quotes at most this many characters of the author's value: a 2 MB prompt or a
# 4,000-digit number is named by its start and its length, never printed whole.
PREVIEW_CHARS = 80
MAX_NAME_CHARS = 200  # an id, an alias, a model reference: longer is a mistake, not a name


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """The author's value as an error quotes it: its repr (control and bidirectional characters
    escaped, so the message stays one honest line), cut to about `limit` characters, with the
    full size said when it was cut: `'a photo of…' (2,345 characters)`."""
    if isinstance(value, str):
        text, n = repr(value), limit
        if len(text) <= limit + 2:
            return text
        text = repr(value[:n])
        while len(text) > limit + 2 and n > 0:  # escapes make a repr longer than its text
            n = min(n - 1, n * limit // (len(text) - 2))
            text = repr(value[:n])
        return f"{text[:-1]}…{text[-1]} ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            text = str(value)
        except ValueError:  # more digits than Python will print
            return "a number of more than 4,300 digits"
        digits = len(text.lstrip("-"))
        return text if len(text) <= limit else f"{text[:limit]}… ({digits} digits)"
    text = _REPR.repr(value)  # reprlib stops early: a huge list costs what its preview costs
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    if isinstance(value, list | dict) and len(value) > _REPR.maxlist:
        text += f" ({len(value)} items)"
    return text


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = PREVIEW_CHARS
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = _REPR.maxset = 6
_REPR.maxlevel = 3


def shown_key(key: str) -> str:
    """A (dotted) key as an error names it: as written when it is short printable text, else
    escaped and cut like a value."""
    if not key:
        return '""'  # an empty key (`"": 3`), named as written
    if key.isprintable() and len(key) <= PREVIEW_CHARS:
        return key
    text = repr(key)[1:-1]
    if len(text) <= PREVIEW_CHARS:
        return text
    return f"{text[: PREVIEW_CHARS - 1]}… ({len(key)} characters)"


def one_line(text: str, limit: int = 300) -> str:
    """A library's message as one line of at most about `limit` characters."""
    text = " ".join(text.split())
    text = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown_list(items: Any) -> str:
    """Author-given names (labels, groups) listed in an error, each as `shown_key` shows it."""
    return ", ".join(shown_key(str(item)) for item in items)


def is_text(value: Any) -> bool:
    """What a text key accepts: text, or a number YAML read from unquoted digits (`caption: 3`
    is the text "3"). Not a boolean, and not NaN or infinity (`.nan`, `.inf`), which YAML reads
    as numbers no one meant as text."""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int)


def _type_name(value: Any) -> str:
    if isinstance(value, dict):  # `prompt: {a|b}` unquoted is a YAML mapping, not text
        return ("a mapping (an unquoted value starting with '{' is read as one; put the text "
                "in quotes)")
    return {bool: "a boolean", int: "a number", float: "a number", str: "text", list: "a list",
            type(None): "nothing"}.get(type(value), type(value).__name__)


@dataclass
class Body:
    """A directive's parsed YAML mapping plus the line of every key, read key by key.

    Each `take_*` marks its key as used; `finish()` rejects any key nobody asked for, so a typo
    (`seed:` for `seeds:`) is an error, not a silently ignored setting.
    """

    data: dict[str, Any]
    line: int  # line of the opening fence (1-based, in the file)
    key_lines: dict[str, int] = field(default_factory=dict)  # dotted key -> 1-based line
    used: set[str] = field(default_factory=set)
    # list items and keys inside them (`seeds[2]`, `search.any[0]`) -> 1-based line
    item_lines: dict[str, int] = field(default_factory=dict)

    def error(self, key: str | None, message: str, at: str | None = None) -> DirectiveError:
        """An error about `key`, at the line of `at` (a key or list item inside it, such as
        `clip.gender.labels` or `seeds[2]`) when the body spells that out, else at the line of
        `key` or of the nearest key around it; the fence's line when none is written."""
        return DirectiveError(message, line=self.line_of(at, key),
                              key=None if key is None else shown_key(key))

    def line_of(self, *keys: str | None) -> int:
        """The line of the first of `keys` written in the body (or of its nearest parent)."""
        for key in keys:
            while key is not None:
                line = self.key_lines.get(key) or self.item_lines.get(key)
                if line:
                    return line
                key = parent_key(key)
        return self.line

    def has(self, key: str) -> bool:
        self.used.add(key)  # asking makes it a known key
        return key in self.data

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                # `promt:` next to a missing `prompt:` is a typo, not two problems
                for other in self.data:
                    if other not in self.used and difflib.get_close_matches(
                            key, [str(other)], n=1, cutoff=0.7):
                        raise self.error(str(other), f"is not a known key; did you mean "
                                                     f"'{key}'?")
                raise self.error(key, "is required")
            return default
        return self.data[key]

    def take_str(self, key: str, default: Any = _MISSING, choices: tuple[str, ...] = ()) -> Any:
        value = self.raw(key, default)
        if value is default:
            return value
        if not is_text(value):
            raise self.error(key, f"must be text, got {_type_name(value)}")
        value = str(value)
        if choices and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {preview(value)}")
        return value

    def take_name(self, key: str, default: Any = _MISSING) -> Any:
        """Text that names something (an alias, a model, a figure): one short printable line."""
        value = self.take_str(key, default)
        if value is default:
            return value
        check_name(value, lambda m: self.error(key, m))
        return value

    def take_int(self, key: str, default: Any = _MISSING, lo: int | None = None,
                 hi: int | None = None) -> Any:
        value = self.raw(key, default)
        if value is default:
            return value
        return check_int(value, lo, hi, lambda m: self.error(key, m))

    def take_float(self, key: str, default: Any = _MISSING, lo: float | None = None,
                   hi: float | None = None) -> Any:
        value = self.raw(key, default)
        if value is default:
            return value
        return check_float(value, lo, hi, lambda m: self.error(key, m))

    def take_bool(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is not default and not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {preview(value)}")
        return value

    def take_str_list(self, key: str, default: Any = _MISSING) -> Any:
        """Text or a list of text, always returned as a tuple."""
        value = self.raw(key, default)
        if value is default:
            return value
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.error(key, "must not be an empty list")
        for i, item in enumerate(items):
            if not is_text(item):
                raise self.error(key, f"must be text or a list of text, got {_type_name(item)}",
                                 at=f"{key}[{i}]")
        return tuple(str(i) for i in items)

    def take_mapping(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is not default and not isinstance(value, dict):
            raise self.error(key, f"must be a mapping of keys to values, got {_type_name(value)}")
        return value

    def finish(self, allowed: tuple[str, ...] | None = None) -> None:
        """Reject keys that no `take_*` asked for, suggesting the nearest allowed one."""
        known = tuple(allowed) if allowed else tuple(sorted(self.used))
        for key in self.data:
            if key in self.used:
                continue
            near = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise self.error(str(key), f"is not a known key (known: {', '.join(known)}){hint}")


def parent_key(key: str) -> str | None:
    """`clip.gender` for `clip.gender.labels`, `seeds` for `seeds[2]`, None for `seeds`."""
    if key.endswith("]") and "[" in key:
        return key[: key.rindex("[")]
    return key.rpartition(".")[0] or None


def check_name(value: str, error: Any) -> str:
    if not value.strip():
        raise error("must not be empty")
    if len(value) > MAX_NAME_CHARS:
        raise error(f"must be a name of at most {MAX_NAME_CHARS} characters, got "
                    f"{preview(value)}")
    if not value.isprintable():
        raise error(f"must be a name without control or invisible formatting characters, got "
                    f"{preview(value)}")
    return value


def check_int(value: Any, lo: int | None, hi: int | None, error: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"must be a whole number, got {preview(value)}")
    return _check_range(value, lo, hi, error)


def check_float(value: Any, lo: float | None, hi: float | None, error: Any) -> float:
    """A finite number (an int or a float) within [lo, hi]; NaN and infinity are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"must be a number, got {preview(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise error(f"must be a finite number, got {preview(value)}")
    checked = _check_range(value, lo, hi, error)  # compare before float(): 10**400 overflows
    try:
        return float(checked)
    except OverflowError:
        raise error(f"must be a number a float can hold, got {preview(value)}") from None


def _check_range(value: Any, lo: Any, hi: Any, error: Any) -> Any:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if lo is not None and hi is not None:
            raise error(f"must be {lo}–{hi}, got {preview(value)}")
        bound = f"≥ {lo}" if lo is not None else f"≤ {hi}"
        raise error(f"must be {bound}, got {preview(value)}")
    return value
