"""`actors`: a map of who made, funded, hosted and licensed what — graph, table and timeline.

    ```actors
    data: ecosystem/stable-diffusion.yml   # an actors file (generator/actors.py), from docs_dir
    focus: Stability AI                    # optional: only what is within `depth` relations
    depth: 2
    types: [funded, built]                 # optional: only these relation types
    period: [2021, 2022]                   # optional: only what overlaps this period
    show: [graph, table, timeline]         # optional subset, in this order
    caption: Who made Stable Diffusion v1.
    ```

No job and no model: the file is read and validated while the site is planned (so a bad file
stops the build before anything runs) and drawn while the page renders, by generator/svg.py,
deterministically. Everything the graph shows is also in the table, with its sources: citation
keys become citations of the page's bibliography (generator/citations.py), URLs become links, and
a relation without a source is marked as unsourced.
"""

from __future__ import annotations

import difflib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from markupsafe import Markup, escape

from .. import actors as actordata
from .. import citations, svg
from ..render import PageRender
from ..specs import Body, check_name, preview
from ..types import Context, Job, Kind, Planned

PARTS = ("graph", "table", "timeline")
MAX_DEPTH = 6
HOW = ("Drawn at build time from {file}; the layout is Kamada–Kawai's and the same on every "
       "build. Shapes and colours tell the kinds of actor apart; an arrow points from the actor "
       "who acted to the one acted on; a dashed line is a claim given without a source.")


@dataclass(frozen=True)
class ActorsSpec:
    id: str | None
    data: actordata.ActorMap
    focus: str | None
    depth: int
    types: tuple[str, ...]
    period: tuple[actordata.When, actordata.When] | None
    show: tuple[str, ...]
    caption: str | None


def data_file(body: Body, ctx: Context, key: str = "data") -> actordata.ActorMap:
    """The actors file a directive's `key` names (relative to docs_dir, inside the project)."""
    name = body.take_name(key)
    if not name.endswith((".yml", ".yaml")):
        raise body.error(key, f"must name a .yml or .yaml file, got {preview(name)}")
    path = (ctx.docs_dir / name).resolve()
    try:
        shown = path.relative_to(ctx.root.resolve()).as_posix()
    except ValueError:
        raise body.error(key, f"must name a file inside the project, got {preview(name)}") \
            from None
    try:
        if not path.is_file():
            raise body.error(key, f"names no file: {shown} (paths are relative to the docs "
                                  f"folder, {Path(ctx.docs_dir).name}/)")
    except (OSError, ValueError):
        raise body.error(key, f"names no readable file: {preview(name)}") from None
    return actordata.load(path, shown, ctx.cache)


def check_sources(amap: actordata.ActorMap, ctx: Context) -> None:
    """Every citation key of the file is in the bibliography (an error at the entry's line)."""
    bib = citations.load(ctx.config, ctx.root, ctx.cache)
    entries = [("actors", i, a.line, a.sources) for i, a in enumerate(amap.actors)]
    entries += [("relations", i, r.line, r.sources) for i, r in enumerate(amap.relations)]
    for section, i, line, sources in entries:
        for source in sources:
            if not source.startswith("@"):
                continue

            def error(message: str, line: int = line, at: str = f"{section}[{i}].sources") \
                    -> actordata.DataFileError:
                return actordata.DataFileError(message, file=amap.file, line=line,
                                               kind="actors data", key=at)

            if bib is None:
                raise error(f"cites '{source}', but no bibliography is declared (set "
                            f"`bibliography:` under the unmake plugin in mkdocs.yml)")
            bib.check(source[1:], error)


