"""Diversity instrument: the Vendi score of a set of embeddings, its clusters and their exemplars.

Contract: inputs are (n, d) arrays of embeddings (CLIP image embeddings, say), one row an image;
every function is deterministic and compares rows by direction only (cosine), as CLIP is meant
to be read. Cluster labels are 0..c-1, numbered in the order their first row appears.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..stats import vendi
from .vectors import decode_vector

Float = NDArray[np.float64]
Labels = NDArray[np.intp]

vendi_score = vendi  # the instrument's name for it; stats.vendi holds the recipe


def cluster(embeddings: ArrayLike, n_clusters: int) -> Labels:
    """Cluster labels (0..c-1, c <= n_clusters) of the rows, by hierarchical clustering.

    Average linkage (UPGMA) on cosine distance: the distance between two clusters is the mean
    cosine distance between their members. Ward linkage would need Euclidean distances, and
    average linkage does not let one long chain of near neighbours swallow everything as single
    linkage does. The dendrogram is cut to give at most n_clusters clusters; it gives fewer when
    there are fewer distinct rows, or when equal merge heights make that exact count impossible.
    """
    from scipy.cluster.hierarchy import fcluster, linkage  # scipy is a few hundred ms to import
    from scipy.spatial.distance import pdist

    x = _normalised(embeddings)
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int | np.integer) \
            or n_clusters < 1:
        raise ValueError(f"cluster: n_clusters must be a positive integer, got {n_clusters!r}")
    if len(x) == 1:
        return np.zeros(1, dtype=np.intp)
    # Rounding can make the cosine distance of identical rows -1e-16; linkage wants >= 0.
    distances = np.clip(pdist(x, metric="cosine"), 0.0, None)
    raw = fcluster(linkage(distances, method="average"), t=n_clusters, criterion="maxclust")
    # Renumber by first appearance: fcluster's numbers follow the dendrogram, not the input.
    _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inverse.reshape(-1)].astype(np.intp)


def cluster_shares(labels: ArrayLike, groups: Sequence[Hashable]
                   ) -> dict[Hashable, dict[int, float]]:
    """For each group (in order of first appearance), the share of its rows in each cluster.

    `groups` names the group of each row (a prompt, a model, a sweep value). Every cluster
    appears in every group, with 0.0 where the group has none, so tables line up.
    """
    labels = np.asarray(labels)
    if len(labels) != len(groups):
        raise ValueError(f"cluster_shares: {len(labels)} labels but {len(groups)} group names")
    clusters = sorted(int(c) for c in np.unique(labels))
    shares: dict[Hashable, dict[int, float]] = {}
    for group in dict.fromkeys(groups):
        members = labels[[g == group for g in groups]]
        shares[group] = {c: float(np.mean(members == c)) for c in clusters}
    return shares


def exemplars(embeddings: ArrayLike, labels: ArrayLike) -> dict[int, int]:
    """For each cluster, the index of its row most similar (by cosine) to the cluster's centroid.

    The centroid is the mean of the L2-normalised rows; on a tie the lowest index wins.
    """
    x = _normalised(embeddings)
    labels = np.asarray(labels)
    if len(labels) != len(x):
        raise ValueError(f"exemplars: {len(labels)} labels for {len(x)} embeddings")
    chosen: dict[int, int] = {}
    for c in sorted(int(c) for c in np.unique(labels)):
        members = np.flatnonzero(labels == c)
        similarity = x[members] @ x[members].mean(axis=0)
        chosen[c] = int(members[np.argmax(similarity)])
    return chosen


def _normalised(embeddings: ArrayLike) -> Float:
    """The rows scaled to unit length; raises ValueError on a bad shape or a zero row."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"embeddings must be a non-empty (n, d) array, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise ValueError("embeddings must be finite with no all-zero row")
    return x / norms[:, None]


# -- the `diversity:` key of a `measure` directive ----------------------------------------------
MAX_CLUSTERS = 12


def parse(body: Any, ctx: Any) -> Any:
    from ..specs import preview
    from .zeroshot import clip_model

    value = body.raw("diversity", None)
    if value is None or value is False:
        return None
    clusters = None
    if isinstance(value, dict):
        unknown = sorted(str(k) for k in value if k != "clusters")
        if unknown:
            raise body.error(f"diversity.{unknown[0]}", "is not a known key (known: "
                             "clusters)")
        clusters = value.get("clusters")
        if isinstance(clusters, bool) or not isinstance(clusters, int) \
                or not 2 <= clusters <= MAX_CLUSTERS:
            raise body.error("diversity.clusters", f"must be a number from 2 to "
                             f"{MAX_CLUSTERS}, got {preview(clusters)}")
    elif value is not True:
        raise body.error("diversity", f"must be true or {{clusters: N}}, got {preview(value)}")
    return {"model": clip_model(body, ctx), "clusters": clusters}


def jobs(settings: Any, image: Any, ctx: Any) -> list[Any]:
    from .zeroshot import embed_job

    return [embed_job(settings["model"], image)]


def summarise(settings: Any, groups: list[Any], by_image: dict[str, list[Any]],
              results: Any) -> dict[str, Any]:
    from . import without_withheld

    groups, held = without_withheld(groups, results)  # the checker's black squares are alike
    # 1. Every image's stored embedding (numpy only: a frozen build needs no torch).
    rows: list[Float] = []
    owners: list[tuple[str, str]] = []  # (group label, image key) of each row
    for group in groups:
        for image, record in results.gather(group.images, by_image,
                                            lambda j: j.type == "measure.embed"):
            rows.append(decode_vector(record["data"]["embedding"]).astype(np.float64))
            owners.append((group.label, image))
    # 2. Vendi score per group: the effective number of distinct images.
    table = []
    for group in groups:
        mine = [row for row, (label, _) in zip(rows, owners, strict=True) if label == group.label]
        table.append({"group": group.label, "n": len(mine),
                      "vendi": vendi(np.stack(mine)) if mine else None})
    # 3. Optional clusters of all images, each group's spread over them, and exemplars.
    clusters = None
    if settings["clusters"] and len(rows) >= 2:
        matrix = np.stack(rows)
        labels = cluster(matrix, settings["clusters"])
        shares = cluster_shares(labels, [label for label, _ in owners])
        found = sorted({int(x) for x in labels})
        clusters = {
            "ids": found,
            "exemplars": {c: owners[i][1] for c, i in exemplars(matrix, labels).items()},
            "rows": [{"group": g.label, "shares": [shares.get(g.label, {}).get(c, 0.0)
                                                   for c in found]} for g in groups],
        }
    return {"model": settings["model"].name, "fingerprint": settings["model"].fingerprint,
            "rows": table, "clusters": clusters, "withheld": held, **results.problems()}


def describe(job: Any) -> tuple[str, str]:
    return f"CLIP {job.run['clip']['name']}", f"embed image {job.inputs['image'][:12]}"


def _instrument() -> Any:
    from . import Instrument

    return Instrument(
        name="diversity", title="Diversity",
        doc="Vendi score of each group's CLIP embeddings; optional clusters of all images",
        parse=parse, jobs=jobs, summarise=summarise,
        runners={"measure.embed": "generator.backends.clip:run_embed"}, describe=describe)


INSTRUMENT = _instrument()
