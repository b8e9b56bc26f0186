"""Measure the embedded model: sampling speed and memory, VAE reconstruction, object and relation accuracy.

    python benchmarks/embedded_model.py [--model embedded] [--relational 64] [--attribute 64] [--out FILE.json]
    python benchmarks/embedded_model.py --ceiling-only   # what the recogniser and the VAE allow

Held-out data come from scene-world seeds no training set uses (999 for renders, the
evaluation seed of ``spatialgen.eval.prompts.scene_prompts`` for relational prompts), drawn from the
scene distribution the model was trained on (its card's data config, capped at 3 objects).
Objects are found by the embedded scene-world recogniser; 2D relations are scored with VISOR's
rule on its boxes.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch

from spatialgen.eval.metrics.quality import scene_quality
from spatialgen.eval.metrics.statistics import bootstrap_interval, bootstrap_ratio_interval
from spatialgen.eval.prompts.scene_prompts import prompt_objects, relational_prompts
from spatialgen.eval.scene.recogniser import SceneRecogniser
from spatialgen.eval.scorers.visor import visor_scores
from spatialgen.generate import GenerationSettings, generate_images
from spatialgen.models import load_pipeline
from spatialgen.models.data import model_scene_config
from spatialgen.models.decoder_training import held_out_renders, reconstruction_mse
from spatialgen.models.pipeline import model_card
from spatialgen.scenes import make_sample, scene_seed
from spatialgen.scenes.held_out import HELD_OUT_SEED


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


def image_size(pipe) -> int:
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


def vae_reconstruction(pipe, n: int) -> dict[str, float]:
    config = model_scene_config(model_card(pipe), max_objects=None)
    mse = reconstruction_mse(pipe.vae, held_out_renders(n, image_size(pipe), config))
    return {"vae_mse": mse, "vae_psnr_db": float(10 * np.log10(1 / mse)), "vae_images": n}


def attribute_scenes(pipe, n_prompts: int):
    """Held-out scenes of 1-3 objects from the model's training distribution; their attribute captions are the
    object-accuracy prompts."""
    config = model_scene_config(model_card(pipe))
    return [make_sample(scene_seed(HELD_OUT_SEED + 1, i), image_size(pipe), config) for i in range(n_prompts)]


def score_objects(recogniser, images, prompts: list[str], prefix: str, per_prompt: int = 1) -> dict[str, float]:
    """Is every named (colour, shape) of each prompt detected in its image, and per object?

    Images come prompt-major, ``per_prompt`` of each; the 95% intervals (``_ci``) bootstrap over prompts.
    """
    detections = recogniser.detect(images)
    all_found, object_hits, objects = [], [], []
    for prompt, dets in zip(prompts, detections, strict=True):
        wanted = set(prompt_objects(prompt))
        found = {(d.colour, d.shape) for d in dets}
        objects.append(len(wanted))
        object_hits.append(len(wanted & found))
        all_found.append(float(wanted <= found))
    by_prompt = np.asarray(all_found).reshape(-1, per_prompt).mean(axis=1)
    hits = np.asarray(object_hits, dtype=float).reshape(-1, per_prompt).sum(axis=1)
    named = np.asarray(objects, dtype=float).reshape(-1, per_prompt).sum(axis=1)
    return {
        f"{prefix}_all_objects": 100.0 * float(np.mean(all_found)),
        f"{prefix}_all_objects_ci": [100.0 * v for v in bootstrap_interval(by_prompt)],
        f"{prefix}_per_object": 100.0 * float(sum(object_hits)) / max(1, sum(objects)),
        f"{prefix}_per_object_ci": [100.0 * v for v in bootstrap_ratio_interval(hits, named)],
    }


def object_accuracy(
    pipe, recogniser, n_prompts: int, seeds: int, steps: int, guidance: float = 7.5
) -> dict[str, float]:
    """Held-out attribute captions of 1-3 objects: is every named (colour, shape) detected? And how far are
    the images from held-out renders of the model's scene distribution (CMMD / Frechet distance in the
    recogniser's features, as many renders as images)?"""
    prompts = [sample.captions["attributes"] for sample in attribute_scenes(pipe, n_prompts)]
    settings = GenerationSettings(steps=steps, guidance=guidance)
    results = generate_images(pipe, prompts, n=seeds, seed=42, settings=settings, progress=False)
    images = [r.image for r in results]
    scores = score_objects(recogniser, images, [r.prompt for r in results], "object_accuracy", per_prompt=seeds)
    config = model_scene_config(model_card(pipe))
    reference = [make_sample(scene_seed(HELD_OUT_SEED, i), image_size(pipe), config).rgb for i in range(len(images))]
    quality = scene_quality(images, reference, recogniser)
    return {
        **scores,
        "object_images": len(results),
        "cmmd_recogniser": quality.cmmd_recogniser,
        "frechet_recogniser": quality.frechet_recogniser,
    }


@torch.no_grad()
def object_accuracy_ceiling(pipe, recogniser, n_prompts: int) -> dict[str, float]:
    """The object-accuracy score of the prompts' own scenes, rendered and through the VAE.

    The rendered score is what the recogniser allows, the VAE round trip what the latent space
    allows: a generated image cannot be expected to score above either, so the gap between the
    round trip and the generated images is the UNet's (and text encoder's) to close.
    """
    samples = attribute_scenes(pipe, n_prompts)
    return {**round_trip_scores(pipe.vae, recogniser, samples), "ceiling_scenes": len(samples)}


@torch.no_grad()
def round_trip_scores(vae, recogniser, samples, prefix: str = "vae_round_trip") -> dict[str, float]:
    """Object accuracy of scenes' renders (``renders_*``) and of their mean-latent round trips through ``vae``."""
    prompts = [sample.captions["attributes"] for sample in samples]
    x = torch.from_numpy(np.stack([sample.rgb for sample in samples])).permute(0, 3, 1, 2).float() / 127.5 - 1
    recon = torch.cat(
        [vae.decode(vae.encode(x[i : i + 64]).latent_dist.mean).sample for i in range(0, len(x), 64)]
    ).clamp(-1, 1)
    return {**score_objects(recogniser, x, prompts, "renders"), **score_objects(recogniser, recon, prompts, prefix)}


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
    parser.add_argument("--ceiling-scenes", type=int, default=256, help="held-out scenes for the object ceiling")
    parser.add_argument("--ceiling-only", action="store_true", help="only the VAE and the object ceiling")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args()

    torch.manual_seed(0)
    rss_before = peak_rss_mb()
    pipe = load_pipeline(args.model)
    recogniser = SceneRecogniser.load(args.recogniser)
    results: dict[str, object] = {"model": args.model, "steps": args.steps, "threads": torch.get_num_threads()}
    if not (args.skip_speed or args.ceiling_only):
        for scheduler in ("ddim", "dpm"):
            results[f"seconds_per_image_{scheduler}_batch4"] = sampling_speed(pipe, args.steps, scheduler)
        results["peak_rss_mb"] = peak_rss_mb()
        results["peak_rss_mb_before_loading"] = rss_before
    results.update(vae_reconstruction(pipe, args.vae_images))
    results.update(object_accuracy_ceiling(pipe, recogniser, args.ceiling_scenes))
    if args.ceiling_only:
        args.attribute = args.relational = 0
    if args.attribute:
        results.update(object_accuracy(pipe, recogniser, args.attribute, args.seeds, args.steps))
    if args.relational:
        results.update(relation_accuracy(pipe, recogniser, args.relational, args.seeds, args.steps))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
