"""Short I-LDM LoRA trainings side by side: which lever makes the co-generated maps describe their image?

    python benchmarks/ildm_levers.py --data data/scenes-train --intrinsic-vae runs/ivae/intrinsic_vae \\
        --steps 1000 --out runs/ildm-levers [--only wide,wide-clean]

Each variant trains the intrinsic LoRA (``spatialgen.ildm.training.train_ildm``) for the same
number of steps on the same batches (batches are a function of the seed and the step), from the
same base and intrinsic VAE, then is scored at every kept checkpoint on held-out attribute
prompts under Drop (``benchmarks/ildm_joint.py curve``): segmentation foreground IoU and segment
count against the recogniser, depth and normals against the estimator, objects found; each with
its chance row. Finished variants are skipped on a re-run; a killed one resumes from its last
checkpoint. Prints one row per variant and checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from spatialgen.logs import quiet_libraries  # noqa: E402

WIDE = ["self-attention", "resnets", "conv-io"]
#: name -> settings that differ from the paper's recipe (rank 32 on self-attention, w = 1, lr --lr)
VARIANTS: dict[str, dict] = {
    "paper": {},
    "wide": {"placement": WIDE},
    "wide-clean": {"placement": WIDE, "p_image_clean": 0.2, "p_intrinsic_clean": 0.2},
    "wide-independent": {"placement": WIDE, "p_image_clean": 0.15, "p_intrinsic_clean": 0.15, "p_independent": 0.3},
    "wide-partner": {"placement": [*WIDE, "partner-input"], "p_image_clean": 0.15, "p_intrinsic_clean": 0.15},
    # The paper's Table 3 on the shipped recipe: maps as a coarse estimator would give them.
    "wide-partner-coarse16": {
        "placement": [*WIDE, "partner-input"],
        "p_image_clean": 0.15,
        "p_intrinsic_clean": 0.15,
        "intrinsic_resolution": 16,
    },
    "everywhere": {"placement": [*WIDE, "cross-attention", "feed-forward"]},
    "wide-lr1e-3": {"placement": WIDE, "lr": 1e-3},
    "wide-rank64": {"placement": WIDE, "rank": 64},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--intrinsic-vae", required=True)
    parser.add_argument("--base", default="embedded")
    parser.add_argument("--out", default="runs/ildm-levers")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--only", default=None, help="comma-separated variants (default: all)")
    parser.add_argument("--lag", type=int, default=0, help="also score lagged co-generation (maps N steps behind)")
    args = parser.parse_args()
    quiet_libraries()
    from ildm_joint import curve  # noqa: PLC0415 - a sibling benchmark script

    from spatialgen.ildm.training import ILDMTrainConfig, train_ildm
    from spatialgen.training_harness import list_checkpoints

    names = args.only.split(",") if args.only else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    table = {}
    for name in names:
        folder = Path(args.out) / name
        settings = {"lr": args.lr, **VARIANTS[name]}
        cfg = ILDMTrainConfig(
            data=args.data,
            out=str(folder),
            intrinsic_vae=args.intrinsic_vae,
            base=args.base,
            steps=args.steps,
            batch_size=args.batch_size,
            checkpoint_every=args.checkpoint_every,
            keep_checkpoints=max(2, args.steps // args.checkpoint_every),
            sample_steps=10,
            **settings,
        )
        done = [step for _, step, _ in list_checkpoints(folder)] if folder.is_dir() else []
        if not done or max(done) < args.steps:
            train_ildm(cfg, resume="latest" if done else None, cpu=True)
        curve(argparse.Namespace(run=str(folder), prompts=args.prompts, seeds=2, steps=25, lag=0))
        if args.lag:
            curve(argparse.Namespace(run=str(folder), prompts=args.prompts, seeds=2, steps=25, lag=args.lag))
        table[name] = {"settings": {k: v for k, v in asdict(cfg).items() if k in settings}}
        table[name]["curve"] = json.loads((folder / "consistency-curve.json").read_text())
    print("\n| variant | step | CPU-h | seg IoU | count agrees | depth delta1 | normals on objects | objects found |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, row in table.items():
        for point in sorted(row["curve"].values(), key=lambda r: (r.get("lag", 0), r["step"])):
            s = point["summary"]
            lag = f" (maps {point['lag']} steps behind)" if point.get("lag") else ""
            print(
                f"| {name}{lag} | {point['step']} | {point['hours']:.2f} | {s['seg_iou']['mean']:.3f} "
                f"(chance {s['chance_seg_iou']['mean']:.3f}) | {100 * s['count_agrees']['mean']:.1f}% | "
                f"{100 * s['depth_delta1']['mean']:.1f}% | {s['normal_object_mean']['mean']:.1f} deg | "
                f"{100 * s['objects_found']['mean']:.1f}% |"
            )


if __name__ == "__main__":
    main()
