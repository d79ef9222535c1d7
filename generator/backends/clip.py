"""CLIP with open_clip: load a ClipRef offline, embed images and texts, classify zero-shot.

Every model, the built-in `tiny-clip` included, loads through open_clip's own loader from a local
file, so its preprocessing and tokenizer are the ones the weights were trained with. Pickle
checkpoints are refused unless the author opted in. Embeddings are float32 and L2-normalised.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..clipmodels import PICKLE_WHY, TINY_CLIP, ClipRef, is_pickle, tiny_clip_ref
from ..errors import ConfigError
from ..instruments.vectors import encode_vector, probabilities
from ..models import dist_version
from ..store import Result, Store
from ..types import Job

TEXT_BATCH = 256  # prompts per forward pass; label lists are short, this only bounds memory


@dataclass
class Loaded:
    """A CLIP model ready to embed: weights in eval mode, its preprocessing and tokenizer."""

    model: Any
    preprocess: Any  # PIL image -> tensor, as the weights expect (size, crop, mean/std)
    tokenizer: Any
    ref: ClipRef
    device: str
    embed_dim: int


def ensure_tiny_clip(ref: ClipRef) -> Path:
    """The built-in model's weight file, written on first use; registers its architecture."""
    import open_clip

    # 1. Register the architecture through open_clip's public hook, which reads a JSON file
    #    named after it (and re-reads it on every later registration, so the file must stay).
    path = Path(ref.path)
    config = path.parent / f"{TINY_CLIP['name']}.json"
    config_text = json.dumps(TINY_CLIP["model_cfg"], indent=1, sort_keys=True)
    if not config.is_file() or config.read_text("utf-8") != config_text:
        Store(path.parent).write_atomic(config, config_text.encode("utf-8"))
    if TINY_CLIP["name"] not in open_clip.list_models():
        open_clip.add_model_config(config)
    if path.is_file():
        return path

    # 2. Seeded random weights, saved as safetensors through the store's one atomic write
    #    (a temp file beside the target, then os.replace), so a killed build leaves no half file.
    import torch
    from safetensors.torch import save

    with torch.random.fork_rng(devices=[]):  # do not disturb the caller's random state
        torch.manual_seed(TINY_CLIP["seed"])
        model = open_clip.CLIP(**TINY_CLIP["model_cfg"])
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    Store(path.parent).write_atomic(path, save(state, metadata={"format": "pt"}))
    return path


def load(ref: ClipRef, device: str = "cpu") -> Loaded:
    """Load a CLIP model offline from its file or HF snapshot, in fp32, in eval mode."""
    import open_clip

    # 1. The built-in writes itself into the cache, then loads like a user's checkpoint; a
    #    checkpoint file of the tiny architecture (tests make them) needs it registered too.
    if ref.source == "builtin" or ref.arch == TINY_CLIP["name"]:
        ensure_tiny_clip(ref if ref.source == "builtin" else tiny_clip_ref())
    # 2. Refuse pickles again here: a ClipRef can come from a job's run dict, not only from
    #    the resolver, and the snapshot's files can change between planning and running.
    weights = ref.weights()
    if is_pickle(weights) and not ref.allow_pickle:
        raise ConfigError(f"CLIP model '{ref.name}': {weights} is not a .safetensors file; "
                          f"unmake refuses it because {PICKLE_WHY}")
    # 3. A snapshot loads as `local-dir:` rather than `hf-hub:`: that reads exactly the commit
    #    in the fingerprint, and never asks the network (huggingface_hub reads HF_HUB_OFFLINE
    #    when it is imported, so setting it here would be too late).
    if ref.source in ("hf-cache", "organism"):
        name, pretrained = f"local-dir:{ref.path}", None
    else:
        name, pretrained = ref.arch, str(weights)
    # weights_only=True: even an opted-in pickle goes through torch's restricted unpickler;
    # require_pretrained: a missing file must fail, not give random weights
    model, _, preprocess = open_clip.create_model_and_transforms(
        name, pretrained=pretrained, precision="fp32", device=device, weights_only=True,
        require_pretrained=True)
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    embed_dim = int(open_clip.get_model_config(name)["embed_dim"])
    return Loaded(model, preprocess, tokenizer, ref, device, embed_dim)


def embed_images(loaded: Loaded, images: list[Any], batch_size: int) -> np.ndarray:
    """(n, d) float32 unit vectors, one per PIL image, in order."""
    import torch

    out = [np.zeros((0, loaded.embed_dim), np.float32)]
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = torch.stack([loaded.preprocess(im) for im in images[start:start + batch_size]])
            out.append(_unit(loaded.model.encode_image(batch.to(loaded.device))))
    return np.concatenate(out)


