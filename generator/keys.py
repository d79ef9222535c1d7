"""Cache keys: canonical JSON of normalised inputs, hashed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

KEY_VERSION = 1  # bump when the meaning of a stored result changes for the same inputs


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal inputs give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(data: bytes | str) -> str:
    """sha256 hex of bytes or text."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def job_key(job_type: str, inputs: dict[str, Any]) -> str:
    """The key of one atomic job: its type and every input that can change its result."""
    return digest(canonical_json({"v": KEY_VERSION, "job": job_type, "inputs": inputs}))
