"""The bare diffusers loop that bench_iterate.py times against `unmake build`.

Usage: python bench/_bare_iterate.py SPEC.json OUT_DIR

SPEC.json: {"path", "device", "steps", "guidance", "size", "strength", "rounds", "batch_size",
"starts": [{"prompt", "seed"}, ...], "seed"}. Generates the start images (batches, one seeded
CPU generator per image), then `rounds` rounds of image-to-image on every path with a pipeline
made by `AutoPipelineForImage2Image.from_pipe`, each image with a CPU generator seeded with
`seed`, as generator/backends/img2img.py:run_image calls it. Writes OUT_DIR/P-R.png (path P,
round R; round 0 the start) and prints one JSON line of in-process timings. Nothing from unmake
is imported.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

t_start = time.perf_counter()

import torch  # noqa: E402
from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image  # noqa: E402


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text("utf-8"))
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    t_imported = time.perf_counter()
    device = spec["device"] if spec["device"] != "auto" else (
        "cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    text2image = AutoPipelineForText2Image.from_pretrained(
        spec["path"], dtype=dtype, local_files_only=True, use_safetensors=True).to(device)
    text2image.set_progress_bar_config(disable=True)
    image2image = AutoPipelineForImage2Image.from_pipe(text2image)
    image2image.set_progress_bar_config(disable=True)
    t_loaded = time.perf_counter()

    starts, size, n = spec["starts"], spec["size"], spec["batch_size"]
    generate = save = 0.0
    images = []
    for i in range(0, len(starts), n):  # the start images, as `generate` makes them
        batch = starts[i:i + n]
        t0 = time.perf_counter()
        with torch.inference_mode():
            images += text2image(
                prompt=[s["prompt"] for s in batch], negative_prompt=[""] * len(batch),
                num_inference_steps=spec["steps"], guidance_scale=spec["guidance"],
                width=size, height=size,
                generator=[torch.Generator("cpu").manual_seed(s["seed"]) for s in batch]).images
        generate += time.perf_counter() - t0
    for r in range(spec["rounds"] + 1):
        if r:  # one round of every path, in batches
            made = []
            for i in range(0, len(images), n):
                t0 = time.perf_counter()
                with torch.inference_mode():
                    made += image2image(
                        prompt=[s["prompt"] for s in starts[i:i + n]],
                        negative_prompt=[""] * len(images[i:i + n]), image=images[i:i + n],
                        strength=spec["strength"], num_inference_steps=spec["steps"],
                        guidance_scale=spec["guidance"],
                        generator=[torch.Generator("cpu").manual_seed(spec["seed"])
                                   for _ in images[i:i + n]]).images
                generate += time.perf_counter() - t0
            images = made
        t0 = time.perf_counter()
        for p, image in enumerate(images):
            image.save(out / f"{p}-{r}.png")
        save += time.perf_counter() - t0
    print(json.dumps({"import": t_imported - t_start, "load": t_loaded - t_imported,
                      "generate": generate, "save": save,
                      "images": len(starts) * (1 + spec["rounds"]), "device": device,
                      "dtype": str(dtype)}))


if __name__ == "__main__":
    main()
