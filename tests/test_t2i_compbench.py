"""T2I-CompBench's spatial rules on hand-made boxes: vocabulary order, 150 px rule, IoU penalty, 0.5 cut, 3D."""

from __future__ import annotations

import numpy as np
import pytest

from spatialgen.eval.detection.detections import ObjectDetection
from spatialgen.eval.scorers.t2i_compbench import (
    depth_position_score,
    find_relation,
    mean_score,
    official_frame_size,
    official_object_name,
    parse_spatial_prompt,
    position_score,
    read_prompts,
    spatial_3d_score,
    spatial_score,
    to_official_frame,
)

FRAME = (479, 479)  # a square image already in the official frame: boxes are not rescaled


def box_at(cx: float, cy: float, half: float = 5.0) -> tuple[float, float, float, float]:
    return (cx - half, cy - half, cx + half, cy + half)


def test_relation_is_the_first_match_in_the_official_order() -> None:
    assert find_relation("a giraffe on the left of a nearby lamp") == "near"  # "near" comes first, as a substring
    assert find_relation("a bear next to a nearby tree") == "next to"
    assert find_relation("a cat on the top of a sofa") == "on the top of"
    assert find_relation("a cat on top of a sofa") == "on top of"
    assert find_relation("a bird on side of a airplane") == "on side of"
    assert find_relation("a cat and a dog") is None


def test_prompt_parsing() -> None:
    p = parse_spatial_prompt("a giraffe next to a lamp")
    assert (p.a, p.relation, p.b) == ("giraffe", "next to", "lamp")
    p = parse_spatial_prompt("an airplane on the bottom of a girl")
    assert (p.a, p.relation, p.b) == ("airplane", "on the bottom of", "girl")
    p = parse_spatial_prompt("a chair hidden by a mouse", three_d=True)
    assert (p.a, p.relation, p.b) == ("chair", "hidden", "mouse")
    with pytest.raises(ValueError, match="must contain one of"):
        parse_spatial_prompt("a cat and a dog")
    assert official_object_name("woman") == "person" and official_object_name("cat") == "cat"


def test_read_prompts(tmp_path) -> None:
    path = tmp_path / "spatial_val.txt"
    path.write_text("a giraffe next to a lamp\n\n a mouse near a bowl \n", encoding="utf-8")
    assert read_prompts(path) == ["a giraffe next to a lamp", "a mouse near a bowl"]
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="one prompt per line"):
        read_prompts(tmp_path / "empty.txt")


@pytest.mark.parametrize(
    ("size", "frame"),
    [((512, 512), (479, 479)), ((640, 480), (480, 360)), ((480, 640), (360, 480)), ((1024, 512), (480, 240))],
)
def test_official_frame_follows_torchvision_resize_479_max_480(size, frame) -> None:
    # 640 x 480: short side 479 -> long int(479 * 640 / 480) = 638 > 480 -> short int(480 * 479 / 638) = 360.
    assert official_frame_size(*size) == frame


@pytest.mark.parametrize(
    ("dx", "dy", "expected"),
    [
        (200.0, 100.0, 1.0),  # |dy| < 150 is enough (or, not and)
        (149.0, 400.0, 1.0),
        (300.0, 200.0, 0.5),  # 150 / max
        (150.0, 200.0, 0.75),  # |dx| = 150 is not < 150
        (-600.0, 600.0, 0.25),
    ],
)
def test_near_types(dx: float, dy: float, expected: float) -> None:
    for relation in ("near", "next to", "on side of"):
        assert position_score(relation, box_at(0, 0), box_at(dx, dy)) == pytest.approx(expected)


def test_directional_rules_without_overlap() -> None:
    a, b_right, b_below = box_at(0, 0), box_at(100, 20), box_at(20, 100)
    assert position_score("on the left of", a, b_right) == 1.0  # B is to the right of A
    assert position_score("on the right of", a, b_right) == 0.0
    assert position_score("on the left of", a, b_below) == 0.0  # |dx| must exceed |dy|
    assert position_score("on the top of", a, b_below) == 1.0  # B below A: A on the top of B
    assert position_score("on the bottom of", a, b_below) == 0.0
    assert position_score("on the bottom of", b_below, a) == 1.0
    assert position_score("on the right of", b_right, a) == 1.0


def test_diagonal_tie_and_zero_offset_score_nothing() -> None:
    a = box_at(0, 0)
    for relation in ("on the left of", "on the right of", "on the top of", "on the bottom of"):
        assert position_score(relation, a, box_at(100, 100)) == 0.0
        assert position_score(relation, a, box_at(-100, -100)) == 0.0
        assert position_score(relation, a, a) == 0.0


