"""Replay stored images: make a seeded sample of them again, here, and compare the pixels.

`unmake verify --replay 0.1` picks a seeded random tenth of the `generate.image` records, turns
each back into its job (type, inputs and how to run it, as the record holds them), runs those
through the same runner a build uses, and compares each new image with the stored PNG, pixel by
pixel. Nothing is written to the store.

Where the record was made with this machine's device, dtype and library versions, the replay
must be bit-exact. The batch an image was made in is part of that: CPU and GPU kernels round
differently for different batch sizes (with the tiny model on a CPU, 1 or 3 images per call give
pixels one level off those of 2 or 4). The image is replayed in a batch of the size the record
states, or, where it does not, of the configured batch size and then each smaller one (the last
batch of a group is smaller); the first size that reproduces the image is reported. Where the
environment differs, the replay must come within TOLERANCE, and says what differs.
"""

from __future__ import annotations

import io
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .execute import runner_for
from .store import Result, Store, StoreView
from .types import Job

REPLAYED = "generate.image"
# what must match the record for a bit-exact replay
ENVIRONMENT = ("device", "dtype", "torch", "diffusers", "transformers")
# elsewhere: the mean absolute difference allowed, in levels of 255 (fp16 on a GPU against fp32
# on a CPU moves a level or two on average)
TOLERANCE = 4.0


@dataclass
class Replayed:
    """One replayed image and how it compared."""

    record: dict[str, Any]
    path: Path  # its record file
    status: str = "not replayed"  # bit-exact | within tolerance | beyond tolerance | differs |
    detail: str = ""  #              could not replay
    sizes: list[int] = field(default_factory=list)  # the batch sizes it was replayed in

    @property
    def ok(self) -> bool:
        return self.status in ("bit-exact", "within tolerance")

    @property
    def line(self) -> str:
        return f"{self.path}: replay {self.status}: {self.detail}"


@dataclass
class Report:
    replayed: list[Replayed] = field(default_factory=list)
    total: int = 0  # stored images sampled from

    @property
    def problems(self) -> list[str]:
        return [r.line for r in self.replayed if not r.ok]

    def summary(self, fraction: float, seed: int) -> str:
        counts = {s: sum(r.status == s for r in self.replayed)
                  for s in ("bit-exact", "within tolerance")}
        return (f"unmake verify: replayed {len(self.replayed)} of {self.total} stored image(s) "
                f"({fraction:.0%}, seed {seed}): {counts['bit-exact']} bit-exact, "
                f"{counts['within tolerance']} within tolerance (mean difference ≤ "
                f"{TOLERANCE:g} of 255, where the record was made with another device, dtype "
                f"or library version), {len(self.problems)} problem(s)")


def sample(store: Store, fraction: float, seed: int) -> tuple[list[dict[str, Any]], int]:
    """A seeded random `fraction` of the stored images (at least one), and how many there are."""
    records = sorted((r for r in _records(store) if r.get("type") == REPLAYED),
                     key=lambda r: str(r["key"]))
    if not records:
        return [], 0
    count = min(len(records), max(1, math.ceil(fraction * len(records))))
    return random.Random(seed).sample(records, count), len(records)


def replay(store: Store, fraction: float, seed: int, options: dict[str, Any]) -> Report:
    """Replay a seeded sample of the stored images (see the module docstring)."""
    chosen, total = sample(store, fraction, seed)
    report = Report([Replayed(r, store.record_path(r["key"])) for r in chosen], total)
    configured = max(1, int(options.get("batch_size", 4)))
    # 1. Each image in a batch of the size its record states, else of the configured size.
    sizes: dict[int, list[Replayed]] = {}
    for item in report.replayed:
        sizes.setdefault(_stated_batch(item.record) or configured, []).append(item)
    for size, items in sizes.items():
        _compare_all(store, items, size, options)
    # 2. Where the size was a guess and the environment is the record's, each smaller size.
    for size in range(configured - 1, 0, -1):
        again = [r for r in report.replayed
                 if r.status == "differs" and not _stated_batch(r.record)]
        if not again:
            break
        _compare_all(store, again, size, options)
    return report


def _stated_batch(record: dict[str, Any]) -> int | None:
    size = record.get("env", {}).get("batch")
    return size if isinstance(size, int) and size > 0 else None


