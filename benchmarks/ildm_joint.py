"""Does I-LDM's co-generation hold up on the scene world? Consistency, learning curves, exact-ground-truth payoff.

    python benchmarks/ildm_joint.py consistency [--model embedded] [--prompts 128] [--seeds 2] [--out runs/ildm-bench]
    python benchmarks/ildm_joint.py curve --run runs/ildm [--prompts 32]     # every kept checkpoint of a run
    python benchmarks/ildm_joint.py table [--out runs/ildm-bench]            # the README tables, from saved rows

``consistency``: for held-out prompts of three kinds (attributes: 1-3 objects; 2d and 3d
relations; :mod:`spatialgen.eval.runs.ildm_consistency`), x ``--seeds`` seeds, the base model's
images and I-LDM's under each schedule. Per sample: objects found and count exactness (the image),
and for I-LDM the agreement of the co-generated depth, normals and segmentation with what the
scene estimator and recogniser read from the image, beside a chance row (each map against another
prompt's image). Rows are saved one by one to ``OUT/consistency.json`` (a killed run resumes);
``table`` prints means with 95% bootstrap intervals over prompts, and I-LDM minus the base, paired.

``curve``: attribute prompts under Drop at every checkpoint a run kept (EMA weights where it has
them), against steps and training CPU-hours; ``RUN/consistency-curve.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from spatialgen.eval.runs.ildm_consistency import (
    KINDS,
    ConsistencyRecords,
    consistency_prompts,
    measure_results,
    paired_difference,
)
from spatialgen.fileio import atomic_write_json
from spatialgen.logs import quiet_libraries

SCHEDULES = ("drop", "gaussian", "none")
SHOWN = (
    ("objects_found", "objects found", 100),
    ("count_exact", "exactly the named objects", 100),
    ("depth_abs_rel", "depth AbsRel", 1),
    ("depth_delta1", "depth delta1", 100),
    ("normal_mean", "normals mean angle", 1),
    ("normal_object_mean", "normals on objects", 1),
    ("seg_iou", "segmentation foreground IoU", 1),
    ("count_agrees", "segment count agrees", 100),
)


def scene_config():
    from spatialgen.models import load_pipeline
    from spatialgen.models.data import model_scene_config
    from spatialgen.models.pipeline import model_card

    return model_scene_config(model_card(load_pipeline("embedded")))


def measure(pipe, prompts: list[str], seeds: int, steps: int, schedule: str | None) -> ConsistencyRecords:
    from spatialgen.eval.scene.recogniser import SceneRecogniser
    from spatialgen.eval.scene.scene_estimator import SceneEstimator
    from spatialgen.generate import GenerationSettings, generate_images

    results = generate_images(
        pipe,
        prompts,
        n=seeds,
        seed=42,
        settings=GenerationSettings(steps=steps),
        batch_size=16,
        progress=False,
        schedule=schedule,
    )
    return measure_results(results, prompts, SceneRecogniser.load(), SceneEstimator.load())


def load_rows(path: Path) -> dict[str, dict]:
    return json.loads(path.read_text()) if path.is_file() else {}


def consistency(args) -> None:
    from spatialgen.ildm.pipeline import load_ildm_pipeline
    from spatialgen.models import load_pipeline

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "consistency.json"
    rows = load_rows(path)
    config = scene_config()
    loaded: dict[str, object] = {}
    for kind in args.kinds.split(","):
        prompts = consistency_prompts(kind, args.prompts, config)
        for row in ("base", *args.schedules.split(",")):
            key = f"{row}|{kind}"
            if key in rows and rows[key]["settings"] == settings_of(args):
                continue
            which = "base" if row == "base" else "ildm"  # one I-LDM pipeline serves every schedule
            if which not in loaded:
                loaded[which] = load_pipeline(args.base) if which == "base" else load_ildm_pipeline(args.model)
            start = time.perf_counter()
            records = measure(loaded[which], prompts, args.seeds, args.steps, None if row == "base" else row)
            rows[key] = {
                "settings": settings_of(args),
                "seconds": time.perf_counter() - start,
                "records": records.to_dict(),
            }
            atomic_write_json(path, rows)
            print(f"{key}: {len(records.prompt_index)} images in {rows[key]['seconds']:.0f} s", flush=True)
    table(args)


def settings_of(args) -> dict:
    return {"model": args.model, "base": args.base, "prompts": args.prompts, "seeds": args.seeds, "steps": args.steps}


def cell(records: ConsistencyRecords, measure_name: str, scale: float) -> str:
    if measure_name not in records.values or np.all(np.isnan(records.values[measure_name])):
        return ""
    s = records.summary(measure_name)
    digits = 1 if scale == 100 or "normal" in measure_name else 3
    return f"{scale * s['mean']:.{digits}f} ({scale * s['low']:.{digits}f}-{scale * s['high']:.{digits}f})"


def table(args) -> None:
    rows = load_rows(Path(args.out) / "consistency.json")
    for kind in KINDS:
        present = [k for k in rows if k.endswith(f"|{kind}")]
        if not present:
            continue
        names = [k.split("|")[0] for k in present]
        records = {name: ConsistencyRecords.from_dict(rows[f"{name}|{kind}"]["records"]) for name in names}
        n_prompts = len(np.unique(next(iter(records.values())).prompt_index))
        n_images = len(next(iter(records.values())).prompt_index)
        print(f"\n### {kind} prompts ({n_prompts} prompts, {n_images} images per row; 95% bootstrap over prompts)\n")
        ildm = [n for n in names if n != "base"]
        header = ["measure", *names, *(f"chance ({n})" for n in ildm[:1])]
        print("| " + " | ".join(header) + " |")
        print("|" + " --- |" * len(header))
        for name, label, scale in SHOWN:
            cells = [cell(records[n], name, scale) for n in names]
            chance = [cell(records[ildm[0]], f"chance_{name}", scale)] if ildm else []
            print(f"| {label} | " + " | ".join(cells + chance) + " |")
        if "base" in records:
            for n in ildm:
                for name in ("objects_found", "count_exact"):
                    d = paired_difference(records["base"], records[n], name)
                    verdict = (
                        "unclear" if d["low"] <= 0 <= d["high"] else ("higher" if d["difference"] > 0 else "lower")
                    )
                    print(
                        f"- {n} minus base, {name}: {100 * d['difference']:+.1f} points "
                        f"({100 * d['low']:+.1f} to {100 * d['high']:+.1f}), {verdict}"
                    )


def curve(args) -> None:
    from spatialgen.ildm.training import pipeline_at_checkpoint
    from spatialgen.training_harness import list_checkpoints

    run = Path(args.run)
    path = run / "consistency-curve.json"
    rows = load_rows(path)
    prompts = consistency_prompts("attributes", args.prompts, scene_config())
    for _, step, folder in list_checkpoints(run):
        key = str(step)
        if key in rows and rows[key]["prompts"] == args.prompts:
            continue
        pipe = pipeline_at_checkpoint(run, folder)
        records = measure(pipe, prompts, args.seeds, args.steps, "drop")
        rows[key] = {
            "step": step,
            "hours": pipe.training_seconds / 3600,
            "prompts": args.prompts,
            "summary": {m: records.summary(m) for m in records.values},
        }
        atomic_write_json(path, rows)
        shown = {m: round(rows[key]["summary"][m]["mean"], 3) for m in ("objects_found", "seg_iou", "count_agrees")}
        print(f"step {step}: {shown}", flush=True)
    plot_curve(rows, run / "consistency-curve.png", run.name)


def plot_curve(rows: dict, png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(rows.values(), key=lambda r: r["step"])
    steps = [r["step"] for r in ordered]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = (
        (("seg_iou", "segmentation IoU"), ("count_agrees", "segment count agrees"), ("objects_found", "objects found")),
        (("depth_delta1", "depth delta1"),),
        (("normal_object_mean", "normals on objects (deg)"), ("normal_mean", "normals, all pixels (deg)")),
    )
    for ax, panel in zip(axes, panels, strict=True):
        for measure_name, label in panel:
            s = [r["summary"][measure_name] for r in ordered]
            ax.plot(steps, [x["mean"] for x in s], marker="o", label=label)
            ax.fill_between(steps, [x["low"] for x in s], [x["high"] for x in s], alpha=0.2)
            chance = [r["summary"].get(f"chance_{measure_name}") for r in ordered]
            if all(chance):
                ax.plot(steps, [x["mean"] for x in chance], linestyle=":", color=ax.lines[-1].get_color())
        ax.set_xlabel("LoRA steps")
        ax.legend(fontsize=7)
        secondary = ax.secondary_xaxis(
            "top", functions=(lambda x, o=ordered: np.interp(x, steps, [r["hours"] for r in o]),) * 2
        )
        secondary.set_xlabel("CPU-hours (LoRA)", fontsize=7)
    fig.suptitle(f"{title}: co-generated maps vs the image (Drop; dotted: chance)", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("consistency", "curve", "table"))
    parser.add_argument("--model", default="embedded", help="embedded or an I-LDM pipeline folder")
    parser.add_argument("--base", default="embedded")
    parser.add_argument("--run", default=None, help="curve: a `train ildm` run folder")
    parser.add_argument("--out", default="runs/ildm-bench")
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--schedules", default=",".join(SCHEDULES))
    args = parser.parse_args()
    quiet_libraries()
    if args.command == "curve" and not args.run:
        parser.error("curve needs --run RUN")
    {"consistency": consistency, "curve": curve, "table": table}[args.command](args)


if __name__ == "__main__":
    main()
