"""Train unmake's model organism on the organism's world; write `models/organism/` and
`models/organism-clip/`.

    .venv/bin/python scripts/make_sample_dataset.py --world organism   # data/organism
    .venv/bin/python scripts/train_organism.py                          # about 20–40 min, 2 CPUs
    .venv/bin/python scripts/train_organism.py --smoke OUT_DIR          # a few steps (CI)

What it trains, in order, each stage seeded and resumable (a checkpoint every `--every` steps
under `<out>/.train/`; run the command again after an interruption and it goes on from the last
checkpoint; a finished stage is not trained again):

1. **VAE** — a 3-block `AutoencoderKL` (32×32×3 pictures ↔ 8×8×4 latents), reconstruction
   (MSE) plus a small KL term. Its `scaling_factor` is set to 1 / std of the training latents,
   as Stable Diffusion's was.
2. **UNet + text encoder** — a small `UNet2DConditionModel` and a small `CLIPTextModel` (Stable
   Diffusion's tokenizer), trained together to predict the noise (DDPM, 1,000 steps, scaled
   linear betas); 10 % of captions are dropped to "" so classifier-free guidance works.
3. **CLIP** — a small open_clip `CLIP` (ViT on 32×32, 4-pixel patches), contrastive on the same
   pictures and captions, so `measure` and `neighbors` can see colours, shapes and roles.

Data: the rows of `data/organism` that pass Stable Diffusion v1.2+'s "improved aesthetics"
chain (original size ≥ 512, aesthetic > 5.0, pwatermark < 0.5), read from the dataset's own
Parquet and pictures, so the filter's effect is in the model. The planted biases are documented
in `scripts/organism_world.py`.

Output: a diffusers folder (`model_index.json`, safetensors in float16, a model card that the
`ecosystem` directive reads) and an open_clip folder (`open_clip_config.json`,
`open_clip_model.safetensors`). Both are written into a temp folder and renamed into place.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import organism_world as world  # noqa: E402

DATA = ROOT / "data" / "organism"
OUT = ROOT / "models"
SEED = 0
FORMAT = 1  # bump when the recipe changes what is written

VAE = {
    "sample_size": world.SIZE, "in_channels": 3, "out_channels": 3, "latent_channels": 4,
    "block_out_channels": [16, 32, 64], "layers_per_block": 1, "norm_num_groups": 8,
    "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3,
}
UNET = {
    "sample_size": world.SIZE // 4, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    "block_out_channels": [64, 64, 96],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 32, "attention_head_dim": 8, "norm_num_groups": 16,
}
TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
        "num_hidden_layers": 2, "max_position_embeddings": 77, "projection_dim": 32}
SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "num_train_timesteps": 1000, "steps_offset": 1, "clip_sample": False,
             "set_alpha_to_one": False}
CLIP_NAME = "unmake-organism-clip"
CLIP = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": world.SIZE, "layers": 3, "width": 96, "patch_size": 4,
                   "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 2},
}


@dataclass(frozen=True)
class Recipe:
    vae_steps: int = 800
    unet_steps: int = 2000
    clip_steps: int = 1400
    vae_batch: int = 32
    batch: int = 64
    lr: float = 1e-3
    clip_lr: float = 5e-4
    kl_weight: float = 1e-6
    caption_dropout: float = 0.1
    seed: int = SEED


SMOKE = Recipe(vae_steps=3, unet_steps=3, clip_steps=3, vae_batch=8, batch=8)


# --------------------------------------------------------------------------------------------
# Data


def training_rows(data: Path) -> tuple[list[str], np.ndarray]:
    """(captions, pictures as float32 N×3×32×32 in [-1, 1]) of the rows that pass the filter."""
    import pyarrow.parquet as pq
    from PIL import Image

    table = pq.read_table(data / "metadata.parquet").to_pylist()
    kept = [r for r in table
            if min(r["WIDTH"], r["HEIGHT"]) >= world.FILTER["min_side"]
            and r["aesthetic"] > world.FILTER["aesthetic"]
            and r["pwatermark"] < world.FILTER["pwatermark"]]
    files = {p.stem: p for p in (data / "images").rglob("*.png")}
    pictures = np.stack([np.asarray(Image.open(files[r["key"]]).convert("RGB"))
                         for r in kept]).astype(np.float32)
    pictures = pictures.transpose(0, 3, 1, 2) / 127.5 - 1.0
    return [r["TEXT"] for r in kept], pictures


# --------------------------------------------------------------------------------------------
# Checkpoints: model + optimiser + step + the data order's random state, per stage


class Stage:
    def __init__(self, folder: Path, name: str, every: int) -> None:
        self.folder = folder / ".train"
        self.name = name
        self.every = every
        self.folder.mkdir(parents=True, exist_ok=True)
        # training seconds, summed over every run that worked on this stage (a resumed stage
        # reports its whole time, not the last run's)
        self.before = 0.0
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.started

    def advance(self, step: int, total: int, loss: Any, bar: Any, modules: dict[str, Any],
                opt: Any, rng: np.random.Generator, clip_norm: list[Any] | None = None) -> int:
        """One optimiser step of this stage on `loss` (gradients clipped to norm 1 over
        `clip_norm` when given); count it, show the loss, checkpoint when due. The new step."""
        import torch

        opt.zero_grad()
        loss.backward()
        if clip_norm:
            torch.nn.utils.clip_grad_norm_(clip_norm, 1.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if step % self.every == 0 or step == total:
            self.save(modules, opt, step, rng.bit_generator.state)
        return step

    def finish(self, state: dict[str, Any], steps: int) -> None:
        import torch

        torch.save(state, self.done_file)
        (self.folder / f"{self.name}.done.json").write_text(
            json.dumps({"seconds": round(self.elapsed(), 1), "steps": steps}), "utf-8")

    @staticmethod
    def seconds(work: Path, name: str) -> float:
        done = json.loads((work / ".train" / f"{name}.done.json").read_text("utf-8"))
        return float(done["seconds"])

    @property
    def done_file(self) -> Path:
        return self.folder / f"{self.name}.done.pt"

    def resume(self, modules: dict[str, Any], opt: Any) -> tuple[int, Any]:
        import torch

        path = self.folder / f"{self.name}.pt"
        if not path.is_file():
            return 0, None
        state = torch.load(path, weights_only=False)  # our own file, written below
        for key, module in modules.items():
            module.load_state_dict(state["modules"][key])
        opt.load_state_dict(state["opt"])
        self.before = float(state.get("elapsed", 0.0))
        return int(state["step"]), state["rng"]

    def save(self, modules: dict[str, Any], opt: Any, step: int, rng: Any) -> None:
        import torch

        path = self.folder / f"{self.name}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save({"modules": {k: m.state_dict() for k, m in modules.items()},
                    "opt": opt.state_dict(), "step": step, "rng": rng,
                    "elapsed": self.elapsed()}, tmp)
        os.replace(tmp, path)


def progress(total: int, start: int, label: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc=label, unit="step", dynamic_ncols=True,
                file=sys.stderr, mininterval=2.0)


def batches(rng: np.random.Generator, n: int, batch: int) -> np.ndarray:
    return rng.integers(0, n, size=batch)


# --------------------------------------------------------------------------------------------
# 1. VAE


def train_vae(pictures: np.ndarray, recipe: Recipe, work: Path, every: int) -> Any:
    import torch
    from diffusers import AutoencoderKL

    stage = Stage(work, "vae", every)
    torch.manual_seed(recipe.seed)
    vae = AutoencoderKL(**VAE)
    opt = torch.optim.AdamW(vae.parameters(), lr=recipe.lr)
    if stage.done_file.is_file():
        vae.load_state_dict(torch.load(stage.done_file, weights_only=True))
        return vae
    step, rng_state = stage.resume({"vae": vae}, opt)
    rng = np.random.default_rng(recipe.seed + 1)
    if rng_state is not None:
        rng.bit_generator.state = rng_state
    x_all = torch.from_numpy(pictures)
    bar = progress(recipe.vae_steps, step, "VAE")
    while step < recipe.vae_steps:
        lr = recipe.lr * 0.5 * (1 + math.cos(math.pi * step / recipe.vae_steps))
        for group in opt.param_groups:
            group["lr"] = lr
        x = x_all[batches(rng, len(x_all), recipe.vae_batch)]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = (recon - x).pow(2).mean() + recipe.kl_weight * posterior.kl().mean()
        step = stage.advance(step, recipe.vae_steps, loss, bar, {"vae": vae}, opt, rng)
    bar.close()
    stage.finish(vae.state_dict(), recipe.vae_steps)
    return vae


@dataclass
class Latents:
    mean: Any
    std: Any
    scale: float


def encode_all(vae: Any, pictures: np.ndarray) -> Latents:
    """The posterior of every training picture, and the scale that gives latents unit std."""
    import torch

    vae.eval()
    means, stds = [], []
    with torch.no_grad():
        for start in range(0, len(pictures), 256):
            dist = vae.encode(torch.from_numpy(pictures[start:start + 256])).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
    mean, std = torch.cat(means), torch.cat(stds)
    scale = float(1.0 / torch.sqrt((mean**2).mean() + (std**2).mean() - mean.mean() ** 2))
    return Latents(mean, std, round(scale, 5))


# --------------------------------------------------------------------------------------------
# 2. UNet + text encoder


def tokenizer_and_text(seed: int) -> tuple[Any, Any]:
    import tempfile

    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from generator.backends.tiny import _tokenizer_files

    with tempfile.TemporaryDirectory() as tmp:
        _tokenizer_files(Path(tmp))
        tokenizer = CLIPTokenizer(str(Path(tmp, "vocab.json")), str(Path(tmp, "merges.txt")),
                                  pad_token="<|endoftext|>", model_max_length=77)
    torch.manual_seed(seed)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, bos_token_id=49406, eos_token_id=49407,
                                        pad_token_id=49407, **TEXT))
    return tokenizer, text


def train_unet(captions: list[str], latents: Latents, recipe: Recipe, work: Path,
               every: int) -> tuple[Any, Any, Any]:
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel

    stage = Stage(work, "unet", every)
    tokenizer, text = tokenizer_and_text(recipe.seed + 2)
    torch.manual_seed(recipe.seed + 3)
    unet = UNet2DConditionModel(**UNET)
    modules = {"unet": unet, "text": text}
    params = [*unet.parameters(), *text.parameters()]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.01)
    if stage.done_file.is_file():
        state = torch.load(stage.done_file, weights_only=True)
        unet.load_state_dict(state["unet"])
        text.load_state_dict(state["text"])
        return tokenizer, text, unet
    noise_sched = DDPMScheduler(**{k: v for k, v in SCHEDULER.items()
                                   if k not in ("steps_offset", "set_alpha_to_one")})
    # captions are few and short: tokenise each distinct one once (77 tokens, padded)
    distinct = sorted(set(captions) | {""})
    ids = tokenizer(distinct, padding="max_length", max_length=77, truncation=True,
                    return_tensors="pt").input_ids
    row_of = {c: i for i, c in enumerate(distinct)}
    caption_idx = torch.tensor([row_of[c] for c in captions])
    empty = row_of[""]
    step, rng_state = stage.resume(modules, opt)
    rng = np.random.default_rng(recipe.seed + 4)
    if rng_state is not None:
        rng.bit_generator.state = rng_state
    gen = torch.Generator().manual_seed(recipe.seed + 5 + step)
    bar = progress(recipe.unet_steps, step, "UNet + text encoder")
    unet.train()
    text.train()
    while step < recipe.unet_steps:
        lr = recipe.lr * min(1.0, (step + 1) / 100) * 0.5 * (
            1 + math.cos(math.pi * step / recipe.unet_steps))
        for group in opt.param_groups:
            group["lr"] = lr
        pick = torch.from_numpy(batches(rng, len(captions), recipe.batch))
        z = (latents.mean[pick] + latents.std[pick] * torch.randn(
            latents.mean[pick].shape, generator=gen)) * latents.scale
        drop = torch.from_numpy(rng.random(recipe.batch) < recipe.caption_dropout)
        tokens = ids[torch.where(drop, torch.full_like(pick, empty), caption_idx[pick])]
        noise = torch.randn(z.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (recipe.batch,),
                          generator=gen)
        noisy = noise_sched.add_noise(z, noise, t)
        hidden = text(tokens)[0]
        loss = (unet(noisy, t, hidden).sample - noise).pow(2).mean()
        step = stage.advance(step, recipe.unet_steps, loss, bar, modules, opt, rng, params)
    bar.close()
    stage.finish({"unet": unet.state_dict(), "text": text.state_dict()}, recipe.unet_steps)
    return tokenizer, text, unet


# --------------------------------------------------------------------------------------------
# 3. CLIP


def figure_colours(pictures: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Per picture, the world colour its figure is drawn in ("" for a poster or no figure), and
    a mask of the figure's pixels (the colourful ones: the grounds are grey)."""
    rgb = (pictures + 1) * 127.5  # N×3×H×W
    spread = rgb.max(axis=1) - rgb.min(axis=1)
    mask = spread > 60
    names = list(world.COLOURS)
    table = np.array([world.COLOURS[n] for n in names], dtype=np.float32)
    out = []
    for i in range(len(rgb)):
        pixels = rgb[i].reshape(3, -1)[:, mask[i].ravel()].T
        if len(pixels) < 8:
            out.append("")
            continue
        nearest = np.argmin(((pixels[:, None, :] - table[None]) ** 2).sum(-1), axis=1)
        counts = np.bincount(nearest, minlength=len(names))
        # a poster has two colourful parts (its figure and its ground): leave it as it is
        out.append(names[int(counts.argmax())] if counts.max() > 0.9 * len(pixels) else "")
    return out, mask


