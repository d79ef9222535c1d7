"""How much does the `measure` directive add to scoring images with CLIP by hand?

Makes (once) N images with the built-in tiny model — a throwaway zine in bench/out/measure/
with one `generate` of 64 prompt variants x N/64 seeds, built with `python -m generator.cli
build` into a store kept in bench/out/measure/store/ — then times, in this one process,
alternating (and alternating which goes first), --repeat times each:

  measure  a `measure` directive `of:` that grid with one `clip:` label set of 3 labels, run
           through the real path: a fresh copy of the store holding only the images (hard
           links), the site planned by the plugin as `unmake plan` does (untimed), then
           `generator.execute.execute` on that plan (timed): its missing jobs are exactly the
           measure jobs (256 `measure.embed` + 1 `measure.text` for the label set), stored as a
           build stores them
  bare     bench/_bare_measure.py: open_clip's create_model_and_transforms on the same weight
           file, the same PNGs read with PIL, preprocessed, `encode_image` in batches of the same
           size, the 3 label prompts encoded once, softmax; nothing stored

Model load is included on both sides (unmake's per-build model cache is emptied before each
run, as a new build finds it); imports are not (both are warm after an untimed warm-up of each
side). Prints the medians, their ratio (target <= 1.05), images/s, the machine, whether the two
sides agree on every probability (unmake's computed, as its figure does, from the stored
embeddings), and writes everything to bench/out/measure.json.

Run: .venv/bin/python bench/bench_measure.py [--images 256] [--repeat 5] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from _util import BIN, OUT, ROOT, child_env, fresh, load_note, median, run_timed, table

sys.path.insert(0, str(ROOT))

TARGET = 1.05
COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "black", "white")
ANIMALS = ("fox", "cat", "dog", "owl", "hare", "crow", "deer", "bear")
LABELS = ["a man", "a woman", "a person"]
TEMPLATE = "a portrait photo of {}"
BASE = OUT / "measure"


def shape_of(images: int) -> tuple[str, int, int]:
    """(prompt template, variants, seeds): as many variants (colour x animal, up to 8 x 8) as
    divide the count, the rest seeds."""
    colours, animals = max(((c, a) for c in range(1, 9) for a in range(1, 9)
                            if images % (c * a) == 0), key=lambda ca: (ca[0] * ca[1], ca[0]))

    def choice(words: tuple[str, ...]) -> str:
        return words[0] if len(words) == 1 else "{" + "|".join(words) + "}"

    template = f"a {choice(COLOURS[:colours])} {choice(ANIMALS[:animals])} in the snow"
    return template, colours * animals, images // (colours * animals)


def write_zine(folder: Path, args: argparse.Namespace, store: str, measure: bool) -> None:
    """mkdocs.yml + one page: the grid, and (when `measure`) the directive that scores it."""
    template, _, seeds = shape_of(args.images)
    fresh(folder)
    (folder / "docs").mkdir()
    (folder / "mkdocs.yml").write_text(f"""\
site_name: bench measure
docs_dir: docs
site_dir: site
theme:
  name: material
  font: false
plugins:
  - unmake:
      store: {store}
      batch_size: 8
      device: {args.device}
      clip_batch_size: {args.batch_size}
      models:
        default: tiny
""", "utf-8")
    page = f"""\
# Animals

```generate
id: grid
prompt: "{template}"
seeds: {seeds}
steps: {args.steps}
size: {args.size}
caption: {args.images} animals for the benchmark.
```
"""
    if measure:
        page += f"""
```measure
of: grid
by: {"seed" if seeds > 1 else "prompt"}
clip:
  gender: {{labels: {json.dumps(LABELS)}, template: "{TEMPLATE}"}}
caption: What the tiny CLIP reads in them.
```
"""
    (folder / "docs" / "index.md").write_text(page, "utf-8")


def make_images(args: argparse.Namespace) -> str:
    """Generate the grid into the kept store (a no-op when it already holds it)."""
    folder = BASE / "generate"
    write_zine(folder, args, "../store", measure=False)
    timed = run_timed([str(BIN / "python"), "-m", "generator.cli", "build", "-f",
                       str(folder / "mkdocs.yml")], ROOT, child_env(None))
    said = [line for line in timed.stderr.splitlines() if "unmake: " in line]
    return f"{said[-1].split('unmake: ', 1)[1] if said else 'built'} ({timed.wall:.1f} s)"


def plan_measure(zine: Path) -> tuple[object, object, dict]:
    """A fresh store of images only, and the plugin's plan of the zine: (plan, store, options).

    The store is a copy made of hard links (records and blobs are immutable and replaced, never
    rewritten, so the kept store is never touched); every measure job is missing from it."""
    from mkdocs.config import load_config
    from mkdocs.structure.files import get_files

    from generator.execute import run_options

    work = BASE / "work-store"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(BASE / "store", work, copy_function=os.link)
    config = load_config(str(zine / "mkdocs.yml"))
    plugin = config.plugins["unmake"]
    plugin.command = "plan"  # as `unmake plan` does: nothing is built, site_dir stays put
    config = config.plugins.on_config(config)
    plan = plugin.make_plan(get_files(config))
    types = sorted({job.type for job in plan.missing})
    if types != ["measure.embed", "measure.text"]:
        raise SystemExit(f"bench: expected only measure jobs to run, the plan has {types}")
    return plan, plugin.ctx.store, run_options(dict(plugin.config))


def run_measure(zine: Path, profile: Path | None = None) -> dict:
    import generator.backends.clip as clip_backend
    from generator.execute import execute

    plan, store, options = plan_measure(zine)
    clip_backend._LOADED.clear()  # a new build loads the model: so does every timed run
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    with contextlib.redirect_stderr(io.StringIO()):  # the progress bar
        cpu0, t0 = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        failures = execute(plan, store, options)
        if profiler:
            profiler.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if failures:
        raise SystemExit(f"bench: {len(failures)} measure job(s) failed, e.g. "
                         f"{next(iter(failures.values()))}")
    if profiler and profile:
        profiler.dump_stats(profile)
    seconds = {"measure.embed": 0.0, "measure.text": 0.0}
    for job in plan.missing:
        seconds[job.type] += store.get(job.key)["seconds"]
    return {"wall": wall, "cpu": cpu, "jobs": len(plan.missing), "embed": seconds["measure.embed"],
            "text": seconds["measure.text"], "plan": plan, "store": store,
            "options": options}


def image_paths(plan: object) -> list[Path]:
    """The PNGs the measure jobs read, in the order they read them (from the kept store)."""
    from generator.store import Store

    base = Store(BASE / "store")
    return [base.file(base.get(job.inputs["image"]), "image")
            for job in plan.missing if job.type == "measure.embed"]


def run_bare(paths: list[Path], args: argparse.Namespace, device: str) -> dict:
    from _bare_measure import score

    from generator.backends.clip import ensure_tiny_clip
    from generator.clipmodels import tiny_clip_ref

    ref = tiny_clip_ref()
    ensure_tiny_clip(ref)  # the weights file and its open_clip architecture (registered once)
    prompts = [TEMPLATE.replace("{}", label) for label in LABELS]
    cpu0 = time.process_time()
    probs, times = score(paths, ref.arch, ref.path, prompts, args.batch_size, device)
    return {"wall": times["total"], "cpu": time.process_time() - cpu0, **times, "probs": probs}


def compare(measured: dict, probs: object) -> tuple[int, int, float]:
    """(same top label, images, max abs probability difference) between the two sides: unmake's
    probabilities computed as its figure computes them, from the stored embeddings."""
    import numpy as np

    from generator.instruments.vectors import decode_vector, probabilities

    plan, store = measured["plan"], measured["store"]
    (text,) = [store.get(job.key)["data"] for job in plan.missing if job.type == "measure.text"]
    # image_paths lists the embed jobs in this order: row i of the bare side is job i here
    embeds = [store.get(job.key)["data"] for job in plan.missing if job.type == "measure.embed"]
    ours = probabilities(np.stack([decode_vector(d["embedding"]) for d in embeds]),
                         np.stack([decode_vector(v) for v in text["embeddings"]]),
                         text["logit_scale"])
    bare = np.asarray(probs, dtype=np.float64)
    same = int((ours.argmax(axis=1) == bare.argmax(axis=1)).sum())
    return same, len(embeds), float(np.abs(ours - bare).max())


def profile_rows(path: Path) -> list[list[str]]:
    """Where one profiled measure run spent its time: the store's writes against the work."""
    import pstats

    stats = pstats.Stats(str(path)).stats

    def cum(where: str, func: str) -> tuple[float, int]:
        hits = [v for k, v in stats.items() if k[0].endswith(where) and k[2] == func]
        return sum(v[3] for v in hits), sum(v[1] for v in hits)

    def called_by(func: str, where: str, caller: str) -> float:
        """Seconds `func` spent when called from `caller` (in a file ending with `where`)."""
        return sum(t[3] for k, v in stats.items() if k[2] == func
                   for c, t in v[4].items() if c[0].endswith(where) and c[2] == caller)

    total, _ = cum("generator/execute.py", "execute")
    put, records = cum("generator/store.py", "put")
    write, files = cum("generator/store.py", "write_atomic")
    fsync, _ = cum("~", "<built-in method posix.fsync>")
    create = called_by("<built-in method io.open>", "generator/store.py", "_write")
    mkdir = called_by("mkdir", "generator/store.py", "_folder")
    folders = sum(t[1] for k, v in stats.items() if k[2] == "mkdir"
                  for c, t in v[4].items() if c[0].endswith("generator/store.py"))
    dumps, _ = cum("json/__init__.py", "dumps")
    load, _ = cum("generator/backends/clip.py", "load")
    embed, _ = cum("generator/backends/clip.py", "embed_images")
    encode, vectors = cum("generator/instruments/vectors.py", "encode_vector")
    # the first CLIP runner loads the model (here the text one: it needs no image); load has
    # its own row
    text = cum("generator/backends/clip.py", "run_text")[0] - called_by(
        "_loaded", "generator/backends/clip.py", "run_text")
    reads = sum(called_by(f, "generator/backends/clip.py", "run_embed")  # PIL: open + decode
                for f in ("open", "convert"))
    rest = total - put - load - embed - encode - text - reads
    return [
        ["execute, in all", f"{total:.3f}", "100 %"],
        [f"Store.put: {records} records, {files} files", f"{put:.3f}", f"{put / total:.0%}"],
        [f"  write_atomic x {files} (mkdir, create, write, fsync, rename)", f"{write:.3f}",
         f"{write / total:.0%}"],
        ["    of which creating the temporary file (open)", f"{create:.3f}",
         f"{create / total:.0%}"],
        ["    of which os.fsync", f"{fsync:.3f}", f"{fsync / total:.0%}"],
        [f"    of which mkdir of the folders (x {folders}: once per folder)", f"{mkdir:.3f}",
         f"{mkdir / total:.0%}"],
        ["  json.dumps of the records (indent=1: the pure-Python encoder)", f"{dumps:.3f}",
         f"{dumps / total:.0%}"],
        ["CLIP model load (backends.clip.load)", f"{load:.3f}", f"{load / total:.0%}"],
        ["preprocess + encode_image (embed_images)", f"{embed:.3f}", f"{embed / total:.0%}"],
        ["reading the PNGs (Image.open + convert in run_embed)", f"{reads:.3f}",
         f"{reads / total:.0%}"],
        [f"base64 of the embeddings (encode_vector x {vectors})", f"{encode:.3f}",
         f"{encode / total:.0%}"],
        ["measure.text runner (the label prompts, once)", f"{text:.3f}",
         f"{text / total:.0%}"],
        ["the rest (dispatch, the store's reads, progress bar)", f"{rest:.3f}",
         f"{rest / total:.0%}"],
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256, help="images scored (default 256)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each side")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="images per CLIP forward pass, both sides (unmake: clip_batch_size)")
    parser.add_argument("--steps", type=int, default=2, help="steps of the tiny image model")
    parser.add_argument("--size", type=int, default=64, help="image width = height")
    parser.add_argument("--device", default="auto", help="auto (as unmake picks), cpu, cuda…")
    # One thread by default: with torch's own choice (one per core) on a small machine, another
    # process taking a core made the same encode_image calls take 1.4-2.7 s instead of 0.03 s
    # (OpenMP threads waiting for each other), which swamps what this benchmark measures.
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both sides (default 1; 0: torch's own choice)")
    parser.add_argument("--profile", action="store_true",
                        help="one more measure run under cProfile: bench/out/measure.prof")
    args = parser.parse_args()
    if args.images < 2 or args.repeat < 1 or args.batch_size < 1 or args.threads < 0:
        parser.error("--images must be at least 2, --repeat and --batch-size at least 1, "
                     "--threads at least 0")

    import torch

    from generator.backends.diffusion import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device, _ = pick_device(args.device)
    device = "cpu" if device == "mps" else device  # as unmake's CLIP runner does

    # 1. The images, once (kept in bench/out/measure/store/ for later runs).
    _, variants, seeds = shape_of(args.images)
    print(f"images: {variants} prompts x {seeds} seeds, {args.size}x{args.size}, {args.steps} "
          f"steps: {make_images(args)}", flush=True)
    zine = BASE / "zine"
    write_zine(zine, args, "../work-store", measure=True)

    # 2. Warm-up, untimed: imports, the tokenizer's vocabulary, the page cache, both sides.
    warm = run_measure(zine)
    paths = image_paths(warm["plan"])
    run_bare(paths, args, device)
    if warm["options"].get("clip_batch_size") != args.batch_size:  # both sides must batch alike
        print(f"note: the runners were handed clip_batch_size "
              f"{warm['options'].get('clip_batch_size')!r}, not {args.batch_size}: "
              "generator/execute.py:run_options does not pass mkdocs.yml's value", flush=True)

    # 3. Alternate the sides, and which goes first.
    runs: dict[str, list[dict]] = {"measure": [], "bare": []}
    for i in range(args.repeat):
        for side in (("measure", "bare") if i % 2 == 0 else ("bare", "measure")):
            got = run_measure(zine) if side == "measure" else run_bare(paths, args, device)
            runs[side].append(got)
            print(f"  run {i + 1} {side:7s} {got['wall']:7.3f} s wall, {got['cpu']:7.3f} s CPU",
                  flush=True)
    same, total, worst = compare(runs["measure"][-1], runs["bare"][-1]["probs"])

    # 4. The summary.
    def col(side: str, key: str) -> list[str]:
        values = [r[key] for r in runs[side]]
        return [f"{v:.3f}" for v in values] + [f"{median(values):.3f}"]

    rows = [
        ["measure: execute (wall)", *col("measure", "wall")],
        ["bare loop (wall)", *col("bare", "wall")],
        ["measure: execute (CPU)", *col("measure", "cpu")],
        ["bare loop (CPU)", *col("bare", "cpu")],
        ["measure: records' seconds, embed", *col("measure", "embed")],
        ["measure: records' seconds, text", *col("measure", "text")],
        ["bare: model load", *col("bare", "load")],
        ["bare: PNG read + preprocess", *col("bare", "read")],
        ["bare: encode_image", *col("bare", "encode")],
    ]
    n = len(paths)
    print()
    print(table(f"bench_measure: {n} images ({variants} prompts x {seeds} seeds, {args.size}px), "
                f"tiny-clip, 1 label set of {len(LABELS)}, batch {args.batch_size}, device "
                f"{device}, {torch.get_num_threads()} torch thread(s)",
                ["seconds", *[f"run {i + 1}" for i in range(args.repeat)], "median"], rows))
    wall = {s: median([r["wall"] for r in runs[s]]) for s in runs}
    cpu = {s: median([r["cpu"] for r in runs[s]]) for s in runs}
    best = {s: min(r["wall"] for r in runs[s]) for s in runs}
    ratio, cpu_ratio = wall["measure"] / wall["bare"], cpu["measure"] / cpu["bare"]
    verdict = "within target" if ratio <= TARGET else "ABOVE target"
    print(f"ratio measure / bare, wall (medians): {ratio:.3f}x  (target <= {TARGET}x: {verdict})")
    print(f"ratio measure / bare, CPU (medians):  {cpu_ratio:.3f}x")
    print(f"ratio measure / bare, fastest runs:   {best['measure'] / best['bare']:.3f}x  "
          "(the least disturbed by other work on the machine)")
    spread = {s: max(r["wall"] for r in runs[s]) / best[s] for s in runs}
    if max(spread.values()) > 1.5:
        print(f"note: the runs of one side differ by up to {max(spread.values()):.1f}x: other work "
              "on the machine; the fastest-run ratio is the steadier figure")
    print(f"images/s: measure {n / wall['measure']:.0f}, bare {n / wall['bare']:.0f} "
          f"(model load included)")
    print(f"same top label: {same}/{total}, max abs probability difference {worst:.2e} "
          "(unmake's from its stored float32 embeddings, as its figure computes them)")
    note = load_note()
    machine = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "device": device, "platform": platform.platform(), "python":
               platform.python_version(), "torch": torch.__version__, "load": note}
    print(f"machine: {note or f'{os.cpu_count()} CPU(s)'}, torch {torch.__version__}")

    profile = None
    if args.profile:
        prof = OUT / "measure.prof"
        profiled = run_measure(zine, profile=prof)
        profile = profile_rows(prof)
        print()
        print(table(f"one more measure run under cProfile: {profiled['wall']:.3f} s wall "
                    f"(saved to {prof.relative_to(ROOT)}; python -m pstats to read further)",
                    ["where the time goes", "seconds", "share"], profile))

    for side in runs.values():
        for run in side:
            for key in ("plan", "store", "options", "probs"):
                run.pop(key, None)
    (OUT / "measure.json").write_text(json.dumps({
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "images": n, "prompts": variants, "seeds": seeds, "size": args.size,
        "steps": args.steps, "labels": LABELS, "template": TEMPLATE,
        "batch_size": args.batch_size, "repeat": args.repeat, "model_load": "included",
        "machine": machine, "runs": runs, "median_wall": wall, "median_cpu": cpu,
        "ratio_wall": ratio, "ratio_cpu": cpu_ratio, "target": TARGET,
        "ratio_fastest": best["measure"] / best["bare"], "profile": profile,
        "images_per_s": {s: n / wall[s] for s in wall},
        "agreement": {"same_top": same, "of": total, "max_abs_prob_diff": worst},
    }, indent=1), "utf-8")
    print(f"wrote {(OUT / 'measure.json').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
