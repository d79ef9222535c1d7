"""Run the missing jobs of a plan: one runner call per group, each result stored as it finishes.

Dispatch only: the runners live in backends/ and are imported here by name, when there is work.
A job that fails fails alone; its error is kept for the page, and the build goes on.
"""

from __future__ import annotations

import time
import traceback
from importlib import import_module
from typing import Any

from .log import log, progress
from .store import Result, Store
from .types import Job, Plan


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
    started = time.monotonic()
    with progress(len(plan.missing), "unmake") as bar:
        for (job_type, *_), jobs in plan.missing_by_group().items():
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
    log.info("unmake: ran %d job(s) in %.1f s, %d failed", done, time.monotonic() - started,
             len(failures))
    return failures


def _failure(job: Job, exc: BaseException) -> str:
    log.debug("job %s failed:\n%s", job.key, "".join(traceback.format_exception(exc)))
    # one line for the log and the failure box, even when the message starts with a newline
    text = " ".join(str(exc).split())
    return f"{exc.__class__.__name__}: {text}"[:500] if text else exc.__class__.__name__


def run_options(config: dict[str, Any]) -> dict[str, Any]:
    return {"batch_size": config.get("batch_size", 4), "device": config.get("device", "auto")}