def test_overlap_penalty() -> None:
    a, b = (0.0, 0.0, 100.0, 100.0), (50.0, 0.0, 150.0, 100.0)  # IoU = 5000 / 15000 = 1/3
    assert position_score("on the left of", a, b) == pytest.approx(0.1 / (1 / 3))
    # IoU just below 0.1 is not penalised; at or above it the score is 0.1 / IoU.
    b_small = (90.0, 0.0, 190.0, 100.0)  # IoU = 1000 / 19000 < 0.1
    assert position_score("on the left of", a, b_small) == 1.0
    b_quarter = (60.0, 0.0, 160.0, 100.0)  # IoU = 4000 / 16000 = 0.25
    assert position_score("on the left of", a, b_quarter) == pytest.approx(0.4)


def test_on_top_of_is_in_the_vocabulary_but_always_scores_zero() -> None:
    assert position_score("on top of", box_at(0, 0), box_at(0, 300)) == 0.0
    with pytest.raises(ValueError, match="unknown T2I-CompBench 2D relation"):
        position_score("left of", box_at(0, 0), box_at(300, 0))


def test_image_score_combination_and_cut() -> None:
    a, b = ObjectDetection("cat", box_at(0, 0), 0.9), ObjectDetection("dog", box_at(100, 0), 0.8)
    assert spatial_score([a, b], "cat", "dog", "on the left of", FRAME) == pytest.approx(0.225 + 0.2 + 0.5)
    # Both found but the relation fails: 0.425 < 0.5 becomes 0.
    assert spatial_score([a, b], "cat", "dog", "on the right of", FRAME) == 0.0
    # One object alone can never pass the cut.
    assert spatial_score([a], "cat", "dog", "on the left of", FRAME) == 0.0


def test_cut_keeps_exactly_one_half() -> None:
    # 0.25 * 0.75 + 0.25 * 0.75 + 0.5 * (150 / 600) = 0.5 exactly, which survives the "< 0.5" cut.
    a, b = ObjectDetection("cat", box_at(0, 0), 0.75), ObjectDetection("dog", box_at(600, 600), 0.75)
    assert spatial_score([a, b], "cat", "dog", "near", FRAME) == 0.5
    b_far = ObjectDetection("dog", box_at(601, 601), 0.75)
    assert spatial_score([a, b_far], "cat", "dog", "near", FRAME) == 0.0


def test_detector_threshold_is_strict_and_only_the_best_instance_counts() -> None:
    b = ObjectDetection("dog", box_at(100, 0), 0.8)
    at_threshold = ObjectDetection("cat", box_at(0, 0), 0.5)
    assert spatial_score([at_threshold, b], "cat", "dog", "on the left of", FRAME) == 0.0
    # The best cat is right of the dog, a weaker one left of it: only the best counts (unlike VISOR).
    best, weaker = ObjectDetection("cat", box_at(200, 0), 0.9), ObjectDetection("cat", box_at(0, 0), 0.6)
    assert spatial_score([weaker, best, b], "cat", "dog", "on the left of", FRAME) == 0.0
    assert spatial_score([weaker, best, b], "cat", "dog", "on the right of", FRAME) == pytest.approx(0.925)


def test_distances_are_measured_in_the_official_frame() -> None:
    a, b = ObjectDetection("cat", box_at(0, 0), 1.0), ObjectDetection("dog", box_at(250, 250), 1.0)
    # In a 479 px image the offset is 250 px: 150 / 250 = 0.6 -> 0.5 + 0.3.
    assert spatial_score([a, b], "cat", "dog", "near", (479, 479)) == pytest.approx(0.8)
    # The same boxes in a 958 px image are 125 px apart in the official frame: near.
    assert spatial_score([a, b], "cat", "dog", "near", (958, 958)) == pytest.approx(1.0)
    assert to_official_frame((0.0, 0.0, 958.0, 958.0), (958, 958)) == pytest.approx((0.0, 0.0, 479.0, 479.0))


def test_mean_over_images() -> None:
    assert mean_score([0.0, 0.925, 0.5, 0.0]) == pytest.approx(1.425 / 4)
    with pytest.raises(ValueError, match="at least one image"):
        mean_score([])


# 3D: a map whose disparity grows to the right, so the box and its transpose disagree.
RAMP = np.tile(np.arange(10, dtype=np.float64) / 10, (10, 1))  # RAMP[row, col] = col / 10


