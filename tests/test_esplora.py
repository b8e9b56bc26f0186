"""ESPLoRA: flips keep captions true, training is exact and LoRA-only, and generate --lora fuses the right LoRA."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from spatialgen.cli import app
from spatialgen.esplora import ESPLoRAConfig, mirror_caption, train_esplora
from spatialgen.esplora.data import from_folder, from_scenes
from spatialgen.models import build_pipeline, save_pipeline
from spatialgen.scenes import DatasetParams, make_dataset, make_sample, scene_seed
from spatialgen.scenes.held_out import caption_triplet, is_held_out_caption
from spatialgen.triplets import parse_triplet

from .conftest import TINY


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("esplora")
    torch.manual_seed(0)
    save_pipeline(build_pipeline(TINY), root / "base")
    torch.manual_seed(1)
    save_pipeline(build_pipeline(TINY), root / "other-base")
    make_dataset(root / "data", DatasetParams(n=24, resolution=32, seed=5, shard_size=24))
    return root


def test_mirroring_swaps_left_and_right_only() -> None:
    assert mirror_caption("a dog to the left of a cat") == "a dog to the right of a cat"
    assert (
        mirror_caption("Left of the tree, a RIGHT turn; leftover rights")
        == "Right of the tree, a LEFT turn; leftover rights"
    )
    assert mirror_caption("a cube above a sphere, in front of a cone") == "a cube above a sphere, in front of a cone"


def _left_of(xa: float, xb: float, sign: float) -> bool:
    return sign * xa < sign * xb


def test_a_flipped_scene_with_its_mirrored_caption_stays_true() -> None:
    """The scene world's captions follow the visible masks' centroids (x from the centre); a flip negates x."""
    checked = 0
    for i in range(60):
        sample = make_sample(scene_seed(11, i), 64)
        caption = sample.captions.get("relation2d")
        if caption is None:
            continue
        (a, relation, b) = caption_triplet(caption)
        named = [(o.colour, o.shape) for o in sample.objects]
        x = {(o.colour, o.shape): o.centroid[0] - 0.5 for o in sample.objects if o.centroid is not None}
        if relation not in ("left of", "right of") or named.count(a) != 1 or named.count(b) != 1:
            continue

        assert _left_of(x[a], x[b], 1.0) == (relation == "left of")
        mirrored = parse_triplet(mirror_caption(caption)).relation
        assert _left_of(x[a], x[b], -1.0) == (mirrored == "left of")  # -x: the flipped image
        assert _left_of(x[a], x[b], -1.0) != (relation == "left of")  # the unmirrored caption would lie
        checked += 1
    assert checked >= 5


def test_training_data_keep_only_true_spatial_captions_and_no_held_out_triplet(world: Path, tmp_path: Path) -> None:
    pairs = from_scenes(world / "data")
    assert len(pairs) + pairs.skipped == 24 and len(pairs) > 0
    assert all(parse_triplet(c) is not None and not is_held_out_caption(c) for cs in pairs.captions for c in cs)
    held_out = next(
        c for cs in from_scenes(world / "data", exclude_held_out=False).captions for c in cs if is_held_out_caption(c)
    )
    rng = np.random.default_rng(0)
    for name, text in (
        ("a", f"a dog to the left of a cat\na photo\n{held_out}"),
        ("b", "a photo of a dog"),
        ("c", None),
    ):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
        if text is not None:
            (tmp_path / f"{name}.txt").write_text(text)
    folder = from_folder(tmp_path, 32)
    assert folder.captions == [["a dog to the left of a cat"]] and folder.skipped == 2
    assert folder.images.shape == (1, 3, 32, 32)
    assert from_folder(tmp_path, 32, exclude_held_out=False).captions == [["a dog to the left of a cat", held_out]]


def _cfg(root: Path, out: str, steps: int, **changes) -> ESPLoRAConfig:
    settings = dict(data=[str(root / "data")], out=str(root / out), base=str(root / "base"), rank=4)
    settings.update(steps=steps, batch_size=4, checkpoint_every=2, lr=1e-3)
    return ESPLoRAConfig(**{**settings, **changes})


def test_training_moves_only_the_lora_and_resumes_bit_identically(world: Path) -> None:
    whole = train_esplora(_cfg(world, "whole", 4, text_encoder_rank=2), cpu=True)
    train_esplora(_cfg(world, "split", 2, text_encoder_rank=2), cpu=True)
    split = train_esplora(_cfg(world, "split", 4, text_encoder_rank=2), resume="latest", cpu=True)
    a, b = (
        load_file(str(whole / "pytorch_lora_weights.safetensors")),
        load_file(str(split / "pytorch_lora_weights.safetensors")),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {k.split(".")[0] for k in a} == {"unet", "text_encoder"} and all(".lora_" in k for k in a)
    assert any(v.abs().sum() > 0 for k, v in a.items() if "lora_B" in k)
    card = json.loads((whole / "esplora.json").read_text())
    assert card["parameters"] == sum(v.numel() for v in a.values()) and len(card["base"]["fingerprint"]) == 16
    pairs = from_scenes(world / "data")
    assert (card["images"], card["pairs"]) == (len(pairs), sum(len(c) for c in pairs.captions))
    assert card["pairs"] > card["images"]  # scenes with a 2D and a 3D caption count twice


def test_generate_with_lora_fuses_it_and_refuses_another_base(world: Path) -> None:
    from diffusers import StableDiffusionPipeline

    from spatialgen.esplora import apply_spatial_lora

    lora = train_esplora(_cfg(world, "gen", 2, lr=1e-2), cpu=True)
    live = StableDiffusionPipeline.from_pretrained(world / "base", use_safetensors=True)
    live.load_lora_weights(str(lora), weight_name="pytorch_lora_weights.safetensors")
    fused = StableDiffusionPipeline.from_pretrained(world / "base", use_safetensors=True)
    apply_spatial_lora(fused, lora)
    base = StableDiffusionPipeline.from_pretrained(world / "base", use_safetensors=True)
    torch.manual_seed(0)
    x, t, text = torch.randn(1, 4, 16, 16), torch.tensor([500]), torch.randn(1, 8, 16)
    with torch.no_grad():
        out = {name: p.unet(x, t, text).sample for name, p in (("live", live), ("fused", fused), ("base", base))}
    torch.testing.assert_close(out["fused"], out["live"], rtol=1e-4, atol=1e-5)  # fused = the LoRA applied live
    assert (out["fused"] - out["base"]).abs().max() > 1e-3  # and the LoRA does something
    assert not any("lora" in name for name, _ in fused.unet.named_modules())  # no LoRA layers left: no extra cost
    runner = CliRunner()
    common = ["generate", "a red cube to the left of a blue sphere", "--n", "1", "--steps", "1"]
    result = runner.invoke(
        app, [*common, "--model", str(world / "base"), "--lora", str(lora), "--out", str(world / "g")]
    )
    assert result.exit_code == 0, result.output
    sidecar = json.loads(next((world / "g").glob("000-*.json")).read_text())
    assert sidecar["lora"] == {"path": str(lora), "scale": 1.0}
    other = runner.invoke(app, [*common, "--model", str(world / "other-base"), "--lora", str(lora), "--out", "x"])
    assert other.exit_code == 2 and "was trained for base model" in " ".join(other.output.split())
