"""How much does `unmake build` add to generating images, and are its images the bare loop's?

Makes a throwaway zine in bench/out/generate/ with one `generate` directive of N images (prompt
variants x seeds, tiny model, batch size 4), then times, each in a fresh subprocess and each from
python start to exit (imports and model load included):

  unmake  `unmake build` of that zine with an empty store (plan, generate, store, render, site)
  bare    bench/_bare_generate.py: diffusers' AutoPipelineForText2Image on the same model, the same
          prompts, seeds, steps, guidance, size, scheduler and batches, saving PNGs

alternating, --repeat times each, and prints the medians and their ratio (target: <= 1.05), the
generation-only times measured inside each process, and whether the PNGs unmake stored decode to
the same pixels as the bare loop's.

Run: .venv/bin/python bench/bench_generate.py [--images 64] [--repeat 3] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from _util import BIN, OUT, ROOT, child_env, fresh, load_note, median, run_timed, table

TARGET = 1.05
WORDS = ("red", "green", "blue", "yellow", "orange", "purple", "black", "white")


def shape_of(images: int) -> tuple[list[str], int]:
    """Prompt variants x seeds = images: as many variants (up to 8) as divide the count."""
    variants = max(v for v in range(1, len(WORDS) + 1) if images % v == 0)
    return [f"a {w} fox in the snow" for w in WORDS[:variants]], images // variants


def write_zine(folder: Path, images: int, args: argparse.Namespace) -> list[dict]:
    """mkdocs.yml + one page; returns the jobs in the order unmake runs them."""
    prompts, seeds = shape_of(images)
    fresh(folder)
    (folder / "docs").mkdir()
    (folder / "mkdocs.yml").write_text(f"""\
site_name: bench generate
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
    template = "a {" + "|".join(WORDS[: len(prompts)]) + "} fox in the snow"
    (folder / "docs" / "index.md").write_text(f"""\
# Foxes

```generate
prompt: "{template}"
seeds: {seeds}
steps: {args.steps}
guidance: {args.guidance}
size: {args.size}
caption: {images} foxes for the benchmark.
```
""", "utf-8")
    # the directive's cells are prompts x seeds, prompt-major; the runner keeps that order
    return [{"prompt": p, "negative": "", "seed": s} for p in prompts for s in range(seeds)]


def write_bare_jobs(folder: Path, jobs: list[dict], args: argparse.Namespace) -> Path:
    sys.path.insert(0, str(ROOT))
    from generator.models import tiny_ref

    spec = {
        "path": tiny_ref().path, "device": args.device, "steps": args.steps,
        "guidance": args.guidance, "width": args.size, "height": args.size,
        "batches": [jobs[i : i + args.batch_size] for i in range(0, len(jobs), args.batch_size)],
    }
    path = folder / "bare-jobs.json"
    path.write_text(json.dumps(spec, indent=1), "utf-8")
    return path


def run_unmake(zine: Path, env: dict[str, str]) -> dict:
    for stale in (".unmake", "site"):  # a fresh store every run: everything is generated
        fresh(zine / stale)
    timed = run_timed([str(BIN / "unmake"), "build", "-f", str(zine / "mkdocs.yml")], zine, env)
    ran = re.search(r"unmake: ran (\d+) job\(s\) in ([\d.]+) s, (\d+) failed", timed.stderr)
    if not ran or ran.group(3) != "0":
        sys.stderr.write(timed.stderr)
        raise SystemExit("bench: unmake build did not run every job")
    records = [json.loads(p.read_text("utf-8"))
               for p in (zine / ".unmake" / "records").glob("*/*.json")]
    return {"wall": timed.wall, "cpu": timed.cpu, "jobs": int(ran.group(1)),
            "execute": float(ran.group(2)), "generate": sum(r["seconds"] for r in records)}


def run_bare(jobs_file: Path, out: Path, env: dict[str, str]) -> dict:
    fresh(out)
    script = Path(__file__).with_name("_bare_generate.py")
    timed = run_timed([sys.executable, str(script), str(jobs_file), str(out)], ROOT, env)
    inner = json.loads(timed.stdout.strip().splitlines()[-1])
    return {"wall": timed.wall, "cpu": timed.cpu, **inner}


