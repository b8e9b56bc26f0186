from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spatialgen.eval.scene.recogniser import (
    CLASSES,
    Detection,
    RecogniserNet,
    SceneRecogniser,
    augment,
    class_index,
    connected_components,
    detections_from_probabilities,
    label_map,
)
from spatialgen.scenes import make_sample, scene_seed


def test_connected_components_separates_and_joins_correctly() -> None:
    mask = np.zeros((6, 8), dtype=bool)
    mask[0:2, 0:3] = True  # block A
    mask[4:6, 5:8] = True  # block B
    mask[2, 2] = mask[3, 2] = True  # a tail joined to A
    mask[5, 0] = True  # a lone pixel
    mask[1, 5] = mask[2, 6] = True  # diagonal pixels are not 4-connected
    labels, n = connected_components(mask)
    assert n == 5
    assert len(np.unique(labels[mask])) == 5 and (labels[~mask] == 0).all()
    assert labels[0, 0] == labels[3, 2] and labels[0, 0] != labels[4, 5]


def test_label_map_from_the_scene_ground_truth() -> None:
    sample = make_sample(scene_seed(0, 1), 32)
    labels = label_map(sample.instance, sample.objects)
    for obj in sample.objects:
        region = sample.instance == obj.instance_id
        assert (labels[region] == class_index(obj.colour, obj.shape)).all()
        assert CLASSES[class_index(obj.colour, obj.shape)] == f"{obj.colour} {obj.shape}"
    assert (labels[sample.instance == 0] == 0).all()


def test_detections_have_exact_boxes_centroids_and_vote_on_shape() -> None:
    h = w = 16
    probs = np.zeros((len(CLASSES), h, w), dtype=np.float32)
    probs[0] = 1.0
    red_cube, red_cone, blue_sphere = (
        class_index("red", "cube"),
        class_index("red", "cone"),
        class_index("blue", "sphere"),
    )
    probs[:, 2:6, 1:5] = 0
    probs[red_cube, 2:6, 1:5] = 0.7
    probs[red_cone, 2:6, 1:5] = 0.3
    probs[red_cone, 2:4, 1:5], probs[red_cube, 2:4, 1:5] = 0.6, 0.4  # top half leans cone, the region says cube
    probs[:, 10:12, 8:16] = 0
    probs[blue_sphere, 10:12, 8:16] = 1.0
    probs[:, 0, 15] = 0
    probs[blue_sphere, 0, 15] = 1.0  # below min_area
    found = detections_from_probabilities(probs, min_area=2)
    assert [d.label for d in found] == ["blue sphere", "red cube"]
    sphere, cube = found
    assert sphere.box == (8.0, 10.0, 16.0, 12.0) and sphere.area == 16
    assert sphere.centroid == pytest.approx((12 / 16, 11 / 16))
    assert cube.box == (1.0, 2.0, 5.0, 6.0) and cube.score == pytest.approx((0.4 * 8 + 0.7 * 8) / 16)


def test_augmentation_keeps_shape_and_range() -> None:
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    y = augment(x.clone(), torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1 and not torch.equal(x, y)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    recogniser = SceneRecogniser(RecogniserNet(8), resolution=32)
    recogniser.save(tmp_path)
    again = SceneRecogniser.load(tmp_path)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(recogniser.probabilities(x), again.probabilities(x))
    with pytest.raises(FileNotFoundError, match="no recogniser"):
        SceneRecogniser.load(tmp_path / "missing")


def test_the_embedded_recogniser_finds_objects_in_held_out_renders() -> None:
    recogniser = SceneRecogniser.load()
    samples = [make_sample(scene_seed(12345, i), recogniser.resolution) for i in range(12)]
    detections = recogniser.detect([s.rgb for s in samples])
    found = total = 0
    for sample, dets in zip(samples, detections, strict=True):
        for obj in sample.objects:
            if obj.area >= 40:
                total += 1
                found += any(d.colour == obj.colour and d.shape == obj.shape for d in dets)
    assert total > 10 and found / total > 0.6


def test_relation_verdicts_apply_visors_rule_to_each_images_boxes(monkeypatch) -> None:
    def box(colour: str, shape: str, x: float) -> Detection:
        return Detection(f"{colour} {shape}", colour, shape, 1.0, (x - 2, 10, x + 2, 14), (x / 64, 0.2), 16)

    images = [
        [box("red", "cube", 10), box("blue", "sphere", 40)],  # red left of blue: passes
        [box("red", "cube", 50), box("blue", "sphere", 40), box("red", "cube", 5)],  # any pair may pass
        [box("red", "cube", 50), box("blue", "sphere", 40)],  # wrong side
        [box("blue", "sphere", 40), box("red", "cone", 10)],  # A missing: a red cone is not a red cube
    ]
    recogniser = SceneRecogniser.load()
    monkeypatch.setattr(recogniser, "detect", lambda _: images)
    triplets = [(("red", "cube"), "left of", ("blue", "sphere"))] * 2
    verdicts = recogniser.relation_verdicts([None] * 4, triplets, 2)
    assert [v.passed for v in verdicts] == [True, True, False, False]
    assert [v.a_present for v in verdicts] == [True, True, True, False]
    assert [v.prompt_id for v in verdicts] == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="got 3 images for 2 triplets x 2"):
        recogniser.relation_verdicts([None] * 3, triplets, 2)
