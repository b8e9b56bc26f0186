"""Measure InfSplign on the embedded model: its cost per image, and what it does to 2D relation accuracy.

    python benchmarks/infsplign.py overhead [--steps 25] [--batch 4] [--repeats 5] [--sd-layout]
    python benchmarks/infsplign.py effect [--prompts 200] [--seeds 4] [--steps 25 50] [--losses ...]
    python benchmarks/infsplign.py weights [--weights 300 1000 3000]   # the guidance-weight sweep (sigmoid)
    python benchmarks/infsplign.py effect --ildm --losses sigmoid --presence off   # I-LDM vs I-LDM + InfSplign

``overhead`` times plain and guided sampling of the same batch at the same steps, interleaved, and
prints the ratio of medians; ``--sd-layout`` times a randomly initialised UNet with SD 1.x's block
layout (4 levels, 2 layers per block, 3 cross-attention up blocks) at a fifth of its width on
32 x 32 latents, where the decoder's last, highest-resolution block (which the gradient pass
skips) carries SD's share of the work. ``effect`` samples held-out scene-world prompts (triplets the
embedded model never saw in a caption) with 4 seeds each (image k: seed 42 + k), finds the objects
with the embedded scene recogniser and scores them with VISOR's rule: OA, VISOR_cond,
VISOR_uncond and VISOR_1..4, plus the mean attention-centroid Delta at the last guided step.
Every configuration samples the same prompts and seeds; 95% intervals are bootstrapped over prompts
(``*_ci``), and each guided row's VISOR_uncond is paired with the base's on the same prompts
(``VISOR_uncond_minus_base``: difference, low, high).

The README's figures come from (each row is deterministic, so runs can be split like this):

    python benchmarks/infsplign.py weights --prompts 64 --weights 10 30 100 300 1000 3000
    python benchmarks/infsplign.py effect --prompts 64 --steps 25 50 --losses sigmoid gelu leaky_relu relu \
        --presence off --also sigmoid
    python benchmarks/infsplign.py effect --ildm --prompts 64 --losses sigmoid --presence off
    python benchmarks/infsplign.py effect --prompts 64 --losses sigmoid --presence on
    python benchmarks/infsplign.py overhead; python benchmarks/infsplign.py overhead --sd-layout --repeats 3

(``effect`` uses the weight the model card recommends, which the ``weights`` sweep chose.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import torch

from spatialgen.eval.metrics.statistics import bootstrap_interval, bootstrap_ratio_interval, paired_difference_interval
from spatialgen.eval.prompts.prompt_sets import scene_prompt_set
from spatialgen.eval.prompts.scene_prompts import prompt_objects
from spatialgen.eval.scene.recogniser import SceneRecogniser
from spatialgen.eval.scorers.visor import visor_scores
from spatialgen.guidance import InfSplignConfig, infsplign_pipeline, recommended_weight
from spatialgen.models import TinySDConfig, build_pipeline, load_pipeline

LOSS_NAMES = ("sigmoid", "gelu", "leaky_relu", "relu")


def sample(pipe, prompts: list[str], seeds: int, steps: int, config: InfSplignConfig | None, batch: int):
    """Images of every prompt x seed (seed 42 + k), and the per-image Delta at the last guided step."""
    jobs = [(p, 42 + k) for p in prompts for k in range(seeds)]
    images, deltas = [], []
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        out = pipe(
            [p for p, _ in chunk],
            num_inference_steps=steps,
            generator=[torch.Generator().manual_seed(s) for _, s in chunk],
            output_type="pil",
            spatial_guidance=config,
        )
        images.extend(out.images)
        if out.trace is not None and out.trace.steps:
            deltas.extend(float(d) for d in out.trace.steps[-1].delta)
    return images, deltas


def score(recogniser: SceneRecogniser, records, images, seeds: int) -> tuple[dict[str, object], list[float]]:
    """VISOR's scores with 95% intervals bootstrapped over prompts, and each prompt's VISOR_uncond (for pairing)."""
    triplets = [(prompt_objects(r.obj_a)[0], r.relation, prompt_objects(r.obj_b)[0]) for r in records]
    verdicts = recogniser.relation_verdicts(images, triplets, seeds)
    scores: dict[str, object] = dict(visor_scores(verdicts, max_n=seeds))
    by_prompt: dict[object, list] = {}
    for v in verdicts:
        by_prompt.setdefault(v.prompt_id, []).append(v)
    groups = list(by_prompt.values())
    present = [sum(v.both_present for v in g) for g in groups]
    passed = [sum(v.passed and v.both_present for v in g) for g in groups]
    uncond = [100.0 * k / len(g) for k, g in zip(passed, groups, strict=True)]
    scores["OA_ci"] = [round(100.0 * x, 1) for x in bootstrap_ratio_interval(present, [len(g) for g in groups])]
    scores["VISOR_cond_ci"] = [round(100.0 * x, 1) for x in bootstrap_ratio_interval(passed, present)]
    scores["VISOR_uncond_ci"] = [round(x, 1) for x in bootstrap_interval(uncond)]
    return scores, uncond


SD_LAYOUT = TinySDConfig(
    resolution=256,
    vae_channels=(16, 32, 64, 64),
    unet_channels=(64, 128, 256, 256),
    unet_layers_per_block=2,
    unet_attention_heads=8,
)


def overhead(args: argparse.Namespace) -> dict[str, object]:
    if args.sd_layout:
        torch.manual_seed(0)
        pipe = infsplign_pipeline(build_pipeline(SD_LAYOUT))
        pipe.set_progress_bar_config(disable=True)
    else:
        pipe = infsplign_pipeline(load_pipeline(args.model))
    config = InfSplignConfig(weight=recommended_weight(pipe))
    prompts = ["a red cube to the left of a blue sphere"] * args.batch
    timings: dict[str, list[float]] = {"plain": [], "guided": []}
    for repeat in range(args.repeats + 1):
        for name, cfg in (("plain", None), ("guided", config)):
            start = time.perf_counter()
            sample(pipe, prompts[:1], args.batch, args.steps[0], cfg, args.batch)
            if repeat > 0:  # the first round warms up
                timings[name].append((time.perf_counter() - start) / args.batch)
    plain, guided = statistics.median(timings["plain"]), statistics.median(timings["guided"])
    return {
        "model": "SD 1.x layout (random, 1/5 width, 32x32 latents)" if args.sd_layout else args.model,
        "unet_parameters_m": round(sum(p.numel() for p in pipe.unet.parameters()) / 1e6, 1),
        "steps": args.steps[0],
        "guided_steps": config.guided_steps(args.steps[0]),
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "seconds_per_image_plain": round(plain, 4),
        "seconds_per_image_guided": round(guided, 4),
        "ratio": round(guided / plain, 3),
    }


def effect(args: argparse.Namespace, configs: dict[str, InfSplignConfig | None]) -> list[dict[str, object]]:
    if args.ildm:
        from spatialgen.ildm.pipeline import load_ildm_pipeline

        pipe = load_ildm_pipeline(args.model)
    else:
        pipe = infsplign_pipeline(load_pipeline(args.model))
    recogniser = SceneRecogniser.load()
    records = scene_prompt_set("2d", n=args.prompts, split="held_out")
    prompts = [r.prompt for r in records]
    rows = []
    base_uncond: dict[int, list[float]] = {}
    for steps in args.steps:
        for name, config in configs.items():
            if steps not in config_steps(name, args):
                continue
            start = time.perf_counter()
            images, deltas = sample(pipe, prompts, args.seeds, steps, config, args.batch)
            label = f"ildm {name}" if args.ildm else name
            scores, uncond = score(recogniser, records, images, args.seeds)
            row: dict[str, object] = {"config": label, "steps": steps, **scores}
            if name == "base":
                base_uncond[steps] = uncond
            elif steps in base_uncond:  # same prompts and seeds: a paired difference
                row["VISOR_uncond_minus_base"] = [
                    round(x, 1) for x in paired_difference_interval(base_uncond[steps], uncond)
                ]
            row["mean_delta_last_guided"] = round(statistics.fmean(deltas), 4) if deltas else None
            row["seconds"] = round(time.perf_counter() - start, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def config_steps(name: str, args: argparse.Namespace) -> list[int]:
    """Every configuration runs at the first step count; the later ones only for those in --also."""
    if args.only is not None and name not in args.only:
        return []
    if args.also is None or name in args.also or name == "base":
        return args.steps
    return args.steps[:1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("overhead", "effect", "weights"))
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--steps", type=int, nargs="+", default=[25])
    parser.add_argument("--batch", type=int, default=None, help="images per batch (default: 4 overhead, 16 effect)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ildm", action="store_true", help="effect: sample with the I-LDM pipeline")
    parser.add_argument("--sd-layout", action="store_true", help="overhead: time an SD 1.x-shaped random UNet")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--losses", nargs="+", default=list(LOSS_NAMES), choices=LOSS_NAMES)
    parser.add_argument("--presence", choices=("off", "on", "both"), default="both")
    parser.add_argument("--weight", type=float, default=None, help="guidance weight (default: the model's)")
    parser.add_argument("--weights", type=float, nargs="+", default=[300.0, 1000.0, 3000.0])
    parser.add_argument(
        "--also", nargs="*", default=None, help="configs that also run at the later --steps (default: all)"
    )
    parser.add_argument("--only", nargs="*", default=None, help="run only these configs (default: all)")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    torch.manual_seed(0)

    if args.part == "overhead":
        args.batch = args.batch or 4
        results: object = overhead(args)
    else:
        args.batch = args.batch or 16
        weight = args.weight if args.weight is not None else recommended_weight(load_pipeline(args.model))
        configs: dict[str, InfSplignConfig | None] = {"base": None}
        if args.part == "weights":
            for w in args.weights:
                configs[f"sigmoid w={w:g}"] = InfSplignConfig(loss="sigmoid", weight=w)
        else:
            for loss in args.losses:
                plain = InfSplignConfig(loss=loss, weight=weight)
                if args.presence in ("off", "both"):
                    configs[loss] = plain
                if args.presence in ("on", "both"):
                    configs[f"{loss}+presence"] = replace(plain, presence=True)
        results = {"model": args.model, "prompts": args.prompts, "seeds": args.seeds, "weight": weight}
        results["rows"] = effect(args, configs)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
