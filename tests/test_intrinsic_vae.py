"""The intrinsic VAE: widened from the base, base-like on grey inputs, masking, packing round trips."""

from __future__ import annotations

import pytest
import torch

from spatialgen.ildm.intrinsic_vae import decode_intrinsics, encode_intrinsics, mask_intrinsics, widen_vae
from spatialgen.intrinsics import PACKED_CHANNELS, Intrinsics
from spatialgen.scenes import make_sample, scene_seed


def test_widened_vae_keeps_the_latent_shape_and_acts_like_the_base_on_grey(tiny_pipe) -> None:
    base = tiny_pipe.vae
    wide = widen_vae(base)
    assert wide.config.in_channels == wide.config.out_channels == PACKED_CHANNELS
    assert base.config.in_channels == 3 and base.encoder.conv_in.in_channels == 3  # the base is untouched
    grey = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        z_base = base.encode(grey.repeat(1, 3, 1, 1)).latent_dist.mean
        z_wide = wide.encode(grey.repeat(1, PACKED_CHANNELS, 1, 1)).latent_dist.mean
        assert z_wide.shape == z_base.shape
        assert torch.allclose(z_wide, z_base, atol=1e-5)
        rgb = base.decode(z_base).sample
        out = wide.decode(z_base).sample
    assert torch.allclose(out, rgb.mean(1, keepdim=True).repeat(1, PACKED_CHANNELS, 1, 1), atol=1e-5)


def test_masking_zeroes_whole_intrinsics_at_the_asked_rate() -> None:
    packed = torch.ones(4000, PACKED_CHANNELS, 2, 2)
    masked = mask_intrinsics(packed, 0.1, torch.Generator().manual_seed(0))
    groups = [(0, 1), (1, 4), (4, 7), (7, 8)]
    for a, b in groups:
        part = masked[:, a:b]
        per_sample = part.flatten(1)
        assert ((per_sample == 0).all(1) | (per_sample == 1).all(1)).all()  # all of an intrinsic or none
        assert 0.08 < (per_sample == 0).all(1).float().mean() < 0.12
    assert torch.equal(mask_intrinsics(packed, 0.0), packed)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        mask_intrinsics(packed, 1.0)


def test_encode_decode_intrinsics_round_trip_the_type(tiny_pipe) -> None:
    vae = widen_vae(tiny_pipe.vae)
    truth = make_sample(scene_seed(0, 3), 32).intrinsics()
    batch = Intrinsics(
        *(torch.from_numpy(getattr(truth, k))[None].float() for k in ("depth", "normal", "segmentation", "lines"))
    )
    latents = encode_intrinsics(vae, batch)
    assert latents.shape == (1, 4, 16, 16)
    decoded = decode_intrinsics(vae, latents)
    assert decoded.depth.shape == (1, 1, 32, 32) and decoded.normal.shape == (1, 3, 32, 32)
    assert float(decoded.pack().abs().max()) <= 1.0
