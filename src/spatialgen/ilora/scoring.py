"""How well predicted maps match reference maps, per intrinsic, with the paper's measures.

Normals: mean and median angle (degrees) and the share of pixels within 11.25 degrees, pooled
over pixels. Depth: AbsRel and delta1 after per-image scale-and-shift alignment (in the
project's disparity convention). Albedo and shading: RMS error and scale-invariant RMS error
per image (Tab. 2 reports RMS). All computed by :mod:`spatialgen.eval.metrics.intrinsic_metrics`.
"""

from __future__ import annotations

from typing import Any

from ..eval.metrics.intrinsic_metrics import depth_metrics, normal_metrics, rms_metrics
from .targets import check_intrinsic

#: The headline measures of each intrinsic, with whether lower is better.
MEASURES: dict[str, dict[str, bool]] = {
    "normal": {"mean": True, "median": True, "within_11.25": False},
    "depth": {"abs_rel": True, "delta1": False},
    "albedo": {"si_rmse": True, "rmse": True},
    "shading": {"si_rmse": True, "rmse": True},
}


def score_maps(intrinsic: str, pred: Any, target: Any) -> dict[str, float]:
    """The intrinsic's measures (:data:`MEASURES`) of predicted against reference maps ``(B, C, H, W)``."""
    check_intrinsic(intrinsic)
    if intrinsic == "normal":
        scores = normal_metrics(pred, target)
    elif intrinsic == "depth":
        scores = depth_metrics(pred, target, align="scale_shift")
    else:
        scores = rms_metrics(pred, target)
    return {key: float(scores[key]) for key in MEASURES[intrinsic]}


def per_image_scores(intrinsic: str, pred: Any, target: Any) -> dict[str, list[float]]:
    """Each headline measure of each image on its own: what a bootstrap over images resamples."""
    rows = [score_maps(intrinsic, p[None], t[None]) for p, t in zip(pred, target, strict=True)]
    return {key: [row[key] for row in rows] for key in MEASURES[intrinsic]}
