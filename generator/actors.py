"""Actor data files: who did what to whom, when, on whose word — read and validated once.

An actors file is YAML in the project (e.g. `investigations/ecosystem/stable-diffusion.yml`):

    actors:
      - name: Stability AI
        kind: organisation        # one of KINDS; told apart by shape and colour in the graph
        date: 2019                # or period: [2019, 2023-06]; YYYY, YYYY-MM or YYYY-MM-DD
        note: ...
    relations:
      - from: Stability AI
        type: funded              # an open set; a near miss of a known type is an error
        to: LAION
        date: 2022-08             # or period: [..]
        sources: ["@laion5b", "https://example.org/press"]   # citation keys or URLs
        note: ...

It is parsed with the directives' own YAML reader (duplicate keys, alias bombs and nesting refused,
each key's line known), so every error names the data file, its line and the key, as a
directive's does. Files are read once per build (memoised in the planning context by path and
mtime). The `actors` kind draws them (generator/svg.py) and the `ecosystem` kind follows model
lineage through them.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import directives as dirs
from .errors import DirectiveError
from .specs import Body, check_name, is_text, preview

# actor kinds, in legend order; each has its own shape (svg.SHAPES), so print in grey still reads
KINDS = ("organisation", "person", "funder", "dataset", "model", "licence", "platform", "paper",
         "other")
# relation types the map knows; others are allowed, but a near miss of one of these is a typo
RELATION_TYPES = ("funded", "built", "trained on", "derived from", "released", "hosts",
                  "licensed under", "employs", "filtered by", "published", "authored",
                  "collected", "fine-tuned from", "acquired", "partnered with", "sued",
                  "distributed", "founded", "compute for", "member of")
ACTOR_KEYS = ("name", "kind", "date", "period", "note", "sources")
RELATION_KEYS = ("from", "type", "to", "date", "period", "note", "sources")
MAX_ACTORS = 500  # a map of more is no longer readable as one picture
MAX_RELATIONS = 2_000
MAX_NOTE_CHARS = 2_000
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_URL = re.compile(r"^https?://[^\s<>\"]+$")
CITE_KEY = re.compile(r"^[A-Za-z0-9_][\w:.#$%&+?<>~/-]*$")


@dataclass(frozen=True, order=True)
class When:
    """A date as precise as the author gave it: `2022`, `2022-08` or `2022-08-22`."""

    year: int
    month: int = 0  # 0: not given
    day: int = 0

    def __str__(self) -> str:
        return (f"{self.year:04d}" + (f"-{self.month:02d}" if self.month else "")
                + (f"-{self.day:02d}" if self.day else ""))

    def start(self) -> float:
        """The instant it begins, in fractional years (for the timeline's axis)."""
        return self.year + (max(self.month, 1) - 1) / 12 + (max(self.day, 1) - 1) / 365

    def end(self) -> float:
        """The instant it ends: `2022` runs to the end of 2022."""
        if self.day:
            return self.start() + 1 / 365
        if self.month:
            return self.year + self.month / 12
        return self.year + 1.0


@dataclass(frozen=True)
class Span:
    """A date (start == end) or a period; `end` None is an open period (still going)."""

    start: When
    end: When | None
    point: bool

    def __str__(self) -> str:
        if self.point:
            return str(self.start)
        return f"{self.start}–{self.end if self.end else 'now'}"

    def overlaps(self, lo: When, hi: When) -> bool:
        end = self.start if self.point else self.end
        return self.start.start() < hi.end() and (end is None or end.end() > lo.start())


@dataclass(frozen=True)
class Actor:
    name: str
    kind: str
    when: Span | None
    note: str | None
    sources: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class Relation:
    source: str  # actor names
    type: str
    target: str
    when: Span | None
    note: str | None
    sources: tuple[str, ...]  # "@key" citation keys and URLs, as written
    line: int


@dataclass(frozen=True)
class ActorMap:
    file: str  # as shown to the author (relative to the project)
    actors: tuple[Actor, ...]
    relations: tuple[Relation, ...]

    def actor(self, name: str) -> Actor:
        return next(a for a in self.actors if a.name == name)

    def citation_keys(self) -> list[str]:
        sources = [s for a in self.actors for s in a.sources]
        sources += [s for r in self.relations for s in r.sources]
        return [s[1:] for s in sources if s.startswith("@")]


class DataFileError(DirectiveError):
    """An error in a data file: it names the data file and its line, not the page asking."""

    def located(self, file: str, line: int, kind: str | None = None) -> DirectiveError:
        return self


def parse_when(value: Any, error: Any) -> When:
    """`2022`, `2022-08`, `2022-08-22` (YAML reads the last as a date) -> When."""
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return When(value.year, value.month, value.day)
    text = str(value) if is_text(value) else None
    match = _DATE.match(text) if text else None
    if not match:
        raise error(f"must be a date written YYYY, YYYY-MM or YYYY-MM-DD, got {preview(value)}")
    year, month, day = (int(g) if g else 0 for g in match.groups())
    try:
        dt.date(year or 1, month or 1, day or 1)
    except ValueError:
        raise error(f"is not a date of the calendar: {preview(value)}") from None
    if not 1000 <= year <= 2999:
        raise error(f"must be a year from 1000 to 2999, got {preview(value)}")
    return When(year, month, day)


def parse_span(body: Body, prefix: str) -> Span | None:
    """The `date:` or `period: [start, end]` of the entry at `prefix` (end may be `null`)."""
    date_key, period_key = f"{prefix}.date", f"{prefix}.period"
    data = _entry(body, prefix)
    if "date" in data and "period" in data:
        raise body.error(date_key, "give either date or period, not both")
    if "date" in data:
        return Span(parse_when(data["date"], lambda m: body.error(date_key, m)), None, True)
    if "period" not in data:
        return None
    value = data["period"]
    if not isinstance(value, list) or len(value) != 2 or value[0] is None:
        raise body.error(period_key, f"must be [start, end] (end may be null for an open "
                                     f"period), got {preview(value)}")
    start = parse_when(value[0], lambda m: body.error(period_key, m, at=f"{period_key}[0]"))
    end = None if value[1] is None else parse_when(
        value[1], lambda m: body.error(period_key, m, at=f"{period_key}[1]"))
    if end is not None and end.end() <= start.start():
        raise body.error(period_key, f"ends ({end}) before it starts ({start})")
    return Span(start, end, False)


def _entry(body: Body, prefix: str) -> dict[str, Any]:
    section, _, index = prefix.partition("[")
    return body.data[section][int(index.rstrip("]"))]  # type: ignore[no-any-return]


def _text(body: Body, prefix: str, key: str, required: bool = False,
          limit: int | None = None) -> str | None:
    data = _entry(body, prefix)
    where = f"{prefix}.{key}"
    if data.get(key) is None:
        if required:
            raise body.error(where if key in data else prefix, f"needs '{key}'"
                             if key not in data else "must not be empty")
        return None
    if not is_text(data[key]):
        raise body.error(where, f"must be text, got {preview(data[key])}")
    text = str(data[key])
    if limit is None:
        check_name(text, lambda m: body.error(where, m))
    elif len(text) > limit:
        raise body.error(where, f"must be at most {limit} characters, got {len(text)}")
    return text


def _sources(body: Body, prefix: str) -> tuple[str, ...]:
    data = _entry(body, prefix)
    where = f"{prefix}.sources"
    value = data.get("sources")
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]" if isinstance(value, list) else None
        if not isinstance(item, str) or not (
                (item.startswith("@") and CITE_KEY.match(item[1:])) or _URL.match(item)):
            raise body.error(where, f"must be citation keys (@key, quoted: \"@key\") or "
                                    f"http(s) URLs, got {preview(item)}", at=at)
        out.append(item)
    return tuple(out)


