"""The print zine: `unmake zine` renders the site's pages into one print-ready PDF (WeasyPrint).

A front end beside the mkdocs plugin (cli.py drives both). It never runs a model: it builds the
site in the plugin's `off` mode into a temporary folder, from the same sources and store as
`unmake build`, and takes each page's content in `nav` order as the plugin rendered it. Figures
print from the original PNGs (not the WebP web copies), scaled nearest-neighbour; SVG stays
vector. What the store lacks prints as the site shows it ("not generated yet") and is listed.

The document: a cover, a table of contents, one chapter per page (running header, page numbers),
figures numbered through the whole zine, one references list of everything the pages and their
captions cite (instead of the site's list at the end of each page; citations link to it), and an
appendix with one provenance block per figure.
`--layout catalogue` prints chosen images as plates, one per page, with a wall label, instead of
the chapters. Paged-media CSS does the layout (templates/print.css, which a zine's own
`templates/print.css` replaces, like any template); page size, margins, bleed and crop marks are
one generated `@page` rule. WeasyPrint fetches files only from the built site, the project and
the store: any other URL (a remote image in a page) is refused without a request and reported.
`--impose saddle|onesheet` hands the PDF to pdfimpose.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from markupsafe import Markup
from mkdocs.plugins import event_priority

from . import citations
from .errors import UnmakeError
from .store import Store
from .types import Planned

PAGE_SIZES = {"a5": (148.0, 210.0), "a4": (210.0, 297.0), "letter": (215.9, 279.4)}
LAYOUTS = ("essay", "catalogue")
IMPOSITIONS = ("saddle", "onesheet")
_UNITS = {"mm": 1.0, "cm": 10.0, "in": 25.4, "pt": 25.4 / 72}
_LENGTH = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(mm|cm|in|pt)\s*$")
# the keys of the plugin config's `zine:` section (README: "The print zine")
ZINE_KEYS = {"title": str, "subtitle": str, "authors": list, "date": str, "cover": str,
             "plates": list}


@dataclass
class ZineOptions:
    """What `unmake zine` was asked for (lengths in millimetres)."""

    output: Path
    page: tuple[float, float] = PAGE_SIZES["a5"]
    margin: float = 15.0
    bleed: float = 0.0
    marks: bool = False
    layout: str = "essay"
    impose: str | None = None
    keep: Path | None = None  # keep the combined HTML, its CSS and the site it uses here


@dataclass
class ZineReport:
    """What a zine build did: pages written, figures, and what it had to leave out."""

    output: Path
    pages: int
    figures: int
    missing: list[str] = field(default_factory=list)  # "file:line: job" lacking a stored result
    refused: list[str] = field(default_factory=list)  # URLs the fetcher would not load
    sheets: int | None = None  # printed sheets' sides after imposition


def length(text: str, what: str) -> float:
    """'3mm', '0.5in', '12pt', '1cm' -> millimetres; a bare number is refused (which unit?)."""
    m = _LENGTH.match(text)
    if not m:
        raise UnmakeError(f"unmake zine: {what} takes a length with a unit (3mm, 0.5in, 12pt, "
                          f"1cm), got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def page_size(text: str) -> tuple[float, float]:
    """'a5', 'A4', 'letter' or 'WIDTHxHEIGHT' with units ('120mmx180mm') -> (w, h) in mm."""
    if text.lower() in PAGE_SIZES:
        return PAGE_SIZES[text.lower()]
    width, sep, height = text.lower().partition("x")
    if sep:
        try:
            size = (length(width, "--page"), length(height, "--page"))
        except UnmakeError:
            pass
        else:
            if min(size) >= 50 and max(size) <= 1000:
                return size
    raise UnmakeError(f"unmake zine: --page takes a5, a4, letter or WIDTHxHEIGHT with units "
                      f"(e.g. 120mmx180mm, each side 50–1000 mm), got {text!r}")


# -- 1. the site, rendered in `off` mode, captured page by page --------------------------------


class _Capture:
    """A plugin added for the zine's build only: the nav's page order, and each page's HTML as
    the unmake plugin left it (it runs after unmake's on_page_content)."""

    def __init__(self) -> None:
        self.order: list[Any] = []
        self.html: dict[str, str] = {}
        self.meta: dict[str, dict[str, Any]] = {}

    @event_priority(-100)  # after unmake's on_files has planned the site
    def on_files(self, files: Any, config: Any) -> Any:
        # the theme's own assets (hundreds of files) are not printed: copying them cost ~0.4 s
        docs = Path(config.docs_dir).resolve()
        for file in list(files):
            if not Path(file.abs_src_path or docs).resolve().is_relative_to(docs):
                files.remove(file)
        return files

    def on_nav(self, nav: Any, config: Any, files: Any) -> Any:
        self.order = list(nav.pages)
        return nav

    @event_priority(-90)  # after unmake's (-50): its figures are in place
    def on_page_content(self, html: str, page: Any, config: Any, files: Any) -> str:
        self.html[page.file.src_uri] = html
        self.meta[page.file.src_uri] = dict(page.meta or {})
        return html


def _render_site(config: Any, plugin: Any, where: Path) -> _Capture:
    """Build the site into `where` with no model run; return the captured pages."""
    from mkdocs.commands.build import build

    capture = _Capture()
    # the temporary build is an implementation detail: keep mkdocs' INFO lines (and the folder
    # they name) out of the zine's output; WeasyPrint's refusals are reported by the caller
    for name, level in (("mkdocs", logging.WARNING), ("weasyprint", logging.CRITICAL)):
        logging.getLogger(name).setLevel(level)
    plugin.cli_mode = "off"  # render what the store holds; run nothing
    plugin.page_references = False  # one references list for the whole zine, at its end
    config.site_dir = str(where)
    config.plugins["unmake-zine-capture"] = capture
    config.plugins.on_startup(command="build", dirty=False)
    try:
        build(config)
    finally:
        config.plugins.on_shutdown()
    return capture


# -- 2. the pages, made into chapters of one document ------------------------------------------

_ATTR = re.compile(r'(\s)(src|href|id)="([^"]*)"')
_URL_REF = re.compile(r"url\(#([^)\s]+)\)")
_FIGNUM = re.compile(r"<strong>Figure \d+\.</strong>")
_FIGURE = re.compile(r'<figure class="unmake-figure[^"]*" id="([^"]*)"')
_WEB_COPY = re.compile(r"(assets/unmake/img/[0-9a-f]{64})\.webp$")


@dataclass
class _Chapter:
    number: int
    title: str
    anchor: str
    html: Markup
    src_uri: str


def _chapters(capture: _Capture, site: Path, figure_numbers: dict[tuple[str, str], int],
              counter: list[int]) -> list[_Chapter]:
    """Each page in nav order, its ids prefixed by chapter (anchors repeat across pages), its
    links made internal, its images pointed at the original PNGs in the built site."""
    prefixes = {page.file.src_uri: f"c{n}-" for n, page in enumerate(capture.order, 1)}
    by_url = {page.url: page.file.src_uri for page in capture.order}
    chapters = []
    for number, page in enumerate(capture.order, 1):
        src = page.file.src_uri
        html = capture.html.get(src, "")
        prefix = prefixes[src]
        base = "file:///" + page.url  # a stand-in root: resolves relative URLs to site paths

        def attr(m: re.Match[str], prefix: str = prefix, base: str = base) -> str:
            space, name, value = m.groups()
            if name == "id":
                return f'{space}id="{prefix}{value}"'
            if value.startswith("#"):
                return f'{space}{name}="#{prefix}{value[1:]}"'
            parts = urlsplit(value)
            if parts.scheme or value.startswith("//"):  # remote: links stay, images are refused
                return m.group(0)
            target = urlsplit(urljoin(base, value))
            site_path = unquote(target.path).lstrip("/")
            if name == "href":
                page_src = by_url.get(site_path) if site_path or not target.fragment else None
                if page_src is None and site_path in ("", "index.html"):
                    page_src = by_url.get("")
                if page_src is not None:  # a link to another page of the zine: internal
                    frag = target.fragment
                    return (f'{space}href="#{prefixes[page_src]}{frag}"' if frag
                            else f'{space}href="#chapter-{prefixes[page_src][1:-1]}"')
                # a local file (a download, a web copy): not a link in print, and no path of
                # this machine in the PDF
                return space.rstrip() + " "
            web = _WEB_COPY.search(site_path)
            if web and (site / f"{web.group(1)}.png").is_file():
                site_path = f"{web.group(1)}.png"  # print the original, not the web copy
            return f'{space}src="{(site / site_path).as_uri()}"'

        html = _ATTR.sub(attr, html)
        html = _URL_REF.sub(f"url(#{prefix}\\1)", html)
        # citations link to the zine's one references list (ids `ref-<key>`, unprefixed)
        html = html.replace(f'href="#{prefix}ref-', 'href="#ref-')

        # number figures through the whole zine; remember each one's number by its anchor
        pieces = []
        last = 0
        anchor = None
        for m in re.finditer(f"{_FIGURE.pattern}|{_FIGNUM.pattern}", html):
            if m.group(1) is not None:
                anchor = m.group(1)[len(prefix):]
                continue
            counter[0] += 1
            if anchor is not None:
                figure_numbers[(src, anchor)] = counter[0]
                anchor = None
            pieces.append(html[last:m.start()] + f"<strong>Figure {counter[0]}.</strong>")
            last = m.end()
        html = "".join(pieces) + html[last:]
        title = page.title or src
        # the page's HTML as the site build rendered it (every directive escaped its values)
        content = Markup(html)  # noqa: S704
        chapters.append(_Chapter(number, str(title), f"chapter-{number}", content, src))
    return chapters


# -- 3. provenance: one compact block per figure, from the store's records ---------------------

_SHOWN_MAX = 160  # characters of one value in the appendix; longer ones are cut with "…"


def _shown(value: Any, root: Path) -> str:
    from .plugin import public_text

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           sort_keys=True)
    text = public_text(text, root)
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 1] + "…"


