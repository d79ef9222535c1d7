"""The `clip:` instrument: zero-shot classification of every image against author-given labels.

    clip:
      gender: {labels: ["a man", "a woman", "a person"], template: "a photo of {}"}
      setting: ["an office", "a hospital"]          # a bare list: the default template
    clip_model: default                             # an alias from `clip_models` (tiny-clip)

Each image is embedded once per CLIP model (`measure.embed`, shared with `diversity:`) and each
label set's prompts once (`measure.text`, with the model's logit scale); the figure computes each
image's label probabilities from the two stored embeddings (numpy: a `--frozen` build needs no
torch). Changing a label set re-runs only that set's one job. An image counts for the label CLIP
scores highest; a group's share of a label comes with its 95 % Wilson score interval and n.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..clipmodels import ClipRef, for_context
from ..errors import ModelNotFound
from ..specs import Body, preview, shown_list
from ..stats import wilson
from ..types import Context, Job
from . import Group, Instrument, Results
from .vectors import decode_vector, probabilities

VERSION = 2  # bump when the same inputs would give other numbers or another record shape
DEFAULT_TEMPLATE = "a photo of {}"
MAX_LABELS = 50
MAX_LABEL_CHARS = 300  # a label or template; CLIP reads 77 tokens of the prompt they make


def clip_model(body: Body, ctx: Context) -> ClipRef:
    """The CLIP model a directive's `clip:` and `diversity:` use (`clip_model:`, default
    'default', which is the built-in tiny-clip unless the config says otherwise)."""
    name = body.take_name("clip_model", "default")
    try:
        return for_context(ctx).resolve(name)
    except ModelNotFound as exc:
        raise body.error("clip_model", str(exc)) from None


def embed_job(ref: ClipRef, image: Job) -> Job:
    """The job that embeds one image with one CLIP model (one per image and model, site-wide)."""
    return Job("measure.embed", {"image": image.key, "clip": ref.fingerprint, "v": VERSION},
               group=(ref.fingerprint,), run={"clip": ref.as_dict()}, needs=(image.key,))


def parse(body: Body, ctx: Context) -> Any:
    value = body.take_mapping("clip", None)
    if value is None:
        return None
    if not value:
        raise body.error("clip", "needs at least one label set, e.g. "
                         "{gender: {labels: [a man, a woman]}}")
    sets = []
    for name, entry in value.items():
        key = f"clip.{name}"

        def error(message: str, key: str = key) -> Exception:
            return body.error(key, message)

        # a bare list is the labels; in a mapping, errors point at `labels:` or `template:`
        labels_at = f"{key}.labels" if isinstance(entry, dict) else key
        if isinstance(entry, list):
            entry = {"labels": entry}
        if not isinstance(entry, dict):
            raise error("must be a list of labels or {labels: [...], template: '... {} ...'}")
        unknown = sorted(str(k) for k in entry if k not in ("labels", "template"))
        if unknown:
            raise body.error(key, f"has unknown key {preview(unknown[0])} (known: labels, "
                             "template)", at=f"{key}.{unknown[0]}")
        labels = entry.get("labels")
        if not isinstance(labels, list) or len(labels) < 2 or not all(
                isinstance(x, str) and x.strip() for x in labels):
            raise body.error(key, f"'labels' must list at least two texts, got "
                             f"{preview(labels)}", at=labels_at)
        if len(labels) > MAX_LABELS:
            raise body.error(key, f"lists {len(labels)} labels; at most {MAX_LABELS}",
                             at=labels_at)
        for i, label in enumerate(labels):
            if any(c < " " or "\x7f" <= c <= "\x9f" for c in label):
                raise body.error(key, f"has a label with a control character: {preview(label)}",
                                 at=f"{labels_at}[{i}]")
            if len(label) > MAX_LABEL_CHARS:
                raise body.error(key, f"has a label of {len(label)} characters; at most "
                                 f"{MAX_LABEL_CHARS}: {preview(label)}", at=f"{labels_at}[{i}]")
            if label in labels[:i]:
                raise body.error(key, "lists a label twice", at=f"{labels_at}[{i}]")
        template = entry.get("template", DEFAULT_TEMPLATE)
        if not isinstance(template, str) or template.count("{}") != 1:
            raise body.error(key, f"'template' must hold '{{}}' once, where the label goes; "
                             f"got {preview(template)}", at=f"{key}.template")
        if len(template) > MAX_LABEL_CHARS:
            raise body.error(key, f"'template' is {len(template)} characters long; at most "
                             f"{MAX_LABEL_CHARS}: {preview(template)}", at=f"{key}.template")
        sets.append({"name": str(name), "labels": list(labels), "template": template})
    return {"model": clip_model(body, ctx), "sets": sets, **_reference(body, sets)}


def _reference(body: Body, sets: list[dict[str, Any]]) -> dict[str, Any]:
    """`reference: {group: {label: share}}` and its `reference_source:` (required with it)."""
    reference = body.take_mapping("reference", None)
    source = body.take_str("reference_source", None)
    if reference is None:
        if source is not None:
            raise body.error("reference_source", "is given without 'reference:'")
        return {"reference": {}, "source": None}
    if not source:
        raise body.error("reference", "needs 'reference_source:' saying where the shares come "
                         "from (e.g. \"US Bureau of Labor Statistics, 2022\")")
    labels = {label for s in sets for label in s["labels"]}
    out: dict[str, dict[str, float]] = {}
    for group, shares in reference.items():
        key = f"reference.{group}"
        if not isinstance(shares, dict) or not shares:
            raise body.error(key, f"must map labels to shares, e.g. {{a woman: 0.38}}; got "
                             f"{preview(shares)}")
        for label, share in shares.items():
            if label not in labels:
                raise body.error(f"{key}.{label}", f"is not a label of any set under 'clip:' "
                                 f"(labels: {shown_list(sorted(labels))})")
            # NaN fails both comparisons, infinity the second: neither is a share
            if isinstance(share, bool) or not isinstance(share, int | float) \
                    or not 0 <= share <= 1:
                raise body.error(f"{key}.{label}", f"must be a share from 0 to 1, got "
                                 f"{preview(share)}")
        out[str(group)] = {str(k): float(v) for k, v in shares.items()}
    return {"reference": out, "source": source}


def check_groups(settings: Any, groups: list[str]) -> tuple[str, str] | None:
    """(key, problem) when the reference names a group the figure does not have."""
    for group in settings["reference"]:
        if group not in groups:
            return (f"reference.{group}", f"names no group of the figure (groups: "
                    f"{shown_list(groups)})")
    return None


def text_job(ref: ClipRef, label_set: dict[str, Any]) -> Job:
    """The job that embeds one label set's prompts (one per set and model, site-wide)."""
    prompts = [label_set["template"].replace("{}", label) for label in label_set["labels"]]
    return Job("measure.text", {"clip": ref.fingerprint, "prompts": prompts, "v": VERSION},
               group=(ref.fingerprint,), run={"clip": ref.as_dict()})


