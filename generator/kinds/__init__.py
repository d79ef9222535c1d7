"""The directive registry: kind name -> how to parse, plan, run and render it.

A new directive is one module in this package that defines `KIND`, plus one line in `_MODULES`.
The built-in kinds go through exactly the path an extension would.
"""

from __future__ import annotations

from importlib import import_module

from ..types import Job, Kind, Setting

__all__ = ["JOB_KINDS", "KINDS", "RUNNERS", "Kind", "Setting", "describe"]

_MODULES = (
    "generate",
    "ecosystem",
    "dataset",
    "measure",
    "neighbors",
    "trail",
    "iterate",
    "attend",
    "actors",
)

KINDS: dict[str, Kind] = {}
for _name in _MODULES:
    _kind: Kind = import_module(f"{__name__}.{_name}").KIND
    KINDS[_kind.name] = _kind

RUNNERS: dict[str, str] = {jt: ref for k in KINDS.values() for jt, ref in k.runners.items()}
JOB_KINDS: dict[str, Kind] = {jt: k for k in KINDS.values() for jt in k.runners}


def describe(job: Job) -> tuple[str, str]:
    """(what a job runs on, what it is), as its kind tells it."""
    return JOB_KINDS[job.type].job_line(job)