def test_3d_uses_the_transposed_official_slicing() -> None:
    a, b = (0.0, 1.0, 9.0, 10.0), (1.0, 0.0, 10.0, 9.0)  # IoU = 64 / 98 > 0.5
    # Proper boxes: A covers columns 0..8 (mean 0.4), B columns 1..9 (mean 0.5): A is behind.
    assert depth_position_score("in front of", a, b, RAMP, official_indexing=False) == 0.0
    assert depth_position_score("behind", a, b, RAMP, official_indexing=False) == 1.0
    # Official depth[x0:x1, y0:y1]: A reads columns 1..9, B columns 0..8: A is in front.
    assert depth_position_score("in front of", a, b, RAMP) == 1.0
    assert depth_position_score("behind", a, b, RAMP) == 0.0
    assert depth_position_score("hidden", a, b, RAMP) == 0.0


@pytest.mark.parametrize(("b_y1", "expected"), [(6.0, 1.0), (5.0, 0.0), (4.0, 0.8), (0.0, 0.0)])
def test_3d_iou_score(b_y1: float, expected: float) -> None:
    # A is the whole image; B its top rows, IoU = b_y1 / 10. Transposed, B reads columns 0..b_y1 (nearer
    # to 0) so A's mean 0.45 exceeds B's: "in front of" holds; the IoU then sets the score, and IoU = 0.5
    # exactly falls between the official branches (> 0.5, 0 < IoU < 0.5) and scores 0.
    a, b = (0.0, 0.0, 10.0, 10.0), (0.0, 0.0, 10.0, b_y1)
    assert depth_position_score("in front of", a, b, RAMP) == pytest.approx(expected)


def test_3d_image_score_has_no_cut_and_matches_by_substring() -> None:
    depth = np.zeros((20, 20))
    cat_best = ObjectDetection("cat", (0.0, 0.0, 2.0, 2.0), 0.9)
    cat_next = ObjectDetection("wildcat", (0.0, 0.0, 2.0, 2.0), 0.8)
    dog = ObjectDetection("dog", (10.0, 10.0, 12.0, 12.0), 0.7)
    # Disjoint boxes: position 0. The official loop keeps updating A's index until B is found, so
    # A is the *last* match before the dog (the "wildcat" at 0.8), not the best (0.9); no 0.5 cut.
    assert spatial_3d_score([cat_best, cat_next, dog], "cat", "dog", "in front of", depth) == pytest.approx(
        0.25 * 0.8 + 0.25 * 0.7
    )
    assert spatial_3d_score([cat_best], "cat", "dog", "behind", depth) == pytest.approx(0.25 * 0.9)
    assert spatial_3d_score([], "cat", "dog", "behind", depth) == 0.0
    with pytest.raises(ValueError, match="unknown T2I-CompBench 3D relation"):
        spatial_3d_score([], "cat", "dog", "on the left of", depth)


def test_3d_image_score_with_overlap() -> None:
    a = ObjectDetection("cat", (0.0, 0.0, 10.0, 10.0), 0.8)
    b = ObjectDetection("dog", (0.0, 0.0, 10.0, 4.0), 0.6)
    assert spatial_3d_score([a, b], "cat", "dog", "in front of", RAMP) == pytest.approx(0.2 + 0.15 + 0.4)


def test_two_zero_area_boxes_count_as_not_overlapping_where_the_official_code_divides_by_zero() -> None:
    point_a, point_b = (10.0, 10.0, 10.0, 10.0), (40.0, 10.0, 40.0, 10.0)  # A left of B, both of zero area
    assert position_score("on the left of", point_a, point_b) == 1.0  # IoU taken as 0, not nan
    assert position_score("on the right of", point_a, point_b) == 0.0


def test_detection_scores_compare_in_float32_as_detectron2_does() -> None:
    at = float(np.float32(0.5))  # exactly 0.5 in float32 too: never above the threshold
    next_up = float(np.nextafter(np.float32(0.5), np.float32(1)))
    a, b = box_at(100, 100), box_at(300, 100)
    missing = spatial_score([ObjectDetection("cat", a, at), ObjectDetection("dog", b, 0.9)], "cat", "dog",
                            "on the left of", FRAME)  # fmt: skip
    found = spatial_score([ObjectDetection("cat", a, next_up), ObjectDetection("dog", b, 0.9)], "cat", "dog",
                          "on the left of", FRAME)  # fmt: skip
    assert missing == 0.0 and found > 0.5
