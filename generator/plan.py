"""Plan the whole site before any model loads: directives -> keyed jobs -> cached or to run.

Planning is two passes. First every page is parsed and validated, so every figure id of the site
is known; then directives are expanded in dependency order (a consumer, `of: id`, after the
figure it reads), so a `measure` on page 1 can consume a `generate` on page 3. A consumer's jobs
name their upstream jobs (`Job.needs`), whose keys are part of their own: a new upstream result
means new consumer keys, and nothing else changes.
"""

from __future__ import annotations

import difflib
import re

from . import directives as dirs
from .errors import DirectiveError, UnmakeError
from .log import log
from .specs import MAX_NAME_CHARS, Body, check_name, preview
from .types import Context, Job, Plan, Planned

# a figure's id is its HTML anchor: lowercase words joined by single hyphens, starting with a
# letter (HTML 4 ids, and CSS selectors without escapes, cannot start with a digit)
ID = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_ATTR_ID = re.compile(r"\{[^}]*#([\w-]+)[^}]*\}\s*$")


def _located(exc: UnmakeError, directive: dirs.Directive) -> DirectiveError:
    if isinstance(exc, DirectiveError):
        return exc.located(directive.file, directive.line, directive.kind)
    return DirectiveError(str(exc), file=directive.file, line=directive.line, kind=directive.kind)


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def heading_anchors(text: str) -> set[str]:
    """The anchors the toc extension gives this page's Markdown headings (outside fences): ATX
    (`## Title`) and setext (`Title` over `===`) headings, and attr_list's `{#custom}` ids."""
    from markdown.extensions.toc import slugify

    anchors: set[str] = set()
    fence: str | None = None
    previous = ""
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            mark = stripped[:3]
            fence = None if fence == mark else fence or mark
            previous = ""
            continue
        if fence is not None:
            continue
        title = None
        if m := _HEADING.match(line):
            title = m.group(2)
        elif previous.strip() and _SETEXT.match(line):
            title = previous.strip()
        previous = line
        if title is None:
            continue
        if explicit := _ATTR_ID.search(title):
            anchors.add(explicit.group(1))
            continue
        slug = base = slugify(re.sub(r"<[^>]+>", "", title), "-")
        n = 0
        while slug in anchors:  # the toc extension numbers repeated headings
            n += 1
            slug = f"{base}_{n}"
        anchors.add(slug)
    return anchors


def parse_page(text: str, file: str, ctx: Context) -> list[dirs.Directive]:
    """Find and validate every directive of one page (raises DirectiveError at the first fault)."""
    from .kinds import KINDS

    for near in dirs.near_misses(text, set(KINDS)):  # ```ecosytem renders as a code block
        log.warning("%s:%d: '%s' is not a directive; did you mean '%s'? (it is shown as a code "
                    "block)", file, near[0], near[1], near[2])
    found = dirs.find(text, file, set(KINDS))
    headings: set[str] | None = None
    for directive in found:
        kind = KINDS[directive.kind]
        body = dirs.parse_body(directive)
        try:
            directive.spec = kind.parse(body, ctx)
            # `of:` may be left out where the kind allows it (`neighbors` takes `query:`) or
            # where the spec starts from something else (`iterate`'s `image:`)
            required = kind.of_required and not getattr(directive.spec, "of_optional", False)
            directive.upstream = _parse_of(body, kind.consumes, required)
            body.finish()
        except UnmakeError as exc:
            raise _located(exc, directive) from None
        directive.key_lines = body.key_lines
        figure_id = getattr(directive.spec, "id", None)
        if figure_id is not None:
            where = body.key_lines.get("id", directive.line)
            if not ID.match(figure_id) or len(figure_id) > MAX_NAME_CHARS:
                too_long = (f", at most {MAX_NAME_CHARS} characters"
                            if len(figure_id) > MAX_NAME_CHARS else "")
                raise DirectiveError(
                    f"must be an anchor of lowercase letters, digits and single hyphens, "
                    f"starting with a letter (like 'steps-sweep'){too_long}, got "
                    f"{preview(figure_id)}",
                    file=file, line=where, kind=directive.kind, key="id")
            headings = heading_anchors(text) if headings is None else headings
            if figure_id in headings:
                raise DirectiveError(f"'{figure_id}' is also the anchor of a heading on this "
                                     "page; links would go to one of them. Pick another id",
                                     file=file, line=where, kind=directive.kind, key="id")
    return found


def _parse_of(body: Body, consumes: tuple[str, ...], required: bool = True) -> tuple[str, ...]:
    """`of: id` or `of: [a, b]`: the figures a consumer reads (checked against the site later)."""
    if not consumes or (not required and body.raw("of", None) is None):
        return ()
    value = body.raw("of")
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, str) and i for i in items):
        raise body.error("of", f"must be a figure id or a list of them, got {preview(value)}")
    seen: set[str] = set()
    for i, item in enumerate(items):
        at = f"of[{i}]" if isinstance(value, list) else None
        check_name(item, lambda m, at=at: body.error("of", m, at=at))
        if item in seen:
            raise body.error("of", "names a figure twice", at=at)
        seen.add(item)
    return tuple(items)


