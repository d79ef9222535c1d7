"""Embeddings in records, and CLIP's zero-shot probabilities computed from them (numpy only).

An embedding is kept in its job's record as base64 of little-endian float32 (exact, and a
quarter of the size of JSON numbers), so reading it back needs no file of its own and no torch:
a `--frozen` build computes every probability the figure shows from stored vectors.
"""

from __future__ import annotations

import base64

import numpy as np
from numpy.typing import ArrayLike, NDArray


def encode_vector(row: ArrayLike) -> str:
    """One vector as base64 of little-endian float32."""
    return base64.b64encode(np.asarray(row, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str) -> NDArray[np.float32]:
    """The vector `encode_vector` wrote."""
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


def probabilities(image_emb: ArrayLike, text_emb: ArrayLike, scale: float) -> NDArray[np.float64]:
    """(n, labels) softmax over labels of CLIP's scaled cosine logits, in float64, for unit
    image rows (n, d) and unit text rows (labels, d)."""
    logits = scale * (np.asarray(image_emb, np.float64) @ np.asarray(text_emb, np.float64).T)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs
