"""Attention strips: each object's map at each guided step with its centroid (the paper's Fig. 11).

Users debug guidance by looking: a map that never concentrates means the model does not
localise that word (guidance cannot help); centroids that cross the image and then stall mean
the weight or the window is too small. One PNG per image: row 1 object A, row 2 object B,
one column per guided step (at most ``columns``, evenly spaced), a cross at each centroid.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from .guide import GuidanceTrace

TILE = 96


def attention_strip(trace: GuidanceTrace, row: int, columns: int = 8, tile: int = TILE) -> Image.Image:
    """The strip of image ``row`` of a guided batch; needs a trace recorded with ``record_maps=True``."""
    steps = [s for s in trace.steps if s.map_a is not None and s.map_b is not None]
    if not steps:
        raise ValueError("this trace holds no attention maps; sample with InfSplignConfig(record_maps=True)")
    if not 0 <= row < steps[0].map_a.shape[0]:
        raise ValueError(f"row {row} is outside the batch of {steps[0].map_a.shape[0]} images")
    item = trace.triplets[row]
    names = (item.triplet.a.text, item.triplet.b.text) if item is not None else ("A", "B")
    picked = [steps[round(k)] for k in np.linspace(0, len(steps) - 1, min(columns, len(steps)))]
    label_w, head_h, pad = 90, 14, 2
    canvas = Image.new("RGB", (label_w + len(picked) * (tile + pad), head_h + 2 * (tile + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    cmap = colormaps["viridis"]
    for k, step in enumerate(picked):
        x0 = label_w + k * (tile + pad)
        draw.text((x0 + 2, 1), f"step {step.step} t={step.timestep:.0f}", fill="black", font=font)
        for r, (attention, centre) in enumerate(((step.map_a, step.centroid_a), (step.map_b, step.centroid_b))):
            values = attention[row].float().numpy()
            span = values.max() - values.min()
            scaled = (values - values.min()) / span if span > 0 else np.zeros_like(values)
            picture = Image.fromarray((cmap(scaled)[..., :3] * 255).astype(np.uint8)).resize(
                (tile, tile), Image.NEAREST
            )
            y0 = head_h + r * (tile + pad)
            canvas.paste(picture, (x0, y0))
            cx, cy = (float(v) * tile for v in centre[row].float().cpu())
            draw.line((x0 + cx - 5, y0 + cy - 5, x0 + cx + 5, y0 + cy + 5), fill="red", width=2)
            draw.line((x0 + cx - 5, y0 + cy + 5, x0 + cx + 5, y0 + cy - 5), fill="red", width=2)
    for r, name in enumerate(names):
        draw.text((2, head_h + r * (tile + pad) + tile // 2 - 6), name[:14], fill="black", font=font)
    return canvas
