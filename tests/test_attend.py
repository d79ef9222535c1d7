"""`attend`: recording attention leaves the image bit-identical, the maps of two words differ and
each sums to 1, words are found among the tokens, errors name the key, and a real build draws
the overlays from the stored arrays."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import Elements

from generator.errors import DirectiveError
from generator.kinds.attend import content_words
from generator.models import Resolver
from generator.plan import plan_site
from generator.store import Store
from generator.types import Context, Plan

SOURCE = ("# Source\n\n```generate\nid: src\nprompt: \"a red fox\"\nseeds: [1]\nsize: 32\n"
          "steps: 2\n```\n\n")


def attend(**body: Any) -> str:
    return f"```attend\n{yaml.safe_dump(body, sort_keys=False, width=1000)}```\n"


def plan_of(root: Path, page: str) -> Plan:
    ctx = Context(root, root / "docs", Resolver({"default": "tiny"}, root),
                  Store(root / ".unmake"), {})
    return plan_site({"p.md": ("docs/p.md", page)}, ctx)


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory: pytest.TempPathFactory, unmake_env: dict[str, str]) -> Any:
    """The tiny model's pipeline (as `attend` loads it) and a planned image job of it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNMAKE_CACHE", unmake_env["UNMAKE_CACHE"])
        from generator.backends import img2img

        root = tmp_path_factory.mktemp("attend")
        [_, planned] = plan_of(root, SOURCE + attend(of="src")).pages["p.md"]
        pipe, _, original, *_ = img2img.pipelines(planned.jobs[0], {"device": "cpu"})
        [image_job] = plan_of(root, SOURCE).pages["p.md"][0].jobs
        from generator.backends.diffusion import set_scheduler

        set_scheduler(pipe, "default", original)
        yield pipe, image_job


def test_recording_attention_leaves_the_image_bit_identical(tiny_pipe: Any) -> None:
    from generator.backends.attention import generate_recording

    pipe, job = tiny_pipe
    plain, _ = generate_recording(pipe, job, record=False)
    recorded, total = generate_recording(pipe, job, record=True)
    assert np.array_equal(np.asarray(plain), np.asarray(recorded))
    side = 32 // pipe.vae_scale_factor  # the latent of a 32 px image
    assert total is not None and total.shape == (pipe.tokenizer.model_max_length, side, side)
    # the processors are the original ones again afterwards
    assert not any(type(p).__name__ == "_Recording" for p in pipe.unet.attn_processors.values())


def test_maps_of_two_words_differ_and_each_sums_to_one(tiny_pipe: Any) -> None:
    from generator.backends.attention import generate_recording, word_maps, word_tokens

    pipe, job = tiny_pipe
    _, total = generate_recording(pipe, job)
    maps = word_maps(total, word_tokens(pipe.tokenizer, "a red fox", ["red", "fox"]))
    assert set(maps) == {"red", "fox"}
    for m in maps.values():
        assert m.dtype == np.float32 and (m >= 0).all()
        assert abs(float(m.sum()) - 1.0) < 1e-5
    assert np.abs(maps["red"] - maps["fox"]).sum() > 1e-3


@pytest.mark.parametrize(("prompt", "words", "expected"), [
    ("a red fox", ["red", "fox"], {"red": [2], "fox": [3]}),
    ("a fox, a red fox", ["fox"], {"fox": [2, 6]}),  # both; the comma is token 3
    ("a Red fox.", ["red", "fox"], {"red": [2], "fox": [3]}),  # case and punctuation
    ("a dog", ["cat"], {"cat": []}),
])
def test_words_are_found_among_the_tokens(tiny_pipe: Any, prompt: str, words: list[str],
                                          expected: dict[str, list[int]]) -> None:
    from generator.backends.attention import word_tokens

    pipe, _ = tiny_pipe
    assert word_tokens(pipe.tokenizer, prompt, words) == expected


def test_a_word_cut_into_pieces_counts_every_piece(tiny_pipe: Any) -> None:
    from generator.backends.attention import word_tokens

    pipe, _ = tiny_pipe
    pieces = len(pipe.tokenizer.tokenize("photojournalistic"))
    assert pieces > 1
    found = word_tokens(pipe.tokenizer, "a photojournalistic fox", ["photojournalistic", "fox"])
    assert found == {"photojournalistic": list(range(2, 2 + pieces)), "fox": [2 + pieces]}


def test_default_words_are_the_content_words() -> None:
    assert content_words("a portrait photo of a doctor, in the studio") == [
        "portrait", "photo", "doctor", "studio"]


@pytest.mark.parametrize(("words", "message"), [
    (["two words"], "'words' must be single words"),
    ([f"w{i}" for i in range(13)], "'words' must list 1–12 words"),
    ([], "'words' must list 1–12 words"),
])
def test_bad_words_are_one_error(tmp_path: Path, words: list[str], message: str) -> None:
    page = SOURCE + attend(of="src", words=words)
    with pytest.raises(DirectiveError) as err:
        plan_of(tmp_path, page)
    assert str(err.value).startswith(f"docs/p.md:{page.splitlines().index('```attend') + 3}: "
                                     f"attend: {message}") or message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_build_stores_arrays_and_draws_overlays(zine) -> None:
    z = zine({"index.md": SOURCE + attend(of="src", words=["red", "fox", "cat"])})
    run = z.unmake("build", "--strict")
    assert run.rc == 0, run.output
    [record] = [z.record(k) for k in z.records() if z.record(k)["type"] == "attend.maps"]
    assert record["data"]["words"] == ["red", "fox"] and record["data"]["absent"] == ["cat"]
    assert record["data"]["same_as_image"] is True  # one image: made in a batch of one both times
    with np.load(io.BytesIO(z.blob(record, "maps").read_bytes())) as npz:
        maps = [npz["w0"], npz["w1"]]
    assert all(abs(float(m.sum()) - 1) < 1e-5 for m in maps)
    tags = Elements(z.html())
    overlays = [i for i in tags.all("img") if "/attend/" in i["src"]]
    assert len(overlays) == 2
    for img in overlays:
        assert z.site_file("index.md", img["src"]).is_file()
    assert "not in this prompt" in tags.text()
    assert "Tang et al." in tags.text()
