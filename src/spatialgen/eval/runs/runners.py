"""Whole evaluations of an image folder into a run folder: what ``spatialgen eval ...`` runs, callable from Python.

Each runner checks its inputs before any heavy work, records per-image results resumably where
the metric is per image (spatial, intrinsics), writes ``results.json`` once at the end and a
self-contained ``report.html`` beside it, and returns the tables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ...fileio import atomic_write_bytes
from .image_sets import collect_images, list_images
from .run_folder import REPORT, RunFolder, read_results

Tables = dict[str, dict[str, float]]


@dataclass
class EvalOutcome:
    tables: Tables
    results: Path
    report: Path
    images: int
    skipped: int = 0


def _finish(
    run: RunFolder,
    kind: str,
    title: str,
    tables: Tables,
    images: int,
    page_extra: dict | None = None,
    failures: list | None = None,
    skipped: int = 0,
) -> EvalOutcome:
    from .report import render_report

    meta = {"images": images, **(page_extra or {}), **run.settings}
    page = render_report(title, tables, failures or [], meta)
    atomic_write_bytes(run.path / REPORT, page.encode("utf-8"))
    results = run.finish({"kind": kind, "tables": tables, "images": images, "skipped": skipped})
    return EvalOutcome(tables, results, run.path / REPORT, images, skipped)


def evaluate_spatial_folder(
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    prompts: str | os.PathLike[str] | None = None,
    detector: str = "scenes",
    depth: str = "scenes",
    device: str = "cpu",
    batch_size: int = 16,
    failures: int = 24,
    progress: bool = True,
) -> EvalOutcome:
    """VISOR, T2I-CompBench 2D / 3D, GenEval position and our 3D rule over every image of a folder.

    ``detector``: "scenes", "owlvit" or an OWL-ViT path / hub id; ``depth``: "scenes", a
    transformers depth model, or "none" (3D relations then go unscored).
    """
    from ..detection.depth import load_depth_estimator
    from ..detection.detections import ObjectDetection
    from ..detection.detectors import load_detector
    from .report import Failure
    from .spatial_eval import failure_note, failure_rank, parse_images, run_spatial, spatial_tables

    images, out = Path(images), Path(out)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    parsed, skipped = parse_images(collect_images(images, prompts), images)
    if not parsed:
        raise ValueError("no image's prompt states a spatial relation (e.g. 'a dog to the left of a cat')")
    settings = {
        "kind": "spatial",
        "images": str(images.resolve()),
        "prompts": str(Path(prompts).resolve()) if prompts else None,
        "detector": detector,
        "depth": depth,
    }
    run = RunFolder(out, settings)
    estimator = None if depth == "none" else load_depth_estimator(depth, device)
    run_spatial(parsed, load_detector(detector, device), run, estimator, batch_size, progress)
    records = [run.records[p.key] for p in parsed]
    drawn = []
    for r in sorted(records, key=failure_rank)[: max(0, failures)]:
        with Image.open(images / r["key"]) as im:
            dets = [ObjectDetection.from_dict(d) for d in r["detections"]]
            drawn.append(Failure(im.convert("RGB"), r["prompt"], failure_note(r), dets))
    extra = {"prompts scored": len({r["prompt_id"] for r in records}), "images without a relation": len(skipped)}
    return _finish(
        run, "spatial", "Spatial evaluation", spatial_tables(records), len(records), extra, drawn, len(skipped)
    )


def evaluate_quality_folder(
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    reference: str = "scenes",
    prompts: str | os.PathLike[str] | None = None,
    scene_features: bool = True,
    clip: str | None = None,
    clip_score: str | None = None,
    hps: str | None = None,
    imagereward: str | None = None,
    device: str = "cpu",
) -> EvalOutcome:
    """Distribution distances to a reference set, and prompt alignment / preference scores when asked."""
    from ..metrics.clip import ClipImageEmbedder, ClipScorer
    from ..metrics.quality import compare_image_sets, scene_reference_images

    images = Path(images)
    files = list_images(images) if images.is_dir() else []
    if not files:
        raise ValueError(f"no images under {str(images)!r}")
    if reference == "scenes":
        refs: list[Any] = scene_reference_images(len(files))
    else:
        refs = list_images(Path(reference)) if Path(reference).is_dir() else []
        if not refs:
            raise ValueError(f"reference must be 'scenes' or a folder with images; {reference!r} has none")
    if not (scene_features or clip):
        raise ValueError("nothing to measure distances with: keep the scene features or give a CLIP model")
    settings = {
        "kind": "quality",
        "images": str(images.resolve()),
        "reference": reference,
        "clip": clip,
        "clip_score": clip_score,
        "hps": hps,
        "imagereward": imagereward,
        "scene_features": scene_features,
    }
    run = RunFolder(out, settings)
    embedder = ClipImageEmbedder.from_pretrained(clip, device=device) if clip else None
    distances = compare_image_sets(files, refs, clip_embedder=embedder, use_recogniser=scene_features).to_dict()
    tables: Tables = {"Distribution distance (lower is better)": {k: v for k, v in distances.items() if v is not None}}
    if clip_score or hps or imagereward:
        items = collect_images(images, prompts)
        paths, texts = [str(e.path) for e in items], [e.prompt for e in items]
        alignment: dict[str, float] = {}
        if clip_score:
            alignment["clip_score"] = ClipScorer.from_pretrained(clip_score, device=device).score(paths, texts).mean
        if hps:
            from ..metrics.preference import HPSv2Scorer

            from_file = Path(hps).is_file()
            scorer = HPSv2Scorer.from_pretrained(
                hps if from_file else None, **({} if from_file else {"version": hps}), device=device
            )
            alignment["hpsv2"] = float(np.mean(scorer.score(paths, texts)))
        if imagereward:
            from ..metrics.preference import ImageRewardScorer

            alignment["imagereward"] = float(
                np.mean(ImageRewardScorer.from_pretrained(imagereward, device=device).score(paths, texts))
            )
        tables["Text alignment and preference (higher is better)"] = alignment
    return _finish(run, "quality", "Quality evaluation", tables, len(files))


def evaluate_intrinsics_folder(
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    target: str = "estimated",
    depth_align: str = "scale_shift",
    device: str = "cpu",
    progress: bool = True,
) -> EvalOutcome:
    """Predicted maps beside each image (``NAME.depth.png``, ...) against true maps or the scene estimator.

    ``target="estimated"`` measures consistency: the scene estimator's depth and normals of each
    image stand in for truth (what I-LDM's co-generated intrinsics should agree with), and a
    segmentation map is compared with the scene recogniser's objects in the image (foreground IoU,
    whether the segment count equals the object count; :mod:`spatialgen.eval.metrics.consistency`).
    """
    from ...intrinsic_files import load_maps, map_path
    from ...intrinsics import normal_to_unit_range
    from ..metrics.intrinsic_metrics import intrinsic_scores

    images = Path(images)
    if depth_align not in ("scale_shift", "scale", "none"):
        raise ValueError(f"depth_align must be scale_shift, scale or none, got {depth_align!r}")
    files = [f for f in (list_images(images) if images.is_dir() else []) if load_maps(f)]
    if not files:
        raise ValueError(f"no image under {str(images)!r} has intrinsic maps beside it (NAME.depth.png, ...)")
    estimator = recogniser = None
    if target == "estimated":
        from ..scene.recogniser import SceneRecogniser
        from ..scene.scene_estimator import SceneEstimator

        estimator = SceneEstimator.load(device=device)
        recogniser = SceneRecogniser.load(device=device)
    elif not Path(target).is_dir():
        raise ValueError(f"target must be 'estimated' or a folder of true maps; {target!r} is neither")
    settings = {"kind": "intrinsics", "images": str(images.resolve()), "target": target, "depth_align": depth_align}
    run = RunFolder(out, settings)
    keys = {f: str(f.relative_to(images)) for f in files}
    for path in tqdm([f for f in files if not run.done(keys[f])], desc="scoring", unit="image", disable=not progress):
        predicted = load_maps(path)
        extra: dict[str, float] = {}
        if estimator is not None:
            with Image.open(path) as im:
                rgb = im.convert("RGB")
            ((depth, normal),) = estimator.estimate_each([rgb])
            truth = {"depth": depth[None], "normal": normal_to_unit_range(normal)}
            if "segmentation" in predicted:
                extra = segmentation_consistency(predicted["segmentation"], rgb, recogniser)
                predicted = {k: v for k, v in predicted.items() if k != "segmentation"}
        else:
            truth = load_maps(Path(target) / keys[path])
            if not truth:
                expected = map_path(path.name, "depth").name
                raise FileNotFoundError(f"no true maps for {path.name} in {target} (expected {expected}, ...)")
        scores = intrinsic_scores(predicted, truth, depth_align=depth_align) if truth.keys() & predicted.keys() else {}
        run.append([{"key": keys[path], **scores, **extra}])
    records = [run.records[keys[f]] for f in files]
    metrics = sorted({k for r in records for k in r if k != "key"})
    table = {m: float(np.mean([r[m] for r in records if m in r])) for m in metrics}
    return _finish(
        run, "intrinsics", "Intrinsics evaluation", {"Intrinsic accuracy (mean over images)": table}, len(records)
    )


def segmentation_consistency(segmentation: np.ndarray, image: Any, recogniser: Any) -> dict[str, float]:
    """A co-generated segmentation (3, H, W) against the recogniser's objects in its image, at the map's size."""
    from ..metrics.consistency import MIN_AREA_FRACTION, foreground_iou, map_foreground, map_segment_counts
    from ..scene.recogniser import to_tensor

    side = recogniser.resolution
    picture = image if image.size == (side, side) else image.resize((side, side), Image.BILINEAR)
    tensor = to_tensor([picture])
    probabilities = recogniser.probabilities(tensor).cpu().numpy()
    objects, found = probabilities.argmax(1) != 0, len(recogniser.detections(probabilities)[0])
    seg = np.asarray(segmentation, dtype=np.float64)[None]
    if seg.shape[-2:] != (side, side):
        seg = np.asarray(
            Image.fromarray(np.round(np.moveaxis(seg[0], 0, -1) * 255).astype(np.uint8)).resize(
                (side, side), Image.NEAREST
            ),
            dtype=np.float64,
        )
        seg = np.moveaxis(seg, -1, 0)[None] / 255.0
    min_area = max(1, round(MIN_AREA_FRACTION * side * side))
    return {
        "segmentation_foreground_iou": float(foreground_iou(map_foreground(seg), objects)[0]),
        "segmentation_count_agrees": float(map_segment_counts(seg, min_area)[0] == found),
    }


def compare_runs(runs: list[str | os.PathLike[str]]) -> dict[str, Tables]:
    """Each finished run's tables, keyed by the run as given (papers' tables: one row per run)."""
    names = [str(r) for r in runs]
    if len(set(names)) != len(names):
        raise ValueError("a run is named twice; give each run folder once")
    return {name: read_results(run)["tables"] for name, run in zip(names, runs, strict=True)}


PROMPT_SETS = ("visor", "multi", "parti", "scenes-2d", "scenes-3d", "geneval-position")


def write_prompt_set(name: str, out: str | os.PathLike[str], n: int | None = None, seed: int | None = None) -> int:
    """Write a shipped prompt set to ``out`` (.txt or .jsonl; GenEval metadata: .jsonl); returns its size.

    ``geneval-position`` writes GenEval's metadata records for held-out scene-world 2D triplets, so
    that GenEval's own tooling can score the embedded model.
    """
    import json

    from ..prompts import prompt_sets as ps
    from ..scorers.geneval import position_metadata

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose another output file")
    if n is not None and n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    seeded = {} if seed is None else {"seed": seed}
    if name == "parti":
        records = ps.parti_prompts()[:n] if n else ps.parti_prompts()
    elif name == "visor":
        records: list[Any] = ps.visor_prompts()[:n] if n else ps.visor_prompts()
    elif name == "multi":
        records = ps.multi_prompts(n or ps.MULTI_PROMPT_COUNT, **seeded)
    elif name in ("scenes-2d", "scenes-3d"):
        records = ps.scene_prompt_set(name.split("-")[1], n, **seeded)
    elif name == "geneval-position":
        if out.suffix != ".jsonl":
            raise ValueError("GenEval metadata is JSONL: give a .jsonl output file")
        lines = [position_metadata(r.obj_a, r.relation, r.obj_b) for r in ps.scene_prompt_set("2d", n, **seeded)]
        atomic_write_bytes(out, "".join(json.dumps(r) + "\n" for r in lines).encode("utf-8"))
        return len(lines)
    else:
        raise ValueError(f"unknown prompt set {name!r}; choose one of {', '.join(PROMPT_SETS)}")
    ps.write_prompts(out, records)
    return len(records)
