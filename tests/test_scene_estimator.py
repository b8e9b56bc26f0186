"""The scene-world depth / normal estimator: training reduces its loss, save / load is exact, errors are clear."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spatialgen.eval.scene.recogniser import RecogniserNet
from spatialgen.eval.scene.scene_estimator import (
    IntrinsicTargets,
    SceneEstimator,
    estimator_loss,
    score_estimator,
    train_estimator,
)
from spatialgen.intrinsics import disparity_from_depth
from spatialgen.scenes import make_sample, scene_seed


@pytest.fixture(scope="module")
def samples():
    return [make_sample(scene_seed(5, i), 32) for i in range(8)]


def test_targets_follow_the_intrinsics_convention(samples) -> None:
    data = IntrinsicTargets.from_samples(samples)
    assert data.images.shape == (8, 3, 32, 32) and data.depth.shape == (8, 32, 32)
    assert np.allclose(data.depth[0].numpy(), disparity_from_depth(samples[0].depth), atol=1e-6)
    assert torch.allclose(data.normal.norm(dim=1), torch.ones(8, 32, 32), atol=1e-3)


def test_loss_is_zero_for_the_truth_and_training_lowers_it(samples) -> None:
    data = IntrinsicTargets.from_samples(samples)
    logit = torch.logit(data.depth.clamp(1e-4, 1 - 1e-4))
    exact = torch.cat([logit[:, None], data.normal], 1)
    assert estimator_loss(exact, data.depth, data.normal).item() < 1e-3
    torch.manual_seed(0)
    before = estimator_loss(RecogniserNet(8, num_classes=4)(data.images), data.depth, data.normal).item()
    trained = train_estimator(data, steps=40, batch_size=8, width=8, lr=3e-3, progress=False)
    after = estimator_loss(trained.net(data.images), data.depth, data.normal).item()
    assert after < 0.8 * before


def test_save_load_round_trip_and_scores(tmp_path: Path, samples) -> None:
    torch.manual_seed(0)
    estimator = SceneEstimator(RecogniserNet(8, num_classes=4), resolution=32)
    estimator.save(tmp_path)
    loaded = SceneEstimator.load(tmp_path)
    a, b = estimator.estimate([s.rgb for s in samples]), loaded.estimate([s.rgb for s in samples])
    assert np.array_equal(a.depth, b.depth) and np.array_equal(a.normal, b.normal)
    assert a.depth.shape == (8, 32, 32) and a.normal.shape == (8, 32, 32, 3)
    scores = score_estimator(loaded, samples)
    assert 0 <= scores["depth_delta1"] <= 1 and scores["normal_mean"] > 0 and scores["images"] == 8
    with pytest.raises(FileNotFoundError, match="train one with"):
        SceneEstimator.load(tmp_path / "nothing")
    with pytest.raises(ValueError, match="4 output channels"):
        SceneEstimator(RecogniserNet(8))


def test_embedded_estimator_is_accurate_on_held_out_renders() -> None:
    held = [make_sample(scene_seed(999, i), 64) for i in range(16)]
    scores = score_estimator(SceneEstimator.load(), held)
    assert scores["depth_raw_delta1"] > 0.9 and scores["normal_mean"] < 20
