"""The directive registry: kind name -> how to parse, plan, run and render it.

A new directive is one module in this package that defines `KIND`, plus one line in `_MODULES`.
The built-in kinds go through exactly the path an extension would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..plan import Context, Job, Planned
    from ..render import PageRender
    from ..specs import Body


@dataclass(frozen=True)
class Kind:
    name: str
    parse: Callable[[Body, Context], Any]  # YAML body -> typed spec (raises DirectiveError)
    expand: Callable[[Any, Context], list[Job]]  # spec -> atomic jobs
    render: Callable[[Planned, PageRender], str]  # stored results -> HTML fragment
    runners: dict[str, str] = field(default_factory=dict)  # job type -> "module:function"
    doc: str = ""


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
