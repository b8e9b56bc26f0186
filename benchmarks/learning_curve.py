"""Object accuracy and CMMD of a base-model run against training steps and CPU-hours, as a PNG plot.

    python benchmarks/learning_curve.py --run runs/base-v2 [--every 2000] [--prompts 64 --seeds 2]
    python benchmarks/learning_curve.py --run runs/base-v2 --plot-only    # redraw from the cache

A run trained with ``snapshot_every`` keeps the EMA weights of every N-th step in ``snapshots/``
(with the training seconds so far). Each snapshot becomes a pipeline (the run's VAE, the
snapshot's UNet and text encoder) and is scored like ``benchmarks/embedded_model.py`` scores a
model: held-out attribute prompts of 1-3 objects from the run's scene distribution, every named
object found by the scene recogniser (all of a prompt's, and per object, with 95% intervals
bootstrapped over prompts), and CMMD / Frechet distance to held-out renders in the recogniser's
features. Scores are cached in ``RUN/learning-curve.jsonl`` (a re-run scores only new snapshots);
the plot goes to ``RUN/learning-curve.png`` (or ``--png``). CPU-hours count the VAE stage, the
latent encoding and the diffusion steps, as the run's checkpoints record them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from embedded_model import object_accuracy  # noqa: E402

from spatialgen.eval.scene.recogniser import SceneRecogniser  # noqa: E402
from spatialgen.logs import quiet_libraries  # noqa: E402
from spatialgen.models.pipeline import build_pipeline, set_model_card  # noqa: E402
from spatialgen.models.training import BaseTrainConfig  # noqa: E402
from spatialgen.training_harness import list_snapshots  # noqa: E402


def snapshot_pipeline(run: Path, cfg: BaseTrainConfig, snapshot: Path):
    """The pipeline a snapshot stands for: the run's model config, its VAE, the snapshot's EMA weights."""
    pipe = build_pipeline(cfg.model_config)
    pipe.vae = AutoencoderKL.from_pretrained(run / "vae", use_safetensors=True)
    for name in ("unet", "text_encoder"):
        getattr(pipe, name).load_state_dict(load_file(str(snapshot / f"{name}.safetensors")))
    manifest = Path(cfg.data) / "manifest.json"
    set_model_card(pipe, {"model": cfg.model, "data": json.loads(manifest.read_text())["params"]})
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(torch.float32)


def vae_hours(run: Path) -> float:
    record = run / "vae" / "training.json"
    return json.loads(record.read_text())["seconds"] / 3600 if record.is_file() else 0.0


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = sorted(rows, key=lambda r: r["step"])
    steps = np.array([r["step"] for r in rows])
    hours = np.array([r["cpu_hours"] for r in rows])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label, colour in (
        ("object_accuracy_all_objects", "every named object", "tab:blue"),
        ("object_accuracy_per_object", "per object", "tab:orange"),
    ):
        values = np.array([r[key] for r in rows])
        low, high = np.array([r[f"{key}_ci"] for r in rows]).T
        left.plot(steps, values, "o-", color=colour, label=label)
        left.fill_between(steps, low, high, color=colour, alpha=0.2)
    left.set_ylabel("held-out prompts: objects found (%)")
    left.set_ylim(0, 100)
    left.legend(loc="lower right")
    right.plot(steps, [r["cmmd_recogniser"] for r in rows], "o-", color="tab:green", label="CMMD")
    right.set_ylabel("CMMD to held-out renders (recogniser features)", color="tab:green")
    twin = right.twinx()
    twin.plot(steps, [r["frechet_recogniser"] for r in rows], "s--", color="tab:red", label="Frechet")
    twin.set_ylabel("Frechet distance (recogniser features)", color="tab:red")
    for axis in (left, right):
        axis.set_xlabel("diffusion training steps")
        axis.grid(alpha=0.3)
        if len(steps) > 1:
            top = axis.secondary_xaxis(
                "top", functions=(lambda s: np.interp(s, steps, hours), lambda h: np.interp(h, hours, steps))
            )
            top.set_xlabel("CPU-hours, all stages (this 2-core machine)")
    n = rows[-1]["object_images"]
    fig.suptitle(f"{title}: {n} images per point (95% intervals over prompts)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--every", type=int, default=2000, help="score snapshots whose step is a multiple of this")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=25, help="DDIM sampling steps")
    parser.add_argument("--png", type=Path, default=None)
    parser.add_argument("--recogniser", default=None, help="recogniser folder (default: the embedded one)")
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args()
    quiet_libraries()

    cfg = BaseTrainConfig.from_file(args.run / "config.json")
    cache = args.run / "learning-curve.jsonl"
    rows = [json.loads(line) for line in cache.read_text().splitlines()] if cache.is_file() else []
    detector = args.recogniser or "embedded"
    done = {(r["step"], r["prompts"], r["seeds"], r["sampling_steps"]) for r in rows if r.get("recogniser") == detector}
    if not args.plot_only:
        recogniser = SceneRecogniser.load(args.recogniser)
        offset = vae_hours(args.run)
        for step, folder in list_snapshots(args.run):
            if step % args.every or (step, args.prompts, args.seeds, args.steps) in done:
                continue
            state = json.loads((folder / "state.json").read_text())
            torch.manual_seed(0)
            scores = object_accuracy(
                snapshot_pipeline(args.run, cfg, folder), recogniser, args.prompts, args.seeds, args.steps
            )
            row = {
                "step": step,
                "cpu_hours": offset + state["seconds"] / 3600,
                "prompts": args.prompts,
                "seeds": args.seeds,
                "sampling_steps": args.steps,
                "recogniser": detector,
                **scores,
            }
            rows.append(row)
            with cache.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    rows = [
        r for r in rows if r["prompts"] == args.prompts and r["seeds"] == args.seeds and r.get("recogniser") == detector
    ]
    if not rows:
        raise SystemExit(f"no scored snapshots in {args.run}; train with snapshot_every set")
    png = args.png or args.run / "learning-curve.png"
    plot(rows, png, f"{args.run.name}")
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
