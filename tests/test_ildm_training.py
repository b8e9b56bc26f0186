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


def _clean_domain_batch(p_image: float, p_intrinsic: float, p_independent: float = 0.0):
    """One joint_loss call on a tiny model; returns (loss terms, what the UNet was fed, x0, i0)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from spatialgen.ildm import install_cross_domain
    from spatialgen.ildm.training import joint_loss

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(16, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    state = install_cross_domain(unet, rank=4, placement=("self-attention", "resnets"))
    fed = {}

    def record(module, args, kwargs):
        fed["x"], fed["t"] = args[0].clone(), args[1].clone()

    unet.register_forward_pre_hook(record, with_kwargs=True)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    g = torch.Generator().manual_seed(1)
    x0, i0 = torch.randn(64, 4, 8, 8, generator=g), torch.randn(64, 4, 8, 8, generator=g)
    text = torch.randn(64, 5, 16, generator=g)
    generator = torch.Generator().manual_seed(2)
    terms = joint_loss(unet, state, scheduler, x0, i0, text, generator, 1.0, p_image, p_intrinsic, p_independent)
    return terms, fed, x0, i0


def test_a_clean_domain_is_fed_as_it_is_at_timestep_zero_and_has_no_loss() -> None:
    (loss, image_term, intrinsic_term), fed, x0, i0 = _clean_domain_batch(0.3, 0.3)
    t_image, t_intrinsic = fed["t"][:64], fed["t"][64:]
    image_clean, intrinsic_clean = t_image == 0, t_intrinsic == 0
    assert 5 < image_clean.sum() < 35 and 5 < intrinsic_clean.sum() < 35  # about 30% each of 64 pairs
    assert not torch.any(image_clean & intrinsic_clean)  # never both: that pair would teach nothing
    assert torch.equal(fed["x"][:64][image_clean], x0[image_clean])
    assert torch.equal(fed["x"][64:][intrinsic_clean], i0[intrinsic_clean])
    noised = ~image_clean & ~intrinsic_clean
    assert torch.equal(t_image[noised], t_intrinsic[noised])  # joint pairs share their timestep
    assert not torch.allclose(fed["x"][:64][~image_clean], x0[~image_clean])
    loss.backward()  # and the loss reaches the LoRA through both terms
    # all pairs clean on one side: that side's term is exactly 0
    (_, image_term, intrinsic_term), _, _, _ = _clean_domain_batch(1.0, 0.0)
    assert image_term.item() == 0.0 and intrinsic_term.item() > 0


def test_clean_domain_shares_are_validated(setup: Path) -> None:
    cfg = _cfg(setup, "bad", 2)
    cfg.p_image_clean, cfg.p_intrinsic_clean = 0.6, 0.5
    with pytest.raises(ValueError, match="sum to less than 1"):
        cfg.validate()


def test_independent_pairs_draw_their_own_intrinsic_timestep() -> None:
    _, fed, _, _ = _clean_domain_batch(0.0, 0.0)
    assert torch.equal(fed["t"][:64], fed["t"][64:])  # Eq. 5: one timestep per pair
    (loss, image_term, intrinsic_term), fed, x0, _ = _clean_domain_batch(0.2, 0.0, 0.5)
    t_image, t_intrinsic = fed["t"][:64], fed["t"][64:]
    differ = (t_image != t_intrinsic) & (t_image > 0)
    assert 15 < differ.sum() < 50  # about half of the pairs, less the rare equal draws
    assert torch.all(t_intrinsic > 0)  # no pair holds its maps clean here
    assert torch.equal(fed["x"][:64][t_image == 0], x0[t_image == 0])  # the clean share still holds
    assert image_term > 0 and intrinsic_term > 0


def test_coarse_intrinsics_keep_palette_colours_in_blocks_and_the_mean_depth() -> None:
    import numpy as np

    from spatialgen.ildm.training import coarsen_intrinsics
    from spatialgen.ildm.vae_training import packed_to_uint8
    from spatialgen.scenes import make_sample, scene_seed

    samples = [make_sample(scene_seed(5, i), 32) for i in range(3)]
    packed = torch.from_numpy(np.stack([packed_to_uint8(s.intrinsics().pack()) for s in samples]))
    assert coarsen_intrinsics(packed, 32) is packed  # an estimator at full resolution changes nothing
    coarse = coarsen_intrinsics(packed, 8)
    assert coarse.shape == packed.shape and coarse.dtype == torch.uint8
    seg, seg_before = coarse[:, 4:7], packed[:, 4:7]
    blocks = seg.unflatten(-1, (8, 4)).unflatten(-3, (8, 4))  # (N, 3, 8, 4, 8, 4)
    assert torch.equal(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))  # constant over each 4 x 4 block
    colours = lambda t: {tuple(c) for c in t.permute(0, 2, 3, 1).reshape(-1, 3).tolist()}  # noqa: E731
    assert colours(seg) <= colours(seg_before)  # no blended segment colours
    depth, depth_before = coarse[:, 0].float(), packed[:, 0].float()
    assert abs(depth.mean() - depth_before.mean()) < 1.0  # in uint8 levels: area down, bilinear up
    assert (depth - depth_before).abs().max() > 10  # object edges blur
    with pytest.raises(ValueError, match="intrinsic_resolution must be positive"):
        ILDMTrainConfig(data="d", out="o", intrinsic_vae="v", intrinsic_resolution=0).validate()
