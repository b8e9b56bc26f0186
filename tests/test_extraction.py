"""Real image datasets into training shards: estimators with known answers, odd images, resumable shards the
trainers read, the same bytes from one process or two, and clear errors for the wrong model."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spatialgen.extraction import ExtractionSettings, IntrinsicsEstimator, extract_dataset, normals_from_depth
from spatialgen.extraction.estimators import edges_of_maps, image_edges
from spatialgen.extraction.images import MAX_SIDE, prepare_image
from spatialgen.intrinsic_shards import IntrinsicShards, open_dataset

from .conftest import TINY

WEIGHT_FREE = dict(resolution=32, depth="scenes", normal="from-depth", segmentation="none", lines="edges")


def _png(array: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Ten images with captions, one corrupt, one too small: two input shards of five."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(8):
        (root / f"img{i}.png").write_bytes(_png(rng.integers(0, 255, (40 + i, 48, 3), dtype=np.uint8)))
        (root / f"img{i}.txt").write_text(f"a photo number {i}\n")
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "tiny.png").write_bytes(_png(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)))
    return root


def test_normals_from_depth_face_the_camera_and_tilt_the_right_way() -> None:
    flat = normals_from_depth(np.full((1, 16, 16), 0.5, np.float32))
    np.testing.assert_allclose(flat, np.broadcast_to([0.0, 0.0, 1.0], flat.shape), atol=1e-6)
    columns = np.linspace(1.0, 0.0, 16, dtype=np.float32)  # near on the left, far on the right
    wall = normals_from_depth(np.broadcast_to(columns, (1, 16, 16)).copy())[0, 4:-4, 4:-4]
    assert (wall[..., 0] > 0.1).all() and np.abs(wall[..., 1]).max() < 1e-5  # it faces right, no up or down
    rows = np.linspace(0.0, 1.0, 16, dtype=np.float32)[:, None]  # far at the top, near at the bottom: a floor
    floor = normals_from_depth(np.broadcast_to(rows, (1, 16, 16)).copy())[0, 4:-4, 4:-4]
    assert (floor[..., 1] > 0.1).all() and np.abs(floor[..., 0]).max() < 1e-5  # it faces up
    np.testing.assert_allclose(np.linalg.norm(floor, axis=-1), 1.0, atol=1e-5)


def test_lines_are_the_borders_of_depth_steps_and_segments() -> None:
    disparity = np.zeros((1, 8, 8), np.float32)
    disparity[:, :, 4:] = 1.0
    lines = edges_of_maps(disparity, None, None)[0]
    assert lines[:, 3:5].all() and not lines[:, :2].any() and not lines[:, 6:].any()
    instance = np.zeros((1, 8, 8), np.int64)
    instance[:, 2:5, 2:5] = 3
    borders = edges_of_maps(None, None, instance)[0]
    assert borders[1:5, 1:5].any() and not borders[6:, 6:].any() and not borders[3, 3]
    with pytest.raises(ValueError, match="needs at least one other map"):
        edges_of_maps(None, None, None)
    stripes = np.zeros((1, 16, 16, 3), np.uint8)
    stripes[:, :, 8:] = 255
    assert image_edges(stripes)[0][:, 7:9].all() and not image_edges(stripes)[0][:, :5].any()


def test_any_image_becomes_a_square_rgb_training_image() -> None:
    grey16 = (np.arange(40 * 40, dtype=np.uint16).reshape(40, 40) * 40).astype(np.uint16)
    cmyk = io.BytesIO()
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(cmyk, format="JPEG")
    rgba = np.zeros((30, 40, 4), np.uint8)  # fully transparent: composited onto white
    for source in (_png(grey16), cmyk.getvalue(), _png(rgba), np.zeros((20, 20, 3), np.uint8)):
        prepared = prepare_image(source, 16)
        assert prepared.skipped is None and prepared.rgb.shape == (16, 16, 3) and prepared.rgb.dtype == np.uint8
    assert prepare_image(_png(grey16), 16).rgb.max() > 200  # 16-bit rescaled, not clipped to white
    assert prepare_image(cmyk.getvalue(), 16).rgb[8, 8, 0] > 200  # CMYK red is red
    assert (prepare_image(_png(rgba), 16).rgb == 255).all()
    assert prepare_image(b"garbage", 16).skipped.startswith("unreadable")
    assert prepare_image(_png(np.zeros((8, 30, 3), np.uint8)), 16).skipped.startswith("too small")
    huge = prepare_image(_png(np.zeros((20, MAX_SIDE + 100, 3), np.uint8)), 16)
    assert huge.downscaled and huge.size == (MAX_SIDE + 100, 20) and huge.rgb.shape == (16, 16, 3)


def test_a_folder_becomes_shards_the_trainers_read_and_a_restart_redoes_only_what_is_missing(
    photos: Path, tmp_path: Path
) -> None:
    from spatialgen.ildm.vae_training import load_packed_intrinsics
    from spatialgen.models.data import SceneTensors, draw_captions

    out = tmp_path / "data"
    manifest = extract_dataset(photos, out, ExtractionSettings(**WEIGHT_FREE), chunk=5)
    assert manifest["counts"] == {
        "downscaled": 0,
        "items": 10,
        "kept": 8,
        "no_caption": 0,
        "too_small": 1,
        "unreadable": 1,
    }
    assert manifest["models"] == {"depth": "scenes", "normal": "from-depth", "segmentation": "none", "lines": "edges"}
    assert any("broken" in s for s in manifest["skipped"]) and any("tiny" in s for s in manifest["skipped"])
    data = open_dataset(out)
    assert isinstance(data, IntrinsicShards) and len(data) == 8 and data.resolution == 32
    sample = data[0]
    assert sample.captions == {"caption": "a photo number 0"} and sample.meta["source_size"] == [48, 40]
    np.testing.assert_allclose(np.linalg.norm(sample.normal, axis=-1), 1.0, atol=2e-3)  # float16 on disk
    assert (
        0 <= sample.disparity.min() and sample.disparity.max() <= 1 and sample.intrinsics().pack().shape == (8, 32, 32)
    )
    tensors = SceneTensors.from_shards(out, progress=False)
    assert tensors.images.shape == (8, 3, 32, 32) and load_packed_intrinsics(out).shape == (8, 8, 32, 32)
    rng = np.random.default_rng(0)
    assert draw_captions(rng, tensors.captions, np.arange(8), dropout=0.0)[3] == "a photo number 3"

    shards = sorted((out / "shards").glob("*.tar"))
    before = {p.name: p.read_bytes() for p in shards}
    (out / "reports" / f"{shards[1].stem}.json").unlink()  # as if killed before the second shard was done
    shards[1].write_bytes(b"half a tar")
    again = extract_dataset(photos, out, ExtractionSettings(**WEIGHT_FREE), chunk=5)
    assert again["counts"] == manifest["counts"]
    assert {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.tar"))} == before
    with pytest.raises(ValueError, match="other settings"):
        extract_dataset(photos, out, ExtractionSettings(**{**WEIGHT_FREE, "lines": "none"}), chunk=5)


def test_two_accelerate_processes_write_the_same_dataset_as_one(photos: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    extract_dataset(photos, one, ExtractionSettings(**WEIGHT_FREE), chunk=3)
    two = tmp_path / "two"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["-m", "spatialgen", "intrinsics", "extract", "--source", str(photos), "--out", str(two), "--chunk", "3"]
    command += ["--resolution", "32", "--depth", "scenes", "--normal", "from-depth", "--lines", "edges"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "8 of 10 images written" in " ".join((result.stdout + result.stderr).split())
    names = sorted(p.name for p in (one / "shards").glob("*.tar"))
    assert len(names) == 4 and names == sorted(p.name for p in (two / "shards").glob("*.tar"))
    for name in names:
        assert (one / "shards" / name).read_bytes() == (two / "shards" / name).read_bytes()
    assert (
        json.loads((one / "manifest.json").read_text())["counts"]
        == json.loads((two / "manifest.json").read_text())["counts"]
    )


def test_model_choices_load_real_model_families_and_refuse_the_wrong_kind(tmp_path: Path) -> None:
    from diffusers import MarigoldNormalsPipeline, UNet2DConditionModel
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    from spatialgen.models import build_pipeline, save_pipeline

    torch.manual_seed(0)
    base = build_pipeline(TINY)
    save_pipeline(base, tmp_path / "sd")
    unet = UNet2DConditionModel.from_config({**base.unet.config, "in_channels": 8})
    marigold = MarigoldNormalsPipeline(
        unet,
        base.vae,
        base.scheduler,
        base.text_encoder,
        base.tokenizer,
        prediction_type="normals",
        default_denoising_steps=2,
        default_processing_resolution=32,
    )
    marigold.save_pretrained(tmp_path / "marigold")
    backbone = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=32,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=2,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    segmenter = Mask2FormerForUniversalSegmentation(
        Mask2FormerConfig(
            backbone_config=backbone,
            hidden_dim=32,
            num_queries=4,
            encoder_layers=1,
            decoder_layers=2,
            num_attention_heads=2,
            encoder_feedforward_dim=32,
            dim_feedforward=32,
            mask_feature_size=32,
            feature_size=32,
            num_labels=2,
            use_pretrained_backbone=False,
        )
    )
    segmenter.save_pretrained(tmp_path / "m2f")
    Mask2FormerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(tmp_path / "m2f")

    estimator = IntrinsicsEstimator.build(
        "scenes", f"marigold:{tmp_path / 'marigold'}", f"panoptic:{tmp_path / 'm2f'}", "edges"
    )
    images = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    maps = estimator.estimate(images)
    assert maps["normal"].shape == (2, 32, 32, 3)
    np.testing.assert_allclose(np.linalg.norm(maps["normal"], axis=-1), 1.0, atol=1e-4)
    assert maps["instance"].shape == (2, 32, 32) and maps["instance"].min() >= 0
    assert maps["depth"].shape == (2, 32, 32) and maps["lines"].shape == (2, 32, 32)

    with pytest.raises(ValueError, match=r"holds a StableDiffusionPipeline, not a Marigold normals pipeline"):
        IntrinsicsEstimator.build("none", f"marigold:{tmp_path / 'sd'}", "none", "none")
    with pytest.raises(ValueError, match=r"not a transformers depth-estimation model.*ForDepthEstimation"):
        IntrinsicsEstimator.build(str(tmp_path / "m2f"), "none", "none", "none")
    with pytest.raises(ValueError, match=r"not a universal-segmentation model"):
        IntrinsicsEstimator.build("none", "none", f"panoptic:{tmp_path / 'sd' / 'text_encoder'}", "none")
    with pytest.raises(ValueError, match="from-depth needs a depth map"):
        IntrinsicsEstimator.build("none", "from-depth", "none", "edges")
    with pytest.raises(ValueError, match="unknown --lines 'sketch'"):
        IntrinsicsEstimator.build("none", "none", "none", "sketch")


def test_the_intrinsic_vae_trains_on_extracted_shards_unchanged(photos: Path, tmp_path: Path, tiny_pipe) -> None:
    from spatialgen.ildm.vae_training import IntrinsicVAEConfig, train_intrinsic_vae
    from spatialgen.models import save_pipeline

    save_pipeline(tiny_pipe, tmp_path / "base")
    extract_dataset(photos, tmp_path / "data", ExtractionSettings(**WEIGHT_FREE), chunk=5)
    cfg = IntrinsicVAEConfig(
        data=str(tmp_path / "data"),
        out=str(tmp_path / "ivae"),
        base=str(tmp_path / "base"),
        steps=2,
        batch_size=4,
        checkpoint_every=2,
        held_out=2,
    )
    folder = train_intrinsic_vae(cfg, cpu=True)
    assert (folder / "diffusion_pytorch_model.safetensors").is_file()


def test_sam_prompted_on_a_grid_gives_disjoint_instance_ids(tmp_path: Path) -> None:
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor
    from transformers.models.sam.configuration_sam import SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig

    from spatialgen.extraction.estimators import sam_segmentation

    torch.manual_seed(0)
    vision = SamVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=64,
        patch_size=8,
        output_channels=16,
        global_attn_indexes=[1],
        window_size=4,
        num_pos_feats=8,
        mlp_dim=64,
    )
    prompt = SamPromptEncoderConfig(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32, iou_head_hidden_dim=16
    )
    config = SamConfig(
        vision_config=vision.to_dict(), prompt_encoder_config=prompt.to_dict(), mask_decoder_config=decoder.to_dict()
    )
    SamModel(config).save_pretrained(tmp_path / "sam")
    SamProcessor(SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})).save_pretrained(
        tmp_path / "sam"
    )
    run = sam_segmentation(str(tmp_path / "sam"), grid=2)
    ids = run(np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8))
    assert ids.shape == (2, 32, 32) and ids.min() >= 0 and ids.max() <= 4  # one id per grid point at most


def test_ray_data_writes_the_same_shards_as_the_local_engine(photos: Path, tmp_path: Path) -> None:
    local, ray = tmp_path / "local", tmp_path / "ray"
    extract_dataset(photos, local, ExtractionSettings(**WEIGHT_FREE), chunk=5)
    extract_dataset(photos, ray, ExtractionSettings(**WEIGHT_FREE), engine="ray", workers=2, chunk=5)
    names = sorted(p.name for p in (local / "shards").glob("*.tar"))
    assert names and names == sorted(p.name for p in (ray / "shards").glob("*.tar"))
    assert all((local / "shards" / n).read_bytes() == (ray / "shards" / n).read_bytes() for n in names)
