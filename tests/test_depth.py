"""Depth adapters for 3D relations: a transformers depth model (tiny, random) and the scene estimator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

from spatialgen.eval.detection.depth import SceneDepth, TransformersDepth, load_depth_estimator, normalise_disparity
from spatialgen.eval.detection.detectors import OwlViTDetector
from spatialgen.intrinsics import disparity_from_depth
from spatialgen.scenes import make_sample, scene_seed


def _tiny_depth_anything():
    torch.manual_seed(0)
    backbone = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=28,
        patch_size=14,
        out_features=["stage1", "stage2"],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        neck_hidden_sizes=[16, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
        patch_size=14,
        reassemble_factors=[4, 2],
    )
    processor = DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=False, do_pad=False)
    return DepthAnythingForDepthEstimation(config).eval(), processor


def test_transformers_depth_is_normalised_per_image_at_the_image_size_and_reloads(tmp_path: Path) -> None:
    model, processor = _tiny_depth_anything()
    images = [np.random.default_rng(k).integers(0, 256, (40, 56, 3), dtype=np.uint8) for k in range(2)]
    maps = TransformersDepth(model, processor).disparity(images)
    with torch.no_grad():
        raw = model(**processor(images=[Image.fromarray(im) for im in images], return_tensors="pt")).predicted_depth
    for m, r in zip(maps, raw, strict=True):
        assert m.shape == (40, 56) and m.min() == 0.0 and m.max() == 1.0
        up = torch.nn.functional.interpolate(r[None, None], size=(40, 56), mode="bicubic")[0, 0].numpy()
        assert np.allclose(m, normalise_disparity(up), atol=1e-6)  # nearer stays larger: no flip
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = load_depth_estimator(str(tmp_path)).disparity(images)
    assert all(np.array_equal(a, b) for a, b in zip(maps, reloaded, strict=True))


def test_normalise_disparity_handles_flat_maps() -> None:
    assert np.array_equal(normalise_disparity(np.full((3, 3), 2.0)), np.zeros((3, 3), np.float32))
    assert np.allclose(normalise_disparity(np.array([[1.0, 3.0]])), [[0.0, 1.0]])


def test_scene_depth_follows_the_truth_and_the_image_size() -> None:
    sample = make_sample(scene_seed(999, 7), 64)
    truth = disparity_from_depth(sample.depth)
    (small,) = SceneDepth().disparity([sample.rgb])
    (big,) = SceneDepth().disparity([Image.fromarray(sample.rgb).resize((128, 96))])
    assert small.shape == (64, 64) and big.shape == (96, 128)
    assert np.corrcoef(small.ravel(), truth.ravel())[0, 1] > 0.9


def test_owl_detector_loads_a_saved_checkpoint(tmp_path: Path) -> None:
    from tests.test_detectors import _images, _tiny_owl

    model, processor = _tiny_owl()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = OwlViTDetector.from_pretrained(str(tmp_path), min_score=0.3)
    queries = [["red cube", "dog"], ["cat"]]
    want = OwlViTDetector(model, processor, min_score=0.3).detect(_images(2), queries)
    assert loaded.detect(_images(2), queries) == want


def test_eval_spatial_runs_with_an_owlvit_checkpoint_and_a_transformers_depth_model(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from spatialgen.cli import app
    from spatialgen.eval.runs.run_folder import read_results
    from tests.test_detectors import _tiny_owl

    model, processor = _tiny_owl()
    model.save_pretrained(tmp_path / "owl")
    processor.save_pretrained(tmp_path / "owl")
    depth, depth_processor = _tiny_depth_anything()
    depth.save_pretrained(tmp_path / "depth")
    depth_processor.save_pretrained(tmp_path / "depth")
    images = tmp_path / "imgs"
    images.mkdir()
    prompts = ["a red cube to the left of a blue sphere", "a dog behind a cat"]
    for i, prompt in enumerate(prompts):
        Image.fromarray(make_sample(scene_seed(999, i), 64).rgb).save(images / f"{i}.png")
        (images / f"{i}.json").write_text(json.dumps({"prompt": prompt}))
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "spatial",
            "--images",
            str(images),
            "--out",
            str(tmp_path / "run"),
            "--detector",
            str(tmp_path / "owl"),
            "--depth",
            str(tmp_path / "depth"),
        ],
    )
    assert result.exit_code == 0, result.output
    tables = read_results(tmp_path / "run")["tables"]
    assert "VISOR (2D, %)" in tables and "3D relations (ours, %)" in tables
    assert read_results(tmp_path / "run")["settings"]["detector"] == str(tmp_path / "owl")
