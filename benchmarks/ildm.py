"""Measure I-LDM against its base model on the scene world: cost, intrinsic VAE error, consistency, objects.

    python benchmarks/ildm.py [--model embedded | RUN/pipeline] [--base embedded] [--prompts 32] [--seeds 2]

1. Sampling time and peak memory per image at batch 4, 25 DDIM steps, for the base pipeline and
   for I-LDM under each schedule; each measured in its own process (peak RSS is per process),
   reported with the ratio to the base.
2. The intrinsic VAE's reconstruction error per intrinsic on 256 held-out scenes.
3. For Drop, Gaussian and None (the paper's Table 1 layout), on held-out attribute prompts:
   agreement of the co-generated depth and normals with those the scene estimator reads from the
   generated image (AbsRel / delta1 after scale-and-shift alignment, mean normal angle), and the
   object appearance rate (every named object found by the recogniser), beside the base model's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

HELD_OUT_SEED = 999


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_one(kind: str, model: str, base: str, steps: int, repeats: int = 4) -> dict[str, float]:
    """Seconds per image and this process's peak RSS for one pipeline (run in a fresh process)."""
    from spatialgen.generate import GenerationSettings, generate_images
    from spatialgen.ildm.pipeline import load_ildm_pipeline
    from spatialgen.models import load_pipeline

    pipe = load_pipeline(base) if kind == "base" else load_ildm_pipeline(model)
    schedule = None if kind == "base" else kind
    settings = GenerationSettings(steps=steps)
    generate_images(pipe, ["a red cube"] * 4, settings=settings, progress=False, schedule=schedule)  # warm-up
    start = time.perf_counter()
    for r in range(repeats):
        generate_images(
            pipe, ["a red cube on the grass"], n=4, seed=4 * r, settings=settings, progress=False, schedule=schedule
        )
    return {"seconds_per_image": (time.perf_counter() - start) / (4 * repeats), "peak_rss_mb": peak_rss_mb()}


def costs(model: str, base: str, steps: int) -> dict[str, dict[str, float]]:
    out = {}
    for kind in ("base", "drop", "gaussian", "none"):
        command = [
            sys.executable,
            __file__,
            "--measure-one",
            kind,
            "--model",
            model,
            "--base",
            base,
            "--steps",
            str(steps),
        ]
        out[kind] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    for kind in ("drop", "gaussian", "none"):
        out[kind]["time_ratio_to_base"] = out[kind]["seconds_per_image"] / out["base"]["seconds_per_image"]
        out[kind]["memory_ratio_to_base"] = out[kind]["peak_rss_mb"] / out["base"]["peak_rss_mb"]
    return out


def consistency_and_objects(model: str, base: str, n_prompts: int, seeds: int, steps: int) -> dict[str, dict]:
    from spatialgen.eval.intrinsic_metrics import depth_metrics, normal_metrics
    from spatialgen.eval.recogniser import SceneRecogniser
    from spatialgen.eval.scene_estimator import SceneEstimator
    from spatialgen.eval.scene_prompts import prompt_objects
    from spatialgen.generate import GenerationSettings, generate_images
    from spatialgen.ildm.pipeline import load_ildm_pipeline
    from spatialgen.intrinsics import normal_to_unit_range
    from spatialgen.models import load_pipeline
    from spatialgen.scenes import SceneConfig, make_sample, scene_seed

    config = SceneConfig(min_objects=1, max_objects=3)
    prompts = [
        make_sample(scene_seed(HELD_OUT_SEED + 1, i), 64, config).captions["attributes"] for i in range(n_prompts)
    ]
    settings = GenerationSettings(steps=steps)
    recogniser, estimator = SceneRecogniser.load(), SceneEstimator.load()

    def appearance(results) -> float:
        found = recogniser.detect([r.image for r in results])
        hits = [
            set(prompt_objects(r.prompt)) <= {(d.colour, d.shape) for d in dets}
            for r, dets in zip(results, found, strict=True)
        ]
        return 100.0 * float(np.mean(hits))

    table: dict[str, dict] = {}
    base_results = generate_images(load_pipeline(base), prompts, n=seeds, seed=42, settings=settings, progress=False)
    table["base"] = {"object_appearance": appearance(base_results)}
    pipe = load_ildm_pipeline(model)
    for schedule in ("drop", "gaussian", "none"):
        results = generate_images(pipe, prompts, n=seeds, seed=42, settings=settings, progress=False, schedule=schedule)
        estimated = estimator.estimate([r.image for r in results])
        co_depth = np.stack([r.intrinsics["depth"] for r in results])
        co_normal = np.stack([r.intrinsics["normal"] for r in results])
        est_normal = normal_to_unit_range(np.moveaxis(estimated.normal, -1, 1))
        row = {f"depth_{k}": v for k, v in depth_metrics(co_depth, estimated.depth[:, None]).items()}
        row.update({f"normal_{k}": v for k, v in normal_metrics(co_normal, est_normal).items()})
        row["object_appearance"] = appearance(results)
        table[schedule] = row
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded", help="embedded or an I-LDM pipeline folder")
    parser.add_argument("--base", default="embedded")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--cost-only", action="store_true", help="only part 1 (time and memory)")
    parser.add_argument("--measure-one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from spatialgen.logs import quiet_libraries

    quiet_libraries()
    torch.manual_seed(0)
    if args.measure_one:
        print(json.dumps(measure_one(args.measure_one, args.model, args.base, args.steps)))
        return
    from spatialgen.ildm.pipeline import load_ildm_pipeline
    from spatialgen.ildm.vae_training import held_out_packed, reconstruction_errors

    results: dict[str, object] = {"model": args.model, "base": args.base, "threads": torch.get_num_threads()}
    results["cost"] = costs(args.model, args.base, args.steps)
    if args.cost_only:
        print(json.dumps(results, indent=2))
        return
    vae = load_ildm_pipeline(args.model).intrinsic_vae
    results["intrinsic_vae_held_out"] = reconstruction_errors(vae, held_out_packed(256, 64))
    results["schedules"] = consistency_and_objects(args.model, args.base, args.prompts, args.seeds, args.steps)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
