"""What does recording cross-attention (`attend`) cost over generating the same image plainly?

In one process, with the tiny model loaded once (as `attend` loads it), makes --images images
one at a time (a batch of one, as `attend.maps` does), alternating plain and recording runs of
each image, and prints the medians of each, their ratio, and whether every recorded image is
bit-identical to its plain twin. (An `attend` also makes images alone where `generate` batched
them: compare bench_generate.py's per-image time for that part of its cost.)

Run: .venv/bin/python bench/bench_attend.py [--images 16] [--steps 20] [--size 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _util import ROOT, load_note, median, table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from generator.backends.attention import generate_recording, word_maps, word_tokens
    from generator.backends.diffusion import set_scheduler
    from generator.backends.img2img import pipelines
    from generator.models import Resolver
    from generator.plan import plan_site
    from generator.store import Store
    from generator.types import Context

    root = Path(tempfile.mkdtemp(prefix="bench-attend-"))
    page = (f"```generate\nprompt: \"a portrait photo of a {{doctor|nurse}}, studio light\"\n"
            f"seeds: {max(1, args.images // 2)}\nsteps: {args.steps}\nsize: {args.size}\n```\n")
    ctx = Context(root, root / "docs", Resolver({"default": "tiny"}, root),
                  Store(root / ".unmake"), {})
    jobs = plan_site({"p.md": ("docs/p.md", page)}, ctx).pages["p.md"][0].jobs[: args.images]
    pipe, _, original, device, dtype, _ = pipelines(jobs[0], {"device": args.device})
    set_scheduler(pipe, "default", original)
    generate_recording(pipe, jobs[0], record=True)  # warm-up, untimed

    plain_s, record_s, maps_s, identical = [], [], [], 0
    for n, job in enumerate(jobs):
        order = (False, True) if n % 2 == 0 else (True, False)
        made = {}
        for record in order:
            t0 = time.perf_counter()
            made[record] = generate_recording(pipe, job, record=record)
            (record_s if record else plain_s).append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        words = [w.strip(",") for w in job.inputs["prompt"].split()[3:]]
        word_maps(made[True][1], word_tokens(pipe.tokenizer, job.inputs["prompt"], words))
        maps_s.append(time.perf_counter() - t0)
        identical += bool(np.array_equal(np.asarray(made[False][0]), np.asarray(made[True][0])))

    rows = [["plain image (batch of 1)", f"{median(plain_s):.3f}", f"{sum(plain_s):.2f}"],
            ["with attention recorded", f"{median(record_s):.3f}", f"{sum(record_s):.2f}"],
            ["maps of the words", f"{median(maps_s):.4f}", f"{sum(maps_s):.2f}"]]
    print(table(f"bench_attend: {len(jobs)} images, tiny model, {args.steps} steps, "
                f"{args.size}x{args.size}, device {device} {str(dtype).replace('torch.', '')}",
                ["seconds per image", "median", "total"], rows))
    print(f"recording costs {median(record_s) / median(plain_s):.2f}x a plain image "
          f"(medians, same image, alternating)")
    print(f"bit-identical images with recording on: {identical}/{len(jobs)}")
    if note := load_note():
        print(f"machine: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
