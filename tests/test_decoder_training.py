"""VAE decoder fine-tuning: the latent space stays put, the decoder improves, a resumed run is bit-identical."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spatialgen.models import load_pipeline, save_pipeline
from spatialgen.models.decoder_training import (
    DecoderFinetuneConfig,
    decoder_parameters,
    held_out_renders,
    reconstruction_mse,
    train_vae_decoder,
)
from spatialgen.models.pipeline import model_card
from spatialgen.scenes import DatasetParams, make_dataset


@pytest.fixture
def setup(tmp_path: Path, tiny_pipe) -> Path:
    save_pipeline(tiny_pipe, tmp_path / "base")
    make_dataset(tmp_path / "data", DatasetParams(n=16, resolution=32, seed=3, shard_size=16))
    return tmp_path


def _cfg(root: Path, out: str, steps: int, **overrides) -> DecoderFinetuneConfig:
    settings = dict(
        data=str(root / "data"),
        out=str(root / out),
        base=str(root / "base"),
        steps=steps,
        batch_size=4,
        lr=3e-3,
        checkpoint_every=2,
        held_out=4,
    )
    return DecoderFinetuneConfig(**{**settings, **overrides})


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_only_the_decoder_learns_and_the_round_trip_improves(setup: Path) -> None:
    base = load_pipeline(str(setup / "base"))
    folder = train_vae_decoder(_cfg(setup, "run", 8), cpu=True)
    tuned = load_pipeline(str(folder))

    trained = {id(p) for p in decoder_parameters(tuned.vae)}
    names = {n for n, p in tuned.vae.named_parameters() if id(p) in trained}
    assert names and all(n.startswith(("decoder.", "post_quant_conv.")) for n in names)
    before, after = dict(base.vae.named_parameters()), dict(tuned.vae.named_parameters())
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same != (name in names), f"{name}: {'unchanged' if same else 'changed'}"
    for part in ("unet", "text_encoder"):  # the rest of the pipeline is the base's, untouched
        a, b = _state(getattr(base, part)), _state(getattr(tuned, part))
        assert all(torch.equal(a[k], b[k]) for k in a)

    images = held_out_renders(4, 32)
    assert reconstruction_mse(tuned.vae, images) < reconstruction_mse(base.vae, images)
    report = json.loads((setup / "run" / "held-out.json").read_text())
    assert report["after"]["mse"] < report["before"]["mse"]
    assert model_card(tuned)["vae_decoder_finetune"]["steps"] == 8


def test_a_resumed_fine_tune_equals_an_uninterrupted_one(setup: Path) -> None:
    whole = load_pipeline(str(train_vae_decoder(_cfg(setup, "whole", 4), cpu=True)))
    train_vae_decoder(_cfg(setup, "split", 2), cpu=True)
    split = load_pipeline(str(train_vae_decoder(_cfg(setup, "split", 4), resume="latest", cpu=True)))
    a, b = _state(whole.vae), _state(split.vae)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="already holds a run"):
        train_vae_decoder(_cfg(setup, "whole", 4), cpu=True)
    with pytest.raises(ValueError, match=r"changed: \['lr'\]"):
        train_vae_decoder(_cfg(setup, "whole", 6, lr=1e-4), resume="latest", cpu=True)


def test_bad_settings_are_refused_with_what_to_change(setup: Path) -> None:
    with pytest.raises(ValueError, match="steps must be positive"):
        train_vae_decoder(_cfg(setup, "zero", 0), cpu=True)
    with pytest.raises(ValueError, match="ema_decay must be in"):
        train_vae_decoder(_cfg(setup, "ema", 2, ema_decay=1.0), cpu=True)
    make_dataset(setup / "data48", DatasetParams(n=4, resolution=48, seed=3, shard_size=4))
    with pytest.raises(ValueError, match="the data are 48 px but .* is for 32 px"):
        train_vae_decoder(_cfg(setup, "size", 2, data=str(setup / "data48")), cpu=True)


def test_cli_fine_tunes_a_pipeline_folder_and_reports_the_held_out_error(setup: Path) -> None:
    from typer.testing import CliRunner

    from spatialgen.cli import app

    out = setup / "cli"
    args = ["train", "vae-decoder", "--data", str(setup / "data"), "--base", str(setup / "base")]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--steps", "2", "--batch-size", "2", "--cpu"])
    assert result.exit_code == 0, result.output
    assert '"before"' in result.output
    assert str(out / "pipeline") in "".join(result.output.split())  # rich wraps (and indents) long paths
    tuned, base = load_pipeline(str(out / "pipeline")), load_pipeline(str(setup / "base"))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():  # same latent space, new pixels
        z = base.vae.encode(x).latent_dist.mean
        assert torch.equal(z, tuned.vae.encode(x).latent_dist.mean)
        assert not torch.equal(base.vae.decode(z).sample, tuned.vae.decode(z).sample)
    missing = CliRunner().invoke(app, [*args[:3], str(setup / "nowhere"), "--out", str(setup / "x"), "--cpu"])
    assert missing.exit_code != 0 and "nowhere" in "".join(missing.output.split())
