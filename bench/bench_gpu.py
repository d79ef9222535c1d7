"""The GPU path, measured: Stable Diffusion 1.5's full-size architecture with random weights.

Run on a CUDA machine (the `device` tool of this workplace lends one to some sessions):

    .venv/bin/python bench/bench_gpu.py                  # 512×512, fp16, 50 steps, ~10 min
    .venv/bin/python bench/bench_gpu.py --cpu-smoke      # a miniature of the same, on the CPU,
                                                         # to check the script itself

1. Writes SD 1.5's architecture (UNet 860 M, VAE, CLIP ViT-L/14 text encoder: the public
   configs, written out below) with seeded random weights as an fp16 safetensors folder, through
   the same writer as the built-in `tiny` model. No download.
2. Counts the UNet's FLOPs per denoising step (one forward of a classifier-free-guidance batch
   of 2 at 64×64 latents, with torch's FlopCounterMode) and reads the card's fp16 dense peak.
3. **bare**: `bench/_bare_gpu.py`, the best plain diffusers loop: fp16, SDPA attention (torch's
   default), UNet in channels-last, `torch.compile` of the UNet (`--compile`), each batch size of
   `--batch-sizes`; the best images/s wins.
4. **unmake**: `unmake build` of a zine of `--images` images with that model, at the best batch
   size and with the bare loop's tuning set in its config (`attention: sdpa`, `channels_last:
   true`, `compile:` as `--compile`; generator/performance.py), checked in its records;
   images/s from the seconds its records state (pipeline time, as for bare) and from the wall
   clock of the whole build.
5. Prints both, their ratio (target: unmake ≥ 0.97× bare) and the share of the fp16 peak each
   reaches (target ≥ 50 %): FLOPs per image = UNet FLOPs per step × steps (the VAE decode and
   text encoder are not counted, so the share is a lower bound).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml
from _util import BIN, OUT, ROOT, child_env, fresh, run_timed, table

sys.path.insert(0, str(ROOT))

# Stable Diffusion v1.5's component configs (runwayml/stable-diffusion-v1-5, public).
SD15: dict = {
    "seed": 0,
    "unet": {
        "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
        "block_out_channels": [320, 640, 1280, 1280],
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                             "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                           "CrossAttnUpBlock2D"],
        "cross_attention_dim": 768, "attention_head_dim": 8, "norm_num_groups": 32,
    },
    "vae": {
        "sample_size": 512, "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32,
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    },
    "text_encoder": {
        "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
        "num_hidden_layers": 12, "max_position_embeddings": 77, "projection_dim": 768,
    },
    "scheduler": {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                  "num_train_timesteps": 1000, "steps_offset": 1, "set_alpha_to_one": False,
                  "skip_prk_steps": True},
}
# fp16 dense tensor-core peaks (TFLOP/s, without sparsity), from the vendors' data sheets
PEAKS = {"H100 SXM": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0, "H200": 989.4,
         "A100": 312.0, "L40S": 362.1, "L4": 121.0, "RTX 4090": 165.2}


def smoke_recipe() -> dict:
    """SD 1.5's layout at a fraction of its widths: the same code path, seconds on a CPU."""
    small = json.loads(json.dumps(SD15))
    small["unet"].update(block_out_channels=[32, 32, 64, 64], cross_attention_dim=32,
                         attention_head_dim=4, norm_num_groups=8, sample_size=16)
    small["vae"].update(block_out_channels=[16, 16, 32, 32], norm_num_groups=8,
                        layers_per_block=1, sample_size=128)
    small["text_encoder"].update(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                 num_hidden_layers=2, projection_dim=32)
    return small


def peak_tflops(name: str, given: float | None) -> tuple[float | None, str]:
    if given:
        return given, "--peak-tflops"
    for card, tflops in sorted(PEAKS.items(), key=lambda kv: -len(kv[0])):
        if all(part in name for part in card.split()):
            return tflops, card
    return None, "unknown card (pass --peak-tflops)"


