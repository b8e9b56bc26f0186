"""GenEval's position rule on hand-made boxes: size revision, 1e-3 ambiguity, 0.5 cut, diagonals, top-count pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spatialgen.eval.detection.detections import ObjectDetection
from spatialgen.eval.scorers.geneval import (
    GenEvalResult,
    evaluate_metadata,
    filter_detections,
    geneval_scores,
    geneval_verdict,
    position_metadata,
    read_metadata,
    relative_position,
    write_metadata,
)


def point(x: float, y: float) -> tuple[float, float, float, float]:
    """A zero-size box: no size revision, so the direction is the plain normalised offset."""
    return (x, y, x, y)


def det(label: str, box: tuple[float, float, float, float], score: float = 0.9) -> ObjectDetection:
    return ObjectDetection(label, box, score)


def test_clear_relations() -> None:
    a, b = (0.0, 0.0, 10.0, 10.0), (100.0, 0.0, 110.0, 10.0)
    assert relative_position(a, b) == {"left of"}  # offset (-100, 0) revised by 0.1 * 20 -> dx = -0.98
    assert relative_position(b, a) == {"right of"}
    assert relative_position((0.0, 0.0, 10.0, 10.0), (0.0, 100.0, 10.0, 110.0)) == {"above"}  # y down
    assert relative_position((0.0, 100.0, 10.0, 110.0), (0.0, 0.0, 10.0, 10.0)) == {"below"}


def test_diagonal_gives_two_relations() -> None:
    assert relative_position(point(10, 10), point(0, 0)) == {"right of", "below"}  # 0.707 each
    assert relative_position(point(-10, -10), point(0, 0)) == {"left of", "above"}


def test_zero_offset_and_offsets_inside_the_size_band_give_none() -> None:
    assert relative_position((0.0, 0.0, 10.0, 10.0), (0.0, 0.0, 10.0, 10.0)) == set()
    # Offset (-10, 0) with widths 100 + 100: revised max(10 - 20, 0) = 0 on both axes.
    assert relative_position((0.0, 0.0, 100.0, 100.0), (10.0, 0.0, 110.0, 100.0)) == set()


def test_ambiguity_threshold_is_absolute() -> None:
    assert relative_position(point(0, 0), point(0.0005, 0)) == set()  # |revised| < 1e-3
    assert relative_position(point(0, 0), point(0.002, 0)) == {"left of"}  # tiny but above 1e-3


def test_half_cut_is_strict() -> None:
    # A centred at (3, 4), 5 wide and flat; B a point at the origin. offset (3, 4), ||offset|| = 5;
    # revised x = 3 - 0.1 * 5 = 2.5 -> dx = 0.5 exactly, not > 0.5; dy = 4 / 5 = 0.8.
    a = (0.5, 4.0, 5.5, 4.0)
    assert relative_position(a, point(0, 0)) == {"below"}
    # 4 wide: revised x = 3 - 0.4 = 2.6 -> dx = 0.52 > 0.5: the diagonal gives both.
    assert relative_position((1.0, 4.0, 5.0, 4.0), point(0, 0)) == {"right of", "below"}


def test_size_revision_can_turn_a_diagonal_into_one_relation() -> None:
    # offset (30, 40); heights 200 + 0 shrink the vertical part by 20: dy = 20 / 50 = 0.4; dx = 30 / 50 = 0.6.
    assert relative_position((30.0, -60.0, 30.0, 140.0), point(0, 0)) == {"right of"}


def position_record(a: str = "dog", relation: str = "right of", b: str = "cat", count_a: int = 1) -> dict:
    record = position_metadata(a, relation, b)
    record["include"][1]["count"] = count_a
    return record


def test_metadata_matches_the_official_format() -> None:
    record = position_metadata("dog", "right of", "cat")
    assert json.dumps(record) == (
        '{"tag": "position", "include": [{"class": "cat", "count": 1}, '
        '{"class": "dog", "count": 1, "position": ["right of", 0]}], "prompt": "a photo of a dog right of a cat"}'
    )
    assert position_metadata("apple", "above", "umbrella")["prompt"] == "a photo of an apple above an umbrella"


def test_position_prompt_correct_and_missing_objects() -> None:
    cat, dog = det("cat", (0.0, 0.0, 10.0, 10.0)), det("dog", (100.0, 0.0, 110.0, 10.0))
    record = position_record()
    assert geneval_verdict([cat, dog], record).correct
    missing_dog = geneval_verdict([cat], record)
    assert not missing_dog.correct and "expected dog>=1, found 0" in missing_dog.reason
    missing_cat = geneval_verdict([dog], record)
    assert not missing_cat.correct and "no target for dog to be right of" in missing_cat.reason
    wrong = geneval_verdict([cat, dog], position_record(relation="left of"))
    assert not wrong.correct and "expected dog left of target, found right of target" in wrong.reason


def test_detection_threshold_is_strict() -> None:
    cat, dog = det("cat", (0.0, 0.0, 10.0, 10.0)), det("dog", (100.0, 0.0, 110.0, 10.0), score=0.3)
    assert not geneval_verdict([cat, dog], position_record()).correct
    dog_above = det("dog", (100.0, 0.0, 110.0, 10.0), score=0.3001)
    assert geneval_verdict([cat, dog_above], position_record()).correct
    # numpy float32 as in the official script: float32(0.3) is above the float 0.3 but not above float32(0.3)
    dog_at_float32 = det("dog", (100.0, 0.0, 110.0, 10.0), score=float(np.float32(0.3)))
    assert dog_at_float32.score > 0.3 and not geneval_verdict([cat, dog_at_float32], position_record()).correct


def test_only_the_top_count_objects_are_checked() -> None:
    cat = det("cat", (0.0, 0.0, 10.0, 10.0))
    right, left = (100.0, 0.0, 110.0, 10.0), (-100.0, 0.0, -90.0, 10.0)
    # count 1: the best dog decides, a weaker dog elsewhere does not matter (no ANY pair as in VISOR).
    assert geneval_verdict([cat, det("dog", right, 0.9), det("dog", left, 0.5)], position_record()).correct
    assert not geneval_verdict([cat, det("dog", left, 0.9), det("dog", right, 0.5)], position_record()).correct
    # Only the best cat is the target.
    far_cat = det("cat", (300.0, 0.0, 310.0, 10.0), 0.4)
    assert geneval_verdict([cat, far_cat, det("dog", right)], position_record()).correct


def test_every_pair_among_the_top_count_must_hold() -> None:
    cat = det("cat", (0.0, 0.0, 10.0, 10.0))
    dogs_right = [det("dog", (100.0, 0.0, 110.0, 10.0), 0.9), det("dog", (200.0, 0.0, 210.0, 10.0), 0.8)]
    assert geneval_verdict([cat, *dogs_right], position_record(count_a=2)).correct
    one_left = [dogs_right[0], det("dog", (-100.0, 0.0, -90.0, 10.0), 0.8)]
    assert not geneval_verdict([cat, *one_left], position_record(count_a=2)).correct
    assert not geneval_verdict([cat, dogs_right[0]], position_record(count_a=2)).correct  # too few dogs


def test_diagonal_satisfies_either_expected_relation() -> None:
    cat, dog = det("cat", point(0, 0)), det("dog", point(10, 10))
    assert geneval_verdict([cat, dog], position_record(relation="right of")).correct
    assert geneval_verdict([cat, dog], position_record(relation="below")).correct
    assert not geneval_verdict([cat, dog], position_record(relation="above")).correct


def test_counting_uses_its_own_threshold_and_exclude() -> None:
    record = {
        "tag": "counting",
        "include": [{"class": "cat", "count": 2}],
        "exclude": [{"class": "cat", "count": 3}],
        "prompt": "a photo of two cats",
    }
    boxes = [(0.0, 0.0, 1.0, 1.0), (5.0, 0.0, 6.0, 1.0), (9.0, 0.0, 10.0, 1.0)]
    three = [det("cat", b, 0.95) for b in boxes]
    assert not geneval_verdict(three, record).correct
    two_and_weak = [det("cat", boxes[0], 0.95), det("cat", boxes[1], 0.95), det("cat", boxes[2], 0.85)]
    assert geneval_verdict(two_and_weak, record).correct  # 0.85 is below the counting threshold 0.9


def test_filter_caps_and_optional_overlap_suppression() -> None:
    dets = [det("cat", (float(i), 0.0, i + 1.0, 1.0), 0.5 + i / 100) for i in range(20)]
    kept = filter_detections(dets, "position")
    assert len(kept["cat"]) == 16 and kept["cat"][0].score == pytest.approx(0.69)
    twins = [det("cat", (0.0, 0.0, 10.0, 10.0), 0.9), det("cat", (0.0, 0.0, 10.0, 10.0), 0.8)]
    assert len(filter_detections(twins, "position")["cat"]) == 2  # default: no NMS
    assert len(filter_detections(twins, "position", max_overlap=0.5)["cat"]) == 1


def test_colour_clauses_need_a_classifier() -> None:
    record = {
        "tag": "colors",
        "include": [{"class": "cat", "count": 1, "color": "red"}],
        "prompt": "a photo of a red cat",
    }
    cat = det("cat", (0.0, 0.0, 10.0, 10.0))
    with pytest.raises(ValueError, match="classify_colour"):
        geneval_verdict([cat], record)
    assert geneval_verdict([cat], record, classify_colour=lambda d: "red").correct
    assert not geneval_verdict([cat], record, classify_colour=lambda d: "blue").correct


def test_bad_metadata_is_refused() -> None:
    forward = {
        "tag": "position",
        "include": [{"class": "dog", "count": 1, "position": ["right of", 1]}, {"class": "cat", "count": 1}],
        "prompt": "x",
    }
    with pytest.raises(ValueError, match="earlier clause"):
        evaluate_metadata({}, forward)
    with pytest.raises(ValueError, match="unknown GenEval position"):
        position_metadata("dog", "behind", "cat")


def test_metadata_file_round_trip(tmp_path) -> None:
    records = [position_metadata("dog", "right of", "cat"), position_metadata("cup", "below", "bird")]
    path = tmp_path / "evaluation_metadata.jsonl"
    write_metadata(path, records)
    assert path.read_text(encoding="utf-8").splitlines()[0] == json.dumps(records[0])
    assert read_metadata(path) == records
    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=":1 is not JSON"):
        read_metadata(path)


def test_scores_by_hand() -> None:
    def result(tag: str, key: str, correct: bool) -> GenEvalResult:
        return GenEvalResult(tag, key, correct, "", key)

    results = [
        result("position", "p1", True),
        result("position", "p1", False),
        result("position", "p2", False),
        result("position", "p2", False),
        result("counting", "c1", True),
        result("counting", "c1", True),
    ]
    s = geneval_scores(results)
    assert s["tag/position"] == pytest.approx(0.25)
    assert s["tag/counting"] == pytest.approx(1.0)
    assert s["overall"] == pytest.approx(0.625)  # mean over tags, not over images
    assert s["correct_images"] == pytest.approx(3 / 6)
    assert s["correct_prompts"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="at least one"):
        geneval_scores([])
