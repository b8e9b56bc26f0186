"""Training the embedded model from scratch: the VAE first, then text encoder + UNet jointly.

``spatialgen train base --data DIR --out RUN`` runs both stages under accelerate. A run folder
holds:

* ``config.json``: the :class:`BaseTrainConfig` (the one command that reproduces the run);
* ``checkpoints/<stage>-<step>/``: atomic checkpoints (weights and EMA as safetensors, the
  optimizer, the step, the stage's training seconds); ``--resume latest`` continues from the
  newest one, drawing exactly the batches an uninterrupted run would have drawn (the harness:
  :mod:`spatialgen.training_harness`);
* ``snapshots/step-<N>/``: with ``snapshot_every``, the EMA weights every N steps (fp16), for
  ``benchmarks/learning_curve.py``;
* ``vae/``: the finished VAE, with its latent scaling factor measured on the data;
* ``samples/``: sample grids from the EMA weights at every checkpoint;
* ``pipeline/``: the finished ``StableDiffusionPipeline`` (EMA weights), loadable with
  ``--model RUN/pipeline``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from ..fileio import atomic_write_json, replace_dir
from ..scenes.captions import DEFAULT_CAPTION_MIX, check_caption_mix
from ..training_harness import (
    checkpoint_seconds,
    find_resume,
    load_checkpoint,
    lr_lambda,
    open_run,
    progress,
    save_checkpoint,
    save_snapshot,
)
from .config import TinySDConfig
from .data import SceneTensors, batch_generator, draw_captions, draw_indices, to_pixels
from .objectives import denoising_target
from .pipeline import build_pipeline, save_pipeline, set_model_card
from .vae_losses import VAE_LOSSES, kl_divergence, reconstruction_loss

logger = logging.getLogger(__name__)

STAGES = ("vae", "diffusion")
# Settings a resumed run may change: training longer or shorter, checkpointing more or less often,
# and where the data and the run folder live (a run may be moved to another machine).
RESUMABLE_CHANGES = (
    "diffusion_steps",
    "checkpoint_every",
    "keep_checkpoints",
    "snapshot_every",
    "sample_steps",
    "data",
    "out",
)
LR_SCHEDULES = ("constant", "cosine")
MIXED_PRECISION = ("no", "bf16")
SAMPLE_PROMPTS = (
    "a red cube on a checkered floor",
    "a blue sphere on the grass",
    "a large yellow cylinder and a small green cone on a wooden floor",
    "two purple cubes on a stone floor",
    "a cyan sphere to the left of a brown cube",
    "a gray cone and a red sphere on the grass",
    "three spheres on a checkered floor",
    "a large blue cube on a wooden floor",
)


@dataclass
class BaseTrainConfig:
    """Everything that determines a base-model training run (saved as ``config.json``)."""

    data: str
    out: str
    model: dict[str, Any] = field(default_factory=lambda: TinySDConfig().to_dict())
    vae_steps: int = 2000
    diffusion_steps: int = 4000
    batch_size: int = 32
    # The VAE stage's batch (None: batch_size); a VAE step costs about as much as a UNet step at the
    # same batch on a CPU, and reconstruction gains more from steps than from batch size.
    vae_batch_size: int | None = None
    vae_lr: float = 1e-3
    diffusion_lr: float = 3e-4
    warmup_steps: int = 200
    kl_weight: float = 1e-6
    caption_mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CAPTION_MIX))
    caption_dropout: float = 0.1
    ema_decay: float = 0.999
    snr_gamma: float | None = 5.0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    max_scenes: int | None = None
    seed: int = 0
    # Drop relational captions of the scene world's evaluation split (spatialgen.scenes.held_out).
    exclude_held_out: bool = True
    # The VAE's reconstruction term (spatialgen.models.vae_losses): "mse" or "l1_sobel".
    vae_loss: str = "mse"
    # Learning rate after the linear warm-up, in both stages: "constant", or "cosine" decay to 0 at the stage's end.
    lr_schedule: str = "constant"
    # "bf16" runs the diffusion stage's forward passes under bf16 autocast (pays for larger models on CPUs with
    # AMX and on GPUs); vae_mixed_precision does the same for the VAE stage (1.3x faster for the embedded VAE here).
    mixed_precision: str = "no"
    vae_mixed_precision: str = "no"
    # Keep the EMA weights every this many diffusion steps in snapshots/, for learning curves (None: no snapshots).
    snapshot_every: int | None = None
    # Denoising steps of the sample grids drawn at each checkpoint.
    sample_steps: int = 25

    def validate(self) -> BaseTrainConfig:
        TinySDConfig.from_dict(self.model)
        check_caption_mix(self.caption_mix)
        for name in ("vae_steps", "diffusion_steps", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.caption_dropout < 1:
            raise ValueError(f"caption_dropout must be in [0, 1), got {self.caption_dropout}")
        if not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        for name, value, choices in (
            ("vae_loss", self.vae_loss, VAE_LOSSES),
            ("lr_schedule", self.lr_schedule, LR_SCHEDULES),
            ("mixed_precision", self.mixed_precision, MIXED_PRECISION),
            ("vae_mixed_precision", self.vae_mixed_precision, MIXED_PRECISION),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        if self.vae_batch_size is not None and self.vae_batch_size <= 0:
            raise ValueError(f"vae_batch_size must be positive or null, got {self.vae_batch_size}")
        if self.snapshot_every is not None and self.snapshot_every <= 0:
            raise ValueError(f"snapshot_every must be positive or null, got {self.snapshot_every}")
        return self

    @property
    def model_config(self) -> TinySDConfig:
        return TinySDConfig.from_dict(self.model)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **overrides: Any) -> BaseTrainConfig:
        """Read a run's ``config.json``, or the ``spatialgen.json`` of a trained pipeline (its
        ``training`` entry): the shipped model is reproduced from the file shipped with it."""
        data = json.loads(Path(path).read_text())
        if "training" in data:
            data = data["training"]
        # Runs recorded before the held-out split existed trained on every caption: reproduce them so.
        data.setdefault("exclude_held_out", False)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data).validate()


# ----------------------------------------------------------------------------- checkpoints


def min_snr_weights(scheduler: DDPMScheduler, timesteps: torch.Tensor, gamma: float | None) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023) for the epsilon or v objective; ones if gamma is None."""
    if gamma is None:
        return torch.ones_like(timesteps, dtype=torch.float32)
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas / (1 - alphas)
    clipped = torch.clamp(snr, max=gamma)
    if scheduler.config.prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr


def diffusion_loss(
    unet: torch.nn.Module,
    text_encoder: torch.nn.Module,
    tokenizer: Any,
    noise_scheduler: DDPMScheduler,
    latents: torch.Tensor,
    prompts: list[str],
    generator: torch.Generator,
    snr_gamma: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SD's denoising objective on scaled latents: (weighted mean loss, unweighted per-sample MSE).

    Noise and timesteps come from ``generator`` (on the CPU, then moved), so a step is
    reproducible on any device.
    """
    device = latents.device
    noise = torch.randn(latents.shape, generator=generator).to(device)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(latents),), generator=generator).to(device)
    noisy = noise_scheduler.add_noise(latents, noise, t)
    ids = tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    hidden = text_encoder(ids.input_ids.to(device))[0]
    pred = unet(noisy, t, hidden).sample
    target = denoising_target(noise_scheduler, latents, noise, t)
    per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * min_snr_weights(noise_scheduler, t, snr_gamma)).mean(), per_sample


def measure_scaling_factor(vae: AutoencoderKL, images: torch.Tensor, batch: int = 256) -> float:
    """1 / std of the latents (SD's convention), measured over ``images``."""
    with torch.no_grad():
        latents = torch.cat(
            [vae.encode(to_pixels(images[i : i + batch])).latent_dist.mean for i in range(0, len(images), batch)]
        )
    return float(1.0 / latents.std())


# ----------------------------------------------------------------------------- stages


class _VAEForTraining(torch.nn.Module):
    """One forward pass (encode, sample, decode) so that accelerate's DDP wrapper sees every use."""

    def __init__(self, vae: AutoencoderKL) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        posterior = self.vae.encode(x).latent_dist
        return self.vae.decode(posterior.sample()).sample, posterior.mean, posterior.logvar


def train_vae(
    cfg: BaseTrainConfig, data: SceneTensors, vae: AutoencoderKL, accelerator: Accelerator, resume: Path | None
) -> AutoencoderKL:
    run = Path(cfg.out)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    start = load_checkpoint(resume, {"vae": vae}, optimizer, None) if resume else 0
    seconds = checkpoint_seconds(resume)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.lr_schedule, cfg.warmup_steps, cfg.vae_steps, start)
    )
    model, optimizer = accelerator.prepare(_VAEForTraining(vae), optimizer)
    model.train()
    bar = progress("VAE", start, cfg.vae_steps, accelerator.is_main_process)
    clock = time.perf_counter()
    for step in bar:
        rng = batch_generator(cfg.seed, step, accelerator.process_index)
        batch = draw_indices(rng, len(data), cfg.vae_batch_size or cfg.batch_size)
        x = to_pixels(data.images[batch]).to(accelerator.device)
        with torch.autocast(accelerator.device.type, torch.bfloat16, enabled=cfg.vae_mixed_precision == "bf16"):
            recon, mean, logvar = model(x)
        rec = reconstruction_loss(recon.float(), x, cfg.vae_loss)
        loss = rec + cfg.kl_weight * kl_divergence(mean.float(), logvar.float())
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(**{cfg.vae_loss: f"{rec.item():.4f}", "lr": f"{scheduler.get_last_lr()[0]:.1e}"})
        done = step + 1
        if accelerator.is_main_process and (done % cfg.checkpoint_every == 0 or done == cfg.vae_steps):
            elapsed = seconds + time.perf_counter() - clock
            save_checkpoint(run, "vae", done, {"vae": vae}, optimizer, None, cfg.keep_checkpoints, elapsed)
    seconds += time.perf_counter() - clock
    vae.eval()
    if accelerator.is_main_process:
        vae.register_to_config(scaling_factor=measure_scaling_factor(vae, data.images[:2048]))
        with replace_dir(run / "vae") as tmp:
            vae.save_pretrained(tmp, safe_serialization=True)
            atomic_write_json(tmp / "training.json", {"steps": cfg.vae_steps, "seconds": seconds})
    return vae


