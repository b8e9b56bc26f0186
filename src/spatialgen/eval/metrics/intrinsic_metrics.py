"""Accuracy of predicted intrinsics against a reference: depth, normals, segmentation, lines, albedo, shading.

Every metric is a pure function of ``pred`` / ``target`` arrays (numpy arrays or torch tensors, read
as float64 numpy) with an optional boolean validity ``mask``, and returns a plain ``dict`` of floats.
Inputs follow :mod:`spatialgen.intrinsics`: channel-first maps in [0, 1], a single image ``(C, H, W)``
/ ``(H, W)`` or a batch ``(B, C, H, W)``. A mask is either one ``(H, W)`` map shared by every image
or one per image (anything with ``B * H * W`` elements).

Aggregation follows the usual practice of each field so that numbers compare with published ones:

* depth, albedo and shading are scored **per image** (alignment is per image) and averaged over
  the images that have valid pixels (as in the MiDaS / Marigold evaluation protocol);
* normal angular errors are **pooled** over all valid pixels of the batch (as in the Omnidata /
  DSINE tables, whose mean / median / "% within t degrees" are over pixels);
* line precision / recall counts and semantic confusion matrices are pooled over the batch
  (BSDS-style "optimal dataset scale"), instance mIoU is matched and scored per image.

Fractions are reported in [0, 1] (``delta1``, ``within_11.25``, ``miou``, ``f``): multiply by 100
for the percentages tables print.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from ...intrinsics import SEGMENTATION_PALETTE

DepthAlign = Literal["scale_shift", "scale", "none"]
DEPTH_ALIGN_CHOICES: tuple[str, ...] = ("scale_shift", "scale", "none")
NORMAL_THRESHOLDS_DEG: tuple[float, ...] = (11.25, 22.5, 30.0)
DEFAULT_ODS_THRESHOLDS: tuple[float, ...] = tuple(np.round(np.linspace(0.05, 0.95, 19), 2).tolist())


# --------------------------------------------------------------------------------------------- input


def _to_numpy(x: Any, name: str, dtype: Any = np.float64) -> np.ndarray:
    """A numpy copy of an array or (CPU / GPU, grad-tracking) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach()
        if getattr(x, "dtype", None) is not None and str(x.dtype) == "torch.bfloat16":
            x = x.float()
        x = x.cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}") from exc
    if arr.dtype == object:
        raise ValueError(f"{name} must be a numeric array, got an object array")
    return arr if dtype is None else arr.astype(dtype, copy=False)


def _check_pair(pred: np.ndarray, target: np.ndarray, what: str) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"{what}: prediction and target shapes differ: {pred.shape} vs {target.shape}")
    if pred.ndim < 2:
        raise ValueError(f"{what}: expected maps of at least 2 dimensions (H, W), got shape {pred.shape}")
    if pred.size == 0:
        raise ValueError(f"{what}: empty input")
    if not np.isfinite(pred).all():
        raise ValueError(f"{what}: the prediction contains NaN or infinite values")


def _images(x: np.ndarray) -> np.ndarray:
    """(..., H, W) -> (N, H, W): every leading axis (batch, a size-1 channel) becomes an image index."""
    return x.reshape(-1, x.shape[-2], x.shape[-1])


def _mask_images(mask: Any, n: int, h: int, w: int) -> np.ndarray:
    """A validity mask as (N, H, W) bool: one (H, W) map for all images, or one per image."""
    if mask is None:
        return np.ones((n, h, w), dtype=bool)
    m = _to_numpy(mask, "mask", dtype=None)
    if m.dtype != bool:
        m = m != 0
    if m.shape[-2:] != (h, w):
        raise ValueError(f"mask shape {m.shape} does not end in the image size ({h}, {w})")
    if m.size == h * w:
        return np.broadcast_to(m.reshape(1, h, w), (n, h, w))
    if m.size == n * h * w:
        return m.reshape(n, h, w)
    raise ValueError(f"mask shape {m.shape} fits neither one image ({h}, {w}) nor all {n} images")


# --------------------------------------------------------------------------------------------- depth


