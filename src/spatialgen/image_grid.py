"""Pictures in a captioned grid: sample sheets of training runs, ``grid.png`` of ``generate``, README figures.

A leaf module (Pillow only), so trainers in lower layers can draw their sample grids without
importing the generation front end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont


def image_grid(
    images: Sequence[Image.Image], captions: Sequence[str] | None = None, columns: int | None = None
) -> Image.Image:
    """Images in rows of ``columns`` (default: a near-square grid), each with its caption wrapped below."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    tile = max(128, max(im.width for im in images))
    font = ImageFont.load_default()
    chars = max(8, tile // 6)
    wrapped = [_wrap(c, chars) for c in (captions or [""] * len(images))]
    text_h = 12 * max((len(w) for w in wrapped), default=0) + 4
    pad = 4
    canvas = Image.new("RGB", (columns * (tile + pad) + pad, rows * (tile + text_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (im, lines) in enumerate(zip(images, wrapped, strict=True)):
        x, y = pad + (i % columns) * (tile + pad), pad + (i // columns) * (tile + text_h + pad)
        canvas.paste(im.convert("RGB").resize((tile, tile), Image.NEAREST), (x, y))
        for j, line in enumerate(lines):
            draw.text((x, y + tile + 2 + 12 * j), line, fill="black", font=font)
    return canvas


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines
