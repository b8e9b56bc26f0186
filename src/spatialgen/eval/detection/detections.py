"""What every detector returns and every spatial scorer reads: boxes with scores, per object name.

The benchmarks' scorers (VISOR, T2I-CompBench, GenEval, our 3D rule) are pure functions of
detections, so that they can be checked on hand-made boxes against the official rules and then
fed by any detector: OWL-ViT on real images, the scene-world recogniser on the embedded model's.

Conventions: boxes are ``(x0, y0, x1, y1)`` in pixels of the scored image, x to the right and
y downwards (the image convention every benchmark uses); masks, when a detector gives them, are
boolean ``(H, W)`` arrays over the same image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ObjectDetection:
    """One detected instance of the object named ``label``."""

    label: str
    box: Box
    score: float
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        x0, y0, x1, y1 = self.box
        if not (x1 >= x0 and y1 >= y0):
            raise ValueError(f"box {self.box} is not (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0")

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2.0, (y0 + y1) / 2.0

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return self.width * self.height

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the mask is summarised by its pixel count, not stored)."""
        out: dict[str, Any] = {"label": self.label, "box": [float(v) for v in self.box], "score": float(self.score)}
        if self.mask is not None:
            out["mask_pixels"] = int(self.mask.sum())
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObjectDetection:
        return cls(str(data["label"]), tuple(float(v) for v in data["box"]), float(data["score"]))  # type: ignore[arg-type]


def above_threshold(score: float, threshold: float) -> bool:
    """``score > threshold`` as the official scripts compute it: both in float32 (torch / numpy tensors).

    A score stored as float32 exactly at the threshold's float32 value (``float32(0.1)`` is
    0.10000000149...) passes a float64 comparison with 0.1 but fails the official one; comparing
    in float32 reproduces the official verdict on every score.
    """
    return bool(np.float32(score) > np.float32(threshold))


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes; 0 when both are empty."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def by_label(detections: Sequence[ObjectDetection]) -> dict[str, list[ObjectDetection]]:
    """Detections grouped by label, each group best score first."""
    groups: dict[str, list[ObjectDetection]] = {}
    for det in detections:
        groups.setdefault(det.label, []).append(det)
    return {label: sorted(dets, key=lambda d: -d.score) for label, dets in groups.items()}


@runtime_checkable
class Detector(Protocol):
    """Finds named objects in images.

    ``detect(images, queries)`` takes PIL images (or uint8 ``(H, W, 3)`` arrays) and, per image,
    the object names to look for; it returns, per image, every detection of those names above the
    detector's own floor (scorers apply their benchmark's threshold themselves). ``name`` says
    which detector made a result, for reports.
    """

    name: str

    def detect(self, images: Sequence[Any], queries: Sequence[Sequence[str]]) -> list[list[ObjectDetection]]: ...
