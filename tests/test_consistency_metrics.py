"""Map-to-image consistency: known values on hand-made maps, scene-world renders agree with themselves."""

from __future__ import annotations

import numpy as np
import pytest

from spatialgen.eval.metrics.consistency import (
    ImageReading,
    consistency_per_sample,
    foreground_iou,
    map_foreground,
    map_segment_counts,
    shuffled_pairs,
)
from spatialgen.eval.runs.ildm_consistency import ConsistencyRecords, object_scores, paired_difference
from spatialgen.intrinsics import SEGMENTATION_PALETTE, colour_segmentation
from spatialgen.scenes import make_sample, scene_seed


def _seg(instance: np.ndarray) -> np.ndarray:
    """(N, H, W) ids -> (N, 3, H, W) colour maps in [0, 1]."""
    return np.moveaxis(colour_segmentation(instance), -1, 1) / 255.0


def test_foreground_and_segment_counts_on_a_hand_made_map() -> None:
    ids = np.zeros((1, 16, 16), np.int64)
    ids[0, 2:6, 2:6] = 1  # 16 pixels
    ids[0, 10:12, 10:12] = 2  # 4 pixels: under min_area 5
    seg = _seg(ids)
    assert map_foreground(seg).sum() == 20
    assert map_segment_counts(seg, min_area=5).tolist() == [1]
    assert map_segment_counts(seg, min_area=4).tolist() == [2]
    # a decoder's colour noise near the floor stays floor; an object colour a little off stays its segment
    noisy = seg + np.random.default_rng(0).normal(0, 0.03, seg.shape)
    assert map_foreground(noisy).sum() == 20
    with pytest.raises(ValueError, match="min_area"):
        map_segment_counts(seg, 0)


def test_foreground_iou_known_values() -> None:
    a = np.zeros((3, 4, 4), bool)
    b = np.zeros((3, 4, 4), bool)
    a[0, :2] = True  # 8 pixels
    b[0, 1:3] = True  # 8 pixels, 4 shared: IoU 4 / 12
    a[1] = True  # against nothing: 0
    # image 2: both empty: they agree
    assert foreground_iou(a, b) == pytest.approx([4 / 12, 0.0, 1.0])


def test_a_render_agrees_with_its_own_exact_reading_and_not_with_another_scene() -> None:
    """Maps of a render scored against that render's exact maps hit every bound; another scene's do not."""
    samples = [make_sample(scene_seed(5, i), 32) for i in range(4)]
    depth = np.stack([s.intrinsics().depth for s in samples]).astype(np.float64)
    normal = np.stack([s.intrinsics().normal for s in samples]).astype(np.float64)
    instance = np.stack([s.instance for s in samples])
    reading = ImageReading(
        object_mask=instance > 0,
        detections=[[object()] * int(len(np.unique(i)) - 1) for i in instance],
        depth=depth,
        normal=normal,
    )
    own = consistency_per_sample(depth, normal, _seg(instance), reading, min_area=1)
    assert own["seg_iou"] == pytest.approx(1.0)
    assert own["count_agrees"].tolist() == [1.0] * 4
    assert own["depth_abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert own["normal_mean"] == pytest.approx(0.0, abs=1e-3)
    order = shuffled_pairs([0, 1, 2, 3])
    other = consistency_per_sample(depth, normal, _seg(instance), reading.take(order), min_area=1)
    assert other["seg_iou"].mean() < 0.6 and other["depth_abs_rel"].mean() > 0.01


def test_shuffled_pairs_never_pair_a_prompt_with_itself_and_keep_seed_positions() -> None:
    index = np.repeat(np.arange(7), 2)  # 7 prompts x 2 seeds
    for seed in range(20):
        order = shuffled_pairs(index, seed)
        assert np.all(index[order] != index)
        assert np.all(order % 2 == np.arange(len(index)) % 2)  # seed k pairs with seed k
        assert sorted(order.tolist()) == list(range(len(index)))  # a permutation
    with pytest.raises(ValueError, match="two prompts"):
        shuffled_pairs([0, 0])


class _Det:
    def __init__(self, colour: str, shape: str) -> None:
        self.colour, self.shape = colour, shape


def test_object_scores_found_and_exact() -> None:
    prompts = ["a red cube and a blue sphere on the grass"] * 3
    detections = [
        [_Det("red", "cube"), _Det("blue", "sphere")],  # exact
        [_Det("red", "cube"), _Det("blue", "sphere"), _Det("green", "cone")],  # found, one extra
        [_Det("red", "cube")],  # missing one
    ]
    scores = object_scores(prompts, detections)
    assert scores["objects_found"].tolist() == [1.0, 1.0, 0.0]
    assert scores["count_exact"].tolist() == [1.0, 0.0, 0.0]


def test_records_average_per_prompt_and_pair_by_prompt() -> None:
    index = np.array([0, 0, 1, 1, 2, 2])
    a = ConsistencyRecords(index, {"m": np.array([1.0, 0.0, 1.0, 1.0, 0.0, np.nan])})
    assert a.per_prompt("m").tolist() == [0.5, 1.0, 0.0]  # the NaN sample is left out, not counted as 0
    assert a.summary("m")["mean"] == pytest.approx(0.5) and a.summary("m")["prompts"] == 3
    b = ConsistencyRecords(index, {"m": np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])})
    assert paired_difference(a, b, "m")["difference"] == pytest.approx(0.5)
    round_trip = ConsistencyRecords.from_dict(a.to_dict())
    assert np.array_equal(round_trip.values["m"], a.values["m"], equal_nan=True)
    with pytest.raises(ValueError, match="same prompts"):
        paired_difference(a, ConsistencyRecords(index[::-1].copy(), b.values), "m")


