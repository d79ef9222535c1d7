"""The bare side of bench_neighbors.py's index part: open_clip by hand over an img2dataset folder.

Loads the built-in tiny-clip's weight file with open_clip, reads every <shard>/<key>.jpg and its
<key>.txt caption, embeds pictures and captions in batches, and saves two .npy files. Nothing
else: no manifest, no shards, no faiss index.

Usage: python bench/_bare_index.py IMAGES_DIR OUT_DIR BATCH
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from generator.backends.clip import ensure_tiny_clip
from generator.clipmodels import TINY_CLIP, tiny_clip_ref


def main() -> None:
    images_dir, out, batch = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    weights = ensure_tiny_clip(tiny_clip_ref())
    model, _, preprocess = open_clip.create_model_and_transforms(
        TINY_CLIP["name"], pretrained=str(weights), precision="fp32", device="cpu")
    model.eval()
    tokenizer = open_clip.get_tokenizer(TINY_CLIP["name"])
    paths = sorted(p for p in images_dir.glob("*/*.jpg"))
    img, txt = [], []
    with torch.inference_mode():
        for start in range(0, len(paths), batch):
            part = paths[start:start + batch]
            pixels = []
            for path in part:
                with Image.open(path) as im:
                    pixels.append(preprocess(im.convert("RGB")))
            captions = [p.with_suffix(".txt").read_text("utf-8") for p in part]
            for rows, out_list in ((model.encode_image(torch.stack(pixels)), img),
                                   (model.encode_text(tokenizer(captions)), txt)):
                rows = rows / rows.norm(dim=-1, keepdim=True)
                out_list.append(rows.numpy().astype(np.float32))
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "img_emb_0.npy", np.concatenate(img))
    np.save(out / "text_emb_0.npy", np.concatenate(txt))
    print(f"bare: {len(paths)} pictures")


if __name__ == "__main__":
    main()