def _records(store: Store) -> Iterator[dict[str, Any]]:
    for path in sorted((store.root / "records").glob("*/*.json")):
        try:
            record = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue  # `unmake verify` reports it
        if isinstance(record, dict) and isinstance(record.get("key"), str):
            yield record


def _compare_all(store: Store, items: list[Replayed], size: int, options: dict[str, Any]) -> None:
    """Run `items` through the runner in batches of `size`, one call per model, and compare."""
    by_run: dict[str, list[Replayed]] = {}
    for item in items:
        by_run.setdefault(json.dumps(item.record.get("run"), sort_keys=True), []).append(item)
    for group in by_run.values():
        # a job is replayed as its record reads (its key may differ, if the record was changed)
        jobs = {item.record["key"]: Job(item.record["type"], item.record.get("inputs", {}),
                                        run=item.record.get("run", {})) for item in group}
        wanted = {job.key: item for item, job in zip(group, jobs.values(), strict=True)}
        seen: set[str] = set()
        try:
            for job, outcome in runner_for(REPLAYED)(_batched(list(jobs.values()), size),
                                                     {**options, "batch_size": size,
                                                      "store": StoreView(store)}):
                if job.key in seen or job.key not in wanted:
                    continue  # a copy that filled a batch
                seen.add(job.key)
                if isinstance(outcome, Result):
                    _compare(store, wanted[job.key], outcome, size)
                else:
                    wanted[job.key].status, wanted[job.key].detail = (
                        "could not replay", _one_line(outcome))
        except Exception as exc:  # e.g. the model is not on this machine
            for item in group:
                if item.status == "not replayed":
                    item.status, item.detail = "could not replay", _one_line(exc)


def _batched(jobs: list[Job], size: int) -> list[Job]:
    """The jobs in runs of `size` that share everything a pipeline call shares (all inputs but
    the prompt, negative prompt and seed), the last run of each filled up with copies."""
    shapes: dict[str, list[Job]] = {}
    for job in jobs:
        shared = {k: v for k, v in job.inputs.items() if k not in ("prompt", "negative", "seed")}
        shapes.setdefault(json.dumps(shared, sort_keys=True, default=str), []).append(job)
    out: list[Job] = []
    for same in shapes.values():
        out += same + [same[-1]] * (-len(same) % size)
    return out


def _pixels(png: bytes) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def _compare(store: Store, item: Replayed, outcome: Result, size: int) -> None:
    record = item.record
    item.sizes.append(size)
    stored = _pixels(store.file(record, "image").read_bytes())
    made = _pixels(outcome.files["image"][0])
    env = record.get("env", {})
    differs = [f"{k} {env.get(k)} in the record, {outcome.env.get(k)} here" for k in ENVIRONMENT
               if env.get(k) != outcome.env.get(k)]
    if "threads" in env and env["threads"] != outcome.env.get("threads"):  # CPU records
        differs.append(f"threads {env['threads']} in the record, {outcome.env.get('threads')} "
                       "here")
    if stored.shape != made.shape:
        item.status = "differs"
        item.detail = (f"the replay is {made.shape[1]}×{made.shape[0]}, the stored image "
                       f"{stored.shape[1]}×{stored.shape[0]}")
        return
    diff = abs(made - stored)
    worst, mean = int(diff.max()), float(diff.mean())
    if worst == 0:
        item.status, item.detail = "bit-exact", f"in a batch of {size}"
    elif differs:
        item.status = "within tolerance" if mean <= TOLERANCE else "beyond tolerance"
        item.detail = (f"mean difference {mean:.2f} of 255 (at most {TOLERANCE:g}); not "
                       f"bit-exact because {'; '.join(differs)}")
    else:
        sizes = (f"a batch of {size}" if len(item.sizes) == 1 else
                 f"batches of {', '.join(map(str, item.sizes[:-1]))} and {size} (the record does "
                 "not say which made it)")
        item.status = "differs"
        item.detail = (f"at most {worst}, mean {mean:.2f} levels of 255 off the stored image in "
                       f"{sizes}, though device, dtype and library versions are the record's")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{exc.__class__.__name__}: {text}"[:300] if text else exc.__class__.__name__
