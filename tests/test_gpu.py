"""On a CUDA machine: generation uses the GPU in fp16 automatically, and its images are stable.

Skipped where there is no CUDA (most machines, and CI). Run on a GPU machine with
`python -m pytest -m gpu`.
"""

from __future__ import annotations

import json

import pytest
from conftest import generate
from PIL import Image, ImageStat

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

PAGES = {"index.md": "# GPU\n\n" + generate(prompt="a {red|blue} fox", seeds=[1, 2])}


def test_cuda_is_picked_in_fp16_and_images_are_stable(zine) -> None:
    z = zine(PAGES)
    first = z.unmake("build")
    assert first.rc == 0, first.output
    records = {k: json.loads(p.read_text()) for k, p in z.records().items()}
    assert len(records) == 4
    for record in records.values():
        assert record["env"]["device"] == "cuda"
        assert record["env"]["dtype"] == "float16"
    # the GPU's images are real PNGs of the asked size (fp16 noise must not come out NaN-black)
    for record in records.values():
        with Image.open(z.blob(record)) as im:
            assert im.size == (record["inputs"]["width"], record["inputs"]["height"])
            assert max(ImageStat.Stat(im.convert("L")).extrema[0]) > 0

    # stable: a second build, in a store of its own, makes the same images, bit for bit
    other = zine(PAGES)
    second = other.unmake("build")
    assert second.rc == 0, second.output
    assert set(other.records()) == set(records)
    for key, record in records.items():
        again = other.record(key)
        assert again["env"] == record["env"]
        assert again["files"]["image"]["sha256"] == record["files"]["image"]["sha256"], key
    # and so does a replay of every stored image on this machine
    verify = z.unmake("verify", "--replay", "1")
    assert verify.rc == 0, verify.output
    assert "replayed 4 of 4 stored image(s) (100%, seed 0): 4 bit-exact" in verify.output


def test_cpu_offload_keeps_pixels_and_key_and_compile_runs(zine) -> None:
    """`cpu_offload` is recorded but not keyed (generator/performance.py): on a GPU it must
    make the very pixels of a build without it; `compile: true` compiles and is recorded."""
    plain = zine(PAGES)
    assert plain.unmake("build").rc == 0
    offload = zine(PAGES, plugin={"cpu_offload": "model"})
    run = offload.unmake("build")
    assert run.rc == 0, run.output
    assert set(offload.records()) == set(plain.records())  # the same keys
    for key in plain.records():
        record, again = plain.record(key), offload.record(key)
        assert again["env"]["pipeline"] == {"cpu_offload": "model"}
        assert again["files"]["image"]["sha256"] == record["files"]["image"]["sha256"], key
    compiled = zine(PAGES, plugin={"compile": True, "channels_last": True})
    run = compiled.unmake("build", timeout=900)
    assert run.rc == 0, run.output
    for key in compiled.records():
        assert compiled.record(key)["env"]["pipeline"] == {"channels_last": True,
                                                           "compile": "max-autotune"}