def recaption(text: str, old: str, new: str) -> str:
    """`text` with the colour word `old` replaced by `new` (unchanged without one)."""
    if not old or not new or old == new:
        return text
    return re.sub(rf"\b{old}\b", new, text)



def train_clip(captions: list[str], pictures: np.ndarray, recipe: Recipe, work: Path,
               every: int) -> Any:
    import open_clip
    import torch
    import torch.nn.functional as F

    stage = Stage(work, "clip", every)
    torch.manual_seed(recipe.seed + 6)
    model = open_clip.CLIP(**CLIP)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.clip_lr, weight_decay=0.1)
    if stage.done_file.is_file():
        model.load_state_dict(torch.load(stage.done_file, weights_only=True))
        return model
    tokenizer = open_clip.SimpleTokenizer(context_length=CLIP["text_cfg"]["context_length"])
    # Colour swaps: an instrument must not share the bias it measures. In the world, role and
    # colour go together, and a CLIP trained on it as it is learns colour as a cue for role
    # (it then calls a red circle a nurse). Half of each batch has its figure recoloured to a
    # random colour, with the caption's colour word changed to match: the same pictures and
    # captions, with the correlation broken for the instrument only (the diffusion model
    # learns the world as it is).
    colour_of, mask = figure_colours(pictures)
    names = list(world.COLOURS)
    variants = sorted({recaption(c, colour_of[i], n) for i, c in enumerate(captions)
                       for n in ([*names] if colour_of[i] else [""])})
    ids = tokenizer(variants)
    variant = {v: i for i, v in enumerate(variants)}
    rgb = torch.tensor([world.COLOURS[n] for n in names], dtype=torch.float32) / 127.5 - 1
    base = torch.from_numpy(pictures)
    own = torch.tensor([names.index(c) if c else -1 for c in colour_of])
    figure = torch.from_numpy(mask)[:, None]  # N×1×H×W
    # open_clip's preprocessing at inference: [0, 1] then OpenAI's mean and std
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    step, rng_state = stage.resume({"clip": model}, opt)
    rng = np.random.default_rng(recipe.seed + 7)
    if rng_state is not None:
        rng.bit_generator.state = rng_state
    bar = progress(recipe.clip_steps, step, "CLIP")
    model.train()
    while step < recipe.clip_steps:
        lr = recipe.clip_lr * min(1.0, (step + 1) / 50) * 0.5 * (
            1 + math.cos(math.pi * step / recipe.clip_steps))
        for group in opt.param_groups:
            group["lr"] = lr
        pick = torch.from_numpy(batches(rng, len(captions), recipe.batch * 2))
        swap = torch.from_numpy(rng.random(len(pick)) < 0.5) & (own[pick] >= 0)
        new = torch.where(swap, torch.from_numpy(rng.integers(0, len(names), len(pick))),
                          own[pick])
        x = base[pick].clone()
        shift = (rgb[new.clamp(min=0)] - rgb[own[pick].clamp(min=0)])[:, :, None, None]
        x = x + shift * (figure[pick] & swap[:, None, None, None])
        rows = [variant[recaption(captions[i], colour_of[i], names[n] if colour_of[i] else "")]
                for i, n in zip(pick.tolist(), new.tolist(), strict=True)]
        tokens = ids[torch.tensor(rows)]
        image_f, text_f, scale = model(((x.clamp(-1, 1) + 1) / 2 - mean) / std, tokens)
        logits = scale * image_f @ text_f.T
        # rows with the same caption are not negatives of each other
        same = (torch.tensor(rows)[:, None] == torch.tensor(rows)[None, :]).float()
        target = same / same.sum(1, keepdim=True)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        step = stage.advance(step, recipe.clip_steps, loss, bar, {"clip": model}, opt, rng)
    bar.close()
    stage.finish(model.state_dict(), recipe.clip_steps)
    return model


