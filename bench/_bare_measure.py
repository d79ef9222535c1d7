"""The bare open_clip loop that bench_measure.py times against the `measure` directive.

What a person would write by hand to score a folder of images with CLIP zero-shot: load the model
from its weight file, read each PNG with PIL, preprocess, `encode_image` in batches, encode the
label prompts once, softmax of the scaled cosine similarities. Nothing from unmake is imported;
nothing is written. Called in the benchmark's own process, so both sides share torch's threads.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image


def score(paths: list[Path], arch: str, weights: str, prompts: list[str], batch_size: int,
          device: str) -> tuple[np.ndarray, dict[str, float]]:
    """(len(paths), len(prompts)) probabilities, and seconds per step (load included)."""
    t0 = time.perf_counter()
    model, _, preprocess = open_clip.create_model_and_transforms(
        arch, pretrained=weights, precision="fp32", device=device)
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    t_loaded = time.perf_counter()

    read = encode = 0.0
    with torch.inference_mode():
        text = model.encode_text(tokenizer(prompts).to(device))
        text = text / text.norm(dim=-1, keepdim=True)
        features = []
        for start in range(0, len(paths), batch_size):
            t1 = time.perf_counter()
            batch = []
            for path in paths[start:start + batch_size]:
                with Image.open(path) as im:
                    batch.append(preprocess(im.convert("RGB")))
            t2 = time.perf_counter()
            image = model.encode_image(torch.stack(batch).to(device))
            features.append(image / image.norm(dim=-1, keepdim=True))
            read += t2 - t1
            encode += time.perf_counter() - t2
        image = torch.cat(features)
        probs = (model.logit_scale.exp() * image @ text.T).softmax(dim=-1).cpu().numpy()
    t_end = time.perf_counter()
    return probs, {"load": t_loaded - t0, "read": read, "encode": encode,
                   "total": t_end - t0}
