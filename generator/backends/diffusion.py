"""Runner for `generate.image` jobs: load a pipeline once, batch by shape, seed each image.

Each image gets its own CPU `torch.Generator`, so its pixels depend on its own inputs only, not on
which batch it fell into, and the initial noise is the same on every device.

Besides the image, each record states two findings about how the model treated its inputs:
- `data["truncated"]`, present when a prompt or negative prompt is longer than the text encoder
  reads: per text, how many tokens were dropped and the words the model never saw, counted with
  the pipeline's own tokenizer (also logged, with the directive's place);
- `data["safety"]`, always: `{"checked": true, "flagged": bool}` where the pipeline has a safety
  checker, `{"checked": false}` where it has none, `{"checked": false, "disabled_by_config":
  true}` where the config's `safety_checker: false` turned it off. A flagged image is stored as
  the pipeline returned it (black) and is *withheld*: pages show a box, `measure` skips it.

The pipeline performance options a job carries (`run["pipeline"]`: attention processors,
channels-last, VAE slicing and tiling, CPU offload, torch.compile; see generator/performance.py)
are applied by `tune` right after loading, and each record's `env["pipeline"]` states them.
"""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import a1111
from ..errors import ConfigError
from ..log import log
from ..models import dist_version, ships_safety_checker, tiny_ref
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


def load_pipeline(job: Job, device: str, dtype: Any, safety_checker: bool = True,
                  tuning: dict[str, Any] | None = None) -> Any:
    """Offline, safetensors-only loading through AutoPipeline (the tiny model included), then
    the performance options in `tuning` (see `tune`).

    With `safety_checker=False` a checker the model folder ships is not loaded at all."""
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
    extra: dict[str, Any] = {}
    if not safety_checker and ships_safety_checker(Path(path)):
        # only then: a pipeline without the component would warn that it ignores the argument
        extra["safety_checker"] = None
    pipe = AutoPipelineForText2Image.from_pretrained(
        path, dtype=dtype, local_files_only=True, use_safetensors=True, **extra)
    pipe.set_progress_bar_config(disable=True)
    tuning = tuning or {}
    if tuning.get("cpu_offload", "none") == "none":
        pipe = pipe.to(device)
    return tune(pipe, tuning, device)


def tune(pipe: Any, tuning: dict[str, Any], device: str) -> Any:
    """Apply the performance options (generator/performance.py) to a loaded pipeline, in the
    order the bare loop of bench/_bare_gpu.py uses: placement, attention, memory format, VAE,
    compilation last (it traces what the others set up)."""
    import torch

    # 1. CPU offload instead of moving the whole pipeline to the device (accelerate hooks).
    offload = tuning.get("cpu_offload", "none")
    if offload != "none":
        if not device.startswith("cuda") or not torch.cuda.is_available():
            raise ConfigError(f"plugins.unmake.cpu_offload: {offload!r} needs a CUDA device, "
                              f"and this build runs on {device!r}; set cpu_offload: none")
        if offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.enable_sequential_cpu_offload(device=device)
    # 2. Attention processors of the UNet and the VAE: SDPA, or the plain matmul-softmax one.
    attention = tuning.get("attention", "default")
    if attention != "default":
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        processor = AttnProcessor2_0 if attention == "sdpa" else AttnProcessor
        models = [m for m in (getattr(pipe, "unet", None), getattr(pipe, "vae", None))
                  if m is not None and hasattr(m, "set_attn_processor")]
        if getattr(pipe, "unet", None) is None:
            raise ConfigError(f"plugins.unmake.attention: {attention!r} sets the attention "
                              f"processors of a UNet, and {pipe.__class__.__name__} has none; "
                              "set attention: default")
        for model in models:
            model.set_attn_processor(processor())
    # 3. The UNet's weights in channels-last memory format (other convolution kernels).
    if tuning.get("channels_last"):
        pipe.unet.to(memory_format=torch.channels_last)
    # 4. The VAE decodes a batch image by image, and large images tile by tile.
    if tuning.get("vae_slicing"):
        pipe.vae.enable_slicing()
    if tuning.get("vae_tiling"):
        pipe.vae.enable_tiling()
    # 5. torch.compile of the UNet: max-autotune on a GPU (as the bench's bare loop), torch's
    # default mode on a CPU (max-autotune there costs minutes of compiling for little).
    if tuning.get("compile"):
        mode = "max-autotune" if device.startswith("cuda") else "default"
        pipe.unet = torch.compile(pipe.unet, mode=mode)
    return pipe


def applied(tuning: dict[str, Any], device: str) -> dict[str, Any]:
    """What a record's `env["pipeline"]` states: the options set, with compile's mode."""
    out = dict(tuning)
    if out.get("compile"):
        out["compile"] = "max-autotune" if device.startswith("cuda") else "default"
    return dict(sorted(out.items()))


