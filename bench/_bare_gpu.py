"""The best plain diffusers loop that bench_gpu.py times `unmake build` against.

Usage: python bench/_bare_gpu.py SPEC.json. SPEC: {"path", "steps", "size", "images",
"compile", "batch_sizes"}. For each batch size: one untimed warm-up batch, then `images` images
in batches of that size, one CPU generator per image (as unmake seeds them). Prints one JSON
line: {"by_batch": [{"batch", "images_per_s"}, ...], "load_s"}. Nothing from unmake is imported.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from diffusers import AutoPipelineForText2Image


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text("utf-8"))
    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.float16) if cuda else ("cpu", torch.float32)
    t0 = time.perf_counter()
    pipe = AutoPipelineForText2Image.from_pretrained(
        spec["path"], dtype=dtype, local_files_only=True, use_safetensors=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    pipe.unet.to(memory_format=torch.channels_last)  # SDPA attention is torch's default
    if spec["compile"]:
        pipe.unet = torch.compile(pipe.unet, mode="max-autotune", fullgraph=True)
    load_s = time.perf_counter() - t0

    def run(batch: int, seeds: list[int]) -> None:
        pipe(prompt=["a photo of a lighthouse at dusk"] * batch, negative_prompt=[""] * batch,
             num_inference_steps=spec["steps"], guidance_scale=7.5, width=spec["size"],
             height=spec["size"],
             generator=[torch.Generator("cpu").manual_seed(s) for s in seeds])

    results = []
    for batch in spec["batch_sizes"]:
        run(batch, list(range(batch)))  # warm-up (and compilation)
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        made = 0
        while made < spec["images"]:
            n = min(batch, spec["images"] - made)
            run(n, list(range(made, made + n)))
            made += n
        if cuda:
            torch.cuda.synchronize()
        results.append({"batch": batch, "images_per_s": made / (time.perf_counter() - start)})
    print(json.dumps({"by_batch": results, "load_s": load_s}))


if __name__ == "__main__":
    main()
