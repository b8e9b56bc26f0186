"""`train ildm`: only the LoRA moves, a resumed run is bit-identical, the result is a working pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from spatialgen.ildm.intrinsic_vae import widen_vae
from spatialgen.ildm.pipeline import IntrinsicLDMPipeline
from spatialgen.ildm.training import ILDMTrainConfig, train_ildm
from spatialgen.models import save_pipeline
from spatialgen.scenes import DatasetParams, make_dataset


@pytest.fixture
def setup(tmp_path: Path, tiny_pipe) -> Path:
    save_pipeline(tiny_pipe, tmp_path / "base")
    widen_vae(tiny_pipe.vae).save_pretrained(tmp_path / "ivae")
    make_dataset(tmp_path / "data", DatasetParams(n=16, resolution=32, seed=3, shard_size=16))
    return tmp_path


def _cfg(root: Path, out: str, steps: int) -> ILDMTrainConfig:
    return ILDMTrainConfig(
        data=str(root / "data"),
        out=str(root / out),
        intrinsic_vae=str(root / "ivae"),
        base=str(root / "base"),
        rank=4,
        steps=steps,
        batch_size=4,
        lr=1e-3,
        checkpoint_every=2,
        sample_steps=2,  # the grids are drawn (checked below); their quality is not what this test is about
    )


def test_ildm_training_moves_only_lora_and_resumes_exactly(setup: Path) -> None:
    whole = train_ildm(_cfg(setup, "whole", 4), cpu=True)
    train_ildm(_cfg(setup, "split", 2), cpu=True)
    split = train_ildm(_cfg(setup, "split", 4), resume="latest", cpu=True)
    a = load_file(str(whole / "intrinsic_lora" / "intrinsic_lora.safetensors"))
    b = load_file(str(split / "intrinsic_lora" / "intrinsic_lora.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(v.abs().sum() > 0 for k, v in a.items() if "lora_B" in k)  # B left zero init: it trained
    base_unet = load_file(str(setup / "base" / "unet" / "diffusion_pytorch_model.safetensors"))
    saved_unet = load_file(str(whole / "unet" / "diffusion_pytorch_model.safetensors"))
    assert base_unet.keys() == saved_unet.keys()
    assert all(torch.equal(base_unet[k].float(), saved_unet[k].float()) for k in base_unet)  # base untouched
    assert (setup / "whole" / "samples" / "step-0000004.png").is_file()
    pipe = IntrinsicLDMPipeline.from_pretrained(whole)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a red cube", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.images.shape == (1, 32, 32, 3) and out.intrinsics.normal.shape == (1, 3, 32, 32)
    with_ema = _cfg(setup, "ema", 4)
    with_ema.ema_decay = 0.9
    ema_lora = load_file(str(train_ildm(with_ema, cpu=True) / "intrinsic_lora" / "intrinsic_lora.safetensors"))
    assert any(not torch.equal(ema_lora[k], a[k]) for k in a)  # the shipped weights are the averaged ones
    changed = _cfg(setup, "whole", 6)
    changed.loss_lambda = 0.5
    with pytest.raises(ValueError, match=r"changed: \['loss_lambda'\]"):
        train_ildm(changed, resume="latest", cpu=True)
