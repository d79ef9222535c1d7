"""Write `models/sample-sd/`: a second miniature Stable Diffusion for the example zine.

It is shaped differently from the built-in `tiny` (three UNet blocks, a wider and deeper text
encoder, a DDIM scheduler, float16 weights) so that the ecosystem page has differences to show,
and it carries a model card whose front matter is an *example written by unmake*: the licence,
base model and datasets it names are illustrative claims, not facts about these weights, which
are seeded random numbers trained on nothing.

    .venv/bin/python scripts/make_sample_model.py            # into models/sample-sd/
    .venv/bin/python scripts/make_sample_model.py OUT_DIR    # somewhere else

Deterministic for a given torch and diffusers release, offline, and a no-op when the folder is
already there. The folder loads with
`AutoPipelineForText2Image.from_pretrained(path, local_files_only=True, use_safetensors=True)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "models" / "sample-sd"
SEED = 1

UNET = {
    "sample_size": 16, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    "block_out_channels": [32, 32, 64],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 48, "attention_head_dim": 8, "norm_num_groups": 8,
}
VAE = {
    "sample_size": 64, "in_channels": 3, "out_channels": 3, "latent_channels": 4,
    "block_out_channels": [16, 32, 32], "layers_per_block": 1, "norm_num_groups": 8,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
}
TEXT = {"hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 4,
        "num_hidden_layers": 3, "max_position_embeddings": 77, "projection_dim": 48}
SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "num_train_timesteps": 1000, "steps_offset": 1, "clip_sample": False,
             "set_alpha_to_one": False}

CARD = """---
# EXAMPLE CARD written by unmake's scripts/make_sample_model.py. The values below are
# illustrative claims of the kind real model cards make; they are not true of these weights.
license: creativeml-openrail-m
base_model: stable-diffusion-v1-5/stable-diffusion-v1-5
datasets:
- laion/laion2B-en
- laion/laion-aesthetics-v2-5plus
language:
- en
tags:
- text-to-image
- stable-diffusion
- unmake-example
- random-weights
library_name: diffusers
pipeline_tag: text-to-image
---

# sample-sd (an example made by unmake; not a real model)

**This is not a real model.** `scripts/make_sample_model.py` in the unmake repository wrote it:
Stable Diffusion's architecture in miniature with seeded **random** float16 weights (seed {seed}).
It was trained on nothing and makes noise.

The front matter above is an *example*: it names a licence, a base model and training datasets
the way real model cards do, so that unmake's `ecosystem` directive has a card to read. None of
it is true of these weights. That is the point the example zine makes with it: a card's
front matter is a claim by whoever wrote the card, and nothing in the weight files checks it.
"""


def recipe() -> dict:
    return {"seed": SEED, "unet": UNET, "vae": VAE, "text_encoder": TEXT, "scheduler": SCHEDULER}


def ensure(out: Path) -> Path:
    """Write the sample model into `out` unless it is already there (atomically)."""
    from diffusers.utils import logging as diffusers_logging

    from generator.backends.tiny import ensure_folder, write_pipeline

    diffusers_logging.set_verbosity_error()  # its float16 cast notice is noise here
    return ensure_folder(out, lambda tmp: write_pipeline(
        tmp, recipe(), CARD.format(seed=SEED), scheduler="DDIMScheduler", half=True))


def main(argv: list[str]) -> int:
    out = Path(argv[0]).resolve() if argv else DEFAULT_OUT
    existed = (out / "model_index.json").is_file()
    ensure(out)
    print(f"sample model {'already in' if existed else 'written to'} {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
