"""Small statistics for measurements: Wilson score intervals for tallies, the Vendi diversity score.

Pure numpy, deterministic; inputs are validated and bad ones raise ValueError naming the value.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile: a two-sided 95 % interval


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (Wilson 1927) for k successes in n trials, as (low, high).

    Unlike the Wald interval p ± z·se it stays inside 0..1 and is not empty at k = 0 or k = n,
    which is where the tallies of a small grid of images often land (Brown, Cai & DasGupta 2001
    recommend it for small n). With n == 0 nothing was observed, so the interval is all of
    (0.0, 1.0) rather than an error: a figure with no images still renders.
    """
    if isinstance(k, bool) or isinstance(n, bool) or not isinstance(k, int | np.integer) \
            or not isinstance(n, int | np.integer):
        raise ValueError(f"wilson: k and n must be integers, got k={k!r}, n={n!r}")
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"wilson: need 0 <= k <= n, got k={k}, n={n}")
    if z <= 0:
        raise ValueError(f"wilson: z must be positive, got {z}")
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n))
    # At k = 0 and k = n the bound is exactly 0 or 1 in exact arithmetic; clamp the rounding.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return (low, high)


def vendi(embeddings: ArrayLike, q: float = 1.0) -> float:
    """The Vendi score (Friedman & Dieng 2023) of the rows of an (n, d) array: an effective count.

    Recipe: L2-normalise the rows, take the cosine-similarity kernel K = X Xᵀ, and return the
    exponential of the Rényi entropy of order q of the eigenvalues of K / n (q = 1: the Shannon
    entropy; q = inf: 1 / the largest eigenvalue). n identical rows score 1, n orthogonal rows n.

    K / n = X Xᵀ / n has the same non-zero eigenvalues as Xᵀ X / n, so the smaller of the two
    (n × n or d × d) is decomposed: 10 000 CLIP embeddings of width 768 cost a 768 × 768 problem.
    Eigenvalues below zero come only from rounding and are clipped to 0.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    # 1. Check inputs.
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"vendi: embeddings must be a non-empty (n, d) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("vendi: embeddings contain NaN or infinity")
    if not q > 0:
        raise ValueError(f"vendi: the order q must be positive, got {q}")
    norms = np.linalg.norm(x, axis=1)
    if np.any(norms == 0):
        raise ValueError(f"vendi: row {int(np.argmin(norms))} is all zeros and has no direction")
    # 2. Normalise the rows and decompose the smaller Gram matrix.
    x = x / norms[:, None]
    n, d = x.shape
    gram = x @ x.T if n <= d else x.T @ x
    eigenvalues = np.clip(np.linalg.eigvalsh(gram / n), 0.0, None)
    # 3. Entropy of the spectrum (which sums to trace(K) / n = 1); 0 · log 0 counts as 0.
    p = eigenvalues[eigenvalues > 0]
    p = p / p.sum()  # remove the rounding drift of the trace from exactly 1
    if q == 1:
        return float(np.exp(-np.sum(p * np.log(p))))
    if math.isinf(q):
        return float(1.0 / p.max())
    return float(np.exp(np.log(np.sum(p**q)) / (1.0 - q)))
