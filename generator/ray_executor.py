"""The Ray executor: the same plan, its runner calls spread over Ray actors (`executor: ray`).

Only where a runner call runs changes. `execute._Run` still claims each job, writes every result
to the store (atomically, on the driver: workers never write the store), counts failures and
drives the progress bar; here a group's jobs are cut into batches and each batch is one call of
the same registered runner (`kinds.RUNNERS`) on an actor:

- one actor per GPU (`ray.gpus_per_worker`, default 1) or, with no GPU in the cluster, per CPU
  slot (at most `ray.actors`); an actor keeps what its runners load (pipelines, CLIP models)
  for its whole life, so a model is loaded once per actor, not once per batch;
- batches are the runner's own (`split(jobs, options)` on the runner, where it has one): the
  diffusion runner cuts exactly the batches a local build makes, so no pixel changes;
- on a CPU, an actor uses as many torch threads as a local build here would
  (`ray.threads_per_worker` to choose): the thread count moves a few pixels, and a build must
  not change a pixel by moving to Ray (records of CPU images state their `threads`);
- results stream back batch by batch, in the order they finish;
- an actor that dies loses only its batch in flight: the batch runs once more on a fresh actor,
  and if that dies too its jobs fail alone, with the usual failure boxes.

Actors read upstream results (a `measure` reads images) through a read-only view of the store,
so on a cluster of several machines the store must be on a filesystem they share.

Test-only: UNMAKE_TEST_RAY_DIE_AFTER=N makes the first actor that starts its (N+1)-th batch exit
at once (`os._exit`), as a worker killed mid-build would (tests/test_ray.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Iterator
from typing import Any

from .errors import ConfigError
from .log import log
from .store import Result, Store, StoreView
from .types import Job

DIE_AFTER = "UNMAKE_TEST_RAY_DIE_AFTER"
IN_FLIGHT = 2  # batches queued per actor: the next is ready the moment one finishes
RAY_DEFAULTS: dict[str, Any] = {"address": "local", "gpus_per_worker": 1, "actors": None,
                                "num_cpus": None, "threads_per_worker": None}


class RemoteFailure(Exception):
    """A job's error from another process: its class name and its message, as text (the
    exception itself may not survive pickling)."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name = name

    def __reduce__(self) -> tuple[type[RemoteFailure], tuple[str, str]]:
        # it crosses from the worker to the driver pickled: an Exception pickles as its class
        # and `args` (the text alone), which would not make one of these again
        return RemoteFailure, (self.name, str(self))


def ray_settings(config: Any) -> dict[str, Any]:
    """The `ray:` section of the plugin config, checked, with defaults."""
    given = dict(config or {})
    unknown = sorted(set(given) - set(RAY_DEFAULTS))
    if unknown:
        raise ConfigError(f"ray: unknown key(s) {', '.join(unknown)}; expected "
                          f"{', '.join(RAY_DEFAULTS)}")
    settings = {**RAY_DEFAULTS, **given}
    if not isinstance(settings["address"], str) or not settings["address"]:
        raise ConfigError("ray.address: expected local, auto or ray://host:port")
    for key in ("actors", "num_cpus", "threads_per_worker"):
        value = settings[key]
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise ConfigError(f"ray.{key}: expected a whole number of at least 1, got {value!r}")
    gpus = settings["gpus_per_worker"]
    if not isinstance(gpus, int | float) or isinstance(gpus, bool) or not 0 < gpus <= 64:
        raise ConfigError(f"ray.gpus_per_worker: expected a number above 0, got {gpus!r}")
    return settings


def local_threads() -> int:
    """The threads torch uses on this machine for a local build (its default)."""
    import torch

    return int(torch.get_num_threads())


def split(jobs: list[Job], options: dict[str, Any]) -> list[list[Job]]:
    """The batches of one group: the runner's own cut where it has one, else chunks of
    `batch_size`."""
    from .execute import runner_for

    runner = runner_for(jobs[0].type)
    cut = getattr(runner, "split", None)
    if cut is not None:
        return [batch for batch in cut(jobs, options) if batch]
    size = max(1, int(options.get("batch_size", 4)))
    return [jobs[i:i + size] for i in range(0, len(jobs), size)]


class Worker:
    """What runs on one actor: runner calls over batches, with loaded models kept between
    them. (Made a Ray actor class in `RayPool`, so importing this module needs no Ray.)"""

    def __init__(self, store_root: str, options: dict[str, Any], die_after: int,
                 marker: str) -> None:
        self.options = {**options, "store": StoreView(Store(store_root)), "keep_loaded": True}
        if options.get("threads"):
            # Ray gives a 1-CPU actor OMP_NUM_THREADS=1; a local build splits its sums over
            # more threads, and on a CPU that moves a few pixels: use the local build's count
            import torch

            torch.set_num_threads(int(options["threads"]))
        self.batches = 0
        self.die_after, self.marker = die_after, marker

    def run(self, job_type: str, jobs: list[Job]) -> list[tuple[str, Any]]:
        """[(job key, Result or RemoteFailure)] for one batch."""
        from .execute import runner_for

        self.batches += 1
        if self.die_after and self.batches > self.die_after and self._first_to_die():
            os._exit(1)
        out: list[tuple[str, Any]] = []
        done: set[str] = set()
        try:
            for job, outcome in runner_for(job_type)(jobs, self.options):
                done.add(job.key)
                out.append((job.key, outcome if isinstance(outcome, Result)
                            else _portable(outcome)))
        except Exception as exc:  # the whole call failed (e.g. the model would not load)
            out.extend((job.key, _portable(exc)) for job in jobs if job.key not in done)
        return out

    def pid(self) -> int:
        return os.getpid()

    def _first_to_die(self) -> bool:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True