def provenance(planned: Planned, store: Store, root: Path) -> dict[str, Any]:
    """A figure's provenance, summarised over its jobs' records: the inputs every job shares,
    those that vary (with their values), models with fingerprints, library versions, dates."""
    records = [r for r in (store.get(job.key) for job in planned.jobs) if r is not None]
    keys: dict[str, list[Any]] = {}
    for record in records:
        for key, value in record.get("inputs", {}).items():
            if key == "needs":
                continue
            shown = _shown(value, root)
            key = "fingerprint" if key == "model" else key  # the alias is under "model"
            keys.setdefault(key, [])
            if shown not in keys[key]:
                keys[key].append(shown)
    models = sorted({f"{r['run'].get('model', '?')} → {r['run'].get('shown', '?')}"
                     for r in records if r.get("run", {}).get("model")})
    versions = sorted({f"{k} {v}" for r in records for k, v in r.get("env", {}).items()
                       if k not in ("batch",) and isinstance(v, str | int | float)})
    dates = sorted(str(r.get("created", ""))[:10] for r in records if r.get("created"))
    directive = planned.directive
    return {
        "where": directive.where, "kind": directive.kind,
        "caption": getattr(directive.spec, "caption", None),
        "jobs": len(planned.jobs), "stored": len(records),
        "fixed": {k: v[0] for k, v in keys.items() if len(v) == 1},
        "varying": {k: v for k, v in keys.items() if len(v) > 1},
        "models": models, "versions": versions,
        "dates": (dates[0] if dates[0] == dates[-1] else f"{dates[0]} – {dates[-1]}")
        if dates else "",
        "types": sorted({job.type for job in planned.jobs}),
    }


