"""Runner for `generate.image` jobs: load a pipeline once, batch by shape, seed each image.

Each image gets its own CPU `torch.Generator`, so its pixels depend on its own inputs only, not on
which batch it fell into, and the initial noise is the same on every device.
"""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Iterator
from typing import Any

from .. import a1111
from ..models import dist_version, tiny_ref
from ..store import Result
from ..types import Job

SCHEDULER_CLASSES = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "lms": "LMSDiscreteScheduler",
    "unipc": "UniPCMultistepScheduler",
    "heun": "HeunDiscreteScheduler",
}


def pick_device(requested: str = "auto") -> tuple[str, Any]:
    """CUDA in fp16, else Apple MPS, else the CPU in fp32 (or what the config asks for)."""
    import torch

    if requested != "auto":
        dtype = torch.float16 if requested.startswith("cuda") else torch.float32
        return requested, dtype
    if torch.cuda.is_available():
        return "cuda", torch.float16
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps", torch.float32
    return "cpu", torch.float32


def load_pipeline(job: Job, device: str, dtype: Any) -> Any:
    """Offline, safetensors-only loading through AutoPipeline (the tiny model included)."""
    from diffusers import AutoPipelineForText2Image
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    # our own bar counts images; theirs would count steps and components over it
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()

    path = job.run["path"]
    if job.run["source"] == "builtin":
        from .tiny import ensure_tiny

        path = str(ensure_tiny(tiny_ref(job.run["model"])))
    pipe = AutoPipelineForText2Image.from_pretrained(
        path, dtype=dtype, local_files_only=True, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def environment(device: str, dtype: Any) -> dict[str, Any]:
    return {"diffusers": dist_version("diffusers"), "torch": dist_version("torch"),
            "transformers": dist_version("transformers"), "device": device,
            "dtype": str(dtype).replace("torch.", "")}


def set_scheduler(pipe: Any, name: str, original: Any) -> str:
    import diffusers

    if name == "default":
        pipe.scheduler = original
    else:
        cls = getattr(diffusers, SCHEDULER_CLASSES[name])
        pipe.scheduler = cls.from_config(original.config)
    return str(pipe.scheduler.__class__.__name__)


def generate_batch(pipe: Any, jobs: list[Job]) -> list[Any]:
    """One pipeline call for jobs that share a shape; returns PIL images in order."""
    import torch

    first = jobs[0].inputs
    generators = [torch.Generator("cpu").manual_seed(j.inputs["seed"]) for j in jobs]
    with torch.inference_mode():
        out = pipe(
            prompt=[j.inputs["prompt"] for j in jobs],
            negative_prompt=[j.inputs["negative"] for j in jobs],
            num_inference_steps=first["steps"],
            guidance_scale=first["guidance"],
            width=first["width"],
            height=first["height"],
            generator=generators,
        )
    return list(out.images)


def png_bytes(image: Any, parameters: str) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", parameters)
    buf = io.BytesIO()
    image.save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def run(jobs: list[Job], options: dict[str, Any]) -> Iterator[tuple[Job, Result | Exception]]:
    """Yield (job, Result) for each image, or (job, exception) for each that failed alone."""
    # 1. Load the model once for all its jobs.
    device, dtype = pick_device(options.get("device", "auto"))
    pipe = load_pipeline(jobs[0], device, dtype)
    original = pipe.scheduler
    env = environment(device, dtype)
    batch_size = max(1, int(options.get("batch_size", 4)))

    # 2. Group by everything a pipeline call shares; batch within a group.
    def shape(job: Job) -> tuple[Any, ...]:
        i = job.inputs
        return (i["width"], i["height"], i["steps"], i["guidance"], i["scheduler"])

    for _, same_shape in itertools.groupby(sorted(jobs, key=shape), key=shape):
        group = list(same_shape)
        try:
            scheduler = set_scheduler(pipe, group[0].inputs["scheduler"], original)
            scheduler_config = dict(pipe.scheduler.config)  # the sampler's A1111 name needs it
        except Exception as exc:  # e.g. a scheduler whose dependency is missing: its jobs only
            for job in group:
                yield job, exc
            continue
        for start in range(0, len(group), batch_size):
            batch = group[start : start + batch_size]
            # 3. Generate; if the batch fails (e.g. out of memory), retry its jobs one by one so
            # that only the job that really fails is lost.
            try:
                t0 = time.perf_counter()
                images = generate_batch(pipe, batch)
                each = (time.perf_counter() - t0) / len(batch)
                done = [(job, image, each) for job, image in zip(batch, images, strict=True)]
            except Exception:
                done = []
                for job in batch:
                    try:
                        t0 = time.perf_counter()
                        image = generate_batch(pipe, [job])[0]
                        done.append((job, image, time.perf_counter() - t0))
                    except Exception as exc:
                        yield job, exc
            # 4. Hand each image back with its A1111 parameters and environment.
            for job, image, seconds in done:
                params = a1111.parameters(
                    job.inputs, model=job.run["model"], scheduler_class=scheduler,
                    scheduler_config=scheduler_config,
                    weights_sha256=job.run.get("weights_sha256"))
                yield job, Result(
                    data={"parameters": params, "scheduler": scheduler},
                    files={"image": (png_bytes(image, params), "png")},
                    env=env, seconds=seconds)
