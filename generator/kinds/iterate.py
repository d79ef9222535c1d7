"""`iterate`: feed the model its own output, round after round, and show each path as a filmstrip.

    ```iterate
    id: drift
    of: professions            # start from every image of a figure; or `image: start.png`
    mode: img2img              # img2img: the image goes back in with a prompt and a strength;
                               # caption: CLIP describes it in words, the words make the next
    rounds: 5
    prompt: "a portrait photo" # img2img: one prompt, or a list of one per round
    strength: 0.5
    caption: What the model does to its own pictures.
    ```

Each round is one job keyed by its inputs and, through `Job.needs`, by the key of the image it
starts from: the rounds of one path form a chain, a build that is stopped resumes at the first
round not stored, and raising `rounds` from 5 to 8 runs only the 3 new rounds.

- `img2img`: `iterate.image` jobs (generator/backends/img2img.py), an image-to-image pipeline
  made from the already loaded text-to-image components.
- `caption`: per round an `iterate.describe` job (CLIP interrogation: the `top` phrases of a
  vocabulary ranked by similarity to the image, joined by commas) then an `iterate.generate`
  job that makes a new image from that text, the "machinic gaze" condition of Arora, Magee and
  Munn's heritage study (the human-written condition is `img2img` with the author's prompt).

A start image from the project (`image:`) becomes an `iterate.file` job first, keyed by the
file's content, so every round reads its input from the store and a changed file starts anew.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..clipmodels import ClipRef, for_context
from ..errors import ModelNotFound
from ..render import PageRender
from ..specs import Body, check_name, is_text, preview
from ..types import Context, Job, Kind, Planned
from .generate import MAX_IMAGES, MAX_PROMPT_CHARS, MAX_SEED, check_param, image_job

MODES = ("img2img", "caption")
MAX_ROUNDS = 50
MAX_STARTS = 64
MAX_START_BYTES = 20_000_000  # a project start image; larger is not a picture for this
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MAX_VOCABULARY = 2000
MAX_TOP = 10
VERSION = 1  # bump when the same inputs would give other results
# The phrases CLIP chooses from when the author gives none: kinds of picture, subjects and
# settings, broad enough that a drift from one to another shows.
DEFAULT_VOCABULARY = (
    "a photograph", "a painting", "a drawing", "a portrait", "a close-up", "a landscape",
    "an abstract pattern", "a texture", "noise", "a diagram", "a map", "a poster",
    "a person", "a man", "a woman", "a child", "a family", "a crowd", "a face", "hands",
    "an animal", "a dog", "a cat", "a bird", "a flower", "a tree", "a forest", "the sea",
    "a mountain", "a city street", "a building", "a room", "a kitchen", "a table with food",
    "a car", "a machine", "a screen", "text", "a flag", "a uniform", "a doctor", "a nurse",
    "a worker", "a dinner", "a wedding", "a church", "a ruin", "a museum", "a monument",
    "bright colours", "dark colours", "red", "green", "blue", "yellow", "black and white",
)


@dataclass(frozen=True)
class Start:
    """Where a path starts: an upstream figure's image, or a file of the project."""

    label: str
    job: Job | None = None  # an upstream image
    file: str | None = None  # a project file, relative to mkdocs.yml


@dataclass(frozen=True)
class IterateSpec:
    id: str | None
    caption: str | None
    mode: str
    rounds: int
    image: str | None  # a project file (instead of `of:`)
    prompts: tuple[str, ...]  # img2img: one per round ("" = the start image's own prompt)
    strength: float
    negative: str
    seed: int
    params: dict[str, Any]  # model, steps, guidance, width/height, scheduler (as set)
    vocabulary: tuple[str, ...]
    top: int
    clip: ClipRef | None

    @property
    def of_optional(self) -> bool:
        """No `of:` is needed when the path starts from a file of the project."""
        return self.image is not None


