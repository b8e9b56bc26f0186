"""Short VAE trainings side by side: which lever buys reconstruction the recogniser can read?

    python benchmarks/vae_levers.py --data data/scenes-v2 --steps 600 --out runs/vae-levers

Each variant (a loss, a width, a latent channel count) trains the embedded model's VAE stage
(``spatialgen.models.training.train_vae``) from scratch for the same number of steps on the
same batches, then is scored on held-out renders of the data's own scene distribution: PSNR
on 256 scenes, and the share of 1-3-object scenes whose every named object the scene recogniser
still finds after the round trip (and per object), next to the renders' own score. Prints a table
and writes ``results.json`` in ``--out``; finished variants are kept and skipped on a re-run.

    python benchmarks/vae_levers.py --data data/scenes-v2 --score runs/base-v2/vae   # score a trained VAE as is
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

sys.path.insert(0, str(Path(__file__).parent))
from embedded_model import round_trip_scores  # noqa: E402

from spatialgen.eval.scene.recogniser import SceneRecogniser  # noqa: E402
from spatialgen.fileio import atomic_write_json  # noqa: E402
from spatialgen.models.config import TinySDConfig  # noqa: E402
from spatialgen.models.data import SceneTensors, model_scene_config  # noqa: E402
from spatialgen.models.decoder_training import held_out_renders, reconstruction_mse  # noqa: E402
from spatialgen.models.pipeline import build_pipeline  # noqa: E402
from spatialgen.models.training import BaseTrainConfig, train_vae  # noqa: E402
from spatialgen.scenes import make_sample, scene_seed  # noqa: E402
from spatialgen.scenes.held_out import HELD_OUT_SEED  # noqa: E402

VARIANTS = {
    "mse": {"vae_loss": "mse"},
    "l1_sobel": {"vae_loss": "l1_sobel"},
    "mse_latent8": {"vae_loss": "mse", "latent_channels": 8},
    "mse_wide": {"vae_loss": "mse", "vae_channels": [32, 64, 64]},
    "l1_sobel_latent8": {"vae_loss": "l1_sobel", "latent_channels": 8},
    "l1_sobel_wide": {"vae_loss": "l1_sobel", "vae_channels": [32, 64, 64]},
}


def held_out_sets(card: dict, resolution: int, n: int) -> tuple[torch.Tensor, list]:
    """Held-out renders of the data's distribution (for PSNR) and 1-3-object scenes (for the round trip)."""
    renders = held_out_renders(n, resolution, model_scene_config(card, max_objects=None))
    samples = [make_sample(scene_seed(HELD_OUT_SEED + 1, i), resolution, model_scene_config(card)) for i in range(n)]
    return renders, samples


def vae_scores(vae, recogniser, renders, samples) -> dict[str, float]:
    mse = reconstruction_mse(vae, renders)
    return {"psnr_db": float(10 * np.log10(1 / mse)), **round_trip_scores(vae, recogniser, samples, "round_trip")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-scenes", type=int, default=20000)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--scenes", type=int, default=256, help="held-out scenes scored")
    parser.add_argument("--score", type=Path, default=None, help="only score this trained VAE folder")
    args = parser.parse_args()
    card = {"data": json.loads((Path(args.data) / "manifest.json").read_text())["params"]}
    recogniser = SceneRecogniser.load()
    if args.score is not None:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(args.score, use_safetensors=True).eval()
        scores = vae_scores(vae, recogniser, *held_out_sets(card, vae.config.sample_size, args.scenes))
        print(json.dumps({"vae": str(args.score), **scores}, indent=2))
        return

    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    data = SceneTensors.from_shards(args.data, args.max_scenes)
    held_out = held_out_sets(card, data.resolution, args.scenes)
    for name in args.variants:
        if name in results:
            continue
        overrides = dict(VARIANTS[name])
        loss = overrides.pop("vae_loss")
        model = replace(
            TinySDConfig(resolution=data.resolution),
            **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()},
        ).validate()
        cfg = BaseTrainConfig(
            data=args.data,
            out=str(args.out / name),
            model=model.to_dict(),
            vae_steps=args.steps,
            vae_batch_size=args.batch_size,
            vae_lr=args.lr,
            vae_loss=loss,
            lr_schedule="cosine",
            warmup_steps=100,
            checkpoint_every=args.steps,
            keep_checkpoints=1,
            vae_mixed_precision="bf16" if args.bf16 else "no",
        ).validate()
        torch.manual_seed(0)
        start = time.perf_counter()
        accelerator = Accelerator(cpu=True)
        vae = train_vae(cfg, data, build_pipeline(model).vae, accelerator, None)
        seconds = time.perf_counter() - start
        results[name] = {
            **VARIANTS[name],
            "steps": args.steps,
            "batch_size": args.batch_size,
            "seconds": seconds,
            **vae_scores(vae, recogniser, *held_out),
        }
        atomic_write_json(results_path, results)
        print(name, json.dumps(results[name]), flush=True)
    print("| variant | s/step | PSNR dB | round trip: all objects | per object | renders: all objects |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(
            f"| {name} | {r['seconds'] / r['steps']:.2f} | {r['psnr_db']:.1f} | {r['round_trip_all_objects']:.1f}% "
            f"| {r['round_trip_per_object']:.1f}% | {r['renders_all_objects']:.1f}% |"
        )


if __name__ == "__main__":
    main()
