"""Score a folder of generated images on every spatial benchmark at once, resumably.

One detector pass per image serves all benchmarks: the detector returns every box above its
floor and each benchmark applies its own threshold (VISOR 0.1, GenEval 0.3, T2I-CompBench 0.5).
3D relations ("in front of", "behind") also need a disparity map, from a depth estimator.
Per-image records (detections, each benchmark's verdict) are appended to the run folder as
they are made, so an interrupted evaluation resumes where it stopped; tables are aggregated
from the records at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..detection.depth import DepthEstimator
from ..detection.detections import Detector, ObjectDetection
from ..prompts.spatial_prompts import RELATIONS_2D, RELATIONS_3D, SpatialPrompt, spatial_prompt_of
from ..scorers import geneval, relations3d, t2i_compbench, visor
from .image_sets import EvalImage
from .run_folder import RunFolder

logger = logging.getLogger(__name__)

#: Our canonical relation -> T2I-CompBench's phrase, for prompts not written in its own words.
T2I_PHRASES = {
    "left of": "on the left of",
    "right of": "on the right of",
    "above": "on the top of",
    "below": "on the bottom of",
    "near": "next to",
    "in front of": "in front of",
    "behind": "behind",
}
TABLE_VISOR = "VISOR (2D, %)"
TABLE_T2I_2D = "T2I-CompBench 2D spatial"
TABLE_GENEVAL = "GenEval position"
TABLE_3D = "3D relations (ours, %)"
TABLE_T2I_3D = "T2I-CompBench 3D spatial"


@dataclass(frozen=True)
class ParsedImage:
    image: EvalImage
    spatial: SpatialPrompt
    key: str


def parse_images(images: Sequence[EvalImage], root: Path) -> tuple[list[ParsedImage], list[EvalImage]]:
    """Images whose prompt states one known relation, and those that do not (reported, not scored)."""
    parsed, skipped = [], []
    for item in images:
        spatial = spatial_prompt_of({**item.record, "prompt": item.prompt})
        if spatial is None:
            skipped.append(item)
        else:
            parsed.append(ParsedImage(item, spatial, str(item.path.relative_to(root))))
    return parsed, skipped


def _t2i_relation(prompt: str, relation: str, three_d: bool) -> str:
    vocabulary = t2i_compbench.SPATIAL_3D_VOCABULARY if three_d else t2i_compbench.SPATIAL_VOCABULARY
    return t2i_compbench.find_relation(prompt, vocabulary) or T2I_PHRASES[relation]


def score_image(
    parsed: ParsedImage, size: tuple[int, int], detections: Sequence[ObjectDetection], disparity: np.ndarray | None
) -> dict[str, Any]:
    """The record of one image: its detections and every applicable benchmark's verdict."""
    item, sp = parsed.image, parsed.spatial
    record: dict[str, Any] = {
        "key": parsed.key,
        "prompt": item.prompt,
        "prompt_id": item.prompt_id,
        "seed": item.seed,
        "a": sp.a,
        "relation": sp.relation,
        "b": sp.b,
        "size": list(size),
        "detections": [d.to_dict() for d in detections],
    }
    if sp.relation in RELATIONS_2D:
        v = visor.visor_verdict(detections, sp.a, sp.b, sp.relation, item.prompt_id)
        record["visor"] = {"a_present": v.a_present, "b_present": v.b_present, "passed": v.passed}
        metadata = (
            item.record if item.record.get("tag") == "position" else geneval.position_metadata(sp.a, sp.relation, sp.b)
        )
        g = geneval.geneval_verdict(detections, {**metadata, "prompt": item.prompt})
        record["geneval"] = {"correct": g.correct, "reason": g.reason}
    if sp.relation in RELATIONS_2D or sp.relation == "near":
        relation = _t2i_relation(item.prompt, sp.relation, three_d=False)
        record["t2i_2d"] = t2i_compbench.spatial_score(detections, sp.a, sp.b, relation, size)
    if sp.relation in RELATIONS_3D and disparity is not None:
        v3 = relations3d.judge_3d(detections, sp.a, sp.b, sp.relation, disparity, item.prompt_id)
        record["rel3d"] = {
            "a_present": v3.a_present,
            "b_present": v3.b_present,
            "found": v3.found,
            "confidence": v3.confidence,
        }
        relation = _t2i_relation(item.prompt, sp.relation, three_d=True)
        record["t2i_3d"] = t2i_compbench.spatial_3d_score(detections, sp.a, sp.b, relation, disparity)
    return record


