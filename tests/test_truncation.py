"""Prompts longer than the text encoder reads: counted with the pipeline's own tokenizer, stored
in the record (`data["truncated"]`), logged with the directive's place, and shown in the figure.

Two tiers: the counting against the tiny model's real CLIP tokenizer (in-process, no pipeline);
and one end-to-end build (tiny model, CPU) of a long and a short prompt.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import Elements, Run, Zine, generate, make_zine

from generator.backends.diffusion import truncation, truncations

# Every word below is one CLIP token (the test checks), so the counts are exact: CLIP reads 77
# tokens, its start and end markers take two, so 75 of the text.
SEEN = " ".join(["a red fox"] * 25)  # 75 tokens
LONG = SEEN + " wearing a tiny purple hat"  # 5 tokens too many
NEGATIVE = " ".join(["blurry"] * 74) + " ugly extra fingers"  # 2 too many; "ugly" is read
SHORT = "a red fox in the snow"


@pytest.fixture(scope="module")
def tokenizer(unmake_env: dict[str, str]) -> Any:
    """The tiny model's tokenizer, as its pipeline loads it (the model written if need be)."""
    from transformers import CLIPTokenizer

    from generator.backends.tiny import ensure_tiny
    from generator.models import tiny_ref

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNMAKE_CACHE", unmake_env["UNMAKE_CACHE"])
        folder = ensure_tiny(tiny_ref())
    return CLIPTokenizer.from_pretrained(folder / "tokenizer")


# -- counting ------------------------------------------------------------------------------------
def test_the_test_words_are_one_token_each(tokenizer: Any) -> None:
    for word in {*LONG.split(), *NEGATIVE.split(), *SHORT.split()}:
        assert len(tokenizer.tokenize(word)) == 1, word
    assert tokenizer.model_max_length == 77


def test_a_long_prompt_names_the_words_never_read(tokenizer: Any) -> None:
    assert truncation(tokenizer, LONG) == {
        "tokens": 5, "limit": 77, "read": 75, "unseen": "wearing a tiny purple hat"}
    assert truncation(tokenizer, NEGATIVE) == {
        "tokens": 2, "limit": 77, "read": 75, "unseen": "extra fingers"}


@pytest.mark.parametrize("text", [SHORT, SEEN, "", "   "])
def test_a_prompt_that_fits_is_no_finding(tokenizer: Any, text: str) -> None:
    assert truncation(tokenizer, text) is None


def test_a_word_cut_in_two_counts_as_unseen(tokenizer: Any) -> None:
    # "watermark" is two tokens: water|mark; the 75th token is "water"
    text = " ".join(["fox"] * 74) + " watermark here"
    assert truncation(tokenizer, text) == {
        "tokens": 2, "limit": 77, "read": 75, "unseen": "watermark here"}


def test_what_one_encoder_reads_is_not_unseen(tokenizer: Any) -> None:
    """With two text encoders (SD3: CLIP and T5), only what neither reads is unseen."""
    pipe = SimpleNamespace(tokenizer=tokenizer, tokenizer_2=tokenizer)
    assert truncations(pipe, {"prompt": LONG, "negative": SHORT}) == {
        "prompt": truncation(tokenizer, LONG)}

    class Longer:  # a tokenizer whose encoder reads 256 tokens, as SD3's T5 does
        model_max_length = 256
        tokenize = staticmethod(tokenizer.tokenize)

        def num_special_tokens_to_add(self) -> int:
            return 1

    both = SimpleNamespace(tokenizer=tokenizer, tokenizer_2=None, tokenizer_3=Longer())
    assert truncations(both, {"prompt": LONG, "negative": NEGATIVE}) == {}
    assert truncations(SimpleNamespace(), {"prompt": LONG, "negative": ""}) == {}


# -- a build -------------------------------------------------------------------------------------
PAGE = ("# Long and short\n\n"
        + generate(id="long", prompt=LONG, negative=NEGATIVE, seeds=[1, 2]) + "\n"
        + generate(id="short", prompt=SHORT) + "\n")


@pytest.fixture(scope="module")
def built_long(tmp_path_factory: pytest.TempPathFactory,
               unmake_env: dict[str, str]) -> tuple[Zine, Run]:
    zine = make_zine(tmp_path_factory.mktemp("long") / "zine", {"index.md": PAGE}, unmake_env)
    run = zine.unmake("build")
    assert run.rc == 0, run.output
    return zine, run


def figure(html: str, figure_id: str) -> str:
    start = html.rindex("<figure", 0, html.index(f'id="{figure_id}"'))
    return html[start:html.index("</figure>", start)]


def test_the_record_says_what_was_never_read(built_long: tuple[Zine, Run]) -> None:
    zine, _ = built_long
    records = [zine.record(key) for key in zine.records()]
    long = [r for r in records if r["inputs"]["prompt"] == LONG]
    short = [r for r in records if r["inputs"]["prompt"] == SHORT]
    assert len(long) == 2 and len(short) == 1
    for record in long:
        assert record["data"]["truncated"] == {
            "prompt": {"tokens": 5, "limit": 77, "read": 75,
                       "unseen": "wearing a tiny purple hat"},
            "negative": {"tokens": 2, "limit": 77, "read": 75, "unseen": "extra fingers"}}
    assert "truncated" not in short[0]["data"]


def test_the_build_log_names_the_directive_once(built_long: tuple[Zine, Run]) -> None:
    zine, run = built_long
    where = f"docs/index.md:{zine.line_of('index.md', '```generate')}"
    lines = [line for line in run.output.splitlines() if "never saw" in line]
    assert len(lines) == 2, lines  # the prompt and the negative, once for both seeds
    assert lines[0].startswith("INFO")
    assert f"{where}: the text encoder reads 75 tokens of a prompt; this one has 5 more, " \
           "so the model never saw «wearing a tiny purple hat»" in lines[0]
    assert f"{where}: the text encoder reads 75 tokens of a negative prompt; this one has 2 " \
           "more, so the model never saw «extra fingers»" in lines[1]


def test_the_figure_says_what_was_never_read(built_long: tuple[Zine, Run]) -> None:
    zine, _ = built_long
    html = zine.html()
    long, short = figure(html, "long"), figure(html, "short")
    # a small marker on each cell, and the words in its provenance panel
    markers = Elements(long).all("p", "unmake-truncated")
    assert len(markers) == 2
    assert markers[0]["title"] == (
        "prompt: the model read only the first 75 tokens; it never saw: "
        "«wearing a tiny purple hat»; negative prompt: the model read only the first 75 "
        "tokens; it never saw: «extra fingers»")
    unseen = re.findall(r'<dd class="unmake-unseen">(.*?)</dd>', long)
    assert unseen == ["the model read only the first 75 tokens; it never saw: "
                      "«wearing a tiny purple hat»",
                      "the model read only the first 75 tokens; it never saw: "
                      "«extra fingers»"] * 2
    assert "<img" in long  # a finding, not a failure: the images are there
    assert "unmake-truncated" not in short and "never saw" not in short


def test_a_rebuild_shows_it_from_the_store(built_long: tuple[Zine, Run], tmp_path: Path) -> None:
    zine = built_long[0].copy(tmp_path / "z")
    run = zine.unmake("build")
    assert run.rc == 0, run.output
    assert "nothing to run" in run.output
    assert "never saw" not in run.output  # logged when the image is made, not on every build
    assert "it never saw: «wearing a tiny purple hat»" in zine.html()
