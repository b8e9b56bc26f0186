"""The embedded model v2's training recipe: lr schedule, VAE loss, zero terminal SNR, snapshots, CPU-hours."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from safetensors.torch import load_file

from spatialgen.models import TinySDConfig
from spatialgen.models.config import scheduler_config
from spatialgen.models.data import model_scene_config
from spatialgen.models.training import BaseTrainConfig, train_base
from spatialgen.models.vae_losses import reconstruction_loss, sobel_gradients
from spatialgen.scenes import DatasetParams, SceneConfig, make_dataset
from spatialgen.training_harness import list_checkpoints, list_snapshots, lr_lambda

from .conftest import TINY

V2_TINY = TinySDConfig(
    **{**TINY.to_dict(), "prediction_type": "v_prediction", "zero_terminal_snr": True, "timestep_spacing": "trailing"}
)


def test_cosine_schedule_warms_up_decays_to_zero_and_resumes_on_the_same_curve() -> None:
    f = lr_lambda("cosine", warmup=10, total=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0)
    assert f(35) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    resumed = lr_lambda("cosine", warmup=10, total=110, start=40)
    assert [resumed(k) for k in range(20)] == [f(40 + k) for k in range(20)]
    constant = lr_lambda("constant", warmup=10, total=110)
    assert constant(5) == pytest.approx(0.6) and constant(100) == 1.0


def test_sobel_gradients_are_zero_on_flat_images_and_half_a_step_at_an_edge() -> None:
    flat = torch.full((2, 3, 8, 8), 0.3)
    assert torch.equal(sobel_gradients(flat), torch.zeros(2, 6, 8, 8))
    edge = torch.zeros(1, 1, 6, 6)
    edge[..., 3:] = 1.0  # a vertical edge between columns 2 and 3
    grad = sobel_gradients(edge)
    assert grad.shape == (1, 2, 6, 6)
    assert torch.allclose(grad[0, 0, :, 2], torch.full((6,), 0.5)) and torch.allclose(
        grad[0, 0, :, 3], torch.full((6,), 0.5)
    )
    assert torch.equal(grad[0, 0, :, :2], torch.zeros(6, 2)) and torch.equal(grad[0, 1], torch.zeros(6, 6))


def test_l1_sobel_loss_sees_a_blurred_edge_that_mse_barely_sees() -> None:
    image = torch.zeros(1, 3, 16, 16)
    image[..., 8:] = 1.0
    blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(image, (1, 1, 1, 1), mode="replicate"), 3, 1)
    shifted = torch.roll(image, 1, dims=-1)  # the edge one pixel off, and a wrapped column
    assert reconstruction_loss(image, image, "l1_sobel") == 0
    assert reconstruction_loss(blurred, image, "l1_sobel") > 0
    ratio_mse = reconstruction_loss(blurred, image, "mse") / reconstruction_loss(shifted, image, "mse")
    ratio_sobel = reconstruction_loss(blurred, image, "l1_sobel") / reconstruction_loss(shifted, image, "l1_sobel")
    assert ratio_sobel > ratio_mse  # blur costs relatively more under the gradient term
    with pytest.raises(ValueError, match="unknown VAE loss 'ssim'; choose one of mse, l1_sobel"):
        reconstruction_loss(image, image, "ssim")


def test_zero_terminal_snr_reaches_pure_noise_and_samples_from_the_last_step() -> None:
    config = scheduler_config(V2_TINY.validate())
    assert DDPMScheduler.from_config(config).alphas_cumprod[-1] == pytest.approx(0.0, abs=1e-9)
    assert DDPMScheduler.from_config(scheduler_config(TINY)).alphas_cumprod[-1] > 1e-3
    ddim = DDIMScheduler(**config)
    ddim.set_timesteps(25)
    assert int(ddim.timesteps[0]) == 999
    with pytest.raises(ValueError, match="zero_terminal_snr needs prediction_type 'v_prediction'"):
        TinySDConfig(zero_terminal_snr=True).validate()
    with pytest.raises(ValueError, match="timestep_spacing must be"):
        TinySDConfig(timestep_spacing="uniform").validate()


def test_the_model_card_gives_the_training_scene_distribution_capped_for_evaluation() -> None:
    config = SceneConfig(min_objects=2, max_objects=5, distance=(4.5, 5.5), region_half_width=1.4)
    card = {"data": {"config": json.loads(json.dumps(config.to_dict()))}}  # lists, as a JSON card holds them
    read = model_scene_config(card)
    assert read.distance == (4.5, 5.5) and read.region_half_width == 1.4
    assert (read.min_objects, read.max_objects) == (2, 3)
    assert model_scene_config(card, max_objects=None).max_objects == 5
    assert model_scene_config(None) == SceneConfig(max_objects=3)
    with pytest.raises(ValueError, match="camera distance range"):
        SceneConfig(distance=(5.0, 4.0)).validate()


def test_bad_recipe_settings_are_refused() -> None:
    for field, value, message in (
        ("vae_loss", "lpips", "vae_loss must be one of mse, l1_sobel"),
        ("lr_schedule", "linear", "lr_schedule must be one of constant, cosine"),
        ("mixed_precision", "fp16", "mixed_precision must be one of no, bf16"),
        ("vae_mixed_precision", "fp16", "vae_mixed_precision must be one of no, bf16"),
        ("snapshot_every", 0, "snapshot_every must be positive"),
        ("vae_batch_size", 0, "vae_batch_size must be positive"),
    ):
        with pytest.raises(ValueError, match=message):
            BaseTrainConfig(data="d", out="o", **{field: value}).validate()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    config = SceneConfig(max_objects=3, distance=(4.5, 5.5), region_half_width=1.4)
    make_dataset(root, DatasetParams(n=16, resolution=32, seed=5, shard_size=8, config=config), workers=1)
    return root


def _v2_config(scenes: Path, out: Path, diffusion_steps: int) -> BaseTrainConfig:
    return BaseTrainConfig(
        data=str(scenes),
        out=str(out),
        model=V2_TINY.to_dict(),
        vae_steps=2,
        vae_batch_size=2,
        vae_loss="l1_sobel",
        diffusion_steps=diffusion_steps,
        batch_size=4,
        warmup_steps=1,
        lr_schedule="cosine",
        checkpoint_every=2,
        snapshot_every=2,
        sample_steps=2,
        seed=2,
    )


def test_v2_recipe_keeps_snapshots_and_its_training_time(scenes: Path, tmp_path: Path) -> None:
    """A run with every v2 lever on finishes; it keeps fp16 EMA snapshots and records seconds per stage.

    (That a resumed run follows the uninterrupted one holds for any config: the lr factor is a
    function of the absolute step, tested above, and test_training checks the rest bit for bit.)
    """
    pipeline = train_base(_v2_config(scenes, tmp_path, 4), cpu=True)
    shipped = load_file(str(pipeline / "unet" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.isfinite(v).all() for v in shipped.values())
    assert [step for step, _ in list_snapshots(tmp_path)] == [2, 4]
    snapshot = load_file(str(tmp_path / "snapshots" / "step-0000004" / "unet.safetensors"))
    # the last snapshot holds the EMA weights the finished pipeline ships, rounded to fp16
    assert snapshot.keys() == shipped.keys()
    assert all(torch.equal(snapshot[k], shipped[k].to(torch.float16)) for k in shipped)
    early = load_file(str(tmp_path / "snapshots" / "step-0000002" / "unet.safetensors"))
    assert any(not torch.equal(early[k], snapshot[k]) for k in snapshot)
    card = json.loads((pipeline / "spatialgen.json").read_text())
    assert card["training_seconds"]["vae"] > 0 and card["training_seconds"]["diffusion"] > 0
    assert card["training"]["lr_schedule"] == "cosine" and card["model"]["zero_terminal_snr"] is True
    assert card["data"]["config"]["distance"] == [4.5, 5.5]
    states = [json.loads((path / "state.json").read_text()) for _, _, path in list_checkpoints(tmp_path)]
    assert states and all(state["seconds"] > 0 for state in states)
