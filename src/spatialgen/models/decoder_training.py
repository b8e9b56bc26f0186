"""Fine-tuning a pipeline's VAE decoder with its encoder frozen (``spatialgen train vae-decoder``).

The encoder defines the latent space the UNet (and every LoRA on it) was trained in, so it stays
bit-identical; only ``post_quant_conv`` and the decoder learn. The result drops into the same
pipeline: sharper decoded images, nothing else to retrain. Stable Diffusion's own improved VAEs
were made this way. On the embedded model this matters: its VAE was trained for few steps, and
its round trip loses the shapes the recogniser needs (``benchmarks/embedded_model.py --ceiling-only``).

Training draws posterior samples of the frozen encoder (what the UNet was trained to produce),
minimises pixel MSE, keeps an EMA of the decoder, and checkpoints atomically; a resumed run draws
exactly the batches an uninterrupted one would. The run folder ends with ``pipeline/`` (the input
pipeline with the new decoder, its card recording how) and ``held-out.json`` (reconstruction error
on held-out renders before and after).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.training_utils import EMAModel

from ..fileio import atomic_write_json
from ..scenes.held_out import HELD_OUT_SEED
from ..scenes.spec import SceneConfig
from ..training_harness import open_run, progress, resume_step, save_checkpoint
from .data import SceneTensors, batch_generator, draw_indices, model_scene_config, to_pixels

RESUMABLE_CHANGES = ("steps", "checkpoint_every", "keep_checkpoints", "data", "out")


@dataclass
class DecoderFinetuneConfig:
    """Everything that determines a decoder fine-tuning run (saved as ``config.json`` in the run folder)."""

    data: str
    out: str
    base: str = "embedded"
    steps: int = 3000
    batch_size: int = 32
    lr: float = 3e-4
    ema_decay: float = 0.999
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    max_scenes: int | None = None
    held_out: int = 256
    seed: int = 0

    def validate(self) -> DecoderFinetuneConfig:
        for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints", "held_out"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        return self


def decoder_parameters(vae: AutoencoderKL) -> list[torch.nn.Parameter]:
    """What a decoder fine-tune trains: everything after the latent (``post_quant_conv`` and the decoder)."""
    modules = [vae.decoder] + ([vae.post_quant_conv] if vae.post_quant_conv is not None else [])
    return [p for module in modules for p in module.parameters()]


class _Decoding(torch.nn.Module):
    """The decoder's forward as a module, so that accelerate's DDP wrapper sees what trains."""

    def __init__(self, vae: AutoencoderKL) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents).sample


def held_out_renders(n: int, resolution: int, config: SceneConfig | None = None) -> torch.Tensor:
    """RGB renders (uint8, N x 3 x H x W) of ``n`` scenes of distribution ``config`` (default: the scene
    world's) from the seed no training set uses."""
    from ..scenes import make_sample, scene_seed

    rgb = np.stack([make_sample(scene_seed(HELD_OUT_SEED, i), resolution, config).rgb for i in range(n)])
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(rgb, -1, 1)))


@torch.no_grad()
def reconstruction_mse(vae: AutoencoderKL, images: torch.Tensor, batch: int = 64) -> float:
    """Mean squared error of mean-latent round trips, in [0, 1] pixel units."""
    total = 0.0
    for i in range(0, len(images), batch):
        x = to_pixels(images[i : i + batch]).to(vae.device, vae.dtype)
        recon = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
        total += float(((recon - x) / 2).pow(2).mean()) * len(x)
    return total / len(images)


def _scores(vae: AutoencoderKL, images: torch.Tensor) -> dict[str, float]:
    mse = reconstruction_mse(vae, images)
    return {"mse": mse, "psnr_db": float(10 * np.log10(1 / mse))}


def train_vae_decoder(cfg: DecoderFinetuneConfig, resume: str | None = None, cpu: bool = False) -> Path:
    """Fine-tune (or resume fine-tuning) ``cfg.base``'s decoder; returns the folder of the new pipeline."""
    from accelerate import Accelerator

    from .pipeline import load_pipeline, model_card, save_pipeline, set_model_card

    cfg.validate()
    run = open_run(cfg.out, asdict(cfg), resume, RESUMABLE_CHANGES)
    accelerator = Accelerator(cpu=cpu)
    torch.manual_seed(cfg.seed)
    pipe = load_pipeline(cfg.base)
    vae = pipe.vae.to(accelerator.device, torch.float32)
    data = SceneTensors.from_shards(cfg.data, cfg.max_scenes, progress=accelerator.is_main_process)
    size = vae.config.sample_size
    if data.resolution != size:
        raise ValueError(f"the data are {data.resolution} px but {cfg.base!r}'s VAE is for {size} px")
    card = model_card(pipe)
    held_out = held_out_renders(cfg.held_out, size, model_scene_config(card, max_objects=None))
    before = _scores(vae.eval(), held_out)

    vae.requires_grad_(False)
    params = decoder_parameters(vae)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    ema = EMAModel(params, decay=cfg.ema_decay, use_ema_warmup=True, power=3 / 4)
    start = resume_step(run, resume, {"vae": vae}, optimizer, ema)
    decode, optimizer = accelerator.prepare(_Decoding(vae), optimizer)
    bar = progress("VAE decoder", start, cfg.steps, accelerator.is_main_process)
    for step in bar:
        rng = batch_generator(cfg.seed, step, accelerator.process_index)
        x = to_pixels(data.images[draw_indices(rng, len(data), cfg.batch_size)]).to(accelerator.device)
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        with torch.no_grad():
            posterior = vae.encode(x).latent_dist
            noise = torch.randn(posterior.mean.shape, generator=generator).to(x.device)
            latents = posterior.mean + posterior.std * noise
        loss = F.mse_loss(decode(latents), x)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(params)
        bar.set_postfix(mse=f"{loss.item():.4f}")
        done = step + 1
        if accelerator.is_main_process and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            save_checkpoint(run, "vae", done, {"vae": vae}, optimizer, ema, cfg.keep_checkpoints)
    ema.copy_to(params)
    vae.requires_grad_(False)
    pipe.vae = vae.eval()
    after = _scores(vae, held_out)
    set_model_card(pipe, {**model_card(pipe), "vae_decoder_finetune": asdict(cfg)})
    folder = save_pipeline(pipe, run / "pipeline")
    report: dict[str, Any] = {"held_out": cfg.held_out, "held_out_seed": HELD_OUT_SEED}
    atomic_write_json(run / "held-out.json", {**report, "before": before, "after": after})
    return folder
