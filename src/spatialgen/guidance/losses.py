"""InfSplign's losses over object centroids (Eq. 8-12) and an Attend-and-Excite presence loss.

Image coordinates: x grows to the right, y grows downward (row index), both in [0, 1].

* ``Delta`` (Eq. 8) is positive when the relation holds: left ``x_B - x_A``, right ``x_A - x_B``,
  above ``y_B - y_A``, below ``y_A - y_B``.
* ``delta`` (Eq. 10) is the offset on the other axis, ``y_A - y_B`` for left/right and
  ``x_A - x_B`` for above/below; ``||delta||_p^p`` keeps the pair level on that axis.
* ``L_spatial = f(alpha * (m - Delta))`` (Eq. 9) with f in relu, leaky_relu (slope 0.1), gelu,
  sigmoid. The authors' code computes ``f(m - alpha * Delta)``; at their defaults the two
  differ only in where the margin sits (m vs m / alpha), and we follow the paper's equation.

Everything is batched: one loss per row, rows without a relation weigh 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

LOSSES = ("relu", "leaky_relu", "gelu", "sigmoid")
LEAKY_SLOPE = 0.1  # the paper's best (appendix D)

#: relation -> (axis: 0 = x, 1 = y; sign of (A - B) on that axis when the relation holds)
RELATION_AXES: dict[str, tuple[int, float]] = {
    "left of": (0, -1.0),
    "right of": (0, 1.0),
    "above": (1, -1.0),
    "below": (1, 1.0),
}


def relation_tensors(relations: Sequence[str | None], device: torch.device | None = None) -> tuple[torch.Tensor, ...]:
    """``(axis, sign, valid)`` per row for :func:`displacements`; rows whose relation is None are not valid."""
    axes, signs, valid = [], [], []
    for relation in relations:
        if relation is None:
            axes.append(0), signs.append(0.0), valid.append(False)
            continue
        if relation not in RELATION_AXES:
            raise ValueError(f"InfSplign guides {', '.join(RELATION_AXES)}; got {relation!r}")
        axis, sign = RELATION_AXES[relation]
        axes.append(axis), signs.append(sign), valid.append(True)
    return (
        torch.tensor(axes, dtype=torch.long, device=device),
        torch.tensor(signs, device=device),
        torch.tensor(valid, dtype=torch.bool, device=device),
    )


def displacements(
    centre_a: torch.Tensor, centre_b: torch.Tensor, axis: torch.Tensor, sign: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Delta, delta)`` per row from centroids ``(rows, 2)`` (Eq. 8 and 10)."""
    diff = centre_a - centre_b  # (rows, 2): (x_A - x_B, y_A - y_B)
    along = diff.gather(1, axis[:, None]).squeeze(1)
    across = diff.gather(1, (1 - axis)[:, None]).squeeze(1)
    return sign.to(diff.dtype) * along, across


def spatial_loss(delta_main: torch.Tensor, kind: str, alpha: float, margin: float) -> torch.Tensor:
    """``f(alpha * (margin - Delta))`` elementwise (Eq. 9)."""
    x = alpha * (margin - delta_main)
    if kind == "relu":
        return F.relu(x)
    if kind == "leaky_relu":
        return F.leaky_relu(x, LEAKY_SLOPE)
    if kind == "gelu":
        return F.gelu(x)
    if kind == "sigmoid":
        return torch.sigmoid(x)
    raise ValueError(f"unknown spatial loss {kind!r}; choose one of {', '.join(LOSSES)}")


def orthogonal_loss(delta_across: torch.Tensor, p: float) -> torch.Tensor:
    """``|delta|^p`` elementwise (Eq. 11); p = 0 switches the term off."""
    if p == 0:
        return torch.zeros_like(delta_across)
    return delta_across.abs().pow(p)


def presence_loss(
    maps: torch.Tensor, weights_a: torch.Tensor, weights_b: torch.Tensor, text_mask: torch.Tensor
) -> torch.Tensor:
    """Attend-and-Excite's loss per row: ``max(0, 1 - max attention)`` of the weaker of A and B.

    ``maps`` are token maps ``(rows, tokens, H, W)``; ``text_mask`` ``(rows, tokens)`` marks the
    prompt's words (start, end and padding excluded). As in A&E the word probabilities are
    renormalised with ``softmax(100 * p)`` over the words, each object's map is smoothed with a
    3 x 3 Gaussian (sigma 0.5) and its maximum taken.
    """
    scores = (maps * 100.0).masked_fill(~text_mask[:, :, None, None], float("-inf"))
    words = scores.softmax(dim=1).nan_to_num(0.0)
    kernel = _gaussian_kernel(3, 0.5, maps.dtype, maps.device)
    losses = []
    for weights in (weights_a, weights_b):
        obj = torch.einsum("bthw,bt->bhw", words, weights.to(maps.dtype))[:, None]
        smooth = F.conv2d(F.pad(obj, (1, 1, 1, 1), mode="reflect"), kernel)
        losses.append(F.relu(1.0 - smooth.amax(dim=(-3, -2, -1))))
    return torch.maximum(losses[0], losses[1])


def _gaussian_kernel(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    offsets = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(offsets**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]
