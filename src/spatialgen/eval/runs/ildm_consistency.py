"""Measure an I-LDM on the scene world: do its maps describe its images, and does it draw what is asked?

Prompts come in three kinds, reported apart: ``attributes`` (1-3 objects, captions of held-out
scenes of the model's own scene distribution), ``2d`` and ``3d`` (held-out relational triplets).
For each sample the co-generated maps are compared with what the scene recogniser and estimator
read from the image (:mod:`spatialgen.eval.metrics.consistency`), beside a chance row that pairs
each map with another prompt's image; the image itself is scored for the objects it shows.
Summaries average per prompt first and give 95% bootstrap intervals over prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics.consistency import MEASURES, consistency_per_sample, read_images, shuffled_pairs
from ..metrics.statistics import bootstrap_interval, paired_difference_interval

KINDS = ("attributes", "2d", "3d")
ATTRIBUTE_PROMPT_SEED_OFFSET = 1  # attribute prompts: captions of scenes scene_seed(HELD_OUT_SEED + 1, i)


def consistency_prompts(kind: str, n: int, scene_config: Any = None) -> list[str]:
    """``n`` held-out prompts of one kind (:data:`KINDS`), the same for every model measured."""
    if kind == "attributes":
        from ...scenes import make_sample, scene_seed
        from ...scenes.held_out import HELD_OUT_SEED

        seed = HELD_OUT_SEED + ATTRIBUTE_PROMPT_SEED_OFFSET
        return [make_sample(scene_seed(seed, i), 64, scene_config).captions["attributes"] for i in range(n)]
    if kind in ("2d", "3d"):
        from ..prompts.prompt_sets import scene_prompt_set

        return [record.prompt for record in scene_prompt_set(kind, n)]
    raise ValueError(f"unknown prompt kind {kind!r}; choose from {', '.join(KINDS)}")


def object_scores(prompts: Sequence[str], detections: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
    """Per image: every named object found (``objects_found``) and exactly the named objects (``count_exact``).

    Exact means one detection per named (colour, shape) and nothing else; prompts naming a count
    ("two red cubes") are read as one object each, as the recogniser reports one region per object.
    """
    from ..prompts.scene_prompts import prompt_objects

    found, exact = [], []
    for prompt, dets in zip(prompts, detections, strict=True):
        named = prompt_objects(prompt)
        seen = [(d.colour, d.shape) for d in dets]
        found.append(set(named) <= set(seen))
        exact.append(sorted(seen) == sorted(named))
    return {"objects_found": np.asarray(found, np.float64), "count_exact": np.asarray(exact, np.float64)}


def relation_scores(
    prompts: Sequence[str], detections: Sequence[Sequence[Any]], disparity: np.ndarray
) -> dict[str, np.ndarray]:
    """Per image of a relational prompt: VISOR's verdict (2D) or the ``relations3d`` verdict (3D).

    ``visor_uncond`` / ``rel3d_uncond``: both objects found and the relation holds (NaN for a prompt of
    the other kind or none); ``visor_cond`` / ``rel3d_cond``: the same among images with both objects
    (NaN otherwise). Detections are the recogniser's; depth is the estimator's ``disparity`` (N, 1, H, W).
    """
    from ...relations import RELATIONS_2D
    from ...scenes.held_out import caption_triplet
    from ..detection.detections import ObjectDetection
    from ..scorers.relations3d import judge_3d
    from ..scorers.visor import visor_verdict

    names = ("visor_uncond", "visor_cond", "rel3d_uncond", "rel3d_cond")
    out = {name: np.full(len(prompts), np.nan) for name in names}
    for k, (prompt, dets) in enumerate(zip(prompts, detections, strict=True)):
        triplet = caption_triplet(prompt)
        if triplet is None:
            continue
        (ca, sa), relation, (cb, sb) = triplet
        a, b = f"{ca} {sa}", f"{cb} {sb}"
        found = [ObjectDetection(f"{d.colour} {d.shape}", d.box, d.score, d.mask) for d in dets]
        if relation in RELATIONS_2D:
            v = visor_verdict(found, a, b, relation, k)
            both, correct, prefix = v.a_present and v.b_present, v.passed, "visor"
        else:
            v3 = judge_3d(found, a, b, relation, disparity[k, 0], k)
            both, correct, prefix = v3.a_present and v3.b_present, v3.found == relation, "rel3d"
        out[f"{prefix}_uncond"][k] = float(both and correct)
        if both:
            out[f"{prefix}_cond"][k] = float(correct)
    return {name: values for name, values in out.items() if not np.all(np.isnan(values))}


@dataclass
class ConsistencyRecords:
    """Per-sample values of one configuration on one prompt kind (JSON-ready through ``to_dict``)."""

    prompt_index: np.ndarray  # (N,) which prompt each sample is of
    values: dict[str, np.ndarray]  # measure -> (N,); chance measures are prefixed "chance_"

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_index": self.prompt_index.tolist(),
            "values": {k: [None if np.isnan(x) else float(x) for x in v] for k, v in self.values.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConsistencyRecords:
        values = {k: np.asarray([np.nan if x is None else x for x in v], np.float64) for k, v in data["values"].items()}
        return cls(np.asarray(data["prompt_index"], np.int64), values)

    def per_prompt(self, measure: str) -> np.ndarray:
        """The measure averaged over each prompt's samples (NaNs left out; prompts with none dropped)."""
        values = self.values[measure]
        out = []
        for p in np.unique(self.prompt_index):
            mine = values[self.prompt_index == p]
            mine = mine[~np.isnan(mine)]
            out.append(mine.mean() if len(mine) else np.nan)
        return np.asarray(out)

    def summary(self, measure: str) -> dict[str, float]:
        """Mean over prompts with its 95% bootstrap interval over prompts."""
        per_prompt = self.per_prompt(measure)
        per_prompt = per_prompt[~np.isnan(per_prompt)]
        low, high = bootstrap_interval(per_prompt)
        return {"mean": float(per_prompt.mean()), "low": low, "high": high, "prompts": int(len(per_prompt))}


