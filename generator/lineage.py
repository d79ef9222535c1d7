"""Model lineage: follow model cards' `base_model` through the local models, then the actors file.

Read while the site is planned (cards are small text files; no weights are read). A step names
its evidence: the model card that claims it (a claim, copied unchecked), or an actors-file
relation with its sources. The walk stops at a model no card or actors file says more about,
and never loops (a card that names itself or an ancestor ends the walk, said so).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .actors import ActorMap
from .errors import UnmakeError
from .modelfacts import read_card
from .models import Resolver

MAX_STEPS = 12  # generations followed from each model; real lineages are 2–4 deep
# actors-file relations that say "child comes from parent"
DERIVED = ("derived from", "fine-tuned from")


@dataclass(frozen=True)
class Step:
    child: str
    parent: str
    via: str  # "card" | "actors"
    evidence: str  # what says so: "model card of sample", or the actors file
    sources: tuple[str, ...] = ()  # an actors relation's sources
    when: str | None = None
    type: str = "base model"  # as the graph labels it: a card's base_model, or the relation


@dataclass(frozen=True)
class Lineage:
    # (name, how it is known: "local model", "named in a card", or its actor kind)
    nodes: tuple[tuple[str, str], ...]
    steps: tuple[Step, ...]
    notes: tuple[str, ...]


def _bases(value: object) -> list[str]:
    if isinstance(value, str) and value.strip() and value.strip().lower() != "none":
        return [value.strip()]
    if isinstance(value, list):
        return [v.strip() for v in value if isinstance(v, str) and v.strip()]
    return []


def _path(resolver: Resolver, name: str) -> str | None:
    try:
        return resolver.resolve(name).path
    except (UnmakeError, OSError, ValueError):
        return None


def trace(starts: list[str], resolver: Resolver, amap: ActorMap | None) -> Lineage:
    """The lineage of the models named `starts` (aliases), breadth first, deterministic."""
    nodes: dict[str, str] = {}
    steps: list[Step] = []
    notes: list[str] = []
    queue: list[tuple[str, int]] = []
    for name in starts:
        nodes[name] = "local model"
        queue.append((name, 0))
    actor_names = {a.name: a for a in amap.actors} if amap else {}
    seen: set[str] = set()
    while queue:
        name, depth = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        if depth >= MAX_STEPS:
            notes.append(f"stopped after {MAX_STEPS} generations at {name}")
            continue
        parents: list[tuple[str, Step]] = []
        local = None
        try:
            local = resolver.resolve(name)
        except (UnmakeError, OSError, ValueError):
            local = None
        if local is not None and local.source != "builtin":
            card, _ = read_card(Path(local.path))
            for base in _bases(card.get("base_model")):
                parents.append((base, Step(name, base, "card", f"model card of {name}")))
        if not parents and name in actor_names and amap is not None:
            for rel in amap.relations:
                if rel.source == name and rel.type in DERIVED:
                    parents.append((rel.target, Step(name, rel.target, "actors", amap.file,
                                                     rel.sources,
                                                     str(rel.when) if rel.when else None,
                                                     rel.type)))
        for parent, step in parents:
            if parent == name or (local is not None and _path(resolver, parent) == local.path):
                notes.append(f"the {step.evidence} names the model itself as its base")
                continue
            steps.append(step)
            if parent not in nodes:
                if parent in actor_names:
                    nodes[parent] = actor_names[parent].kind
                else:
                    try:
                        resolver.resolve(parent)
                        nodes[parent] = "local model"
                    except (UnmakeError, OSError, ValueError):
                        nodes[parent] = "named in a card"
            queue.append((parent, depth + 1))
    return Lineage(tuple(nodes.items()), tuple(steps), tuple(notes))