def parse(body: Body, ctx: Context) -> IterateSpec:
    def err(key: str) -> Any:
        return lambda message: body.error(key, message)

    # 1. What it starts from, and how it goes round.
    mode = body.take_str("mode", "img2img", MODES)
    image = body.take_str("image", None)
    if image is not None and body.has("of"):
        raise body.error("image", "give either `of:` (a figure's images) or `image:` (a file "
                         "of the project), not both")
    if image is None and not body.has("of"):
        raise body.error("of", "is required: the figure whose images start the paths (or "
                         "give `image:`, an image file of the project)")
    if image is not None:
        _project_file(image, ctx, err("image"))
    rounds = body.take_int("rounds", 4, 1, MAX_ROUNDS)
    seed = body.take_int("seed", 0, 0, MAX_SEED)

    # 2. The generation parameters, as `generate` checks them.
    params: dict[str, Any] = {}
    for name in ("model", "steps", "guidance", "size", "scheduler"):
        if body.has(name):
            value = check_param(name, body.raw(name), err(name), ctx)
            if name == "size":
                params["width"], params["height"] = value
            else:
                params[name] = value
    params.setdefault("model", check_param("model", "default", err("model"), ctx))
    negative = check_param("negative", body.raw("negative", ""), err("negative"), ctx)

    # 3. What each mode reads: a prompt and a strength, or a vocabulary and a CLIP model.
    prompts: tuple[str, ...] = ("",) * rounds
    strength = 0.0
    vocabulary: tuple[str, ...] = ()
    top = 0
    clip = None
    if mode == "img2img":
        if body.has("size"):
            raise body.error("size", "is the start image's in img2img mode; remove it")
        strength = body.take_float("strength", 0.5, 0.05, 1.0)
        prompts = _prompts(body, rounds, image)
    else:
        for key in ("prompt", "strength"):
            if body.has(key):
                raise body.error(key, "is for img2img mode; in caption mode CLIP's description"
                                 " of each image is the next prompt")
        vocabulary = _vocabulary(body)
        top = body.take_int("top", 3, 1, MAX_TOP)
        if top > len(vocabulary):
            raise body.error("top", f"asks for {top} phrases of a vocabulary of "
                             f"{len(vocabulary)}")
        name = body.take_name("clip_model", "default")
        try:
            clip = for_context(ctx).resolve(name)
        except ModelNotFound as exc:
            raise body.error("clip_model", str(exc)) from None
    spec = IterateSpec(id=body.take_str("id", None), caption=body.take_str("caption", None),
                       mode=mode, rounds=rounds, image=image, prompts=prompts,
                       strength=strength, negative=negative, seed=seed, params=params,
                       vocabulary=vocabulary, top=top, clip=clip)
    if mode == "img2img":
        steps = _base(spec, ctx).inputs["steps"]
        if int(steps * strength) < 1:
            raise body.error("strength", f"× steps ({strength} × {steps}) leaves no denoising "
                             "step; raise strength or steps")
    return spec


def _prompts(body: Body, rounds: int, image: str | None) -> tuple[str, ...]:
    value = body.raw("prompt", None)
    if value is None:
        if image is not None:
            raise body.error("prompt", "is required when starting from a file (an image of a "
                             "figure brings its own prompt)")
        return ("",) * rounds
    items = value if isinstance(value, list) else [value] * rounds
    if len(items) != rounds:
        raise body.error("prompt", f"lists {len(items)} prompts for {rounds} rounds; give one "
                         "prompt, or one per round")
    for i, item in enumerate(items):
        at = f"prompt[{i}]" if isinstance(value, list) else None
        if not is_text(item) or not str(item).strip():
            raise body.error("prompt", f"must be text, got {preview(item)}", at=at)
        if len(str(item)) > MAX_PROMPT_CHARS:
            raise body.error("prompt", f"is {len(str(item))} characters long; at most "
                             f"{MAX_PROMPT_CHARS}", at=at)
    return tuple(str(i) for i in items)


def _vocabulary(body: Body) -> tuple[str, ...]:
    value = body.raw("vocabulary", None)
    if value is None:
        return DEFAULT_VOCABULARY
    if not isinstance(value, list) or len(value) < 2:
        raise body.error("vocabulary", f"must list at least two phrases, got {preview(value)}")
    if len(value) > MAX_VOCABULARY:
        raise body.error("vocabulary", f"lists {len(value)} phrases; at most {MAX_VOCABULARY}")
    seen: set[str] = set()
    for i, item in enumerate(value):
        if not is_text(item) or not str(item).strip() or len(str(item)) > 300:
            raise body.error("vocabulary", f"must be a phrase of 1–300 characters, got "
                             f"{preview(item)}", at=f"vocabulary[{i}]")
        if str(item) in seen:
            raise body.error("vocabulary", "lists a phrase twice", at=f"vocabulary[{i}]")
        seen.add(str(item))
    return tuple(str(i) for i in value)


