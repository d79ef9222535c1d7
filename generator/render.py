"""Render stored results into HTML fragments through Jinja2 templates (no mkdocs here).

A zine overrides any template by putting a file of the same name in its own `templates/` folder.
Images are published as web-friendly WebP next to their original PNG; both, and the contact
sheets, are derived from the store and cached there, so a rebuild does no image work.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup, escape

from . import citations, performance, sheets
from .store import Store

if TYPE_CHECKING:
    from .types import Job, Planned

ASSETS = "assets/unmake"
WEB_MAX = 1024  # longest side of the web copy of an image


def package_templates() -> Path:
    return Path(str(resources.files("generator.templates")))


def withheld(record: dict[str, Any]) -> bool:
    """Whether a stored image was flagged by the model's safety checker: pages show a box in
    its place (the black image the pipeline returned stays in the store), `measure` skips it."""
    return bool((record.get("data", {}).get("safety") or {}).get("flagged"))


def common_affixes(texts: Iterable[str]) -> dict[str, str]:
    """Short labels for prompts: each text minus the words all texts share at start and end."""
    texts = list(texts)
    if len(texts) < 2:
        return {t: t for t in texts}
    split = [t.split() for t in texts]
    pre = 0
    while all(len(w) > pre for w in split) and len({tuple(w[: pre + 1]) for w in split}) == 1:
        pre += 1
    post = 0
    while (all(len(w) > pre + post for w in split)
           and len({tuple(w[len(w) - post - 1 :]) for w in split}) == 1):
        post += 1
    out = {}
    for text, words in zip(texts, split, strict=True):
        label = " ".join(words[pre : len(words) - post]) if post else " ".join(words[pre:])
        out[text] = label.strip(" ,;:.") or text
    if len(set(out.values())) < len(out):  # labels must tell the cells apart
        return {t: t for t in texts}
    return out


# Bidirectional controls reorder the text around them where it is shown: a prompt, caption or
# dataset row holding U+202E can make a figure read as something its data does not say. Every
# value a template outputs shows them as visible escapes instead (the Environment's finalize,
# so no template can forget it).
BIDI_CONTROLS = ("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                 "\u2066\u2067\u2068\u2069")
_BIDI_SHOWN = {ord(c): f"⟨U+{ord(c):04X}⟩" for c in BIDI_CONTROLS}


def show_bidi(value: Any) -> Any:
    """A template's output value with each bidirectional control shown as `⟨U+202E⟩`; safe
    markup stays safe (the escape adds no markup)."""
    if isinstance(value, str):  # Markup.translate keeps it Markup
        return value.translate(_BIDI_SHOWN)
    return value


_BREAK_AFTER = re.compile(r"([_./-])(?=\w)")


def breakable(value: Any) -> Markup:
    """A long name (a model file, a module path) escaped, with a line-break opportunity after
    each `_ . / -`, so a narrow column wraps it there, not inside a word."""
    return Markup(_BREAK_AFTER.sub(r"\1<wbr>", str(escape(value))))  # noqa: S704


def double_escape(value: Any) -> Markup:
    """For attributes a script later inserts as HTML (lightbox captions): escape twice."""
    return escape(str(escape(value)))


class Renderer:
    """Site-wide rendering state: templates, the store, failures and the assets to publish."""

    def __init__(self, store: Store, overrides: Path | None = None,
                 failures: dict[str, str] | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if overrides and overrides.is_dir():
            loaders.append(jinja2.FileSystemLoader(str(overrides)))
        loaders.append(jinja2.FileSystemLoader(str(package_templates())))
        self.env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True,
                                      trim_blocks=True, lstrip_blocks=True,
                                      undefined=jinja2.StrictUndefined, finalize=show_bidi)
        self.env.filters["double_escape"] = double_escape
        self.env.filters["breakable"] = breakable
        self.env.filters["thousands"] = lambda n: f"{n:,}" if isinstance(n, int) else n
        self.env.filters["pipeline_options"] = performance.shown
        self.store = store
        self.failures = failures or {}
        self.assets: dict[str, Path] = {}  # site path -> file to publish there
        self.page_urls: dict[str, str] = {}  # page path as shown (directive.file) -> site URL

    def publish(self, site_path: str, source: Path) -> str:
        self.assets[site_path] = source
        return site_path

    def web_image(self, record: dict[str, Any], name: str = "image") -> tuple[str, str]:
        """Site paths of the web copy (WebP) and the original PNG of a stored image."""
        art = record["files"][name]
        original = self.store.blob_path(art["sha256"], art["ext"])
        derived = self.store.derived_path(f"{art['sha256']}.webp")
        if not derived.exists():
            from PIL import Image

            with Image.open(original) as im:
                im.thumbnail((WEB_MAX, WEB_MAX))
                buf = io.BytesIO()
                im.convert("RGB").save(buf, "WEBP", quality=90, method=4)
            self.store.put_derived(derived.name, buf.getvalue())
        web = self.publish(f"{ASSETS}/img/{art['sha256']}.webp", derived)
        png = self.publish(f"{ASSETS}/img/{art['sha256']}.{art['ext']}", original)
        return web, png

    def contact_sheet(self, title: str, panels: list[dict[str, Any]]) -> str | None:
        """A labelled PNG of a whole grid (generator/sheets.py), or None while any of its
        images is missing."""
        if any(c["status"] != "ok" for p in panels for r in p["rows"] for c in r["cells"]):
            return None
        name = sheets.sheet_name(title, panels)
        path = self.store.derived_path(name)
        if not path.exists():
            self.store.put_derived(name, sheets.draw(title, panels, self.store.root))
        return self.publish(f"{ASSETS}/sheets/{name}", path)


def _value(inputs: dict[str, Any], run: dict[str, Any], name: str) -> Any:
    if name == "size":
        return f"{inputs['width']}×{inputs['height']}"
    if name == "model":
        return run["model"]
    return inputs[name]


class PageRender:
    """Rendering one page: numbers its figures and makes asset URLs relative to the page."""

    def __init__(self, renderer: Renderer, url_for: Callable[[str], str],
                 page_url: str | None = None) -> None:
        self.r = renderer
        self.url_for = url_for
        self.page_url = page_url  # this page's site URL, for links between figures
        self.figures = 0
        self.citations: Any = None  # the page's citations (generator/citations.py), if any

    def caption_text(self, caption: str) -> str:
        """A caption as plain text, its citations formatted where the page can cite."""
        if self.citations is None or "[@" not in caption:
            return caption
        return citations.caption_text(caption, self.citations.bib)

    def template(self, name: str) -> jinja2.Template:
        return self.r.env.get_template(name)

    def link_to(self, planned: Planned) -> str:
        """A link from this page to another figure (on this page or another one)."""
        anchor = f"#{getattr(planned.directive.spec, 'id', None) or ''}"
        page = self.r.page_urls.get(planned.directive.file)
        return anchor if page is None or page == self.page_url else self.url_for(page) + anchor

    def record(self, job: Job) -> dict[str, Any] | None:
        return self.r.store.get(job.key)

    def failure(self, job: Job) -> str | None:
        return self.r.failures.get(job.key)

    def image_cell(self, job: Job, varying: tuple[str, ...] = ()) -> dict[str, Any]:
        """Everything a template needs to show one generated image, or why it is not there.

        `varying` names the swept parameters, so that the alt text tells the cells apart.
        """
        inputs = job.inputs
        also = "".join(f", {name} {_value(inputs, job.run, name)}" for name in varying
                       if name not in ("prompt", "seed"))
        cell: dict[str, Any] = {
            "key": job.key, "status": "missing", "inputs": inputs, "run": job.run,
            "alt": f"{inputs['prompt']} (seed {inputs['seed']}{also})",
            "width": inputs["width"], "height": inputs["height"],
            "error": self.failure(job),
        }
        record = self.record(job)
        if cell["error"]:
            cell["status"] = "failed"
        elif record is not None and withheld(record):
            # withheld by the model's safety checker: its bytes stay in the store, unpublished
            cell.update(status="withheld", record=record,
                        parameters=record["data"].get("parameters", ""))
        elif record is not None:
            web, png = self.r.web_image(record)
            art = record["files"]["image"]
            cell.update(
                status="ok", web=self.url_for(web), png=self.url_for(png), record=record,
                blob=os.path.relpath(self.r.store.blob_path(art["sha256"], art["ext"]),
                                     self.r.store.root),
                parameters=record["data"].get("parameters", ""),
            )
        return cell

    def figure(self, template: str, planned: Planned, context: dict[str, Any]) -> str:
        self.figures += 1
        directive = planned.directive
        spec = directive.spec
        caption = getattr(spec, "caption", None)
        shown_caption, title = caption, caption
        if caption and self.citations is not None:  # `[@key]` in a caption cites on the page
            shown_caption = citations.in_caption(caption, self.citations)
            title = self.caption_text(caption)
        sheet = None
        if "panels" in context:
            sheet = self.r.contact_sheet(title or directive.where, context["panels"])
        html = self.template(template).render(
            number=self.figures, caption=shown_caption, where=directive.where,
            anchor=getattr(spec, "id", None) or f"figure-{self.figures}",
            sheet=self.url_for(sheet) if sheet else None, url_for=self.url_for,
            **context)
        return html.strip()
