"""Citations: `[@key]`, `[@key, p. 12]` and `[@a; @b]` in page text, against a BibTeX file.

The bibliography is declared in the plugin config (`bibliography: references.bib`) and formatted
by citeproc-py with a CSL style (`citation_style`; author–date, Harvard "cite them right", by
default — the style citeproc-py ships). Pages are checked while the site is planned (an unknown
key is `page:line` error before any model runs); each page's citations become linked author–date
references and the page gets a references list at its end. Figure captions cite the same way
(`caption: … [@key]`: `check_caption` while planning, `in_caption` while rendering), and so do
sources in actors files (generator/actors.py), through the same per-page list. The print zine
(generator/zine.py) prints one list for the whole zine instead (`references`).

Not citations: `\\[@key]` (escaped), e-mail addresses, anything in code (fences and spans), a
link `[@name](url)` and text in brackets that does not parse as citations.

Per page, every citation is registered before any is formatted (citeproc needs them all to tell
"2022a" from "2022b"): citations become placeholders while the page renders, and `resolve`
swaps them for their text at the end.
"""

from __future__ import annotations

import re
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from .errors import ConfigError, DirectiveError
from .specs import one_line, preview

DEFAULT_STYLE = "harvard-cite-them-right"
# a citation group: `[@…]`, not escaped, not a link or a link reference definition
_GROUP = re.compile(r"(?<!\\)\[(?P<body>@[^\[\]\n]*)\](?![(\[:])")
_ITEM = re.compile(r"^@(?P<key>[A-Za-z0-9_][\w:.#$%&+?<>~/-]*?)(?:\s*,\s*(?P<loc>.+?))?\s*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:.+?)\1", re.S)
# locator labels as authors write them -> CSL locator terms
LOCATORS = {"p.": "page", "pp.": "page", "page": "page", "pages": "page",
            "ch.": "chapter", "chap.": "chapter", "chapter": "chapter",
            "sec.": "section", "§": "section", "section": "section",
            "fig.": "figure", "figure": "figure", "para.": "paragraph", "¶": "paragraph",
            "l.": "line", "ll.": "line", "n.": "note", "vol.": "volume", "col.": "column"}
_LOCATOR = re.compile(r"^(?P<label>[^\s\d]+)?\s*(?P<value>\d[\w\s,–-]*)$")
PLACEHOLDER = "UNMAKECITE{:06d}X"
_PLACEHOLDER = re.compile(r"UNMAKECITE(\d{6})X")


@dataclass(frozen=True)
class Item:
    key: str
    locator: tuple[str, str] | None  # (CSL term, value), e.g. ("page", "12")


@dataclass(frozen=True)
class Found:
    line: int  # 1-based
    start: int  # offsets in the line
    end: int
    items: tuple[Item, ...]


def parse_locator(text: str) -> tuple[str, str] | None:
    """`p. 12` -> ("page", "12"); a bare number is a page; anything else is None."""
    match = _LOCATOR.match(text.strip())
    if not match:
        return None
    label = (match["label"] or "p.").lower()
    term = LOCATORS.get(label)
    return (term, match["value"].strip()) if term else None


def _items(body: str) -> tuple[Item, ...] | None:
    """The items of a group's text, or None when it does not parse as citations."""
    out = []
    for part in body.split(";"):
        match = _ITEM.match(part.strip())
        if not match:
            return None
        key = match["key"].rstrip(".:")
        locator = None
        if match["loc"] is not None:
            locator = parse_locator(match["loc"])
            if locator is None:
                raise ValueError(f"[@{key}, {match['loc']}]: the locator must be a number with "
                                 f"a label (p. 12, pp. 3–4, ch. 2, sec. 1, fig. 3, para. 2)")
        out.append(Item(key, locator))
    return tuple(out)


def find(text: str, file: str = "") -> list[Found]:
    """Every citation group of a page, outside code; a bad locator is a located error."""
    found = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if match := _FENCE.match(line):
            mark = match.group(1)
            if fence is None:
                fence = mark
            elif mark[0] == fence[0] and len(mark) >= len(fence) and not line.strip()[
                    len(mark):].strip():
                fence = None
            continue
        if fence is not None:
            continue
        # blank code spans out (same length), so offsets stay those of the line
        visible = _CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)
        for group in _GROUP.finditer(visible):
            try:
                items = _items(group["body"])
            except ValueError as exc:
                raise DirectiveError(str(exc), file=file, line=number, kind="citation") from None
            if items:
                found.append(Found(number, group.start(), group.end(), items))
    return found


# -- formatting ---------------------------------------------------------------------------------
# citeproc-py's HTML formatter passes a BibTeX title's `<` through unescaped; ours marks its
# own tags with private-use characters, escapes everything, then turns the marks into tags
_OPEN, _CLOSE = "\ue000", "\ue001"
_TAGS = {"i": ("<i>", "</i>"), "b": ("<b>", "</b>"), "l": ("<span>", "</span>"),
         "u": ("<u>", "</u>"), "sup": ("<sup>", "</sup>"), "sub": ("<sub>", "</sub>"),
         "sc": ('<span style="font-variant:small-caps">', "</span>")}


