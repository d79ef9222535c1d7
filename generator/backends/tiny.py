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
from pathlib import Path

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
    """The folder of the tiny model, written on first use (atomically: a temp dir, then rename)."""
    path = Path(ref.path)
    if (path / "model_index.json").is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=path.parent))
    try:
        _write(tmp)
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


def _write(folder: Path) -> None:
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    recipe = TINY_RECIPE
    torch.manual_seed(recipe["seed"])
    unet = UNet2DConditionModel(**recipe["unet"])
    vae = AutoencoderKL(**recipe["vae"])
    text = recipe["text_encoder"]
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, **text))
    tok_dir = folder / "_tok"
    _tokenizer_files(tok_dir)
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"),
                              pad_token="<|endoftext|>", model_max_length=77)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=PNDMScheduler(**recipe["scheduler"]),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)  # type: ignore[attr-defined]
    shutil.rmtree(tok_dir)
    (folder / "README.md").write_text(CARD.format(**recipe), "utf-8")