def unet_flops(folder: Path, device: str, latent: int) -> float:
    """FLOPs of one UNet forward on a guidance batch of 2 (what one denoising step costs)."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", dtype=dtype,
                                                use_safetensors=True).to(device)
    width = unet.config.cross_attention_dim
    sample = torch.zeros(2, 4, latent, latent, dtype=dtype, device=device)
    text = torch.zeros(2, 77, width, dtype=dtype, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(sample, torch.tensor([500, 500], device=device), encoder_hidden_states=text)
    return float(counter.get_total_flops())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch-sizes", default="1,2,4,8,16")
    parser.add_argument("--compile", action="store_true", help="torch.compile the bare UNet")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="a miniature on the CPU: checks the script, measures nothing")
    args = parser.parse_args()
    if args.cpu_smoke:
        args.images, args.steps, args.size, args.batch_sizes = 4, 2, 128, "1,2"

    import torch

    from generator.backends.tiny import ensure_folder, write_pipeline

    device = "cuda" if torch.cuda.is_available() and not args.cpu_smoke else "cpu"
    if device == "cpu" and not args.cpu_smoke:
        raise SystemExit("bench_gpu: no CUDA device here; --cpu-smoke checks the script on a CPU")
    recipe = smoke_recipe() if args.cpu_smoke else SD15
    name = "sd15-smoke" if args.cpu_smoke else "sd15-random"
    folder = ensure_folder(OUT / "gpu" / name, lambda tmp: write_pipeline(
        tmp, recipe, f"# {name}\n\nSD 1.5's architecture, random weights (bench only).\n",
        half=not args.cpu_smoke))
    card = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    flops_step = unet_flops(folder, device, args.size // 8)
    flops_image = flops_step * args.steps / 2  # a step's batch of 2 makes one image's step
    peak, peak_from = peak_tflops(card, args.peak_tflops)
    env = child_env(None)

    # bare: every batch size, best wins
    spec = {"path": str(folder), "steps": args.steps, "size": args.size,
            "images": args.images, "compile": args.compile,
            "batch_sizes": [int(b) for b in args.batch_sizes.split(",")]}
    spec_path = fresh(OUT / "gpu" / "bare") / "spec.json"
    spec_path.write_text(json.dumps(spec), "utf-8")
    bare = json.loads(run_timed([sys.executable, str(ROOT / "bench" / "_bare_gpu.py"),
                                 str(spec_path)], ROOT, env).stdout.strip().splitlines()[-1])
    best = max(bare["by_batch"], key=lambda b: b["images_per_s"])

    # unmake, at that batch size
    zine = fresh(OUT / "gpu" / "zine")
    (zine / "docs").mkdir()
    # what the bare loop does to be fast, unmake is told to do too
    tuning = {"attention": "sdpa", "channels_last": True, "compile": args.compile}
    config = {"site_name": "bench gpu", "theme": {"name": "material", "font": False},
              "plugins": [{"unmake": {"store": ".unmake", "batch_size": best["batch"],
                                      "models": {"default": str(folder)}, **tuning}}]}
    (zine / "mkdocs.yml").write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
    body = yaml.safe_dump({"prompt": "a photo of a lighthouse at dusk", "steps": args.steps,
                           "seeds": list(range(args.images)), "size": [args.size, args.size]},
                          sort_keys=False)
    (zine / "docs" / "index.md").write_text(f"# GPU\n\n```generate\n{body}```\n", "utf-8")
    timed = run_timed([str(BIN / "unmake"), "build"], zine, env)
    records = [json.loads(p.read_text("utf-8"))
               for p in (zine / ".unmake" / "records").glob("*/*.json")]
    applied = {json.dumps(r["env"].get("pipeline"), sort_keys=True) for r in records}
    wanted = {k: v for k, v in tuning.items() if v}
    if args.compile:
        wanted["compile"] = "max-autotune" if device == "cuda" else "default"
    if applied != {json.dumps(wanted, sort_keys=True)}:
        raise SystemExit(f"bench_gpu: unmake's records state {sorted(applied)}, not {wanted}")
    pipeline_s = sum(r["seconds"] for r in records)
    unmake_ips = len(records) / pipeline_s
    wall_ips = len(records) / timed.wall

    def share(ips: float) -> str:
        return f"{ips * flops_image / (peak * 1e12):.0%}" if peak else "n/a"

    rows = [[f"bare (batch {b['batch']}{', compiled' if args.compile else ''})",
             f"{b['images_per_s']:.3f}", share(b["images_per_s"])] for b in bare["by_batch"]]
    rows.append([f"unmake build (batch {best['batch']}, {', '.join(sorted(wanted))}), "
                 "pipeline time", f"{unmake_ips:.3f}",
                 share(unmake_ips)])
    rows.append(["unmake build, whole build (load, store, site)", f"{wall_ips:.3f}",
                 share(wall_ips)])
    print(table(f"{card}: {args.size}×{args.size}, {args.steps} steps, {args.images} images; "
                f"UNet {flops_step / 1e12:.2f} TFLOP per step (batch 2); peak "
                f"{peak or '?'} TFLOP/s ({peak_from})", ["side", "images/s", "of fp16 peak"],
                rows))
    print(f"unmake / best bare: {unmake_ips / best['images_per_s']:.3f}x (target >= 0.97x); "
          f"median stored seconds per image {statistics.median(r['seconds'] for r in records):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
