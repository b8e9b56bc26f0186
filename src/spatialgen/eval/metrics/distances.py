"""Distances between two sets of features: CMMD's MMD and the Fréchet (FID) distance, on any embedding.

* :func:`mmd_rbf` / :func:`cmmd`: the estimator of google-research ``cmmd/distance.py``: squared
  MMD with a Gaussian RBF kernel ``exp(-||x - y||^2 / (2 sigma^2))``, ``sigma = 10``, times
  ``1000``, and the *biased* (minimum-variance, V-statistic) form of Gretton et al. (2012) Eq. 5:
  the means over the full Gram matrices, diagonal terms included. So a set against itself gives
  exactly 0. The Gram matrices are computed block by block (``chunk_size``), so memory stays at
  ``chunk_size**2`` numbers whatever the set sizes; the official code holds all of ``x @ x.T``.
* :func:`frechet_distance`: the FID formula ``||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``
  on any features, with ``tr((S1 S2)^(1/2))`` from symmetric eigendecompositions (see there).

Pure tensor maths: which embedding the features come from is the caller's choice
(:mod:`.clip` for CLIP, :mod:`.quality` for the scene recogniser's offline stand-in).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

#: The official CMMD kernel bandwidth and scale (google-research cmmd/distance.py).
CMMD_SIGMA = 10.0
CMMD_SCALE = 1000.0


def _as_matrix(x: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (n, dim) matrix of embeddings, got shape {tuple(t.shape)}")
    if not torch.is_floating_point(t):
        t = t.float()
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _kernel_mean(
    a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor, b_sq: torch.Tensor, gamma: float, chunk: int
) -> torch.Tensor:
    """Mean of exp(-gamma ||a_i - b_j||^2) over all (i, j), one ``chunk x chunk`` block at a time."""
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for i in range(0, a.shape[0], chunk):
        ai, ai_sq = a[i : i + chunk], a_sq[i : i + chunk, None]
        for j in range(0, b.shape[0], chunk):
            d2 = ai_sq + b_sq[None, j : j + chunk] - 2.0 * (ai @ b[j : j + chunk].T)
            # Rounding can make a distance of zero slightly negative: the exact value is >= 0.
            total += torch.exp(-gamma * d2.clamp_min_(0.0)).sum(dtype=torch.float64)
    return total / (a.shape[0] * b.shape[0])


def mmd_rbf(
    x: Any,
    y: Any,
    sigma: float = CMMD_SIGMA,
    scale: float = CMMD_SCALE,
    chunk_size: int = 2048,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device | None = None,
) -> float:
    """``scale`` x the biased squared MMD between two sets of vectors, Gaussian RBF kernel.

    ``k(a, b) = exp(-||a - b||^2 / (2 sigma^2))`` and ``MMD^2 = mean K_xx + mean K_yy - 2 mean K_xy``
    over the full matrices (diagonals included), exactly as google-research ``cmmd/distance.py``.
    The sets may differ in size. ``chunk_size`` bounds memory (blocks of ``chunk_size**2``
    kernel values) and does not change the result beyond rounding. ``dtype`` is the compute
    precision of the Gram blocks (float64 by default; the official code runs in float32, and
    float32 here moved a test CMMD by 4e-5 relative); block sums always accumulate in float64.
    No normalisation happens here: :func:`cmmd` normalises first.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    xt, yt = _as_matrix(x, "x"), _as_matrix(y, "y")
    if xt.shape[1] != yt.shape[1]:
        raise ValueError(f"x and y have different dimensions: {xt.shape[1]} and {yt.shape[1]}")
    target = torch.device(device) if device is not None else xt.device
    xt, yt = xt.to(target, dtype), yt.to(target, dtype)
    gamma = 1.0 / (2.0 * sigma**2)
    x_sq, y_sq = (xt * xt).sum(1), (yt * yt).sum(1)
    k_xx = _kernel_mean(xt, xt, x_sq, x_sq, gamma, chunk_size)
    k_yy = _kernel_mean(yt, yt, y_sq, y_sq, gamma, chunk_size)
    k_xy = _kernel_mean(xt, yt, x_sq, y_sq, gamma, chunk_size)
    return float(scale * (k_xx + k_yy - 2.0 * k_xy))


def l2_normalise(x: Any) -> torch.Tensor:
    """Rows scaled to unit length (a zero row is an error: it has no direction)."""
    t = _as_matrix(x, "embeddings")
    norms = t.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise ValueError("an embedding is the zero vector and cannot be L2-normalised")
    return t / norms


def cmmd(x_embeddings: Any, y_embeddings: Any, chunk_size: int = 2048, normalise: bool = True) -> float:
    """CMMD between two sets of image embeddings (lower = closer distributions; 0 for equal sets).

    The embeddings are L2-normalised first (as CLIP's are when CMMD computes them; a no-op for
    :class:`ClipImageEmbedder` output), then :func:`mmd_rbf` with sigma 10 and scale 1000.
    """
    if normalise:
        x_embeddings, y_embeddings = l2_normalise(x_embeddings), l2_normalise(y_embeddings)
    return mmd_rbf(x_embeddings, y_embeddings, CMMD_SIGMA, CMMD_SCALE, chunk_size)


# --------------------------------------------------------------------------------------------
# Fréchet distance


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (``np.cov(rowvar=False)``, as pytorch-fid) of (n, dim) features."""
    f = _as_matrix(features, "features").double().cpu().numpy()
    if f.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {f.shape[0]}")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0.0).sqrt()) @ vectors.T


def frechet_distance_from_stats(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, eps: float = 0.0) -> float:
    """``||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))`` (the FID formula).

    ``tr((S1 S2)^(1/2))`` is computed as the sum of square roots of the eigenvalues of the
    symmetric matrix ``S1^(1/2) S2 S1^(1/2)``, which has the same eigenvalues as ``S1 S2``. Both
    steps are symmetric eigendecompositions in float64 with negative rounding noise clamped to 0,
    so there is no complex ``sqrtm`` output to discard and singular covariances (fewer samples
    than dimensions, constant features) need no special case. ``eps`` (default 0) adds
    ``eps * I`` to both covariances, the ridge pytorch-fid falls back to when ``sqrtm`` fails;
    set it (e.g. 1e-6) only to regularise on purpose: with singular covariances it can move the
    result by ``O(sqrt(eps))`` per degenerate dimension.
    """
    m1, m2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"shapes do not match: mu1 {m1.shape}, mu2 {m2.shape}, sigma1 {s1.shape}, sigma2 {s2.shape}; "
            "expected (d,), (d,), (d, d), (d, d)"
        )
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    t1 = torch.from_numpy((s1 + s1.T) / 2 + eps * np.eye(d))
    t2 = torch.from_numpy((s2 + s2.T) / 2 + eps * np.eye(d))
    root1 = _psd_sqrt(t1)
    middle = root1 @ t2 @ root1
    tr_covmean = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0.0).sqrt().sum()
    diff = m1 - m2
    value = float(diff @ diff) + float(torch.trace(t1) + torch.trace(t2) - 2.0 * tr_covmean)
    return max(value, 0.0)


def frechet_distance(x_features: Any, y_features: Any, eps: float = 0.0) -> float:
    """Fréchet distance between Gaussians fitted to two (n, dim) feature sets; see the stats version."""
    mu1, s1 = feature_statistics(x_features)
    mu2, s2 = feature_statistics(y_features)
    return frechet_distance_from_stats(mu1, s1, mu2, s2, eps)