def test_palette_floor_is_what_the_map_foreground_reads_as_floor() -> None:
    floor = np.broadcast_to(SEGMENTATION_PALETTE[0][None, :, None, None] / 255.0, (1, 3, 4, 4))
    assert not map_foreground(floor).any()


class _Box:
    def __init__(self, colour: str, shape: str, x: float, y: float) -> None:
        self.colour, self.shape, self.score, self.mask = colour, shape, 0.9, None
        self.box = (x - 2, y - 2, x + 2, y + 2)


def test_relation_scores_follow_visor_and_the_depth_order() -> None:
    from spatialgen.eval.runs.ildm_consistency import relation_scores

    prompts = [
        "a red cube to the left of a blue sphere",
        "a red cube to the left of a blue sphere",
        "a red cube in front of a blue sphere",
        "a red cube and a blue sphere on the grass",  # no relation: no verdict
    ]
    left, right = _Box("red", "cube", 10, 30), _Box("blue", "sphere", 50, 30)
    detections = [[left, right], [_Box("red", "cube", 50, 30), _Box("blue", "sphere", 10, 30)], [left, right], []]
    depth = np.zeros((4, 1, 64, 64))
    depth[2, 0, :, :32] = 0.9  # the cube's half of the image is near (disparity: near = 1)
    depth[2, 0, :, 32:] = 0.2
    scores = relation_scores(prompts, detections, depth)
    assert scores["visor_uncond"][:2].tolist() == [1.0, 0.0] and np.isnan(scores["visor_uncond"][2:]).all()
    assert scores["rel3d_uncond"][2] == 1.0 and np.isnan(scores["rel3d_uncond"][[0, 1, 3]]).all()
    depth[2, 0] = depth[2, 0, :, ::-1]  # now the sphere is nearer: the cube is behind it
    assert relation_scores(prompts, detections, depth)["rel3d_uncond"][2] == 0.0


def test_eval_intrinsics_scores_a_segmentation_against_the_recogniser(tmp_path) -> None:
    """A render's exact segmentation agrees with what the recogniser sees in it; another render's does not."""
    from PIL import Image

    from spatialgen.eval.runs.runners import evaluate_intrinsics_folder
    from spatialgen.intrinsic_files import save_maps

    samples = [make_sample(scene_seed(11, i), 64) for i in range(3)]
    for name, order in (("own", [0, 1, 2]), ("swapped", [1, 2, 0])):
        folder = tmp_path / name
        folder.mkdir()
        for k, j in enumerate(order):
            Image.fromarray(samples[k].rgb).save(folder / f"{k}.png")
            save_maps(folder / f"{k}.png", {"segmentation": samples[j].intrinsics().segmentation})
        evaluate_intrinsics_folder(folder, tmp_path / f"eval-{name}", progress=False)
    import json

    def table(name: str) -> dict:
        results = json.loads((tmp_path / f"eval-{name}" / "results.json").read_text())
        return results["tables"]["Intrinsic accuracy (mean over images)"]

    own, swapped = table("own"), table("swapped")
    assert own["segmentation_foreground_iou"] > 0.8 and own["segmentation_count_agrees"] >= 2 / 3
    assert swapped["segmentation_foreground_iou"] < own["segmentation_foreground_iou"] - 0.3
