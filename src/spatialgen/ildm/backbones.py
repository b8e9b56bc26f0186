"""What differs between diffusion backbones for I-LDM: how a prompt becomes conditioning, how the denoiser is called.

I-LDM's idea (a second domain sharing the denoiser through cross-domain self-attention) does not
depend on the backbone; the plumbing around the denoiser does. Three families, as the paper trains:

* ``sd`` (SD 1.x / 2.x, the embedded model): one CLIP text encoder, ``unet(x, t, hidden)``;
* ``sdxl``: two text encoders (penultimate hidden states concatenated, pooled text embeddings of
  the second) and micro-conditioning time ids, ``unet(x, t, hidden, added_cond_kwargs=...)``;
* ``pixart`` (PixArt-alpha): a T5 encoder with an attention mask, a transformer denoiser called as
  ``transformer(x, hidden, timestep=..., encoder_attention_mask=..., added_cond_kwargs=...)`` whose
  output may carry learned variances (the first half of the channels is the prediction).

The SDXL and PixArt encoders are diffusers' own (``StableDiffusionXLPipeline.encode_prompt``,
``PixArtAlphaPipeline.encode_prompt``, called on a view that shares the I-LDM pipeline's modules),
so the conditioning is exactly the base pipeline's; a test checks that I-LDM with w = 0 draws the
base pipeline's images for each family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

FAMILIES = ("sd", "sdxl", "pixart")


@dataclass
class Conditioning:
    """A denoiser call's text conditioning, one row per sample; rows can be selected and stacked."""

    hidden: torch.Tensor  # (B, L, D) encoder_hidden_states
    mask: torch.Tensor | None = None  # (B, L) encoder_attention_mask (PixArt)
    added: dict[str, torch.Tensor | None] = field(default_factory=dict)  # added_cond_kwargs

    def __len__(self) -> int:
        return int(self.hidden.shape[0])

    def rows(self, index: slice) -> Conditioning:
        return Conditioning(
            self.hidden[index],
            None if self.mask is None else self.mask[index],
            {k: None if v is None else v[index] for k, v in self.added.items()},
        )

    def twice(self) -> Conditioning:
        """The conditioning of the joint batch ``cat([image rows, intrinsic rows])``: each pair shares its text."""
        return Conditioning(
            torch.cat([self.hidden, self.hidden]),
            None if self.mask is None else torch.cat([self.mask, self.mask]),
            {k: None if v is None else torch.cat([v, v]) for k, v in self.added.items()},
        )


def family_of(denoiser: torch.nn.Module) -> str:
    """``sd``, ``sdxl`` or ``pixart``, from the denoiser's class and config."""
    from diffusers import PixArtTransformer2DModel

    if isinstance(denoiser, PixArtTransformer2DModel):
        return "pixart"
    if getattr(getattr(denoiser, "config", None), "addition_embed_type", None) == "text_time":
        return "sdxl"
    return "sd"


def predict(denoiser: torch.nn.Module, x: torch.Tensor, t: Any, cond: Conditioning) -> torch.Tensor:
    """The denoiser's prediction for ``x`` at ``t`` (a scalar or one per row), whatever its family."""
    if family_of(denoiser) == "pixart":
        timestep = t if torch.is_tensor(t) and t.ndim > 0 else torch.as_tensor(t, device=x.device).expand(x.shape[0])
        out = denoiser(
            x,
            encoder_hidden_states=cond.hidden,
            encoder_attention_mask=cond.mask,
            timestep=timestep,
            added_cond_kwargs=cond.added,
        ).sample
        channels = x.shape[1]
        return out[:, :channels] if out.shape[1] == 2 * channels else out  # learned variances: drop them
    if cond.added:
        return denoiser(x, t, encoder_hidden_states=cond.hidden, added_cond_kwargs=cond.added).sample
    return denoiser(x, t, encoder_hidden_states=cond.hidden).sample


