"""Fine-tuning the intrinsic VAE on exact scene-world intrinsics (``spatialgen train intrinsic-vae``).

Reconstruction (MSE on the packed [-1, 1] channels) plus a light KL term, with each intrinsic of
the input zeroed with probability ``mask_p``; under accelerate, with atomic checkpoints, and a
resumed run draws exactly the batches an uninterrupted one would (batches are a function of
(seed, step)). The result is an ``AutoencoderKL`` folder with its latent scaling factor measured
on the training data, like the image VAE's.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..fileio import atomic_write_json, replace_dir
from ..intrinsics import INTRINSIC_CHANNELS, PACKED_CHANNELS
from ..models.data import batch_generator, draw_indices
from ..models.vae_losses import kl_divergence
from ..scenes.held_out import HELD_OUT_SEED
from ..training_harness import checkpoint_seconds, find_resume, open_run, progress, resume_step, save_checkpoint
from .intrinsic_vae import mask_intrinsics, widen_vae

RESUMABLE_CHANGES = ("steps", "checkpoint_every", "keep_checkpoints", "data", "out")


@dataclass
class IntrinsicVAEConfig:
    """Everything that determines an intrinsic-VAE run (saved as ``config.json`` in the run folder)."""

    data: str
    out: str
    base: str = "embedded"
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-4
    mask_p: float = 0.1
    kl_weight: float = 1e-6
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    max_scenes: int | None = 10000
    held_out: int = 256
    seed: int = 0

    def validate(self) -> IntrinsicVAEConfig:
        for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.mask_p < 1:
            raise ValueError(f"mask_p must be in [0, 1), got {self.mask_p}")
        return self


def packed_to_uint8(packed: np.ndarray) -> np.ndarray:
    return np.round((np.clip(packed, -1, 1) + 1) * 127.5).astype(np.uint8)


def uint8_to_packed(stored: torch.Tensor) -> torch.Tensor:
    return stored.float() / 127.5 - 1.0


def load_packed_intrinsics(root: str | os.PathLike[str], limit: int | None = None) -> torch.Tensor:
    """Every scene's packed intrinsics (N, 8, H, W) as uint8 (a quarter of float32's memory)."""
    from ..intrinsic_shards import open_dataset

    shards = open_dataset(root)
    n = len(shards) if limit is None else min(limit, len(shards))
    if n == 0:
        raise ValueError(f"the dataset at {str(root)!r} holds no scenes; make one with `spatialgen scenes make`")
    out = torch.empty((n, PACKED_CHANNELS, shards.resolution, shards.resolution), dtype=torch.uint8)
    for i in tqdm(range(n), desc="loading intrinsics", unit="scene"):
        out[i] = torch.from_numpy(packed_to_uint8(shards[i].intrinsics().pack()))
    shards.close()
    return out


def reconstruction_errors(vae: Any, packed: torch.Tensor, batch: int = 128) -> dict[str, float]:
    """Mean squared error per intrinsic, in [0, 1] units (the convention's range), of mean-latent reconstructions."""
    errors = {name: 0.0 for name in INTRINSIC_CHANNELS}
    bounds, start = {}, 0
    for name, size in INTRINSIC_CHANNELS.items():
        bounds[name] = (start, start + size)
        start += size
    with torch.no_grad():
        for i in range(0, len(packed), batch):
            x = packed[i : i + batch].to(vae.device, vae.dtype)
            recon = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
            for name, (a, b) in bounds.items():
                errors[name] += float(((recon[:, a:b] - x[:, a:b]) / 2).pow(2).mean()) * len(x)
    return {f"{name}_mse": value / len(packed) for name, value in errors.items()}


def train_intrinsic_vae(cfg: IntrinsicVAEConfig, resume: str | None = None, cpu: bool = False) -> Path:
    """Train (or resume) the intrinsic VAE; returns the folder of the finished ``AutoencoderKL``."""
    from accelerate import Accelerator

    from .training import load_base_pipeline

    cfg.validate()
    run = open_run(cfg.out, asdict(cfg), resume, RESUMABLE_CHANGES)
    accelerator = Accelerator(cpu=cpu)
    torch.manual_seed(cfg.seed)
    vae = widen_vae(load_base_pipeline(cfg.base).vae.float())  # SD, SDXL or PixArt-alpha
    data = load_packed_intrinsics(cfg.data, cfg.max_scenes)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    start = resume_step(run, resume, {"vae": vae}, optimizer, None)
    seconds = checkpoint_seconds(find_resume(run, resume))  # training time of earlier sessions of this run
    vae, optimizer = accelerator.prepare(vae, optimizer)
    model = accelerator.unwrap_model(vae)
    model.train()
    bar = progress("intrinsic VAE", start, cfg.steps, accelerator.is_main_process)
    clock = time.perf_counter()
    for step in bar:
        rng = batch_generator(cfg.seed, step, accelerator.process_index)
        target = uint8_to_packed(data[draw_indices(rng, len(data), cfg.batch_size)]).to(accelerator.device)
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        posterior = model.encode(mask_intrinsics(target, cfg.mask_p, generator)).latent_dist
        recon = model.decode(posterior.sample(generator=generator)).sample
        rec = F.mse_loss(recon, target)
        loss = rec + cfg.kl_weight * kl_divergence(posterior.mean, posterior.logvar)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(mse=f"{rec.item():.4f}")
        done = step + 1
        if accelerator.is_main_process and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            elapsed = seconds + time.perf_counter() - clock
            save_checkpoint(run, "vae", done, {"vae": model}, optimizer, None, cfg.keep_checkpoints, elapsed)
    model.eval()
    with torch.no_grad():
        sample = uint8_to_packed(data[:2048]).to(model.device)
        scale = float(1.0 / model.encode(sample).latent_dist.mean.std())
    model.register_to_config(scaling_factor=scale)
    folder = run / "intrinsic_vae"
    with replace_dir(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
    metrics = reconstruction_errors(model, held_out_packed(cfg.held_out, data.shape[-1]))
    record = {**metrics, "held_out": cfg.held_out, "held_out_seed": HELD_OUT_SEED}
    atomic_write_json(run / "held-out.json", {**record, "training_seconds": seconds + time.perf_counter() - clock})
    return folder


def held_out_packed(n: int, resolution: int) -> torch.Tensor:
    """Packed intrinsics of ``n`` scenes from the held-out seed no training set uses."""
    from ..scenes import make_sample, scene_seed

    arrays = [make_sample(scene_seed(HELD_OUT_SEED, i), resolution).intrinsics().pack() for i in range(n)]
    return torch.from_numpy(np.stack(arrays)).float()
