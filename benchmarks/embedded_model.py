"""Measure the embedded model: sampling speed and memory, VAE reconstruction, object and relation accuracy.

    python benchmarks/embedded_model.py [--model embedded] [--relational 64] [--attribute 64] [--out FILE.json]

Held-out data come from scene-world seeds no training set uses (999 for renders, the
evaluation seed of ``spatialgen.eval.scene_prompts`` for relational prompts). Objects are found
by the embedded scene-world recogniser; 2D relations are scored with VISOR's rule on its boxes.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch

from spatialgen.eval.recogniser import SceneRecogniser
from spatialgen.eval.scene_prompts import prompt_objects, relational_prompts
from spatialgen.eval.visor import visor_scores
from spatialgen.generate import GenerationSettings, generate_images
from spatialgen.models import load_pipeline
from spatialgen.scenes import SceneConfig, make_sample, scene_seed

HELD_OUT_SEED = 999


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sampling_speed(pipe, steps: int, scheduler: str, batch: int = 4, repeats: int = 2) -> float:
    settings = GenerationSettings(steps=steps, scheduler=scheduler)
    generate_images(pipe, ["a red cube"] * batch, settings=settings, batch_size=batch, progress=False)  # warm-up
    start = time.perf_counter()
    for r in range(repeats):
        generate_images(
            pipe,
            ["a red cube on the grass"],
            n=batch,
            seed=r * batch,
            settings=settings,
            batch_size=batch,
            progress=False,
        )
    return (time.perf_counter() - start) / (repeats * batch)


@torch.no_grad()
def vae_reconstruction(pipe, n: int) -> dict[str, float]:
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    rgb = np.stack([make_sample(scene_seed(HELD_OUT_SEED, i), size).rgb for i in range(n)])
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 127.5 - 1
    recon = torch.cat(
        [pipe.vae.decode(pipe.vae.encode(x[i : i + 64]).latent_dist.mean).sample for i in range(0, n, 64)]
    )
    mse = float(((recon.clamp(-1, 1) - x) / 2).pow(2).mean())  # in [0, 1] pixel units
    return {"vae_mse": mse, "vae_psnr_db": float(10 * np.log10(1 / mse)), "vae_images": n}


def object_accuracy(pipe, recogniser, n_prompts: int, seeds: int, steps: int) -> dict[str, float]:
    """Held-out attribute captions of 1-3 objects: is every named (colour, shape) detected?"""
    config = SceneConfig(min_objects=1, max_objects=3)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    prompts = [
        make_sample(scene_seed(HELD_OUT_SEED + 1, i), size, config).captions["attributes"] for i in range(n_prompts)
    ]
    results = generate_images(pipe, prompts, n=seeds, seed=42, settings=GenerationSettings(steps=steps))
    detections = recogniser.detect([r.image for r in results])
    all_found = object_hits = objects = 0
    for r, dets in zip(results, detections, strict=True):
        wanted = set(prompt_objects(r.prompt))
        found = {(d.colour, d.shape) for d in dets}
        objects += len(wanted)
        object_hits += len(wanted & found)
        all_found += wanted <= found
    return {
        "object_accuracy_all_objects": 100.0 * all_found / len(results),
        "object_accuracy_per_object": 100.0 * object_hits / max(1, objects),
        "object_images": len(results),
    }


def relation_accuracy(pipe, recogniser, n_prompts: int, seeds: int, steps: int) -> dict[str, float]:
    records = relational_prompts(n_prompts)
    results = generate_images(
        pipe, [r.prompt for r in records], n=seeds, seed=42, settings=GenerationSettings(steps=steps)
    )
    triplets = [(r.a, r.relation, r.b) for r in records]
    verdicts = recogniser.relation_verdicts([r.image for r in results], triplets, seeds)
    return {**visor_scores(verdicts, max_n=seeds), "relation_images": len(results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--recogniser", default=None, help="recogniser folder (default: the embedded one)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--attribute", type=int, default=64, help="attribute prompts (x --seeds images)")
    parser.add_argument("--relational", type=int, default=64, help="relational prompts (x 4 images)")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--vae-images", type=int, default=256)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args()

    torch.manual_seed(0)
    rss_before = peak_rss_mb()
    pipe = load_pipeline(args.model)
    recogniser = SceneRecogniser.load(args.recogniser)
    results: dict[str, object] = {"model": args.model, "steps": args.steps, "threads": torch.get_num_threads()}
    if not args.skip_speed:
        for scheduler in ("ddim", "dpm"):
            results[f"seconds_per_image_{scheduler}_batch4"] = sampling_speed(pipe, args.steps, scheduler)
        results["peak_rss_mb"] = peak_rss_mb()
        results["peak_rss_mb_before_loading"] = rss_before
    results.update(vae_reconstruction(pipe, args.vae_images))
    results.update(object_accuracy(pipe, recogniser, args.attribute, args.seeds, args.steps))
    results.update(relation_accuracy(pipe, recogniser, args.relational, args.seeds, args.steps))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
