"""`unmake verify --replay`: stored images made again through the real runner, pixels compared.

A copy of the shared zine (six images) is replayed in-process (torch is imported once), and once
through the command line for its output and exit code. A changed image whose record was changed
to match passes every hash check; only the replay can tell.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from conftest import Zine
from PIL import Image

from generator.execute import run_options
from generator.keys import digest
from generator.replay import TOLERANCE, replay, sample
from generator.store import Store


@pytest.fixture
def copy(built: Zine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Zine:
    monkeypatch.setenv("UNMAKE_CACHE", built.env["UNMAKE_CACHE"])  # where the tiny model is
    return built.copy(tmp_path / "z")


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def change_image(zine: Zine, key: str, shift: int) -> None:
    """Shift every pixel of a stored image by `shift` levels, and its record to match."""
    path = zine.records()[key]
    record = json.loads(path.read_text("utf-8"))
    with Image.open(zine.blob(record)) as im:
        changed = im.convert("RGB").point(lambda v: min(255, max(0, v + shift)))
    buf = io.BytesIO()
    changed.save(buf, "PNG")
    data = buf.getvalue()
    sha = digest(data)
    blob = zine.store / "blobs" / sha[:2] / f"{sha}.png"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    record["files"]["image"].update(sha256=sha, bytes=len(data))
    path.write_text(json.dumps(record), "utf-8")


def test_the_sample_is_seeded(copy: Zine) -> None:
    store = Store(copy.store)
    first, total = sample(store, 0.5, seed=0)
    assert total == 6 and len(first) == 3
    assert [r["key"] for r in sample(store, 0.5, seed=0)[0]] == [r["key"] for r in first]
    assert len(sample(store, 0.01, seed=0)[0]) == 1  # at least one
    others = {tuple(sorted(r["key"] for r in sample(store, 0.5, seed=s)[0])) for s in range(6)}
    assert len(others) > 1


def test_an_untouched_store_replays_bit_exact_and_is_not_written(copy: Zine) -> None:
    before = snapshot(copy.store)
    report = replay(Store(copy.store), 1.0, 0, run_options({}))
    assert [r.status for r in report.replayed] == ["bit-exact"] * 6, report.problems
    assert report.problems == []
    assert snapshot(copy.store) == before


def test_a_changed_image_fails_the_replay(copy: Zine) -> None:
    key = sorted(copy.records())[2]
    change_image(copy, key, shift=1)  # one level: invisible, and still not what was made
    assert Store(copy.store).verify() == []  # every hash matches
    run = copy.unmake("verify", "--replay", "1")
    assert run.rc == 1, run.output
    (problem,) = [line for line in run.stdout.splitlines() if "replay differs" in line]
    made_in = copy.record(key)["env"]["batch"]  # the record says the batch it was made in
    assert re.fullmatch(
        rf"{re.escape(str(copy.records()[key]))}: replay differs: at most 1, mean (0\.\d\d|1\.00) "
        rf"levels of 255 off the stored image in a batch of {made_in}, though device, dtype and "
        r"library versions are the record's", problem), problem
    assert "replayed 6 of 6 stored image(s) (100%, seed 0): 5 bit-exact" in run.stdout
    assert run.stdout.splitlines()[-1] == "unmake verify: 6 records, 1 problem(s)"


def test_a_record_that_does_not_state_its_batch_is_tried_in_each(copy: Zine) -> None:
    key = sorted(copy.records())[2]
    change_image(copy, key, shift=1)
    path = copy.records()[key]
    record = json.loads(path.read_text("utf-8"))
    del record["env"]["batch"]  # as records made before the batch was recorded
    path.chmod(0o644)
    path.write_text(json.dumps(record), "utf-8")
    run = copy.unmake("verify", "--replay", "1")
    assert run.rc == 1, run.output
    (problem,) = [line for line in run.stdout.splitlines() if "replay differs" in line]
    assert problem.endswith(
        "off the stored image in batches of 4, 3, 2 and 1 (the record does not say which made "
        "it), though device, dtype and library versions are the record's"), problem


def test_a_record_of_another_environment_is_held_to_a_tolerance(copy: Zine) -> None:
    near, far = sorted(copy.records())[:2]
    for key, shift in ((near, 2), (far, 40)):
        change_image(copy, key, shift)
        path = copy.records()[key]
        record = json.loads(path.read_text("utf-8"))
        record["env"].update(device="cuda", dtype="float16")
        path.write_text(json.dumps(record), "utf-8")
    report = {r.record["key"]: r for r in replay(Store(copy.store), 1.0, 0, run_options({}))
              .replayed}
    assert report[near].status == "within tolerance"
    assert report[far].status == "beyond tolerance"
    assert f"(at most {TOLERANCE:g}); not bit-exact because device cuda in the record, cpu " \
        "here; dtype float16 in the record, float32 here" in report[near].detail
    assert sum(r.status == "bit-exact" for r in report.values()) == 4


def test_a_changed_record_is_caught_before_any_replay(copy: Zine) -> None:
    key = sorted(copy.records())[0]
    path = copy.records()[key]
    record = json.loads(path.read_text("utf-8"))
    record["inputs"]["seed"] += 1  # the record now claims another seed made its image
    path.write_text(json.dumps(record), "utf-8")
    assert Store(copy.store).verify() == [
        f"{path}: its type and inputs do not hash to its key (the record was changed after it "
        "was written)"]


def test_replay_takes_a_fraction(copy: Zine) -> None:
    run = copy.unmake("verify", "--replay", "10")
    assert run.rc == 1
    assert "unmake: --replay takes a fraction of the stored images, more than 0 and at most 1 " \
        "(0.1 is a tenth), got 10" in run.stderr
