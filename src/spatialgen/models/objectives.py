"""What a denoiser is trained to output, for the prediction types diffusers' schedulers sample with.

Every trainer that adds noise (the base, I-LDM's joint loss, Intrinsic LoRA's augmented variant,
ESPLoRA) takes its regression target from here, so a v-prediction base (the embedded model v2, SD
2.x at 768 px) is never fine-tuned toward epsilon, which its sampler would then read as a velocity.
"""

from __future__ import annotations

from typing import Any

import torch


def denoising_target(scheduler: Any, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """The UNet's regression target for ``scheduler.add_noise(clean, noise, timesteps)``."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(clean, noise, timesteps)
    if kind == "sample":
        return clean
    raise ValueError(f"cannot train a model with prediction_type {kind!r}; use 'epsilon', 'v_prediction' or 'sample'")
