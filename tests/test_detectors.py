"""Detector adapters: OWL-ViT / OWLv2 through transformers (tiny random models) and the scene detector."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    Owlv2Config,
    Owlv2ForObjectDetection,
    Owlv2ImageProcessorPil,
    Owlv2Processor,
    OwlViTConfig,
    OwlViTForObjectDetection,
    OwlViTImageProcessorPil,
    OwlViTProcessor,
)

from spatialgen.eval.detection.detections import Detector, ObjectDetection, box_iou, by_label
from spatialgen.eval.detection.detectors import OwlViTDetector, SceneDetector, as_pil
from spatialgen.models.tokenizer import build_word_tokenizer
from spatialgen.scenes import make_sample, scene_seed

WORDS = "a photo of red cube blue sphere dog cat".split()


def _tiny_owl(v2: bool = False):
    torch.manual_seed(0)
    tokenizer = build_word_tokenizer(WORDS, model_max_length=16)
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=16,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
    )
    size = {"height": 32, "width": 32}
    if v2:
        model = Owlv2ForObjectDetection(Owlv2Config(text_config=text, vision_config=vision, projection_dim=32))
        processor = Owlv2Processor(image_processor=Owlv2ImageProcessorPil(size=size), tokenizer=tokenizer)
    else:
        model = OwlViTForObjectDetection(OwlViTConfig(text_config=text, vision_config=vision, projection_dim=32))
        processor = OwlViTProcessor(
            image_processor=OwlViTImageProcessorPil(size=size, crop_size=size), tokenizer=tokenizer
        )
    return model.eval(), processor


def _images(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _reference(model, processor, image: np.ndarray, names: list[str], floor: float, square: bool):
    """What transformers itself says for one image: the adapter must agree box for box."""
    inputs = processor(
        text=[[f"a photo of a {n}" for n in names]],
        images=[Image.fromarray(image)],
        return_tensors="pt",
        padding="max_length",
        truncation=True,
    )
    with torch.no_grad():
        outputs = model(**inputs)
    h, w = image.shape[:2]
    size = (max(h, w),) * 2 if square else (h, w)
    result = processor.image_processor.post_process_object_detection(
        outputs, threshold=floor, target_sizes=torch.tensor([size])
    )[0]
    return sorted(
        (
            (names[k], tuple(b), s)
            for s, k, b in zip(
                result["scores"].tolist(), result["labels"].tolist(), result["boxes"].tolist(), strict=True
            )
        ),
        key=lambda t: -t[2],
    )


@pytest.mark.parametrize("v2", [False, True])
def test_owl_detector_matches_transformers_per_image_and_drops_padded_queries(v2: bool) -> None:
    model, processor = _tiny_owl(v2)
    detector = OwlViTDetector(model, processor, min_score=0.3, batch_size=3)
    assert isinstance(detector, Detector) and detector.name == ("owlv2" if v2 else "owlvit")
    images = _images(3)
    queries = [["red cube", "blue sphere"], ["dog"], ["cat", "dog", "red cube"]]
    batched = detector.detect(images, queries)
    assert any(batched)  # a random tiny model still scores some boxes above 0.3
    for image, names, got in zip(images, queries, batched, strict=True):
        want = _reference(model, processor, image, names, 0.3, square=v2)
        assert [d.label for d in got] == [w[0] for w in want]
        assert {d.label for d in got} <= set(names)  # never a label of another image's (padded) queries
        for d, (_, box, score) in zip(got, want, strict=True):
            assert np.allclose(d.box, box, atol=1e-3) and d.score == pytest.approx(score, abs=1e-5)
            assert d.score > 0.3


def test_owl_detector_rejects_mismatched_inputs_and_bad_templates() -> None:
    model, processor = _tiny_owl()
    with pytest.raises(ValueError, match="one list per image"):
        OwlViTDetector(model, processor).detect(_images(2), [["dog"]])
    with pytest.raises(ValueError, match="must contain"):
        OwlViTDetector(model, processor, query_template="a photo")


def test_scene_detector_finds_rendered_objects_where_they_are() -> None:
    detector = SceneDetector()
    samples = [make_sample(scene_seed(999, i), 64) for i in range(12)]
    queries = [[f"{o.colour} {o.shape}" for o in s.objects] for s in samples]
    found = detector.detect([s.rgb for s in samples], queries)
    hits = total = 0
    for sample, dets in zip(samples, found, strict=True):
        groups = by_label(dets)
        for obj in sample.objects:
            if obj.area < 30:
                continue
            total += 1
            best = max(
                (box_iou(d.box, obj.visible_box) for d in groups.get(f"{obj.colour} {obj.shape}", [])), default=0
            )
            hits += best > 0.5
        for d in dets:
            assert d.mask is not None and d.mask.shape == (64, 64)
            ys, xs = np.nonzero(d.mask)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == d.box  # the box is the mask's box
    assert total > 20 and hits / total > 0.8


def test_scene_detector_scales_boxes_and_masks_back_to_the_image_size() -> None:
    detector = SceneDetector()
    rgb = make_sample(scene_seed(999, 3), 64).rgb
    names = ["cube", "sphere", "cylinder", "cone"]
    small = detector.detect([rgb], [names])[0]
    big = detector.detect([Image.fromarray(rgb).resize((128, 128), Image.NEAREST)], [names])[0]
    assert len(small) == len(big) > 0
    for s, b in zip(sorted(small, key=lambda d: d.box), sorted(big, key=lambda d: d.box), strict=True):
        assert s.label == b.label
        assert np.allclose(np.array(b.box), 2 * np.array(s.box), atol=2.0)
        assert b.mask.shape == (128, 128)


def test_scene_detector_matches_partial_names_and_rejects_unknown_words() -> None:
    assert SceneDetector.parse_name("a red cube") == ("red", "cube")
    assert SceneDetector.parse_name("spheres") == (None, "sphere")
    assert SceneDetector.parse_name("blue") == ("blue", None)
    with pytest.raises(ValueError, match="does not know 'dog'"):
        SceneDetector.parse_name("dog")


def test_object_detection_validates_and_round_trips() -> None:
    d = ObjectDetection("dog", (1.0, 2.0, 5.0, 10.0), 0.7)
    assert d.centre == (3.0, 6.0) and d.area == 32.0
    assert ObjectDetection.from_dict(d.to_dict()) == d
    with pytest.raises(ValueError, match="x1 >= x0"):
        ObjectDetection("dog", (5.0, 2.0, 1.0, 10.0), 0.7)
    assert box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert as_pil(np.zeros((4, 5, 3), np.uint8)).size == (5, 4)
