"""Intrinsic VAE training: it learns, it resumes bit-identically, it reports held-out errors per intrinsic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from spatialgen.ildm.vae_training import IntrinsicVAEConfig, train_intrinsic_vae
from spatialgen.models import save_pipeline
from spatialgen.scenes import DatasetParams, make_dataset


@pytest.fixture
def setup(tmp_path: Path, tiny_pipe) -> Path:
    save_pipeline(tiny_pipe, tmp_path / "base")
    make_dataset(tmp_path / "data", DatasetParams(n=16, resolution=32, seed=3, shard_size=16))
    return tmp_path


def _cfg(root: Path, out: str, steps: int) -> IntrinsicVAEConfig:
    return IntrinsicVAEConfig(
        data=str(root / "data"),
        out=str(root / out),
        base=str(root / "base"),
        steps=steps,
        batch_size=4,
        lr=1e-3,
        checkpoint_every=2,
        held_out=4,
    )


def test_training_resumes_bit_identically_and_reports_each_intrinsic(setup: Path) -> None:
    whole = train_intrinsic_vae(_cfg(setup, "whole", 4), cpu=True)
    train_intrinsic_vae(_cfg(setup, "split", 2), cpu=True)
    split = train_intrinsic_vae(_cfg(setup, "split", 4), resume="latest", cpu=True)
    a = load_file(str(whole / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(split / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    errors = json.loads((setup / "whole" / "held-out.json").read_text())
    assert set(errors) >= {"depth_mse", "normal_mse", "segmentation_mse", "lines_mse"}
    with pytest.raises(ValueError, match="already holds a run"):
        train_intrinsic_vae(_cfg(setup, "whole", 4), cpu=True)
    changed = _cfg(setup, "whole", 6)
    changed.mask_p = 0.3
    with pytest.raises(ValueError, match=r"changed: \['mask_p'\]"):
        train_intrinsic_vae(changed, resume="latest", cpu=True)


def test_training_lowers_the_held_out_reconstruction_error(setup: Path) -> None:
    from spatialgen.ildm.intrinsic_vae import widen_vae
    from spatialgen.ildm.vae_training import held_out_packed, reconstruction_errors
    from spatialgen.models import load_pipeline

    held = held_out_packed(4, 32)
    before = sum(reconstruction_errors(widen_vae(load_pipeline(str(setup / "base")).vae), held).values())
    cfg = _cfg(setup, "learn", 30)
    cfg.checkpoint_every = 30
    train_intrinsic_vae(cfg, cpu=True)
    after = sum(
        json.loads((setup / "learn" / "held-out.json").read_text())[k]
        for k in ("depth_mse", "normal_mse", "segmentation_mse", "lines_mse")
    )
    assert after < 0.7 * before
