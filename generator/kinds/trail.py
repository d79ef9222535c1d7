"""`trail`: a recorded path of prompt revisions, each step with its images and the author's note.

    ```trail
    id: family
    seeds: 4                      # every step's seeds (a step may give its own)
    steps:
      - prompt: "an Italian family"
        note: The ambiguous prompt. *Every* image is a dinner table.
      - prompt: "a family in Italy"
      - prompt: "a photograph of a family, Milan, 2023"
        negative: "pasta"
        guidance: 5
    caption: Three revisions of one question.
    ```

A step takes any `generate` parameter and inherits what it does not set from the step before
(the first step from the directive's own keys, then the model's defaults). Its images are
ordinary `generate.image` jobs, made by `generate`'s own `image_job`: an image a `generate`
figure also asks for is one job, and a note is no input of any job, so editing a note re-renders
without running a model and editing one step's prompt runs only that step's images.

The figure shows each step's prompt as a word diff against the step before (`<ins>`/`<del>`
with visible `{+ +}` / `[- -]` markers, so it reads in print and without colour), every
parameter that changed, the images (same seeds across steps) and the note, rendered from
Markdown without raw HTML and with links to http(s), mailto or relative addresses only.
`measure` reads a trail's images with `of: <id>`, grouped `by: step` (or prompt, seed, model).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit

from markupsafe import Markup

from .. import worddiff
from ..render import PageRender
from ..specs import Body, is_text, preview
from ..types import Context, Job, Kind, Output, Planned
from .generate import MAX_IMAGES, check_param, expand_prompts, image_job, parse_seeds

MAX_STEPS = 50  # a path of revisions longer than this is an experiment: use `generate`
MAX_NOTE_CHARS = 10_000
# what a step may set; the directive's own keys are defaults for the first step (not `steps`,
# which names the list of steps there: denoising steps go into a step)
PARAMS = ("model", "negative", "steps", "guidance", "size", "width", "height", "scheduler")
STEP_KEYS = ("prompt", "note", "seeds", *PARAMS)
TOP_PARAMS = tuple(p for p in PARAMS if p != "steps")
# the parameters a step's heading lists when they change, as the image records name them
SHOWN = ("model", "negative", "steps", "guidance", "size", "scheduler")


@dataclass(frozen=True)
class TrailStep:
    prompt: str
    seeds: tuple[int, ...]
    params: dict[str, Any] = field(hash=False)  # model, negative and what is set of the rest
    note: str | None


@dataclass(frozen=True)
class TrailSpec:
    id: str | None
    caption: str | None
    steps: tuple[TrailStep, ...]


def _set(params: dict[str, Any], name: str, value: Any, error: Any, ctx: Context) -> None:
    value = check_param(name, value, error, ctx)
    if name == "size":
        params["width"], params["height"] = value
    else:
        params[name] = value


def parse(body: Body, ctx: Context) -> TrailSpec:
    def err(key: str) -> Any:
        return lambda message: body.error(key, message)

    def item_err(key: str) -> Any:
        return lambda message, i=None: body.error(
            key, message, at=None if i is None else f"{key}[{i}]")

    # the memo `generate` keeps: a prompt both expand is parsed once
    memo = ctx.store.memo("prompts", f"dynamicprompts {version('dynamicprompts')} counted")
    # 1. The directive's own keys: defaults for the first step.
    params: dict[str, Any] = {"negative": ""}
    if body.has("size") and (body.has("width") or body.has("height")):
        raise body.error("size", "give either size or width/height, not both")
    for name in TOP_PARAMS:
        if body.has(name):
            _set(params, name, body.raw(name), err(name), ctx)
    if "model" not in params:
        params["model"] = check_param("model", "default", err("model"), ctx)
    seeds = parse_seeds(body.raw("seeds", 1), item_err("seeds"))

    # 2. The steps, each inheriting what it does not set.
    items = body.raw("steps")
    if not isinstance(items, list) or not items:
        raise body.error("steps", f"must be a list of steps, each a mapping with a prompt and "
                         f"an optional note, got {preview(items)}")
    if len(items) > MAX_STEPS:
        raise body.error("steps", f"lists {len(items)} steps; at most {MAX_STEPS} per trail")
    steps: list[TrailStep] = []
    prompt: str | None = None
    for i, item in enumerate(items):
        at = f"steps[{i}]"
        if not isinstance(item, dict):
            raise body.error(at, f"must be a mapping with a prompt and an optional note, got "
                             f"{preview(item)}")
        for key in item:
            if key not in STEP_KEYS:
                near = difflib.get_close_matches(str(key), STEP_KEYS, n=1)
                hint = f"; did you mean '{near[0]}'?" if near else ""
                raise body.error(f"{at}.{key}", f"is not a known key of a trail step (known: "
                                 f"{', '.join(STEP_KEYS)}){hint}")
            if item[key] is None:
                raise body.error(f"{at}.{key}", "is empty; give a value or remove the key")
        if "size" in item and ("width" in item or "height" in item):
            raise body.error(f"{at}.size", "give either size or width/height, not both")
        params = dict(params)
        for name in PARAMS:
            if name in item:
                _set(params, name, item[name], err(f"{at}.{name}"), ctx)
        if "seeds" in item:
            key = f"{at}.seeds"
            seeds = parse_seeds(item["seeds"], lambda m, j=None, k=key: body.error(
                k, m, at=None if j is None else f"{k}[{j}]"))
        if "prompt" in item:
            key = f"{at}.prompt"
            if not is_text(item["prompt"]):
                raise body.error(key, f"must be text, got {preview(item['prompt'])}")
            made = expand_prompts((str(item["prompt"]),),
                                  lambda m, i=None, k=key: body.error(k, m), memo)
            if len(made) != 1:
                raise body.error(key, f"spells {len(made)} prompts; a trail step takes one "
                                 "(write the {a|b} choice out, or use generate)")
            prompt = made[0]
        elif prompt is None:
            raise body.error(at, "needs a prompt (the first step sets it; later steps inherit "
                             "it)")
        assert prompt is not None
        note = item.get("note")
        if note is not None:
            if not is_text(note):
                raise body.error(f"{at}.note", f"must be text (Markdown), got {preview(note)}")
            note = str(note)
            if len(note) > MAX_NOTE_CHARS:
                raise body.error(f"{at}.note", f"is {len(note)} characters long; at most "
                                 f"{MAX_NOTE_CHARS}")
        step = TrailStep(prompt, seeds, params, note)
        if steps and (step.prompt, step.seeds, step.params) == (
                steps[-1].prompt, steps[-1].seeds, steps[-1].params):
            raise body.error(at, f"changes nothing from step {i}; a step revises the prompt or "
                             "a parameter (a further thought goes into the note before)")
        steps.append(step)
    count = sum(len(s.seeds) for s in steps)
    if count > MAX_IMAGES:
        raise body.error("steps", f"asks for {count} images; at most {MAX_IMAGES} per trail")
    return TrailSpec(id=body.take_str("id", None), caption=body.take_str("caption", None),
                     steps=tuple(steps))


def _images(spec: TrailSpec) -> list[tuple[int, int, dict[str, Any]]]:
    """(step index, seed, parameters of the image) for every image, step by step."""
    return [(n, seed, {**step.params, "prompt": step.prompt, "seed": seed})
            for n, step in enumerate(spec.steps) for seed in step.seeds]


def expand(spec: TrailSpec, ctx: Context) -> list[Job]:
    return [image_job(params, ctx) for _, _, params in _images(spec)]


def outputs(planned: Planned) -> list[Output]:
    """Each image with its step, prompt, seed and model (what `measure` groups by)."""
    spec: TrailSpec = planned.directive.spec
    return [Output(job, {"step": f"step {n + 1}", "prompt": params["prompt"],
                         "seed": f"seed {seed}", "model": job.run["model"]})
            for (n, seed, params), job in zip(_images(spec), planned.jobs, strict=True)]


def _shown(job: Job, name: str) -> str:
    i = job.inputs
    if name == "size":
        return f"{i['width']}×{i['height']}"
    if name == "model":
        return str(job.run["model"])
    if name == "negative":
        return i["negative"] or "(none)"
    return str(i[name])


def changes(before: Job | None, after: Job) -> list[tuple[str, str, str]]:
    """(parameter, value before, value now) for every shown parameter a step changed, with the
    values its images were made with (the model's defaults filled in)."""
    if before is None:
        return []
    return [(name, _shown(before, name), _shown(after, name)) for name in SHOWN
            if _shown(before, name) != _shown(after, name)]


def render(planned: Planned, page: PageRender) -> str:
    spec: TrailSpec = planned.directive.spec
    by_step: dict[int, list[Job]] = {}
    for (n, _, _), job in zip(_images(spec), planned.jobs, strict=True):
        by_step.setdefault(n, []).append(job)
    steps = []
    previous: TrailStep | None = None
    for n, step in enumerate(spec.steps):
        jobs = by_step[n]
        seeds_changed = previous is not None and previous.seeds != step.seeds
        steps.append({
            "number": n + 1,
            "prompt": step.prompt,
            "diff": worddiff.diff_words(previous.prompt, step.prompt) if previous else None,
            "changes": changes(by_step[n - 1][0] if n else None, jobs[0]),
            "seeds_changed": seeds_changed,
            "cells": [page.image_cell(job) for job in jobs],
            "seeds": step.seeds,
            "note": note_html(step.note) if step.note else None,
        })
        previous = step
    first = planned.jobs[0]
    fixed = {name: _shown(first, name) for name in SHOWN}
    return page.figure("trail.html", planned, {"spec": spec, "steps": steps, "fixed": fixed})


# -- notes: Markdown as the essay is written, without raw HTML or unsafe links -------------------
SAFE_SCHEMES = ("http", "https", "mailto", "")


def note_html(text: str) -> Markup:
    """A note as HTML: Markdown (emphasis, links, lists, tables, footnotes' like definitions)
    with raw HTML shown as text, links only to http(s), mailto or relative addresses, and
    images shown by their alt text (a page must not load what a note points at)."""
    import markdown

    md = markdown.Markdown(extensions=["tables", "sane_lists", "def_list", "abbr",
                                       _SafeNotes()], output_format="html")
    return Markup(md.convert(text))  # noqa: S704 - made by Markdown with raw HTML escaped


def _safe_notes() -> Any:
    from markdown.extensions import Extension
    from markdown.treeprocessors import Treeprocessor

    class Links(Treeprocessor):
        def run(self, root: Any) -> None:
            for parent in root.iter():
                for child in list(parent):
                    if child.tag == "a" and not _safe_url(child.get("href", "")):
                        child.attrib.pop("href", None)
                    if child.tag == "img":  # alt text in its place, never a request
                        index = list(parent).index(child)
                        parent.remove(child)
                        span = _element("span", child.get("alt", ""), child.tail)
                        parent.insert(index, span)

    class SafeNotes(Extension):
        def extendMarkdown(self, md: Any) -> None:
            # raw HTML is shown as the text it is: neither blocks nor inline tags pass
            md.preprocessors.deregister("html_block")
            md.inlinePatterns.deregister("html")
            md.treeprocessors.register(Links(md), "unmake_safe_links", 0)

    return SafeNotes


def _element(tag: str, text: str, tail: str | None) -> Any:
    import xml.etree.ElementTree as ET

    element = ET.Element(tag)
    element.text, element.tail = text, tail
    return element


def _safe_url(url: str) -> bool:
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in SAFE_SCHEMES and not (parts.scheme == "" and parts.netloc)


def _SafeNotes() -> Any:
    return _safe_notes()()


KIND = Kind(
    name="trail",
    parse=parse,
    expand=expand,
    render=render,
    doc="A recorded path of prompt revisions: each step's word diff, changed parameters, "
        "images (same seeds) and the author's note.",
    produces="images",
    outputs=outputs,
)
