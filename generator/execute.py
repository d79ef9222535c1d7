"""Run the missing jobs of a plan: one runner call per group, each result stored as it finishes.

Dispatch only: the runners live in backends/ and are imported here by name, when there is work.
Groups run upstream first (Plan.missing_by_group), and runners get a read-only view of the store
(`options["store"]`) to read upstream results. A job that fails fails alone; its error is kept
for the page, and the build goes on. A job whose upstream job failed does not run: it fails with
a message that says which upstream failed, and nothing else is lost.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter
from importlib import import_module
from typing import Any

from .log import log, progress
from .store import Result, Store, StoreView
from .types import Job, Plan

MAX_WHY = 20  # lines of "what runs and why" in the build log; `unmake plan -v` lists all


def runner_for(job_type: str) -> Any:
    from .kinds import RUNNERS

    module, _, func = RUNNERS[job_type].partition(":")
    return getattr(import_module(module), func)


def execute(plan: Plan, store: Store, options: dict[str, Any]) -> dict[str, str]:
    """Run what the plan marks missing; return {key: error message} for jobs that failed."""
    failures: dict[str, str] = {}
    if not plan.missing:
        log.info("unmake: nothing to run (%s); no model loaded", plan.summary())
        return failures
    log.info("unmake: %s", plan.summary())
    reasons = why(plan)
    for line in reasons[:MAX_WHY]:
        log.info("unmake:   %s", line)
    if len(reasons) > MAX_WHY:
        log.info("unmake:   … and %d more (`unmake plan -v` lists every job)",
                 len(reasons) - MAX_WHY)
    started = time.monotonic()
    options = {**options, "store": StoreView(store)}
    with progress(len(plan.missing), "unmake") as bar:
        for (job_type, *_), group in plan.missing_by_group().items():
            jobs = []
            for job in group:
                failed = [k for k in job.needs if k in failures]
                if failed:
                    upstream = plan.jobs[failed[0]]
                    failures[job.key] = (f"not run: the {upstream.type} job it reads failed "
                                         f"({', '.join(upstream.origins)}): {failures[failed[0]]}")
                    bar.update(1)
                else:
                    jobs.append(job)
            if not jobs:
                continue
            pending = {job.key: job for job in jobs}
            try:
                for job, outcome in runner_for(job_type)(jobs, options):
                    pending.pop(job.key, None)
                    if isinstance(outcome, Result):
                        store.put(job.key, job.describe(), outcome)
                    else:
                        failures[job.key] = _failure(job, outcome)
                    bar.update(1)
            except Exception as exc:  # the whole group failed (e.g. the model would not load)
                for job in pending.values():
                    failures[job.key] = _failure(job, exc)
                    bar.update(1)
    done = len(plan.missing) - len(failures)
    ran = Counter(job.type for job in plan.missing if job.key not in failures)
    what = ", ".join(f"{n} {t}" for t, n in sorted(ran.items()))
    log.info("unmake: ran %d job(s) in %.1f s (%s), %d failed", done,
             time.monotonic() - started, what or "none", len(failures))
    return failures


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
    return f"{exc.__class__.__name__}: {text}"[:500] if text else exc.__class__.__name__


def run_options(config: dict[str, Any]) -> dict[str, Any]:
    """What runners may read of the plugin config (each runner takes the keys it knows)."""
    return {"batch_size": config.get("batch_size", 4), "device": config.get("device", "auto"),
            "clip_batch_size": config.get("clip_batch_size", 32)}
