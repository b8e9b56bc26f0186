"""Training a spatial LoRA (``spatialgen train esplora``): LoRA on the UNet's attention, on spatial captions.

The base's own denoising objective (epsilon or v, min-SNR weighted) on images whose captions state
relations that hold in them. A horizontal flip, when on, mirrors the caption with the image
(:func:`~spatialgen.esplora.captions.mirror_caption`); flipped images are encoded once like the
others. Each step's batch, flips, captions and noise come from (seed, step) alone, so a resumed run
is bit-identical to an uninterrupted one. The result is a diffusers LoRA file that
``pipe.load_lora_weights`` reads, with ``esplora.json`` (base fingerprint, training config).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import atomic_write_json, replace_dir
from ..models.data import batch_generator, draw_indices
from ..models.fingerprint import base_fingerprint
from ..models.training import diffusion_loss, encode_dataset
from ..training_harness import (
    ParameterState,
    adapter_step,
    checkpoint_seconds,
    find_resume,
    open_run,
    progress,
    resume_step,
    save_checkpoint,
)
from .captions import mirror_caption
from .data import CaptionedImages, from_curated, from_folder, from_scenes

RESUMABLE_CHANGES = ("steps", "checkpoint_every", "keep_checkpoints", "out")
ADAPTER = "spatial"
WEIGHTS = "pytorch_lora_weights.safetensors"
CARD = "esplora.json"
UNET_TARGETS = r".*\.attn[12]\.(to_q|to_k|to_v|to_out\.0)$"
TEXT_TARGETS = r".*self_attn\.(q_proj|k_proj|v_proj|out_proj)$"
FLIPS = ("mirror", "off")


@dataclass
class ESPLoRAConfig:
    """Everything that determines a spatial-LoRA run (saved as ``config.json``)."""

    data: list[str]
    out: str
    base: str = "embedded"
    rank: int = 16
    text_encoder_rank: int = 0  # 0: the text encoder stays frozen and LoRA-free
    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-4
    flip: str = "mirror"  # a horizontal flip with its caption mirrored, or no flips
    snr_gamma: float | None = 5.0
    max_items: int | None = None  # per data folder
    exclude_held_out: bool = True
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    seed: int = 0

    def validate(self) -> ESPLoRAConfig:
        if not self.data:
            raise ValueError("pass at least one --data folder (scene dataset, or images with .txt captions)")
        for name in ("rank", "steps", "batch_size", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.text_encoder_rank < 0:
            raise ValueError(f"text_encoder_rank must be >= 0, got {self.text_encoder_rank}")
        if self.flip not in FLIPS:
            raise ValueError(f"flip must be one of {', '.join(FLIPS)}, got {self.flip!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        return self


def load_pairs(folders: list[str], resolution: int, limit: int | None, exclude_held_out: bool) -> CaptionedImages:
    """Every folder's pairs in one set: scene datasets (with a manifest) or image folders with captions."""
    parts = []
    for folder in folders:
        if (Path(folder) / "manifest.json").is_file():
            parts.append(from_scenes(folder, limit, exclude_held_out))
        elif (Path(folder) / "report.json").is_file() and (Path(folder) / "shards").is_dir():
            parts.append(from_curated(folder, resolution, limit, exclude_held_out))
        else:
            parts.append(from_folder(folder, resolution, limit, exclude_held_out))
    sizes = {tuple(p.images.shape[-2:]) for p in parts}
    if sizes != {(resolution, resolution)}:
        raise ValueError(f"the data are {sorted(sizes)} px but the base model draws {resolution} px")
    return CaptionedImages(
        torch.cat([p.images for p in parts]), [c for p in parts for c in p.captions], sum(p.skipped for p in parts)
    )


def add_lora(module: torch.nn.Module, rank: int, targets: str) -> list[torch.nn.Parameter]:
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights="gaussian")
    inject_adapter_in_model(config, module, adapter_name=ADAPTER)
    params = []
    for name, parameter in module.named_parameters():
        trainable = f".lora_A.{ADAPTER}." in name or f".lora_B.{ADAPTER}." in name
        parameter.requires_grad_(trainable)
        if trainable:
            params.append(parameter)
    return params