class _Marked(str):
    tag = ""

    def __new__(cls, text: str) -> _Marked:
        return super().__new__(cls, f"{_OPEN}{cls.tag}{_CLOSE}{text}{_OPEN}/{cls.tag}{_CLOSE}")


def _wrapper(tag: str) -> type[_Marked]:
    return type(f"Marked_{tag}", (_Marked,), {"tag": tag})


_FORMATTER = types.SimpleNamespace(
    preformat=str, Italic=_wrapper("i"), Oblique=_wrapper("i"), Bold=_wrapper("b"),
    Light=_wrapper("l"), Underline=_wrapper("u"), Superscript=_wrapper("sup"),
    Subscript=_wrapper("sub"), SmallCaps=_wrapper("sc"))


def to_html(marked: Any) -> Markup:
    """citeproc output (text with our tag marks) as safe HTML."""
    text = str(escape(str(marked)))
    for tag, (open_, close) in _TAGS.items():
        text = text.replace(f"{_OPEN}{tag}{_CLOSE}", open_).replace(f"{_OPEN}/{tag}{_CLOSE}",
                                                                     close)
    return Markup(text.replace(_OPEN, "").replace(_CLOSE, ""))  # noqa: S704 (escaped above)


class Bibliography:
    """A BibTeX file and a CSL style, loaded once per build."""

    def __init__(self, path: Path, shown: str, style: str, root: Path) -> None:
        from citeproc import CitationStylesStyle
        from citeproc.source.bibtex import BibTeX

        class _BibTeX(BibTeX):  # type: ignore[misc]
            # fields citeproc-py's reader skips that CSL styles print
            fields = {**BibTeX.fields, "url": "URL",  # noqa: RUF012 (citeproc's own shape) "howpublished": "publisher",
                      "institution": "publisher", "organization": "publisher"}

        self.shown = shown
        try:
            with warnings.catch_warnings():  # it warns once per field it does not know
                warnings.simplefilter("ignore")
                self.source = _BibTeX(str(path), encoding="utf-8")
        except Exception as exc:  # its parser raises plain exceptions, without a line
            raise ConfigError(f"{shown}: not a readable BibTeX file: {one_line(str(exc))}") \
                from None
        style_path = root / style
        try:
            self.style = CitationStylesStyle(str(style_path) if style_path.suffix == ".csl"
                                             else style, validate=False)
        except Exception:
            raise ConfigError(f"mkdocs.yml: plugins.unmake.citation_style: no CSL style "
                              f"{preview(style)} (use {DEFAULT_STYLE}, or a .csl file relative "
                              f"to mkdocs.yml)") from None
        self.keys = set(self.source)

    def check(self, key: str, error: Any) -> None:
        if key.lower() not in self.keys:
            import difflib

            near = difflib.get_close_matches(key.lower(), sorted(self.keys), n=1)
            hint = f"; did you mean '@{near[0]}'?" if near else ""
            raise error(f"cites '@{key}', which is not in {self.shown}{hint}")

    def page(self) -> PageCitations:
        return PageCitations(self)


@dataclass
class PageCitations:
    """One page's citations: placeholders while it renders, text and a list at its end."""

    bib: Bibliography
    groups: list[tuple[Item, ...]] = field(default_factory=list)

    def cite(self, items: tuple[Item, ...]) -> str:
        self.groups.append(items)
        return PLACEHOLDER.format(len(self.groups) - 1)

    def cite_keys(self, keys: list[str]) -> Markup:
        """For figures (actors' sources): one citation group of these keys."""
        return Markup(self.cite(tuple(Item(k, None) for k in keys)))  # noqa: S704 (no markup)

    def resolve(self) -> tuple[list[Markup], Markup]:
        """(each group's HTML, by placeholder number; the references list)."""
        from citeproc import Citation, CitationItem, CitationStylesBibliography, Locator

        bibliography = CitationStylesBibliography(self.bib.style, self.bib.source, _FORMATTER)
        per_item = []
        for group in self.groups:
            citations = []
            for item in group:
                # a locator given as None still counts as one to citeproc-py: leave it out
                extra = {"locator": Locator(*item.locator)} if item.locator else {}
                citation = Citation([CitationItem(item.key.lower(), **extra)])
                bibliography.register(citation)
                citations.append((item, citation))
            per_item.append(citations)
        out = []
        for citations in per_item:
            parts = []
            wrap = ("", "")
            for item, citation in citations:
                text = str(bibliography.cite(citation, lambda _: None))
                if len(text) > 1 and (text[0], text[-1]) in (("(", ")"), ("[", "]")):
                    wrap, text = (text[0], text[-1]), text[1:-1]
                parts.append(Markup('<a href="#ref-{}">{}</a>').format(
                    _anchor(item.key), to_html(text)))
            out.append(Markup('<span class="unmake-cite">{}{}{}</span>').format(
                wrap[0], Markup("; ").join(parts), wrap[1]))
        if not self.groups:
            return out, Markup("")
        bibliography.sort()
        entries = [Markup('<p class="unmake-reference" id="ref-{}">{}</p>').format(
            _anchor(item.key), _linked(to_html(entry)))
            for item, entry in zip(bibliography.items, bibliography.bibliography(), strict=True)]
        return out, Markup('<div class="unmake-references">\n{}\n</div>').format(
            Markup("\n").join(entries))


