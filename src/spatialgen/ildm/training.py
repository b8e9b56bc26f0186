"""Joint training of the intrinsic domain (I-LDM, Eq. 5): ``spatialgen train ildm``.

Only the intrinsic LoRA trains; the base UNet, text encoder and both VAEs stay frozen. Each step
draws image latents x0 and intrinsic latents i0 of the same scenes, one timestep t shared by
each pair, independent noises eps_x and eps_i, runs the joint batch with w = 1 and minimises

    ||eps_x_hat - eps_x||^2 + lambda * ||eps_i_hat - eps_i||^2

(the image term trains the LoRA to send the image domain useful keys and values).

Beyond the paper (JointDiT's independent noise levels): with probability ``p_image_clean`` a pair
holds its image clean (timestep 0, the latent itself) while the intrinsics are noised, and with
``p_intrinsic_clean`` the other way round. A clean domain has no loss term. The one model then
also reads the intrinsics of a given image (image held clean) and draws an image for given
intrinsics (intrinsics held clean); see :mod:`spatialgen.ildm.pipeline`. Batches are a
function of (seed, step), checkpoints hold only the LoRA and the optimizer, so a resumed run is
bit-identical to an uninterrupted one and checkpoints stay small on real checkpoints too.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import replace_dir
from ..intrinsics import INTRINSIC_CHANNELS
from ..models.data import SceneTensors, batch_generator, draw_captions, draw_indices
from ..models.objectives import denoising_target
from ..models.training import encode_dataset
from ..scenes.captions import DEFAULT_CAPTION_MIX, check_caption_mix
from ..training_harness import (
    ParameterState,
    checkpoint_seconds,
    find_resume,
    open_run,
    progress,
    resume_step,
    save_checkpoint,
)
from .adapter import lora_parameters
from .attention import JointLayout
from .backbones import Conditioning, encode, predict
from .schedules import ConstantSchedule
from .vae_training import load_packed_intrinsics, uint8_to_packed

#: What the shipped I-LDM's card says of the data its measurements use and its training never saw.
HELD_OUT_NOTE = (
    "training captions leave out every relational caption whose (object, relation, object) triplet is in the "
    "scene world's evaluation split (exclude_held_out); the 2D and 3D consistency prompts are those triplets. "
    "Attribute prompts are captions of scenes of the held-out scene seed, which no training set draws; with "
    "a vocabulary this small (4 shapes, 8 colours, 2 sizes) the same caption strings also caption training scenes."
)
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "keep_checkpoints", "sample_steps", "data", "out")
SAMPLE_PROMPTS = (
    "a red cube to the left of a blue sphere",
    "a large yellow cylinder and a small green cone on a wooden floor",
    "a purple sphere in front of a gray cube",
    "two cyan cones on the grass",
)


@dataclass
class ILDMTrainConfig:
    """Everything that determines an I-LDM training run (saved as ``config.json``)."""

    data: str
    out: str
    intrinsic_vae: str
    base: str = "embedded"
    rank: int = 32  # LoRA rank of the intrinsic domain (alpha = rank)
    placement: list[str] = field(default_factory=lambda: ["self-attention"])  # where the LoRA sits (adapter.PLACEMENTS)
    p_image_clean: float = 0.0  # share of pairs whose image is held clean (estimation training)
    p_intrinsic_clean: float = 0.0  # share of pairs whose intrinsics are held clean (conditioned generation)
    p_independent: float = 0.0  # share of pairs with the two timesteps drawn independently (lagged sampling)
    loss_lambda: float = 1.0
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-4
    ema_decay: float | None = None  # EMA of the LoRA weights (shipped instead of the raw ones) when set
    caption_mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CAPTION_MIX))
    caption_dropout: float = 0.1
    exclude_held_out: bool = True
    checkpoint_every: int = 250
    sample_steps: int = 25  # denoising steps of the sample grids drawn at each checkpoint
    keep_checkpoints: int = 2
    max_scenes: int | None = 10000
    intrinsic_resolution: int | None = None  # train on maps coarsened to this side (the paper's Table 3); None: exact
    seed: int = 0

    def validate(self) -> ILDMTrainConfig:
        for name in ("rank", "steps", "batch_size", "checkpoint_every", "keep_checkpoints", "sample_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1) or unset, got {self.ema_decay}")
        if self.loss_lambda < 0:
            raise ValueError(f"loss_lambda must be >= 0, got {self.loss_lambda}")
        from .adapter import check_placement

        self.placement = list(check_placement(self.placement))  # a list, as config.json stores it
        shares = (self.p_image_clean, self.p_intrinsic_clean, self.p_independent)
        if min(shares) < 0 or sum(shares) >= 1:
            raise ValueError(
                f"p_image_clean, p_intrinsic_clean and p_independent must be >= 0 and sum to less than 1 (some "
                f"pairs must be noised together for joint generation), got {shares}"
            )
        if self.intrinsic_resolution is not None and self.intrinsic_resolution <= 0:
            raise ValueError(f"intrinsic_resolution must be positive or unset, got {self.intrinsic_resolution}")
        check_caption_mix(self.caption_mix)
        return self


def coarsen_intrinsics(packed: torch.Tensor, side: int) -> torch.Tensor:
    """Packed uint8 maps (N, 8, H, W) as an estimator working at ``side`` pixels would give them.

    The paper's robustness test (Table 3) trains on intrinsics of a lower resolution than the
    image. Depth, normals and lines are area-averaged down and bilinearly scaled back up (blurred
    edges, lost thin structures); segmentation is sampled nearest both ways, so every pixel keeps
    a palette colour while its boundaries become blocks. ``side`` at or above H returns the maps.
    """
    height, width = packed.shape[-2:]
    if side >= min(height, width):
        return packed
    from torch.nn.functional import interpolate

    first = list(INTRINSIC_CHANNELS).index("segmentation")
    start = sum(list(INTRINSIC_CHANNELS.values())[:first])
    segmentation = slice(start, start + INTRINSIC_CHANNELS["segmentation"])
    out = packed.float()
    small = interpolate(out, size=(side, side), mode="area")
    smooth = interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
    blocks = interpolate(interpolate(out, size=(side, side), mode="nearest"), size=(height, width), mode="nearest")
    smooth[:, segmentation] = blocks[:, segmentation]
    return smooth.round().clamp(0, 255).to(torch.uint8)


def joint_loss(
    unet: torch.nn.Module,
    state: Any,
    noise_scheduler: Any,
    x0: torch.Tensor,
    i0: torch.Tensor,
    text: torch.Tensor | Conditioning,
    generator: torch.Generator,
    loss_lambda: float,
    p_image_clean: float = 0.0,
    p_intrinsic_clean: float = 0.0,
    p_independent: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 5 on one batch: (loss, image term, intrinsic term). Shared t per pair, independent noises.

    ``text`` is the batch's conditioning (:class:`~spatialgen.ildm.backbones.Conditioning`, or SD
    text embeddings); ``unet`` any backbone's denoiser. With ``p_image_clean`` / ``p_intrinsic_clean``
    (module docstring) some pairs hold one domain clean at timestep 0, and with ``p_independent``
    some draw the intrinsic timestep independently of the image's; each term averages over the rows
    of its domain that were noised. With all three at 0 the draws are exactly those of Eq. 5 alone.
    """
    cond = text if isinstance(text, Conditioning) else Conditioning(text)
    n = x0.shape[0]
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (n,), generator=generator).to(x0.device)
    eps_x = torch.randn(x0.shape, generator=generator).to(x0.device)
    eps_i = torch.randn(i0.shape, generator=generator).to(x0.device)
    t_i = t
    image_clean = intrinsic_clean = torch.zeros(n, dtype=torch.bool, device=x0.device)
    if p_image_clean > 0 or p_intrinsic_clean > 0 or p_independent > 0:
        u = torch.rand(n, generator=generator).to(x0.device)
        held = p_image_clean + p_intrinsic_clean
        image_clean, intrinsic_clean = u < p_image_clean, (u >= p_image_clean) & (u < held)
        if p_independent > 0:
            other = torch.randint(0, noise_scheduler.config.num_train_timesteps, (n,), generator=generator)
            t_i = torch.where((u >= held) & (u < held + p_independent), other.to(x0.device), t)
    x_t = torch.where(image_clean[:, None, None, None], x0, noise_scheduler.add_noise(x0, eps_x, t))
    i_t = torch.where(intrinsic_clean[:, None, None, None], i0, noise_scheduler.add_noise(i0, eps_i, t_i))
    t_x, t_i_in = torch.where(image_clean, 0, t), torch.where(intrinsic_clean, 0, t_i)
    state.schedule, state.layout = ConstantSchedule(1.0), JointLayout.stacked(n, device=x0.device)
    try:
        pred = predict(unet, torch.cat([x_t, i_t]), torch.cat([t_x, t_i_in]), cond.twice())
    finally:
        state.layout = None
    image_term = _masked_mse(pred[:n], denoising_target(noise_scheduler, x0, eps_x, t), ~image_clean)
    intrinsic_term = _masked_mse(pred[n:], denoising_target(noise_scheduler, i0, eps_i, t_i), ~intrinsic_clean)
    return image_term + loss_lambda * intrinsic_term, image_term, intrinsic_term


