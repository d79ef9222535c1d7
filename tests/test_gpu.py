"""On a CUDA machine: generation uses the GPU in fp16 automatically.

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


def test_cuda_is_picked_in_fp16_and_images_are_stable(zine) -> None:
    z = zine({"index.md": "# GPU\n\n" + generate(prompt="a {red|blue} fox", seeds=[1, 2])})
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
