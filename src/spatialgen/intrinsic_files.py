"""Intrinsic maps as PNG files beside their image: ``NAME.png`` + ``NAME.depth.png``, ``NAME.normal.png``, ...

One plain, viewable layout that every producer (scene exports, I-LDM, Intrinsic LoRA, a user's
estimator) writes and every evaluation reads. Depth is a 16-bit grey PNG (disparity in the
project convention times 65535: 8 bits would quantise far-away disparity steps into AbsRel
noise); normals, segmentation and lines are 8-bit, as their convention's [0, 1] values times 255.
Arrays are channel-first in [0, 1], as :class:`~spatialgen.intrinsics.Intrinsics` holds them.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .fileio import atomic_write_bytes
from .intrinsics import INTRINSIC_CHANNELS

#: Maps a file may hold, with their channel counts (albedo and shading are RGB too).
MAP_CHANNELS: dict[str, int] = {**INTRINSIC_CHANNELS, "albedo": 3, "shading": 1}


def map_path(image: str | os.PathLike[str], name: str) -> Path:
    """``dir/NAME.png`` -> ``dir/NAME.<name>.png``."""
    if name not in MAP_CHANNELS:
        raise ValueError(f"unknown intrinsic map {name!r}; choose one of {list(MAP_CHANNELS)}")
    image = Path(image)
    return image.with_name(f"{image.stem}.{name}.png")


def is_map_file(path: str | os.PathLike[str]) -> bool:
    """True for ``NAME.depth.png`` and its kind: files that are maps, not images to evaluate."""
    parts = Path(path).name.split(".")
    return len(parts) >= 3 and parts[-2] in MAP_CHANNELS


def _png(array01: np.ndarray, sixteen_bit: bool) -> bytes:
    x = np.clip(np.asarray(array01, dtype=np.float64), 0.0, 1.0)
    if x.shape[0] == 1:
        x = x[0]
        image = (
            Image.fromarray(np.round(x * 65535).astype(np.uint16))  # PIL infers 16-bit grey from uint16
            if sixteen_bit
            else Image.fromarray(np.round(x * 255).astype(np.uint8), "L")
        )
    else:
        image = Image.fromarray(np.round(np.moveaxis(x, 0, -1) * 255).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_maps(image: str | os.PathLike[str], maps: dict[str, np.ndarray]) -> list[Path]:
    """Write each map (channel-first, [0, 1]) beside ``image``; atomically, one file per map."""
    written = []
    for name, array in maps.items():
        array = np.asarray(array)
        if array.ndim != 3 or array.shape[0] != MAP_CHANNELS.get(name, -1):
            raise ValueError(
                f"map {name!r} must be ({MAP_CHANNELS.get(name, '?')}, H, W) in [0, 1], got shape {array.shape}"
            )
        path = map_path(image, name)
        atomic_write_bytes(path, _png(array, sixteen_bit=name == "depth"))
        written.append(path)
    return written


def load_maps(image: str | os.PathLike[str], names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The maps that exist beside ``image`` (or just ``names``), channel-first float32 in [0, 1]."""
    out = {}
    for name in names or tuple(MAP_CHANNELS):
        path = map_path(image, name)
        if not path.is_file():
            continue
        with Image.open(path) as im:
            array = np.asarray(im)
        scale = 65535.0 if array.dtype == np.uint16 or array.max(initial=0) > 255 else 255.0
        array = array.astype(np.float32) / scale
        array = array[None] if array.ndim == 2 else np.moveaxis(array[..., :3], -1, 0)
        if array.shape[0] != MAP_CHANNELS[name]:
            if MAP_CHANNELS[name] == 1:
                array = array.mean(0, keepdims=True)
            else:
                raise ValueError(f"{path} has {array.shape[0]} channel(s); a {name} map needs {MAP_CHANNELS[name]}")
        out[name] = array
    return out