def _figures(plan: Any, capture: _Capture) -> list[tuple[str, Planned]]:
    """Every planned figure in nav order, with its page."""
    out = []
    for page in capture.order:
        for planned in plan.pages.get(page.file.src_uri, []):
            out.append((page.file.src_uri, planned))
    return out


def _anchor(planned: Planned, index: int) -> str:
    return getattr(planned.directive.spec, "id", None) or f"figure-{index}"


# -- 4. plates for the catalogue ---------------------------------------------------------------


def _plates(figures: list[tuple[str, Planned]], capture: _Capture, chosen: list[str] | None,
            numbers: dict[tuple[str, str], int], store: Store, root: Path,
            where: str) -> list[dict[str, Any]]:
    """Each image of the chosen figures (config `zine.plates`, or front matter `plates: true`
    on a page; all figures with images when neither says) with its wall label."""
    by_id: dict[str, tuple[str, Planned, int]] = {}
    indexed = []
    per_page: dict[str, int] = {}
    for src, planned in figures:
        per_page[src] = per_page.get(src, 0) + 1
        indexed.append((src, planned, per_page[src]))
        if getattr(planned.directive.spec, "id", None):
            by_id[planned.directive.spec.id] = (src, planned, per_page[src])
    if chosen:
        unknown = [i for i in chosen if i not in by_id]
        if unknown:
            raise UnmakeError(f"{where}: plugins.unmake.zine.plates: no figure has the id "
                              f"{unknown[0]!r} (ids: {', '.join(sorted(by_id)) or 'none'})")
        picked = [by_id[i] for i in chosen]
    else:
        flagged = [f for f in indexed if capture.meta.get(f[0], {}).get("plates")]
        picked = flagged or indexed
    plates = []
    for src, planned, index in picked:
        number = numbers.get((src, _anchor(planned, index)))
        title = getattr(planned.directive.spec, "caption", None) or _anchor(planned, index)
        for job in planned.jobs:
            record = store.get(job.key)
            if record is None or "image" not in record.get("files", {}):
                continue
            from .render import withheld

            if withheld(record):
                continue
            art = record["files"]["image"]
            inputs = record.get("inputs", {})
            plates.append({
                "title": title, "figure": number,
                "image": store.blob_path(art["sha256"], art["ext"]).as_uri(),
                "prompt": inputs.get("prompt", ""), "negative": inputs.get("negative", ""),
                "seed": inputs.get("seed", ""),
                "model": f"{record['run'].get('shown', '?')} ({inputs.get('model', '?')})",
                "date": str(record.get("created", ""))[:10],
                "size": f"{inputs.get('width', '?')}×{inputs.get('height', '?')}",
                "steps": inputs.get("steps", ""), "guidance": inputs.get("guidance", ""),
            })
    return plates