def encode_sd(pipe: Any, prompts: list[str], device: torch.device, negatives: list[str] | None) -> Conditioning:
    """Text embeddings as Stable Diffusion computes them; with CFG, ``cat([negative, positive])``."""

    def embed(texts: list[str], length: int) -> torch.Tensor:
        tokens = pipe.tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        use_mask = getattr(pipe.text_encoder.config, "use_attention_mask", False)
        mask = tokens.attention_mask.to(device) if use_mask else None
        return pipe.text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]

    positive = embed(prompts, pipe.tokenizer.model_max_length)
    if negatives is None:
        return Conditioning(positive)
    return Conditioning(torch.cat([embed(negatives, positive.shape[1]), positive]))


def encode_sdxl(
    pipe: Any, prompts: list[str], device: torch.device, cfg: bool, negative: list[str] | None, size: tuple[int, int]
) -> Conditioning:
    """SDXL's conditioning through diffusers' own encoder (zeroed negatives for an empty prompt, as its pipeline)."""
    from diffusers import StableDiffusionXLPipeline

    view = StableDiffusionXLPipeline(
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        text_encoder_2=pipe.text_encoder_2,
        tokenizer=pipe.tokenizer,
        tokenizer_2=pipe.tokenizer_2,
        unet=pipe.unet,
        scheduler=pipe.scheduler,
        force_zeros_for_empty_prompt=pipe.config.force_zeros_for_empty_prompt,
    )
    positive, negative_embeds, pooled, negative_pooled = view.encode_prompt(
        prompt=prompts,
        device=device,
        num_images_per_prompt=1,
        do_classifier_free_guidance=cfg,
        negative_prompt=negative,
    )
    projection = int(pipe.text_encoder_2.config.projection_dim)
    time_ids = view._get_add_time_ids(size, (0, 0), size, dtype=positive.dtype, text_encoder_projection_dim=projection)
    time_ids = time_ids.to(device).repeat(len(prompts), 1)
    if not cfg:
        return Conditioning(positive, added={"text_embeds": pooled, "time_ids": time_ids})
    return Conditioning(
        torch.cat([negative_embeds, positive]),
        added={"text_embeds": torch.cat([negative_pooled, pooled]), "time_ids": torch.cat([time_ids, time_ids])},
    )


def encode_pixart(
    pipe: Any, prompts: list[str], device: torch.device, cfg: bool, negative: list[str] | None, size: tuple[int, int]
) -> Conditioning:
    """PixArt-alpha's T5 conditioning and resolution micro-conditioning, through diffusers' own encoder."""
    from diffusers import PixArtAlphaPipeline

    view = PixArtAlphaPipeline(
        tokenizer=pipe.tokenizer,
        text_encoder=pipe.text_encoder,
        vae=pipe.vae,
        transformer=pipe.transformer,
        scheduler=pipe.scheduler,
    )
    positive, mask, negative_embeds, negative_mask = view.encode_prompt(
        prompts,
        do_classifier_free_guidance=cfg,
        negative_prompt=negative if negative is not None else "",
        num_images_per_prompt=1,
        device=device,
        clean_caption=False,
    )
    added: dict[str, torch.Tensor | None] = {"resolution": None, "aspect_ratio": None}
    rows = 2 * len(prompts) if cfg else len(prompts)
    if pipe.transformer.config.sample_size == 128:  # PixArt-alpha 1024 px is micro-conditioned on size
        height, width = size
        added = {
            "resolution": torch.tensor([[height, width]], dtype=positive.dtype, device=device).repeat(rows, 1),
            "aspect_ratio": torch.tensor([[height / width]], dtype=positive.dtype, device=device).repeat(rows, 1),
        }
    if not cfg:
        return Conditioning(positive, mask, added)
    return Conditioning(torch.cat([negative_embeds, positive]), torch.cat([negative_mask, mask]), added)


def encode(
    pipe: Any,
    prompts: list[str],
    device: torch.device,
    cfg: bool,
    negative: list[str] | None,
    size: tuple[int, int],
) -> Conditioning:
    """The conditioning of ``prompts`` for ``pipe``'s family; with ``cfg``, negative rows first."""
    family = family_of(pipe.denoiser)
    if family == "sdxl":
        return encode_sdxl(pipe, prompts, device, cfg, negative, size)
    if family == "pixart":
        return encode_pixart(pipe, prompts, device, cfg, negative, size)
    negatives = (negative if negative is not None else [""] * len(prompts)) if cfg else None
    return encode_sd(pipe, prompts, device, negatives)