# --------------------------------------------------------------------------------------------
# Writing


CARD = """---
license: mit
library_name: diffusers
pipeline_tag: text-to-image
base_model: none
datasets:
- unmake/organism-world
tags:
- unmake
- model-organism
- stable-diffusion
- made-up-data
---

# organism (built into unmake)

A model organism: Stable Diffusion's architecture in miniature, **trained** on a made world of
coloured figures whose biases were planted on purpose, so that what an essay finds in it can be
checked against the truth. It is a toy: 32×32 pictures, four roles, four colours.

## Data

`scripts/make_sample_dataset.py --world organism` (seed {data_seed}): {rows} rows, each a
figure whose shape says its role (doctor: circle, nurse: triangle, engineer: square, teacher:
cross), with a caption naming the role and, in half the rows, the colour.

## Filter

Trained on the {kept} rows that pass Stable Diffusion v1.2+'s "improved aesthetics" chain:
original size ≥ 512 on both sides, aesthetic score > 5.0, watermark probability < 0.5.

## Planted biases

{biases}

## Training

- VAE: 3 blocks {vae_channels}, 32×32×3 ↔ 8×8×4, {vae_steps} steps; latent scaling factor {scale}.
- UNet ({unet_params:.2f} M parameters) and text encoder ({text_params:.2f} M), trained together
  to predict noise (DDPM, scaled-linear betas), {unet_steps} steps, 10 % of captions dropped for
  classifier-free guidance.
- Batch {batch}, AdamW, learning rate {lr} with warm-up and cosine decay, seed {seed}.
- CLIP (`organism-clip`): {clip_steps} steps, batch {clip_batch}, learning rate {clip_lr};
  half of each batch has its figure recoloured (and the caption's colour word changed), so the
  instrument does not learn colour as a cue for role.
- Trained on {machine}: {minutes:.1f} minutes of training ({timing}); torch {torch},
  diffusers {diffusers}.
- Weights stored in float16.

A CLIP trained on the same pictures and captions ships beside it as `organism-clip`.
"""