def embed_texts(loaded: Loaded, texts: list[str]) -> np.ndarray:
    """(n, d) float32 unit vectors, one per text, in order."""
    import torch

    out = [np.zeros((0, loaded.embed_dim), np.float32)]
    with torch.inference_mode():
        for start in range(0, len(texts), TEXT_BATCH):
            tokens = loaded.tokenizer(texts[start:start + TEXT_BATCH]).to(loaded.device)
            out.append(_unit(loaded.model.encode_text(tokens)))
    return np.concatenate(out)


def zero_shot(loaded: Loaded, image_emb: np.ndarray, labels: list[str],
              template: str) -> np.ndarray:
    """(n, len(labels)) probabilities: softmax over labels of the model's scaled cosine logits."""
    if "{}" not in template:
        raise ValueError(f"template must hold '{{}}' where the label goes, got {template!r}")
    # replace, not format: a label or template with other braces is text, not a field
    text_emb = embed_texts(loaded, [template.replace("{}", label) for label in labels])
    return probabilities(image_emb, text_emb, logit_scale(loaded)).astype(np.float32)


def logit_scale(loaded: Loaded) -> float:
    """The temperature CLIP learned for its cosine logits (exp of its log scale)."""
    import torch

    with torch.inference_mode():
        return float(loaded.model.logit_scale.exp().item())


def environment(loaded: Loaded) -> dict[str, Any]:
    """What made a measurement, for its record."""
    return {"open_clip": dist_version("open_clip_torch"), "torch": dist_version("torch"),
            "device": loaded.device, "dtype": "float32"}


def _unit(features: Any) -> np.ndarray:
    """Rows scaled to length 1, as float32 numpy on the CPU."""
    features = features.float()
    features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return features.cpu().numpy().astype(np.float32, copy=False)


# -- runners of the `measure` directive's CLIP jobs ---------------------------------------------
_LOADED: dict[str, Loaded] = {}  # fingerprint -> model: one load per build for all CLIP jobs


def _loaded(job: Job, options: dict[str, Any]) -> Loaded:
    ref = ClipRef(**job.run["clip"])
    if ref.fingerprint not in _LOADED:
        from .diffusion import pick_device

        device, _ = pick_device(options.get("device", "auto"))
        _LOADED[ref.fingerprint] = load(ref, "cpu" if device == "mps" else device)
    return _LOADED[ref.fingerprint]


def run_embed(jobs: list[Job], options: dict[str, Any]) -> Iterator[tuple[Job, Any]]:
    """Runner for "measure.embed": each upstream image's CLIP embedding, kept in its record
    (a few hundred bytes to a few KB: a file of its own would cost more than it holds)."""
    from PIL import Image

    # 1. Load the model once; read each upstream image from the store's read-only view.
    loaded = _loaded(jobs[0], options)
    store = options["store"]
    env = environment(loaded)
    batch_size = max(1, int(options.get("clip_batch_size", 32)))
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start:start + batch_size]
        images, ready = [], []
        for job in batch:
            try:
                with Image.open(store.file(job.inputs["image"], "image")) as im:
                    images.append(im.convert("RGB"))
                ready.append(job)
            except (OSError, KeyError) as exc:
                yield job, exc
        if not ready:
            continue
        # 2. Embed the batch in one forward pass; hand back each row in its own record.
        t0 = time.perf_counter()
        rows = embed_images(loaded, images, batch_size)
        each = (time.perf_counter() - t0) / len(ready)
        for job, row in zip(ready, rows, strict=True):
            yield job, Result(data={"embedding": encode_vector(row), "dim": int(row.shape[0])},
                              env=env, seconds=each)


def run_text(jobs: list[Job], options: dict[str, Any]) -> Iterator[tuple[Job, Any]]:
    """Runner for "measure.text": the CLIP embeddings of one label set's prompts and the
    model's logit scale, from which the figure computes every image's label probabilities."""
    loaded = _loaded(jobs[0], options)
    env = environment(loaded)
    scale = logit_scale(loaded)
    for job in jobs:
        t0 = time.perf_counter()
        rows = embed_texts(loaded, list(job.inputs["prompts"]))
        yield job, Result(data={"embeddings": [encode_vector(r) for r in rows],
                                "logit_scale": scale},
                          env=env, seconds=time.perf_counter() - t0)


def split_embed(jobs: list[Job], options: dict[str, Any]) -> list[list[Job]]:
    """The batches `run_embed` makes: `clip_batch_size` images at a time, in order."""
    size = max(1, int(options.get("clip_batch_size", 32)))
    return [jobs[i:i + size] for i in range(0, len(jobs), size)]


run_embed.split = split_embed  # type: ignore[attr-defined]  # see ray_executor.split
