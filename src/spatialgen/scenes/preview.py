"""The first picture a person wants: scenes with their four intrinsics and captions."""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..fileio import atomic_write_bytes
from .world import SceneSample

COLUMNS: tuple[str, ...] = ("rgb", "depth", "normal", "segmentation", "lines")
_PAD = 6
_LINE = 15


def _tile(array: np.ndarray, size: int) -> Image.Image:
    return Image.fromarray(array).resize((size, size), Image.NEAREST)


def preview_grid(samples: Sequence[SceneSample], tile: int = 160) -> Image.Image:
    """One row per sample: RGB, depth, normals, segmentation, lines, then its captions."""
    if not samples:
        raise ValueError("preview needs at least one sample")
    font = ImageFont.load_default(size=12)
    text_width = 330
    chars = text_width // 7
    header = _LINE + _PAD
    rows = []
    for sample in samples:
        lines: list[str] = []
        for kind, caption in sample.captions.items():
            lines.extend(textwrap.wrap(f"{kind}: {caption}", chars, subsequent_indent="  "))
        rows.append(lines)
    row_height = max(tile, max(len(r) for r in rows) * _LINE) + _PAD
    width = _PAD + len(COLUMNS) * (tile + _PAD) + text_width
    canvas = Image.new("RGB", (width, header + row_height * len(samples)), "white")
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(COLUMNS):
        draw.text((_PAD + c * (tile + _PAD), _PAD // 2), name, fill="black", font=font)
    draw.text((_PAD + len(COLUMNS) * (tile + _PAD), _PAD // 2), "captions (all kinds)", fill="black", font=font)
    for r, (sample, lines) in enumerate(zip(samples, rows, strict=True)):
        y = header + r * row_height
        pictures = {"rgb": sample.rgb, **sample.intrinsics().visualise()}
        for c, name in enumerate(COLUMNS):
            canvas.paste(_tile(pictures[name], tile), (_PAD + c * (tile + _PAD), y))
        x = _PAD + len(COLUMNS) * (tile + _PAD)
        for i, line in enumerate(lines):
            draw.text((x, y + i * _LINE), line, fill="black", font=font)
    return canvas


def save_preview(samples: Sequence[SceneSample], out: str | os.PathLike[str], tile: int = 160) -> None:
    """Write the grid as PNG atomically (an existing file is replaced only on success)."""
    buffer = io.BytesIO()
    preview_grid(samples, tile).save(buffer, format="PNG")
    atomic_write_bytes(out, buffer.getvalue())