def jobs(settings: Any, image: Job, ctx: Context) -> list[Job]:
    ref: ClipRef = settings["model"]
    return [embed_job(ref, image), *(text_job(ref, s) for s in settings["sets"])]


def summarise(settings: Any, groups: list[Group], by_image: dict[str, list[Job]],
              results: Results) -> dict[str, Any]:
    from . import without_withheld  # defined after the registry that imports this module

    ref: ClipRef = settings["model"]
    groups, held = without_withheld(groups, results)
    tables = []
    for label_set in settings["sets"]:
        rows = []
        results = replace(results, failed=[], missing=[])  # each set counts its own problems
        # 1. The label set's prompt embeddings (one job for the whole figure).
        text = text_job(ref, label_set)
        found_text = results.gather([""], {"": [text]}, lambda j: True)
        if found_text:
            data = found_text[0][1]["data"]
            prompts = np.stack([decode_vector(v) for v in data["embeddings"]])
            scale = float(data["logit_scale"])
        # 2. Each image counts for its most probable label.
        for group in groups:
            counts = dict.fromkeys(label_set["labels"], 0)
            found = results.gather(group.images, by_image,
                                   lambda j: j.type == "measure.embed") if found_text else []
            if found:
                images = np.stack([decode_vector(r["data"]["embedding"]) for _, r in found])
                for top in probabilities(images, prompts, scale).argmax(axis=1):
                    counts[label_set["labels"][int(top)]] += 1
            n = len(found)
            cells = []
            for label in label_set["labels"]:
                k = counts[label]
                low, high = wilson(k, n) if n else (0.0, 1.0)
                cells.append({"label": label, "k": k, "n": n, "share": k / n if n else None,
                              "low": low, "high": high})
            reference = settings["reference"].get(group.label, {})
            for cell in cells:
                cell["reference"] = reference.get(cell["label"])
            rows.append({"group": group.label, "n": n, "cells": cells})
        tables.append({**label_set, "rows": rows, **results.problems(),
                       "prompts": [label_set["template"].replace("{}", x)
                                   for x in label_set["labels"]]})
    return {"model": ref.name, "fingerprint": ref.fingerprint, "tables": tables,
            "source": settings["source"], "withheld": held}


def describe(job: Job) -> tuple[str, str]:
    clip = job.run["clip"]["name"]
    if job.type == "measure.embed":
        return f"CLIP {clip}", f"embed image {job.inputs['image'][:12]}"
    return f"CLIP {clip}", f"embed the label prompts {' / '.join(job.inputs['prompts'])}"


INSTRUMENT = Instrument(
    name="clip",
    title="Zero-shot labels (CLIP)",
    doc="zero-shot classification against label sets, with 95 % Wilson intervals per group",
    parse=parse,
    jobs=jobs,
    summarise=summarise,
    runners={"measure.embed": "generator.backends.clip:run_embed",
             "measure.text": "generator.backends.clip:run_text"},
    describe=describe,
    check_groups=check_groups,
)
