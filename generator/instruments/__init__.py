"""Measuring instruments of the `measure` directive: one module each, registered here.

An instrument owns one key of a `measure` directive (`clip:`, `palette:`, `faces:`,
`diversity:`): how its value is read, which jobs it needs for one image, and how its results
are summed up per group for the figure. A new instrument is one module that defines
`INSTRUMENT`, plus one line in `_MODULES`; the `measure` kind knows none of them by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..specs import Body
    from ..types import Context, Job


@dataclass(frozen=True)
class Group:
    """The images of one group of a measured figure (one value of `by:`)."""

    label: str
    images: list[str]  # upstream image job keys, in figure order


@dataclass(frozen=True)
class Results:
    """What a summary may read: each job's stored record or failure.

    `gather` also counts, across calls, the measurements that failed (their messages) and
    those not made yet (a preview build that runs nothing), for the figure to say so."""

    record: Callable[[Job], dict[str, Any] | None]
    failure: Callable[[Job], str | None]
    failed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def gather(self, images: list[str], by_image: dict[str, list[Job]],
               pick: Callable[[Job], bool]) -> list[tuple[str, dict[str, Any]]]:
        """(image key, record) of the job `pick` chooses for each image that has a result."""
        out = []
        for image in images:
            job = next(j for j in by_image[image] if pick(j))
            if (error := self.failure(job)) is not None:
                self.failed.append(error)
            elif (record := self.record(job)) is None:
                self.missing.append(job.key)
            else:
                out.append((image, record))
        return out

    def problems(self) -> dict[str, Any]:
        """What the template shows under a section: failures (first message) and missing."""
        return {"failed": list(self.failed), "missing": len(set(self.missing))}


@dataclass(frozen=True)
class Instrument:
    name: str  # its key in a `measure` directive
    title: str  # its heading in the figure
    doc: str  # one line for the README
    # the key's value -> settings (JSON-able), or None when the instrument is off
    parse: Callable[[Body, Context], Any]
    # settings, one upstream image job -> the jobs measuring it (in a fixed order)
    jobs: Callable[[Any, Job, Context], list[Job]]
    # settings, groups, the jobs of each image (by image key), results -> template context
    summarise: Callable[[Any, list[Group], dict[str, list[Job]], Results], dict[str, Any]]
    runners: dict[str, str]  # job type -> "module:function"
    describe: Callable[[Job], tuple[str, str]]
    # settings, the figure's group labels -> (key, problem) if the settings name a missing group
    check_groups: Callable[[Any, list[str]], tuple[str, str] | None] | None = None


_MODULES = ("zeroshot", "palette", "faces", "diversity")

INSTRUMENTS: dict[str, Instrument] = {}
for _name in _MODULES:
    _instrument: Instrument = import_module(f"{__name__}.{_name}").INSTRUMENT
    INSTRUMENTS[_instrument.name] = _instrument


def without_withheld(groups: list[Group], results: Results
                     ) -> tuple[list[Group], dict[str, Any]]:
    """The groups less the images the model's safety checker withheld, and how many there were:
    {"total": n, "by_group": {label: n}}, for the figure to say (which groups the checker
    withholds from is itself a finding). A withheld image is the black square the pipeline put
    in its place: measuring it would measure the checker, not the model."""
    from ..render import withheld
    from ..types import Job

    kept: list[Group] = []
    by_group: dict[str, int] = {}
    held: set[str] = set()
    for group in groups:
        mine = []
        for key in group.images:
            # a record is found by its job's key: here the upstream image's
            record = results.record(Job("generate.image", {}, key=key))
            if record is not None and withheld(record):
                by_group[group.label] = by_group.get(group.label, 0) + 1
                held.add(key)
            else:
                mine.append(key)
        kept.append(Group(group.label, mine))
    return kept, {"total": len(held), "by_group": by_group}


def image_job(kind: str, settings: dict[str, Any], image: Job, version: int) -> Job:
    """A torch-free per-image job (palette, faces): keyed by the image and the settings."""
    from ..types import Job

    return Job(kind, {"image": image.key, **settings, "v": version}, group=(kind,),
               needs=(image.key,))


def upstream_rgb(store: Any, key: str) -> Any:
    """The stored image of an upstream job as an (H, W, 3) uint8 array."""
    import numpy as np
    from PIL import Image

    with Image.open(store.file(key, "image")) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def run_each(measure: Callable[[Any, Job], dict[str, Any]], env: dict[str, Any],
             jobs: list[Job], options: dict[str, Any]) -> Any:
    """Run a per-image measurement over jobs: (job, Result) or (job, exception), one by one."""
    import time

    from ..store import Result

    for job in jobs:
        t0 = time.perf_counter()
        try:
            data = measure(upstream_rgb(options["store"], job.inputs["image"]), job)
        except (OSError, KeyError, ValueError) as exc:
            yield job, exc
            continue
        yield job, Result(data=data, env=env, seconds=time.perf_counter() - t0)