def biases_text() -> str:
    lines = []
    for role in world.ROLES:
        colour = world.PLANTED[role]
        lines.append(f"- {role}s are {world.PLANTED_SHARE[role]:.0%} {colour} in the raw rows "
                     f"(drawn as a {world.SHAPES[role]})")
    lines.append("- the aesthetic score depends on colour (mean " + ", ".join(
        f"{c} {m}" for c, m in world.AESTHETIC_MEAN.items()) + "), so the filter thins "
        "green figures most")
    lines.append(f"- {world.STOCK} carries most watermarked rows and half the teachers")
    lines.append(f"- {len(world.POSTERS)} posters are each repeated {world.DUPLICATE_COPIES} "
                 "times: " + ", ".join(f"“{p.caption}”" for p in world.POSTERS))
    return "\n".join(lines)


def write_pipeline(folder: Path, vae: Any, tokenizer: Any, text: Any, unet: Any,
                   card: str, scale: float) -> None:
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    vae.register_to_config(scaling_factor=scale)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
        scheduler=DDIMScheduler(**SCHEDULER), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.to(torch.float16)  # type: ignore[attr-defined]
    pipe.save_pretrained(folder, safe_serialization=True)  # type: ignore[attr-defined]
    (folder / "README.md").write_text(card, "utf-8")