# -- 5. the fetcher: project, store and built site only; never the network ---------------------


def _fetcher(allowed: Iterable[Path], refused: list[str]) -> Any:
    from weasyprint.urls import URLFetcher

    roots = [p.resolve() for p in allowed]

    class ProjectFetcher(URLFetcher):  # type: ignore[misc]
        """Loads file:// URLs under the allowed folders and data: URLs; refuses the rest."""

        def fetch(self, url: str, headers: Any = None) -> Any:
            parts = urlsplit(url)
            if parts.scheme == "data":
                return super().fetch(url, headers)
            if parts.scheme == "file":
                path = Path(unquote(parts.path)).resolve()
                if any(path.is_relative_to(root) for root in roots):
                    return super().fetch(url, headers)
            refused.append(url)
            raise ValueError(f"unmake zine: not loading {url} (only project files and the store)")

    return ProjectFetcher()


# -- 6. the whole recipe -----------------------------------------------------------------------


def page_css(options: ZineOptions) -> str:
    """The generated @page rule: size, margins, bleed and crop marks."""
    w, h = options.page
    rules = [f"size: {w:g}mm {h:g}mm;", f"margin: {options.margin:g}mm;"]
    if options.bleed:
        rules.append(f"bleed: {options.bleed:g}mm;")
    if options.marks:
        rules.append("marks: crop cross;")
    return "@page { " + " ".join(rules) + " }\n"


