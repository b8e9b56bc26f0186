"""Our 3D rule: median nearness over masks (else boxes) with a relative margin; checked on scene-world truth."""

from __future__ import annotations

import numpy as np
import pytest

from spatialgen.eval.detection.detections import ObjectDetection
from spatialgen.eval.scorers.relations3d import (
    Relation3DVerdict,
    depth_order,
    detection_depth_order,
    judge_3d,
    object_region,
    relations3d_scores,
)
from spatialgen.intrinsics import disparity_from_depth
from spatialgen.scenes import make_sample, scene_seed


def two_regions(size: int = 10) -> tuple[np.ndarray, np.ndarray]:
    a = np.zeros((size, size), bool)
    b = np.zeros((size, size), bool)
    a[:, : size // 2] = True
    b[:, size // 2 :] = True
    return a, b


def test_nearer_median_is_in_front() -> None:
    a, b = two_regions()
    disparity = np.where(a, 0.8, 0.2)
    order = depth_order(a, b, disparity)
    assert order.relation == "in front of" and order.confidence == pytest.approx(1.0)
    assert order.difference == pytest.approx(0.6)
    assert depth_order(b, a, disparity).relation == "behind"


def test_median_ignores_stray_pixels() -> None:
    a, b = two_regions()
    disparity = np.where(a, 0.8, 0.3)
    disparity[:4, 0] = 0.0  # 4 of A's 50 pixels are floor far behind: the mean would drop, the median does not
    assert depth_order(a, b, disparity).difference == pytest.approx(0.5)


def test_margin_leaves_close_medians_undecided() -> None:
    a, b = two_regions(20)
    values = np.linspace(0.0, 1.0, 200)  # both objects span the same depths, B's shifted 0.02 farther
    disparity = np.zeros((20, 20))
    disparity[a], disparity[b] = values, values - 0.02
    order = depth_order(a, b, disparity)
    assert order.difference == pytest.approx(0.02)
    assert order.relation is None and 0 < order.confidence < 0.05  # 0.02 of a ~0.9 spread
    assert depth_order(a, b, disparity, margin=0.0).relation == "in front of"
    disparity[b] = values - 0.2
    assert depth_order(a, b, disparity).relation == "in front of"


def test_metric_depth_flag_reverses_the_sense_and_skips_empty_pixels() -> None:
    a, b = two_regions()
    depth = np.where(a, 2.0, 5.0)
    assert depth_order(a, b, depth, metric=True).relation == "in front of"
    assert depth_order(a, b, depth, metric=False).relation == "behind"  # read as disparity it means the opposite
    depth[:, :3] = np.inf  # most of A hits nothing: left out, the rest still decides
    assert depth_order(a, b, depth, metric=True).relation == "in front of"
    depth[a] = np.inf
    empty = depth_order(a, b, depth, metric=True)
    assert empty.relation is None and empty.confidence == 0.0


def test_box_region_takes_pixels_whose_centre_is_inside() -> None:
    region = object_region(ObjectDetection("cat", (1.5, 0.0, 3.0, 2.0), 1.0), (4, 4))
    expected = np.zeros((4, 4), bool)
    expected[0:2, 1:3] = True  # column centres 1.5 and 2.5, row centres 0.5 and 1.5
    assert np.array_equal(region, expected)


def test_mask_is_preferred_over_the_box() -> None:
    # B's box also covers the near occluder A, which fills most of it: the box median reads A's
    # depth and decides nothing; B's mask (the ring around A) puts B behind A.
    disparity = np.full((10, 10), 0.2)
    disparity[1:9, 1:9] = 0.9  # the near object A, 64 of B's box's 100 pixels
    mask_a = disparity > 0.5
    a = ObjectDetection("a", (1.0, 1.0, 9.0, 9.0), 1.0, mask=mask_a)
    b_box = ObjectDetection("b", (0.0, 0.0, 10.0, 10.0), 1.0)
    b_mask = ObjectDetection("b", (0.0, 0.0, 10.0, 10.0), 1.0, mask=~mask_a)
    assert detection_depth_order(b_box, a, disparity).relation is None
    assert detection_depth_order(b_mask, a, disparity).relation == "behind"
    assert detection_depth_order(a, b_mask, disparity).relation == "in front of"
    with pytest.raises(ValueError, match="mask of 'a'"):
        detection_depth_order(a, b_mask, np.zeros((5, 5)))


def test_judge_and_scores_by_hand() -> None:
    a_mask, b_mask = two_regions()
    disparity = np.where(a_mask, 0.9, 0.1)
    cat = ObjectDetection("cat", (0.0, 0.0, 5.0, 10.0), 0.8)
    dog = ObjectDetection("dog", (5.0, 0.0, 10.0, 10.0), 0.7)
    weak_dog = ObjectDetection("dog", (5.0, 0.0, 10.0, 10.0), 0.1)  # threshold is strict
    v1 = judge_3d([cat, dog], "cat", "dog", "in front of", disparity, prompt_id=0)
    v2 = judge_3d([cat, dog], "cat", "dog", "behind", disparity, prompt_id=0)
    v3 = judge_3d([cat, weak_dog], "cat", "dog", "behind", disparity, prompt_id=1)
    assert v1.passed and v1.found == "in front of"
    assert not v2.passed and v2.found == "in front of"
    assert (v3.a_present, v3.b_present, v3.passed) == (True, False, False)
    undecided = Relation3DVerdict(2, "behind", True, True, None, 0.01)
    s = relations3d_scores([v1, v2, v3, undecided])
    assert s["OA"] == pytest.approx(75.0)
    assert s["accuracy_cond"] == pytest.approx(100 / 3)
    assert s["accuracy_uncond"] == pytest.approx(25.0)
    assert s["undecided"] == pytest.approx(100 / 3)
    with pytest.raises(ValueError, match="unknown 3D relation"):
        judge_3d([cat, dog], "cat", "dog", "left of", disparity)
    with pytest.raises(ValueError, match="at least one"):
        relations3d_scores([])


def _scene_agreement(use_masks: bool, metric: bool) -> tuple[int, int, int]:
    """(pairs, decided, decided pairs agreeing with the stored label) over 50 scene-world renders."""
    pairs = decided = agree = 0
    for i in range(50):
        s = make_sample(scene_seed(8, i), 64)
        depth = s.depth if metric else disparity_from_depth(s.depth)
        stored = {(r.subject, r.object): r.relation for r in s.relations if r.kind == "3d"}
        visible = [o for o in s.objects if o.visible]
        dets = {
            o.index: ObjectDetection(
                f"{o.colour} {o.shape}", o.visible_box, 1.0, mask=(s.instance == o.instance_id) if use_masks else None
            )
            for o in visible
        }
        for a in visible:
            for b in visible:
                if a.index == b.index or (a.index, b.index) not in stored:
                    continue
                pairs += 1
                found = detection_depth_order(dets[a.index], dets[b.index], depth, metric=metric).relation
                decided += found is not None
                agree += found == stored[(a.index, b.index)]
    return pairs, decided, agree


@pytest.mark.parametrize("metric", [False, True])
def test_agrees_with_the_scene_world_truth_on_masks(metric: bool) -> None:
    pairs, decided, agree = _scene_agreement(use_masks=True, metric=metric)
    assert pairs > 300
    assert agree == decided  # measured: every decided pair agrees
    assert agree / pairs >= 0.96  # measured 0.990 (disparity and metric); the rest is undecided


def test_boxes_alone_still_mostly_agree() -> None:
    pairs, decided, agree = _scene_agreement(use_masks=False, metric=False)
    assert agree / decided >= 0.98  # measured 0.995
    assert agree / pairs >= 0.93  # measured 0.955: floor pixels in the boxes blur close pairs
