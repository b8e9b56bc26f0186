"""Our rule for the 3D relations "in front of" / "behind", read from a depth map.

ESPLoRA (papers/004) argues for evaluating depth relations from geometry but publishes no rule we
could follow exactly, and T2I-CompBench's (:mod:`spatialgen.eval.scorers.t2i_compbench`) compares box
means, which mix in background and occluders and decide on any difference, however small. Ours:

* **Region.** Each object's detector mask when it has one, else the pixels of its box (those whose
  centre lies inside). Masks are better: a box around a partly hidden object also covers the
  object in front of it and the floor behind it.
* **Statistic.** The median "nearness" over the region, robust to those stray pixels. Nearness is
  the disparity itself (the project convention: [0, 1], near = 1), or minus the depth when
  ``metric=True`` (metric depth, near = small; non-positive and non-finite values are left out).
* **Decision.** A is in front of B when A's median nearness exceeds B's by more than a margin,
  behind when it falls short by more than it, and undecided otherwise. The margin is relative:
  ``margin`` (0.05 by default) times the spread of nearness over the union of both regions (the
  5th to 95th percentile range). Relative, because estimated disparity maps are normalised per
  image and their scale means little; a fraction of the spread the two objects themselves cover
  says "clearly apart" the same way on every image.
* **Confidence.** |median difference| / spread, clipped to [0, 1]; the verdict is given when it
  exceeds ``margin``.

Checked on the scene world's exact intrinsics (tests/test_relations3d.py, 402 ordered pairs in 50
scenes): with ground-truth masks and depth it agrees with the stored labels of
``scenes/annotate.py::relations_3d`` (median metric depth, no margin) on every decided pair and
leaves 1% (pairs at nearly equal depth) undecided; with boxes instead of masks 99.5% of the
decided pairs agree and 4% are undecided. One limit of a relative margin: two regions of nearly
uniform depth (flat, noise-free) are told apart by any difference, however small.

Over many images (:func:`relations3d_scores`), like VISOR: OA (both objects found), the accuracy
over those images and over all images, and the share left undecided.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from ...relations import RELATIONS_3D
from ..detection.detections import ObjectDetection

DEFAULT_MARGIN = 0.05
SPREAD_PERCENTILES = (5.0, 95.0)
DETECTION_THRESHOLD = 0.1  # as VISOR, so that one set of OWL-ViT detections serves both


def object_region(detection: ObjectDetection, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) region of a detection: its mask, else the pixels whose centre is in its box."""
    if detection.mask is not None:
        mask = np.asarray(detection.mask, dtype=bool)
        if mask.shape != tuple(shape):
            raise ValueError(f"mask of {detection.label!r} is {mask.shape}, but the depth map is {tuple(shape)}")
        return mask
    height, width = shape
    x0, y0, x1, y1 = detection.box
    cols = np.arange(width) + 0.5
    rows = np.arange(height) + 0.5
    return ((rows >= y0) & (rows < y1))[:, None] & ((cols >= x0) & (cols < x1))[None, :]


def nearness(depth: np.ndarray, metric: bool = False) -> np.ndarray:
    """Larger = nearer, NaN where the map says nothing: disparity as is, or minus metric depth."""
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"the depth map must be one (H, W) array, got shape {depth.shape}")
    if metric:
        return np.where(np.isfinite(depth) & (depth > 0), -depth, np.nan)
    return np.where(np.isfinite(depth), depth, np.nan)


@dataclass(frozen=True)
class DepthOrder:
    """Where A stands relative to B in depth: ``relation`` is None when undecided."""

    relation: str | None
    confidence: float
    difference: float  # median nearness of A minus that of B (NaN when a region is empty)
    spread: float