def zine_settings(config: Any, plugin: Any) -> dict[str, Any]:
    """The `zine:` section of the plugin config, checked; cover text defaults from mkdocs.yml."""
    where = os.path.relpath(config.config_file_path)
    section = plugin.config.get("zine") or {}
    if not isinstance(section, dict):
        raise UnmakeError(f"{where}: plugins.unmake.zine: expected a mapping of "
                          f"{', '.join(ZINE_KEYS)}, got {type(section).__name__}")
    for key, value in section.items():
        if key not in ZINE_KEYS:
            raise UnmakeError(f"{where}: plugins.unmake.zine.{key}: not a known key (known: "
                              f"{', '.join(ZINE_KEYS)})")
        if not isinstance(value, ZINE_KEYS[key]):
            raise UnmakeError(f"{where}: plugins.unmake.zine.{key}: expected "
                              f"{ZINE_KEYS[key].__name__}, got {value!r}")
    authors = section.get("authors") or ([config.site_author] if config.site_author else [])
    return {"title": section.get("title") or config.site_name,
            "subtitle": section.get("subtitle") or config.site_description or "",
            "authors": [str(a) for a in authors], "date": str(section.get("date") or ""),
            "cover": section.get("cover"), "plates": section.get("plates"), "where": where}


def build_zine(config: Any, plugin: Any, options: ZineOptions) -> ZineReport:
    """Render the site's pages (no model runs) into one PDF at options.output."""
    from weasyprint import CSS, HTML

    from .render import package_templates

    if options.layout not in LAYOUTS:
        raise UnmakeError(f"unmake zine: --layout must be one of {', '.join(LAYOUTS)}, "
                          f"got {options.layout!r}")
    settings = zine_settings(config, plugin)
    root = Path(config.config_file_path).resolve().parent

    # 1. Build the site into a temporary folder in `off` mode: nothing runs.
    if options.keep:
        work = options.keep.resolve()
        if work.exists() and any(work.iterdir()):
            raise UnmakeError(f"unmake zine: --html {options.keep} exists and is not empty; "
                              "pick a new folder")
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="unmake-zine-"))
    try:
        site = work / "site"
        capture = _render_site(config, plugin, site)
        plan, store = plugin.plan, plugin.ctx.store
        missing = [f"{', '.join(job.origins)}: {job.type}" for job in plan.missing]

        # 2. Chapters in nav order; figures numbered through the zine.
        numbers: dict[tuple[str, str], int] = {}
        counter = [0]
        chapters = _chapters(capture, site, numbers, counter)

        # 3. The appendix: each figure's provenance, by its number.
        figures = _figures(plan, capture)
        appendix = []
        per_page: dict[str, int] = {}
        for src, planned in figures:
            per_page[src] = per_page.get(src, 0) + 1
            number = numbers.get((src, _anchor(planned, per_page[src])))
            appendix.append({"number": number, **provenance(planned, store, root)})

        # 4. One references list for every citation of the zine (pages and captions alike);
        # a caption in the appendix cites as it does in its chapter, linked to the list.
        references = (citations.references(plugin.bib, plugin.cited)
                      if plugin.bib is not None and plugin.cited else None)
        for entry in appendix:
            if plugin.bib is not None and "[@" in (entry.get("caption") or ""):
                entry["caption"] = _cited(entry["caption"], plugin.bib)

        # 5. Cover figure and plates.
        cover = None
        if settings["cover"]:
            plates_of_cover = _plates(figures, capture, [settings["cover"]], numbers, store,
                                      root, settings["where"])
            cover = [p["image"] for p in plates_of_cover][:16]
        plates = (_plates(figures, capture, settings["plates"], numbers, store, root,
                          settings["where"]) if options.layout == "catalogue" else [])

        # 6. One HTML document and its CSS (a zine's templates/ overrides both).
        overrides = root / plugin.config.templates
        html = plugin.renderer.env.get_template("zine.html").render(
            settings=settings, chapters=chapters if options.layout == "essay" else [],
            appendix=appendix, plates=plates, cover=cover, layout=options.layout,
            missing=len(missing), references=references)
        css_path = overrides / "print.css"
        if not css_path.is_file():
            css_path = package_templates() / "print.css"
        refused: list[str] = []
        fetcher = _fetcher([site, root, store.root, package_templates()], refused)
        web_css = package_templates() / "unmake.css"  # each kind's styles, as on the site
        stylesheets = [CSS(string=path.read_text("utf-8"), url_fetcher=fetcher,
                           base_url=path.as_uri()) for path in (web_css, css_path)]
        stylesheets.append(CSS(string=page_css(options)))
        if options.keep:  # the document as WeasyPrint gets it, to open or print elsewhere
            (work / "zine.html").write_text(html, "utf-8")
            (work / "page.css").write_text(page_css(options), "utf-8")
            for path in (web_css, css_path):
                shutil.copyfile(path, work / path.name)

        # 7. Lay it out and write the PDF (atomically: a failed run keeps the last good one).
        document = HTML(string=html, base_url=site.as_uri() + "/", url_fetcher=fetcher)
        rendered = document.render(stylesheets=stylesheets)
        data = rendered.write_pdf()
        assert isinstance(data, bytes)
        pages = len(rendered.pages)
        sides = None
        if options.impose:
            data, sides = impose(data, options.impose, marks=options.marks)
        _write(store, options.output, data)
    finally:
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)
    refused_shown = [u for u in dict.fromkeys(refused) if not u.startswith("file:")]
    refused_shown += [f"{Path(unquote(urlsplit(u).path)).name} (outside the project)"
                      for u in dict.fromkeys(refused) if u.startswith("file:")]
    return ZineReport(options.output, pages, counter[0], missing, refused_shown, sides)