_URL = re.compile(r"https?://[^\s<>\"]+?(?=[.,;)]?(?:\s|$|<))")


def _linked(html: Markup) -> Markup:
    """A reference's URLs (already escaped text) as links."""
    return Markup(_URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>',  # noqa: S704
                           str(html)))


def _anchor(key: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", key.lower())


def substitute(text: str, found: list[Found], citations: PageCitations) -> str:
    """The page's Markdown with each citation group replaced by its placeholder."""
    lines = text.splitlines(keepends=True)
    for group in reversed(found):  # from the end: offsets stay valid
        line = lines[group.line - 1]
        lines[group.line - 1] = (line[: group.start] + citations.cite(group.items)
                                 + line[group.end :])
    return "".join(lines)


def fill(text: str, html: list[Markup]) -> str:
    """Placeholders replaced by their citations' HTML."""
    return _PLACEHOLDER.sub(lambda m: str(html[int(m.group(1))]), text)


def load(config: dict[str, Any], root: Path, cache: dict[str, Any]) -> Bibliography | None:
    """The bibliography the plugin config declares (None when it declares none)."""
    name = config.get("bibliography") or ""
    if not name:
        return None
    path = root / name
    if not path.is_file():
        raise ConfigError(f"mkdocs.yml: plugins.unmake.bibliography: no file {preview(name)} "
                          f"(relative to mkdocs.yml)")
    style = config.get("citation_style") or DEFAULT_STYLE
    stat = path.stat()
    memo = ("bibliography", str(path), stat.st_size, stat.st_mtime_ns, style)
    if cache.get("bibliography-key") != memo:
        cache["bibliography"] = Bibliography(path, name, style, root)
        cache["bibliography-key"] = memo
    return cache["bibliography"]  # type: ignore[no-any-return]


def in_caption(caption: str, cites: PageCitations) -> Markup:
    """A figure's caption as escaped HTML, its citations registered on the page (placeholders,
    filled with the page's other citations); `\\[@` stays a literal `[@`, as in the text."""
    text = substitute(caption, find(caption), cites).replace("\\[@", "[@")
    return Markup(escape(text))  # noqa: S704 (escaped; placeholders are letters and digits)


def caption_text(caption: str, bib: Bibliography) -> str:
    """A caption as plain text, its citations formatted (for a contact sheet's title or an SVG
    title, which hold no links)."""
    page = bib.page()
    shown = in_caption(caption, page)
    html, _ = page.resolve()
    return Markup(fill(str(shown), html)).striptags()  # noqa: S704 (escaped by in_caption)


def check_caption(caption: str, file: str, line: int,
                  bib: Bibliography | None) -> list[Found]:
    """A caption's citations, checked like a page's; errors name the caption's line (`line`)."""
    try:
        return check_page(caption, file, bib, first_line=line)
    except DirectiveError as exc:
        raise DirectiveError(exc.detail, file=file, line=exc.line, kind="caption",
                             key="caption") from None


def references(bib: Bibliography, groups: list[tuple[Item, ...]]) -> Markup:
    """One references list of every item in `groups` (the print zine's, for all its pages)."""
    return PageCitations(bib, list(groups)).resolve()[1]


def check_page(text: str, file: str, bib: Bibliography | None,
               first_line: int = 1) -> list[Found]:
    """A page's citations, each key checked (raises DirectiveError at the page's line; text
    that starts on line `first_line` of the file, a caption, counts from there)."""
    try:
        found = find(text, file)
    except DirectiveError as exc:
        raise DirectiveError(exc.detail, file=file, line=(exc.line or 1) + first_line - 1,
                             kind=exc.kind) from None
    for group in found:
        for item in group.items:
            def error(message: str, line: int = group.line + first_line - 1) -> DirectiveError:
                return DirectiveError(message, file=file, line=line, kind="citation")

            if bib is None:
                raise error(f"cites '@{item.key}', but no bibliography is declared (set "
                            f"`bibliography:` under the unmake plugin in mkdocs.yml; write "
                            f"\\[@ for a literal [@)")
            bib.check(item.key, error)
    return found