def depth_order(
    region_a: np.ndarray,
    region_b: np.ndarray,
    depth: np.ndarray,
    metric: bool = False,
    margin: float = DEFAULT_MARGIN,
) -> DepthOrder:
    """Our rule on two boolean regions of one depth map (see the module docstring)."""
    if not 0 <= margin < 1:
        raise ValueError(f"margin is a fraction of the union's depth spread, in [0, 1); got {margin}")
    near = nearness(depth, metric)
    values_a, values_b = near[region_a], near[region_b]
    values_a, values_b = values_a[~np.isnan(values_a)], values_b[~np.isnan(values_b)]
    if values_a.size == 0 or values_b.size == 0:
        return DepthOrder(None, 0.0, float("nan"), 0.0)
    union = near[region_a | region_b]
    union = union[~np.isnan(union)]
    low, high = np.percentile(union, SPREAD_PERCENTILES)
    spread = float(high - low)
    difference = float(np.median(values_a) - np.median(values_b))
    confidence = min(1.0, abs(difference) / spread) if spread > 0 else 0.0
    relation = None
    if confidence > margin:
        relation = "in front of" if difference > 0 else "behind"
    return DepthOrder(relation, confidence, difference, spread)


def detection_depth_order(
    det_a: ObjectDetection,
    det_b: ObjectDetection,
    depth: np.ndarray,
    metric: bool = False,
    margin: float = DEFAULT_MARGIN,
) -> DepthOrder:
    """Our rule on two detections (masks when present, else boxes) over a depth map of their image."""
    shape = np.shape(depth)
    if len(shape) != 2:
        raise ValueError(f"the depth map must be one (H, W) array, got shape {shape}")
    region_a, region_b = object_region(det_a, shape), object_region(det_b, shape)  # type: ignore[arg-type]
    return depth_order(region_a, region_b, depth, metric, margin)


@dataclass(frozen=True)
class Relation3DVerdict:
    """One image of "A <relation> B": which objects were found and what the depth says."""

    prompt_id: Hashable
    relation: str
    a_present: bool
    b_present: bool
    found: str | None  # the decided relation of A to B, None if undecided or an object is missing
    confidence: float

    @property
    def both_present(self) -> bool:
        return self.a_present and self.b_present

    @property
    def passed(self) -> bool:
        return self.both_present and self.found == self.relation


def _check_relation(relation: str) -> str:
    name = " ".join(relation.lower().split())
    if name not in RELATIONS_3D:
        raise ValueError(f"unknown 3D relation {relation!r}; choose one of {RELATIONS_3D}")
    return name


def judge_3d(
    detections: Sequence[ObjectDetection],
    a: str,
    b: str,
    relation: str,
    depth: np.ndarray,
    prompt_id: Hashable = 0,
    metric: bool = False,
    margin: float = DEFAULT_MARGIN,
    threshold: float = DETECTION_THRESHOLD,
) -> Relation3DVerdict:
    """Our verdict on one image of "A <relation> B": the best-scoring A and B (score > threshold)."""
    relation = _check_relation(relation)
    kept = [d for d in detections if d.score > threshold]
    best_a = max((d for d in kept if d.label == a), key=lambda d: d.score, default=None)
    best_b = max((d for d in kept if d.label == b), key=lambda d: d.score, default=None)
    if best_a is None or best_b is None:
        return Relation3DVerdict(prompt_id, relation, best_a is not None, best_b is not None, None, 0.0)
    order = detection_depth_order(best_a, best_b, depth, metric, margin)
    return Relation3DVerdict(prompt_id, relation, True, True, order.relation, order.confidence)


def relations3d_scores(verdicts: Sequence[Relation3DVerdict]) -> dict[str, float]:
    """Percentages: OA, accuracy over images with both objects (cond) and over all, undecided share."""
    if not verdicts:
        raise ValueError("no images to score: pass at least one Relation3DVerdict")
    present = [v for v in verdicts if v.both_present]
    oa = 100.0 * len(present) / len(verdicts)
    cond = 100.0 * sum(v.passed for v in present) / len(present) if present else 0.0
    undecided = 100.0 * sum(v.found is None for v in present) / len(present) if present else 0.0
    return {
        "OA": oa,
        "accuracy_cond": cond,
        "accuracy_uncond": cond * oa / 100.0,
        "undecided": undecided,
        "mean_confidence": float(np.mean([v.confidence for v in present])) if present else 0.0,
    }
