"""The intrinsic VAE (I-LDM, section 3.2): the base AutoencoderKL widened to the 8 packed intrinsic channels.

Depth (1) + normals (3) + segmentation (3) + lines (1), each in [-1, 1]
(:meth:`spatialgen.intrinsics.Intrinsics.pack`), go through one VAE whose latent has the base
model's shape, so the intrinsic latents can share the UNet with the image latents.

Initialisation keeps the base VAE's behaviour on grey inputs: each of the 8 input channels of
``conv_in`` gets the sum of the base's 3 RGB filters divided by 8 (a grey image repeated over 8
channels then encodes as it did over 3), and each output channel of ``conv_out`` gets the mean of
the base's RGB output filters. Fine-tuning then only has to learn what differs.

Training masks inputs: each intrinsic is zeroed with probability ``mask_p`` (0.1 in the paper)
in the input only, the reconstruction target keeps it, so the VAE learns to fill a missing
intrinsic from the others.
"""

from __future__ import annotations

import copy

import torch
from diffusers import AutoencoderKL

from ..intrinsics import INTRINSIC_CHANNELS, PACKED_CHANNELS, Intrinsics


def _widen_conv(
    conv: torch.nn.Conv2d, in_channels: int | None = None, out_channels: int | None = None
) -> torch.nn.Conv2d:
    new = torch.nn.Conv2d(
        in_channels or conv.in_channels,
        out_channels or conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        bias=conv.bias is not None,
    ).to(conv.weight.device, conv.weight.dtype)
    with torch.no_grad():
        weight = conv.weight
        if in_channels is not None:
            weight = weight.sum(1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels
        if out_channels is not None:
            weight = weight.mean(0, keepdim=True).repeat(out_channels, 1, 1, 1)
        new.weight.copy_(weight)
        if conv.bias is not None:
            bias = conv.bias if out_channels is None else conv.bias.mean().repeat(out_channels)
            new.bias.copy_(bias)
    return new


def widen_vae(base: AutoencoderKL, channels: int = PACKED_CHANNELS) -> AutoencoderKL:
    """A copy of ``base`` that encodes and decodes ``channels`` channels; the base is left untouched."""
    if base.config.in_channels != 3 or base.config.out_channels != 3:
        raise ValueError(f"expected an RGB AutoencoderKL to widen, got {base.config.in_channels} input channels")
    vae = copy.deepcopy(base)
    vae.encoder.conv_in = _widen_conv(base.encoder.conv_in, in_channels=channels)
    vae.decoder.conv_out = _widen_conv(base.decoder.conv_out, out_channels=channels)
    vae.register_to_config(in_channels=channels, out_channels=channels)
    return vae


def mask_intrinsics(packed: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero each intrinsic of each sample with probability ``p`` (the VAE's input only; the target keeps it)."""
    if not 0 <= p < 1:
        raise ValueError(f"mask probability must be in [0, 1), got {p}")
    if packed.shape[1] != PACKED_CHANNELS:
        raise ValueError(f"expected packed intrinsics with {PACKED_CHANNELS} channels, got {tuple(packed.shape)}")
    keep = (torch.rand(packed.shape[0], len(INTRINSIC_CHANNELS), generator=generator) >= p).to(packed.dtype)
    sizes = torch.tensor(list(INTRINSIC_CHANNELS.values()))
    per_channel = keep.repeat_interleave(sizes, dim=1).to(packed.device)
    return packed * per_channel[:, :, None, None]


@torch.no_grad()
def encode_intrinsics(
    vae: AutoencoderKL, intrinsics: Intrinsics, sample: bool = False, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Scaled latents (like the image VAE's: times ``scaling_factor``) of a batch of intrinsics."""
    packed = intrinsics.pack().to(vae.device, vae.dtype)
    dist = vae.encode(packed).latent_dist
    latents = dist.sample(generator) if sample else dist.mean
    return latents * vae.config.scaling_factor


@torch.no_grad()
def decode_intrinsics(vae: AutoencoderKL, latents: torch.Tensor) -> Intrinsics:
    """Intrinsics in [0, 1] (the project convention) from scaled latents."""
    packed = vae.decode(latents.to(vae.device, vae.dtype) / vae.config.scaling_factor).sample
    return Intrinsics.unpack(packed.float())
