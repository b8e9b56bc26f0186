"""I-LDM on SDXL and PixArt-alpha layouts (tiny random models built from configs): exact at w = 0 against
diffusers' own pipelines, trained a few steps, saved, reloaded and sampled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    PixArtAlphaPipeline,
    PixArtTransformer2DModel,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

from spatialgen.ildm import ConstantSchedule, lora_parameters
from spatialgen.ildm.intrinsic_vae import widen_vae
from spatialgen.ildm.pipeline import IntrinsicLDMPipeline, IntrinsicLDMPixArtPipeline, IntrinsicLDMXLPipeline
from spatialgen.ildm.training import ILDMTrainConfig, train_ildm
from spatialgen.models import build_pipeline

from .conftest import TINY


def _clip(tokenizer, projection: bool = False):
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=16,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def tiny_sdxl() -> StableDiffusionXLPipeline:
    torch.manual_seed(0)
    sd = build_pipeline(TINY)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        cross_attention_dim=32,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=16 + 6 * 8,
        norm_num_groups=8,
    ).eval()
    scheduler = DDIMScheduler.from_config(sd.scheduler.config)
    return StableDiffusionXLPipeline(
        vae=sd.vae,
        text_encoder=_clip(sd.tokenizer),
        text_encoder_2=_clip(sd.tokenizer, projection=True),
        tokenizer=sd.tokenizer,
        tokenizer_2=sd.tokenizer,
        unet=unet,
        scheduler=scheduler,
    )


def tiny_pixart() -> PixArtAlphaPipeline:
    torch.manual_seed(0)
    sd = build_pipeline(TINY)
    t5 = T5EncoderModel(
        T5Config(vocab_size=len(sd.tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    ).eval()
    transformer = PixArtTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        cross_attention_dim=16,
        sample_size=16,
        patch_size=2,
        caption_channels=16,
        norm_type="ada_norm_single",
        use_additional_conditions=False,
    ).eval()
    scheduler = DDIMScheduler.from_config(sd.scheduler.config)
    return PixArtAlphaPipeline(
        tokenizer=sd.tokenizer, text_encoder=t5, vae=sd.vae, transformer=transformer, scheduler=scheduler
    )


BUILDERS = {"sdxl": (tiny_sdxl, IntrinsicLDMXLPipeline), "pixart": (tiny_pixart, IntrinsicLDMPixArtPipeline)}


def _sample(pipe, base: bool = False, **kwargs):
    extra = {"use_resolution_binning": False} if base and isinstance(pipe, PixArtAlphaPipeline) else {}
    return pipe(
        ["a red cube", "a blue sphere"],
        num_inference_steps=3,
        guidance_scale=4.0,
        height=32,
        width=32,
        generator=torch.Generator().manual_seed(7),
        output_type="np",
        **extra,
        **kwargs,
    )


@pytest.mark.parametrize("family", ["sdxl", "pixart"])
def test_weight_zero_reproduces_the_base_pipeline_of_each_family(family: str) -> None:
    build, expected_class = BUILDERS[family]
    base = build()
    base.set_progress_bar_config(disable=True)
    ours = IntrinsicLDMPipeline.from_base(build(), widen_vae(base.vae), rank=4)
    assert type(ours) is expected_class
    ours.set_progress_bar_config(disable=True)
    torch.manual_seed(1)
    for p in lora_parameters(ours.denoiser):
        p.data.normal_(0, 0.3)
    expected = _sample(base, base=True).images
    out = _sample(ours, schedule=ConstantSchedule(0.0))
    assert np.abs(out.images - expected).max() < 1e-5
    assert out.intrinsics.normal.shape == (2, 3, 32, 32)
    mixed = _sample(ours, schedule=ConstantSchedule(1.0)).images
    assert np.abs(mixed - expected).max() > 1e-3  # at w = 1 the intrinsic domain reaches the image
    with pytest.raises(ValueError, match="supports SD 1.x / 2.x backbones"):
        from spatialgen.guidance.config import InfSplignConfig

        _sample(ours, spatial_guidance=InfSplignConfig())


@pytest.mark.parametrize("family", ["sdxl", "pixart"])
def test_each_family_trains_on_extracted_real_images_saves_reloads_and_samples(family: str, tmp_path: Path) -> None:
    """The paper's loop on real data, in miniature: images + captions -> extracted shards -> intrinsic VAE ->
    I-LDM on the backbone -> a saved pipeline that reloads as its own class and samples."""
    from PIL import Image

    from spatialgen.extraction import ExtractionSettings, extract_dataset
    from spatialgen.ildm.vae_training import IntrinsicVAEConfig, train_intrinsic_vae

    build, expected_class = BUILDERS[family]
    build().save_pretrained(tmp_path / "base", safe_serialization=True)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (36, 40, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
        (photos / f"p{i}.txt").write_text(f"a photo of thing {i}")
    settings = ExtractionSettings(resolution=32, depth="scenes", normal="from-depth", lines="edges")
    extract_dataset(photos, tmp_path / "data", settings)
    vae_cfg = IntrinsicVAEConfig(
        data=str(tmp_path / "data"),
        out=str(tmp_path / "ivae"),
        base=str(tmp_path / "base"),
        steps=1,
        batch_size=2,
        checkpoint_every=1,
        held_out=2,
    )
    intrinsic_vae = train_intrinsic_vae(vae_cfg, cpu=True)
    cfg = ILDMTrainConfig(
        data=str(tmp_path / "data"),
        out=str(tmp_path / "run"),
        intrinsic_vae=str(intrinsic_vae),
        base=str(tmp_path / "base"),
        rank=4,
        steps=2,
        batch_size=2,
        lr=1e-3,
        checkpoint_every=2,
        sample_steps=2,
    )
    folder = train_ildm(cfg, cpu=True)
    pipe = IntrinsicLDMPipeline.from_pretrained(folder)  # the saved class is found from the folder
    assert type(pipe) is expected_class
    assert any(v.abs().sum() > 0 for k, v in pipe.denoiser.state_dict().items() if "lora_B" in k)  # it trained
    pipe.set_progress_bar_config(disable=True)
    out = _sample(pipe)
    assert out.images.shape == (2, 32, 32, 3) and np.isfinite(out.images).all()
    assert out.intrinsics.depth.shape == (2, 1, 32, 32)
