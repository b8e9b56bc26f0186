"""From captured attention to one map per object and its centroid (InfSplign Eq. 7).

* Layers are combined by resizing every layer's map to the finest captured grid (bilinear) and
  averaging: one map per token. (The public code resizes to 64 x 64; the finest captured grid
  carries the same information at a fraction of the cost.)
* A multi-token object ("potted plant", or a word its tokenizer splits) is the **mean** of its
  tokens' maps, which keeps its scale comparable with a one-token object.
* Mean thresholding keeps the positions whose value is at least the map's mean, and the centroid
  is the attention-weighted mean position over them, **normalised by the thresholded mass**. Eq. 7
  as printed divides by the unthresholded sum, which would pull every centroid toward the
  origin; the authors' code divides by the thresholded sum, and so do we.
* Coordinates are pixel centres mapped to [0, 1]: ``x = (j + 0.5) / W`` (left to right),
  ``y = (i + 0.5) / H`` (top to bottom), so a uniform map has its centroid at (0.5, 0.5).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from .capture import layer_grid


def token_maps(layer_maps: Mapping[str, torch.Tensor], latent_hw: tuple[int, int]) -> torch.Tensor:
    """``(rows, tokens, H, W)``: the layers' ``(rows, queries, tokens)`` maps on the finest grid, averaged."""
    if not layer_maps:
        raise ValueError("no attention maps were captured")
    grids = {name: layer_grid(m.shape[1], latent_hw) for name, m in layer_maps.items()}
    height, width = max(grids.values(), key=lambda hw: hw[0] * hw[1])
    total = None
    for name, maps in layer_maps.items():
        h, w = grids[name]
        grid = maps.transpose(1, 2).reshape(maps.shape[0], maps.shape[2], h, w)
        if (h, w) != (height, width):
            grid = F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)
        total = grid if total is None else total + grid
    assert total is not None
    return total / len(layer_maps)


def object_maps(maps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(rows, H, W)``: each row's token maps ``(rows, tokens, H, W)`` mixed by ``weights`` ``(rows, tokens)``."""
    return torch.einsum("bthw,bt->bhw", maps, weights.to(maps.dtype))


def mean_threshold(maps: torch.Tensor) -> torch.Tensor:
    """Zero every value below its map's mean (over the last two dimensions); gradients flow through the rest."""
    keep = maps >= maps.mean(dim=(-2, -1), keepdim=True)
    return maps * keep


def centroids(maps: torch.Tensor, threshold: bool = True) -> torch.Tensor:
    """``(..., 2)`` (x, y) in [0, 1] of maps ``(..., H, W)``; (0.5, 0.5) for a map without mass."""
    if threshold:
        maps = mean_threshold(maps)
    height, width = maps.shape[-2:]
    xs = (torch.arange(width, device=maps.device, dtype=maps.dtype) + 0.5) / width
    ys = (torch.arange(height, device=maps.device, dtype=maps.dtype) + 0.5) / height
    mass = maps.sum(dim=(-2, -1))
    safe = torch.where(mass > 0, mass, torch.ones_like(mass))
    x = (maps.sum(dim=-2) * xs).sum(dim=-1) / safe
    y = (maps.sum(dim=-1) * ys).sum(dim=-1) / safe
    centre = torch.full_like(x, 0.5)
    return torch.stack([torch.where(mass > 0, x, centre), torch.where(mass > 0, y, centre)], dim=-1)