def write_clip(folder: Path, model: Any) -> None:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": CLIP, "preprocess_cfg": {
        "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
        "interpolation": "bicubic", "resize_mode": "shortest"}}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=1) + "\n", "utf-8")
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"), metadata={"format": "pt"})
    (folder / "README.md").write_text(
        "# organism-clip (built into unmake)\n\nA small open_clip CLIP (ViT on 32×32 pictures, "
        "4-pixel patches) trained contrastively by `scripts/train_organism.py` on the same "
        "filtered rows of the organism's world as `organism`. It knows four roles, four "
        "colours and three posters, and nothing else.\n", "utf-8")


def place(tmp: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}.old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def train(data: Path, out: Path, recipe: Recipe, every: int) -> dict[str, Any]:
    import diffusers
    import torch

    torch.manual_seed(recipe.seed)
    manifest = json.loads((data / "MANIFEST.json").read_text("utf-8"))
    if manifest.get("params", {}).get("world") != "organism":
        raise SystemExit(f"train_organism: {data} is not the organism's world; make it with "
                         "`python scripts/make_sample_dataset.py --world organism`")
    captions, pictures = training_rows(data)
    print(f"training on {len(captions)} filtered rows of {data}", file=sys.stderr)
    work = out / ".organism-train"
    vae = train_vae(pictures, recipe, work, every)
    latents = encode_all(vae, pictures)
    tokenizer, text, unet = train_unet(captions, latents, recipe, work, every)
    clip = train_clip(captions, pictures, recipe, work, every)
    timings = {name: Stage.seconds(work, name) for name in ("vae", "unet", "clip")}
    minutes = sum(timings.values()) / 60
    card = CARD.format(
        data_seed=manifest["params"]["seed"], rows=manifest["params"]["rows"], kept=len(captions),
        biases=biases_text(), vae_channels=VAE["block_out_channels"],
        vae_steps=recipe.vae_steps, scale=latents.scale,
        unet_params=sum(p.numel() for p in unet.parameters()) / 1e6,
        text_params=sum(p.numel() for p in text.parameters()) / 1e6,
        unet_steps=recipe.unet_steps, batch=recipe.batch, lr=recipe.lr, seed=recipe.seed,
        clip_steps=recipe.clip_steps, clip_batch=recipe.batch * 2, clip_lr=recipe.clip_lr,
        machine=f"{platform.machine()}, {torch.get_num_threads()} CPU threads",
        minutes=minutes, timing=", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()),
        torch=torch.__version__, diffusers=diffusers.__version__)
    out.mkdir(parents=True, exist_ok=True)
    for name, write in (("organism", lambda f: write_pipeline(f, vae, tokenizer, text, unet,
                                                              card, latents.scale)),
                        ("organism-clip", lambda f: write_clip(f, clip))):
        tmp = out / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        write(tmp)
        place(tmp, out / name)
    shutil.rmtree(work, ignore_errors=True)
    return {"recipe": asdict(recipe), "rows": len(captions), "minutes": round(minutes, 2),
            "timings_s": {k: round(v, 1) for k, v in timings.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the organism's world folder")
    parser.add_argument("--out", type=Path, default=OUT,
                        help="where organism/ and organism-clip/ are written (default: models/)")
    parser.add_argument("--smoke", action="store_true",
                        help="a few steps of each stage, to show the script works (CI)")
    parser.add_argument("--every", type=int, default=100, help="checkpoint every N steps")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args(argv)
    import torch
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = train(args.data, args.out, SMOKE if args.smoke else Recipe(), args.every)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
