"""Every trainer regresses the target of the base's prediction type (a v-prediction base is never taught epsilon)."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from spatialgen.ildm.training import joint_loss
from spatialgen.models.objectives import denoising_target


def _scheduler(kind: str) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, prediction_type=kind)


def test_targets_are_the_known_quantities_of_each_prediction_type() -> None:
    clean, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    t = torch.tensor([10, 900])
    assert torch.equal(denoising_target(_scheduler("epsilon"), clean, noise, t), noise)
    assert torch.equal(denoising_target(_scheduler("sample"), clean, noise, t), clean)
    a = _scheduler("v_prediction").alphas_cumprod[t].view(-1, 1, 1, 1)
    expected = a.sqrt() * noise - (1 - a).sqrt() * clean  # v = sqrt(a) eps - sqrt(1 - a) x0 (Salimans & Ho)
    torch.testing.assert_close(denoising_target(_scheduler("v_prediction"), clean, noise, t), expected)
    bad = _scheduler("epsilon")
    bad.register_to_config(prediction_type="flow")
    with pytest.raises(ValueError, match="prediction_type 'flow'"):
        denoising_target(bad, clean, noise, t)


class _Oracle(torch.nn.Module):
    """A 'UNet' that outputs the exact target of its prediction type, knowing the clean latents of the batch."""

    def __init__(self, scheduler: DDPMScheduler, clean: torch.Tensor) -> None:
        super().__init__()
        self.scheduler, self.clean = scheduler, clean

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, encoder_hidden_states: torch.Tensor):
        a = self.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
        noise = (noisy - a.sqrt() * self.clean) / (1 - a).sqrt()
        return type("Out", (), {"sample": denoising_target(self.scheduler, self.clean, noise, t)})()


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_ildm_joint_loss_is_zero_for_a_perfect_denoiser_of_the_bases_prediction_type(kind: str) -> None:
    scheduler = _scheduler(kind)
    x0, i0 = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    state = type("State", (), {"schedule": None, "layout": None})()
    oracle = _Oracle(scheduler, torch.cat([x0, i0]))
    loss, image, intrinsic = joint_loss(
        oracle, state, scheduler, x0, i0, torch.zeros(3, 5, 8), torch.Generator().manual_seed(0), 1.0
    )
    assert loss.item() < 1e-8 and image.item() < 1e-8 and intrinsic.item() < 1e-8
    assert state.layout is None  # the joint layout is only set for the call
