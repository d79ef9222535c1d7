"""How much does `unmake build` add to a bare image-to-image loop, and are the images the same?

Makes a throwaway zine in bench/out/iterate/ with a `generate` of N start images (N prompt
variants, seed 0) and an `iterate` of R rounds of them (img2img, strength 0.5), tiny model,
batch size 4, then times, each in a fresh subprocess, from python start to exit:

  unmake  `unmake build` of that zine with an empty store (N + N x R jobs, rounds chained by key)
  bare    bench/_bare_iterate.py: the same start images and rounds with diffusers'
          AutoPipelineForImage2Image.from_pipe, the same prompts, seeds, steps and batches

alternating, --repeat times each; prints the medians and their ratio (target: <= 1.05) and
whether every round's image unmake stored is the bare loop's, pixel for pixel.

Run: .venv/bin/python bench/bench_iterate.py [--images 8] [--rounds 8] [--repeat 3] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from _util import BIN, OUT, ROOT, child_env, fresh, load_note, median, run_timed, table

TARGET = 1.05
WORDS = ("red", "green", "blue", "yellow", "orange", "purple", "black", "white", "grey", "pink")


def write(base: Path, args: argparse.Namespace) -> tuple[Path, Path, list[str]]:
    """The zine and the bare loop's spec; the prompts in path order."""
    prompts = [f"a {w} fox in the snow" for w in WORDS[: args.images]]
    zine = fresh(base / "zine")
    (zine / "docs").mkdir()
    (zine / "mkdocs.yml").write_text(f"""\
site_name: bench iterate
docs_dir: docs
site_dir: site
theme:
  name: material
  font: false
plugins:
  - unmake:
      store: .unmake
      batch_size: {args.batch_size}
      device: {args.device}
      models:
        default: tiny
""", "utf-8")
    (zine / "docs" / "index.md").write_text(f"""\
# Foxes, again and again

```generate
id: foxes
prompt: "a {{{'|'.join(WORDS[: args.images])}}} fox in the snow"
seeds: [0]
steps: {args.steps}
size: {args.size}
```

```iterate
of: foxes
rounds: {args.rounds}
strength: {args.strength}
steps: {args.steps}
```
""", "utf-8")
    sys.path.insert(0, str(ROOT))
    from generator.models import tiny_ref

    spec = base / "bare.json"
    spec.write_text(json.dumps({
        "path": tiny_ref().path, "device": args.device, "steps": args.steps, "guidance": 7.5,
        "size": args.size, "strength": args.strength, "rounds": args.rounds,
        "batch_size": args.batch_size, "seed": 0,
        "starts": [{"prompt": p, "seed": 0} for p in prompts]}), "utf-8")
    return zine, spec, prompts


def run_unmake(zine: Path, env: dict[str, str]) -> dict:
    for stale in (".unmake", "site"):
        fresh(zine / stale)
    timed = run_timed([str(BIN / "unmake"), "build", "-f", str(zine / "mkdocs.yml")], zine, env)
    ran = re.search(r"unmake: ran (\d+) job\(s\) in ([\d.]+) s .*, (\d+) failed", timed.stderr)
    if not ran or ran.group(3) != "0":
        sys.stderr.write(timed.stderr)
        raise SystemExit("bench: unmake build did not run every job")
    records = [json.loads(p.read_text("utf-8"))
               for p in (zine / ".unmake" / "records").glob("*/*.json")]
    return {"wall": timed.wall, "cpu": timed.cpu, "jobs": int(ran.group(1)),
            "generate": sum(r["seconds"] for r in records)}


def run_bare(spec: Path, out: Path, env: dict[str, str]) -> dict:
    fresh(out)
    timed = run_timed([sys.executable, str(Path(__file__).with_name("_bare_iterate.py")),
                       str(spec), str(out)], ROOT, env)
    return {"wall": timed.wall, "cpu": timed.cpu,
            **json.loads(timed.stdout.strip().splitlines()[-1])}