def draw_batch(
    rng: np.random.Generator, data: CaptionedImages, batch_size: int, flip: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(indices, flipped?, captions) of one step: a caption of each image, mirrored when its image is."""
    idx = draw_indices(rng, len(data), batch_size)
    flipped = rng.random(batch_size) < 0.5 if flip == "mirror" else np.zeros(batch_size, dtype=bool)
    choices = rng.integers(0, 2**31, size=batch_size)
    captions = []
    for i, f, c in zip(idx, flipped, choices, strict=True):
        options = data.captions[int(i)]
        caption = options[int(c) % len(options)]
        captions.append(mirror_caption(caption) if f else caption)
    return idx, flipped, captions


def train_esplora(cfg: ESPLoRAConfig, resume: str | None = None, cpu: bool = False) -> Path:
    """Train (or resume) a spatial LoRA on ``cfg.base``; returns the folder with the LoRA and its card."""
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from peft import get_peft_model_state_dict

    from ..models.pipeline import load_pipeline

    cfg.validate()
    run = open_run(cfg.out, asdict(cfg), resume, RESUMABLE_CHANGES)
    accelerator = Accelerator(cpu=cpu)
    torch.manual_seed(cfg.seed)
    pipe = load_pipeline(cfg.base, device=accelerator.device)
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.requires_grad_(False)
    fingerprint = base_fingerprint(pipe.unet)
    params = add_lora(pipe.unet, cfg.rank, UNET_TARGETS)
    if cfg.text_encoder_rank:
        params += add_lora(pipe.text_encoder, cfg.text_encoder_rank, TEXT_TARGETS)
    holder = ParameterState(params)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2)
    start = resume_step(run, resume, {"lora": holder}, optimizer, None)
    seconds = checkpoint_seconds(find_resume(run, resume))
    resolution = pipe.unet.config.sample_size * pipe.vae_scale_factor
    data = load_pairs(cfg.data, resolution, cfg.max_items, cfg.exclude_held_out)
    means, stds = encode_dataset(pipe.vae, data.images, accelerator.device)
    if cfg.flip == "mirror":
        flipped_means, flipped_stds = encode_dataset(pipe.vae, data.images.flip(-1), accelerator.device)
    scale = pipe.vae.config.scaling_factor
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    optimizer = accelerator.prepare(optimizer)
    pipe.unet.train()
    clock = time.perf_counter()
    bar = progress("ESPLoRA", start, cfg.steps, accelerator.is_main_process)
    for step in bar:
        rng = batch_generator(cfg.seed + 4, step, accelerator.process_index)
        idx, flipped, captions = draw_batch(rng, data, cfg.batch_size, cfg.flip)
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        mean, std = means[idx], stds[idx]
        if flipped.any():
            rows = torch.from_numpy(flipped)
            mean = torch.where(rows[:, None, None, None], flipped_means[idx], mean)
            std = torch.where(rows[:, None, None, None], flipped_stds[idx], std)
        latents = (mean + std * torch.randn(mean.shape, generator=gen)) * scale
        loss, per_sample = diffusion_loss(
            pipe.unet,
            pipe.text_encoder,
            pipe.tokenizer,
            noise_scheduler,
            latents.to(accelerator.device),
            captions,
            gen,
            cfg.snr_gamma,
        )
        adapter_step(accelerator, loss, params, optimizer)
        bar.set_postfix(loss=f"{per_sample.mean().item():.4f}")
        done = step + 1
        if accelerator.is_main_process and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            elapsed = seconds + time.perf_counter() - clock
            save_checkpoint(run, "diffusion", done, {"lora": holder}, optimizer, None, cfg.keep_checkpoints, elapsed)
    seconds += time.perf_counter() - clock
    folder = run / "lora"
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return folder
    from diffusers import StableDiffusionPipeline

    unet_state = {k: v.detach().cpu() for k, v in get_peft_model_state_dict(pipe.unet, adapter_name=ADAPTER).items()}
    text_state = None
    if cfg.text_encoder_rank:
        text_state = {
            k: v.detach().cpu() for k, v in get_peft_model_state_dict(pipe.text_encoder, adapter_name=ADAPTER).items()
        }
    with replace_dir(folder) as tmp:
        StableDiffusionPipeline.save_lora_weights(
            tmp, unet_lora_layers=unet_state, text_encoder_lora_layers=text_state, weight_name=WEIGHTS
        )
        atomic_write_json(
            tmp / CARD,
            {
                "base": {"model": cfg.base, "fingerprint": fingerprint},
                "training": asdict(cfg),
                "images": len(data),
                "pairs": sum(len(c) for c in data.captions),  # image-caption pairs: each true caption of each image
                "skipped_without_spatial_caption": data.skipped,
                "training_seconds": round(seconds, 1),
                "parameters": sum(p.numel() for p in params),
            },
        )
    return folder


def read_card(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    import json

    path = Path(folder) / CARD
    return json.loads(path.read_text()) if path.is_file() else None
