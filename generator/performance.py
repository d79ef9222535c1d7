"""Pipeline performance options: checked from the plugin config; which of them enter a key.

Core, no torch. The options are the plugin config's `compile`, `attention`, `vae_tiling`,
`vae_slicing`, `cpu_offload` and `channels_last` (the `generate` kind owns them). The planner
(`kinds/generate.image_job`) puts those a build sets into each image job's `run["pipeline"]`,
so the runner, a Ray actor and `unmake verify --replay` all apply the same ones, and those that
can change pixels into its inputs too (`inputs["pipeline"]`), so an image made one way never
stands in for one made another. `backends/diffusion.tune` applies them to a loaded pipeline;
the record's `env["pipeline"]` states what was applied.

What changes pixels, measured with the built-in tiny model on a CPU (tests/test_performance.py
checks each): `attention: math` (at sizes where the attention is long enough to round
differently), `vae_slicing` (the VAE decodes one image at a time, and a batch of 1 rounds
differently), `vae_tiling` (images larger than the VAE's tile), `channels_last` (other
convolution kernels) and `compile` (fused kernels): all keyed. `attention: sdpa` gave the same
pixels as `default` (diffusers picks SDPA itself with torch 2), but it is keyed as well: for a
pipeline whose default processor is another, it is not the same computation. `cpu_offload`
only moves weights between the CPU and the GPU, so the same kernels run on the same data: it is
recorded, not keyed (checked on a GPU by tests/test_gpu.py).
"""

from __future__ import annotations

import difflib
import importlib.util
from typing import Any

from .errors import ConfigError

CONFIG_KEY = "plugins.unmake"
ATTENTION = ("default", "sdpa", "math")
CPU_OFFLOAD = ("none", "model", "sequential")
DEFAULTS: dict[str, Any] = {"compile": False, "attention": "default", "vae_tiling": False,
                            "vae_slicing": False, "cpu_offload": "none", "channels_last": False}
CHOICES = {"attention": ATTENTION, "cpu_offload": CPU_OFFLOAD}
# the options that can change pixels, so enter the job key (see the module docstring)
KEYED = ("compile", "attention", "vae_tiling", "vae_slicing", "channels_last")


def check(config: dict[str, Any]) -> dict[str, Any]:
    """The options the config sets (those that differ from their defaults), checked: an unknown
    value is an error naming the key, with a "did you mean"."""
    asked: dict[str, Any] = {}
    for name, default in DEFAULTS.items():
        value = config.get(name, default)
        if name in CHOICES:
            allowed = CHOICES[name]
            if value not in allowed:
                near = difflib.get_close_matches(str(value), allowed, n=1)
                hint = f"did you mean '{near[0]}'? " if near else ""
                raise ConfigError(f"{CONFIG_KEY}.{name}: {value!r} is not one of "
                                  f"{', '.join(allowed)}; {hint}(default: {default})")
        elif not isinstance(value, bool):
            raise ConfigError(f"{CONFIG_KEY}.{name}: must be true or false, got {value!r}")
        if value != default:
            asked[name] = value
    offload = asked.get("cpu_offload")
    if offload:
        device = str(config.get("device", "auto"))
        if device in ("cpu", "mps"):
            raise ConfigError(f"{CONFIG_KEY}.cpu_offload: {offload!r} needs a CUDA device, but "
                              f"device is {device!r}; set cpu_offload: none")
        if importlib.util.find_spec("accelerate") is None:
            raise ConfigError(f"{CONFIG_KEY}.cpu_offload: {offload!r} needs the accelerate "
                              "package: pip install accelerate (or set cpu_offload: none)")
    return asked


def keyed(asked: dict[str, Any]) -> dict[str, Any]:
    """Of the options set, those that enter an image's key."""
    return {name: value for name, value in asked.items() if name in KEYED}


def shown(applied: dict[str, Any]) -> str:
    """A record's `env["pipeline"]` as provenance lists it: `attention math, VAE slicing`."""
    words = {"compile": "torch.compile", "vae_tiling": "VAE tiling", "vae_slicing": "VAE slicing",
             "channels_last": "channels last", "cpu_offload": "CPU offload",
             "attention": "attention"}
    parts = []
    for name, value in applied.items():
        if name == "compile" and isinstance(value, str):  # its mode
            parts.append(f"torch.compile ({value} mode)")
        elif value is True:
            parts.append(words.get(name, name))
        elif value not in (False, None, "none", "default"):
            parts.append(f"{words.get(name, name)} {value}")
    return ", ".join(parts)
