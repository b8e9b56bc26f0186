"""Images in, for every metric: anything image-like to an RGB PIL image, batching, CMMD's crop and resize."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

ImageLike = Any  # a PIL image, a uint8 (H, W, 3) or (H, W) array, or a path to an image file


def as_rgb_image(image: ImageLike) -> Image.Image:
    """A PIL RGB image from a PIL image, a uint8 (H, W, 3) / (H, W) array, or an image path."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            return im.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)):
        raise ValueError(
            f"expected a PIL image, an image path or a uint8 (H, W, 3) or (H, W) array; got {array.dtype} "
            f"{array.shape} (float images: convert with (x * 255).round().astype(np.uint8))"
        )
    return Image.fromarray(array).convert("RGB")


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def centre_crop_resize(image: Image.Image, size: int) -> Image.Image:
    """Centre square crop, then PIL bicubic (antialiased) resize: CMMD's ``_center_crop_and_resize``."""
    w, h = image.size
    side = min(w, h)
    top, left = (h - side) // 2, (w - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), resample=Image.BICUBIC)
