"""Real images of any kind made into the square RGB training images a dataset holds.

Datasets carry every kind of file: greyscale, palette, CMYK, 16-bit, with alpha, tiny, huge,
damaged. :func:`prepare_image` turns one into an ``(R, R, 3)`` uint8 array, or says in one word
why it cannot (``too_small``, ``unreadable``), and whether it had to be downscaled first.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

#: Images beyond this side are downscaled before anything else (decoding them whole costs memory).
MAX_SIDE = 4096
#: Images smaller than this on their short side are skipped: upsampled, they hold no intrinsics.
MIN_SIDE = 16


@dataclass
class PreparedImage:
    """An image ready for estimation, or the reason it is skipped."""

    rgb: np.ndarray | None
    size: tuple[int, int] | None = None  # the original (width, height)
    skipped: str | None = None
    downscaled: bool = False


def to_rgb8(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB: 16-bit and float greys rescaled, CMYK converted, alpha composited onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        high = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        grey = np.clip(array / high * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def square(image: Image.Image, resolution: int) -> np.ndarray:
    """Centre-cropped to a square and resized to ``resolution`` (the crop every text-to-image trainer uses)."""
    fitted = ImageOps.fit(image, (resolution, resolution), method=Image.Resampling.BICUBIC, centering=(0.5, 0.5))
    return np.asarray(fitted, dtype=np.uint8)


def prepare_image(source: Any, resolution: int) -> PreparedImage:
    """Encoded bytes or an ``(H, W, 3)`` uint8 array -> the dataset's square RGB image, or why not."""
    if isinstance(source, np.ndarray):
        image = Image.fromarray(source)
    else:
        try:
            image = Image.open(io.BytesIO(source))
            if max(image.size) > MAX_SIDE:
                image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a fraction of the size
            image.load()
        except (OSError, ValueError, Image.DecompressionBombError, TypeError) as error:
            return PreparedImage(None, skipped=f"unreadable ({type(error).__name__}: {error})")
    size = image.size
    downscaled = max(image.size) > MAX_SIDE
    if downscaled:
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    if min(size) < MIN_SIDE:
        return PreparedImage(None, size, skipped=f"too small ({size[0]} x {size[1]} px; at least {MIN_SIDE})")
    return PreparedImage(square(to_rgb8(image), resolution), size, downscaled=downscaled or max(size) > MAX_SIDE)
