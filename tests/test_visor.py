"""VISOR's rule on hand-made boxes: strict 0.1 threshold, box centres, ANY pair, no margin; its aggregates."""

from __future__ import annotations

import numpy as np
import pytest

from spatialgen.eval.detection.detections import ObjectDetection
from spatialgen.eval.scorers.visor import ImageVerdict, judge_image, relation_holds, visor_scores, visor_verdict


def det(label: str, cx: float, cy: float, score: float = 0.9, half: float = 5.0) -> ObjectDetection:
    return ObjectDetection(label, (cx - half, cy - half, cx + half, cy + half), score)


@pytest.mark.parametrize(
    ("relation", "a", "b", "expected"),
    [
        ("left of", (10, 50), (20, 50), True),
        ("left of", (20, 50), (10, 50), False),
        ("right of", (20, 50), (10, 50), True),
        ("above", (50, 10), (50, 20), True),  # y grows downwards
        ("above", (50, 20), (50, 10), False),
        ("below", (50, 20), (50, 10), True),
        ("to the left of", (10, 50), (20, 50), True),  # SR2D's spelling
        ("to the right of", (10, 50), (20, 50), False),
    ],
)
def test_centre_comparison(relation: str, a: tuple[float, float], b: tuple[float, float], expected: bool) -> None:
    assert relation_holds(a, b, relation) is expected


@pytest.mark.parametrize("relation", ["left of", "right of", "above", "below"])
def test_equal_centres_satisfy_no_relation(relation: str) -> None:
    # No margin, strict inequalities: a zero offset is neither left nor right, neither above nor below.
    assert not relation_holds((30.0, 30.0), (30.0, 30.0), relation)


def test_a_small_offset_is_enough() -> None:
    assert relation_holds((29.999, 80.0), (30.0, 10.0), "left of")  # even far off the horizontal


def test_unknown_relation_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="left of"):
        relation_holds((0, 0), (1, 1), "in front of")


def test_threshold_is_strict() -> None:
    b = det("dog", 80, 50)
    at = visor_verdict([det("cat", 20, 50, score=0.1), b], "cat", "dog", "left of")
    assert (at.a_present, at.both_present, at.passed) == (False, False, False)
    above = visor_verdict([det("cat", 20, 50, score=0.1001), b], "cat", "dog", "left of")
    assert (above.a_present, above.both_present, above.passed) == (True, True, True)


def test_scores_compare_in_float32_as_the_official_torch_code_does() -> None:
    # OWL-ViT's scores are float32: float32(0.1) = 0.10000000149 exceeds the float 0.1 but not float32(0.1)
    at_float32 = float(np.float32(0.1))
    assert at_float32 > 0.1
    verdict = visor_verdict([det("cat", 20, 50, score=at_float32), det("dog", 80, 50)], "cat", "dog", "left of")
    assert not verdict.a_present
    next_up = float(np.nextafter(np.float32(0.1), np.float32(1)))
    assert visor_verdict([det("cat", 20, 50, score=next_up), det("dog", 80, 50)], "cat", "dog", "left of").passed


def test_any_pair_may_pass() -> None:
    # One cat left of the dog, one right of it: both "left of" and "right of" pass.
    dets = [det("cat", 10, 50, score=0.2), det("cat", 90, 50, score=0.95), det("dog", 50, 50)]
    assert visor_verdict(dets, "cat", "dog", "left of").passed
    assert visor_verdict(dets, "cat", "dog", "right of").passed
    assert not visor_verdict(dets, "cat", "dog", "above").passed  # all at the same height


def test_any_pair_over_several_b_boxes() -> None:
    dets = [det("cat", 50, 50), det("dog", 40, 50), det("dog", 60, 50)]
    assert visor_verdict(dets, "cat", "dog", "left of").passed  # left of the second dog only


def test_missing_object_fails_and_other_labels_are_ignored() -> None:
    dets = [det("cat", 10, 50), det("horse", 90, 50)]
    v = visor_verdict(dets, "cat", "dog", "left of")
    assert (v.a_present, v.b_present, v.passed) == (True, False, False)


def test_judge_image_from_centres() -> None:
    assert judge_image(3, [(1.0, 1.0)], [(2.0, 1.0)], "left of") == ImageVerdict(3, True, True, True)
    assert judge_image(3, [], [(2.0, 1.0)], "left of") == ImageVerdict(3, False, True, False)


def _v(prompt: int, a: bool, b: bool, passed: bool) -> ImageVerdict:
    return ImageVerdict(prompt, a, b, passed)


def test_scores_by_hand() -> None:
    verdicts = [
        # prompt 0: 3 images with both objects, 2 pass; one with A only
        _v(0, True, True, True),
        _v(0, True, True, True),
        _v(0, True, True, False),
        _v(0, True, False, False),
        # prompt 1: one image with both, passing
        _v(1, False, False, False),
        _v(1, False, True, False),
        _v(1, True, True, True),
        _v(1, False, False, False),
        # prompt 2: never both objects; still counts in VISOR_n's denominator (visor.py)
        _v(2, True, False, False),
        _v(2, False, True, False),
        _v(2, False, False, False),
        _v(2, False, False, False),
    ]
    s = visor_scores(verdicts)
    assert s["OA"] == pytest.approx(100 * 4 / 12)
    assert s["OA_A"] == pytest.approx(100 * 6 / 12)
    assert s["OA_B"] == pytest.approx(100 * 6 / 12)
    assert s["VISOR_cond"] == pytest.approx(75.0)
    assert s["VISOR_uncond"] == pytest.approx(75.0 * (100 * 4 / 12) / 100)
    assert s["VISOR_1"] == pytest.approx(100 * 2 / 3)
    assert s["VISOR_2"] == pytest.approx(100 * 1 / 3)
    assert s["VISOR_3"] == 0.0
    assert s["VISOR_4"] == 0.0


def test_uncond_equals_passing_share_of_all_images() -> None:
    verdicts = [_v(0, True, True, True), _v(0, True, True, False), _v(1, False, True, False), _v(1, True, True, True)]
    s = visor_scores(verdicts, max_n=2)
    assert s["VISOR_uncond"] == pytest.approx(100 * 2 / 4)
    assert "VISOR_3" not in s
    assert s["VISOR_2"] == 0.0 and s["VISOR_1"] == 100.0


def test_no_image_with_both_objects_scores_zero_and_empty_input_is_refused() -> None:
    s = visor_scores([_v(0, True, False, False)])
    assert s["OA"] == 0.0 and s["VISOR_cond"] == 0.0 and s["VISOR_1"] == 0.0
    with pytest.raises(ValueError, match="no images"):
        visor_scores([])
