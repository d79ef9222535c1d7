"""`measure`: count what is in the images of other figures, per group, with the method shown.

    ```measure
    of: professions              # one or more figures whose images are measured
    by: prompt                   # group by an axis of the source: prompt, seed, model, a swept
                                 # key; or `figure` when `of` names several
    clip:                        # zero-shot labels (see generator.instruments.zeroshot)
      gender: {labels: ["a man", "a woman", "a person"], template: "a photo of {}"}
    palette: 5                   # dominant colours per group
    faces: true                  # face count + skin tone per face
    diversity: true              # or {clusters: 4}: how alike the images of a group are
    reference: {doctor: {a woman: 0.38}}   # the world's shares, beside the model's
    reference_source: "US Bureau of Labor Statistics, 2022"
    caption: Who the model shows at work.
    ```

Every instrument is a registered module (generator.instruments); this kind only reads the
directive, asks each instrument for its jobs per upstream image, groups the images and hands
each instrument its results to sum up. Measurements are keyed per image and per instrument
setting, so adding seeds measures only the new images and changing a label set re-runs only
that set. Rendering reads stored numbers only (no torch), so `--frozen` works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import DirectiveError
from ..instruments import INSTRUMENTS, Group, Results
from ..render import PageRender
from ..specs import Body, preview, shown_key, shown_list
from ..types import Context, Job, Kind, Output, Planned, Setting

NOTE = ("These are a machine's readings of generated images — the people in them do not "
        "exist: a classifier's guesses, colour statistics and a face detector's hits, not facts "
        "about anyone. Read them as evidence of what the model tends to make, with the method "
        "beside every number.")
MAX_THUMBS = 8  # thumbnails shown per group


@dataclass(frozen=True)
class MeasureSpec:
    id: str | None
    caption: str | None
    by: str
    instruments: tuple[tuple[str, Any], ...]  # (instrument name, its settings), in table order
    lines: dict[str, int] = field(default_factory=dict, hash=False, compare=False)


def parse(body: Body, ctx: Context) -> MeasureSpec:
    by = body.take_name("by", "prompt")
    chosen = []
    for name, instrument in INSTRUMENTS.items():
        settings = instrument.parse(body, ctx)
        if settings is not None:
            chosen.append((name, settings))
    if not chosen:
        raise body.error(None, f"measures nothing: give at least one of "
                         f"{', '.join(INSTRUMENTS)}")
    return MeasureSpec(id=body.take_str("id", None), caption=body.take_str("caption", None),
                       by=by, instruments=tuple(chosen), lines=body.key_lines)


def images_of(figures: list[Planned]) -> list[Output]:
    """Every image of the figures a measure reads, in order, each with its axis labels (and
    `figure`: the id of the figure it comes from)."""
    from . import KINDS

    out = []
    for upstream in figures:
        kind = KINDS[upstream.directive.kind]
        assert kind.outputs is not None  # planning refused consumers of other kinds
        figure = upstream.directive.spec.id
        out += [Output(o.job, {**o.axes, "figure": figure}) for o in kind.outputs(upstream)]
    return out


def groups_of(spec: MeasureSpec, images: list[Output]) -> list[Group]:
    found: dict[str, list[str]] = {}
    for image in images:
        members = found.setdefault(image.axes[spec.by], [])
        if image.job.key not in members:  # the same image in two figures counts once
            members.append(image.job.key)
    return [Group(label, keys) for label, keys in found.items()]


def _check_by(spec: MeasureSpec, images: list[Output], upstream: list[Planned]) -> None:
    axes = [set(o.axes) for o in images] or [set()]
    common = set.intersection(*axes)
    if spec.by == "figure" and len(upstream) < 2:
        common.discard("figure")
    if spec.by not in common:
        choices = sorted(common - {"figure"}) + (["figure"] if len(upstream) > 1 else [])
        raise DirectiveError(f"must name an axis of the measured figures ({shown_list(choices)}),"
                             f" got {preview(spec.by)}", line=spec.lines.get("by"), key="by")


def expand(spec: MeasureSpec, ctx: Context, upstream: list[Planned]) -> list[Job]:
    """Jobs for every image of the upstream figures (planned before this one)."""
    images = images_of(upstream)
    _check_by(spec, images, upstream)
    labels = [g.label for g in groups_of(spec, images)]
    for name, settings in spec.instruments:
        check = INSTRUMENTS[name].check_groups
        problem = check(settings, labels) if check else None
        if problem:
            raise DirectiveError(problem[1], line=spec.lines.get(problem[0]),
                                 key=shown_key(problem[0]))
    jobs: list[Job] = []
    seen: set[str] = set()  # image keys, then job keys: `clip:` and `diversity:` share an
    # image's embedding job, which the directive asks for once
    for image in images:
        if image.job.key in seen:
            continue
        seen.add(image.job.key)
        for name, settings in spec.instruments:
            for job in INSTRUMENTS[name].jobs(settings, image.job, ctx):
                if job.key not in seen:
                    seen.add(job.key)
                    jobs.append(job)
    return jobs


def render(planned: Planned, page: PageRender) -> str:
    spec: MeasureSpec = planned.directive.spec
    images = images_of(planned.upstream)
    groups = groups_of(spec, images)
    by_image: dict[str, list[Job]] = {}
    for job in planned.jobs:  # jobs of no one image (a label set's prompts) under ""
        by_image.setdefault(job.inputs.get("image", ""), []).append(job)
    sections = []
    for name, settings in spec.instruments:
        instrument = INSTRUMENTS[name]
        results = Results(record=page.record, failure=page.failure)  # its own problem counts
        sections.append({"name": name, "title": instrument.title,
                         **instrument.summarise(settings, groups, by_image, results)})
    # thumbnails of each group: the images measured, as the figure they come from shows them
    jobs_by_key = {o.job.key: o.job for o in images}
    thumbs = []
    for group in groups:
        cells = [page.image_cell(jobs_by_key[key]) for key in group.images[:MAX_THUMBS]]
        thumbs.append({"group": group.label, "cells": cells, "n": len(group.images)})
    exemplar_cells = {}
    for section in sections:
        for key in (section.get("clusters") or {}).get("exemplars", {}).values():
            exemplar_cells[key] = page.image_cell(jobs_by_key[key])
    sources = [{"id": p.directive.spec.id, "where": p.directive.where, "href": page.link_to(p)}
               for p in planned.upstream]
    return page.figure("measure.html", planned, {
        "spec": spec, "sections": sections, "groups": groups, "thumbs": thumbs,
        "sources": sources, "note": NOTE, "n_images": len(jobs_by_key),
        "exemplar_cells": exemplar_cells,
    })


def describe(job: Job) -> tuple[str, str]:
    for instrument in INSTRUMENTS.values():
        if job.type in instrument.runners:
            return instrument.describe(job)
    return "", job.type


KIND = Kind(
    name="measure",
    parse=parse,
    expand=expand,
    render=render,
    runners={jt: ref for i in INSTRUMENTS.values() for jt, ref in i.runners.items()},
    doc="Measure the images of other figures per group: CLIP zero-shot labels with Wilson "
        "intervals, palettes, faces and skin tone, diversity.",
    consumes=("images",),
    settings=(
        Setting("clip_models", dict, {}, "CLIP models by alias for `measure`: `tiny-clip` "
                "(built in), `{arch, checkpoint}` (an open_clip architecture and a local "
                ".safetensors file) or `{hf: org/name}` (a Hugging Face cache entry); "
                "`allow_pickle: true` admits a pickle checkpoint"),
        Setting("clip_batch_size", int, 32, "images per CLIP forward pass"),
    ),
    describe=describe,
)
