"""The intrinsics conventions of DESIGN.md, on numpy arrays and torch tensors alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatialgen.intrinsics import (
    PACKED_CHANNELS,
    SEGMENTATION_PALETTE,
    Intrinsics,
    colour_segmentation,
    disparity_from_depth,
    unit_range_to_normal,
)
from spatialgen.scenes import make_sample, scene_seed


def random_intrinsics(rng: np.random.Generator, batch: tuple[int, ...] = ()) -> Intrinsics:
    shape = (*batch, 1, 8, 8)
    return Intrinsics(
        depth=rng.random(shape),
        normal=rng.random((*batch, 3, 8, 8)),
        segmentation=rng.random((*batch, 3, 8, 8)),
        lines=(rng.random(shape) > 0.5).astype(np.float64),
    )


def test_pack_is_eight_channels_in_order_and_unpack_inverts_it() -> None:
    x = random_intrinsics(np.random.default_rng(0), batch=(2,))
    packed = x.pack()
    assert packed.shape == (2, PACKED_CHANNELS, 8, 8) and packed.min() >= -1 and packed.max() <= 1
    assert np.allclose(packed[:, 0:1], x.depth * 2 - 1) and np.allclose(packed[:, 7:8], x.lines * 2 - 1)
    back = Intrinsics.unpack(packed)
    for name in ("depth", "normal", "segmentation", "lines"):
        assert np.allclose(getattr(back, name), getattr(x, name))


def test_pack_and_unpack_work_on_torch_tensors() -> None:
    x = random_intrinsics(np.random.default_rng(1))
    t = Intrinsics(*(torch.from_numpy(getattr(x, f)) for f in ("depth", "normal", "segmentation", "lines")))
    packed = t.pack()
    assert isinstance(packed, torch.Tensor) and np.allclose(packed.numpy(), x.pack())
    assert torch.allclose(Intrinsics.unpack(packed).normal, t.normal)
    assert Intrinsics.unpack(packed * 3).depth.max() <= 1.0, "decoder overshoot is clipped"


def test_wrong_channel_counts_are_refused() -> None:
    x = random_intrinsics(np.random.default_rng(2))
    with pytest.raises(ValueError, match="normal must have 3 channel"):
        Intrinsics(depth=x.depth, normal=x.depth, segmentation=x.segmentation, lines=x.lines)
    with pytest.raises(ValueError, match="need 8 channels"):
        Intrinsics.unpack(np.zeros((7, 4, 4)))


def test_disparity_is_min_max_normalised_with_near_bright() -> None:
    depth = np.array([[1.0, 2.0], [4.0, np.inf]])
    d = disparity_from_depth(depth)
    assert d[0, 0] == 1.0 and d[1, 0] == 0.0 and d[1, 1] == 0.0
    assert d[0, 1] == pytest.approx((0.5 - 0.25) / 0.75)


def test_normals_decode_to_unit_vectors() -> None:
    n = np.array([[0.0, 0.0, 1.0], [0.6, -0.8, 0.0]])
    assert np.allclose(unit_range_to_normal((n + 1) / 2 * 0.98 + 0.01), n, atol=0.03)
    assert np.allclose(np.linalg.norm(unit_range_to_normal(np.random.default_rng(3).random((5, 3))), axis=-1), 1)


def test_segmentation_palette_is_distinct_and_bounded() -> None:
    colours = {tuple(c) for c in SEGMENTATION_PALETTE}
    assert len(colours) == len(SEGMENTATION_PALETTE)
    ids = np.array([[0, 1], [2, 15]])
    assert np.array_equal(colour_segmentation(ids)[1, 1], SEGMENTATION_PALETTE[15])
    with pytest.raises(ValueError, match="instance ids must be < 16"):
        colour_segmentation(np.array([[16]]))


def test_scene_samples_give_intrinsics_in_the_convention() -> None:
    s = make_sample(scene_seed(0, 1), 32)
    x = s.intrinsics()
    assert x.depth.shape == (1, 32, 32) and x.normal.shape == (3, 32, 32)
    nearest = np.unravel_index(np.argmin(s.depth), s.depth.shape)
    assert x.depth[0][nearest] == 1.0
    assert np.allclose(x.normal * 2 - 1, np.moveaxis(s.normal.astype(np.float32), -1, 0), atol=1e-6)
    assert np.array_equal(x.lines[0] > 0.5, s.lines)
    pictures = x.visualise()
    assert {k: v.shape for k, v in pictures.items()} == {
        k: (32, 32, 3) for k in ("depth", "normal", "segmentation", "lines")
    }
    assert (pictures["lines"][s.lines] == 0).all() and (pictures["lines"][~s.lines] == 255).all()