def encode_dataset(
    vae: AutoencoderKL,
    images: torch.Tensor,
    device: torch.device,
    batch: int = 256,
    to_input: Callable[[torch.Tensor], torch.Tensor] = to_pixels,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every stored item (``to_input`` maps it to the VAE's input), computed once:
    the VAE is frozen while the UNet trains."""
    means, stds = [], []
    vae = vae.to(device)
    with torch.no_grad():
        for i in tqdm(range(0, len(images), batch), desc="encoding latents"):
            dist = vae.encode(to_input(images[i : i + batch]).to(device)).latent_dist
            means.append(dist.mean.cpu())
            stds.append(dist.std.cpu())
    return torch.cat(means), torch.cat(stds)


def train_diffusion(
    cfg: BaseTrainConfig,
    data: SceneTensors,
    pipe: StableDiffusionPipeline,
    accelerator: Accelerator,
    resume: Path | None,
    stop_after: int | None = None,
) -> tuple[StableDiffusionPipeline | None, float]:
    """Train text encoder + UNet on the frozen VAE's latents; returns the pipeline (EMA weights) and the
    stage's training seconds (all sessions of a resumed run together).

    ``stop_after`` ends the stage after that step's checkpoint (the pipeline is then None): a run
    resumed from there with another ``diffusion_steps`` reproduces one whose length changed mid-way.
    """
    run = Path(cfg.out)
    unet, text_encoder, vae, tokenizer = pipe.unet, pipe.text_encoder, pipe.vae, pipe.tokenizer
    vae.requires_grad_(False)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.diffusion_lr, weight_decay=1e-2)
    ema = EMAModel(params, decay=cfg.ema_decay, use_ema_warmup=True, power=3 / 4)
    modules = {"unet": unet, "text_encoder": text_encoder}
    start = load_checkpoint(resume, modules, optimizer, ema) if resume else 0
    seconds = checkpoint_seconds(resume)
    if stop_after is not None and start >= stop_after and stop_after < cfg.diffusion_steps:
        return None, seconds  # already there
    if start < cfg.diffusion_steps:
        clock = time.perf_counter()
        means, stds = encode_dataset(vae, data.images, accelerator.device)
        if start == 0:  # encoding is part of the stage's cost, counted once
            seconds += time.perf_counter() - clock
    scale = vae.config.scaling_factor
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.lr_schedule, cfg.warmup_steps, cfg.diffusion_steps, start)
    )
    unet, text_encoder, optimizer = accelerator.prepare(unet, text_encoder, optimizer)
    unet.train()
    text_encoder.train()
    bar = progress("UNet+text", start, cfg.diffusion_steps, accelerator.is_main_process)
    clock = time.perf_counter()
    for step in bar:
        rng = batch_generator(cfg.seed + 1, step, accelerator.process_index)
        idx = draw_indices(rng, len(data), cfg.batch_size)
        prompts = draw_captions(rng, data.captions, idx, cfg.caption_mix, cfg.caption_dropout, cfg.exclude_held_out)
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        latents = (means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=gen)) * scale
        loss, per_sample = diffusion_loss(
            unet, text_encoder, tokenizer, noise_scheduler, latents.to(accelerator.device), prompts, gen, cfg.snr_gamma
        )
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(params)
        bar.set_postfix(loss=f"{per_sample.mean().item():.4f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
        done = step + 1
        snapshot = bool(cfg.snapshot_every) and done % cfg.snapshot_every == 0
        stop = stop_after is not None and done >= stop_after
        checkpoint = done % cfg.checkpoint_every == 0 or done == cfg.diffusion_steps or stop
        if not accelerator.is_main_process or not (snapshot or checkpoint):
            if stop:
                break
            continue
        unwrapped = {k: accelerator.unwrap_model(m) for k, m in (("unet", unet), ("text_encoder", text_encoder))}
        if snapshot:
            save_snapshot(run, done, seconds + time.perf_counter() - clock, unwrapped, ema, params)
        if checkpoint:
            elapsed = seconds + time.perf_counter() - clock
            save_checkpoint(run, "diffusion", done, unwrapped, optimizer, ema, cfg.keep_checkpoints, elapsed)
            path = run / "samples" / f"step-{done:07d}.png"
            _sample_grid(pipe, ema, params, path, accelerator.device, cfg.sample_steps)
        if stop:
            break
    seconds += time.perf_counter() - clock
    if stop_after is not None and stop_after < cfg.diffusion_steps:
        return None, seconds
    ema.copy_to(params)  # ship the EMA weights
    pipe.unet, pipe.text_encoder = accelerator.unwrap_model(unet).eval(), accelerator.unwrap_model(text_encoder).eval()
    return pipe, seconds


def _sample_grid(
    pipe: StableDiffusionPipeline, ema: EMAModel, params: list, path: Path, device: torch.device, steps: int = 25
) -> None:
    from ..image_grid import image_grid

    ema.store(params)
    ema.copy_to(params)
    pipe.unet.eval()
    pipe.text_encoder.eval()
    pipe.set_progress_bar_config(disable=True)
    try:
        with torch.no_grad():
            images = pipe(
                list(SAMPLE_PROMPTS),
                num_inference_steps=steps,
                guidance_scale=7.5,
                generator=torch.Generator(device).manual_seed(0),
                output_type="pil",
            ).images
        path.parent.mkdir(parents=True, exist_ok=True)
        image_grid(images, list(SAMPLE_PROMPTS)).save(path)
    finally:
        ema.restore(params)
        pipe.unet.train()
        pipe.text_encoder.train()


# ----------------------------------------------------------------------------- entry point


def train_base(
    cfg: BaseTrainConfig, resume: str | None = None, cpu: bool = False, stop_after: int | None = None
) -> Path | None:
    """Train (or resume) a base model; returns the folder of the finished pipeline.

    ``stop_after``: stop the UNet stage after this step's checkpoint and return None (resume with
    ``resume="latest"``).
    """
    cfg.validate()
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"stop_after must be a step >= 1, got {stop_after}")
    # a run from before the held-out split trained on every caption
    run = open_run(cfg.out, asdict(cfg), resume, RESUMABLE_CHANGES, legacy_defaults={"exclude_held_out": False})
    accelerator = Accelerator(cpu=cpu, mixed_precision=cfg.mixed_precision)
    torch.manual_seed(cfg.seed)
    data = SceneTensors.from_shards(cfg.data, cfg.max_scenes, progress=accelerator.is_main_process)
    if data.resolution != cfg.model_config.resolution:
        raise ValueError(
            f"the data are {data.resolution} px but the model is for {cfg.model_config.resolution} px; "
            "set model.resolution"
        )
    checkpoint = find_resume(run, resume)
    stage = None
    if checkpoint is not None:
        stage = json.loads((checkpoint / "state.json").read_text())["stage"]
        logger.info("resuming from %s", checkpoint)
    pipe = build_pipeline(cfg.model_config)
    if stage != "diffusion":
        pipe.vae = train_vae(cfg, data, pipe.vae, accelerator, checkpoint if stage == "vae" else None)
        checkpoint = None
    else:
        pipe.vae = AutoencoderKL.from_pretrained(run / "vae", use_safetensors=True)
    pipe, diffusion_seconds = train_diffusion(
        cfg, data, pipe.to(accelerator.device), accelerator, checkpoint, stop_after
    )
    if pipe is None:
        return None
    manifest = Path(cfg.data) / "manifest.json"
    vae_record = run / "vae" / "training.json"
    vae_seconds = json.loads(vae_record.read_text())["seconds"] if vae_record.is_file() else None
    set_model_card(
        pipe,
        {
            "model": cfg.model,
            "training": asdict(cfg),
            "data": json.loads(manifest.read_text()).get("params") if manifest.is_file() else None,
            "command": reproduce_command(cfg),
            "training_seconds": {"vae": vae_seconds, "diffusion": diffusion_seconds},
        },
    )
    if accelerator.is_main_process:
        save_pipeline(pipe, run / "pipeline")
    return run / "pipeline"


def reproduce_command(cfg: BaseTrainConfig) -> str:
    return f"spatialgen train base --config {Path(cfg.out) / 'config.json'}"
