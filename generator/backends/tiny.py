"""The built-in `tiny` model: write a miniature Stable Diffusion pipeline to the user's cache.

The weights are random but seeded, the architecture is the real one (UNet, VAE, CLIP text encoder,
CLIP BPE tokenizer built from the vocabulary open_clip ships), and it is saved as safetensors and
loaded back through the same `from_pretrained` path as a real model.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..models import TINY_RECIPE, ModelRef

CARD = """---
license: mit
library_name: diffusers
pipeline_tag: text-to-image
tags:
- unmake
- random-weights
- stable-diffusion
base_model: none
datasets: []
---

# tiny (built into unmake)

Stable Diffusion's architecture in miniature with seeded **random** weights. It was trained on
nothing and makes noise. It exists so that essays and tests exercise the real code path on a CPU,
offline. Recipe version {version}, seed {seed}.
"""


def ensure_tiny(ref: ModelRef) -> Path:
    """The folder of the tiny model, written on first use."""
    card = CARD.format(**TINY_RECIPE)
    return ensure_folder(Path(ref.path), lambda tmp: write_pipeline(tmp, TINY_RECIPE, card))


def ensure_folder(path: Path, write: Callable[[Path], None]) -> Path:
    """`path`, written by `write` unless it is there: into a temp folder, then renamed into place,
    so that a killed process never leaves half a model."""
    if (path / "model_index.json").is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        write(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private
        try:
            os.rename(tmp, path)
        except OSError:  # another process won the race; its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _tokenizer_files(folder: Path) -> None:
    """vocab.json and merges.txt in Hugging Face's CLIP format, from open_clip's BPE file."""
    import open_clip.tokenizer as oct

    bpe = Path(oct.default_bpe())
    with gzip.open(bpe, "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    byte_chars = list(oct.bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars]
    vocab += ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(
        json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False), "utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", "utf-8")


def write_pipeline(folder: Path, recipe: dict[str, Any], card: str,
                   scheduler: str = "PNDMScheduler", half: bool = False) -> None:
    """Save a Stable Diffusion pipeline of random, seeded weights shaped by `recipe`."""
    import diffusers
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import logging as diffusers_logging
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    from transformers.utils import logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        lib.disable_progress_bar()
    torch.manual_seed(recipe["seed"])
    unet = UNet2DConditionModel(**recipe["unet"])
    vae = AutoencoderKL(**recipe["vae"])
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
        **recipe["text_encoder"]))
    tok_dir = folder / "_tok"
    _tokenizer_files(tok_dir)
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"),
                              pad_token="<|endoftext|>", model_max_length=77)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=getattr(diffusers, scheduler)(**recipe["scheduler"]),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if half:
        pipe = pipe.to(torch.float16)  # type: ignore[attr-defined]
    pipe.save_pretrained(folder, safe_serialization=True)  # type: ignore[attr-defined]
    shutil.rmtree(tok_dir)
    (folder / "README.md").write_text(card, "utf-8")