def environment(device: str, dtype: Any) -> dict[str, Any]:
    env: dict[str, Any] = {"diffusers": dist_version("diffusers"), "torch": dist_version("torch"),
                           "transformers": dist_version("transformers"), "device": device,
                           "dtype": str(dtype).replace("torch.", "")}
    if device == "cpu":  # on a CPU, how many threads split the sums changes a few pixels
        import torch

        env["threads"] = torch.get_num_threads()
    return env


def set_scheduler(pipe: Any, name: str, original: Any) -> str:
    import diffusers

    if name == "default":
        pipe.scheduler = original
    else:
        cls = getattr(diffusers, SCHEDULER_CLASSES[name])
        pipe.scheduler = cls.from_config(original.config)
    return str(pipe.scheduler.__class__.__name__)


def generate_batch(pipe: Any, jobs: list[Job]) -> tuple[list[Any], list[bool] | None]:
    """One pipeline call for jobs that share a shape: PIL images in order, and the safety
    checker's verdict on each (None when the pipeline ran no checker)."""
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
    flags = getattr(out, "nsfw_content_detected", None)  # SD pipelines; others have no checker
    return list(out.images), None if flags is None else [bool(f) for f in flags]


# A tokenizer that states a longer limit than this has none in practice (transformers' sentinel
# for "no limit" is 1e30); text encoders read 77 (CLIP) to 512 (T5) tokens.
NO_LIMIT = 100_000
TEXTS = {"prompt": "prompt", "negative": "negative prompt"}


def truncation(tokenizer: Any, text: str) -> dict[str, Any] | None:
    """What a tokenizer drops of `text`, or None when its encoder reads all of it:
    {"tokens": how many were dropped, "limit": model_max_length, "read": the text tokens read
    (the limit less the start and end markers), "unseen": the words the model never saw}.

    `unseen` quotes the author's own words, from the first one not read in full to the end
    (counted word by word: the BPE of CLIP and the like never joins across whitespace); where
    the counts do not add up that way it falls back to the tokenizer's decoding of the dropped
    tokens, as diffusers' own warning shows them.
    """
    limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
    if not text.strip() or not 0 < limit < NO_LIMIT:
        return None
    room = limit - tokenizer.num_special_tokens_to_add()  # CLIP: 75 of 77 are text
    tokens = tokenizer.tokenize(text)
    if len(tokens) <= room:
        return None
    words = text.split()
    counts = [len(tokenizer.tokenize(word)) for word in words]
    if sum(counts) == len(tokens):
        cut, read = 0, 0
        while read + counts[cut] <= room:
            read += counts[cut]
            cut += 1
        unseen = " ".join(words[cut:])
    else:
        unseen = tokenizer.decode(tokenizer.convert_tokens_to_ids(tokens[room:])).strip()
    return {"tokens": len(tokens) - room, "limit": limit, "read": room, "unseen": unseen}


