"""Runners of `iterate`: start images, image-to-image rounds, CLIP descriptions, text rounds.

The text-to-image pipeline is loaded once per model and kept for the build (a chain of rounds
runs as one group per round, upstream first, and must not load the model once a round); the
image-to-image pipeline is made from its components with `AutoPipelineForImage2Image.from_pipe`,
which shares them (no second load, no second copy in memory). Every image gets its own seeded
CPU generator, as in `generate`, so its pixels depend on its inputs only, not on its batch.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import a1111
from ..store import Result
from ..types import Job
from .diffusion import (
    environment,
    generate_batch,
    load_pipeline,
    pick_device,
    png_bytes,
    safety_verdict,
    set_scheduler,
)

# (model path or name, device, dtype, checker) -> (text-to-image, image-to-image, scheduler)
_PIPES: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}


def pipelines(job: Job, options: dict[str, Any]) -> tuple[Any, Any, Any, str, Any, bool]:
    """The model's two pipelines (loaded once per build), its own scheduler, device, dtype and
    whether the safety checker runs."""
    device, dtype = pick_device(options.get("device", "auto"))
    checker = bool(options.get("safety_checker", True))
    key = (job.run["model"], job.run["path"], device, str(dtype), checker)
    if key not in _PIPES:
        from diffusers import AutoPipelineForImage2Image

        text2image = load_pipeline(job, device, dtype, checker)
        image2image = AutoPipelineForImage2Image.from_pipe(text2image)
        image2image.set_progress_bar_config(disable=True)
        _PIPES.clear()  # one model at a time: a second one would double the memory held
        _PIPES[key] = (text2image, image2image, text2image.scheduler)
    t2i, i2i, original = _PIPES[key]
    return t2i, i2i, original, device, dtype, checker


def _image(store: Any, key: str) -> Any:
    from PIL import Image

    with Image.open(store.file(key, "image")) as im:
        return im.convert("RGB")


def run_file(jobs: list[Job], options: dict[str, Any]) -> Iterator[tuple[Job, Any]]:
    """Runner for "iterate.file": a start image of the project, stored as PNG (its sides cut
    down to multiples of 8, which the VAE needs), after checking it is the file planned."""
    from PIL import Image

    for job in jobs:
        try:
            data = open(job.run["path"], "rb").read()  # noqa: SIM115 - read whole, at once
            if hashlib.sha256(data).hexdigest() != job.inputs["sha256"]:
                raise ValueError(f"{job.inputs['file']} changed after planning; build again")
            with Image.open(io.BytesIO(data)) as im:
                image = im.convert("RGB")
            width, height = image.width // 8 * 8, image.height // 8 * 8
            if min(width, height) < 8:
                raise ValueError(f"{job.inputs['file']} is {image.width}×{image.height}; "
                                 "at least 8×8 pixels")
            if (width, height) != image.size:
                image = image.crop((0, 0, width, height))
            yield job, Result(data={"parameters": f"start image {job.inputs['file']}",
                                    "width": width, "height": height},
                              files={"image": (png_bytes(image, ""), "png")})
        except (OSError, ValueError) as exc:
            yield job, exc


def _shape(job: Job) -> tuple[Any, ...]:
    i = job.inputs
    return (i["steps"], i["guidance"], i["scheduler"], i.get("strength"), i.get("width"),
            i.get("height"))


def run_image(jobs: list[Job], options: dict[str, Any]) -> Iterator[tuple[Job, Any]]:
    """Runner for "iterate.image": one image-to-image round from the image it needs."""
    import torch

    # 1. The pipelines (loaded once per build); each job's input image from the store.
    _, pipe, original, device, dtype, checker = pipelines(jobs[0], options)
    env = environment(device, dtype)
    store = options["store"]
    batch_size = max(1, int(options.get("batch_size", 4)))
    ready: list[tuple[Job, Any]] = []
    for job in jobs:
        try:
            ready.append((job, _image(store, job.needs[0])))
        except (OSError, KeyError) as exc:
            yield job, exc

    # 2. Batches of one shape (steps, guidance, scheduler, strength, input size).
    def shape(item: tuple[Job, Any]) -> tuple[Any, ...]:
        return (*_shape(item[0]), item[1].size)

    for _, same in itertools.groupby(sorted(ready, key=lambda i: str(shape(i))), key=shape):
        group = list(same)
        scheduler = set_scheduler(pipe, group[0][0].inputs["scheduler"], original)
        config = dict(pipe.scheduler.config)
        for start in range(0, len(group), batch_size):
            batch = group[start:start + batch_size]
            first = batch[0][0].inputs
            t0 = time.perf_counter()
            try:
                with torch.inference_mode():
                    out = pipe(prompt=[j.inputs["prompt"] for j, _ in batch],
                               negative_prompt=[j.inputs["negative"] for j, _ in batch],
                               image=[im for _, im in batch], strength=first["strength"],
                               num_inference_steps=first["steps"],
                               guidance_scale=first["guidance"],
                               generator=[torch.Generator("cpu").manual_seed(j.inputs["seed"])
                                          for j, _ in batch])
            except Exception as exc:
                for job, _ in batch:
                    yield job, exc
                continue
            each = (time.perf_counter() - t0) / len(batch)
            flags = getattr(out, "nsfw_content_detected", None)
            # 3. Each image with its A1111 parameters (img2img's denoising strength included).
            for n, ((job, _), image) in enumerate(zip(batch, out.images, strict=True)):
                params = a1111.parameters(
                    {**job.inputs, "width": image.width, "height": image.height},
                    model=job.run["model"], scheduler_class=scheduler, scheduler_config=config)
                params += f", Denoising strength: {job.inputs['strength']}"
                data = {"parameters": params, "scheduler": scheduler,
                        "safety": safety_verdict(checker, None if flags is None
                                                 else bool(flags[n]))}
                yield job, Result(data=data, files={"image": (png_bytes(image, params), "png")},
                                  env={**env, "batch": len(batch)}, seconds=each)


# vocabulary embeddings by (CLIP fingerprint, phrases): a vocabulary is embedded once per build
_VOCABULARY: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}
RANKED = 10  # phrases kept in a description's record, with their similarity


def run_describe(jobs: list[Job], options: dict[str, Any]) -> Iterator[tuple[Job, Any]]:
    """Runner for "iterate.describe": CLIP interrogation of the image a job needs: the phrases
    of its vocabulary ranked by cosine similarity to the image; the top ones, joined by commas,
    are the description (and the next round's prompt)."""
    from .clip import _loaded, embed_images, embed_texts
    from .clip import environment as clip_environment

    loaded = _loaded(jobs[0], options)
    env = clip_environment(loaded)
    store = options["store"]
    for job in jobs:
        try:
            t0 = time.perf_counter()
            phrases = tuple(job.inputs["vocabulary"])
            vocab_key = (loaded.ref.fingerprint, phrases)
            if vocab_key not in _VOCABULARY:
                _VOCABULARY[vocab_key] = embed_texts(loaded, list(phrases))
            image = embed_images(loaded, [_image(store, job.needs[0])], 1)[0]
            scores = _VOCABULARY[vocab_key] @ image
            order = rank(scores)
            top = [phrases[i] for i in order[: job.inputs["top"]]]
            yield job, Result(data={"text": ", ".join(top), "ranked": [
                [phrases[i], round(float(scores[i]), 6)] for i in order[:RANKED]]},
                env=env, seconds=time.perf_counter() - t0)
        except (OSError, KeyError) as exc:
            yield job, exc


def rank(scores: np.ndarray) -> list[int]:
    """Indexes by descending score; ties keep vocabulary order (a stable sort)."""
    return [int(i) for i in np.argsort(-scores, kind="stable")]


def run_generate(jobs: list[Job], options: dict[str, Any]) -> Iterator[tuple[Job, Any]]:
    """Runner for "iterate.generate": a text-to-image round whose prompt is the description
    the job needs (read from the store)."""
    text2image, _, original, device, dtype, checker = pipelines(jobs[0], options)
    env = environment(device, dtype)
    store = options["store"]
    batch_size = max(1, int(options.get("batch_size", 4)))
    ready = []
    for job in jobs:
        record = store.get(job.needs[0])
        if record is None:
            yield job, KeyError(f"no stored description {job.needs[0][:12]}")
            continue
        # the job as `generate` would make it, with the description as its prompt
        ready.append((job, Job("generate.image", {**job.inputs, "prompt": record["data"]["text"]},
                               run=job.run, key=job.key)))
    for _, same in itertools.groupby(sorted(ready, key=lambda i: str(_shape(i[1]))),
                                     key=lambda i: _shape(i[1])):
        group = list(same)
        scheduler = set_scheduler(text2image, group[0][1].inputs["scheduler"], original)
        config = dict(text2image.scheduler.config)
        for start in range(0, len(group), batch_size):
            batch = group[start:start + batch_size]
            t0 = time.perf_counter()
            try:
                images, flags = generate_batch(text2image, [made for _, made in batch])
            except Exception as exc:
                for job, _ in batch:
                    yield job, exc
                continue
            each = (time.perf_counter() - t0) / len(batch)
            for n, ((job, made), image) in enumerate(zip(batch, images, strict=True)):
                params = a1111.parameters(made.inputs, model=job.run["model"],
                                          scheduler_class=scheduler, scheduler_config=config)
                data = {"parameters": params, "scheduler": scheduler, "prompt":
                        made.inputs["prompt"], "safety": safety_verdict(
                            checker, None if flags is None else flags[n])}
                yield job, Result(data=data, files={"image": (png_bytes(image, params), "png")},
                                  env={**env, "batch": len(batch)}, seconds=each)
