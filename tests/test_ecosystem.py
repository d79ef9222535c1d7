"""The `ecosystem` directive: facts read from model files (no weights loaded), rendered as a fact
sheet or side by side, built end to end and rebuilt frozen from the store."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from generator import modelfacts
from generator.cli import main
from generator.errors import DirectiveError
from generator.execute import execute
from generator.keys import digest
from generator.kinds import KINDS
from generator.models import Resolver, tiny_ref
from generator.plan import parse_page, plan_site
from generator.render import PageRender, Renderer
from generator.store import Store
from generator.types import Context, Job

CARD = """---
license: openrail
base_model: example/base-model
datasets:
- example/captions-1
language: [en, de]
tags: [text-to-image, test]
---

# A test model made by tests/test_ecosystem.py
"""


def make_model(folder: Path, card: str | None = CARD, width: int = 8) -> Path:
    """A small diffusers-layout folder: index, configs, safetensors weights, tokenizer, card."""
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
             "unet": ["diffusers", "UNet2DConditionModel"],
             "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"],
             "scheduler": ["diffusers", "DDIMScheduler"],
             "safety_checker": [None, None]}
    files = {
        "model_index.json": index,
        "unet/config.json": {"_class_name": "UNet2DConditionModel", "sample_size": 16,
                             "block_out_channels": [width, width * 2],
                             "cross_attention_dim": width},
        "text_encoder/config.json": {"hidden_size": width, "num_hidden_layers": 2,
                                     "vocab_size": 5},
        "scheduler/scheduler_config.json": {"_class_name": "DDIMScheduler",
                                            "prediction_type": "epsilon"},
        "tokenizer/tokenizer_config.json": {"model_max_length": 77},
        "tokenizer/vocab.json": {"a": 0, "b": 1, "c": 2, "<|startoftext|>": 3,
                                 "<|endoftext|>": 4},
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(data), "utf-8")
    save_file({"conv.weight": np.zeros((width, 4, 3, 3), np.float32),
               "conv.bias": np.zeros(width, np.float32)},
              str(folder / "unet/diffusion_pytorch_model.safetensors"))
    # a half-precision variant of the same weights: listed, not counted twice
    save_file({"conv.weight": np.zeros((width, 4, 3, 3), np.float16),
               "conv.bias": np.zeros(width, np.float16)},
              str(folder / "unet/diffusion_pytorch_model.fp16.safetensors"))
    save_file({"embed.weight": np.zeros((5, width), np.float32),
               "position_ids": np.arange(77, dtype=np.int64)[None]},
              str(folder / "text_encoder/model.safetensors"), metadata={"format": "pt"})
    if card is not None:
        (folder / "README.md").write_text(card, "utf-8")
    return folder


# -- reading ----------------------------------------------------------------------------------
def test_safetensors_header_counts_shapes(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file({"a": np.zeros((3, 4), np.float32), "b": np.zeros(5, np.float16),
               "ids": np.arange(7, dtype=np.int64)}, str(path), metadata={"format": "np"})
    tensors, meta = modelfacts.read_safetensors_header(path)
    assert tensors == {"a": {"dtype": "F32", "shape": [3, 4]},
                       "b": {"dtype": "F16", "shape": [5]},
                       "ids": {"dtype": "I64", "shape": [7]}}
    assert meta == {"format": "np"}
    assert modelfacts.summarise_tensors(tensors) == {
        "tensors": 3, "dtypes": ["F16", "F32", "I64"], "parameters": 17, "other_elements": 7}


@pytest.mark.parametrize("data", [
    b"\x01\x02",  # too short for the length
    struct.pack("<Q", 1 << 40) + b"{}",  # length beyond the file
    struct.pack("<Q", 4) + b"nope",  # not JSON
    struct.pack("<Q", 2) + b"[]",  # not an object
    struct.pack("<Q", 28) + b'{"x":{"dtype":"F32","shape"}',  # broken JSON
])
def test_malformed_safetensors_is_a_clear_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"bad\.safetensors"):
        modelfacts.read_safetensors_header(path)


def test_facts_of_a_folder_model(tmp_path: Path) -> None:
    facts = modelfacts.read_facts(make_model(tmp_path / "m"))
    json.dumps(facts)  # JSON-able as it is
    assert facts["pipeline_class"] == "StableDiffusionPipeline"
    assert facts["diffusers_version"] == "0.30.0"
    comps = facts["components"]
    assert comps["safety_checker"]["included"] is False
    assert comps["unet"]["class"] == "UNet2DConditionModel"
    assert comps["unet"]["config"]["block_out_channels"] == [8, 16]
    assert comps["unet"]["parameters"] == 8 * 4 * 9 + 8  # the fp16 variant is not added
    assert comps["unet"]["counted_variant"] is None
    assert {w["variant"] for w in comps["unet"]["weights"]} == {None, "fp16"}
    assert comps["unet"]["dtypes"] == ["F16", "F32"]
    assert comps["text_encoder"]["parameters"] == 40  # int64 position_ids are not parameters
    assert comps["text_encoder"]["other_elements"] == 77
    assert comps["tokenizer"]["vocab_size"] == 5
    assert comps["scheduler"]["config"]["prediction_type"] == "epsilon"
    assert facts["parameters_total"] == 8 * 4 * 9 + 8 + 40
    sizes = [p.stat().st_size for p in (tmp_path / "m").rglob("*.safetensors")]
    assert facts["weight_bytes_total"] == sum(sizes)
    card = facts["card"]
    assert card["front_matter"] == "present"
    assert card["license"] == "openrail"
    assert card["base_model"] == "example/base-model"
    assert card["datasets"] == ["example/captions-1"]
    assert card["language"] == ["en", "de"]
    assert card["tags"] == ["text-to-image", "test"]
    assert card["license_name"] is None  # absent, not guessed
    assert facts["problems"] == []


@pytest.mark.parametrize(("card", "state"), [
    (None, "absent"),
    ("# just prose, no front matter\n", "absent"),
    ("---\nlicense: [unclosed\n---\n", "invalid"),
])
def test_missing_or_broken_card_gives_absent_facts(tmp_path: Path, card: str | None,
                                                   state: str) -> None:
    facts = modelfacts.read_facts(make_model(tmp_path / "m", card=card))
    assert facts["card"]["front_matter"] == state
    assert facts["card"]["file"] == (None if card is None else "README.md")
    assert all(facts["card"][k] is None for k in modelfacts.CARD_KEYS)
    assert bool(facts["problems"]) == (state == "invalid")


def test_facts_of_a_hugging_face_cache_snapshot(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub cache keeps files as blobs with symlinks from the snapshot: sizes are the blobs'."""
    made = make_model(tmp_path / "made")
    entry = tmp_path / "hub/models--org--repo"
    snapshot = entry / "snapshots/abc123"
    for path in sorted(made.rglob("*")):
        if path.is_file():
            blob = entry / "blobs" / digest(path.read_bytes())
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, blob)
            link = snapshot / path.relative_to(made)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(blob)
    (entry / "refs").mkdir()
    (entry / "refs/main").write_text("abc123", "utf-8")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    ctx = _ctx(tmp_path, {"hub": "org/repo"})
    html = _render(ctx, "```ecosystem\nmodels: [hub]\nfacts: [parameters, license, source]\n```\n")
    assert "hf-cache: org/repo" in html
    assert "openrail" in _row(html, "licence")
    assert f"{8 * 4 * 9 + 8 + 40:,}" in _row(html, "total parameters")
    [job] = ctx.store.records()
    assert job["inputs"] == {"model": "hf:org/repo@abc123",
                             "reader": modelfacts.READER_VERSION}


