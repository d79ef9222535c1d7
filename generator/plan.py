"""Plan the whole site before any model loads: directives -> keyed jobs -> cached or to run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import directives as dirs
from .errors import DirectiveError, UnmakeError
from .keys import job_key
from .models import Resolver
from .store import Store


@dataclass
class Context:
    """What specs and planners may consult: the project, its config, its models and store."""

    root: Path  # folder of mkdocs.yml
    docs_dir: Path
    resolver: Resolver
    store: Store
    config: dict[str, Any] = field(default_factory=dict)  # the unmake plugin config
    cache: dict[str, Any] = field(default_factory=dict)  # per-build memo for kinds (e.g. datasets)
    memos: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # name -> (v, memo)
    _dirty: set[str] = field(default_factory=set)

    def memo(self, name: str, version: str) -> dict[str, Any]:
        """A dict kept in the store between builds, for pure functions of an author's text
        (e.g. prompt expansion). Forgotten when `version` changes; a bad file is ignored."""
        if name not in self.memos:
            path = self.store.root / "memo" / f"{name}.json"
            try:
                saved = json.loads(path.read_text("utf-8"))
            except (OSError, ValueError):
                saved = {}
            same = isinstance(saved, dict) and saved.get("version") == version
            self.memos[name] = (version, saved.get("entries", {}) if same else {})
        return self.memos[name][1]

    def memo_changed(self, name: str) -> None:
        self._dirty.add(name)

    def save_memos(self) -> None:
        for name in sorted(self._dirty):
            version, entries = self.memos[name]
            data = {"version": version, "entries": entries}
            self.store.write_atomic(self.store.root / "memo" / f"{name}.json",
                                    json.dumps(data, ensure_ascii=False).encode("utf-8"))
        self._dirty.clear()


@dataclass
class Job:
    """One atomic unit of work: one image, one lookup, one fact sheet."""

    type: str  # runner name, e.g. "generate.image"
    inputs: dict[str, Any]  # everything that can change the result; hashed into the key
    group: tuple[Any, ...] = ()  # jobs of one group run together (one model load)
    run: dict[str, Any] = field(default_factory=dict)  # how to run it (not hashed)
    origins: list[str] = field(default_factory=list)  # file:line of every directive asking
    key: str = ""

    def __post_init__(self) -> None:
        self.key = self.key or job_key(self.type, self.inputs)

    def describe(self) -> dict[str, Any]:
        """The part of a job that goes into its stored record."""
        return {"type": self.type, "inputs": self.inputs, "run": self.run}


@dataclass
class Planned:
    """A directive of a page with its spec and the jobs it expands to, in order."""

    directive: dirs.Directive
    jobs: list[Job]


@dataclass
class Plan:
    pages: dict[str, list[Planned]]  # page src path -> its directives
    jobs: dict[str, Job]  # key -> job, deduplicated across the site
    cached: set[str]
    missing: list[Job]

    def summary(self) -> str:
        n = len(self.jobs)
        return f"{n} job{'s' * (n != 1)}: {len(self.cached)} cached, {len(self.missing)} to run"

    def missing_by_group(self) -> dict[tuple[Any, ...], list[Job]]:
        groups: dict[tuple[Any, ...], list[Job]] = {}
        for job in self.missing:
            groups.setdefault((job.type, *job.group), []).append(job)
        return groups


def parse_page(text: str, file: str, ctx: Context) -> list[dirs.Directive]:
    """Find and validate every directive of one page (raises DirectiveError at the first fault)."""
    from .kinds import KINDS

    found = dirs.find(text, file, set(KINDS))
    ids: dict[str, int] = {}
    for directive in found:
        kind = KINDS[directive.kind]
        body = dirs.parse_body(directive)
        try:
            directive.spec = kind.parse(body, ctx)
            body.finish()
        except DirectiveError as exc:
            raise exc.located(file, directive.line, directive.kind) from None
        except UnmakeError as exc:
            raise DirectiveError(str(exc), file=file, line=directive.line,
                                 kind=directive.kind) from None
        figure_id = getattr(directive.spec, "id", None)
        if figure_id in ids:  # two figures with one anchor: links would go to the first
            raise DirectiveError(f"is already the id of the figure at line {ids[figure_id]}",
                                 file=file, line=body.key_lines.get("id", directive.line),
                                 kind=directive.kind, key="id")
        if figure_id:
            ids[figure_id] = directive.line
    return found


def plan_site(pages: dict[str, tuple[str, str]], ctx: Context, force: bool = False) -> Plan:
    """Plan every page: `pages` maps src path -> (path shown to the author, Markdown text)."""
    from .kinds import KINDS

    planned: dict[str, list[Planned]] = {}
    jobs: dict[str, Job] = {}
    for src, (shown, text) in sorted(pages.items()):
        items = []
        for directive in parse_page(text, shown, ctx):
            try:
                expanded = KINDS[directive.kind].expand(directive.spec, ctx)
            except DirectiveError as exc:
                raise exc.located(shown, directive.line, directive.kind) from None
            except UnmakeError as exc:
                raise DirectiveError(str(exc), file=shown, line=directive.line,
                                     kind=directive.kind) from None
            own = []
            for job in expanded:
                job = jobs.setdefault(job.key, job)  # identical jobs on any page run once
                job.origins.append(directive.where)
                own.append(job)
            items.append(Planned(directive, own))
        planned[src] = items
    # --force runs everything again but deletes nothing first: a result is replaced only when
    # its new one is written, so an interrupted forced build loses no work.
    ctx.save_memos()
    cached = set() if force else {key for key in jobs if ctx.store.has(key)}
    missing = [job for key, job in jobs.items() if key not in cached]
    return Plan(planned, jobs, cached, missing)
