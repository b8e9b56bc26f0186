"""Intrinsic accuracy metrics: exact values on hand-made cases, and scene-world ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatialgen.eval.metrics.intrinsic_metrics import (
    align_depth,
    colours_to_ids,
    decode_normals,
    depth_metrics,
    instance_miou,
    intrinsic_scores,
    line_fscore,
    line_ods_fscore,
    normal_angular_error,
    normal_metrics,
    rms_metrics,
    semantic_miou,
)
from spatialgen.intrinsics import Intrinsics, normal_to_unit_range
from spatialgen.scenes import make_sample


def _ramp(h: int = 16, w: int = 16) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return (0.1 + 0.9 * (x + y) / (h + w - 2))[None]  # (1, H, W) disparity in [0.1, 1]


# --------------------------------------------------------------------------------------------- depth


def test_depth_perfect_prediction():
    d = _ramp()
    for align in ("none", "scale", "scale_shift"):
        m = depth_metrics(d, d, align=align)
        assert m["abs_rel"] == pytest.approx(0.0, abs=1e-12)
        assert m["rmse"] == pytest.approx(0.0, abs=1e-12)
        assert m["delta1"] == m["delta2"] == m["delta3"] == 1.0


def test_depth_double_scale_needs_alignment():
    d = _ramp()
    assert depth_metrics(2 * d, d, align="none")["abs_rel"] == pytest.approx(1.0)
    assert depth_metrics(2 * d, d, align="none")["delta3"] == 0.0  # ratio 2 > 1.25^3 everywhere
    m = depth_metrics(1.5 * d, d, align="none")  # ratio 1.5: 1.25 < 1.5 < 1.25^2
    assert (m["delta1"], m["delta2"], m["delta3"]) == (0.0, 1.0, 1.0)
    assert depth_metrics(2 * d, d, align="scale")["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    # scale alone cannot undo a shift; scale and shift can
    shifted = 0.5 * d + 0.2
    assert depth_metrics(shifted, d, align="scale")["abs_rel"] > 0.01
    m = depth_metrics(shifted, d, align="scale_shift")
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-12) and m["delta1"] == 1.0


def test_depth_hand_computed_rmse_and_masking():
    g = np.array([[0.5, 1.0], [0.25, 0.0]])  # the 0 target is masked out (eps)
    p = np.array([[0.6, 1.0], [0.25, 7.0]])
    m = depth_metrics(p, g, align="none")
    assert m["abs_rel"] == pytest.approx((0.1 / 0.5) / 3)
    assert m["rmse"] == pytest.approx(np.sqrt(0.01 / 3))
    assert m["delta1"] == 1.0  # 0.6 / 0.5 = 1.2 < 1.25
    # a user mask removes the only erroneous pixel
    mask = np.array([[False, True], [True, True]])
    assert depth_metrics(p, g, mask, align="none")["abs_rel"] == 0.0


def test_depth_alignment_closed_form_and_degenerate():
    rng = np.random.default_rng(0)
    p, g = rng.random((8, 8)), rng.random((8, 8))
    valid = np.ones_like(p, bool)
    aligned = align_depth(p, g, valid, "scale_shift")
    a = np.stack([p.ravel(), np.ones(p.size)], 1)
    s, t = np.linalg.lstsq(a, g.ravel(), rcond=None)[0]
    np.testing.assert_allclose(aligned, s * p + t, atol=1e-12)
    flat = align_depth(np.full((4, 4), 0.3), g[:4, :4], valid[:4, :4], "scale_shift")
    np.testing.assert_allclose(flat, g[:4, :4].mean())


def test_depth_batches_are_aligned_per_image_and_accept_torch():
    d = np.stack([_ramp(), _ramp()[:, ::-1]])  # (2, 1, H, W)
    pred = d * np.array([2.0, 0.5])[:, None, None, None] + 0.1
    m = depth_metrics(torch.from_numpy(pred).float(), torch.from_numpy(d).float())
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-5)


def test_depth_bad_input():
    with pytest.raises(ValueError, match="shapes differ"):
        depth_metrics(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="align must be one of"):
        depth_metrics(_ramp(), _ramp(), align="median")
    with pytest.raises(ValueError, match="no valid pixels"):
        depth_metrics(np.ones((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="NaN"):
        depth_metrics(np.full((4, 4), np.nan), np.ones((4, 4)))
    with pytest.raises(ValueError, match="mask shape"):
        depth_metrics(_ramp(), _ramp(), mask=np.ones((3, 3), bool))


# --------------------------------------------------------------------------------------------- normals


def _tilt(n: np.ndarray, deg: float) -> np.ndarray:
    """Unit normals (3, H, W) turned by exactly ``deg`` degrees, each in its own plane with a perpendicular."""
    side = np.cross(n, np.array([0.3, -0.5, 0.8])[:, None, None], axis=0)
    side /= np.linalg.norm(side, axis=0, keepdims=True)
    t = np.radians(deg)
    return np.cos(t) * n + np.sin(t) * side


def _normals(h: int = 8, w: int = 8, seed: int = 0) -> np.ndarray:
    """Random unit normals facing the camera, (3, H, W) in [-1, 1]."""
    v = np.random.default_rng(seed).normal(size=(3, h, w))
    v[2] = np.abs(v[2]) + 0.5
    return v / np.linalg.norm(v, axis=0, keepdims=True)


def test_normals_perfect_and_rotated():
    n = _normals()
    m = normal_metrics(normal_to_unit_range(n), normal_to_unit_range(n))
    assert m["mean"] == pytest.approx(0.0, abs=1e-6) and m["median"] == pytest.approx(0.0, abs=1e-6)
    assert m["within_11.25"] == m["within_22.5"] == m["within_30"] == 1.0
    for angle in (5.0, 15.0, 40.0):
        rotated = _tilt(n, angle)
        err = normal_angular_error(rotated, n, encoded=False)
        np.testing.assert_allclose(err, angle, atol=1e-9)
        m = normal_metrics(rotated, n, encoded=False)
        assert m["mean"] == pytest.approx(angle) and m["median"] == pytest.approx(angle)
    m = normal_metrics(_tilt(n, 15.0), n, encoded=False)
    assert (m["within_11.25"], m["within_22.5"], m["within_30"]) == (0.0, 1.0, 1.0)


def test_normals_encoded_flag_and_decode_helper():
    n = _normals()
    enc = normal_to_unit_range(n)
    np.testing.assert_allclose(decode_normals(enc), n, atol=1e-12)
    # an unnormalised prediction (as a decoder gives) is renormalised: only the direction counts
    long = normal_to_unit_range(0.5 * n)
    assert normal_metrics(long, enc)["mean"] == pytest.approx(0.0, abs=1e-6)
    opposite = normal_metrics(-n, n, encoded=False)
    assert opposite["mean"] == pytest.approx(180.0)


def test_normals_zero_target_is_invalid_and_mask():
    n = _normals()
    target = n.copy()
    target[:, 0, :] = 0.0  # "no surface"
    pred = _tilt(n, 10.0)
    pred[:, 0, :] = -n[:, 0, :]  # wildly wrong where the target is undefined: must not count
    assert normal_metrics(pred, target, encoded=False)["mean"] == pytest.approx(10.0)
    mask = np.zeros((8, 8), bool)
    mask[4:] = True
    assert normal_metrics(pred, n, mask, encoded=False)["mean"] == pytest.approx(10.0)
    with pytest.raises(ValueError, match="3 channels"):
        normal_metrics(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)))


# --------------------------------------------------------------------------------------------- segmentation


def _blocks() -> np.ndarray:
    ids = np.zeros((8, 8), np.int64)
    ids[:4, :4], ids[:4, 4:], ids[4:, :4], ids[4:, 4:] = 0, 1, 2, 3
    return ids


def test_instance_miou_permuted_ids_match_perfectly():
    g = _blocks()
    perm = np.array([7, 3, 9, 5])[g]
    assert instance_miou(g, g) == {"miou": 1.0, "miou_symmetric": 1.0}
    assert instance_miou(perm, g)["miou"] == pytest.approx(1.0)
    # semantic mIoU compares ids literally: the same permutation scores 0
    assert semantic_miou(perm, g)["miou"] == 0.0


def test_instance_miou_hand_computed():
    g = _blocks()
    merged = g.copy()
    merged[merged == 1] = 0  # two target segments predicted as one
    # matching: merged segment <-> target 0 (IoU 16/32), target 1 unmatched (0), targets 2, 3 exact
    assert instance_miou(merged, g)["miou"] == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    split = g.copy()
    split[:2, :4] = 9  # target 0 split into two halves: best match IoU 0.5, extra segment
    m = instance_miou(split, g)
    assert m["miou"] == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert m["miou_symmetric"] == pytest.approx((0.5 + 1 + 1 + 1) / 5)


def test_semantic_miou_hand_computed():
    g = np.array([[0, 0, 1, 1]])
    p = np.array([[0, 1, 1, 1]])
    # class 0: TP 1, union 2 -> 0.5; class 1: TP 2, union 3 -> 2/3
    m = semantic_miou(p, g)
    assert m["miou"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert m["pixel_accuracy"] == pytest.approx(0.75)
    assert semantic_miou(p, g, ignore_index=0)["miou"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="integer id map"):
        semantic_miou(p.astype(float), g)


def test_colour_segmentation_to_ids():
    from spatialgen.intrinsics import colour_segmentation

    g = _blocks()
    rgb = np.moveaxis(colour_segmentation(g), -1, 0).astype(np.float32) / 255.0  # (3, H, W)
    np.testing.assert_array_equal(colours_to_ids(rgb), g)  # nearest palette colour = the id
    noisy = np.clip(rgb + np.random.default_rng(0).normal(0, 0.03, rgb.shape), 0, 1)
    np.testing.assert_array_equal(colours_to_ids(noisy), g)
    exact = colours_to_ids(rgb, palette=None)
    assert instance_miou(exact, g)["miou"] == 1.0


# --------------------------------------------------------------------------------------------- lines


def test_lines_shift_by_one_pixel():
    g = np.zeros((16, 16))
    g[:, 8] = 1.0
    assert line_fscore(g, g, tolerance=0) == {"precision": 1.0, "recall": 1.0, "f": 1.0}
    shifted = np.roll(g, 1, axis=1)
    assert line_fscore(shifted, g, tolerance=1)["f"] == 1.0
    assert line_fscore(shifted, g, tolerance=0)["f"] == 0.0
    half = g.copy()
    half[:8, 8] = 0.0
    half[:8, 9] = 1.0  # half the line moved one pixel
    m = line_fscore(half, g, tolerance=0)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5)
    assert line_fscore(half, g, tolerance=1)["f"] == 1.0


def test_lines_soft_threshold_empty_and_ods():
    g = np.zeros((16, 16))
    g[4, :] = 1.0
    soft = 0.3 * g  # below the default threshold 0.5: no predicted line at all
    assert line_fscore(soft, g)["f"] == 0.0
    assert line_fscore(soft, g, threshold=0.2)["f"] == 1.0
    assert line_fscore(np.zeros_like(g), np.zeros_like(g))["f"] == 1.0
    ods = line_ods_fscore(soft, g)
    assert ods["ods_f"] == 1.0 and ods["ods_threshold"] <= 0.3
    with pytest.raises(ValueError, match="tolerance"):
        line_fscore(g, g, tolerance=-1)


# --------------------------------------------------------------------------------------------- albedo / shading


def test_rms_and_scale_invariant_rms():
    rng = np.random.default_rng(0)
    albedo = rng.random((3, 8, 8))
    assert rms_metrics(albedo, albedo) == {"rmse": 0.0, "si_rmse": 0.0}
    m = rms_metrics(0.5 * albedo, albedo)
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((0.5 * albedo) ** 2)))
    assert m["si_rmse"] == pytest.approx(0.0, abs=1e-12)
    offset = rms_metrics(albedo + 0.1, albedo)
    assert offset["rmse"] == pytest.approx(0.1)
    assert 0 < offset["si_rmse"] < 0.1  # a scale absorbs part of an offset, not all of it
    shading = rng.random((8, 8))
    assert rms_metrics(2 * shading, shading)["si_rmse"] == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------------------------- scene world


@pytest.fixture(scope="module")
def scene():
    return make_sample(3, 64)


def test_scene_ground_truth_against_itself(scene):
    truth = scene.intrinsics()
    extra = {"albedo": np.moveaxis(scene.albedo, -1, 0) / 255.0, "shading": scene.shading[None] / 255.0}
    target = {**{k: getattr(truth, k) for k in ("depth", "normal", "segmentation", "lines")}, **extra}
    s = intrinsic_scores(target, target)
    assert s["depth/abs_rel"] == pytest.approx(0.0, abs=1e-9) and s["depth/delta1"] == 1.0
    assert s["normal/mean"] == pytest.approx(0.0, abs=1e-4) and s["normal/within_11.25"] == 1.0
    assert s["segmentation/miou"] == 1.0
    assert s["lines/f"] == 1.0
    assert s["albedo/rmse"] == 0.0 and s["shading/si_rmse"] == 0.0
    # an Intrinsics has no albedo / shading: only the shared fields are scored
    assert {k.split("/")[0] for k in intrinsic_scores(truth, target)} == {"depth", "normal", "segmentation", "lines"}


def test_scene_corrupted_copy(scene):
    truth = scene.intrinsics()
    rng = np.random.default_rng(1)
    # depth: an affine change of disparity is invisible after alignment, noise is not
    affine = 0.6 * truth.depth + 0.3
    assert depth_metrics(affine, truth.depth)["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert depth_metrics(affine, truth.depth, align="none")["abs_rel"] > 0.3
    noisy = truth.depth + rng.normal(0, 0.05, truth.depth.shape)
    m = depth_metrics(noisy, truth.depth)
    assert 0 < m["rmse"] < 0.1 and m["delta1"] < 1.0
    # normals turned by 20 degrees
    n = np.moveaxis(scene.normal.astype(np.float64), -1, 0)
    rotated = normal_to_unit_range(_tilt(n / np.linalg.norm(n, axis=0, keepdims=True), 20.0))
    assert normal_metrics(rotated, truth.normal)["median"] == pytest.approx(20.0, abs=0.1)
    # segmentation: recoloured instances still match; painting an object over another does not
    ids = colours_to_ids(truth.segmentation)
    np.testing.assert_array_equal(ids, scene.instance)
    assert instance_miou((ids + 5) % 16, scene.instance)["miou"] == 1.0
    damaged = scene.instance.copy()
    damaged[damaged == damaged.max()] = 0
    assert instance_miou(damaged, scene.instance)["miou"] < 1.0
    # lines shifted by 3 pixels: fine at tolerance 3, poor at 1
    shifted = np.roll(truth.lines, 3, axis=-1)
    assert line_fscore(shifted, truth.lines, tolerance=1)["f"] < 0.8
    assert line_fscore(shifted, truth.lines, tolerance=3)["recall"] > 0.9
    # everything at once through intrinsic_scores, on a batch of torch tensors
    corrupted = Intrinsics(
        depth=torch.from_numpy(np.stack([noisy, truth.depth])).float(),
        normal=torch.from_numpy(np.stack([rotated, truth.normal])).float(),
        segmentation=torch.from_numpy(np.stack([truth.segmentation] * 2)).float(),
        lines=torch.from_numpy(np.stack([shifted, truth.lines])).float(),
    )
    batch = Intrinsics(*(np.stack([getattr(truth, f)] * 2) for f in ("depth", "normal", "segmentation", "lines")))
    s = intrinsic_scores(corrupted, batch)
    assert 0 < s["depth/rmse"] < 0.1
    assert 5.0 < s["normal/mean"] < 20.0  # half the batch is exact, half turned by 20 degrees
    assert s["segmentation/miou"] == 1.0
    assert s["lines/f"] < 1.0
