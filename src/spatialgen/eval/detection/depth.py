"""Depth estimators for 3D-relation scoring: the scene-world estimator, or any transformers depth model.

Both return one disparity map per image in the project convention (per-image normalised to
[0, 1], near = 1) at the image's own size, which is what :mod:`spatialgen.eval.scorers.relations3d` and
T2I-CompBench's 3D rule read. T2I-CompBench uses DPT (MiDaS), whose output is already a relative
inverse depth; Depth Anything's is too. Both are min-max normalised per image, as the official
script does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ...devices import check_device
from .detectors import as_pil


class DepthEstimator(Protocol):
    name: str

    def disparity(self, images: Sequence[Any]) -> list[np.ndarray]: ...


def normalise_disparity(raw: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1]; a flat map becomes all zeros instead of dividing by zero."""
    low, high = float(raw.min()), float(raw.max())
    return ((raw - low) / (high - low) if high > low else np.zeros_like(raw)).astype(np.float32)


class SceneDepth:
    """The embedded scene-world estimator (:class:`~spatialgen.eval.scene.scene_estimator.SceneEstimator`)."""

    name = "scenes"

    def __init__(self, estimator: Any | None = None) -> None:
        from ..scene.scene_estimator import SceneEstimator

        self.estimator = estimator if estimator is not None else SceneEstimator.load()

    def disparity(self, images: Sequence[Any]) -> list[np.ndarray]:
        return [depth.astype(np.float32) for depth, _ in self.estimator.estimate_each([as_pil(im) for im in images])]


class TransformersDepth:
    """A transformers depth-estimation model the user has (DPT, Depth Anything, ...), normalised per image."""

    def __init__(self, model: torch.nn.Module, processor: Any, name: str = "transformers-depth") -> None:
        self.model = model.eval()
        self.processor = processor
        self.name = name

    @classmethod
    def from_pretrained(cls, name_or_path: str, device: str = "cpu") -> TransformersDepth:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        model = AutoModelForDepthEstimation.from_pretrained(name_or_path, use_safetensors=True)
        return cls(model.to(check_device(device)), AutoImageProcessor.from_pretrained(name_or_path), name_or_path)

    @torch.no_grad()
    def disparity(self, images: Sequence[Any]) -> list[np.ndarray]:
        pil = [as_pil(im) for im in images]
        device = next(self.model.parameters()).device
        inputs = self.processor(images=pil, return_tensors="pt").to(device)
        predicted = self.model(**inputs).predicted_depth  # (N, h, w), relative inverse depth
        out = []
        for im, raw in zip(pil, predicted, strict=True):
            resized = F.interpolate(raw[None, None].float(), size=(im.height, im.width), mode="bicubic")[0, 0]
            out.append(normalise_disparity(resized.cpu().numpy()))
        return out


def load_depth_estimator(name_or_path: str, device: str = "cpu") -> DepthEstimator:
    """``scenes`` (embedded), or a transformers depth model's path / hub id (e.g. ``Intel/dpt-large``)."""
    if name_or_path == "scenes":
        from ..scene.scene_estimator import SceneEstimator

        return SceneDepth(SceneEstimator.load(device=check_device(device)))
    from ...hub import check_model_source

    return TransformersDepth.from_pretrained(check_model_source(name_or_path, "--depth"), device)
