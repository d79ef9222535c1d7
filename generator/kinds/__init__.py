"""The directive registry: kind name -> how to parse, plan, run and render it.

A new directive is one module in this package that defines `KIND`, plus one line in `_MODULES`.
The built-in kinds go through exactly the path an extension would.
"""

from __future__ import annotations

from importlib import import_module

from ..types import Kind, Setting

__all__ = ["KINDS", "RUNNERS", "Kind", "Setting"]

_MODULES = (
    "generate",
    "ecosystem",
    "dataset",
)

KINDS: dict[str, Kind] = {}
for _name in _MODULES:
    _kind: Kind = import_module(f"{__name__}.{_name}").KIND
    KINDS[_kind.name] = _kind

RUNNERS: dict[str, str] = {jt: ref for k in KINDS.values() for jt, ref in k.runners.items()}
