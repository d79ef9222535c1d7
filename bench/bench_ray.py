"""Ray executor: 1 against 2 local actors, the overhead per job, and a scaling model for N GPUs.

Three sides build the same throwaway zine (`--images` images, `--steps` steps, 64×64, batch 4)
from an empty store, alternating, each in a fresh `unmake build` process:

* **local**: `executor: local` (the build's own process runs the runner);
* **ray-1**: `executor: ray` on a local cluster with one actor;
* **ray-2**: the same with two actors (`num_cpus` 2).

It reports the median wall time of each, the speed-up of two actors over one, and the overhead
per job of Ray over local ((ray-1 − local) / images: cluster start, actor start and model load
on the actor, pickling, the result's trip back). Then it measures, in this process, what bounds
scaling on the driver: the seconds the store takes to write one result of the size measured
(`Store.put`, fsync'd, as the build does), and projects the time of `--project` images on N
actors:

    T(N) = start + images / min(N / t_image, 1 / t_put)

with `start` what the ray-1 run spent on anything but image work (cluster and actor start,
model load, imports, the site build: counted as fixed, which is conservative), `t_image` the
per-image seconds the local run's records state (or `--image-seconds`, e.g. a GPU's figure), and
`t_put` the driver's store write per result: the driver writes every result, so it caps
throughput however many actors there are.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import yaml
from _util import BIN, OUT, child_env, fresh, load_note, median, run_timed, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_zine(folder: Path, images: int, steps: int, executor: str, actors: int) -> None:
    seeds = list(range(images))
    page = {"id": "bench-ray", "prompt": "a photo of a lighthouse", "seeds": seeds,
            "steps": steps, "size": [64, 64]}
    plugin = {"store": ".unmake", "batch_size": 4, "models": {"default": "tiny"},
              "executor": executor, "ray": {"address": "local", "num_cpus": actors,
                                            "actors": actors}}
    config = {"site_name": "bench ray", "theme": {"name": "material", "font": False},
              "plugins": [{"unmake": plugin}]}
    fresh(folder)
    (folder / "docs").mkdir()
    (folder / "mkdocs.yml").write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
    body = yaml.safe_dump(page, sort_keys=False, width=10_000)
    (folder / "docs" / "index.md").write_text(f"# Ray\n\n```generate\n{body}```\n", "utf-8")


def records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text("utf-8"))
            for p in sorted((folder / ".unmake" / "records").glob("*/*.json"))]


def put_seconds(size: int, count: int = 100) -> float:
    """Seconds the store takes to write one result of `size` bytes (record + blob, fsync'd)."""
    import os

    from generator.store import Result, Store

    store = Store(fresh(OUT / "ray" / "put-store"))
    t0 = time.perf_counter()
    for i in range(count):
        data = os.urandom(size)
        store.put(f"{i:064x}", {"type": "bench.put", "inputs": {"i": i}},
                  Result(data={}, files={"image": (data, "png")}))
    return (time.perf_counter() - t0) / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for every side (default: torch's own)")
    parser.add_argument("--project", type=int, default=5100,
                        help="images to project the time of (Bloomberg's audit: 5,100)")
    parser.add_argument("--image-seconds", type=float, default=None,
                        help="per-image seconds to project with (default: this run's)")
    args = parser.parse_args()

    sides = {"local": ("local", 1), "ray-1": ("ray", 1), "ray-2": ("ray", 2)}
    env = child_env(args.threads)
    walls: dict[str, list[float]] = {side: [] for side in sides}
    made: dict[str, list[dict]] = {}
    for r in range(args.repeat):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for side in order:
            executor, actors = sides[side]
            folder = OUT / "ray" / side
            write_zine(folder, args.images, args.steps, executor, actors)
            timed = run_timed([str(BIN / "unmake"), "build"], folder, env)
            walls[side].append(timed.wall)
            made[side] = records(folder)
            print(f"run {r + 1} {side}: {timed.wall:.1f} s", flush=True)

    # the images do not depend on the executor
    shas = {side: sorted(r["files"]["image"]["sha256"] for r in recs)
            for side, recs in made.items()}
    identical = shas["local"] == shas["ray-1"] == shas["ray-2"]
    local, ray1, ray2 = (median(walls[s]) for s in sides)
    t_image = args.image_seconds or statistics.median(r["seconds"] for r in made["local"])
    size = int(statistics.mean(r["files"]["image"]["bytes"] for r in made["local"]))
    overhead = (ray1 - local) / args.images
    t_put = put_seconds(size)

    rows = [[side, f"{median(walls[side]):.1f}", f"{median(walls[side]) / args.images:.2f}"]
            for side in sides]
    print()
    print(table(f"{args.images} images, {args.steps} steps, 64×64 ({load_note()})",
                ["side", "wall s", "s / image"], rows))
    print(f"speed-up of 2 actors over 1: {ray1 / ray2:.2f}x; Ray's overhead over local: "
          f"{overhead:+.2f} s per job; images identical across executors: {identical}")
    print(f"measured: {t_image:.3f} s per image (records), {size} bytes per result, "
          f"{t_put * 1000:.1f} ms per store write on the driver")

    # the scaling model: what is not image work at this size is counted as fixed (cluster,
    # actors, model load, imports, the site build: conservative, as some of it grows with jobs)
    start = max(0.0, ray1 - args.images * t_image)
    rows = []
    for n in (1, 2, 4, 8, 16, 64, 256):
        by_actors, by_driver = n / t_image, 1 / t_put
        total = start + args.project / min(by_actors, by_driver)
        rows.append([str(n), f"{total / 60:.1f}", f"{min(by_actors, by_driver):.1f}",
                     "actors" if by_actors < by_driver else "the driver's store writes"])
    print()
    print(table(f"projected: {args.project} images at {t_image:.3f} s each, fixed {start:.0f} s",
                ["actors", "minutes", "images/s", "bound by"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
