"""Does I-LDM's co-generation hold up on the scene world? Consistency, learning curves, exact-ground-truth payoff.

    python benchmarks/ildm_joint.py consistency [--model embedded] [--prompts 128] [--seeds 2] [--out runs/ildm-bench]
    python benchmarks/ildm_joint.py curve --run runs/ildm [--prompts 32]     # every kept checkpoint of a run
    python benchmarks/ildm_joint.py table [--out runs/ildm-bench]            # the README tables, from saved rows
    python benchmarks/ildm_joint.py readers [--model embedded] [--renders 256]   # maps of given images
    python benchmarks/ildm_joint.py given [--model embedded] [--renders 128]     # images for given maps

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
    ("visor_uncond", "VISOR uncond (2D)", 100),
    ("visor_cond", "VISOR cond (2D)", 100),
    ("rel3d_uncond", "3D relation accuracy", 100),
)


def scene_config():
    from spatialgen.models import load_pipeline
    from spatialgen.models.data import model_scene_config
    from spatialgen.models.pipeline import model_card

    return model_scene_config(model_card(load_pipeline("embedded")))


def measure(pipe, prompts: list[str], seeds: int, steps: int, schedule: str | None, renders=None, lag: int = 0):
    """(per-sample records, CMMD to ``renders`` or None) of the pipeline's images for ``prompts`` x ``seeds``."""
    from dataclasses import replace

    from spatialgen.eval.scene.recogniser import SceneRecogniser
    from spatialgen.eval.scene.scene_estimator import SceneEstimator
    from spatialgen.generate import GenerationSettings, generate_images
    from spatialgen.generators import as_generator

    generator = as_generator(pipe, schedule)
    if lag:
        generator = replace(generator, intrinsic_lag=lag)
    results = generate_images(
        generator,
        prompts,
        n=seeds,
        seed=42,
        settings=GenerationSettings(steps=steps),
        batch_size=16,
        progress=False,
    )
    records = measure_results(results, prompts, SceneRecogniser.load(), SceneEstimator.load())
    if renders is None:
        return records, None
    from spatialgen.eval.metrics.quality import scene_quality

    return records, scene_quality([r.image for r in results], renders).cmmd_recogniser


def held_out_renders(n: int, config) -> list:
    """Renders of held-out scenes of the model's distribution: CMMD's reference set (as the base's card uses)."""
    from spatialgen.scenes import make_sample, scene_seed
    from spatialgen.scenes.held_out import HELD_OUT_SEED

    return [make_sample(scene_seed(HELD_OUT_SEED, i), 64, config).rgb for i in range(n)]


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
    renders = held_out_renders(args.prompts * args.seeds, config)
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
            schedule = None if row == "base" else row
            lag = args.lag if which == "ildm" else 0
            records, cmmd = measure(loaded[which], prompts, args.seeds, args.steps, schedule, renders, lag)
            rows[key] = {
                "settings": settings_of(args),
                "seconds": time.perf_counter() - start,
                "cmmd": cmmd,
                "records": records.to_dict(),
            }
            atomic_write_json(path, rows)
            print(f"{key}: {len(records.prompt_index)} images in {rows[key]['seconds']:.0f} s", flush=True)
    table(args)


