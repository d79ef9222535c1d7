"""Run the missing jobs of a plan: one runner call per group, each result stored as it finishes.

Dispatch only: the runners live in backends/ and are imported here by name, when there is work.
Groups run upstream first (Plan.missing_by_group), and runners get a read-only view of the store
(`options["store"]`) to read upstream results. A job that fails fails alone; its error is kept
for the page, and the build goes on. A job whose upstream job failed does not run: it fails with
a message that says which upstream failed, and nothing else is lost. A result the store cannot
keep as strict JSON (a NaN in it) is a failure of its job.

Builds that share a store at the same time share its work: a build claims each job before its
group runs (Store.claim), and a job another live build holds is not run again. This build goes
on with everything else, then waits for those records; a job whose holder failed it or died
(`kill -9`: the lock dies with its process) is claimed and run here after all.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections import Counter
from importlib import import_module
from typing import Any

from .log import log
from .log import progress as progress_bar
from .ray_executor import RemoteFailure
from .store import Claim, NotStrictJSON, Result, Store, StoreView
from .types import Job, Plan

MAX_WHY = 20  # lines of "what runs and why" in the build log; `unmake plan -v` lists all
POLL = 0.2  # s between looks at jobs another build is running (a tiny image takes ~0.02 s)
STILL_WAITING = 60  # s between log lines while waiting for another build
# Test-only: UNMAKE_TEST_KILL_AFTER=N kills this process with SIGKILL right after its N-th stored
# result, so tests can stop a build at a known point (tests/test_build.py, test_concurrency.py).
KILL_AFTER = "UNMAKE_TEST_KILL_AFTER"


def runner_for(job_type: str) -> Any:
    from .kinds import RUNNERS

    module, _, func = RUNNERS[job_type].partition(":")
    return getattr(import_module(module), func)


def execute(plan: Plan, store: Store, options: dict[str, Any]) -> dict[str, str]:
    """Run what the plan marks missing; return {key: error message} for jobs that failed."""
    if not plan.missing:
        log.info("unmake: nothing to run (%s); no model loaded", plan.summary())
        return {}
    log.info("unmake: %s", plan.summary())
    reasons = why(plan)
    for line in reasons[:MAX_WHY]:
        log.info("unmake:   %s", line)
    if len(reasons) > MAX_WHY:
        log.info("unmake:   … and %d more (`unmake plan -v` lists every job)",
                 len(reasons) - MAX_WHY)
    started = time.monotonic()
    pool = None
    if options.get("executor", "local") == "ray":  # runner calls on Ray actors instead of here
        from .ray_executor import RayPool, ray_settings

        pool = RayPool(ray_settings(options.get("ray")), store, options)
    with progress_bar(len(plan.missing), "unmake") as bar:
        run = _Run(plan, store, {**options, "store": StoreView(store)}, bar, pool)
        try:
            for group in plan.missing_by_group().values():
                run.group(group)
            run.wait_for_others()
        finally:
            run.release_all()
            if pool is not None:
                pool.close()
    what = ", ".join(f"{n} {t}" for t, n in sorted(run.ran.items()))
    log.info("unmake: ran %d job(s) in %.1f s (%s), %d failed%s", run.ran.total(),
             time.monotonic() - started, what or "none", len(run.failures),
             f"; {run.by_others} made meanwhile by another build" if run.by_others else "")
    return run.failures


class _Run:
    """One build's pass over its missing jobs: what it ran, what failed, what it claimed, and
    what it waits for because another build is running it."""

    def __init__(self, plan: Plan, store: Store, options: dict[str, Any], bar: Any,
                 pool: Any = None) -> None:
        self.plan, self.store, self.options, self.bar = plan, store, options, bar
        self.pool = pool  # a RayPool, or None to call runners in this process
        self.failures: dict[str, str] = {}
        self.ran: Counter[str] = Counter()
        self.by_others = 0
        self.claims: dict[str, Claim] = {}
        self.elsewhere: dict[str, Job] = {}  # held by another build, or reading such a job
        # a record that appears or changes from here on was made by another build: a job the
        # plan found missing (the store remembers what planning read) counts as made once any
        # record is there; under --force, where one was, only a new one counts
        self.stamps = {job.key: None if store.get(job.key) is None
                       else store.record_stamp(job.key) for job in plan.missing}
        self.stored = 0
        self.kill_after = int(os.environ.get(KILL_AFTER) or 0)

    def group(self, jobs: list[Job]) -> None:
        """Claim and run one group's jobs; set aside those another build holds."""
        mine = []
        for job in jobs:
            if self._upstream_failed(job):
                continue
            if any(k in self.elsewhere for k in job.needs):
                self.elsewhere[job.key] = job  # its input is still being made elsewhere
            elif (state := self._take(job)) == "mine":
                mine.append(job)
            elif state == "held":
                self.elsewhere[job.key] = job
        if mine:
            self._run(mine)

    def wait_for_others(self) -> None:
        """Wait for the jobs other builds hold; run here any whose holder let go unfinished."""
        if not self.elsewhere:
            return
        self._say_waiting()
        said = time.monotonic()
        while self.elsewhere:
            ready: list[Job] = []
            for key, job in list(self.elsewhere.items()):  # upstream first, as they came
                if self._upstream_failed(job):
                    del self.elsewhere[key]
                    continue
                if any(k in self.elsewhere or k in self.claims for k in job.needs):
                    continue
                state = self._take(job)
                if state != "held":
                    del self.elsewhere[key]
                if state == "mine":
                    ready.append(job)
            groups: dict[tuple[Any, ...], list[Job]] = {}
            for job in ready:
                groups.setdefault((job.type, *job.group), []).append(job)
            for group in groups.values():
                self._run(group)
            if self.elsewhere and not ready:
                if time.monotonic() - said > STILL_WAITING:
                    self._say_waiting()
                    said = time.monotonic()
                time.sleep(POLL)

    def release_all(self) -> None:
        for claim in self.claims.values():
            claim.release()
        self.claims.clear()

    # -- one job -------------------------------------------------------------------------------
    def _take(self, job: Job) -> str:
        """'mine' (claimed: run it), 'done' (another build stored it) or 'held' (another build
        is running it)."""
        claim = self.store.claim(job.key, job.origins[0] if job.origins else job.type)
        if claim is None:
            return "held"
        # a holder stores its record before it lets go: look only once the claim is ours
        if self.store.record_stamp(job.key) != self.stamps[job.key]:
            claim.release()
            self.store.get(job.key, fresh=True)  # the pages render the new record
            self.by_others += 1
            self.bar.update(1)
            return "done"
        self.claims[job.key] = claim
        return "mine"

    def _upstream_failed(self, job: Job) -> bool:
        failed = [k for k in job.needs if k in self.failures]
        if failed:
            upstream = self.plan.jobs[failed[0]]
            self.failures[job.key] = (f"not run: the {upstream.type} job it reads failed "
                                      f"({', '.join(upstream.origins)}): "
                                      f"{self.failures[failed[0]]}")
            self.bar.update(1)
        return bool(failed)

    def _run(self, jobs: list[Job]) -> None:
        """One runner call (one model load) for claimed jobs of one type and group."""
        pending = {job.key: job for job in jobs}
        calls = (self.pool.run if self.pool is not None else runner_for(jobs[0].type))
        try:
            for job, outcome in calls(jobs, self.options):
                if pending.pop(job.key, None) is not None:
                    self._finish(job, outcome)
        except Exception as exc:  # the whole group failed (e.g. the model would not load)
            for job in pending.values():
                self._finish(job, exc)

    def _finish(self, job: Job, outcome: Result | BaseException) -> None:
        if isinstance(outcome, Result):
            try:
                self.store.put(job.key, job.describe(), outcome)
            except NotStrictJSON as exc:
                self.failures[job.key] = _failure(job, exc)
            else:
                self.ran[job.type] += 1
                self.stored += 1
        else:
            self.failures[job.key] = _failure(job, outcome)
        claim = self.claims.pop(job.key, None)
        if claim:
            claim.release()  # after the record: a build waiting for it finds it stored
        self.bar.update(1)
        if self.kill_after and self.stored == self.kill_after and isinstance(outcome, Result):
            os.kill(os.getpid(), signal.SIGKILL)

    def _say_waiting(self) -> None:
        holders: Counter[str] = Counter()
        for key in self.elsewhere:
            info = self.store.holder(key)
            if info:
                holders[f"pid {info.get('pid')} on {info.get('host')}"] += 1
        who = ", ".join(f"{n} by {h}" for h, n in holders.most_common(3)) or "their inputs first"
        log.info("unmake: waiting for %d job(s) that another build is running (%s); a job "
                 "whose build fails it or dies runs here", len(self.elsewhere), who)


