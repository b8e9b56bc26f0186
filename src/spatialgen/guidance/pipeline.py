"""``InfSplignPipeline``: Stable Diffusion with InfSplign's spatial guidance, for any SD 1.x / 2.x checkpoint.

A ``StableDiffusionPipeline`` subclass, so ``from_pretrained``, ``save_pretrained`` and
``InfSplignPipeline.from_pipe(existing_pipe)`` work as in diffusers. ``__call__`` keeps diffusers'
order (check inputs, encode the prompt, prepare latents, denoise, decode) and its arithmetic, so
with ``spatial_guidance=None`` (or weight 0) the images are exactly those of
``StableDiffusionPipeline``. With a :class:`~spatialgen.guidance.config.InfSplignConfig`, the
first steps get InfSplign's update (:mod:`.guide`); the output adds the parsed triplets and the
per-step trace (centroids, losses and, with ``record_maps``, the maps behind
``--save-attention``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import StableDiffusionPipeline
from diffusers.utils import BaseOutput

from ..models.pipeline import model_card, set_model_card
from .capture import capturing
from .config import InfSplignConfig
from .guide import GuidanceTrace, combine_guidance, guide_for_call
from .prompts import SpatialTriplet


@dataclass
class InfSplignPipelineOutput(BaseOutput):
    """Images (PIL list, array or latents) and, when guided, what the guidance measured."""

    images: Any
    nsfw_content_detected: list[bool] | None = None
    trace: GuidanceTrace | None = None


class InfSplignPipeline(StableDiffusionPipeline):
    """Text to image with objects placed where the prompt's relation says (InfSplign, training-free)."""

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        prompt: str | list[str],
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        cross_attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]] | None = None,
        spatial_guidance: InfSplignConfig | None = None,
        triplets: list[SpatialTriplet | None] | None = None,
    ) -> InfSplignPipelineOutput | tuple[Any, Any]:
        """As ``StableDiffusionPipeline.__call__``, plus ``spatial_guidance`` (None: plain sampling).

        ``triplets`` overrides prompt parsing: one :class:`SpatialTriplet` (or None) per prompt,
        e.g. from :func:`~spatialgen.guidance.prompts.triplet_from_parts`.
        """
        height = height or self.unet.config.sample_size * self.vae_scale_factor
        width = width or self.unet.config.sample_size * self.vae_scale_factor
        if isinstance(prompt, str):
            prompt = [prompt]
        if not prompt or not all(isinstance(p, str) for p in prompt):
            raise ValueError("prompt must be a string or a non-empty list of strings")
        self.check_inputs(prompt, height, width, None, negative_prompt)
        if num_inference_steps <= 0:
            raise ValueError(f"num_inference_steps must be positive, got {num_inference_steps}")
        device = self._execution_device
        cfg = guidance_scale > 1.0
        prompt_embeds, negative_embeds = self.encode_prompt(prompt, device, num_images_per_prompt, cfg, negative_prompt)
        cond_embeds = prompt_embeds
        if cfg:
            prompt_embeds = torch.cat([negative_embeds, prompt_embeds])

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        rows = len(prompt) * num_images_per_prompt
        latents = self.prepare_latents(
            rows, self.unet.config.in_channels, height, width, prompt_embeds.dtype, device, generator, latents
        )
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)

        rows = [p for p in prompt for _ in range(num_images_per_prompt)]
        guide, layers = guide_for_call(
            spatial_guidance, self.unet, self.tokenizer, rows, num_images_per_prompt, cond_embeds.shape[1], device,
            triplets,
        )  # fmt: skip

        def forward_cond(x: torch.Tensor) -> Any:
            # The conditional branch at the loop's current t (read when the guide calls it).
            return self.unet(
                x,
                t,
                encoder_hidden_states=cond_embeds,
                cross_attention_kwargs=cross_attention_kwargs,
                return_dict=False,
            )

        with capturing(self.unet, layers) as capture, self.progress_bar(total=len(timesteps)) as bar:
            for i, t in enumerate(timesteps):
                offset = None
                if guide is not None and guide.wants(i, len(timesteps)):
                    latents, offset = guide.step(capture, forward_cond, self.scheduler, latents, t, i, len(timesteps))
                latent_model_input = torch.cat([latents] * 2) if cfg else latents
                latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
                noise_pred = self.unet(
                    latent_model_input,
                    t,
                    encoder_hidden_states=prompt_embeds,
                    cross_attention_kwargs=cross_attention_kwargs,
                    return_dict=False,
                )[0]
                noise_pred = combine_guidance(noise_pred, guidance_scale if cfg else None, offset)
                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
                if callback_on_step_end is not None:
                    outputs = callback_on_step_end(self, i, t, {"latents": latents})
                    latents = outputs.pop("latents", latents)
                bar.update()

        if output_type == "latent":
            image: Any = latents
        else:
            image = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False, generator=generator)[0]
            image = self.image_processor.postprocess(image, output_type=output_type, do_denormalize=[True] * len(image))
        self.maybe_free_model_hooks()
        trace = guide.trace if guide is not None else None
        if not return_dict:
            return image, trace
        return InfSplignPipelineOutput(images=image, nsfw_content_detected=None, trace=trace)


def infsplign_pipeline(pipe: StableDiffusionPipeline) -> InfSplignPipeline:
    """The same components as ``pipe`` (shared, not copied) in an :class:`InfSplignPipeline`."""
    if isinstance(pipe, InfSplignPipeline):
        return pipe
    guided = InfSplignPipeline(
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        unet=pipe.unet,
        scheduler=pipe.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    set_model_card(guided, model_card(pipe))
    guided.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))
    return guided