def compare(zine: Path, prompts: list[str], rounds: int, bare: Path) -> tuple[int, int]:
    """(identical images, images compared): unmake's chain of each path against the bare one."""
    import numpy as np
    from PIL import Image

    records = {}
    for path in (zine / ".unmake" / "records").glob("*/*.json"):
        record = json.loads(path.read_text("utf-8"))
        records[record["key"]] = record
    blobs = zine / ".unmake" / "blobs"

    def pixels(record: dict) -> np.ndarray:
        art = record["files"]["image"]
        with Image.open(blobs / art["sha256"][:2] / f"{art['sha256']}.{art['ext']}") as im:
            return np.asarray(im.convert("RGB"))

    identical = compared = 0
    for p, prompt in enumerate(prompts):
        [start] = [r for r in records.values()
                   if r["type"] == "generate.image" and r["inputs"]["prompt"] == prompt]
        chain = [start]
        for _ in range(rounds):
            chain += [r for r in records.values() if r["type"] == "iterate.image"
                      and r["inputs"]["needs"] == [chain[-1]["key"]]]
        for r, record in enumerate(chain):
            with Image.open(bare / f"{p}-{r}.png") as im:
                identical += bool(np.array_equal(pixels(record), np.asarray(im.convert("RGB"))))
            compared += 1
    return identical, compared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8, help="start images (1-10, default 8)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if not 1 <= args.images <= len(WORDS) or args.rounds < 1 or args.repeat < 1:
        parser.error("--images must be 1-10, --rounds and --repeat at least 1")
    env = child_env(args.threads)
    base = OUT / "iterate"
    zine, spec, prompts = write(base, args)
    print("warm-up…", flush=True)
    run_unmake(zine, env)
    run_bare(spec, base / "bare", env)
    unmake_runs: list[dict] = []
    bare_runs: list[dict] = []
    for i in range(args.repeat):
        for side in (["unmake", "bare"] if i % 2 == 0 else ["bare", "unmake"]):
            got = run_unmake(zine, env) if side == "unmake" else run_bare(spec, base / "bare", env)
            (unmake_runs if side == "unmake" else bare_runs).append(got)
            print(f"  run {i + 1} {side:6s} {got['wall']:8.2f} s wall, {got['cpu']:8.2f} s CPU, "
                  f"{got['generate']:8.2f} s in pipeline calls", flush=True)
    identical, compared = compare(zine, prompts, args.rounds, base / "bare")

    def fmt(runs: list[dict], key: str) -> list[str]:
        return [f"{r[key]:.2f}" for r in runs] + [f"{median([r[key] for r in runs]):.2f}"]

    header = ["seconds", *(f"run {i + 1}" for i in range(args.repeat)), "median"]
    rows = [["unmake build (wall)", *fmt(unmake_runs, "wall")],
            ["bare loop (wall)", *fmt(bare_runs, "wall")],
            ["unmake build (CPU)", *fmt(unmake_runs, "cpu")],
            ["bare loop (CPU)", *fmt(bare_runs, "cpu")],
            ["unmake: pipeline calls", *fmt(unmake_runs, "generate")],
            ["bare: pipeline calls", *fmt(bare_runs, "generate")]]
    print()
    print(table(f"bench_iterate: {args.images} start images x {args.rounds} rounds of img2img, "
                f"tiny model, {args.steps} steps, strength {args.strength}, {args.size}x"
                f"{args.size}, batch size {args.batch_size}, device {bare_runs[-1]['device']}",
                header, rows))
    wall = median([r["wall"] for r in unmake_runs]) / median([r["wall"] for r in bare_runs])
    cpu = median([r["cpu"] for r in unmake_runs]) / median([r["cpu"] for r in bare_runs])
    print(f"ratio unmake / bare, wall (medians): {wall:.3f}x  (target <= {TARGET}x: "
          f"{'within target' if wall <= TARGET else 'ABOVE target'})")
    print(f"ratio unmake / bare, CPU (medians):  {cpu:.3f}x")
    print(f"identical images (starts and every round): {identical}/{compared}")
    if note := load_note():
        print(f"machine: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