def _masked_mse(pred: torch.Tensor, target: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the rows ``rows`` (bool, one per sample); 0 (with a gradient path) if none."""
    per_row = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    weights = rows.to(per_row.dtype)
    return (per_row * weights).sum() / weights.sum().clamp(min=1.0)


def train_ildm(cfg: ILDMTrainConfig, resume: str | None = None, cpu: bool = False) -> Path:
    """Train (or resume) the intrinsic domain on top of ``cfg.base``; returns the saved pipeline folder."""
    from accelerate import Accelerator
    from diffusers import AutoencoderKL, DDPMScheduler

    from .pipeline import IntrinsicLDMPipeline

    cfg.validate()
    run = open_run(cfg.out, asdict(cfg), resume, RESUMABLE_CHANGES)
    accelerator = Accelerator(cpu=cpu)
    torch.manual_seed(cfg.seed)
    base = load_base_pipeline(cfg.base)
    intrinsic_vae = AutoencoderKL.from_pretrained(cfg.intrinsic_vae, use_safetensors=True)
    pipe = IntrinsicLDMPipeline.from_base(base, intrinsic_vae, rank=cfg.rank, placement=cfg.placement)
    pipe.set_progress_bar_config(disable=True)
    unet, state = pipe.denoiser, pipe.cross_domain
    for name in ("vae", "intrinsic_vae", "text_encoder", "text_encoder_2"):
        if getattr(pipe, name, None) is not None:
            getattr(pipe, name).requires_grad_(False)
    params = lora_parameters(unet)
    holder = ParameterState(params)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    ema = None
    if cfg.ema_decay is not None:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(params, decay=cfg.ema_decay, use_ema_warmup=True, power=3 / 4)
    start = resume_step(run, resume, {"lora": holder}, optimizer, ema)
    seconds = checkpoint_seconds(find_resume(run, resume))  # training time of earlier sessions of this run

    device = accelerator.device
    scenes = SceneTensors.from_shards(cfg.data, cfg.max_scenes)
    packed = load_packed_intrinsics(cfg.data, cfg.max_scenes)
    if cfg.intrinsic_resolution is not None:
        packed = coarsen_intrinsics(packed, cfg.intrinsic_resolution)
    x_mean, x_std = encode_dataset(pipe.vae, scenes.images, device)
    i_mean, i_std = encode_dataset(pipe.intrinsic_vae, packed, device, to_input=uint8_to_packed)
    x_scale, i_scale = pipe.vae.config.scaling_factor, pipe.intrinsic_vae.config.scaling_factor
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    pipe.text_encoder.to(device)
    unet.train()
    bar = progress("I-LDM LoRA", start, cfg.steps, accelerator.is_main_process)
    clock = time.perf_counter()
    for step in bar:
        rng = batch_generator(cfg.seed + 2, step, accelerator.process_index)
        idx = draw_indices(rng, len(scenes), cfg.batch_size)
        prompts = draw_captions(rng, scenes.captions, idx, cfg.caption_mix, cfg.caption_dropout, cfg.exclude_held_out)
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        x0 = (x_mean[idx] + x_std[idx] * torch.randn(x_mean[idx].shape, generator=gen)) * x_scale
        i0 = (i_mean[idx] + i_std[idx] * torch.randn(i_mean[idx].shape, generator=gen)) * i_scale
        with torch.no_grad():
            text = encode(pipe, prompts, device, False, None, (scenes.resolution, scenes.resolution))
        loss, image_term, intrinsic_term = joint_loss(
            unet,
            state,
            noise_scheduler,
            x0.to(device),
            i0.to(device),
            text,
            gen,
            cfg.loss_lambda,
            cfg.p_image_clean,
            cfg.p_intrinsic_clean,
            cfg.p_independent,
        )
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(params)
        bar.set_postfix(image=f"{image_term.item():.4f}", intrinsic=f"{intrinsic_term.item():.4f}")
        done = step + 1
        if accelerator.is_main_process and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            elapsed = seconds + time.perf_counter() - clock  # sample grids below are not training time
            save_checkpoint(run, "diffusion", done, {"lora": holder}, optimizer, ema, cfg.keep_checkpoints, elapsed)
            if ema is not None:
                ema.store(params)
                ema.copy_to(params)
            save_sample_grid(pipe, run / "samples" / f"step-{done:07d}.png", steps=cfg.sample_steps)
            if ema is not None:
                ema.restore(params)
            unet.train()
            clock, seconds = time.perf_counter(), elapsed
    if ema is not None:
        ema.copy_to(params)  # ship the EMA weights
    pipe.register_modules(**{pipe.denoiser_name: accelerator.unwrap_model(unet).eval()})
    folder = run / "pipeline"
    with replace_dir(folder) as tmp:
        pipe.save_pretrained(tmp)
    return folder


def pipeline_at_checkpoint(run: str | Path, checkpoint: str | Path = "latest", ema: bool = True) -> Any:
    """The I-LDM pipeline of a run as it stood at one checkpoint (EMA weights where the run keeps them).

    For learning curves: a run keeps ``keep_checkpoints`` of them, each holding only the LoRA. The
    checkpoint's training seconds are in ``pipe.training_seconds``.
    """
    import json

    from diffusers import AutoencoderKL

    from .pipeline import IntrinsicLDMPipeline

    run = Path(run)
    folder = find_resume(run, str(checkpoint))
    if folder is None:
        raise FileNotFoundError(f"no checkpoint in {run / 'checkpoints'}")
    cfg = ILDMTrainConfig(**json.loads((run / "config.json").read_text())).validate()
    intrinsic_vae = AutoencoderKL.from_pretrained(cfg.intrinsic_vae, use_safetensors=True)
    pipe = IntrinsicLDMPipeline.from_base(
        load_base_pipeline(cfg.base), intrinsic_vae, rank=cfg.rank, placement=cfg.placement
    )
    from safetensors.torch import load_file

    params = lora_parameters(pipe.denoiser)
    source = folder / "ema.safetensors"
    if ema and source.is_file():
        shadow = load_file(str(source))
        values = [shadow[f"{i:05d}"] for i in range(len(params))]
    else:
        saved = load_file(str(folder / "lora.safetensors"))
        values = [saved[f"params.{i}"] for i in range(len(params))]
    with torch.no_grad():
        for parameter, value in zip(params, values, strict=True):
            parameter.copy_(value)
    pipe.set_progress_bar_config(disable=True)
    pipe.denoiser.eval()
    pipe.training_seconds = checkpoint_seconds(folder)
    pipe.training_step = int(json.loads((folder / "state.json").read_text())["step"])
    return pipe


def load_base_pipeline(model: str) -> Any:
    """The base I-LDM trains on: the embedded model or an SD folder (as ``load_pipeline``), or any diffusers
    pipeline folder / hub id of another family (SDXL, PixArt-alpha), with safetensors weights only."""
    from diffusers import DiffusionPipeline

    from ..models.pipeline import load_pipeline
    from ..models.single_file import is_single_file

    if str(model) == "embedded" or is_single_file(model):
        return load_pipeline(model)
    if DiffusionPipeline.load_config(model).get("_class_name") == "StableDiffusionPipeline":
        return load_pipeline(model)
    pipe = DiffusionPipeline.from_pretrained(model, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_sample_grid(pipe: Any, path: Path, prompts: tuple[str, ...] = SAMPLE_PROMPTS, steps: int = 25) -> None:
    """Each prompt's image beside its depth, normals, segmentation and line drawing (Drop schedule)."""
    from PIL import Image

    from ..image_grid import image_grid

    pipe.denoiser.eval()
    with torch.no_grad():
        out = pipe(
            list(prompts), num_inference_steps=steps, generator=torch.Generator().manual_seed(0), schedule="drop"
        )
    tiles, captions = [], []
    for k, (image, prompt) in enumerate(zip(out.images, prompts, strict=True)):
        pictures = out.intrinsics.visualise(k)
        tiles += [image] + [Image.fromarray(np.asarray(pictures[name])) for name in pictures]
        captions += [prompt] + list(pictures)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(tiles, captions, columns=5).save(path)
