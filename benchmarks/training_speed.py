"""Seconds per training step of embedded-model variants on this machine (the cost side of every lever).

    python benchmarks/training_speed.py vae  --channels 16 32 64 --channels 32 64 64 --latent 4 8
    python benchmarks/training_speed.py unet --channels 64 128 128 --channels 96 192 192 --layers 1 2 --bf16

Each variant is built from :class:`spatialgen.models.config.TinySDConfig`, warmed up, then timed over
``--steps`` AdamW steps at ``--batch`` (median), on random inputs of the real shapes: the VAE on
64 x 64 images with the ``l1_sobel`` loss, the UNet + text encoder on 16 x 16 latents with the
denoising loss. Prints one line per variant, with its parameter count.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch

from spatialgen.models.config import TinySDConfig
from spatialgen.models.pipeline import build_pipeline
from spatialgen.models.training import diffusion_loss
from spatialgen.models.vae_losses import reconstruction_loss


def _time(step, steps: int) -> float:
    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def vae_step(config: TinySDConfig, batch: int, bf16: bool):
    vae = build_pipeline(config).vae.train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, config.resolution, config.resolution) * 2 - 1

    def step() -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            recon = vae(x, sample_posterior=True).sample
        reconstruction_loss(recon.float(), x, "l1_sobel").backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, sum(p.numel() for p in vae.parameters())


def unet_step(config: TinySDConfig, batch: int, bf16: bool):
    from diffusers import DDPMScheduler

    pipe = build_pipeline(config)
    params = list(pipe.unet.parameters()) + list(pipe.text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    latents = torch.randn(batch, config.latent_channels, config.latent_size, config.latent_size)
    prompts = ["a red cube to the left of a blue sphere on the grass"] * batch
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss, _ = diffusion_loss(
                pipe.unet, pipe.text_encoder, pipe.tokenizer, scheduler, latents, prompts, generator, 5.0
            )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, sum(p.numel() for p in pipe.unet.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("vae", "unet"))
    parser.add_argument("--channels", type=int, nargs="+", action="append", help="block widths (repeatable)")
    parser.add_argument("--layers", type=int, nargs="+", default=[1], help="layers per block")
    parser.add_argument("--latent", type=int, nargs="+", default=[4], help="latent channels")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="also time bf16 autocast")
    args = parser.parse_args()
    torch.manual_seed(0)
    widths = args.channels or ([[16, 32, 64]] if args.part == "vae" else [[64, 128, 128]])
    precisions = (False, True) if args.bf16 else (False,)
    for channels, layers, latent, bf16 in itertools.product(widths, args.layers, args.latent, precisions):
        key = "vae" if args.part == "vae" else "unet"
        config = TinySDConfig(
            **{f"{key}_channels": tuple(channels), f"{key}_layers_per_block": layers}, latent_channels=latent
        ).validate()
        step, n = (vae_step if args.part == "vae" else unet_step)(config, args.batch, bf16)
        seconds = _time(step, args.steps)
        print(
            f"{args.part} channels {channels} layers {layers} latent {latent} {'bf16' if bf16 else 'fp32'}: "
            f"{n / 1e6:.2f} M parameters, {seconds:.3f} s/step at batch {args.batch}",
            flush=True,
        )


if __name__ == "__main__":
    main()
