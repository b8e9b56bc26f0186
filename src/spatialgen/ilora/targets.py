"""What Intrinsic LoRA predicts: four intrinsics, each as an RGB image the base model's VAE can encode.

I-LoRA makes a generator output an intrinsic through its own image head, so every intrinsic is
written as a 3-channel image in [-1, 1] (the VAE's input range) and read back from one:

* ``normal``: camera-space unit normals as (n + 1) / 2 (the project's convention, x right, y up,
  z toward the camera); read back renormalised, since a decoder is not exact;
* ``depth``: disparity in the project's convention (per image min-max, near = 1), grey on three
  channels; read back as the channel mean;
* ``albedo``: the reflectance colour in [0, 1];
* ``shading``: grey Lambertian shading in [0, 1] (``rgb == albedo * shading`` in the scene
  world), on three channels; read back as the channel mean.

Maps are channel-first in [0, 1] with :data:`spatialgen.intrinsic_files.MAP_CHANNELS` channels, as
the map files hold them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import numpy as np
import torch

#: The intrinsics I-LoRA predicts, with the text the paper feeds the UNet for each.
INTRINSIC_PROMPTS: Final[dict[str, str]] = {
    "normal": "surface normal",
    "depth": "depth",
    "albedo": "albedo",
    "shading": "shading",
}
INTRINSICS: Final[tuple[str, ...]] = tuple(INTRINSIC_PROMPTS)
MAP_CHANNELS: Final[dict[str, int]] = {"normal": 3, "depth": 1, "albedo": 3, "shading": 1}


def check_intrinsic(name: str) -> str:
    """``name`` if I-LoRA knows it, else an error listing the ones it knows."""
    if name not in INTRINSIC_PROMPTS:
        raise ValueError(f"unknown intrinsic {name!r}; choose one of {', '.join(INTRINSICS)}")
    return name


def parse_intrinsics(names: str | Iterable[str]) -> tuple[str, ...]:
    """``"normal,depth"`` or a list -> checked, de-duplicated names in the order given."""
    parts = names.split(",") if isinstance(names, str) else list(names)
    chosen = tuple(dict.fromkeys(check_intrinsic(part.strip()) for part in parts if part.strip()))
    if not chosen:
        raise ValueError(f"name at least one intrinsic ({', '.join(INTRINSICS)})")
    return chosen


def map_to_image(name: str, maps: torch.Tensor) -> torch.Tensor:
    """Maps ``(B, C, H, W)`` in [0, 1] -> the 3-channel [-1, 1] images the VAE encodes."""
    check_intrinsic(name)
    if maps.shape[-3] != MAP_CHANNELS[name]:
        raise ValueError(f"a {name} map has {MAP_CHANNELS[name]} channel(s), got shape {tuple(maps.shape)}")
    if MAP_CHANNELS[name] == 1:
        maps = maps.expand(*maps.shape[:-3], 3, *maps.shape[-2:])
    return maps.float() * 2.0 - 1.0


def image_to_map(name: str, images: torch.Tensor) -> torch.Tensor:
    """Decoded 3-channel [-1, 1] images ``(B, 3, H, W)`` -> maps in [0, 1] with the intrinsic's channels."""
    check_intrinsic(name)
    images = images.float()
    if name == "normal":
        unit = torch.nn.functional.normalize(images, dim=-3, eps=1e-6)
        return (unit + 1.0) * 0.5
    unit = ((images + 1.0) * 0.5).clamp(0.0, 1.0)
    return unit.mean(dim=-3, keepdim=True) if MAP_CHANNELS[name] == 1 else unit


def scene_maps(sample: Any, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Exact maps of a scene-world sample, channel-first float32 in [0, 1]."""
    intrinsics = None
    out: dict[str, np.ndarray] = {}
    for name in names:
        check_intrinsic(name)
        if name in ("normal", "depth"):
            intrinsics = intrinsics if intrinsics is not None else sample.intrinsics()
            out[name] = np.asarray(getattr(intrinsics, name), dtype=np.float32)
        elif name == "albedo":
            out[name] = np.moveaxis(sample.albedo, -1, 0).astype(np.float32) / 255.0
        else:
            out[name] = sample.shading[None].astype(np.float32) / 255.0
    return out


def estimated_maps(estimated: Any, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Pseudo-label maps ``(N, C, H, W)`` from a depth / normal estimator's output (``EstimatedIntrinsics``)."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "depth":
            out[name] = np.asarray(estimated.depth, dtype=np.float32)[:, None]
        elif name == "normal":
            out[name] = (np.moveaxis(np.asarray(estimated.normal, dtype=np.float32), -1, 1) + 1.0) * 0.5
        else:
            raise ValueError(f"an estimator gives depth and normals only, not {name!r}; train {name} on exact maps")
    return out


def prompt_for(name: str, prompts: Mapping[str, str] | None = None) -> str:
    return (prompts or INTRINSIC_PROMPTS)[check_intrinsic(name)]
