"""AUTOMATIC1111's "PNG Info": the `parameters` text that A1111 and the tools around it read.

The text is A1111's infotext: the prompt, a `Negative prompt:` line, then one line of
`Key: value` fields in A1111's order, values quoted the way A1111 quotes them, so that its
"Send to txt2img" fills in the same settings. Sampler names are A1111's (the k-diffusion
spellings), read from the diffusers scheduler class and config that actually ran. Pure Python.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from . import __version__

# diffusers scheduler class -> A1111 sampler name, after diffusers' own table ("A1111/k-diffusion
# | Diffusers", docs/source/en/api/schedulers/overview.md) and A1111's sampler lists
# (sd_samplers_kdiffusion.py, sd_samplers_timesteps.py). DPMSolverMultistepScheduler depends on
# its config and is named by `_dpm_multistep`.
SAMPLERS = {
    "EulerDiscreteScheduler": "Euler",
    "EulerAncestralDiscreteScheduler": "Euler a",
    "HeunDiscreteScheduler": "Heun",
    "LMSDiscreteScheduler": "LMS",
    "KDPM2DiscreteScheduler": "DPM2",
    "KDPM2AncestralDiscreteScheduler": "DPM2 a",
    # diffusers' table maps A1111's "DPM++ SDE" to its single-step solver; DPMSolverSDEScheduler
    # is the port of the same k-diffusion function (sample_dpmpp_sde)
    "DPMSolverSinglestepScheduler": "DPM++ SDE",
    "DPMSolverSDEScheduler": "DPM++ SDE",
    "DDIMScheduler": "DDIM",
    "PNDMScheduler": "PLMS",  # A1111 calls the pseudo linear multistep sampler PLMS
    "UniPCMultistepScheduler": "UniPC",
    "LCMScheduler": "LCM",
}
# A1111 applies a schedule type to its k-diffusion samplers only; DDIM, PLMS, UniPC and LCM are
# timestep samplers there, whose timesteps a schedule type does not change.
TIMESTEP_SAMPLERS = frozenset({"DDIM", "PLMS", "UniPC", "LCM"})
# diffusers config flag -> A1111 "Schedule type" label (sd_schedulers.py), after diffusers' table
# "Noise schedules and schedule types"
SIGMA_SCHEDULES = (
    ("use_karras_sigmas", "Karras"),
    ("use_exponential_sigmas", "Exponential"),
    ("use_beta_sigmas", "Beta"),
)


def _dpm_multistep(config: Mapping[str, Any]) -> str:
    """DPM++ 2M, DPM++ 2M SDE, DPM++ 2M SDE Heun, DPM++ 3M SDE… from the solver's config."""
    algorithm = config.get("algorithm_type", "dpmsolver++")
    order = int(config.get("solver_order", 2))
    if algorithm not in ("dpmsolver++", "sde-dpmsolver++"):
        # the original DPM-Solver (not ++) has no A1111 sampler: say what it was
        return f"DPMSolverMultistepScheduler ({algorithm})"
    name = f"DPM++ {order}M"
    if algorithm == "sde-dpmsolver++":
        name += " SDE"
        if config.get("solver_type") == "heun" and order == 2:
            name += " Heun"
    return name


def sampler_and_schedule(scheduler_class: str, config: Mapping[str, Any]) -> tuple[str, str | None]:
    """A1111's `Sampler` and `Schedule type` for a diffusers scheduler (None: A1111's Automatic).

    A class A1111 has no sampler for keeps its diffusers name, so the text never claims a
    sampler that did not run.
    """
    if scheduler_class == "DPMSolverMultistepScheduler":
        sampler = _dpm_multistep(config)
    else:
        sampler = SAMPLERS.get(scheduler_class, scheduler_class)
    schedule = next((label for flag, label in SIGMA_SCHEDULES if config.get(flag)), None)
    # evenly spaced timesteps ending at the last one: A1111's "SGM Uniform" (diffusers' table),
    # for the k-diffusion samplers only, whose schedule the spacing stands for
    kdiffusion = (scheduler_class == "DPMSolverMultistepScheduler"
                  or (scheduler_class in SAMPLERS and sampler not in TIMESTEP_SAMPLERS))
    if schedule is None and kdiffusion and config.get("timestep_spacing") == "trailing":
        schedule = "SGM Uniform"
    return sampler, schedule


def sampler_name(scheduler_class: str, config: Mapping[str, Any]) -> str:
    """One name in A1111's spelling, schedule included: "Euler a", "DPM++ 2M Karras", "PLMS".

    This is the name A1111 used before it split out `Schedule type` (1.9); it still reads it.
    """
    sampler, schedule = sampler_and_schedule(scheduler_class, config)
    return f"{sampler} {schedule}" if schedule else sampler


def model_hash(weights_sha256: str) -> str:
    """A1111's `Model hash` of a single weights file: the first 10 hex digits of its sha256."""
    return weights_sha256[:10]


def quote(value: Any) -> str:
    """A value as A1111 writes it: JSON-quoted when it holds a comma, a colon or a newline."""
    text = str(value)
    if "," in text or ":" in text or "\n" in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def parameters(inputs: Mapping[str, Any], *, model: str, scheduler_class: str,
               scheduler_config: Mapping[str, Any], weights_sha256: str | None = None) -> str:
    """The `parameters` text of one generated image.

    `inputs` are a `generate.image` job's inputs (prompt, negative, steps, guidance, seed, width,
    height, and `model`: unmake's fingerprint); `model` is the name the author used.
    `weights_sha256` is given for a model that is one weights file; a diffusers folder (several
    files) has no A1111 model hash, so then only unmake's fingerprint is written.
    """
    sampler, schedule = sampler_and_schedule(scheduler_class, scheduler_config)
    fields: dict[str, Any] = {
        "Steps": inputs["steps"],
        "Sampler": sampler,
        "Schedule type": schedule,
        "CFG scale": f"{inputs['guidance']:g}",
        "Seed": inputs["seed"],
        "Size": f"{inputs['width']}x{inputs['height']}",
        "Model hash": model_hash(weights_sha256) if weights_sha256 else None,
        "Model": model,
        # A1111 writes extensions' fields after its own and before Version
        "Model fingerprint": inputs["model"],
        "Version": f"unmake {__version__}",
    }
    line = ", ".join(f"{key}: {quote(value)}" for key, value in fields.items()
                     if value is not None)
    lines = [inputs["prompt"]]
    if inputs.get("negative"):
        lines.append(f"Negative prompt: {inputs['negative']}")
    lines.append(line)
    return "\n".join(lines)
