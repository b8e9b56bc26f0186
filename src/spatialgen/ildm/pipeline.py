"""I-LDM pipelines: co-generate an image and its intrinsics (I-LDM, section 3) on SD, SDXL or PixArt-alpha.

``IntrinsicLDMPipeline`` (SD 1.x / 2.x, the embedded model), ``IntrinsicLDMXLPipeline`` (SDXL) and
``IntrinsicLDMPixArtPipeline`` (PixArt-alpha's transformer) share one denoising loop; what differs
per backbone (text conditioning, the denoiser's call) is :mod:`spatialgen.ildm.backbones`.

The canonical diffusers order: check inputs, encode the prompt, prepare latents, denoise, decode,
return an output dataclass. What differs from ``StableDiffusionPipeline``:

* two domains share one UNet pass per step, as the joint batch ``cat([image, intrinsic])`` with an
  explicit :class:`~spatialgen.ildm.attention.JointLayout` (under CFG each domain holds
  ``[uncond, cond]`` and the layout pairs them position by position);
* both domains start from the **same** initial noise (the paper's sampling choice) and each has
  its own copy of the scheduler (multistep schedulers keep history per trajectory);
* the cross-domain weight w(l, t) follows a schedule chosen per call (``schedule="drop"`` ...);
* the output carries the decoded images, the decoded :class:`~spatialgen.intrinsics.Intrinsics`
  and the intrinsic latents.

One model, three jobs (beyond the paper, as JointDiT; the LoRA must be trained for them with
``p_image_clean`` / ``p_intrinsic_clean``): ``image=`` holds the image domain clean at timestep 0
(its latents are the given image's and never change) and denoises the intrinsics, i.e. reads the
maps of a given image; ``given_intrinsics=`` holds the intrinsic domain clean and draws an image
that follows the given maps. A held domain is fed at timestep 0 every step, with w = 1 unless a
schedule is passed (the weight training used).

``save_pretrained`` writes a plain diffusers folder (the UNet without its LoRA, so the base
weights stay loadable by any tool) plus ``intrinsic_lora/`` (peft format) and ``ildm.json`` (the
default schedule and LoRA settings); ``from_pretrained`` puts them back together.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..guidance.capture import capturing
from ..guidance.config import InfSplignConfig
from ..guidance.guide import GuidanceTrace, combine_guidance, guide_for_call
from ..intrinsics import Intrinsics
from ..models.pipeline import model_card, set_model_card
from ..triplets import SpatialTriplet
from .adapter import install_cross_domain, load_intrinsic_lora, save_intrinsic_lora
from .attention import CrossDomainState, JointLayout
from .backbones import Conditioning, encode, encode_sd, family_of, predict
from .intrinsic_vae import decode_intrinsics
from .schedules import ConstantSchedule, WeightSchedule, resolve_schedule, schedule_from_dict, schedule_to_dict

ILDM_CONFIG = "ildm.json"
LORA_FOLDER = "intrinsic_lora"


@dataclass
class IntrinsicLDMPipelineOutput(BaseOutput):
    """Images (PIL list or array), their co-generated intrinsics in [0, 1], the intrinsic latents and,
    with InfSplign, what its guidance measured."""

    images: Any
    intrinsics: Intrinsics
    intrinsic_latents: torch.Tensor
    trace: GuidanceTrace | None = None


class IntrinsicLDMPipeline(DiffusionPipeline):
    """Text to image + depth, normals, segmentation and line drawing, in one denoising loop."""

    model_cpu_offload_seq = "text_encoder->unet->vae->intrinsic_vae"

    def __init__(
        self,
        vae: AutoencoderKL,
        intrinsic_vae: AutoencoderKL,
        text_encoder: Any,
        tokenizer: Any,
        unet: UNet2DConditionModel,
        scheduler: Any,
    ) -> None:
        super().__init__()
        self.register_modules(
            vae=vae,
            intrinsic_vae=intrinsic_vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
        )
        self._finish_init()

    def _finish_init(self) -> None:
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.cross_domain: CrossDomainState | None = None
        self.default_schedule: WeightSchedule = resolve_schedule("drop")

    # --------------------------------------------------------------------------------- building

    @classmethod
    def from_base(
        cls,
        base: DiffusionPipeline,
        intrinsic_vae: AutoencoderKL,
        lora: str | os.PathLike[str] | None = None,
        rank: int = 32,
        schedule: str | WeightSchedule = "drop",
        placement: tuple[str, ...] = ("self-attention",),
    ) -> IntrinsicLDMPipeline:
        """From a base pipeline's components (SD, SDXL or PixArt-alpha; the I-LDM class follows the base):
        install the intrinsic domain (new, or a saved LoRA folder; ``placement`` as in ``install_cross_domain``)."""
        pipe = pipeline_class_for(base).from_components(base, intrinsic_vae)
        if lora is not None:
            pipe.cross_domain = load_intrinsic_lora(pipe.denoiser, lora)
        else:
            pipe.cross_domain = install_cross_domain(pipe.denoiser, rank=rank, placement=placement)
        pipe.default_schedule = resolve_schedule(schedule)
        return pipe

    @classmethod
    def from_components(cls, base: DiffusionPipeline, intrinsic_vae: AutoencoderKL) -> IntrinsicLDMPipeline:
        return cls(base.vae, intrinsic_vae, base.text_encoder, base.tokenizer, base.unet, base.scheduler)

    @property
    def denoiser(self) -> torch.nn.Module:
        """The network both domains share: the UNet, or PixArt's transformer."""
        return self.unet

    @property
    def denoiser_name(self) -> str:
        return "unet"

    def load_image_lora(
        self, lora: str | os.PathLike[str] | dict[str, torch.Tensor], adapter_name: str = "image", scale: float = 1.0
    ) -> list[str]:
        """Add an SD LoRA to the image domain only (the paper's hand experiment); not saved with the pipeline."""
        from .adapter import load_image_lora

        if self.cross_domain is None:
            raise ValueError("this pipeline has no intrinsic domain; build it with IntrinsicLDMPipeline.from_base")
        return load_image_lora(self.denoiser, self.cross_domain, lora, adapter_name, scale)

    def save_pretrained(self, save_directory: str | os.PathLike[str], **kwargs: Any) -> None:
        if self.cross_domain is None:
            raise ValueError("this pipeline has no intrinsic domain; build it with IntrinsicLDMPipeline.from_base")
        folder = Path(save_directory)
        with_lora = self.denoiser
        self.register_modules(**{self.denoiser_name: _base_denoiser(with_lora)})
        try:
            super().save_pretrained(folder, **kwargs)
        finally:
            self.register_modules(**{self.denoiser_name: with_lora})
        save_intrinsic_lora(with_lora, folder / LORA_FOLDER)
        from ..fileio import atomic_write_json

        atomic_write_json(folder / ILDM_CONFIG, {"schedule": schedule_to_dict(self.default_schedule)})

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike[str], **kwargs: Any
    ) -> IntrinsicLDMPipeline:
        folder = Path(pretrained_model_name_or_path)
        saved = _saved_class(folder)
        if saved is not None and saved is not cls and issubclass(saved, IntrinsicLDMPipeline):
            return saved.from_pretrained(folder, **kwargs)  # an SDXL or PixArt I-LDM folder
        pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        pipe.cross_domain = load_intrinsic_lora(pipe.denoiser, folder / LORA_FOLDER)
        config_path = folder / ILDM_CONFIG
        if config_path.is_file():
            pipe.default_schedule = schedule_from_dict(json.loads(config_path.read_text())["schedule"])
        return pipe

    # --------------------------------------------------------------------------------- sampling steps

    def check_inputs(self, prompt: Any, height: int, width: int, steps: int, guidance_scale: float) -> list[str]:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompt must be a string or a non-empty list of strings")
        multiple = self.vae_scale_factor
        if height % multiple or width % multiple or height <= 0 or width <= 0:
            raise ValueError(f"height and width must be positive multiples of {multiple}, got {height} x {width}")
        if steps <= 0:
            raise ValueError(f"num_inference_steps must be positive, got {steps}")
        if self.cross_domain is None:
            raise ValueError("this pipeline has no intrinsic domain; build it with IntrinsicLDMPipeline.from_base")
        del guidance_scale
        return prompts

    def encode_prompt(self, prompts: list[str], device: torch.device, negative: list[str] | None) -> torch.Tensor:
        """SD text embeddings; with CFG (``negative`` given), ``cat([negative, positive])``."""
        return encode_sd(self, prompts, device, negative).hidden

    def _step_kwargs(self, scheduler: Any, generator: Any, eta: float) -> dict[str, Any]:
        accepted = set(inspect.signature(scheduler.step).parameters)
        kwargs: dict[str, Any] = {}
        if "eta" in accepted:
            kwargs["eta"] = eta
        if "generator" in accepted:
            kwargs["generator"] = generator
        return kwargs

    def _held_size(self, image: Any, given_intrinsics: Intrinsics | None) -> tuple[int, int]:
        """(height, width) of the held domain's input."""
        if image is not None and given_intrinsics is not None:
            raise ValueError("hold one domain at most: pass image= (read its maps) or given_intrinsics= (follow them)")
        if given_intrinsics is not None:
            return tuple(given_intrinsics.depth.shape[-2:])
        if isinstance(image, torch.Tensor):
            return tuple(image.shape[-2:])
        first = image[0] if isinstance(image, list | tuple) else image
        return first.size[1], first.size[0]

    def _held_latents(
        self,
        image: Any,
        given_intrinsics: Intrinsics | None,
        n_prompts: int,
        per_prompt: int,
        shape: tuple[int, ...],
        device: torch.device,
    ) -> torch.Tensor | None:
        """The clean latents of the held domain, one row per output image (each prompt's repeated), or None."""
        if image is None and given_intrinsics is None:
            return None
        if image is not None:
            pixels = image if isinstance(image, torch.Tensor) else self.image_processor.preprocess(image)
            pixels = pixels.to(device, self.vae.dtype)
            if pixels.ndim != 4 or pixels.shape[1] != 3:
                raise ValueError(f"image= takes RGB images (N, 3, H, W) in [-1, 1], got shape {tuple(pixels.shape)}")
            held = self.vae.encode(pixels).latent_dist.mean * self.vae.config.scaling_factor
        else:
            from .intrinsic_vae import encode_intrinsics

            held = encode_intrinsics(self.intrinsic_vae, given_intrinsics)
        if held.shape[0] != n_prompts:
            raise ValueError(f"give one held image or map set per prompt: {held.shape[0]} for {n_prompts} prompt(s)")
        held = held.repeat_interleave(per_prompt, dim=0)
        if tuple(held.shape) != tuple(shape):
            raise ValueError(f"the held input encodes to latents {tuple(held.shape)}, the sample needs {tuple(shape)}")
        return held

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 7.5,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        schedule: str | WeightSchedule | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]] | None = None,
        spatial_guidance: InfSplignConfig | None = None,
        triplets: list[SpatialTriplet | None] | None = None,
        image: Any = None,
        given_intrinsics: Intrinsics | None = None,
        intrinsic_lag: int = 0,
    ) -> IntrinsicLDMPipelineOutput | tuple[Any, Intrinsics, torch.Tensor]:
        """Images and intrinsics for ``prompt``; ``spatial_guidance`` (an ``InfSplignConfig``) steers the image domain.

        With InfSplign the gradient pass runs the conditional rows of both domains together (the
        image attends to its intrinsic partner, as in sampling) and the update goes to the image
        domain's noise only; the intrinsic domain follows through cross-domain attention.

        ``image`` (PIL images, or a tensor in [-1, 1], one per prompt) reads the intrinsics of given
        images; ``given_intrinsics`` (:class:`~spatialgen.intrinsics.Intrinsics` in [0, 1], one per
        prompt) draws images that follow given maps. See the module docstring.

        ``intrinsic_lag`` (steps): the maps start denoising that many steps after the image and finish
        with the image already drawn (held clean), so they can follow the image's layout instead of
        composing their own; 0 is the paper's synchronous co-generation. It costs that many more
        UNet calls and wants a LoRA trained with independent noise levels (``p_independent``).
        """
        denoiser = self.denoiser
        if image is not None or given_intrinsics is not None:
            held_size = self._held_size(image, given_intrinsics)
            height, width = height or held_size[0], width or held_size[1]
        height = height or denoiser.config.sample_size * self.vae_scale_factor
        width = width or denoiser.config.sample_size * self.vae_scale_factor
        prompts = self.check_inputs(prompt, height, width, num_inference_steps, guidance_scale)
        n_prompts = len(prompts)
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        device = self._execution_device
        cfg = guidance_scale > 1.0
        negatives = None
        if negative_prompt is not None:
            negatives = (
                [negative_prompt] * len(prompts)
                if isinstance(negative_prompt, str)
                else [n for n in negative_prompt for _ in range(num_images_per_prompt)]
            )
        if spatial_guidance is not None and family_of(denoiser) != "sd":
            raise ValueError(
                f"InfSplign inside I-LDM supports SD 1.x / 2.x backbones; this is a {family_of(denoiser)} pipeline"
            )
        text = encode(self, prompts, device, cfg, negatives, (height, width))

        shape = (
            len(prompts),
            denoiser.config.in_channels,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=text.hidden.dtype)
        latents = latents.to(device) * self.scheduler.init_noise_sigma
        intrinsic = latents.clone()  # the same initial noise for both domains
        held = self._held_latents(image, given_intrinsics, n_prompts, num_images_per_prompt, shape, device)
        if held is not None and spatial_guidance is not None:
            raise ValueError("InfSplign guides free generation; it cannot be combined with image= or given_intrinsics=")
        held_image = held is not None and image is not None
        held_intrinsic = held is not None and given_intrinsics is not None
        if held_image:
            latents = held.to(text.hidden.dtype)
        if held_intrinsic:
            intrinsic = held.to(text.hidden.dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        intrinsic_scheduler = copy.deepcopy(self.scheduler)
        image_kwargs = self._step_kwargs(self.scheduler, generator, eta)
        intrinsic_kwargs = self._step_kwargs(intrinsic_scheduler, generator, eta)

        state = self.cross_domain
        assert state is not None
        if schedule is not None:
            state.schedule = resolve_schedule(schedule)
        elif held is not None:
            state.schedule = ConstantSchedule(1.0)  # the weight a held domain was trained with
        else:
            state.schedule = self.default_schedule
        per_domain = 2 * len(prompts) if cfg else len(prompts)
        joint_layout = JointLayout.stacked(per_domain, device=device)
        state.layout = joint_layout
        joint_text = text.twice()
        cond_text: Conditioning = text.rows(slice(len(prompts), None)) if cfg else text
        guide, capture_layers = guide_for_call(
            spatial_guidance,
            denoiser,
            self.tokenizer,
            prompts,
            num_images_per_prompt,
            text.hidden.shape[1],
            device,
            triplets,
        )
        guide_layout = JointLayout.stacked(len(prompts), device=device)

        def forward_cond(x: torch.Tensor) -> Any:
            # Reads the loop's current t and intrinsic latents when the guide calls it.
            intrinsic_in = intrinsic_scheduler.scale_model_input(intrinsic, t)
            state.layout = guide_layout
            try:
                return predict(denoiser, torch.cat([x, intrinsic_in]), t, cond_text.twice())
            finally:
                state.layout = joint_layout

        steps = len(self.scheduler.timesteps)
        if intrinsic_lag < 0 or (intrinsic_lag and (held is not None or guide is not None)):
            raise ValueError(
                f"intrinsic_lag must be >= 0 steps and applies to free co-generation only (got {intrinsic_lag}"
                f"{' with a held domain' if held is not None else ''}{' with InfSplign' if guide is not None else ''})"
            )
        try:
            with capturing(denoiser, capture_layers) as capture:
                for i in self.progress_bar(range(steps + intrinsic_lag)):
                    # Each domain's place in the schedule: the image runs ahead of its maps by `intrinsic_lag` steps;
                    # a held domain, an image already finished, and maps still waiting are not stepped.
                    image_done, k_intrinsic = i >= steps, i - intrinsic_lag
                    t = self.scheduler.timesteps[min(i, steps - 1)]
                    t_intrinsic = self.scheduler.timesteps[min(max(k_intrinsic, 0), steps - 1)]
                    step_image = not (held_image or image_done)
                    step_intrinsic = not held_intrinsic and 0 <= k_intrinsic < steps
                    state.timestep = float(t) if step_image else 0.0  # the image queries' timestep
                    offset = None
                    if guide is not None and guide.wants(i, steps):
                        latents, offset = guide.step(
                            capture, forward_cond, self.scheduler, latents, t, i, steps, rows=slice(0, len(prompts))
                        )
                    x_in = torch.cat([latents] * 2) if cfg else latents
                    i_in = torch.cat([intrinsic] * 2) if cfg else intrinsic
                    # A clean domain (held, or an image already drawn) is fed as it is, at timestep 0.
                    x_in = self.scheduler.scale_model_input(x_in, t) if step_image else x_in
                    i_in = i_in if held_intrinsic else intrinsic_scheduler.scale_model_input(i_in, t_intrinsic)
                    timesteps = t
                    if held is not None or intrinsic_lag:
                        image_t = (t if step_image else torch.zeros_like(t)).reshape(1).expand(per_domain)
                        maps_t = (torch.zeros_like(t) if held_intrinsic else t_intrinsic).reshape(1).expand(per_domain)
                        timesteps = torch.cat([image_t, maps_t])
                    noise = predict(denoiser, torch.cat([x_in, i_in]), timesteps, joint_text)
                    noise_image, noise_intrinsic = noise[:per_domain], noise[per_domain:]
                    scale = guidance_scale if cfg else None
                    if step_image:
                        noise_image = combine_guidance(noise_image, scale, offset)
                        latents = self.scheduler.step(noise_image, t, latents, **image_kwargs).prev_sample
                    if step_intrinsic:
                        noise_intrinsic = combine_guidance(noise_intrinsic, scale)
                        intrinsic = intrinsic_scheduler.step(
                            noise_intrinsic, t_intrinsic, intrinsic, **intrinsic_kwargs
                        ).prev_sample
                    if callback_on_step_end is not None:
                        outputs = callback_on_step_end(self, i, t, {"latents": latents, "intrinsic_latents": intrinsic})
                        latents = outputs.get("latents", latents)
                        intrinsic = outputs.get("intrinsic_latents", intrinsic)
        finally:
            state.layout = None

        if output_type == "latent":
            images: Any = latents
        else:
            decoded = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
            images = self.image_processor.postprocess(decoded, output_type=output_type)
        intrinsics = decode_intrinsics(self.intrinsic_vae, intrinsic)
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, intrinsics, intrinsic
        trace = guide.trace if guide is not None else None
        return IntrinsicLDMPipelineOutput(
            images=images, intrinsics=intrinsics, intrinsic_latents=intrinsic, trace=trace
        )


def _base_denoiser(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the denoiser without the peft layers: base weights under their original names."""
    from .adapter import PARTNER_MODULE

    state = {
        k.replace(".base_layer.", "."): v
        for k, v in model.state_dict().items()
        if ".lora_" not in k and not k.startswith(f"{PARTNER_MODULE}.")
    }
    clean = type(model).from_config(model.config)
    clean.load_state_dict(state)
    clean.to(model.device)
    return clean if model.dtype == clean.dtype else clean.to(dtype=model.dtype)


class IntrinsicLDMXLPipeline(IntrinsicLDMPipeline):
    """I-LDM on SDXL: two text encoders, pooled text embeddings and size micro-conditioning, as SDXL's pipeline."""

    model_cpu_offload_seq = "text_encoder->text_encoder_2->unet->vae->intrinsic_vae"

    def __init__(
        self,
        vae: AutoencoderKL,
        intrinsic_vae: AutoencoderKL,
        text_encoder: Any,
        text_encoder_2: Any,
        tokenizer: Any,
        tokenizer_2: Any,
        unet: UNet2DConditionModel,
        scheduler: Any,
        force_zeros_for_empty_prompt: bool = True,
    ) -> None:
        DiffusionPipeline.__init__(self)
        self.register_modules(
            vae=vae,
            intrinsic_vae=intrinsic_vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=unet,
            scheduler=scheduler,
        )
        self.register_to_config(force_zeros_for_empty_prompt=force_zeros_for_empty_prompt)
        self._finish_init()

    @classmethod
    def from_components(cls, base: DiffusionPipeline, intrinsic_vae: AutoencoderKL) -> IntrinsicLDMXLPipeline:
        return cls(
            base.vae,
            intrinsic_vae,
            base.text_encoder,
            base.text_encoder_2,
            base.tokenizer,
            base.tokenizer_2,
            base.unet,
            base.scheduler,
            force_zeros_for_empty_prompt=base.config.force_zeros_for_empty_prompt,
        )


class IntrinsicLDMPixArtPipeline(IntrinsicLDMPipeline):
    """I-LDM on PixArt-alpha: a T5 text encoder and a transformer denoiser (its learned variances set aside)."""

    model_cpu_offload_seq = "text_encoder->transformer->vae->intrinsic_vae"

    def __init__(
        self,
        vae: AutoencoderKL,
        intrinsic_vae: AutoencoderKL,
        text_encoder: Any,
        tokenizer: Any,
        transformer: Any,
        scheduler: Any,
    ) -> None:
        DiffusionPipeline.__init__(self)
        self.register_modules(
            vae=vae,
            intrinsic_vae=intrinsic_vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=transformer,
            scheduler=scheduler,
        )
        self._finish_init()

    @classmethod
    def from_components(cls, base: DiffusionPipeline, intrinsic_vae: AutoencoderKL) -> IntrinsicLDMPixArtPipeline:
        return cls(base.vae, intrinsic_vae, base.text_encoder, base.tokenizer, base.transformer, base.scheduler)

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.transformer

    @property
    def denoiser_name(self) -> str:
        return "transformer"


def _saved_class(folder: Path) -> type | None:
    """The I-LDM class a pipeline folder was saved from (``model_index.json``), if it is one of ours."""
    index = folder / "model_index.json"
    if not index.is_file():
        return None
    name = json.loads(index.read_text()).get("_class_name")
    classes = {c.__name__: c for c in (IntrinsicLDMPipeline, IntrinsicLDMXLPipeline, IntrinsicLDMPixArtPipeline)}
    return classes.get(name)


def pipeline_class_for(base: Any) -> type[IntrinsicLDMPipeline]:
    """The I-LDM pipeline class of a base pipeline: PixArt-alpha, SDXL or SD (by its components)."""
    if getattr(base, "transformer", None) is not None:
        return IntrinsicLDMPixArtPipeline
    if getattr(base, "text_encoder_2", None) is not None:
        return IntrinsicLDMXLPipeline
    return IntrinsicLDMPipeline


def embedded_ildm_path() -> Path:
    from importlib import resources

    return Path(str(resources.files("spatialgen") / "weights" / "embedded-ildm"))


def load_ildm_pipeline(
    model: str | os.PathLike[str] = "embedded",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    scheduler: str | None = None,
) -> IntrinsicLDMPipeline:
    """An I-LDM pipeline folder (``save_pretrained`` of ``IntrinsicLDMPipeline``), or the embedded one."""
    from ..devices import check_device
    from ..models.pipeline import make_scheduler

    device = check_device(device)
    if str(model) == "embedded":
        pipe = load_embedded_ildm(dtype)
    else:
        folder = Path(model)
        if not (folder / LORA_FOLDER).is_dir():
            raise FileNotFoundError(f"{str(folder)!r} is not an I-LDM pipeline folder (no {LORA_FOLDER}/ in it)")
        import warnings

        with warnings.catch_warnings():  # newer diffusers renamed torch_dtype to dtype; older ones know only that
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = IntrinsicLDMPipeline.from_pretrained(folder, torch_dtype=dtype, use_safetensors=True)
    if scheduler is not None:
        pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_embedded_ildm(dtype: torch.dtype = torch.float32) -> IntrinsicLDMPipeline:
    """The embedded I-LDM: the embedded base model plus the shipped intrinsic VAE, LoRA and schedule.

    Only what I-LDM adds is shipped (``weights/embedded-ildm``); the base components are the
    embedded model's own, so the package does not carry them twice.
    """
    from ..models.pipeline import load_pipeline

    folder = embedded_ildm_path()
    if not (folder / LORA_FOLDER).is_dir():
        raise FileNotFoundError(
            "no embedded I-LDM model ships with this version; train one with `spatialgen train intrinsic-vae` "
            "and `spatialgen train ildm`, then pass --model RUN/pipeline"
        )
    base = load_pipeline("embedded", dtype=dtype)
    intrinsic_vae = AutoencoderKL.from_pretrained(folder / "intrinsic_vae", use_safetensors=True).to(dtype=dtype)
    schedule = json.loads((folder / ILDM_CONFIG).read_text())["schedule"]
    pipe = IntrinsicLDMPipeline.from_base(
        base, intrinsic_vae, lora=folder / LORA_FOLDER, schedule=schedule_from_dict(schedule)
    )
    card = json.loads((folder / "spatialgen.json").read_text()) if (folder / "spatialgen.json").is_file() else {}
    if "infsplign" in model_card(base):  # the image domain is the base model's: so is its guidance weight
        card.setdefault("infsplign", model_card(base)["infsplign"])
    set_model_card(pipe, card)
    return pipe