def _cited(caption: str, bib: citations.Bibliography) -> Markup:
    """A caption with its citations formatted (escaped HTML, as the chapters show it)."""
    page = bib.page()
    shown = citations.in_caption(caption, page)
    html, _ = page.resolve()
    return Markup(citations.fill(str(shown), html))  # noqa: S704 (escaped by in_caption)


def _write(store: Store, path: Path, data: bytes) -> None:
    """Write the PDF whole or not at all: the store's atomic write, or, where the PDF goes to
    another file system than the store (a rename cannot cross one), the same steps beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        store.write_atomic(path, data)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def impose(pdf: bytes, scheme: str, marks: bool = False) -> tuple[bytes, int]:
    """Impose a PDF for folding: `saddle` (a booklet: sheets of two pages a side, folded once
    and stapled) or `onesheet` (eight pages on one side of a sheet, folded and cut once).
    Returns the imposed PDF and its number of sheet sides."""
    from pypdf import PdfReader

    if scheme not in IMPOSITIONS:
        raise UnmakeError(f"unmake zine: --impose must be one of {', '.join(IMPOSITIONS)}, "
                          f"got {scheme!r}")
    out = io.BytesIO()
    mark = ["crop"] if marks else []
    if scheme == "saddle":
        from pdfimpose.schema import saddle

        saddle.impose([io.BytesIO(pdf)], out, signature=(2, 1), mark=mark)
    else:
        from pdfimpose.schema import onepagezine

        if len(PdfReader(io.BytesIO(pdf)).pages) > 8:
            raise UnmakeError("unmake zine: --impose onesheet holds 8 pages, the zine has more; "
                              "use --impose saddle, or fewer pages")
        onepagezine.impose([io.BytesIO(pdf)], out, mark=mark)
    data = out.getvalue()
    return data, len(PdfReader(io.BytesIO(data)).pages)


def default_output(config: Any) -> Path:
    """zine.pdf beside mkdocs.yml."""
    return Path(os.path.dirname(os.path.abspath(config.config_file_path))) / "zine.pdf"