def align_depth(pred: np.ndarray, target: np.ndarray, valid: np.ndarray, align: DepthAlign) -> np.ndarray:
    """Least-squares alignment of one disparity map ``pred`` to ``target`` over ``valid`` pixels.

    ``scale_shift`` solves ``min_{s,t} sum (s * pred + t - target)^2`` (closed form: s = cov / var,
    t = mean(target) - s * mean(pred)), ``scale`` solves ``min_s sum (s * pred - target)^2``. This
    is the alignment the MiDaS and Marigold evaluations apply to affine-invariant predictions, and it
    is done in disparity space because that is where our convention (and MiDaS's output) is affine
    invariant. A constant prediction cannot be scaled: it gets s = 0 and t = mean(target).
    """
    if align not in DEPTH_ALIGN_CHOICES:
        raise ValueError(f"align must be one of {DEPTH_ALIGN_CHOICES}, got {align!r}")
    if align == "none":
        return pred
    p, g = pred[valid], target[valid]
    if align == "scale":
        denom = float(np.dot(p, p))
        scale = float(np.dot(p, g)) / denom if denom > 1e-12 else 0.0
        return scale * pred
    pm, gm = p.mean(), g.mean()
    var = float(np.dot(p - pm, p - pm))
    scale = float(np.dot(p - pm, g - gm)) / var if var > 1e-12 * max(p.size, 1) else 0.0
    return scale * pred + (gm - scale * pm)


def depth_metrics(
    pred: Any,
    target: Any,
    mask: Any | None = None,
    align: DepthAlign = "scale_shift",
    eps: float = 1e-3,
) -> dict[str, float]:
    """AbsRel, RMSE and delta < 1.25^k (k = 1, 2, 3) of depth maps in our disparity convention.

    Our depth channel is per-image normalised disparity in [0, 1] (near = 1), which is only defined
    up to scale and shift; so by default the prediction is aligned to the target per image
    (:func:`align_depth`) before scoring, and all metrics are computed on the disparity values
    themselves (converting min-max normalised disparity back to depth is undefined where it is 0).

    * ``abs_rel`` = mean |p - g| / g, ``rmse`` = sqrt(mean (p - g)^2),
    * ``delta{k}`` = fraction of pixels with max(p / g, g / p) < 1.25^k; an aligned prediction <= 0
      counts as a miss (it is clamped to a tiny positive value, so the ratio is huge).

    Pixels whose target is not finite or <= ``eps`` are masked out: they are the farthest points
    (or nothing was hit) and would divide by zero. Shapes ``(H, W)``, ``(1, H, W)`` or
    ``(B, 1, H, W)``; metrics are averaged over the images that keep any valid pixel.
    """
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    p_all, g_all = _to_numpy(pred, "pred"), _to_numpy(target, "target")
    _check_pair(p_all, g_all, "depth_metrics")
    p_img, g_img = _images(p_all), _images(g_all)
    n, h, w = p_img.shape
    valid_all = _mask_images(mask, n, h, w) & np.isfinite(g_img) & (g_img > eps)
    per_image = []
    for p, g, valid in zip(p_img, g_img, valid_all, strict=True):
        if not valid.any():
            continue
        aligned = align_depth(p, np.where(valid, g, 0.0), valid, align)
        pv, gv = aligned[valid], g[valid]
        ratio = np.maximum(np.maximum(pv, 1e-12) / gv, gv / np.maximum(pv, 1e-12))
        row = {"abs_rel": float(np.mean(np.abs(pv - gv) / gv)), "rmse": float(np.sqrt(np.mean((pv - gv) ** 2)))}
        for k in (1, 2, 3):
            row[f"delta{k}"] = float(np.mean(ratio < 1.25**k))
        per_image.append(row)
    if not per_image:
        raise ValueError(f"depth_metrics: no valid pixels (target must be finite and > eps={eps} inside the mask)")
    return {key: float(np.mean([r[key] for r in per_image])) for key in per_image[0]}


# --------------------------------------------------------------------------------------------- normals


def decode_normals(encoded: Any, channel_axis: int = -3) -> np.ndarray:
    """[0, 1] encoded normals ((n + 1) / 2, our convention) -> unit vectors in [-1, 1].

    Renormalised, because decoders are not exact; a zero vector stays zero.
    """
    n = _to_numpy(encoded, "normals") * 2.0 - 1.0
    norm = np.linalg.norm(n, axis=channel_axis, keepdims=True)
    return n / np.maximum(norm, 1e-12)