def test_unreadable_weights_leave_parameters_absent(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "m")
    (folder / "unet/diffusion_pytorch_model.safetensors").write_bytes(b"\xff" * 16)
    (folder / "text_encoder/model.safetensors").unlink()
    (folder / "text_encoder/pytorch_model.bin").write_bytes(b"pickle")
    facts = modelfacts.read_facts(folder)
    assert facts["components"]["unet"]["parameters"] is None
    assert facts["components"]["text_encoder"]["parameters"] is None
    assert facts["parameters_total"] is None
    assert facts["parameters_uncounted"] == ["text_encoder", "unet"]
    assert any("diffusion_pytorch_model.safetensors" in p for p in facts["problems"])


def test_facts_of_the_tiny_model(unmake_env: dict[str, str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNMAKE_CACHE", unmake_env["UNMAKE_CACHE"])  # the session's tiny model
    ref = tiny_ref("default")
    job = Job("ecosystem.facts", {"model": ref.fingerprint, "reader": modelfacts.READER_VERSION},
              group=("ecosystem",),
              run={"model": "default", "ref": "tiny", "source": "builtin", "path": ref.path})
    [(done, result)] = list(modelfacts.run([job], {}))
    assert done is job
    assert not isinstance(result, Exception), result
    facts = result.data
    assert facts["pipeline_class"] == "StableDiffusionPipeline"
    comps = facts["components"]
    assert comps["unet"]["config"]["block_out_channels"] == [32, 64]
    assert comps["text_encoder"]["config"]["hidden_size"] == 32
    assert comps["vae"]["config"]["latent_channels"] == 4
    assert comps["scheduler"]["class"] == "PNDMScheduler"
    assert comps["tokenizer"]["vocab_size"] == 49408
    assert facts["parameters_total"] == sum(
        comps[n]["parameters"] for n in ("unet", "text_encoder", "vae"))
    assert facts["dtypes"] == ["F32"]
    assert facts["card"]["license"] == "mit"
    assert facts["card"]["datasets"] == []
    assert facts["card"]["language"] is None


# -- directive, plan and render -----------------------------------------------------------------
def _ctx(tmp_path: Path, models: dict[str, str]) -> Context:
    store = Store(tmp_path / ".unmake")
    resolver = Resolver({"default": "tiny", **models}, tmp_path,
                        memo=store.memo("fingerprints"))
    return Context(tmp_path, tmp_path / "docs", resolver, store, {})


def _render(ctx: Context, text: str) -> str:
    plan = plan_site({"p.md": ("docs/p.md", text)}, ctx)
    failures = execute(plan, ctx.store, {})
    assert failures == {}
    page = PageRender(Renderer(ctx.store), lambda path: path)
    return "\n".join(KINDS[p.directive.kind].render(p, page) for p in plan.pages["p.md"])


def _row(html: str, label: str) -> str:
    html = html.replace("<wbr>", "")  # names carry break opportunities after _ . / -
    match = re.search(rf"<tr[^>]*>\s*<th scope=\"row\">(?:<code>)?{re.escape(label)}(?:</code>)?"
                      r"</th>.*?</tr>", html, re.S)
    assert match, f"no row {label!r}"
    return match.group(0)


def test_side_by_side_highlights_differences(tmp_path: Path) -> None:
    make_model(tmp_path / "a")
    make_model(tmp_path / "b", card=CARD.replace("openrail", "mit"), width=16)
    ctx = _ctx(tmp_path, {"a": "a", "b": "b", "bare": "c"})
    make_model(tmp_path / "c", card=None)
    html = _render(ctx, "```ecosystem\nmodels: [a, b, bare]\ncaption: three\n```\n")
    assert 'class="unmake-diff"' in _row(html, "licence")
    assert "unmake-diff" in _row(html, "unet block_out_channels")
    assert "[16, 32]" in _row(html, "unet block_out_channels")
    assert "unmake-diff" not in _row(html, "pipeline class")
    assert "unmake-diff" not in _row(html, "text_encoder num_hidden_layers")
    # the card-less model shows absence, styled, with the reason
    licence = _row(html, "licence")
    assert '<em class="unmake-absent">absent</em>' in licence
    assert "no README.md model card" in licence
    assert "Figure 1." in html
    assert "safetensors headers (no weights loaded)" in html


def test_single_sheet_and_subset(tmp_path: Path) -> None:
    make_model(tmp_path / "a")
    ctx = _ctx(tmp_path, {"a": "a"})
    html = _render(ctx, "```ecosystem\nmodel: a\nfacts: [datasets, parameters]\n```\n")
    assert "unmake-diff" not in html  # one model: nothing to compare
    assert "example/captions-1" in _row(html, "datasets")
    assert "unet parameters" in html
    assert "licence" not in html and "pipeline class" not in html
    assert html.index("datasets") < html.index("unet parameters")  # the author's order


def test_hostile_card_is_escaped(tmp_path: Path) -> None:
    hostile = CARD.replace("license: openrail", "license: \"<script>alert(1)</script>\"")
    hostile = hostile.replace("tags: [text-to-image, test]",
                              "tags: ['<img src=x onerror=alert(2)>']")
    make_model(tmp_path / "a", card=hostile)
    html = _render(_ctx(tmp_path, {"a": "a"}), "```ecosystem\nmodel: a\n```\n")
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html


def test_unread_and_failed_models_are_shown_as_such(tmp_path: Path) -> None:
    make_model(tmp_path / "a")
    make_model(tmp_path / "b")
    (tmp_path / "b/model_index.json").write_text("{broken", "utf-8")  # resolves, cannot be read
    ctx = _ctx(tmp_path, {"a": "a", "b": "b"})
    plan = plan_site({"p.md": ("docs/p.md", "```ecosystem\nmodels: [a, b]\n```\n")}, ctx)
    [planned] = plan.pages["p.md"]
    unread = KINDS["ecosystem"].render(planned, PageRender(Renderer(ctx.store), str))
    assert "facts of a not read yet" in unread and "facts of b not read yet" in unread
    failures = execute(plan, ctx.store, {})
    assert list(failures) == [planned.jobs[1].key]
    html = KINDS["ecosystem"].render(planned, PageRender(Renderer(ctx.store, failures=failures),
                                                         str))
    assert "reading the facts of b failed" in html
    assert "model_index.json is missing or not valid JSON" in html
    assert str(tmp_path) not in html  # no local paths in the page
    assert "unmake-diff" not in _row(html, "licence")  # nothing to compare a failure with


def test_reading_facts_imports_no_torch() -> None:
    code = ("import sys, generator.kinds.ecosystem, generator.modelfacts; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_side_by_side_reuses_single_sheet_jobs(tmp_path: Path) -> None:
    make_model(tmp_path / "a")
    ctx = _ctx(tmp_path, {"a": "a"})
    text = ("```ecosystem\nmodel: default\n```\n\n```ecosystem\nmodel: a\n```\n\n"
            "```ecosystem\nmodels: [default, a]\n```\n")
    plan = plan_site({"p.md": ("docs/p.md", text)}, ctx)
    assert len(plan.jobs) == 2
    assert {j.type for j in plan.jobs.values()} == {"ecosystem.facts"}
    assert all("path" not in j.inputs for j in plan.jobs.values())


def test_editing_the_card_changes_the_key(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "a")
    ctx = _ctx(tmp_path, {"a": "a"})
    [job] = KINDS["ecosystem"].expand(parse_page("```ecosystem\nmodel: a\n```\n", "p.md", ctx)[0]
                                      .spec, ctx)
    (folder / "README.md").write_text(CARD.replace("openrail", "apache-2.0"), "utf-8")
    ctx = _ctx(tmp_path, {"a": "a"})
    [again] = KINDS["ecosystem"].expand(parse_page("```ecosystem\nmodel: a\n```\n", "p.md", ctx)[0]
                                        .spec, ctx)
    assert job.inputs["model"] == again.inputs["model"]  # the weights did not change...
    assert job.key != again.key  # ...but the facts did


@pytest.mark.parametrize(("body", "key", "message"), [
    ("models: [default, nowhere]", "models", "'nowhere' not found"),
    ("model: nowhere", "model", "'nowhere' not found"),
    ("model: default\nmodels: [default]", "models", "not both"),
    ("models: [default, default]", "models", "twice"),
    ("facts: [licence]", "facts", "did you mean 'license'"),
    ("facts: [tags, tags]", "facts", "twice"),
    ("modle: default", "modle", "did you mean 'model'"),
])
def test_bad_directives_name_file_line_and_key(tmp_path: Path, body: str, key: str,
                                               message: str) -> None:
    ctx = _ctx(tmp_path, {})
    text = "# page\n\n```ecosystem\n" + body + "\n```\n"
    with pytest.raises(DirectiveError) as info:
        parse_page(text, "docs/p.md", ctx)
    line = 4 + next(i for i, ln in enumerate(body.splitlines()) if ln.startswith(key + ":"))
    assert str(info.value).startswith(f"docs/p.md:{line}: ecosystem: '{key}' ")
    assert message in str(info.value)


# -- end to end ---------------------------------------------------------------------------------
PAGE = """# Ecosystem

```ecosystem
model: default
```

```ecosystem
models: [default, other]
caption: side by side
```
"""


def _facts_html(site: Path) -> str:
    html = (site / "eco/index.html").read_text("utf-8")
    return "\n".join(re.findall(r'<figure class="unmake-figure unmake-ecosystem".*?</figure>',
                                html, re.S))


@pytest.mark.slow
def test_build_then_frozen_rebuild_without_the_folder(
        zine: Any, unmake_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("UNMAKE_CACHE", "HF_HUB_CACHE"):  # in-process builds share the session's cache
        monkeypatch.setenv(name, unmake_env[name])
    project = zine({"index.md": "# zine\n", "eco.md": PAGE}, models={"other": "./other-model"})
    make_model(project.root / "other-model")
    config = str(project.root / "mkdocs.yml")
    assert main(["build", "-f", config]) == 0
    first = _facts_html(project.site)
    assert first.count("<figure") == 2
    assert "openrail" in first and "StableDiffusionPipeline" in first
    assert len(project.records()) == 2  # one fact sheet per model, shared by both directives

    shutil.rmtree(project.root / "other-model")
    shutil.rmtree(project.site)
    assert main(["build", "-f", config, "--frozen"]) == 0
    assert _facts_html(project.site) == first

    # without --frozen the missing folder is an author-facing error, not a stale page
    assert main(["build", "-f", config]) == 1


def test_unknown_alias_fails_with_one_line(zine: Any) -> None:
    project = zine({"eco.md": "# Ecosystem\n\nSome text.\n\n```ecosystem\n"
                              "models: [default, nowhere]\n```\n"})
    run = project.unmake("build")
    assert run.rc != 0
    hits = [line for line in run.output.splitlines() if "eco.md:" in line]
    assert len(hits) == 1, run.output
    assert "docs/eco.md:6: ecosystem: 'models' 'nowhere' not found" in hits[0]


@pytest.mark.slow
def test_sample_model_script_writes_a_loadable_model_with_a_card(tmp_path: Path) -> None:
    import importlib.util

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("make_sample_model",
                                                  root / "scripts/make_sample_model.py")
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = script.ensure(tmp_path / "sample-sd")
    facts = modelfacts.read_facts(out)
    assert facts["dtypes"] == ["F16"]
    assert facts["components"]["scheduler"]["class"] == "DDIMScheduler"
    assert facts["components"]["unet"]["config"]["block_out_channels"] == [32, 32, 64]
    assert facts["card"]["license"] == "creativeml-openrail-m"
    assert "unmake-example" in facts["card"]["tags"]
    assert "not a real model" in (out / "README.md").read_text("utf-8")
    mtime = (out / "model_index.json").stat().st_mtime_ns
    assert script.ensure(out) == out  # present: nothing is rewritten
    assert (out / "model_index.json").stat().st_mtime_ns == mtime

    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(out, local_files_only=True,
                                                     use_safetensors=True)
    assert type(pipe).__name__ == "StableDiffusionPipeline"