def _project_file(path: str, ctx: Context, error: Any) -> Path:
    """A start image inside the project (relative to mkdocs.yml): no absolute path, no `..`."""
    check_name(path, error)
    given = Path(path)
    if given.is_absolute() or ".." in given.parts:
        raise error(f"must be a path inside the project, relative to mkdocs.yml, got "
                    f"{preview(path)}")
    full = ctx.root / given
    if given.suffix.lower() not in IMAGE_SUFFIXES:
        raise error(f"must be an image file ({', '.join(IMAGE_SUFFIXES)}), got {preview(path)}")
    if not full.is_file():
        raise error(f"no such file in the project: {preview(path)}")
    if full.stat().st_size > MAX_START_BYTES:
        raise error(f"is {full.stat().st_size:,} bytes; at most {MAX_START_BYTES:,}")
    return full


def _base(spec: IterateSpec, ctx: Context, prompt: str = "") -> Job:
    """A `generate.image` job of these parameters, for what `generate` resolves: the model's
    fingerprint and run facts, its default steps, guidance and size."""
    return image_job({**spec.params, "negative": spec.negative, "prompt": prompt,
                      "seed": spec.seed}, ctx)


def starts(spec: IterateSpec, upstream: list[Planned]) -> list[Start]:
    from .measure import images_of

    if spec.image is not None:
        return [Start(spec.image, file=spec.image)]
    found: dict[str, Start] = {}
    for image in images_of(upstream):
        if image.job.key not in found:
            label = ", ".join(v for k, v in image.axes.items() if k not in ("figure", "model"))
            found[image.job.key] = Start(label, job=image.job)
    return list(found.values())


def expand(spec: IterateSpec, ctx: Context, upstream: list[Planned]) -> list[Job]:
    """Per start image: (its file job,) then each round's jobs, chained by `needs`."""
    begin = starts(spec, upstream)
    if len(begin) > MAX_STARTS:
        raise body_error(f"reads {len(begin)} images; at most {MAX_STARTS} start images per "
                         "iterate (measure a subset with a figure of its own)")
    per_round = 1 if spec.mode == "img2img" else 2
    if len(begin) * spec.rounds * per_round > MAX_IMAGES:
        raise body_error(f"asks for {len(begin) * spec.rounds * per_round} jobs; at most "
                         f"{MAX_IMAGES} per directive")
    jobs: list[Job] = []
    for start in begin:
        jobs += path_jobs(spec, ctx, start)
    return jobs


def body_error(message: str) -> Exception:
    from ..errors import DirectiveError

    return DirectiveError(message, key="rounds")


def path_jobs(spec: IterateSpec, ctx: Context, start: Start) -> list[Job]:
    """The jobs of one path: the start (a file job, if it is a file) and every round."""
    jobs: list[Job] = []
    if start.file is not None:
        data = (ctx.root / start.file).read_bytes()
        first = Job("iterate.file", {"file": start.file,
                                     "sha256": hashlib.sha256(data).hexdigest()},
                    run={"path": str(ctx.root / start.file)})
        jobs.append(first)
        previous = first
        own_prompt = ""
    else:
        assert start.job is not None
        previous = start.job
        own_prompt = str(start.job.inputs.get("prompt", ""))
    for r in range(spec.rounds):
        if spec.mode == "img2img":
            base = _base(spec, ctx, spec.prompts[r] or own_prompt)
            inputs = {k: base.inputs[k] for k in ("model", "prompt", "negative", "seed", "steps",
                                                 "guidance", "scheduler")}
            if "safety_checker" in base.inputs:
                inputs["safety_checker"] = base.inputs["safety_checker"]
            job = Job("iterate.image", {**inputs, "strength": spec.strength, "v": VERSION},
                      group=base.group, run=base.run, needs=(previous.key,))
            jobs.append(job)
        else:
            assert spec.clip is not None
            describe = Job("iterate.describe", {
                "clip": spec.clip.fingerprint, "vocabulary": list(spec.vocabulary),
                "top": spec.top, "v": VERSION}, group=(spec.clip.fingerprint,),
                run={"clip": spec.clip.as_dict()}, needs=(previous.key,))
            base = _base(spec, ctx)
            inputs = {k: v for k, v in base.inputs.items() if k != "prompt"}
            job = Job("iterate.generate", {**inputs, "v": VERSION}, group=base.group,
                      run=base.run, needs=(describe.key,))
            jobs += [describe, job]
        previous = job
    return jobs