def settings_of(args) -> dict:
    keys = ("model", "base", "prompts", "seeds", "steps", "lag")
    return {k: getattr(args, k, 0) for k in keys}


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
            if any(cells):
                print(f"| {label} | " + " | ".join(cells + chance) + " |")
        cmmd = [rows[f"{n}|{kind}"].get("cmmd") for n in names]
        if all(c is not None for c in cmmd):
            print("| CMMD to held-out renders | " + " | ".join(f"{c:.3f}" for c in cmmd) + " |" + " |" * bool(ildm))
        if "base" in records:
            for n in ildm:
                for name in ("objects_found", "count_exact", "visor_uncond", "rel3d_uncond"):
                    if name not in records[n].values:
                        continue
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
        key = f"{step}" if not args.lag else f"{step}-lag{args.lag}"
        if key in rows and rows[key]["prompts"] == args.prompts:
            continue
        pipe = pipeline_at_checkpoint(run, folder)
        records, _ = measure(pipe, prompts, args.seeds, args.steps, "drop", lag=args.lag)
        rows[key] = {
            "step": step,
            "lag": args.lag,
            "hours": pipe.training_seconds / 3600,
            "prompts": args.prompts,
            "summary": {m: records.summary(m) for m in records.values},
        }
        atomic_write_json(path, rows)
        shown = {m: round(rows[key]["summary"][m]["mean"], 3) for m in ("objects_found", "seg_iou", "count_agrees")}
        print(f"step {step}: {shown}", flush=True)
    suffix = f"-lag{args.lag}" if args.lag else ""
    chosen = {k: r for k, r in rows.items() if r.get("lag", 0) == args.lag}
    plot_curve(
        chosen,
        run / f"consistency-curve{suffix}.png",
        run.name + (f", maps {args.lag} steps behind" if args.lag else ""),
    )


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
        hours = [r["hours"] for r in ordered]
        if len(steps) > 1:  # CPU-hours on top: a monotone map from steps, and its inverse
            secondary = ax.secondary_xaxis(
                "top",
                functions=(lambda x, h=hours: np.interp(x, steps, h), lambda y, h=hours: np.interp(y, h, steps)),
            )
            secondary.set_xlabel("CPU-hours (LoRA)", fontsize=7)
    fig.suptitle(f"{title}: co-generated maps vs the image (Drop; dotted: chance)", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def render_set(n: int, config) -> list:
    """Held-out renders of the model's scene distribution, each with its exact maps."""
    from spatialgen.scenes import make_sample, scene_seed
    from spatialgen.scenes.held_out import HELD_OUT_SEED

    return [make_sample(scene_seed(HELD_OUT_SEED, i), 64, config) for i in range(n)]


def exact_maps(samples: list) -> dict[str, np.ndarray]:
    fields = ("depth", "normal", "segmentation", "lines")
    return {f: np.stack([getattr(s.intrinsics(), f) for s in samples]).astype(np.float64) for f in fields}


def summarise(values: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean and 95% bootstrap interval of each per-image measure (each image is its own scene)."""
    from spatialgen.eval.metrics.statistics import bootstrap_interval

    out = {}
    for name, v in values.items():
        v = v[~np.isnan(v)]
        low, high = bootstrap_interval(v)
        out[name] = {"mean": float(v.mean()), "low": low, "high": high, "n": int(len(v))}
    return out


def per_image_scores(pred: dict[str, np.ndarray], exact: dict[str, np.ndarray], samples: list) -> dict[str, np.ndarray]:
    """Maps against exact ground truth, per image: depth AbsRel / delta1, normal angle (all, objects), segmentation."""
    from spatialgen.eval.metrics.consistency import ImageReading, consistency_per_sample
    from spatialgen.eval.metrics.intrinsic_metrics import depth_metrics, normal_angular_error

    n = len(samples)
    out: dict[str, np.ndarray] = {}
    objects = np.stack([s.instance > 0 for s in samples])
    if "depth" in pred:
        rows = [depth_metrics(pred["depth"][i : i + 1], exact["depth"][i : i + 1]) for i in range(n)]
        out["depth_abs_rel"] = np.asarray([r["abs_rel"] for r in rows])
        out["depth_delta1"] = np.asarray([r["delta1"] for r in rows])
    if "normal" in pred:
        angles = normal_angular_error(pred["normal"], exact["normal"])
        out["normal_mean"] = angles.reshape(n, -1).mean(1)
        out["normal_object_mean"] = (angles * objects).sum((1, 2)) / np.maximum(objects.sum((1, 2)), 1)
    if "segmentation" in pred and "depth" in pred and "normal" in pred:
        from spatialgen.eval.metrics.consistency import MIN_AREA_FRACTION

        min_area = max(1, round(MIN_AREA_FRACTION * objects.shape[1] * objects.shape[2]))
        visible = [int((np.bincount(s.instance.ravel())[1:] >= min_area).sum()) for s in samples]
        truth = ImageReading(objects, [[None] * k for k in visible], exact["depth"], exact["normal"])
        scored = consistency_per_sample(pred["depth"], pred["normal"], pred["segmentation"], truth)
        out["seg_iou"], out["count_agrees"] = scored["seg_iou"], scored["count_agrees"]
    return out


def readers(args) -> None:
    """Maps of held-out renders by I-LDM (image held clean), the scene estimator and the I-LoRA adapters, vs exact."""
    from PIL import Image

    from spatialgen.ilora.extract import IntrinsicExtractor

    samples = render_set(args.renders, scene_config())
    exact = exact_maps(samples)
    images = [Image.fromarray(s.rgb) for s in samples]
    methods = {
        "ildm": lambda: IntrinsicExtractor.load(
            "ildm", "depth,normal,segmentation,lines", model=args.model, steps=args.steps
        ),
        "estimator": lambda: IntrinsicExtractor.load("estimator", "depth,normal"),
        "ilora": lambda: IntrinsicExtractor.load("ilora", "depth,normal"),
    }
    results = {}
    for name, make in methods.items():
        extractor = make()
        start = time.perf_counter()
        maps = [m for k in range(0, len(images), 32) for m in extractor.extract(images[k : k + 32])]
        seconds = (time.perf_counter() - start) / len(images)
        pred = {f: np.stack([m[f] for m in maps]).astype(np.float64) for f in maps[0]}
        results[name] = {"seconds_per_image": seconds, **summarise(per_image_scores(pred, exact, samples))}
        print(
            name,
            json.dumps(
                {k: round(v["mean"], 3) if isinstance(v, dict) else round(v, 3) for k, v in results[name].items()}
            ),
            flush=True,
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "readers.json", {"model": args.model, "renders": args.renders, "results": results})


def given(args) -> None:
    """Images drawn for the maps of held-out renders (all four, or depth + segmentation completed), read back."""
    import torch

    from spatialgen.eval.metrics.consistency import foreground_iou, map_foreground, read_images
    from spatialgen.eval.metrics.intrinsic_metrics import depth_metrics
    from spatialgen.eval.runs.ildm_consistency import object_scores
    from spatialgen.eval.scene.recogniser import SceneRecogniser
    from spatialgen.eval.scene.scene_estimator import SceneEstimator
    from spatialgen.ildm.given import complete_maps
    from spatialgen.ildm.pipeline import load_ildm_pipeline
    from spatialgen.intrinsics import Intrinsics

    samples = render_set(args.renders, scene_config())
    exact = exact_maps(samples)
    pipe = load_ildm_pipeline(args.model)
    recogniser, estimator = SceneRecogniser.load(), SceneEstimator.load()
    prompts = [s.captions["attributes"] for s in samples]
    variants = {
        "all four maps": lambda i: Intrinsics(
            *(exact[f][i : i + 1] for f in ("depth", "normal", "segmentation", "lines"))
        ),
        "depth + segmentation": lambda i: complete_maps(depth=exact["depth"][i], segmentation=exact["segmentation"][i]),
    }
    results = {}
    for name, maps_of in variants.items():
        images = []
        for k in range(0, len(samples), 16):
            rows = range(k, min(k + 16, len(samples)))
            held = [maps_of(i) for i in rows]
            batch = Intrinsics(
                *(
                    torch.from_numpy(np.concatenate([getattr(h, f) for h in held])).float()
                    for f in ("depth", "normal", "segmentation", "lines")
                )
            )
            out = pipe(
                [prompts[i] for i in rows],
                given_intrinsics=batch,
                num_inference_steps=args.steps,
                generator=[torch.Generator().manual_seed(42 + i) for i in rows],
            )
            images += out.images
        reading = read_images(images, recogniser, estimator)
        n = len(samples)
        rows_depth = [depth_metrics(reading.depth[i : i + 1], exact["depth"][i : i + 1]) for i in range(n)]
        other = np.roll(np.arange(n), 1)  # chance: each image against another render's maps
        rows_chance = [depth_metrics(reading.depth[i : i + 1], exact["depth"][j : j + 1]) for i, j in enumerate(other)]
        values = {
            "depth_abs_rel": np.asarray([r["abs_rel"] for r in rows_depth]),
            "depth_delta1": np.asarray([r["delta1"] for r in rows_depth]),
            "layout_iou": foreground_iou(reading.object_mask, map_foreground(exact["segmentation"])),
            "chance_depth_abs_rel": np.asarray([r["abs_rel"] for r in rows_chance]),
            "chance_layout_iou": foreground_iou(reading.object_mask, map_foreground(exact["segmentation"][other])),
            **object_scores(prompts, reading.detections),
        }
        results[name] = summarise(values)
        print(name, json.dumps({k: round(v["mean"], 3) for k, v in results[name].items()}), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "given.json", {"model": args.model, "renders": args.renders, "results": results})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("consistency", "curve", "table", "readers", "given"))
    parser.add_argument("--model", default="embedded", help="embedded or an I-LDM pipeline folder")
    parser.add_argument("--base", default="embedded")
    parser.add_argument("--run", default=None, help="curve: a `train ildm` run folder")
    parser.add_argument("--out", default="runs/ildm-bench")
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--renders", type=int, default=256, help="readers / given: held-out renders")
    parser.add_argument("--lag", type=int, default=0, help="consistency / curve: steps the maps start after the image")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--schedules", default=",".join(SCHEDULES))
    args = parser.parse_args()
    quiet_libraries()
    if args.command == "curve" and not args.run:
        parser.error("curve needs --run RUN")
    commands = {"consistency": consistency, "curve": curve, "table": table, "readers": readers, "given": given}
    commands[args.command](args)


if __name__ == "__main__":
    main()