def _check_keys(body: Body, prefix: str, allowed: tuple[str, ...]) -> None:
    for key in _entry(body, prefix):
        if key not in allowed:
            near = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise body.error(f"{prefix}.{key}", f"is not a known key (known: "
                                                f"{', '.join(allowed)}){hint}")


def _list(body: Body, section: str, limit: int) -> list[Any]:
    value = body.data.get(section)
    if value is None:
        return []
    if not isinstance(value, list):
        raise body.error(section, f"must be a list of mappings, got {preview(value)}")
    if len(value) > limit:
        raise body.error(section, f"lists {len(value)} entries; at most {limit}")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise body.error(section, f"entries must be mappings (name: …), got "
                                      f"{preview(item)}", at=f"{section}[{i}]")
    return value


def parse_map(text: str, shown: str) -> ActorMap:
    """Validate an actors file's text (raises DataFileError naming `shown`, line and key)."""
    directive = dirs.Directive("actors", shown, 0, 0, text)
    try:
        body = dirs.parse_body(directive)
        return _parse(body, shown)
    except DirectiveError as exc:
        line = exc.line or 1
        raise DataFileError(exc.detail, file=shown, line=line, kind="actors data",
                            key=exc.key) from None


def _parse(body: Body, shown: str) -> ActorMap:
    for key in body.data:
        if key not in ("actors", "relations"):
            near = difflib.get_close_matches(str(key), ("actors", "relations"), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise body.error(str(key), f"is not a known key (known: actors, relations){hint}")
    if not body.data.get("actors"):
        raise body.error("actors", "is required: a list of actors (name, kind)")
    actors: dict[str, Actor] = {}
    for i, _ in enumerate(_list(body, "actors", MAX_ACTORS)):
        prefix = f"actors[{i}]"
        _check_keys(body, prefix, ACTOR_KEYS)
        name = _text(body, prefix, "name", required=True)
        assert name is not None
        if name in actors:
            raise body.error(f"{prefix}.name", f"{preview(name)} is already the name of the "
                                               f"actor on line {actors[name].line}")
        kind = _text(body, prefix, "kind", required=True)
        if kind not in KINDS:
            near = difflib.get_close_matches(str(kind), KINDS, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise body.error(f"{prefix}.kind", f"must be one of {', '.join(KINDS)}, got "
                                               f"{preview(kind)}{hint}")
        actors[name] = Actor(name, kind, parse_span(body, prefix),
                             _text(body, prefix, "note", limit=MAX_NOTE_CHARS),
                             _sources(body, prefix), body.line_of(prefix))
    relations = []
    for i, _ in enumerate(_list(body, "relations", MAX_RELATIONS)):
        prefix = f"relations[{i}]"
        _check_keys(body, prefix, RELATION_KEYS)
        ends = []
        for key in ("from", "to"):
            name = _text(body, prefix, key, required=True)
            if name not in actors:
                near = difflib.get_close_matches(str(name), list(actors), n=1)
                hint = f"; did you mean '{near[0]}'?" if near else ""
                raise body.error(f"{prefix}.{key}", f"names no actor of this file: "
                                                    f"{preview(name)}{hint}")
            ends.append(str(name))
        type_ = _text(body, prefix, "type", required=True)
        assert type_ is not None
        if type_ not in RELATION_TYPES:
            near = difflib.get_close_matches(type_, RELATION_TYPES, n=1, cutoff=0.75)
            if near:  # the set is open, but a near miss of a known type is a typo
                raise body.error(f"{prefix}.type", f"{preview(type_)} is not a known relation "
                                                   f"type; did you mean '{near[0]}'? (other "
                                                   f"types are allowed when not this close)")
        relations.append(Relation(ends[0], type_, ends[1], parse_span(body, prefix),
                                  _text(body, prefix, "note", limit=MAX_NOTE_CHARS),
                                  _sources(body, prefix), body.line_of(prefix)))
    return ActorMap(shown, tuple(actors.values()), tuple(relations))


def load(path: Path, shown: str, cache: dict[str, Any]) -> ActorMap:
    """An actors file, read and validated once per build (memoised by path, size and mtime)."""
    try:
        stat = path.stat()
    except OSError:
        raise DataFileError("actors data file not found", file=shown, line=1,
                            kind="actors data") from None
    memo_key = ("actors-file", str(path), stat.st_size, stat.st_mtime_ns)
    memo = cache.setdefault("actors", {})
    if memo_key not in memo:
        try:
            text = dirs.read_page(path, shown)
        except DirectiveError as exc:
            raise DataFileError(exc.detail, file=shown, line=exc.line or 1,
                                kind="actors data") from None
        memo[memo_key] = parse_map(text, shown)
    return memo[memo_key]  # type: ignore[no-any-return]