def why(plan: Plan) -> list[str]:
    """What will run and why, by directive: a job runs because no result with its key is stored
    (its inputs are new or were never run), or because a result it reads is itself new."""
    missing = {job.key for job in plan.missing}
    counts: Counter[tuple[str, str, str]] = Counter()
    for job in plan.missing:
        reason = ("a result it reads is new" if any(k in missing for k in job.needs)
                  else "no stored result with these inputs")
        counts[(job.origins[0] if job.origins else "?", job.type, reason)] += 1
    return [f"{where}: {n} {job_type} ({reason})"
            for (where, job_type, reason), n in sorted(counts.items())]


def _failure(job: Job, exc: BaseException) -> str:
    log.debug("job %s failed:\n%s", job.key, "".join(traceback.format_exception(exc)))
    # one line for the log and the failure box, even when the message starts with a newline
    text = " ".join(str(exc).split())
    # a worker's error keeps its own class name
    name = exc.name if isinstance(exc, RemoteFailure) else exc.__class__.__name__
    return f"{name}: {text}"[:500] if text else name


def run_options(config: dict[str, Any]) -> dict[str, Any]:
    """What runners may read of the plugin config (each runner takes the keys it knows)."""
    return {"batch_size": config.get("batch_size", 4), "device": config.get("device", "auto"),
            "clip_batch_size": config.get("clip_batch_size", 32),
            "safety_checker": config.get("safety_checker", True),
            "executor": config.get("executor", "local"), "ray": config.get("ray") or {}}
