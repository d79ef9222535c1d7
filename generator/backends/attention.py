"""Runner of `attend`: per-word cross-attention heat maps, recorded while an image is made again.

The method is DAAM (Tang et al., "What the DAAM: Interpreting Stable Diffusion Using Cross
Attention", ACL 2023), implemented here on diffusers' attention-processor API (the `daam`
package pins an old diffusers). Each cross-attention layer of the UNet gets a recording
processor that first calls the layer's own processor, unchanged, for its output (so the image is
bit-identical to a run without recording), then recomputes that layer's attention probabilities
from the same query and key and adds them up:

1. per layer and denoising step, the conditional half of the batch (classifier-free guidance
   puts the unconditional prompt first), summed over heads: (tokens, h, w);
2. upsampled bicubically to the latent's size and clipped at 0 (bicubic overshoots), then summed
   over every layer and step;
3. per word: the sum over the word's tokens (a word the tokenizer cuts into pieces, or that
   appears twice, counts all of them), then divided by its total, so **every map sums to 1**: a
   distribution over the latent's pixels of where that word's attention went.

Maps are stored as float32 arrays at the latent's resolution (`np.savez_compressed`, one file
per image with a map per word); the figure draws the overlays from them (render time, numpy and
PIL only), on one colour scale across the figure.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..store import Result
from ..types import Job
from .diffusion import environment, generate_batch, set_scheduler
from .img2img import pipelines


class Recorder:
    """Recording processors on every cross-attention layer of a UNet, and what they add up."""

    def __init__(self, unet: Any, latent: tuple[int, int], conditional_half: bool) -> None:
        self.unet = unet
        self.latent = latent  # (height, width) of the latent
        self.conditional_half = conditional_half
        self.total: Any = None  # (batch, tokens, H, W), summed over layers and steps
        self.calls = 0
        self.originals: dict[str, Any] = {}

    def __enter__(self) -> Recorder:
        self.originals = dict(self.unet.attn_processors)
        self.unet.set_attn_processor({
            name: _Recording(self, processor) if name.endswith("attn2.processor") else processor
            for name, processor in self.originals.items()})
        return self

    def __exit__(self, *exc: object) -> None:
        self.unet.set_attn_processor(self.originals)

    def add(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any) -> None:
        import torch.nn.functional as F

        # the same query and key the layer's processor computed (nothing random happens here)
        hs = hidden_states
        if hs.ndim == 4:
            b, c, h, w = hs.shape
            hs = hs.view(b, c, h * w).transpose(1, 2)
        encoder = encoder_hidden_states
        if attn.norm_cross:
            encoder = attn.norm_encoder_hidden_states(encoder)
        query = attn.head_to_batch_dim(attn.to_q(hs))
        key = attn.head_to_batch_dim(attn.to_k(encoder))
        probs = attn.get_attention_scores(query, key, None)  # (batch*heads, hw, tokens)
        batch = hs.shape[0]
        probs = probs.view(batch, attn.heads, probs.shape[1], probs.shape[2]).sum(dim=1)
        if self.conditional_half:
            probs = probs[batch // 2:]
        height, width = self.latent
        scale = round((height * width / probs.shape[1]) ** 0.5)
        h, w = height // scale, width // scale
        maps = probs.transpose(1, 2).reshape(probs.shape[0], probs.shape[2], h, w).float()
        maps = F.interpolate(maps, size=(height, width), mode="bicubic",
                             align_corners=False).clamp_(min=0)
        self.total = maps if self.total is None else self.total + maps
        self.calls += 1


class _Recording:
    """A cross-attention processor that computes what the original computes, then records."""

    def __init__(self, recorder: Recorder, original: Any) -> None:
        self.recorder, self.original = recorder, original

    def __call__(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any = None,
                 attention_mask: Any = None, temb: Any = None, **kwargs: Any) -> Any:
        out = self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb,
                            **kwargs)
        if encoder_hidden_states is not None:
            self.recorder.add(attn, hidden_states, encoder_hidden_states)
        return out


_WORD = re.compile(r"[\w'’-]+")
_SEGMENT = re.compile(r"[\w'’-]+|[^\w\s]+")


def word_tokens(tokenizer: Any, prompt: str, words: list[str]) -> dict[str, list[int]]:
    """The token positions (in the encoder's input, after the start token) of each word, found
    by tokenizing the prompt word by word (CLIP's BPE never joins across whitespace); positions
    past the encoder's limit are left out (the model never read them)."""
    limit = int(getattr(tokenizer, "model_max_length", 77)) - 1
    found: dict[str, list[int]] = {w: [] for w in words}
    wanted = {w.lower(): w for w in words}
    position = 1
    for piece in prompt.split():
        n = len(tokenizer.tokenize(piece))
        # a word and the punctuation beside it ("fox,") are separate tokens: count them apart
        segments = _SEGMENT.findall(piece)
        counts = [len(tokenizer.tokenize(s)) for s in segments]
        if sum(counts) != n:  # a tokenizer that joins them: the whole piece is the word
            segments, counts = [piece], [n]
        for segment, count in zip(segments, counts, strict=True):
            word = wanted.get(segment.lower()) or next(
                (w for b in _WORD.findall(segment) if (w := wanted.get(b.lower()))), None)
            if word is not None:
                found[word] += [p for p in range(position, position + count) if p < limit]
            position += count
    return found


def word_maps(total: np.ndarray, positions: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """Each word's map: the sum over its tokens, normalised to sum to 1 (step 3 above)."""
    maps = {}
    for word, tokens in positions.items():
        if not tokens:
            continue
        summed = total[tokens].sum(axis=0).astype(np.float64)
        maps[word] = (summed / summed.sum()).astype(np.float32) if summed.sum() > 0 else \
            np.full(summed.shape, 1 / summed.size, np.float32)
    return maps


def generate_recording(pipe: Any, image_job: Job, record: bool = True) -> tuple[Any, Any]:
    """One image as `generate` makes it (batch of one), with the attention summed if `record`."""
    i = image_job.inputs
    latent = (i["height"] // pipe.vae_scale_factor, i["width"] // pipe.vae_scale_factor)
    if not record:
        (image,), _ = generate_batch(pipe, [image_job])
        return image, None
    guided = i["guidance"] > 1 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None
    with Recorder(pipe.unet, latent, conditional_half=guided) as recorder:
        (image,), _ = generate_batch(pipe, [image_job])
    if recorder.total is None:
        raise RuntimeError("the model has no cross-attention layer to record")
    return image, recorder.total[0].cpu().numpy()


def encode_maps(maps: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    arrays: dict[str, Any] = {f"w{n}": m for n, m in enumerate(maps.values())}
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def decode_maps(data: bytes, words: list[str]) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as npz:
        return {word: npz[f"w{n}"] for n, word in enumerate(words)}


def run(jobs: list[Job], options: dict[str, Any]) -> Iterator[tuple[Job, Any]]:
    """Runner for "attend.maps": make each image again with recording, and keep its maps."""
    from PIL import Image

    text2image, _, original, device, dtype, _ = pipelines(jobs[0], options)
    env = environment(device, dtype)
    store = options["store"]
    for job in jobs:
        try:
            t0 = time.perf_counter()
            # 1. The image as `generate` makes it, with the cross-attention recorded.
            made = Job("generate.image", job.run["image"], run=job.run, key=job.needs[0])
            set_scheduler(text2image, made.inputs["scheduler"], original)
            image, total = generate_recording(text2image, made)
            # 2. Each asked word's map, normalised to sum to 1.
            positions = word_tokens(text2image.tokenizer, made.inputs["prompt"],
                                    list(job.inputs["words"]))
            maps = word_maps(total, positions)
            # 3. Whether it is the stored image, pixel for pixel (a batch of another size may
            #    round differently; the maps are of the image made here, which is kept too).
            with Image.open(store.file(job.needs[0], "image")) as stored:
                same = bool(np.array_equal(np.asarray(stored.convert("RGB")),
                                           np.asarray(image.convert("RGB"))))
            buf = io.BytesIO()
            image.save(buf, "PNG")
            yield job, Result(
                data={"words": list(maps), "absent": [w for w in positions if w not in maps],
                      "tokens": {w: positions[w] for w in maps}, "latent": list(total.shape[1:]),
                      "same_as_image": same, "normalisation": "each map sums to 1"},
                files={"maps": (encode_maps(maps), "npz"), "image": (buf.getvalue(), "png")},
                env=env, seconds=time.perf_counter() - t0)
        except Exception as exc:  # one image's failure is its own
            yield job, exc