def normal_angular_error(pred: Any, target: Any, encoded: bool = True, channel_axis: int = -3) -> np.ndarray:
    """Per-pixel angle in degrees between predicted and target normals (channel axis removed).

    ``encoded=True`` reads both in our [0, 1] convention, ``False`` as vectors in [-1, 1]. Computed
    as atan2(|p x g|, p . g) on unit vectors, which stays accurate for tiny angles (arccos does not).
    """
    p, g = _to_numpy(pred, "pred"), _to_numpy(target, "target")
    if p.shape != g.shape:
        raise ValueError(f"normal_angular_error: prediction and target shapes differ: {p.shape} vs {g.shape}")
    if p.ndim < 3 or p.shape[channel_axis] != 3:
        raise ValueError(f"normals need 3 channels on axis {channel_axis}, got shape {p.shape}")
    if encoded:
        p, g = p * 2.0 - 1.0, g * 2.0 - 1.0
    p = np.moveaxis(p, channel_axis, -1)
    g = np.moveaxis(g, channel_axis, -1)
    p = p / np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-12)
    g = g / np.maximum(np.linalg.norm(g, axis=-1, keepdims=True), 1e-12)
    cross = np.linalg.norm(np.cross(p, g), axis=-1)
    dot = np.sum(p * g, axis=-1)
    return np.degrees(np.arctan2(cross, dot))


def normal_metrics(
    pred: Any,
    target: Any,
    mask: Any | None = None,
    encoded: bool = True,
    thresholds: Sequence[float] = NORMAL_THRESHOLDS_DEG,
) -> dict[str, float]:
    """Mean / median angular error (degrees) and the fraction of pixels within each threshold.

    Shapes ``(3, H, W)`` or ``(B, 3, H, W)``; ``encoded`` as in :func:`normal_angular_error`.
    Errors are pooled over all valid pixels. Target pixels whose vector is (nearly) zero -- encoded
    (0.5, 0.5, 0.5), "no surface" -- or not finite are left out. Also reports ``l1``, the mean
    absolute difference of the unit vectors' components (the "L1 error" of the Intrinsic LoRA tables).
    """
    p, g = _to_numpy(pred, "pred"), _to_numpy(target, "target")
    if p.shape != g.shape:
        raise ValueError(f"normal_metrics: prediction and target shapes differ: {p.shape} vs {g.shape}")
    if p.ndim < 3 or p.shape[-3] != 3:
        raise ValueError(f"normal_metrics: normals need 3 channels on axis -3, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("normal_metrics: the prediction contains NaN or infinite values")
    p4 = p.reshape(-1, 3, p.shape[-2], p.shape[-1])
    g4 = g.reshape(-1, 3, g.shape[-2], g.shape[-1])
    if encoded:
        p4, g4 = p4 * 2.0 - 1.0, g4 * 2.0 - 1.0
    n, _, h, w = p4.shape
    g_finite = np.isfinite(g4).all(axis=1)
    g4 = np.where(np.isfinite(g4), g4, 0.0)
    valid = _mask_images(mask, n, h, w) & g_finite & (np.linalg.norm(g4, axis=1) > 0.5)
    if not valid.any():
        raise ValueError("normal_metrics: no valid pixels (target normals must be non-zero inside the mask)")
    angles = normal_angular_error(p4, g4, encoded=False, channel_axis=1)[valid]
    pu = p4 / np.maximum(np.linalg.norm(p4, axis=1, keepdims=True), 1e-12)
    gu = g4 / np.maximum(np.linalg.norm(g4, axis=1, keepdims=True), 1e-12)
    l1 = np.abs(pu - gu).transpose(0, 2, 3, 1)[valid]
    out = {"mean": float(angles.mean()), "median": float(np.median(angles)), "l1": float(l1.mean())}
    for t in thresholds:
        out[f"within_{t:g}"] = float(np.mean(angles < t))
    return out


# --------------------------------------------------------------------------------------------- segmentation


def colours_to_ids(segmentation: Any, palette: Any | None = SEGMENTATION_PALETTE, channel_axis: int = -3) -> np.ndarray:
    """RGB colour-coded segmentation -> integer segment ids (channel axis removed).

    Floats are read as [0, 1] and integers as 0..255. With a ``palette`` (K, 3) of 8-bit colours
    each pixel gets the index of its nearest palette colour (robust to a decoder's colour noise);
    with ``palette=None`` every distinct 8-bit colour is its own segment (for maps whose colours are
    arbitrary but exact, e.g. SAM masks painted with random colours). Ids are only labels: compare
    them with :func:`instance_miou`, which matches segments, not ids.
    """
    seg = _to_numpy(segmentation, "segmentation", dtype=None)
    if seg.ndim < 3 or seg.shape[channel_axis] != 3:
        raise ValueError(f"colour segmentation needs 3 channels on axis {channel_axis}, got shape {seg.shape}")
    rgb = np.moveaxis(seg, channel_axis, -1)
    if np.issubdtype(rgb.dtype, np.floating):
        rgb = np.clip(np.rint(np.nan_to_num(rgb) * 255.0), 0, 255)
    rgb = rgb.astype(np.int64)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    colours, inverse = np.unique(packed.ravel(), return_inverse=True)
    if palette is None:
        return inverse.reshape(packed.shape)
    pal = np.asarray(palette, dtype=np.float64)
    if pal.ndim != 2 or pal.shape[1] != 3 or len(pal) == 0:
        raise ValueError(f"palette must be a non-empty (K, 3) array of 8-bit colours, got shape {pal.shape}")
    # nearest palette colour of each distinct colour only: (U, K) distances, never (pixels, K, 3)
    unique_rgb = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1).astype(np.float64)
    dist = (unique_rgb**2).sum(1)[:, None] - 2.0 * unique_rgb @ pal.T + (pal**2).sum(1)[None, :]
    return dist.argmin(axis=1)[inverse].reshape(packed.shape)