def truncations(pipe: Any, inputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """For the prompt and the negative prompt, what the pipeline's text encoders never read
    (data["truncated"]: {"prompt": {...}, "negative": {...}}, only the texts that were cut)."""
    tokenizers = [t for name in ("tokenizer", "tokenizer_2", "tokenizer_3")
                  if (t := getattr(pipe, name, None)) is not None]
    out = {}
    for field in TEXTS:
        found = [truncation(tokenizer, inputs[field]) for tokenizer in tokenizers]
        # unseen is what no encoder reads: SD3's T5 reads 256 tokens beside CLIP's 77
        if found and all(found):
            out[field] = min((f for f in found if f), key=lambda f: f["tokens"])
    return out


def log_truncation(job: Job, field: str, found: dict[str, Any]) -> None:
    """A finding, not an error: one info line naming the directive (so --strict still passes)."""
    unseen = found["unseen"]
    shown = unseen if len(unseen) <= 80 else unseen[:79] + "…"
    log.info("unmake: %s: the text encoder reads %d tokens of a %s; this one has %d more, so the "
             "model never saw «%s»", ", ".join(job.origins) or job.key[:16], found["read"],
             TEXTS[field], found["tokens"], shown)


def safety_verdict(enabled: bool, flagged: bool | None) -> dict[str, Any]:
    """data["safety"] of one image (see the module docstring)."""
    if not enabled:
        return {"checked": False, "disabled_by_config": True}
    if flagged is None:
        return {"checked": False}
    return {"checked": True, "flagged": flagged}


def png_bytes(image: Any, parameters: str) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", parameters)
    buf = io.BytesIO()
    image.save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


# Pipelines a long-lived worker keeps between runner calls (`options["keep_loaded"]`, set by
# the Ray executor's actors): (model fingerprint, device, dtype, checker, performance options)
# -> (pipe, scheduler).
_KEPT: dict[tuple[Any, ...], tuple[Any, Any]] = {}


def _pipeline(job: Job, options: dict[str, Any]) -> tuple[Any, Any, str, Any, bool]:
    """(pipeline, its own scheduler, device, dtype, checker): loaded, or kept from before."""
    device, dtype = pick_device(options.get("device", "auto"))
    checker = bool(options.get("safety_checker", True))
    tuning = job.run.get("pipeline") or {}
    key = (job.inputs["model"], device, str(dtype), checker, tuple(sorted(tuning.items())))
    if key not in _KEPT:
        pipe = load_pipeline(job, device, dtype, checker, tuning)
        if not options.get("keep_loaded"):
            return pipe, pipe.scheduler, device, dtype, checker
        _KEPT.clear()  # one pipeline at a time: a worker's memory holds one model
        _KEPT[key] = (pipe, pipe.scheduler)
    pipe, original = _KEPT[key]
    return pipe, original, device, dtype, checker


def _shape(job: Job) -> tuple[Any, ...]:
    """What one pipeline call shares."""
    i = job.inputs
    return (i["width"], i["height"], i["steps"], i["guidance"], i["scheduler"])


def split(jobs: list[Job], options: dict[str, Any]) -> list[list[Job]]:
    """The batches `run` makes of these jobs, in order: jobs of one shape, `batch_size` at a
    time. An executor that spreads batches over workers cuts them here, so every image is made
    in the very batch a local build would make it in (on some devices that changes pixels)."""
    batch_size = max(1, int(options.get("batch_size", 4)))
    batches: list[list[Job]] = []
    for _, same_shape in itertools.groupby(sorted(jobs, key=_shape), key=_shape):
        group = list(same_shape)
        batches.extend(group[i:i + batch_size] for i in range(0, len(group), batch_size))
    return batches


def run(jobs: list[Job], options: dict[str, Any]) -> Iterator[tuple[Job, Result | Exception]]:
    """Yield (job, Result) for each image, or (job, exception) for each that failed alone."""
    # 1. Load the model once for all its jobs (or take the one this worker keeps).
    pipe, original, device, dtype, checker = _pipeline(jobs[0], options)
    env = environment(device, dtype)
    if jobs[0].run.get("pipeline"):
        env["pipeline"] = applied(jobs[0].run["pipeline"], device)
    batch_size = max(1, int(options.get("batch_size", 4)))
    cut: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}  # (prompt, negative) -> cuts
    logged: set[tuple[str, str, str]] = set()  # (text, field, origins): one line per directive

    # 2. Group by everything a pipeline call shares; batch within a group (as `split` does).
    for _, same_shape in itertools.groupby(sorted(jobs, key=_shape), key=_shape):
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
                images, flags = generate_batch(pipe, batch)
                each = (time.perf_counter() - t0) / len(batch)
                done = [(job, image, None if flags is None else flags[i], each, len(batch))
                        for i, (job, image) in enumerate(zip(batch, images, strict=True))]
            except Exception:
                done = []
                for job in batch:
                    try:
                        t0 = time.perf_counter()
                        (image,), flags = generate_batch(pipe, [job])
                        done.append((job, image, None if flags is None else flags[0],
                                     time.perf_counter() - t0, 1))
                    except Exception as exc:
                        yield job, exc
            # 4. Hand each image back with its A1111 parameters, what the text encoder never
            # read, the safety checker's verdict, and the environment (with the batch it was
            # made in, so that `unmake verify --replay` can make it again the same way).
            for job, image, flagged, seconds, made_with in done:
                params = a1111.parameters(
                    job.inputs, model=job.run["model"], scheduler_class=scheduler,
                    scheduler_config=scheduler_config,
                    weights_sha256=job.run.get("weights_sha256"))
                data: dict[str, Any] = {"parameters": params, "scheduler": scheduler,
                                        "safety": safety_verdict(checker, flagged)}
                texts = (job.inputs["prompt"], job.inputs["negative"])
                if texts not in cut:
                    cut[texts] = truncations(pipe, job.inputs)
                if cut[texts]:
                    data["truncated"] = cut[texts]
                for field, found in cut[texts].items():
                    seen = (job.inputs[field], field, ",".join(job.origins))
                    if seen not in logged:
                        logged.add(seen)
                        log_truncation(job, field, found)
                yield job, Result(
                    data=data, files={"image": (png_bytes(image, params), "png")},
                    env={**env, "batch": made_with}, seconds=seconds)


run.split = split  # type: ignore[attr-defined]  # see ray_executor.split
