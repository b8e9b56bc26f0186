"""A base Stable Diffusion pipeline turned intrinsic predictor by I-LoRA adapters (papers/002).

:class:`IntrinsicLoRAModel` holds the base pipeline prepared for one variant and any number of
per-intrinsic adapters, and knows the variant's forward pass both for training (a loss on one
batch of precomputed latents) and for prediction (images in, maps out):

* ``single_step``: the image's VAE latent (posterior mode, times the scaling factor, no noise)
  goes through the UNet once at a fixed timestep (999) with the intrinsic's prompt; the output
  is read as the intrinsic's latent and decoded by the same VAE. No scheduler arithmetic.
* ``augmented`` (I-LoRA_AUG): a diffusion model of the intrinsic's latent whose UNet also sees
  the image latent (unscaled posterior mode, as InstructPix2Pix) on extra ``conv_in`` channels,
  read through a LoRA on that ``conv_in``;
  trained with the base's own objective (epsilon or v), sampled with DPM-Solver++ and text CFG.
  ``image_conditioning=False`` is the paper's naive multi-step baseline: no extra channels, and
  sampling starts from the image latent noised to ``strength`` (SDEdit), which misaligns.
* ``decoder``: the image's latent through the VAE decoder, which carries the LoRA.

The UNet variants may also carry a decoder adapter per intrinsic (``decoder_rank``; see
:mod:`spatialgen.ilora.adapters`) with which their output latent is decoded: trained on the round
trip of the intrinsic's maps alone, it lets a VAE that never saw such maps draw them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from ..models.fingerprint import base_fingerprint
from ..models.objectives import denoising_target
from .adapters import (
    activate,
    adapter_parameters,
    add_adapter,
    check_base,
    check_variant,
    decoder_rank,
    load_adapter,
    read_card,
    widen_conv_in,
)
from .targets import image_to_map, prompt_for

SINGLE_STEP_TIMESTEP = 999


class IntrinsicLoRAModel:
    """A base pipeline, one variant, and its intrinsic adapters (one per intrinsic, swapped by name)."""

    def __init__(
        self,
        pipe: Any,
        variant: str,
        model_name: str,
        fingerprint: str,
        timestep: int = SINGLE_STEP_TIMESTEP,
        image_conditioning: bool = True,
        zero_snr: bool | None = None,
        random_init_seed: int | None = None,
        base_parameters: int | None = None,
    ) -> None:
        self.pipe = pipe
        self.variant = check_variant(variant)
        self.model_name = model_name
        self.fingerprint = fingerprint
        self.timestep = timestep
        self.image_conditioning = image_conditioning
        self.random_init_seed = random_init_seed
        self.vae_fingerprint = base_fingerprint(pipe.vae)
        #: UNet + VAE, as the paper counts a diffusion model's parameters (Tab. 5).
        self.base_parameters = base_parameters or sum(p.numel() for m in (pipe.unet, pipe.vae) for p in m.parameters())
        self.scheduler_config = scheduler_config(pipe.scheduler.config, zero_snr)
        self.cards: dict[str, dict[str, Any]] = {}
        self._text: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------------- building

    @classmethod
    def from_base(
        cls,
        model: str | os.PathLike[str] = "embedded",
        variant: str = "single_step",
        device: str | torch.device = "cpu",
        timestep: int = SINGLE_STEP_TIMESTEP,
        image_conditioning: bool = True,
        zero_snr: bool | None = None,
        random_init_seed: int | None = None,
    ) -> IntrinsicLoRAModel:
        """Load the base and prepare it for ``variant``.

        ``random_init_seed`` replaces the UNet by a randomly initialised one of the same
        architecture (the paper's control experiment): the LoRA then has no generative prior to read.
        """
        from diffusers import UNet2DConditionModel

        from ..models.pipeline import load_pipeline

        check_variant(variant)
        if not 0 <= timestep < 1000:
            raise ValueError(f"timestep must be in [0, 1000), got {timestep}")
        pipe = load_pipeline(model, device=device)
        if random_init_seed is not None:
            if variant == "decoder":
                raise ValueError("the control experiment re-initialises the UNet; the decoder variant does not use one")
            torch.manual_seed(random_init_seed)
            pipe.unet = UNet2DConditionModel.from_config(pipe.unet.config).to(pipe.device)
        for part in (pipe.unet, pipe.vae, pipe.text_encoder):
            part.requires_grad_(False).eval()
        adapted = pipe.vae if variant == "decoder" else pipe.unet
        fingerprint = base_fingerprint(adapted)
        base_parameters = sum(p.numel() for m in (pipe.unet, pipe.vae) for p in m.parameters())
        if variant == "augmented" and image_conditioning:
            widen_conv_in(pipe.unet, pipe.vae.config.latent_channels)
        return cls(
            pipe,
            variant,
            str(model),
            fingerprint,
            timestep,
            image_conditioning,
            zero_snr,
            random_init_seed,
            base_parameters,
        )

    @property
    def module(self) -> torch.nn.Module:
        """The network the adapters live in: the VAE for the decoder variant, else the UNet."""
        return self.pipe.vae if self.variant == "decoder" else self.pipe.unet

    @property
    def device(self) -> torch.device:
        return self.pipe.unet.device

    def add(
        self, intrinsic: str, rank: int = 8, layers: str = "both", decoder_rank: int = 0
    ) -> list[torch.nn.Parameter]:
        """A new, trainable adapter for ``intrinsic`` (with a decoder adapter if ``decoder_rank``); its parameters."""
        if decoder_rank < 0:
            raise ValueError(f"decoder_rank must be 0 (the base decoder) or positive, got {decoder_rank}")
        if self.variant == "decoder" and decoder_rank:
            raise ValueError(
                "the decoder variant's LoRA is the decoder adapter; set its size with rank, not decoder_rank"
            )
        add_adapter(self.module, intrinsic, self.variant, rank, layers)
        if decoder_rank:
            add_adapter(self.pipe.vae, intrinsic, "decoder", decoder_rank)
        self.cards[intrinsic] = {"intrinsic": intrinsic, "rank": rank, "layers": layers, "decoder_rank": decoder_rank}
        return self.parameters(intrinsic)

    def parameters(self, intrinsic: str) -> list[torch.nn.Parameter]:
        """The trainable parameters of the intrinsic's adapter: its UNet (or decoder) LoRA and any decoder LoRA."""
        found = adapter_parameters(self.module, intrinsic)
        if self.variant != "decoder":
            found += adapter_parameters(self.pipe.vae, intrinsic)
        return found

    def card(self, intrinsic: str, **extra: Any) -> dict[str, Any]:
        """The card an adapter is saved with: what it is, what it was trained on, which base it needs."""
        from .adapters import NORMAL_CONVENTION

        on_module = sum(p.numel() for p in adapter_parameters(self.module, intrinsic))
        on_decoder = sum(p.numel() for p in self.parameters(intrinsic)) - on_module
        added = on_module + on_decoder
        return {
            **self.cards[intrinsic],
            "variant": self.variant,
            "prompt": prompt_for(intrinsic),
            "timestep": self.timestep,
            "image_conditioning": self.image_conditioning,
            "base": {
                "model": self.model_name,
                "fingerprint": self.fingerprint,
                "vae_fingerprint": self.vae_fingerprint,
                "random_init": self.random_init_seed,
            },
            "parameters": {
                "lora": added,
                "unet_lora": 0 if self.variant == "decoder" else on_module,
                "decoder_lora": on_module if self.variant == "decoder" else on_decoder,
                "base": self.base_parameters,
                "base_counts": "UNet + VAE",
                "percent": 100.0 * added / self.base_parameters,
            },
            "normal_convention": NORMAL_CONVENTION,
            **extra,
        }

    def load(self, folder: str | os.PathLike[str]) -> dict[str, Any]:
        """Load an adapter folder written by ``spatialgen train ilora``, checking it belongs to this base."""
        card = read_card(folder)
        if card["variant"] != self.variant:
            raise ValueError(f"{str(folder)!r} holds a {card['variant']} adapter; this model is {self.variant}")
        check_base(card, self.fingerprint, self.model_name)
        if decoder_rank(card) and self.variant != "decoder":
            check_base(card, self.vae_fingerprint, self.model_name, key="vae_fingerprint")
        card = load_adapter(self.pipe, folder)
        self.cards[card["intrinsic"]] = card
        return card

    def has_decoder_adapter(self, intrinsic: str) -> bool:
        return self.variant != "decoder" and bool(self.cards.get(intrinsic, {}).get("decoder_rank", 0))

    # ------------------------------------------------------------------------- shared pieces

    def text(self, intrinsic: str | None, n: int) -> torch.Tensor:
        """Text embeddings of the intrinsic's prompt (``None``: the empty prompt), repeated ``n`` times."""
        prompt = "" if intrinsic is None else prompt_for(intrinsic)
        if prompt not in self._text:
            tokenizer = self.pipe.tokenizer
            ids = tokenizer(
                [prompt],
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            with torch.no_grad():
                self._text[prompt] = self.pipe.text_encoder(ids.to(self.device))[0]
        return self._text[prompt].expand(n, -1, -1)

    def image_latents(self, images: torch.Tensor) -> torch.Tensor:
        """The variant's view of images in [-1, 1]: the posterior mode, scaled for the single-step UNet."""
        mode = self.pipe.vae.encode(images.to(self.device, self.pipe.vae.dtype)).latent_dist.mode()
        return mode * self.pipe.vae.config.scaling_factor if self.variant == "single_step" else mode

    def decode_latents(self, latents: torch.Tensor, intrinsic: str) -> torch.Tensor:
        """Scaled intrinsic latents -> [-1, 1] images, by the intrinsic's decoder adapter or else the base decoder."""
        activate(self.pipe.vae, intrinsic if self.has_decoder_adapter(intrinsic) else None)
        return self.pipe.vae.decode(latents / self.pipe.vae.config.scaling_factor).sample

    def decode(self, latents: torch.Tensor, intrinsic: str) -> torch.Tensor:
        """Scaled intrinsic latents -> maps in [0, 1]."""
        return image_to_map(intrinsic, self.decode_latents(latents, intrinsic))

    # ------------------------------------------------------------------------- training

    def loss(
        self,
        intrinsic: str,
        image_latents: torch.Tensor,
        target: torch.Tensor | None,
        target_image: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """The variant's training loss on one batch.

        ``target`` is the intrinsic's scaled latent (a posterior sample) for the UNet variants, and
        ``target_image`` the intrinsic as a [-1, 1] image: what the decoder variant is compared
        with in pixels, and what a decoder adapter must rebuild from ``target`` (the round trip).
        """
        activate(self.module, intrinsic)
        n = image_latents.shape[0]
        if self.variant == "decoder":
            return F.mse_loss(self.pipe.vae.decode(image_latents).sample.float(), target_image.float())
        if target is None:
            raise ValueError(f"the {self.variant} variant trains on the intrinsic's latents; pass target")
        if self.variant == "single_step":
            t = torch.full((n,), self.timestep, device=self.device, dtype=torch.long)
            pred = self.pipe.unet(image_latents, t, encoder_hidden_states=self.text(intrinsic, n)).sample
            loss = F.mse_loss(pred.float(), target.float())
        else:
            scheduler = self.training_scheduler()
            t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=generator).to(self.device)
            noise = torch.randn(target.shape, generator=generator).to(self.device)
            noisy = scheduler.add_noise(target, noise, t)
            inputs = torch.cat([noisy, image_latents], dim=1) if self.image_conditioning else noisy
            pred = self.pipe.unet(inputs, t, encoder_hidden_states=self.text(intrinsic, n)).sample
            loss = F.mse_loss(pred.float(), denoising_target(scheduler, target, noise, t).float())
        if self.has_decoder_adapter(intrinsic):  # separate parameters: the sum trains each on its own loss
            loss = loss + F.mse_loss(self.decode_latents(target, intrinsic).float(), target_image.float())
        return loss

    def training_scheduler(self) -> Any:
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(self.scheduler_config)

    # ------------------------------------------------------------------------- prediction

    @torch.no_grad()
    def predict(
        self,
        images: torch.Tensor,
        intrinsic: str,
        steps: int = 25,
        guidance: float = 3.0,
        guidance_rescale: float = 0.7,
        strength: float = 0.8,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Maps ``(B, C, H, W)`` in [0, 1] of images ``(B, 3, H, W)`` in [-1, 1].

        ``steps``, ``guidance`` (text CFG), ``guidance_rescale`` and ``strength`` (the SDEdit start
        without image conditioning) concern only the augmented variant.
        """
        if intrinsic not in self.cards:
            raise ValueError(f"no {intrinsic} adapter is loaded (loaded: {', '.join(self.cards) or 'none'})")
        activate(self.module, intrinsic)
        latents = self.image_latents(images)
        n = latents.shape[0]
        if self.variant == "decoder":
            return image_to_map(intrinsic, self.pipe.vae.decode(latents).sample)
        if self.variant == "single_step":
            t = torch.full((n,), self.timestep, device=self.device, dtype=torch.long)
            out = self.pipe.unet(latents, t, encoder_hidden_states=self.text(intrinsic, n)).sample
            return self.decode(out, intrinsic)
        return self.decode(
            self.sample(latents, intrinsic, steps, guidance, guidance_rescale, strength, generator), intrinsic
        )

    def sample(
        self,
        image_latents: torch.Tensor,
        intrinsic: str,
        steps: int,
        guidance: float,
        guidance_rescale: float,
        strength: float,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """DPM-Solver++ sampling of the intrinsic's scaled latent, conditioned on the image latent."""
        from diffusers import DPMSolverMultistepScheduler
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

        if steps <= 0:
            raise ValueError(f"steps must be positive, got {steps}")
        if not 0 < strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        scheduler = DPMSolverMultistepScheduler.from_config(self.scheduler_config)
        scheduler.set_timesteps(steps, device=self.device)
        n = image_latents.shape[0]
        noise = torch.randn(image_latents.shape, generator=generator, dtype=torch.float32).to(self.device)
        timesteps = scheduler.timesteps
        if self.image_conditioning:
            latents = noise * scheduler.init_noise_sigma
        else:  # SDEdit from the image itself: the only link to the input without the extra channels
            timesteps = timesteps[len(timesteps) - max(1, round(strength * len(timesteps))) :]
            scaled = image_latents * self.pipe.vae.config.scaling_factor
            latents = scheduler.add_noise(scaled, noise, timesteps[:1].repeat(n))
            scheduler.set_begin_index(len(scheduler.timesteps) - len(timesteps))
        cond, uncond = self.text(intrinsic, n), self.text(None, n)
        for t in timesteps:
            x = scheduler.scale_model_input(latents, t)
            x = torch.cat([x, image_latents], dim=1) if self.image_conditioning else x
            if guidance == 1.0:
                pred = self.pipe.unet(x, t, encoder_hidden_states=cond).sample
            else:
                both = self.pipe.unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
                pred_uncond, pred_cond = both.chunk(2)
                pred = pred_uncond + guidance * (pred_cond - pred_uncond)
                if guidance_rescale > 0:
                    pred = rescale_noise_cfg(pred, pred_cond, guidance_rescale=guidance_rescale)
            latents = scheduler.step(pred, t, latents).prev_sample
        return latents


def scheduler_config(base: Mapping[str, Any], zero_snr: bool | None) -> dict[str, Any]:
    """The base's noise schedule, or with zero terminal SNR and trailing timesteps (Lin et al.) when asked.

    Zero terminal SNR needs a v-prediction base (an epsilon model cannot predict from pure noise's
    endpoint); it is the paper's remedy for the colour shift of multi-step extraction.
    """
    config = dict(base)
    if zero_snr:
        if config.get("prediction_type") != "v_prediction":
            raise ValueError(
                "zero terminal SNR needs a v-prediction base model (this one predicts "
                f"{config.get('prediction_type')!r}); leave zero_snr off or use an SD 2.x-style checkpoint"
            )
        config.update(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    elif zero_snr is False:
        config.update(rescale_betas_zero_snr=False, timestep_spacing="leading")
    return config
