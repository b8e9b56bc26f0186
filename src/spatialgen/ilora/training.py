"""Training one Intrinsic LoRA adapter (``spatialgen train ilora``), resumable and exact.

Supervision is the scene world's exact maps, or pseudo-labels from a depth / normal estimator
(the embedded scene estimator, or a trained one's folder), exactly as the paper supervises with
Omnidata / ZoeDepth outputs. The VAE is frozen, so the images' and targets' latents are encoded
once; each step draws its batch and noise from (seed, step) only, so a resumed run takes exactly
the steps an uninterrupted one would (a test checks the adapters are bit-identical). AdamW with
weight decay 1e-2 and gradient clipping at 1.0, constant learning rate, as the paper's code.
At the end the adapter is scored on held-out renders of the data's scene distribution (seeds no
training set uses) and saved with its card.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..fileio import atomic_write_json
from ..models.data import batch_generator, draw_indices
from ..scenes.held_out import HELD_OUT_SEED
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
from .adapters import LAYER_CHOICES, check_variant
from .model import SINGLE_STEP_TIMESTEP, IntrinsicLoRAModel
from .scoring import score_maps
from .targets import check_intrinsic, estimated_maps, map_to_image, scene_maps

#: What the card says of its scores' data (the standard every shipped model's card meets).
HELD_OUT_NOTE = (
    f"renders of the held-out scene seed {HELD_OUT_SEED}, with exact maps; no training set draws scenes from it"
)
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "keep_checkpoints", "out")
#: Rank of the decoder adapter the UNet variants train unless told otherwise (see ``ilora.adapters``).
DEFAULT_DECODER_RANK = 2


@dataclass
class ILoRATrainConfig:
    """Everything that determines an I-LoRA run (saved as ``config.json`` in the run folder)."""

    data: str
    out: str
    intrinsic: str = "normal"
    variant: str = "single_step"
    base: str = "embedded"
    # The defaults fit the embedded model: together below 1% of its UNet + VAE parameters. The paper's
    # Stable Diffusion setting is rank 8 with no decoder adapter (SD's VAE draws normal maps already).
    rank: int = 4
    layers: str = "both"  # attention the LoRA sits on: both, self (attn1) or cross (attn2)
    decoder_rank: int | None = None  # UNet variants: a LoRA of this rank on the VAE decoder draws the intrinsic
    # (0: none; None: DEFAULT_DECODER_RANK for the UNet variants, whose LoRA the decoder variant already is)
    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-3
    max_scenes: int = 4000  # the labelled training set: its first N scenes
    labels: str = "exact"
    timestep: int = SINGLE_STEP_TIMESTEP
    image_conditioning: bool = True  # augmented variant: the image latent on extra conv_in channels
    zero_snr: bool | None = None  # augmented variant: None follows the base's schedule
    random_init: bool = False  # the control experiment: a randomly initialised UNet of the same architecture
    held_out: int = 256
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    seed: int = 0

    def validate(self) -> ILoRATrainConfig:
        check_intrinsic(self.intrinsic)
        check_variant(self.variant)
        for name in ("rank", "steps", "batch_size", "max_scenes", "held_out", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.layers not in LAYER_CHOICES:
            raise ValueError(f"layers must be one of {', '.join(LAYER_CHOICES)}, got {self.layers!r}")
        if self.decoder_rank is not None and self.decoder_rank < 0:
            raise ValueError(f"decoder_rank must be 0 (the base decoder) or positive, got {self.decoder_rank}")
        if self.decoder_rank and self.variant == "decoder":
            raise ValueError(
                "the decoder variant's LoRA is itself on the decoder: size it with rank, leave decoder_rank 0"
            )
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.labels != "exact" and self.intrinsic not in ("depth", "normal"):
            raise ValueError(f"estimators give depth and normals only; train {self.intrinsic} with --labels exact")
        if self.labels.startswith("depth:") and self.intrinsic != "depth":
            raise ValueError(f"--labels {self.labels} labels depth only; train {self.intrinsic} another way")
        return self

    @property
    def resolved_decoder_rank(self) -> int:
        """The decoder adapter's rank this run trains (0: none)."""
        if self.decoder_rank is not None:
            return self.decoder_rank
        return 0 if self.variant == "decoder" else DEFAULT_DECODER_RANK

    def build_model(self, device: str | torch.device = "cpu") -> IntrinsicLoRAModel:
        return IntrinsicLoRAModel.from_base(
            self.base,
            self.variant,
            device=device,
            timestep=self.timestep,
            image_conditioning=self.image_conditioning,
            zero_snr=self.zero_snr,
            random_init_seed=self.seed if self.random_init else None,
        )


