from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spatialgen.devices import check_device
from spatialgen.models import TinySDConfig, load_pipeline, make_scheduler, save_pipeline
from spatialgen.models.pipeline import model_card, resolve_model

from .conftest import TINY


def _images(pipe, seed: int = 3, steps: int = 3) -> np.ndarray:
    return pipe(
        ["a red cube", "two blue spheres on the grass"],
        num_inference_steps=steps,
        generator=[torch.Generator().manual_seed(seed + k) for k in range(2)],
        output_type="np",
    ).images


def test_tiny_pipeline_has_sd_components_and_sizes(tiny_pipe) -> None:
    assert type(tiny_pipe.unet).__name__ == "UNet2DConditionModel"
    assert type(tiny_pipe.vae).__name__ == "AutoencoderKL"
    assert type(tiny_pipe.text_encoder).__name__ == "CLIPTextModel"
    assert _images(tiny_pipe).shape == (2, TINY.resolution, TINY.resolution, 3)
    latents = tiny_pipe.vae.encode(torch.zeros(1, 3, 32, 32)).latent_dist.mean
    assert latents.shape == (1, 4, TINY.latent_size, TINY.latent_size)


def test_save_load_round_trip_gives_identical_images(tiny_pipe, tmp_path: Path) -> None:
    before = _images(tiny_pipe)
    save_pipeline(tiny_pipe, tmp_path / "model")
    loaded, again = load_pipeline(tmp_path / "model"), load_pipeline(tmp_path / "model")
    assert model_card(loaded)["model"] == TINY.to_dict()
    np.testing.assert_array_equal(_images(loaded), _images(again))
    # Weights are bit-identical; summation order may differ with memory alignment (mmapped tensors).
    np.testing.assert_allclose(_images(loaded), before, atol=1e-5, rtol=0)
    for name in ("unet", "vae", "text_encoder"):
        saved, original = getattr(loaded, name).state_dict(), getattr(tiny_pipe, name).state_dict()
        assert all(torch.equal(saved[k], original[k]) for k in original), name
    assert not list((tmp_path / "model").rglob("*.bin")), "weights must be safetensors only"


def test_fp16_checkpoint_is_half_the_size_and_close(tiny_pipe, tmp_path: Path) -> None:
    weights = {k: v.clone() for k, v in tiny_pipe.unet.state_dict().items()}
    save_pipeline(tiny_pipe, tmp_path / "f32")
    save_pipeline(tiny_pipe, tmp_path / "f16", fp16=True)
    assert all(torch.equal(v, weights[k]) for k, v in tiny_pipe.unet.state_dict().items()), "caller's weights kept"
    size = {k: sum(f.stat().st_size for f in (tmp_path / k).rglob("*.safetensors")) for k in ("f32", "f16")}
    assert size["f16"] < 0.55 * size["f32"]
    assert tiny_pipe.unet.dtype == torch.float32, "saving in fp16 must not change the caller's pipeline"
    loaded = load_pipeline(tmp_path / "f16")
    assert loaded.unet.dtype == torch.float32
    assert np.abs(_images(loaded) - _images(tiny_pipe)).max() < 0.05


def test_save_over_an_existing_folder_replaces_it_whole(tiny_pipe, tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    save_pipeline(tiny_pipe, target)
    assert not (target / "stale.txt").exists() and (target / "model_index.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["model"], "no temporary folders left behind"


@pytest.mark.parametrize("name", ["ddim", "dpm", "ddpm", "euler"])
def test_every_scheduler_shares_the_noise_schedule(tiny_pipe, name: str) -> None:
    scheduler = make_scheduler(name, tiny_pipe.scheduler.config)
    assert torch.equal(scheduler.alphas_cumprod, tiny_pipe.scheduler.alphas_cumprod)
    tiny_pipe.scheduler = scheduler
    assert np.isfinite(_images(tiny_pipe, steps=4)).all()


def test_unknown_scheduler_is_refused(tiny_pipe) -> None:
    with pytest.raises(ValueError, match="ddim, dpm"):
        make_scheduler("plms", tiny_pipe.scheduler.config)


def test_missing_and_non_pipeline_folders_say_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither an existing folder nor a hub id"):
        resolve_model(tmp_path / "nope" / "deeper")
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        resolve_model(tmp_path)
    assert resolve_model("org/model") == ("org/model", False)


def test_corrupt_checkpoint_gives_a_clear_error(tiny_pipe, tmp_path: Path) -> None:
    save_pipeline(tiny_pipe, tmp_path / "model")
    weights = next((tmp_path / "model" / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="incomplete or corrupt"):
        load_pipeline(tmp_path / "model")


def test_devices_that_do_not_exist_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown device"):
        check_device("tpu7")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            check_device("cuda")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="multiple of 16"):
        TinySDConfig(resolution=72).validate()
    with pytest.raises(ValueError, match="unknown model config keys"):
        TinySDConfig.from_dict({"resolution": 64, "colour": "red"})
    assert TinySDConfig.from_dict(TINY.to_dict()) == TINY


def test_a_single_file_checkpoint_round_trips_and_loads_through_model(tiny_pipe, tmp_path, monkeypatch) -> None:
    """export_single_file writes the original LDM layout; diffusers' from_single_file (what --model FILE uses)
    reads back the same weights, offline with the architecture's diffusers folder as its config."""
    import torch

    from spatialgen.models import load_pipeline, save_pipeline
    from spatialgen.models.pipeline import SINGLE_FILE_CONFIG_ENV
    from spatialgen.models.single_file import export_single_file, load_single_file

    save_pipeline(tiny_pipe, tmp_path / "folder")
    path = export_single_file(tiny_pipe, tmp_path / "model.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("model.diffusion_model.input_blocks.") for k in keys)
    assert any(k.startswith("first_stage_model.decoder.up.") for k in keys)
    assert any(k.startswith("cond_stage_model.transformer.text_model.") for k in keys)
    monkeypatch.setenv(SINGLE_FILE_CONFIG_ENV, str(tmp_path / "folder"))
    loaded = load_pipeline(str(path))
    for name in ("unet", "vae", "text_encoder"):
        ours, theirs = getattr(tiny_pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), name
    (tmp_path / "model.ckpt").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="is a pickle"):
        load_single_file(tmp_path / "model.ckpt")
