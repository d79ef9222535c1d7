"""The bare diffusers loop that bench_generate.py times against `unmake build`.

Usage: python bench/_bare_generate.py JOBS.json OUT_DIR

JOBS.json: {"path", "device", "steps", "guidance", "width", "height", "batches": [[{"prompt",
"negative", "seed"}, ...], ...]}. Writes OUT_DIR/NNNN.png in job order and prints one JSON line
of in-process timings. Nothing from unmake is imported: this is what a person would write by hand,
with the call arguments of generator/backends/diffusion.py:generate_batch.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

t_start = time.perf_counter()

import torch  # noqa: E402
from diffusers import AutoPipelineForText2Image  # noqa: E402


def pick_device(requested: str) -> tuple[str, torch.dtype]:
    if requested != "auto":
        return requested, torch.float16 if requested.startswith("cuda") else torch.float32
    if torch.cuda.is_available():
        return "cuda", torch.float16
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps", torch.float32
    return "cpu", torch.float32


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text("utf-8"))
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    t_imported = time.perf_counter()

    device, dtype = pick_device(spec["device"])
    pipe = AutoPipelineForText2Image.from_pretrained(
        spec["path"], dtype=dtype, local_files_only=True, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    t_loaded = time.perf_counter()

    generate = save = 0.0
    index = 0
    for batch in spec["batches"]:
        t0 = time.perf_counter()
        generators = [torch.Generator("cpu").manual_seed(job["seed"]) for job in batch]
        with torch.inference_mode():
            images = pipe(
                prompt=[job["prompt"] for job in batch],
                negative_prompt=[job["negative"] for job in batch],
                num_inference_steps=spec["steps"],
                guidance_scale=spec["guidance"],
                width=spec["width"],
                height=spec["height"],
                generator=generators,
            ).images
        t1 = time.perf_counter()
        for image in images:
            image.save(out / f"{index:04d}.png")
            index += 1
        generate += t1 - t0
        save += time.perf_counter() - t1

    print(json.dumps({"import": t_imported - t_start, "load": t_loaded - t_imported,
                      "generate": generate, "save": save, "images": index,
                      "device": device, "dtype": str(dtype)}))


if __name__ == "__main__":
    main()