def run_spatial(
    parsed: Sequence[ParsedImage],
    detector: Detector,
    run: RunFolder,
    depth: DepthEstimator | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> None:
    """Detect (and estimate depth) for every image not yet in ``run`` and append its record."""
    todo = [p for p in parsed if not run.done(p.key)]
    if len(todo) < len(parsed):
        logger.info("resuming: %d of %d images already scored", len(parsed) - len(todo), len(parsed))
    if depth is None and any(p.spatial.is_3d for p in todo):
        logger.warning("3D relations are not scored: no depth estimator (pass --depth scenes or a depth model)")
    bar = tqdm(total=len(todo), desc="scoring", unit="image", disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        images = []
        for p in batch:
            with Image.open(p.image.path) as im:
                images.append(im.convert("RGB"))
        found = detector.detect(images, [[p.spatial.a, p.spatial.b] for p in batch])
        needs_depth = [k for k, p in enumerate(batch) if p.spatial.is_3d]
        maps: dict[int, np.ndarray] = {}
        if depth is not None and needs_depth:
            maps = dict(zip(needs_depth, depth.disparity([images[k] for k in needs_depth]), strict=True))
        run.append(
            score_image(p, im.size, dets, maps.get(k))
            for k, (p, im, dets) in enumerate(zip(batch, images, found, strict=True))
        )
        bar.update(len(batch))
    bar.close()


def _verdicts(records: Sequence[dict[str, Any]]) -> list[visor.ImageVerdict]:
    return [
        visor.ImageVerdict(r["prompt_id"], r["visor"]["a_present"], r["visor"]["b_present"], r["visor"]["passed"])
        for r in records
        if "visor" in r
    ]


def images_per_prompt(records: Sequence[dict[str, Any]]) -> int:
    counts: dict[Any, int] = {}
    for r in records:
        counts[r["prompt_id"]] = counts.get(r["prompt_id"], 0) + 1
    return max(counts.values(), default=1)


def spatial_tables(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each benchmark's table over the records that it applies to, with a per-relation breakdown."""
    tables: dict[str, dict[str, float]] = {}
    two_d = [r for r in records if "visor" in r]
    if two_d:
        tables[TABLE_VISOR] = visor.visor_scores(_verdicts(two_d), max_n=images_per_prompt(two_d))
        for relation in RELATIONS_2D:
            subset = [r for r in two_d if r["relation"] == relation]
            if subset:
                tables[TABLE_VISOR][f"VISOR_cond[{relation}]"] = visor.visor_scores(
                    _verdicts(subset), max_n=images_per_prompt(subset)
                )["VISOR_cond"]
        results = [
            geneval.GenEvalResult(
                "position", r["prompt"], r["geneval"]["correct"], r["geneval"]["reason"], str(r["prompt_id"])
            )
            for r in two_d
        ]
        tables[TABLE_GENEVAL] = {
            k: 100.0 * v for k, v in geneval.geneval_scores(results).items() if k != "tag/position"
        }
    t2i = [r["t2i_2d"] for r in records if "t2i_2d" in r]
    if t2i:
        tables[TABLE_T2I_2D] = {"score": t2i_compbench.mean_score(t2i), "images": float(len(t2i))}
    three_d = [r for r in records if "rel3d" in r]
    if three_d:
        verdicts = [
            relations3d.Relation3DVerdict(
                r["prompt_id"],
                r["relation"],
                r["rel3d"]["a_present"],
                r["rel3d"]["b_present"],
                r["rel3d"]["found"],
                r["rel3d"]["confidence"],
            )
            for r in three_d
        ]
        tables[TABLE_3D] = relations3d.relations3d_scores(verdicts)
        tables[TABLE_T2I_3D] = {
            "score": t2i_compbench.mean_score(r["t2i_3d"] for r in three_d),
            "images": float(len(three_d)),
        }
    return tables


def failure_rank(record: dict[str, Any]) -> tuple[float, str]:
    """Sort key, worst first: images that fail their benchmark, lowest T2I-CompBench score first."""
    failed = not record.get("visor", {}).get("passed", True) or (
        "rel3d" in record and record["rel3d"]["found"] != record["relation"]
    )
    score = record.get("t2i_2d", record.get("t2i_3d", 0.0))
    return (0.0 if failed else 1.0) + score, record["key"]


def failure_note(record: dict[str, Any]) -> str:
    """Why an image failed, in words a reader of the report understands at a glance."""
    labels = {d["label"] for d in record["detections"]}
    missing = [name for name in (record["a"], record["b"]) if name not in labels]
    if missing:
        return "not found: " + ", ".join(missing)
    if "rel3d" in record:
        return f"depth says: {record['rel3d']['found'] or 'undecided'}"
    return f"wrong place (T2I score {record.get('t2i_2d', 0.0):.2f})"