def _check_ids(pred: Any, target: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    p, g = _to_numpy(pred, "pred", dtype=None), _to_numpy(target, "target", dtype=None)
    for name, x in (("pred", p), ("target", g)):
        if not (np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
            raise ValueError(
                f"{what}: {name} must be an integer id map, got dtype {x.dtype}; "
                "convert colour-coded maps with colours_to_ids() first"
            )
    if p.shape != g.shape:
        raise ValueError(f"{what}: prediction and target shapes differ: {p.shape} vs {g.shape}")
    if p.ndim < 2 or p.size == 0:
        raise ValueError(f"{what}: expected non-empty id maps (H, W) or (B, H, W), got shape {p.shape}")
    return p.astype(np.int64), g.astype(np.int64)


def iou_matrix(pred_ids: np.ndarray, target_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU between every predicted and every target segment of one image's valid pixels (1-D ids).

    Returns (iou (P, T), predicted labels (P,), target labels (T,)); one bincount, no pixel loops.
    """
    p_labels, p_idx = np.unique(pred_ids, return_inverse=True)
    t_labels, t_idx = np.unique(target_ids, return_inverse=True)
    n_p, n_t = len(p_labels), len(t_labels)
    inter = np.bincount(p_idx * n_t + t_idx, minlength=n_p * n_t).reshape(n_p, n_t).astype(np.float64)
    union = inter.sum(axis=1, keepdims=True) + inter.sum(axis=0, keepdims=True) - inter
    return inter / np.maximum(union, 1.0), p_labels, t_labels


def instance_miou(pred: Any, target: Any, mask: Any | None = None) -> dict[str, float]:
    """mIoU of instance maps under the best one-to-one matching of predicted to target segments.

    For *instance* maps (our segmentation: ids or colours carry no meaning across images) segment
    ids must not be compared directly. Per image, the IoU matrix of predicted x target segments is
    matched with the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``, maximising total
    IoU); then

    * ``miou``: sum of matched IoUs / number of target segments (a target segment left unmatched
      scores 0) -- how well the reference's segments are recovered;
    * ``miou_symmetric``: the same sum / max(#predicted, #target), which also penalises spurious
      extra predicted segments.

    Both are averaged over images. Id maps ``(H, W)`` or ``(B, H, W)`` (integers); colour-coded maps
    go through :func:`colours_to_ids` first. For semantic labels use :func:`semantic_miou`.
    """
    from scipy.optimize import linear_sum_assignment

    p, g = _check_ids(pred, target, "instance_miou")
    p_img, g_img = _images(p), _images(g)
    n, h, w = p_img.shape
    valid_all = _mask_images(mask, n, h, w)
    scores, symmetric = [], []
    for pi, gi, valid in zip(p_img, g_img, valid_all, strict=True):
        if not valid.any():
            continue
        iou, p_labels, t_labels = iou_matrix(pi[valid], gi[valid])
        rows, cols = linear_sum_assignment(iou, maximize=True)
        total = float(iou[rows, cols].sum())
        scores.append(total / len(t_labels))
        symmetric.append(total / max(len(p_labels), len(t_labels)))
    if not scores:
        raise ValueError("instance_miou: no valid pixels inside the mask")
    return {"miou": float(np.mean(scores)), "miou_symmetric": float(np.mean(symmetric))}


def semantic_miou(
    pred: Any,
    target: Any,
    mask: Any | None = None,
    num_classes: int | None = None,
    ignore_index: int | None = None,
) -> dict[str, float]:
    """Plain per-class mIoU for *semantic* label maps (the same id means the same class everywhere).

    One confusion matrix over all valid pixels of the batch; IoU per class = TP / (TP + FP + FN);
    ``miou`` averages the classes that occur in the target or the prediction (a class absent from
    both has no IoU and is skipped). Also ``pixel_accuracy``. Target pixels equal to
    ``ignore_index`` are left out. Labels must be in [0, num_classes).
    """
    p, g = _check_ids(pred, target, "semantic_miou")
    valid = _mask_images(mask, int(np.prod(p.shape[:-2], dtype=np.int64)), p.shape[-2], p.shape[-1])
    valid = valid.reshape(p.shape)
    if ignore_index is not None:
        valid = valid & (g != ignore_index)
    pv, gv = p[valid], g[valid]
    if pv.size == 0:
        raise ValueError("semantic_miou: no valid pixels inside the mask")
    if min(pv.min(), gv.min()) < 0:
        raise ValueError("semantic_miou: labels must be non-negative (set ignore_index for void labels)")
    k = int(max(pv.max(), gv.max())) + 1 if num_classes is None else int(num_classes)
    if max(pv.max(), gv.max()) >= k:
        raise ValueError(f"semantic_miou: labels must be < num_classes={k}, got {int(max(pv.max(), gv.max()))}")
    conf = np.bincount(gv * k + pv, minlength=k * k).reshape(k, k).astype(np.float64)
    tp = np.diag(conf)
    union = conf.sum(axis=0) + conf.sum(axis=1) - tp
    present = union > 0
    return {"miou": float(np.mean(tp[present] / union[present])), "pixel_accuracy": float(tp.sum() / conf.sum())}


# --------------------------------------------------------------------------------------------- lines


def _line_counts(
    pred_bin: np.ndarray, target_bin: np.ndarray, valid: np.ndarray, tolerance: float, dist_to_target: np.ndarray
) -> tuple[int, int, int, int]:
    """(matched predicted, predicted, matched target, target) line pixels of one image."""
    from scipy.ndimage import distance_transform_edt

    pred_v, target_v = pred_bin & valid, target_bin & valid
    n_pred, n_target = int(pred_v.sum()), int(target_v.sum())
    hit_pred = int((dist_to_target[pred_v] <= tolerance).sum()) if n_pred else 0
    if n_target and n_pred:
        dist_to_pred = distance_transform_edt(~pred_v)
        hit_target = int((dist_to_pred[target_v] <= tolerance).sum())
    else:
        hit_target = 0
    return hit_pred, n_pred, hit_target, n_target


def _prf(hit_pred: int, n_pred: int, hit_target: int, n_target: int) -> dict[str, float]:
    if n_pred == 0 and n_target == 0:
        return {"precision": 1.0, "recall": 1.0, "f": 1.0}
    precision = hit_pred / n_pred if n_pred else 0.0
    recall = hit_target / n_target if n_target else 0.0
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f": f}


def _prepare_lines(pred: Any, target: Any, mask: Any | None, tolerance: float) -> tuple[np.ndarray, ...]:
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    p, g = _to_numpy(pred, "pred"), _to_numpy(target, "target")
    _check_pair(p, g, "line_fscore")
    p_img, g_img = _images(p), _images(np.nan_to_num(g))
    n, h, w = p_img.shape
    return p_img, g_img, _mask_images(mask, n, h, w)


def line_fscore(
    pred: Any, target: Any, mask: Any | None = None, tolerance: float = 1.0, threshold: float = 0.5
) -> dict[str, float]:
    """Precision, recall and F-score of a line drawing with a pixel distance tolerance.

    Both maps are binarised (``>= threshold``; the target always at 0.5). Precision = fraction of
    predicted line pixels within ``tolerance`` pixels (Euclidean, ``scipy.ndimage.distance_transform_edt``)
    of a target line pixel; recall = fraction of target line pixels within ``tolerance`` of a
    predicted one; F = 2PR / (P + R). ``tolerance=0`` demands exact overlap. Counts are pooled over
    a batch. Unlike the BSDS benchmark, pixels are not matched one-to-one (a thick predicted line
    near a thin target is not penalised for thickness): this is the cheap, symmetric-distance variant.
    Empty prediction and empty target score 1; one empty side scores F = 0.
    Shapes ``(H, W)``, ``(1, H, W)`` or ``(B, 1, H, W)``.
    """
    from scipy.ndimage import distance_transform_edt

    p_img, g_img, valid_all = _prepare_lines(pred, target, mask, tolerance)
    totals = np.zeros(4, dtype=np.int64)
    for p, g, valid in zip(p_img, g_img, valid_all, strict=True):
        target_bin = (g >= 0.5) & valid
        dist_to_target = distance_transform_edt(~target_bin) if target_bin.any() else np.full(g.shape, np.inf)
        totals += _line_counts(p >= threshold, target_bin, valid, tolerance, dist_to_target)
    return _prf(*(int(t) for t in totals))


def line_ods_fscore(
    pred: Any,
    target: Any,
    mask: Any | None = None,
    tolerance: float = 1.0,
    thresholds: Sequence[float] = DEFAULT_ODS_THRESHOLDS,
) -> dict[str, float]:
    """ODS-style best F over binarisation thresholds of a soft line map (one threshold for the batch).

    Returns ``ods_f``, ``ods_threshold`` and the precision / recall at that threshold. The distance
    map to the target is computed once; one distance transform of the prediction per threshold.
    """
    from scipy.ndimage import distance_transform_edt

    if len(thresholds) == 0:
        raise ValueError("thresholds must not be empty")
    p_img, g_img, valid_all = _prepare_lines(pred, target, mask, tolerance)
    targets = [(g >= 0.5) & v for g, v in zip(g_img, valid_all, strict=True)]
    dists = [distance_transform_edt(~t) if t.any() else np.full(t.shape, np.inf) for t in targets]
    best: dict[str, float] | None = None
    for thr in thresholds:
        totals = np.zeros(4, dtype=np.int64)
        for p, t, d, valid in zip(p_img, targets, dists, valid_all, strict=True):
            totals += _line_counts(p >= thr, t, valid, tolerance, d)
        scores = _prf(*(int(x) for x in totals))
        if best is None or scores["f"] > best["ods_f"]:
            best = {
                "ods_f": scores["f"],
                "ods_threshold": float(thr),
                "ods_precision": scores["precision"],
                "ods_recall": scores["recall"],
            }
    assert best is not None
    return best


# --------------------------------------------------------------------------------------------- albedo / shading


def rms_metrics(pred: Any, target: Any, mask: Any | None = None) -> dict[str, float]:
    """RMS error and scale-invariant RMS error of albedo or shading maps, per image then averaged.

    ``rmse`` = sqrt(mean (p - g)^2) over valid pixels and channels. ``si_rmse`` first rescales the
    prediction by the one scalar per image that minimises the squared error, a = <p, g> / <p, p>
    (intrinsic decompositions are only defined up to a global scale: albedo x shading = image),
    then takes the RMS -- the global form of Grosse et al.'s scale-invariant MSE (no local windows).
    Shapes ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)``; the mask is per pixel, shared by channels.
    """
    p, g = _to_numpy(pred, "pred"), _to_numpy(target, "target")
    _check_pair(p, g, "rms_metrics")
    if p.ndim == 2:
        p, g = p[None, None], g[None, None]
    p4 = p.reshape(-1, p.shape[-3], p.shape[-2], p.shape[-1])
    g4 = g.reshape(p4.shape)
    n, c, h, w = p4.shape
    valid_all = _mask_images(mask, n, h, w)[:, None] & np.isfinite(g4)
    rmse, si = [], []
    for pi, gi, valid in zip(p4, g4, valid_all, strict=True):
        if not valid.any():
            continue
        pv, gv = pi[valid], gi[valid]
        denom = float(np.dot(pv, pv))
        scale = float(np.dot(pv, gv)) / denom if denom > 1e-12 else 0.0
        rmse.append(float(np.sqrt(np.mean((pv - gv) ** 2))))
        si.append(float(np.sqrt(np.mean((scale * pv - gv) ** 2))))
    if not rmse:
        raise ValueError("rms_metrics: no valid pixels inside the mask")
    return {"rmse": float(np.mean(rmse)), "si_rmse": float(np.mean(si))}


# --------------------------------------------------------------------------------------------- all of them

INTRINSIC_FIELDS: tuple[str, ...] = ("depth", "normal", "segmentation", "lines", "albedo", "shading")


def _field(container: Any, name: str) -> Any | None:
    if isinstance(container, Mapping):
        return container.get(name)
    return getattr(container, name, None)


def _segment_ids(x: Any, palette: Any | None) -> np.ndarray:
    """Integer maps pass through; colour maps (3 channels on axis -3) are decoded to ids."""
    arr = _to_numpy(x, "segmentation", dtype=None)
    if np.issubdtype(arr.dtype, np.integer) and not (arr.ndim >= 3 and arr.shape[-3] == 3):
        return arr
    return colours_to_ids(arr, palette=palette)


def intrinsic_scores(
    pred: Any,
    target: Any,
    mask: Any | None = None,
    depth_align: DepthAlign = "scale_shift",
    line_tolerance: float = 1.0,
    segmentation_palette: Any | None = SEGMENTATION_PALETTE,
) -> dict[str, float]:
    """Every metric for the intrinsics that both ``pred`` and ``target`` have, keys ``"<field>/<metric>"``.

    ``pred`` / ``target`` are :class:`spatialgen.intrinsics.Intrinsics` or any object / mapping with
    some of the fields ``depth``, ``normal``, ``segmentation``, ``lines``, ``albedo``, ``shading``
    in the project's convention (channel-first, [0, 1]; segmentation colour-coded, or an integer
    id map). Fields missing (or ``None``) on either side are skipped. Segmentation uses matched
    instance mIoU (colours decoded with ``segmentation_palette``, see :func:`colours_to_ids`); an
    integer array with 3 on axis -3 is read as 8-bit colours, so pass a batch of 3 id maps to
    :func:`instance_miou` directly.
    """
    scores: dict[str, float] = {}
    present = [f for f in INTRINSIC_FIELDS if _field(pred, f) is not None and _field(target, f) is not None]
    if not present:
        raise ValueError(f"pred and target share none of the intrinsic fields {INTRINSIC_FIELDS}")
    for name in present:
        p, g = _field(pred, name), _field(target, name)
        if name == "depth":
            result = depth_metrics(p, g, mask, align=depth_align)
        elif name == "normal":
            result = normal_metrics(p, g, mask, encoded=True)
        elif name == "segmentation":
            result = instance_miou(_segment_ids(p, segmentation_palette), _segment_ids(g, segmentation_palette), mask)
        elif name == "lines":
            result = line_fscore(p, g, mask, tolerance=line_tolerance)
        else:
            result = rms_metrics(p, g, mask)
        scores.update({f"{name}/{key}": value for key, value in result.items()})
    return scores
