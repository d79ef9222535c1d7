"""A1111's "PNG Info": sampler names, quoting and field order, and a real third-party reader
(sd-parsers) reading back a PNG made by the real generation path (tiny model, CPU)."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import pytest
from PIL import Image

from generator import __version__, a1111
from generator.types import Job

# (diffusers scheduler class, config) -> A1111's name, after diffusers' A1111 table and A1111's
# sampler and schedule lists
SAMPLER_NAMES = [
    ("EulerDiscreteScheduler", {}, "Euler"),
    ("EulerAncestralDiscreteScheduler", {}, "Euler a"),
    ("HeunDiscreteScheduler", {}, "Heun"),
    ("LMSDiscreteScheduler", {}, "LMS"),
    ("LMSDiscreteScheduler", {"use_karras_sigmas": True}, "LMS Karras"),
    ("KDPM2DiscreteScheduler", {}, "DPM2"),
    ("KDPM2DiscreteScheduler", {"use_karras_sigmas": True}, "DPM2 Karras"),
    ("KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}, "DPM2 a Karras"),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2},
     "DPM++ 2M"),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                     "use_karras_sigmas": True}, "DPM++ 2M Karras"),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
     "DPM++ 2M SDE"),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2,
                                     "use_karras_sigmas": True}, "DPM++ 2M SDE Karras"),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2,
                                     "solver_type": "heun"}, "DPM++ 2M SDE Heun"),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3,
                                     "use_exponential_sigmas": True},
     "DPM++ 3M SDE Exponential"),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver", "solver_order": 2},
     "DPMSolverMultistepScheduler (dpmsolver)"),  # no A1111 sampler: the diffusers name
    ("DPMSolverSinglestepScheduler", {"use_karras_sigmas": True}, "DPM++ SDE Karras"),
    ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}, "Euler a SGM Uniform"),
    ("EulerDiscreteScheduler", {"use_beta_sigmas": True}, "Euler Beta"),
    ("DDIMScheduler", {"timestep_spacing": "trailing"}, "DDIM"),  # a timestep sampler
    ("PNDMScheduler", {"skip_prk_steps": True}, "PLMS"),
    ("UniPCMultistepScheduler", {}, "UniPC"),
    ("LCMScheduler", {}, "LCM"),
    ("DEISMultistepScheduler", {"timestep_spacing": "trailing"}, "DEISMultistepScheduler"),
]


@pytest.mark.parametrize(("cls", "config", "name"), SAMPLER_NAMES)
def test_sampler_names_are_a1111s(cls: str, config: dict[str, Any], name: str) -> None:
    assert a1111.sampler_name(cls, config) == name


def test_schedule_type_is_its_own_field() -> None:
    karras = {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}
    assert a1111.sampler_and_schedule("DPMSolverMultistepScheduler", karras) == (
        "DPM++ 2M", "Karras")
    assert a1111.sampler_and_schedule("EulerAncestralDiscreteScheduler", {}) == ("Euler a", None)


def test_every_scheduler_unmake_offers_has_an_a1111_name() -> None:
    """The configs diffusers really builds (from the tiny model's PNDM config, as the runner
    does), not hand-written ones."""
    import diffusers

    from generator.backends.diffusion import SCHEDULER_CLASSES
    from generator.models import TINY_RECIPE

    expected = {"ddim": "DDIM", "pndm": "PLMS", "euler": "Euler", "euler_a": "Euler a",
                "dpmpp_2m": "DPM++ 2M", "lms": "LMS", "unipc": "UniPC", "heun": "Heun"}
    assert set(expected) == set(SCHEDULER_CLASSES)
    original = diffusers.PNDMScheduler(**TINY_RECIPE["scheduler"])
    for name, cls in SCHEDULER_CLASSES.items():
        scheduler = getattr(diffusers, cls).from_config(original.config)
        assert a1111.sampler_name(cls, dict(scheduler.config)) == expected[name], name


@pytest.mark.parametrize(("value", "written"), [
    ("tiny", "tiny"),
    (7, "7"),
    ("512x512", "512x512"),
    ('say "cheese"', 'say "cheese"'),  # A1111 quotes for separators only
    ("fox, red", '"fox, red"'),
    ("folder:0a1b", '"folder:0a1b"'),
    ("two\nlines", '"two\\nlines"'),
    ("café: crème", '"café: crème"'),  # JSON quotes, non-ASCII kept
])
def test_values_are_quoted_as_a1111_quotes_them(value: Any, written: str) -> None:
    assert a1111.quote(value) == written
    if written.startswith('"'):
        assert json.loads(written) == value


INPUTS = {"model": "folder:3f2a9c", "prompt": "a red fox, at dusk", "negative": "blurry, text",
          "seed": 42, "steps": 30, "guidance": 7.5, "width": 512, "height": 768,
          "scheduler": "default"}
KARRAS = {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}


def test_a_folder_model_has_a_fingerprint_not_a_model_hash() -> None:
    text = a1111.parameters(INPUTS, model="sd15", scheduler_class="DPMSolverMultistepScheduler",
                            scheduler_config=KARRAS)
    assert text == (
        "a red fox, at dusk\n"
        "Negative prompt: blurry, text\n"
        "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 42, "
        'Size: 512x768, Model: sd15, Model fingerprint: "folder:3f2a9c", '
        f"Version: unmake {__version__}")


def test_a_single_file_model_has_a1111s_model_hash() -> None:
    sha = hashlib.sha256(b"weights").hexdigest()
    text = a1111.parameters({**INPUTS, "negative": "", "guidance": 7.0}, model="my, model",
                            scheduler_class="EulerAncestralDiscreteScheduler",
                            scheduler_config={}, weights_sha256=sha)
    assert text.splitlines() == [
        "a red fox, at dusk",  # no negative prompt: no line for it
        "Steps: 30, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x768, "
        f'Model hash: {sha[:10]}, Model: "my, model", Model fingerprint: "folder:3f2a9c", '
        f"Version: unmake {__version__}"]


# -- the real generation path, read back by a real reader ---------------------------------------
@pytest.fixture
def tiny_cache(unmake_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's tiny model cache (shared with the end-to-end builds)."""
    monkeypatch.setenv("UNMAKE_CACHE", unmake_env["UNMAKE_CACHE"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.usefixtures("tiny_cache")
def test_a_generated_png_reads_back_in_sd_parsers() -> None:
    from sd_parsers import ParserManager

    from generator.backends import diffusion as backend
    from generator.models import tiny_ref

    ref = tiny_ref("sketchbook")
    sha = hashlib.sha256(b"one weights file").hexdigest()

    def job(prompt: str, negative: str, seed: int, scheduler: str, **run: Any) -> Job:
        inputs = {"model": ref.fingerprint, "prompt": prompt, "negative": negative,
                  "seed": seed, "steps": 2, "guidance": 6.5, "width": 32, "height": 32,
                  "scheduler": scheduler}
        return Job("generate.image", inputs, run={"model": ref.name, "ref": ref.ref,
                                                   "source": ref.source, "path": ref.path, **run})

    jobs = [job("a red fox: in the snow, at dusk", "blurry, text", 7, "euler_a",
                weights_sha256=sha),
            job("a lighthouse", "", 8, "default")]
    results = {j.inputs["seed"]: r for j, r in backend.run(jobs, {"device": "cpu"})}
    expected = {7: ("Euler a", jobs[0]), 8: ("PLMS", jobs[1])}
    for seed, (sampler_name, made) in expected.items():
        result = results[seed]
        assert not isinstance(result, Exception), result
        png, ext = result.files["image"]
        assert ext == "png"
        info = ParserManager().parse(Image.open(io.BytesIO(png)))
        assert info is not None
        assert info.generator == "AUTOMATIC1111"
        inputs = made.inputs
        assert info.full_prompt == inputs["prompt"]
        assert info.full_negative_prompt == inputs["negative"]
        (sampler,) = info.samplers
        assert sampler.name == sampler_name
        assert sampler.parameters["steps"] == "2"
        assert sampler.parameters["cfg_scale"] == "6.5"
        assert sampler.parameters["seed"] == str(seed)
        assert info.metadata["Size"] == "32x32"
        assert sampler.model is not None
        assert sampler.model.name == "sketchbook"
        assert info.metadata["Version"] == f"unmake {__version__}"
        # the record keeps the very text the PNG carries
        assert result.data["parameters"] == info.raw_parameters["parameters"]
    hashed = ParserManager().parse(Image.open(io.BytesIO(results[7].files["image"][0])))
    assert hashed is not None
    assert hashed.samplers[0].model is not None
    assert hashed.samplers[0].model.hash == sha[:10]
    plain = ParserManager().parse(Image.open(io.BytesIO(results[8].files["image"][0])))
    assert plain is not None
    assert plain.samplers[0].model is not None
    assert plain.samplers[0].model.hash is None  # a diffusers folder has no A1111 model hash