def parse(body: Body, ctx: Context) -> ActorsSpec:
    amap = data_file(body, ctx)
    check_sources(amap, ctx)
    focus = body.take_name("focus", None)
    if focus is not None and focus not in {a.name for a in amap.actors}:
        near = difflib.get_close_matches(focus, [a.name for a in amap.actors], n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise body.error("focus", f"names no actor of {amap.file}: {preview(focus)}{hint}")
    depth = body.take_int("depth", 1, lo=1, hi=MAX_DEPTH)
    if body.has("depth") and focus is None:
        raise body.error("depth", "counts relations from the `focus:` actor; give focus too")
    known = sorted({r.type for r in amap.relations})
    types = body.take_str_list("types", ())
    for i, type_ in enumerate(types):
        if type_ not in known:
            near = difflib.get_close_matches(type_, known, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise body.error("types", f"{preview(type_)} is the type of no relation in "
                                      f"{amap.file} (types: {', '.join(known)}){hint}",
                             at=f"types[{i}]")
    period = None
    if body.has("period"):
        value = body.raw("period")
        if not isinstance(value, list) or len(value) != 2:
            raise body.error("period", f"must be [start, end], got {preview(value)}")
        lo, hi = (actordata.parse_when(v, lambda m, i=i: body.error("period", m,
                                                                    at=f"period[{i}]"))
                  for i, v in enumerate(value))
        if hi.end() <= lo.start():
            raise body.error("period", f"ends ({hi}) before it starts ({lo})")
        period = (lo, hi)
    show = body.take_str_list("show", PARTS)
    for i, part in enumerate(show):
        if part not in PARTS or part in show[:i]:
            raise body.error("show", f"must list some of {', '.join(PARTS)} once each, got "
                                     f"{preview(part)}", at=f"show[{i}]")
    caption = body.take_str("caption", None)
    figure_id = body.take_str("id", None)
    if figure_id is not None:
        check_name(figure_id, lambda m: body.error("id", m))
    return ActorsSpec(figure_id, amap, focus, depth, types, period, show, caption)


def expand(spec: ActorsSpec, ctx: Context) -> list[Job]:
    return []  # nothing to run: the file is drawn while the page renders


# -- selecting and rendering ------------------------------------------------------------------
def select(spec: ActorsSpec) -> tuple[list[str], list[actordata.Relation]]:
    """The actors and relations on show: filtered by type and period, then those within
    `depth` relations of the focus (in file order)."""
    rels = [r for r in spec.data.relations
            if (not spec.types or r.type in spec.types)
            and (spec.period is None or (r.when is not None and r.when.overlaps(*spec.period)))]
    if spec.focus is None:
        names = {a.name for a in spec.data.actors}
        if spec.types or spec.period:  # a filtered map shows the actors its relations join
            names = {n for r in rels for n in (r.source, r.target)}
        return [a.name for a in spec.data.actors if a.name in names], rels
    near: dict[str, int] = {spec.focus: 0}
    queue = deque([spec.focus])
    while queue:
        name = queue.popleft()
        if near[name] == spec.depth:
            continue
        for r in rels:
            for a, b in ((r.source, r.target), (r.target, r.source)):
                if a == name and b not in near:
                    near[b] = near[name] + 1
                    queue.append(b)
    rels = [r for r in rels if r.source in near and r.target in near]
    return [a.name for a in spec.data.actors if a.name in near], rels


def sources_html(sources: tuple[str, ...], page: PageRender) -> Markup:
    """A claim's sources: citations of the page's bibliography, and links (by domain)."""
    if not sources:
        return Markup('<em class="unmake-unsourced">unsourced</em>')
    parts = []
    keys = [s[1:] for s in sources if s.startswith("@")]
    citations = getattr(page, "citations", None)
    if keys:
        if citations is not None:
            parts.append(citations.cite_keys(keys))
        else:
            # Markup(literal).format escapes what it is given
            parts.append(Markup(", ").join(Markup("<code>@{}</code>").format(k)
                                           for k in keys))
    for url in (s for s in sources if not s.startswith("@")):
        parts.append(Markup('<a href="{}" rel="nofollow">{}</a>').format(
            url, urlsplit(url).hostname or url))
    return Markup("; ").join(parts)


def render(planned: Planned, page: PageRender) -> str:
    spec: ActorsSpec = planned.directive.spec
    names, rels = select(spec)
    anchor = spec.id or f"figure-{page.figures + 1}"
    title = page.caption_text(spec.caption) if spec.caption else f"Actors of {spec.data.file}"
    graph = timeline = None
    if "graph" in spec.show and names:
        # svg.py escapes every text it writes
        graph = Markup(svg.network(spec.data, names, rels, anchor, title).svg)  # noqa: S704
    if "timeline" in spec.show:
        drawn = svg.timeline(spec.data, names, rels, anchor, f"Timeline: {title}")
        timeline = Markup(drawn.svg) if drawn else None  # noqa: S704
    rows = [{"rel": r, "sources": sources_html(r.sources, page)} for r in rels]
    actors = [{"actor": spec.data.actor(n), "sources": sources_html(spec.data.actor(n).sources,
                                                                     page)
               if spec.data.actor(n).sources else None} for n in names]
    filters = []
    if spec.focus:
        filters.append(f"within {spec.depth} relation{'s' * (spec.depth != 1)} of {spec.focus}")
    if spec.types:
        filters.append(f"relations of type {', '.join(spec.types)}")
    if spec.period:
        filters.append(f"dated within {spec.period[0]}–{spec.period[1]} (undated relations "
                       f"left out)")
    context: dict[str, Any] = {
        "spec": spec, "graph": graph, "timeline": timeline, "rows": rows, "actors": actors,
        "show": spec.show, "filters": filters, "how": HOW.format(file=spec.data.file),
        "unsourced": sum(1 for r in rels if not r.sources), "escape": escape,
    }
    return page.figure("actors.html", planned, context)


KIND = Kind(
    name="actors",
    parse=parse,
    expand=expand,
    render=render,
    doc="A map of the actors around a model from a YAML data file: a static SVG network, a "
        "table of relations with their sources, and a timeline.",
)
