"""How long the missing jobs of a plan would take, from what the store has measured (for
`unmake plan`). Loads no model and imports no torch.

Every record states the seconds its job took (for an image made in a batch, the batch's time
over its images). Jobs to run are grouped by what their speed depends on: their type, model and
size; each group is priced at the median seconds of the stored records of the same type, model
and size (and says how many records, on which device), or is said to have no measurement yet.
With the Ray executor the total is divided by the actors the cluster offers: the jobs of a group
spread over them, batch by batch (a model's load on each actor is not counted).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .store import Store
from .types import Job, Plan

SAMPLES = 200  # records read per group at most: a median needs no more


def speed_key(job_type: str, inputs: dict[str, Any]) -> tuple[Any, ...]:
    return (job_type, inputs.get("model"), inputs.get("width"), inputs.get("height"))


@dataclass
class Group:
    """Missing jobs that run at one speed, and what the store measured of that speed."""

    key: tuple[Any, ...]
    jobs: list[Job] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    devices: Counter[str] = field(default_factory=Counter)

    @property
    def each(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    def line(self) -> str:
        n = len(self.jobs)
        if self.each is None:
            return f"{n} to run; no measurement yet (nothing of this model and size is stored)"
        device = self.devices.most_common(1)[0][0] if self.devices else "an unknown device"
        return (f"{n} to run × {self.each:.2f} s (median of {len(self.seconds)} stored, "
                f"on {device}) ≈ {duration(n * self.each)}")


def estimate(plan: Plan, store: Store) -> list[Group]:
    """The plan's missing jobs by speed, each group with the seconds the store measured."""
    groups: dict[tuple[Any, ...], Group] = {}
    for job in plan.missing:
        key = speed_key(job.type, job.inputs)
        groups.setdefault(key, Group(key)).jobs.append(job)
    if not groups:
        return []
    wanted = dict(groups)
    for path in sorted((store.root / "records").glob("*/*.json")):
        if not wanted:
            break
        try:
            record = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or not isinstance(record.get("inputs"), dict):
            continue
        group = wanted.get(speed_key(str(record.get("type")), record["inputs"]))
        seconds = record.get("seconds")
        if group is None or not isinstance(seconds, int | float) or seconds <= 0:
            continue
        group.seconds.append(float(seconds))
        group.devices[str((record.get("env") or {}).get("device") or "an unknown device")] += 1
        if len(group.seconds) >= SAMPLES:
            del wanted[group.key]
    return list(groups.values())


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def ray_actors(config: dict[str, Any]) -> tuple[int | None, str]:
    """How many actors `executor: ray` would run, and how that is known, without starting a
    cluster where the config says it: `ray.actors`, or a local cluster's CPUs."""
    import os

    from .ray_executor import ray_settings

    settings = ray_settings(config.get("ray"))
    if settings["actors"]:
        return settings["actors"], "ray.actors"
    if settings["address"] == "local":
        cpus = settings["num_cpus"] or os.cpu_count() or 1
        return cpus, f"a local cluster of {cpus} CPU(s), one actor each"
    return None, f"the cluster at {settings['address']} (set ray.actors to count it here)"
