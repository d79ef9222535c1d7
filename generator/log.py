"""Logging and progress: one logger for the package, a progress bar with ETA for long work."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# mkdocs shows records of loggers under "mkdocs.plugins.*" with its own formatting and counts
# warnings for --strict, so the package logs there.
log = logging.getLogger("mkdocs.plugins.unmake")


@contextmanager
def progress(total: int, desc: str) -> Iterator[Any]:
    """A tqdm bar on stderr (ETA included); a no-op when there is nothing to do."""
    from tqdm import tqdm  # light, but only needed when something runs

    bar = tqdm(total=total, desc=desc, unit="job", file=sys.stderr, dynamic_ncols=True,
               disable=total == 0, mininterval=0.5)
    try:
        yield bar
    finally:
        bar.close()
