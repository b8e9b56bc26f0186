"""Shared fixtures: tiny random SD pipelines (seconds to build, milliseconds to run)."""

from __future__ import annotations

import os

import pytest
import torch

# Under `pytest -n 2` each worker gets one torch thread: two workers with torch's default thread
# count each would oversubscribe a 2-core machine (the suite ran 2.2x slower that way).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

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