@dataclass
class LabelledImages:
    """Images (uint8, N x 3 x H x W) and their maps of one intrinsic (float32 in [0, 1], N x C x H x W)."""

    images: torch.Tensor
    maps: torch.Tensor
    objects: torch.Tensor | None = None  # (N, H, W) bool: pixels of objects (held-out scenes), not the floor


def pseudo_labels(images: torch.Tensor, intrinsic: str, labels: str) -> torch.Tensor:
    """Maps of ``intrinsic`` from an estimator: the paper's supervision where no ground truth exists.

    ``labels`` is ``estimator`` (the embedded scene estimator), a trained scene estimator's folder,
    or ``depth:NAME`` for any transformers depth model (DPT, Depth Anything, ... by path or hub id),
    whose relative inverse depth, min-max normalised per image, is the project's disparity convention.
    """
    if labels.startswith("depth:"):
        from ..eval.detection.depth import load_depth_estimator

        if intrinsic != "depth":
            raise ValueError(f"a depth model labels depth only, not {intrinsic}")
        disparity = load_depth_estimator(labels.removeprefix("depth:")).disparity(
            list(images.permute(0, 2, 3, 1).numpy())
        )
        return torch.from_numpy(np.stack(disparity))[:, None]
    from ..eval.scene.scene_estimator import SceneEstimator

    estimator = SceneEstimator.load(None if labels == "estimator" else labels)
    estimated = estimator.estimate(images.float() / 127.5 - 1.0)
    return torch.from_numpy(estimated_maps(estimated, [intrinsic])[intrinsic])


def load_labelled(root: str | os.PathLike[str], intrinsic: str, limit: int, labels: str = "exact") -> LabelledImages:
    """The first ``limit`` scenes of a dataset with their ``intrinsic`` maps (exact, or from ``labels``)."""
    from ..scenes.shards import SceneShards

    shards = SceneShards(root)
    n = min(limit, len(shards))
    if n == 0:
        raise ValueError(f"the dataset at {str(root)!r} holds no scenes; make one with `spatialgen scenes make`")
    images = torch.empty((n, 3, shards.resolution, shards.resolution), dtype=torch.uint8)
    maps: list[np.ndarray] = []
    for i in tqdm(range(n), desc="loading scenes", unit="scene"):
        sample = shards[i]
        images[i] = torch.from_numpy(np.ascontiguousarray(np.moveaxis(sample.rgb, -1, 0)))
        if labels == "exact":
            maps.append(scene_maps(sample, [intrinsic])[intrinsic])
    shards.close()
    labelled = torch.from_numpy(np.stack(maps)) if labels == "exact" else pseudo_labels(images, intrinsic, labels)
    return LabelledImages(images, labelled)


def held_out_labelled(root: str | os.PathLike[str], intrinsic: str, n: int) -> LabelledImages:
    """``n`` scenes of the dataset's distribution from the held-out seed, with exact maps."""
    from ..models.data import model_scene_config
    from ..scenes import make_sample, scene_seed
    from ..scenes.shards import SceneShards

    shards = SceneShards(root)
    resolution, config = shards.resolution, model_scene_config({"data": shards.manifest["params"]}, max_objects=None)
    shards.close()
    samples = [make_sample(scene_seed(HELD_OUT_SEED, i), resolution, config) for i in range(n)]
    images = torch.from_numpy(np.stack([np.moveaxis(s.rgb, -1, 0) for s in samples]))
    maps = torch.from_numpy(np.stack([scene_maps(s, [intrinsic])[intrinsic] for s in samples]))
    objects = torch.from_numpy(np.stack([s.instance > 0 for s in samples]))
    return LabelledImages(images, maps, objects)


