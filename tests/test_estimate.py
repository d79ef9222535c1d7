"""`unmake plan` estimates the time of what would run from the seconds stored records took."""

from __future__ import annotations

import json

from conftest import generate

PAGE = "# Cats\n\n" + generate(id="cat-grid", prompt="a cat", seeds=[1, 2, 3, 4]) + "\n"
MORE = "# Cats\n\n" + generate(id="cat-grid", prompt="a cat", seeds=[1, 2, 3, 4, 5, 6, 7, 8]) + "\n"


def test_the_plan_prices_new_images_at_the_median_of_stored_ones(zine) -> None:
    z = zine({"index.md": PAGE}, plugin={"ray": {"actors": 2}})
    assert z.unmake("build").rc == 0
    for seconds, path in zip((1.0, 2.0, 3.0, 10.0), sorted(z.records().values()), strict=True):
        record = json.loads(path.read_text("utf-8"))
        record["seconds"] = seconds  # known times: the median is 2.5
        path.chmod(0o644)
        path.write_text(json.dumps(record), "utf-8")
    z.write("index.md", MORE)
    run = z.unmake_noting_torch("plan")
    assert run.rc == 0, run.output
    assert "generate.image [model default] 32×32: 4 to run × 2.50 s (median of 4 stored, on " \
           "cpu) ≈ 10 s" in run.stdout, run.stdout
    assert "in all: about 10 s here" in run.stdout
    assert "TORCH False" in run.stdout  # the estimate loads no model
    on_ray = z.unmake("plan", "--executor", "ray")
    assert "in all: about 5 s on 2 Ray actor(s) (ray.actors)" in on_ray.stdout, on_ray.output


def test_a_model_never_measured_says_so(zine) -> None:
    z = zine({"index.md": "# Cats\n\n" + generate(id="big-cats", prompt="a cat", seeds=[1, 2, 3, 4],
                                                 size=[64, 64]) + "\n"})
    run = z.unmake("plan")
    assert run.rc == 0, run.output
    assert "4 to run; no measurement yet" in run.stdout, run.stdout
    assert "in all: about 0 s here; 4 job(s) with no measurement yet not counted" in run.stdout