# -- rendering -----------------------------------------------------------------------------------
def _frame(page: PageRender, job: Job, label: str) -> dict[str, Any]:
    """One picture of a filmstrip: its web copy, or why it is not there."""
    record = page.record(job)
    frame: dict[str, Any] = {"label": label, "status": "missing", "error": page.failure(job),
                             "text": None,
                             "key": job.key}
    if frame["error"]:
        frame["status"] = "failed"
    elif record is not None and "image" in record.get("files", {}):
        if (record.get("data", {}).get("safety") or {}).get("flagged"):
            frame["status"] = "withheld"
        else:
            web, png = page.r.web_image(record)
            frame.update(status="ok", web=page.url_for(web), png=page.url_for(png),
                         parameters=record["data"].get("parameters", ""))
    return frame


def render(planned: Planned, page: PageRender) -> str:
    spec: IterateSpec = planned.directive.spec
    strips = []
    jobs = iter(planned.jobs)
    for start in starts(spec, planned.upstream):
        first = next(jobs) if start.file is not None else start.job
        assert first is not None
        frames = [_frame(page, first, "start")]
        for r in range(spec.rounds):
            if spec.mode == "caption":
                describe = page.record(next(jobs))
                frame = _frame(page, next(jobs), f"round {r + 1}")
                frame["text"] = describe["data"]["text"] if describe else None
            else:
                job = next(jobs)
                frame = _frame(page, job, f"round {r + 1}")
                frame["text"] = job.inputs["prompt"] if r == 0 or \
                    spec.prompts[r] != spec.prompts[r - 1] else None
            frames.append(frame)
        strips.append({"label": start.label, "frames": frames})
    sources = [{"id": p.directive.spec.id, "where": p.directive.where, "href": page.link_to(p)}
               for p in planned.upstream]
    fixed = {}
    base = planned.jobs[-1]
    for name in ("steps", "guidance", "seed"):
        fixed[name] = base.inputs.get(name)
    fixed["model"] = base.run.get("model")
    if spec.mode == "img2img":
        fixed["strength"] = spec.strength
    else:
        fixed["CLIP"] = spec.clip.name if spec.clip else ""
        fixed["phrases"] = f"top {spec.top} of {len(spec.vocabulary)}"
    return page.figure("iterate.html", planned, {
        "spec": spec, "strips": strips, "sources": sources, "fixed": fixed})


def describe(job: Job) -> tuple[str, str]:
    i = job.inputs
    if job.type == "iterate.file":
        return "", f"start image {i['file']}"
    if job.type == "iterate.describe":
        return "CLIP", f"describe with the top {i['top']} of {len(i['vocabulary'])} phrases"
    what = f"{i['prompt']!r} strength {i['strength']}" if job.type == "iterate.image" else \
        "from the description before"
    return f"model {job.run['model']}", f"{what}, seed {i['seed']}, {i['steps']} steps"


KIND = Kind(
    name="iterate",
    parse=parse,
    expand=expand,
    render=render,
    runners={"iterate.file": "generator.backends.img2img:run_file",
             "iterate.image": "generator.backends.img2img:run_image",
             "iterate.describe": "generator.backends.img2img:run_describe",
             "iterate.generate": "generator.backends.img2img:run_generate"},
    doc="Feed the model its own output: image-to-image rounds, or image -> CLIP words -> image "
        "rounds, as a filmstrip per start image.",
    consumes=("images",),
    describe=describe,
)