def compare(zine: Path, jobs: list[dict], bare_out: Path) -> tuple[int, int, list[str]]:
    """(identical, max abs pixel difference, problems) between unmake's PNGs and the bare ones."""
    import numpy as np
    from PIL import Image

    stored = {}
    for path in (zine / ".unmake" / "records").glob("*/*.json"):
        record = json.loads(path.read_text("utf-8"))
        art = record["files"]["image"]
        blob = zine / ".unmake" / "blobs" / art["sha256"][:2] / f"{art['sha256']}.{art['ext']}"
        stored[(record["inputs"]["prompt"], record["inputs"]["seed"])] = blob
    identical, worst, problems = 0, 0, []
    for index, job in enumerate(jobs):
        blob = stored.get((job["prompt"], job["seed"]))
        if blob is None:
            problems.append(f"unmake stored no image for {job['prompt']!r} seed {job['seed']}")
            continue
        with Image.open(blob) as a, Image.open(bare_out / f"{index:04d}.png") as b:
            pa = np.asarray(a.convert("RGB"), dtype=np.int16)
            pb = np.asarray(b.convert("RGB"), dtype=np.int16)
        if pa.shape != pb.shape:
            problems.append(f"image {index}: shapes differ {pa.shape} vs {pb.shape}")
            continue
        diff = int(np.abs(pa - pb).max())
        worst = max(worst, diff)
        identical += diff == 0
    return identical, worst, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="images per run (default 64)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each side")
    parser.add_argument("--steps", type=int, default=20, help="inference steps (default 20)")
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--size", type=int, default=64, help="width = height (tiny: 64)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto", help="auto (as unmake picks), cpu, cuda…")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for both sides (default: torch's own choice)")
    args = parser.parse_args()
    if args.images < 1 or args.repeat < 1:
        parser.error("--images and --repeat must be at least 1")

    env = child_env(args.threads)
    base = OUT / "generate"
    zine, bare_out = base / "zine", base / "bare"

    # Warm-up, untimed: writes the tiny model to ~/.cache/unmake if needed, fills the OS file
    # cache and __pycache__ for both sides.
    print(f"warm-up ({args.batch_size} images each side)…", flush=True)
    warm_jobs = write_zine(base / "warm", args.batch_size, args)
    run_unmake(base / "warm", env)
    run_bare(write_bare_jobs(base / "warm", warm_jobs, args), base / "warm-bare", env)

    jobs = write_zine(zine, args.images, args)
    jobs_file = write_bare_jobs(base, jobs, args)
    unmake_runs: list[dict] = []
    bare_runs: list[dict] = []
    for i in range(args.repeat):  # alternate, and alternate who goes first
        order = ["unmake", "bare"] if i % 2 == 0 else ["bare", "unmake"]
        for side in order:
            if side == "unmake":
                unmake_runs.append(run_unmake(zine, env))
                got = unmake_runs[-1]
            else:
                bare_runs.append(run_bare(jobs_file, bare_out, env))
                got = bare_runs[-1]
            print(f"  run {i + 1} {side:6s} {got['wall']:8.2f} s wall, {got['cpu']:8.2f} s CPU, "
                  f"{got['generate']:8.2f} s generating", flush=True)

    identical, worst, problems = compare(zine, jobs, bare_out)
    for run in [*unmake_runs, *bare_runs]:  # everything but the (identical) pipeline calls
        run["outside"] = run["wall"] - run["generate"]

    def fmt(runs: list[dict], key: str) -> list[str]:
        return [f"{r[key]:.2f}" for r in runs] + [f"{median([r[key] for r in runs]):.2f}"]

    runs_h = [f"run {i + 1}" for i in range(args.repeat)]
    header = ["seconds", *runs_h, "median"]
    rows = [
        ["unmake build (wall)", *fmt(unmake_runs, "wall")],
        ["bare loop (wall)", *fmt(bare_runs, "wall")],
        ["unmake build (CPU)", *fmt(unmake_runs, "cpu")],
        ["bare loop (CPU)", *fmt(bare_runs, "cpu")],
        ["unmake: runner, load incl.", *fmt(unmake_runs, "execute")],
        ["unmake: pipeline calls", *fmt(unmake_runs, "generate")],
        ["bare: imports", *fmt(bare_runs, "import")],
        ["bare: model load", *fmt(bare_runs, "load")],
        ["bare: pipeline calls", *fmt(bare_runs, "generate")],
        ["bare: PNG saving", *fmt(bare_runs, "save")],
        ["unmake: wall - pipeline calls", *fmt(unmake_runs, "outside")],
        ["bare: wall - pipeline calls", *fmt(bare_runs, "outside")],
    ]
    prompts, seeds = shape_of(args.images)
    print()
    print(table(f"bench_generate: {args.images} images ({len(prompts)} prompts x {seeds} seeds), "
                f"tiny model, {args.steps} steps, {args.size}x{args.size}, batch size "
                f"{args.batch_size}, device {bare_runs[-1]['device']} "
                f"{bare_runs[-1]['dtype'].replace('torch.', '')}", header, rows))
    wall = median([r["wall"] for r in unmake_runs]) / median([r["wall"] for r in bare_runs])
    cpu = median([r["cpu"] for r in unmake_runs]) / median([r["cpu"] for r in bare_runs])
    gen = (median([r["generate"] for r in unmake_runs])
           / median([r["generate"] for r in bare_runs]))
    verdict = "within target" if wall <= TARGET else "ABOVE target"
    print(f"ratio unmake / bare, wall (medians): {wall:.3f}x  (target <= {TARGET}x: {verdict})")
    print(f"ratio unmake / bare, CPU (medians):  {cpu:.3f}x")
    print(f"ratio of pipeline-call time alone:   {gen:.3f}x  (the same calls with the same "
          "arguments on both sides: a difference here comes from the machine's load)")
    bare_wall = median([r["wall"] for r in bare_runs])
    added = median([r["outside"] for r in unmake_runs]) - median([r["outside"] for r in bare_runs])
    print(f"unmake adds {added:.2f} s outside the pipeline calls: with equal pipeline time the "
          f"ratio would be {(bare_wall + added) / bare_wall:.3f}x")
    print(f"identical images: {identical}/{len(jobs)}, max abs pixel difference {worst}")
    for problem in problems:
        print(f"  problem: {problem}")
    note = load_note()
    if note:
        print(f"machine: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
