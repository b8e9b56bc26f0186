"""Shared fixtures: tiny random SD pipelines (seconds to build, milliseconds to run)."""

from __future__ import annotations

import pytest
import torch

from spatialgen.models import TinySDConfig, build_pipeline

# 32 px images, 16 x 16 latents, a two-level UNet: the smallest model with every SD component.
TINY = TinySDConfig(
    resolution=32,
    vae_channels=(8, 16),
    unet_channels=(16, 32),
    unet_attention_heads=2,
    text_hidden=16,
    text_layers=1,
    text_heads=2,
    text_intermediate=32,
    max_length=24,
)


@pytest.fixture
def tiny_pipe():
    torch.manual_seed(0)
    pipe = build_pipeline(TINY)
    pipe.set_progress_bar_config(disable=True)
    return pipe