@torch.no_grad()
def encode_pairs(
    model: IntrinsicLoRAModel, data: LabelledImages, intrinsic: str, batch: int = 128
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(image latents as the variant reads them, target latent mean, target latent std), encoded once.

    The decoder variant has no target latent (``None``): it is compared with the map in pixels.
    """
    vae = model.pipe.vae
    inputs, means, stds = [], [], []
    for i in range(0, len(data.images), batch):
        images = data.images[i : i + batch].float() / 127.5 - 1.0
        inputs.append(model.image_latents(images).cpu())
        if model.variant != "decoder":
            dist = vae.encode(map_to_image(intrinsic, data.maps[i : i + batch]).to(model.device)).latent_dist
            means.append(dist.mean.cpu() * vae.config.scaling_factor)
            stds.append(dist.std.cpu() * vae.config.scaling_factor)
    if model.variant == "decoder":
        return torch.cat(inputs), None, None
    return torch.cat(inputs), torch.cat(means), torch.cat(stds)


def train_ilora(cfg: ILoRATrainConfig, resume: str | None = None, cpu: bool = False) -> Path:
    """Train (or resume) one adapter; returns its folder (``RUN/adapter``)."""
    import time

    from accelerate import Accelerator

    cfg.validate()
    run = open_run(cfg.out, asdict(cfg), resume, RESUMABLE_CHANGES)
    accelerator = Accelerator(cpu=cpu)
    torch.manual_seed(cfg.seed)
    model = cfg.build_model(accelerator.device)
    params = model.add(cfg.intrinsic, cfg.rank, cfg.layers, cfg.resolved_decoder_rank)
    holder = ParameterState(params)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2)
    start = resume_step(run, resume, {"lora": holder}, optimizer, None)
    seconds_before = checkpoint_seconds(find_resume(run, resume))
    data = load_labelled(cfg.data, cfg.intrinsic, cfg.max_scenes, cfg.labels)
    inputs, mean, std = encode_pairs(model, data, cfg.intrinsic)
    optimizer = accelerator.prepare(optimizer)
    model.module.train()
    began = time.perf_counter()
    bar = progress(f"I-LoRA {cfg.intrinsic}", start, cfg.steps, accelerator.is_main_process)
    for step in bar:
        rng = batch_generator(cfg.seed + 3, step, accelerator.process_index)
        idx = torch.from_numpy(draw_indices(rng, len(inputs), cfg.batch_size))
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        target = None
        if mean is not None:  # a posterior sample of the target's latent, as the paper's code
            target = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=generator)).to(model.device)
        target_image = map_to_image(cfg.intrinsic, data.maps[idx]).to(model.device)
        loss = model.loss(cfg.intrinsic, inputs[idx].to(model.device), target, target_image, generator)
        adapter_step(accelerator, loss, params, optimizer)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        done = step + 1
        if accelerator.is_main_process and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            seconds = seconds_before + time.perf_counter() - began
            save_checkpoint(run, "diffusion", done, {"lora": holder}, optimizer, None, cfg.keep_checkpoints, seconds)
    seconds = seconds_before + time.perf_counter() - began
    model.module.eval()
    folder = run / "adapter"
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return folder
    held_out = held_out_labelled(cfg.data, cfg.intrinsic, cfg.held_out)
    scores = evaluate_adapter(model, cfg.intrinsic, held_out)
    card = model.card(
        cfg.intrinsic,
        training=asdict(cfg),
        held_out={"scenes": cfg.held_out, "seed": HELD_OUT_SEED, "note": HELD_OUT_NOTE, **scores},
        training_seconds=round(seconds, 1),
    )
    save_adapter_folder(model, cfg.intrinsic, folder, card)
    atomic_write_json(run / "held-out.json", card["held_out"])
    return folder


def save_adapter_folder(model: IntrinsicLoRAModel, intrinsic: str, folder: Path, card: dict[str, Any]) -> Path:
    from .adapters import save_adapter

    return save_adapter(model.pipe, intrinsic, folder, card)


@torch.no_grad()
def evaluate_adapter(
    model: IntrinsicLoRAModel, intrinsic: str, data: LabelledImages, batch: int = 64, **predict: Any
) -> dict[str, float]:
    """The intrinsic's accuracy metrics of the model's predictions on labelled images."""
    predictions = []
    for i in range(0, len(data.images), batch):
        images = data.images[i : i + batch].float() / 127.5 - 1.0
        generator = torch.Generator().manual_seed(i)
        predictions.append(model.predict(images, intrinsic, generator=generator, **predict).cpu())
    return score_maps(intrinsic, torch.cat(predictions), data.maps)