def _order(found: list[dirs.Directive]) -> list[dirs.Directive]:
    """Directives in dependency order (upstream first), page order otherwise.

    Raises DirectiveError for an unknown id, a figure that cannot be consumed, or a cycle (naming
    every place in it)."""
    from .kinds import KINDS

    by_id: dict[str, dirs.Directive] = {}
    for d in found:
        figure_id = getattr(d.spec, "id", None)
        if figure_id is None:
            continue
        if figure_id in by_id:
            first = by_id[figure_id]
            raise DirectiveError(f"'{figure_id}' is already the id of the figure at "
                                 f"{first.where}; ids are unique across the site", file=d.file,
                                 line=d.key_lines.get("id", d.line), kind=d.kind, key="id")
        by_id[figure_id] = d
    for d in found:
        line = d.key_lines.get("of", d.line)
        for ref in d.upstream:
            target = by_id.get(ref)
            if target is None:
                near = difflib.get_close_matches(ref, list(by_id), n=1)
                hint = f"; did you mean '{near[0]}' ({by_id[near[0]].where})?" if near else (
                    f" (ids: {', '.join(sorted(by_id)) or 'no figure has one'})")
                raise DirectiveError(f"no figure of the site has the id '{ref}'{hint}",
                                     file=d.file, line=line, kind=d.kind, key="of")
            produces = KINDS[target.kind].produces
            if produces not in KINDS[d.kind].consumes:
                raise DirectiveError(
                    f"'{ref}' is {_a(target.kind)} figure ({target.where}), whose results "
                    f"{_a(d.kind)} cannot read (it reads {', '.join(KINDS[d.kind].consumes)} from: "
                    + ", ".join(sorted(k for k, v in KINDS.items()
                                       if v.produces in KINDS[d.kind].consumes)) + ")",
                    file=d.file, line=line, kind=d.kind, key="of")

    ordered: list[dirs.Directive] = []
    state: dict[int, str] = {}  # id(directive) -> "visiting" | "done"

    def visit(d: dirs.Directive, path: list[dirs.Directive]) -> None:
        state[id(d)] = "visiting"
        for ref in d.upstream:
            up = by_id[ref]
            if state.get(id(up)) == "visiting":  # back to a figure on the current path
                cycle = [*path[path.index(up):], up]
                places = " -> ".join(f"{c.where} ({getattr(c.spec, 'id', None)})"
                                     for c in cycle)
                raise DirectiveError(f"makes a cycle: {places}", file=d.file,
                                     line=d.key_lines.get("of", d.line), kind=d.kind, key="of")
            if state.get(id(up)) != "done":
                visit(up, [*path, up])
        state[id(d)] = "done"
        ordered.append(d)

    for d in found:
        if id(d) not in state:
            visit(d, [d])
    return ordered


def plan_site(pages: dict[str, tuple[str, str]], ctx: Context, force: bool = False) -> Plan:
    """Plan every page: `pages` maps src path -> (path shown to the author, Markdown text)."""
    from .kinds import KINDS

    # 1. Parse and validate every page, so every figure id of the site is known.
    found: dict[str, list[dirs.Directive]] = {}
    for src, (shown, text) in sorted(pages.items()):
        found[src] = parse_page(text, shown, ctx)

    # 2. Expand in dependency order; identical jobs on any page run once.
    jobs: dict[str, Job] = {}
    expanded: dict[int, Planned] = {}
    for directive in _order([d for page in found.values() for d in page]):
        kind = KINDS[directive.kind]
        upstream = [ctx.figures[i] for i in directive.upstream]
        try:
            own = (kind.expand(directive.spec, ctx, upstream) if kind.consumes
                   else kind.expand(directive.spec, ctx))
        except UnmakeError as exc:
            raise _located(exc, directive) from None
        merged = []
        for job in own:
            job = jobs.setdefault(job.key, job)
            if directive.where not in job.origins:  # two cells of one figure may be one job
                job.origins.append(directive.where)
            merged.append(job)
        planned = Planned(directive, merged, upstream)
        expanded[id(directive)] = planned
        if figure_id := getattr(directive.spec, "id", None):
            ctx.figures[figure_id] = planned
    planned_pages = {src: [expanded[id(d)] for d in page] for src, page in found.items()}

    # 3. Look every key up in the store. --force runs everything again but deletes nothing
    # first: a result is replaced only when its new one is written, so an interrupted forced
    # build loses no work.
    ctx.store.save_memos()
    cached = set() if force else {key for key in jobs if ctx.store.has(key)}
    missing = [job for key, job in jobs.items() if key not in cached]
    return Plan(planned_pages, jobs, cached, missing)