def _portable(exc: BaseException) -> RemoteFailure:
    if isinstance(exc, RemoteFailure):
        return exc
    return RemoteFailure(exc.__class__.__name__, str(exc))


class RayPool:
    """Actors on a Ray cluster, started for one build and stopped after it."""

    def __init__(self, settings: dict[str, Any], store: Store, options: dict[str, Any]) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("executor: ray needs Ray: pip install 'unmake[ray]'") from None
        self.ray = ray
        self.started = False
        # Quiet: Ray's own notices (its token-auth banner, start-up lines) go only where they
        # are errors; workers' logs stay on the workers (`log_to_driver`). Worker errors stay
        # visible all the same: a job's exception comes back as its RemoteFailure (a failure
        # box and a line at the end of the build), an actor's death as a warning of ours.
        logging.getLogger("ray").setLevel(logging.ERROR)
        if not ray.is_initialized():
            address = settings["address"]
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if address == "local":
                kwargs["num_cpus"] = settings["num_cpus"] or os.cpu_count() or 1
                # a cluster of its own for this build, however RAY_ADDRESS is set
                ray.init(address="local", **kwargs)
            else:
                ray.init(address=address, **kwargs)
            self.started = True
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0))
        per_gpu = float(settings["gpus_per_worker"])
        if gpus >= per_gpu:
            count, shape = int(gpus // per_gpu), {"num_gpus": per_gpu, "num_cpus": 1}
        else:
            count, shape = max(1, int(resources.get("CPU", 1))), {"num_cpus": 1}
        if settings["actors"]:
            count = min(count, settings["actors"]) if gpus >= per_gpu else settings["actors"]
        self.shape = shape
        self.actor_class = ray.remote(max_restarts=0, max_task_retries=0)(Worker)
        threads = settings["threads_per_worker"] or local_threads()
        self.worker_args = (str(store.root),
                            {**{k: v for k, v in options.items() if k != "store"},
                             "threads": threads},
                            int(os.environ.get(DIE_AFTER) or 0),
                            str(store.root / "locks" / f"ray-die-{os.getpid()}"))
        self.actors = [self._new_actor() for _ in range(count)]
        self.generation = [0] * count  # bumped when an actor is replaced
        self.lost = 0  # actors that died during this build
        log.info("unmake: ray: %d actor(s) (%s) on %s", count,
                 f"{per_gpu:g} GPU each" if "num_gpus" in shape else "1 CPU each",
                 "a local cluster" if settings["address"] == "local" else settings["address"])

    def _new_actor(self) -> Any:
        return self.actor_class.options(**self.shape).remote(*self.worker_args)

    def run(self, jobs: list[Job], options: dict[str, Any]) -> Iterator[tuple[Job, Any]]:
        """Yield (job, Result or exception) for each job, batch by batch as batches finish."""
        ray = self.ray
        by_key = {job.key: job for job in jobs}
        queue: deque[tuple[list[Job], int]] = deque((b, 0) for b in split(jobs, options))
        # ref -> (actor index, the actor's generation then, batch, tries)
        flying: dict[Any, tuple[int, int, list[Job], int]] = {}
        while queue or flying:
            # 1. Keep every actor busy, the least loaded first.
            load = [0] * len(self.actors)
            for index, _, _, _ in flying.values():
                load[index] += 1
            for index in sorted(range(len(self.actors)), key=lambda i: load[i]):
                while queue and load[index] < IN_FLIGHT:
                    batch, tries = queue.popleft()
                    ref = self.actors[index].run.remote(batch[0].type, batch)
                    flying[ref] = (index, self.generation[index], batch, tries)
                    load[index] += 1
            # 2. Take whichever batch finishes first.
            (ref,), _ = ray.wait(list(flying), num_returns=1)
            index, generation, batch, tries = flying.pop(ref)
            try:
                outcomes = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                # 3. Its actor died: replace it (once per death) and run the batch again on
                #    whichever actor is free, once; lost a second time, its jobs fail alone.
                if generation == self.generation[index]:
                    log.warning("unmake: ray: an actor died (%s); its batches run again on a "
                                "fresh actor", " ".join(str(exc).split())[:200])
                    self.actors[index] = self._new_actor()
                    self.generation[index] += 1
                    self.lost += 1
                if tries == 0:
                    queue.appendleft((batch, 1))
                else:
                    for job in batch:
                        yield job, RemoteFailure("RayActorError",
                                                 "its Ray worker died twice while running it")
                continue
            for key, outcome in outcomes:
                yield by_key[key], outcome

    def close(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):  # already gone
                self.ray.kill(actor)
        if self.started:
            self.ray.shutdown()
