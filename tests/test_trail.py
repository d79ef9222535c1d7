"""`trail`: the word diff (unit tables), inheritance of parameters, errors naming the key and
line, safe Markdown notes, images shared with `generate`, what an edit re-runs, a snapshot of the
rendered figure, and one real build with the tiny model measured `by: step`."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import Elements, generate
from PIL import Image

from generator.errors import DirectiveError
from generator.kinds import KINDS
from generator.kinds.trail import note_html
from generator.models import Resolver
from generator.plan import plan_site
from generator.render import PageRender, Renderer
from generator.store import Result, Store
from generator.types import Context, Plan
from generator.worddiff import diff_words, plain, tokens

SNAPSHOTS = Path(__file__).parent / "snapshots"

# -- the word diff ---------------------------------------------------------------------------------
DIFFS = [
    # (old, new, diff with git's word-diff markers)
    ("a fox", "a fox", "a fox"),
    ("a fox", "a red fox", "a {+red+} fox"),  # insert inside
    ("fox", "red fox", "{+red+} fox"),  # insert at the start
    ("a fox", "a fox in snow", "a fox {+in snow+}"),  # insert at the end
    ("a red fox", "a fox", "a [-red-] fox"),  # delete inside
    ("red fox", "fox", "[-red-] fox"),  # delete at the start
    ("a red fox", "a red", "a red [-fox-]"),  # delete at the end
    ("a red fox", "a blue fox", "a [-red-]{+blue+} fox"),  # replace one word
    ("an Italian family", "a family in Italy", "[-an Italian-]{+a+} family {+in Italy+}"),
    ("x y", "z", "[-x y-]{+z+}"),  # replace everything
    ("a fox.", "a fox!", "a fox[-.-]{+!+}"),  # punctuation is a token of its own
    ("a photo, Milan", "a photo, Milan, 2023", "a photo, Milan{+, 2023+}"),
    ("a photo of a family", "a photo, of a family", "a photo{+,+} of a family"),
    ("a dog and a dog", "a dog and a cat", "a dog and a [-dog-]{+cat+}"),  # repeated words
    ("a dog, a dog, a dog", "a dog, a dog", "a dog, a dog[-, a dog-]"),
    ("a a a", "a a", "a a [-a-]"),
    ("Italian", "italian", "[-Italian-]{+italian+}"),  # case counts
    ("a well-lit room", "a well lit room", "a [-well-lit-]{+well lit+} room"),
    ("don't stop", "do not stop", "[-don't-]{+do not+} stop"),
    ("a  fox", "a fox", "a fox"),  # whitespace is not compared
    ("", "a fox", "{+a fox+}"),
    ("a fox", "", "[-a fox-]"),
]


@pytest.mark.parametrize(("old", "new", "expected"), DIFFS)
def test_word_diff(old: str, new: str, expected: str) -> None:
    runs = diff_words(old, new)
    assert plain(runs) == expected
    # the kept and inserted runs spell the new prompt, the kept and deleted ones the old
    def spelled(ops: tuple[str, ...]) -> list[str]:
        return [t.text for t in tokens("".join(r.text for r in runs if r.op in ops))]

    assert spelled(("equal", "insert")) == [t.text for t in tokens(new)]
    assert spelled(("equal", "delete")) == [t.text for t in tokens(old)] or \
        (any(r.op == "delete" for r in runs) and any(r.op == "insert" for r in runs))


# -- parsing --------------------------------------------------------------------------------------
def trail(**body: Any) -> str:
    text = yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=1000)
    return f"```trail\n{text}```\n"


def context(root: Path, store: Store | None = None) -> Context:
    return Context(root, root / "docs", Resolver({"default": "tiny"}, root),
                   store or Store(root / ".unmake"), {})


def plan_of(root: Path, page: str, store: Store | None = None) -> Plan:
    return plan_site({"p.md": ("docs/p.md", page)}, context(root, store))


FAMILY = {"id": "family", "seeds": [1, 2], "size": 32, "steps": [
    {"prompt": "an Italian family", "steps": 2, "note": "The *ambiguous* prompt."},
    {"prompt": "a family in Italy"},
    {"prompt": "a photograph of a family, Milan, 2023", "negative": "pasta", "guidance": 3,
     "note": "Naming a place and a year."},
]}


def test_steps_inherit_what_they_do_not_change(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, trail(**FAMILY))
    [planned] = plan.pages["p.md"]
    got = [(j.inputs["prompt"], j.inputs["seed"], j.inputs["negative"], j.inputs["steps"],
            j.inputs["guidance"], j.inputs["width"]) for j in planned.jobs]
    default_guidance = planned.jobs[0].inputs["guidance"]
    assert default_guidance != 3.0
    assert got == [
        ("an Italian family", 1, "", 2, default_guidance, 32),
        ("an Italian family", 2, "", 2, default_guidance, 32),
        ("a family in Italy", 1, "", 2, default_guidance, 32),
        ("a family in Italy", 2, "", 2, default_guidance, 32),
        ("a photograph of a family, Milan, 2023", 1, "pasta", 2, 3.0, 32),
        ("a photograph of a family, Milan, 2023", 2, "pasta", 2, 3.0, 32),
    ]
    assert {j.type for j in planned.jobs} == {"generate.image"}
    outputs = KINDS["trail"].outputs(planned)  # type: ignore[misc]
    assert [o.axes["step"] for o in outputs] == ["step 1"] * 2 + ["step 2"] * 2 + ["step 3"] * 2


def test_images_are_shared_with_a_generate_figure(tmp_path: Path) -> None:
    page = trail(**FAMILY) + "\n" + generate(prompt="a family in Italy", seeds=[2, 9])
    plan = plan_of(tmp_path, page)
    [trail_fig, grid] = plan.pages["p.md"]
    assert grid.jobs[0] is trail_fig.jobs[3]  # seed 2 of step 2: one job for both figures
    assert len(plan.jobs) == 6 + 1
    assert len(grid.jobs[0].origins) == 2


BAD = {
    "no steps": ({"seeds": 2}, "```trail", "'steps' is required"),
    "steps not a list": ({"steps": "a fox"}, "steps:", "'steps' must be a list of steps"),
    "first without prompt": ({"steps": [{"note": "hm"}]}, "- note:",
                             "'steps[0]' needs a prompt"),
    "unknown step key": ({"steps": [{"prompt": "a"}, {"promt": "b"}]}, "- promt:",
                         "'steps[1].promt' is not a known key of a trail step (known: prompt, "
                         "note, seeds, model, negative, steps, guidance, size, width, height, "
                         "scheduler); did you mean 'prompt'?"),
    "bad guidance": ({"steps": [{"prompt": "a"}, {"prompt": "b", "guidance": 99}]},
                     "guidance: 99", "'steps[1].guidance' must be 0.0–30.0, got 99"),
    "size and width": ({"steps": [{"prompt": "a", "size": 32, "width": 64}]}, "size: 32",
                       "'steps[0].size' give either size or width/height, not both"),
    "variants": ({"steps": [{"prompt": "a {red|blue} fox"}]}, "prompt:",
                 "'steps[0].prompt' spells 2 prompts; a trail step takes one"),
    "nothing changed": ({"steps": [{"prompt": "a"}, {"prompt": "a", "note": "again"}]},
                        "- prompt: a", "'steps[1]' changes nothing from step 1"),
    "note not text": ({"steps": [{"prompt": "a", "note": ["x"]}]}, "note:",
                      "'steps[0].note' must be text (Markdown)"),
    "step not a mapping": ({"steps": ["a fox"]}, "- a fox",
                           "'steps[0]' must be a mapping with a prompt"),
    "empty value": ({"steps": [{"prompt": "a", "negative": None}]}, "negative:",
                    "'steps[0].negative' is empty"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_trail_is_one_error_naming_the_key_and_line(tmp_path: Path, case: str) -> None:
    body, line_with, message = BAD[case]
    page = "# T\n\n" + trail(**body)
    with pytest.raises(DirectiveError) as err:
        plan_of(tmp_path, page)
    text = str(err.value)
    assert "\n" not in text
    line = next(i for i, t in enumerate(page.splitlines(), 1) if line_with in t
                and (case != "nothing changed" or i > 5))
    assert text.startswith(f"docs/p.md:{line}: trail: {message}"), text


# -- notes ----------------------------------------------------------------------------------------
def test_notes_are_markdown_without_raw_html_or_unsafe_links() -> None:
    html = note_html("Some *emphasis*, a [source](https://example.org/a?b=1&c=2), "
                     "<script>alert(1)</script> and [bad](javascript:alert(1)).\n\n"
                     "<div onclick='x()'>block</div>\n\n- one\n- two\n\n"
                     "![a picture](https://tracker.example/pixel.png)")
    tags = Elements(html)
    assert [a.get("href") for a in tags.all("a")] == ["https://example.org/a?b=1&c=2", None]
    assert not tags.all("script") and not tags.all("div") and not tags.all("img")
    assert "<em>emphasis</em>" in html and "<li>one</li>" in html
    text = tags.text()
    assert "<script>alert(1)</script>" in text  # shown as the text it is
    assert "<div onclick='x()'>block</div>" in text
    assert "a picture" in text and "tracker" not in html


# -- what an edit runs ---------------------------------------------------------------------------
def png(rgb: tuple[int, int, int], size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.tile(np.array(rgb, np.uint8), (size, size, 1))).save(buf, "PNG")
    return buf.getvalue()


def fill(store: Store, plan: Plan) -> None:
    """Store a solid image for every missing job, as a runner would (no model)."""
    for n, job in enumerate(plan.missing):
        store.put(job.key, job.describe(), Result(
            data={"parameters": f"{job.inputs['prompt']}\nSeed: {job.inputs['seed']}",
                  "scheduler": "PNDMScheduler", "safety": {"checked": False}},
            files={"image": (png((40 * n % 256, 90, 200)), "png")},
            env={"diffusers": "X", "torch": "X", "device": "cpu", "dtype": "float32"},
            seconds=0.5))


def test_editing_a_note_runs_nothing_and_a_prompt_only_its_step(tmp_path: Path) -> None:
    store = Store(tmp_path / ".unmake")
    fill(store, plan_of(tmp_path, trail(**FAMILY), store))
    steps = [dict(s) for s in FAMILY["steps"]]  # type: ignore[attr-defined]
    steps[0]["note"] = "Rewritten: **every** image is a dinner table."
    assert plan_of(tmp_path, trail(**{**FAMILY, "steps": steps}), store).missing == []
    steps[1]["prompt"] = "a family living in Italy"
    plan = plan_of(tmp_path, trail(**{**FAMILY, "steps": steps}), store)
    assert sorted((j.inputs["prompt"], j.inputs["seed"]) for j in plan.missing) == [
        ("a family living in Italy", 1), ("a family living in Italy", 2)]


# -- the rendered figure ---------------------------------------------------------------------------
def normalised(html: str) -> str:
    html = re.sub(r"[0-9a-f]{64}", "<sha256>", html)
    html = re.sub(r"[0-9a-f]{16}", "<key>", html)
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<created>", html)


def test_trail_html_snapshot(tmp_path: Path) -> None:
    store = Store(tmp_path / ".unmake")
    body = {**FAMILY, "caption": "Three revisions <of> one question."}
    fill(store, plan_of(tmp_path, trail(**body), store))
    [planned] = plan_of(tmp_path, trail(**body), store).pages["p.md"]
    html = KINDS["trail"].render(planned, PageRender(Renderer(store), lambda path: path))
    got = normalised(html) + "\n"
    snapshot = SNAPSHOTS / "trail.html"
    if os.environ.get("UNMAKE_UPDATE_SNAPSHOTS") or not snapshot.exists():
        snapshot.parent.mkdir(exist_ok=True)
        snapshot.write_text(got, "utf-8")
    assert got == snapshot.read_text("utf-8")
    # what the snapshot must show, whatever it is updated to
    tags = Elements(html)
    assert "Three revisions &lt;of&gt; one question." in html
    assert len(tags.all("img")) == 6 and len(tags.all("li", "unmake-trail-step")) == 3
    text = " ".join(tags.text().split())
    assert "[-an Italian-]{+a+} family {+in Italy+}" in text
    assert "negative: (none) → pasta" in text and "guidance: 7.5 → 3.0" in text
    assert "<em>ambiguous</em>" in html


# -- a real build ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_build_trail_with_the_tiny_model_and_measure_it_by_step(zine) -> None:
    measure = yaml.safe_dump({"of": "family", "by": "step", "palette": 2}, sort_keys=False)
    z = zine({"index.md": "# Trail\n\n" + trail(**FAMILY) + "\n```measure\n" + measure
              + "```\n"})
    run = z.unmake("build", "--strict")
    assert run.rc == 0, run.output
    html = z.html()
    tags = Elements(html)
    assert len(tags.all("img", "off-glb")) >= 6
    for img in tags.all("img", "off-glb")[:6]:
        assert z.site_file("index.md", img["src"]).is_file()
    text = " ".join(tags.text().split())
    assert "step 1" in text and "step 3" in text
    again = z.unmake("build", "--strict")
    assert "nothing to run" in again.output
