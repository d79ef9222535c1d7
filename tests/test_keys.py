"""Cache keys: equal inputs give equal keys whatever their order; any change gives a new key."""

from __future__ import annotations

from generator.keys import canonical_json, job_key

BASE = {"prompt": "a nurse", "seed": 1, "steps": 4, "guidance": 7.5, "model": "tiny:abc"}


def test_canonical_json_ignores_key_order() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == canonical_json(
        {"a": [1, {"c": 3, "d": 2}], "b": 1})


def test_same_inputs_same_key() -> None:
    shuffled = dict(reversed(BASE.items()))
    assert job_key("generate.image", BASE) == job_key("generate.image", shuffled)


def test_every_input_changes_the_key() -> None:
    keys = {job_key("generate.image", BASE)}
    for name, value in [("prompt", "a doctor"), ("seed", 2), ("steps", 5), ("guidance", 7.0),
                        ("model", "tiny:abd")]:
        keys.add(job_key("generate.image", {**BASE, name: value}))
    keys.add(job_key("dataset.lookup", BASE))
    assert len(keys) == 7


def test_unicode_is_hashed_as_text() -> None:
    assert job_key("x", {"prompt": "café"}) != job_key("x", {"prompt": "cafe"})