def paired_difference(a: ConsistencyRecords, b: ConsistencyRecords, measure: str) -> dict[str, float]:
    """``b - a`` of one measure over the same prompts (per-prompt means), with its 95% bootstrap interval."""
    if not np.array_equal(a.prompt_index, b.prompt_index):
        raise ValueError("paired differences need the same prompts and seeds in both configurations")
    diff, low, high = paired_difference_interval(a.per_prompt(measure), b.per_prompt(measure))
    return {"difference": diff, "low": low, "high": high}


def measure_results(
    results: Sequence[Any], prompts: Sequence[str], recogniser: Any, estimator: Any
) -> ConsistencyRecords:
    """Score generated results (``GeneratedImage``s, ``prompts`` in their order, each with its intrinsics or not)."""
    lookup = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
    prompt_index = np.asarray([lookup[r.prompt] for r in results], np.int64)
    images = [r.image for r in results]
    reading = read_images(images, recogniser, estimator)
    texts = [r.prompt for r in results]
    values = object_scores(texts, reading.detections)
    values.update(relation_scores(texts, reading.detections, reading.depth))
    if all(getattr(r, "intrinsics", None) for r in results):
        maps = {name: np.stack([r.intrinsics[name] for r in results]) for name in ("depth", "normal", "segmentation")}
        values.update(consistency_per_sample(maps["depth"], maps["normal"], maps["segmentation"], reading))
        chance = reading.take(shuffled_pairs(prompt_index))
        chance_values = consistency_per_sample(maps["depth"], maps["normal"], maps["segmentation"], chance)
        values.update({f"chance_{k}": v for k, v in chance_values.items()})
    return ConsistencyRecords(prompt_index, values)


__all__ = [
    "KINDS",
    "MEASURES",
    "ConsistencyRecords",
    "consistency_prompts",
    "measure_results",
    "object_scores",
    "paired_difference",
]
