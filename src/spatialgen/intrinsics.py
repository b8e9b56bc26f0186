"""Intrinsic scene properties: one type, one set of conventions, one place.

Conventions (DESIGN.md, "Intrinsics convention"):

* **depth**: inverse-normalised disparity in [0, 1] per image, near = 1, far = 0.
* **normal**: camera-space unit normals (x right, y up, z toward the camera) mapped to [0, 1]
  by (n + 1) / 2.
* **segmentation**: an RGB colour-coded instance map in [0, 1] (:data:`SEGMENTATION_PALETTE`).
* **lines**: one channel, 1 = line.

Packed for the intrinsic VAE as depth(1) + normal(3) + segmentation(3) + lines(1) = 8 channels,
each mapped to [-1, 1]. The functions accept numpy arrays or torch tensors alike, channel axis
at -3 (``(C, H, W)`` or ``(B, C, H, W)``), so the scene world stays free of torch and models
use the same code on tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final

import numpy as np

INTRINSIC_CHANNELS: Final[dict[str, int]] = {"depth": 1, "normal": 3, "segmentation": 3, "lines": 1}
PACKED_CHANNELS: Final[int] = sum(INTRINSIC_CHANNELS.values())

# Instance id -> colour; id 0 (the floor / background) is dark grey. Hand-picked, mutually
# distant colours so that a decoded segmentation can be mapped back to ids by nearest colour.
SEGMENTATION_PALETTE: Final[np.ndarray] = np.array(
    [
        [40, 40, 40],
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
        [0, 128, 128],
        [170, 110, 40],
        [255, 250, 200],
        [128, 0, 0],
        [170, 255, 195],
    ],
    dtype=np.uint8,
)


def disparity_from_depth(depth: np.ndarray) -> np.ndarray:
    """Metric depth (H, W) -> per-image min-max normalised disparity in [0, 1], near = 1.

    Non-finite or non-positive depths (nothing hit) get disparity 0, i.e. "infinitely far".
    """
    depth = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        return np.zeros(depth.shape, np.float32)
    disparity = np.where(valid, 1.0 / np.where(valid, depth, 1.0), 0.0)
    low, high = disparity[valid].min(), disparity[valid].max()
    span = high - low if high > low else 1.0
    return np.where(valid, (disparity - low) / span, 0.0).astype(np.float32)


def normal_to_unit_range(normal: Any) -> Any:
    """Unit normals in [-1, 1] -> [0, 1]."""
    return (normal + 1.0) * 0.5


def unit_range_to_normal(encoded: np.ndarray, axis: int = -1) -> np.ndarray:
    """[0, 1] encoded normals -> unit vectors (renormalised, since decoders are not exact)."""
    n = np.asarray(encoded, dtype=np.float64) * 2.0 - 1.0
    norm = np.linalg.norm(n, axis=axis, keepdims=True)
    return (n / np.maximum(norm, 1e-8)).astype(np.float32)


def colour_segmentation(instance: np.ndarray) -> np.ndarray:
    """Instance ids (H, W) -> uint8 RGB (H, W, 3) through :data:`SEGMENTATION_PALETTE`."""
    instance = np.asarray(instance)
    if instance.size and int(instance.max()) >= len(SEGMENTATION_PALETTE):
        raise ValueError(f"instance ids must be < {len(SEGMENTATION_PALETTE)}, got {int(instance.max())}")
    return SEGMENTATION_PALETTE[instance]


def visualise_depth(depth01: np.ndarray, cmap: str = "magma") -> np.ndarray:
    """[0, 1] disparity (H, W) -> uint8 RGB through a perceptual colour map (near is bright)."""
    from matplotlib import colormaps

    rgba = colormaps[cmap](np.clip(np.asarray(depth01, dtype=np.float64), 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def visualise_unit(image01: np.ndarray) -> np.ndarray:
    """[0, 1] float image (normals, segmentation, RGB) -> uint8."""
    return (np.clip(np.asarray(image01, dtype=np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def visualise_lines(lines01: np.ndarray) -> np.ndarray:
    """Line map (H, W), 1 = line -> uint8 RGB drawing: dark lines on white paper."""
    ink = 1.0 - np.clip(np.asarray(lines01, dtype=np.float64), 0.0, 1.0)
    return np.repeat(visualise_unit(ink)[..., None], 3, axis=-1)


def _concatenate(parts: list[Any]) -> Any:
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts, axis=-3)
    import torch

    return torch.cat(parts, dim=-3)


@dataclass
class Intrinsics:
    """Depth, normals, segmentation and lines as channel-first arrays or tensors in [0, 1].

    Shapes: depth and lines ``(..., 1, H, W)``, normal and segmentation ``(..., 3, H, W)``.
    """

    depth: Any
    normal: Any
    segmentation: Any
    lines: Any

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            expected = INTRINSIC_CHANNELS[f.name]
            if value.ndim < 3 or value.shape[-3] != expected:
                raise ValueError(
                    f"Intrinsics.{f.name} must have {expected} channel(s) on axis -3, got shape {tuple(value.shape)}"
                )

    def pack(self) -> Any:
        """The 8-channel [-1, 1] tensor the intrinsic VAE encodes."""
        return _concatenate([self.depth, self.normal, self.segmentation, self.lines]) * 2.0 - 1.0

    @classmethod
    def unpack(cls, packed: Any) -> Intrinsics:
        """Inverse of :meth:`pack`; values are clipped to [0, 1] (decoders overshoot)."""
        if packed.shape[-3] != PACKED_CHANNELS:
            raise ValueError(f"packed intrinsics need {PACKED_CHANNELS} channels on axis -3, got {tuple(packed.shape)}")
        unit = (packed + 1.0) * 0.5
        unit = unit.clip(0.0, 1.0)
        return cls(
            depth=unit[..., 0:1, :, :],
            normal=unit[..., 1:4, :, :],
            segmentation=unit[..., 4:7, :, :],
            lines=unit[..., 7:8, :, :],
        )

    def visualise(self, index: int | None = None) -> dict[str, np.ndarray]:
        """uint8 RGB pictures (H, W, 3) of each intrinsic of one sample (``index`` in a batch)."""

        def plain(x: Any) -> np.ndarray:
            x = x if index is None else x[index]
            if hasattr(x, "detach"):
                x = x.detach().float().cpu().numpy()
            return np.moveaxis(np.asarray(x), -3, -1)

        return {
            "depth": visualise_depth(plain(self.depth)[..., 0]),
            "normal": visualise_unit(plain(self.normal)),
            "segmentation": visualise_unit(plain(self.segmentation)),
            "lines": visualise_lines(plain(self.lines)[..., 0]),
        }
