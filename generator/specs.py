"""Typed directive specs: validate a YAML body once, at the boundary, naming the key and line."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from .errors import DirectiveError

_MISSING: Any = object()


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

    def error(self, key: str | None, message: str) -> DirectiveError:
        line = self.key_lines.get(key, self.line) if key else self.line
        return DirectiveError(message, line=line, key=key)

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
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(key, f"must be text, got {_type_name(value)}")
        value = str(value)
        if choices and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
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
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def take_str_list(self, key: str, default: Any = _MISSING) -> Any:
        """Text or a list of text, always returned as a tuple."""
        value = self.raw(key, default)
        if value is default:
            return value
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.error(key, "must not be an empty list")
        for item in items:
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise self.error(key, f"must be text or a list of text, got {_type_name(item)}")
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


def check_int(value: Any, lo: int | None, hi: int | None, error: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"must be a whole number, got {value!r}")
    return _check_range(value, lo, hi, error)


def check_float(value: Any, lo: float | None, hi: float | None, error: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"must be a number, got {value!r}")
    return _check_range(float(value), lo, hi, error)


def _check_range(value: Any, lo: Any, hi: Any, error: Any) -> Any:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if lo is not None and hi is not None:
            raise error(f"must be {lo}–{hi}, got {value}")
        bound = f"≥ {lo}" if lo is not None else f"≤ {hi}"
        raise error(f"must be {bound}, got {value}")
    return value
