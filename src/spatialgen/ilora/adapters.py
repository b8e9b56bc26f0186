"""Intrinsic LoRA adapters: where they go, how they are named, saved, checked and loaded.

One adapter per intrinsic, named after it (``normal``, ``depth``, ...), so several live on one
base and are swapped with :func:`activate`. Three variants:

* ``single_step``: LoRA on the UNet's attention (self ``attn1``, cross ``attn2`` or both);
  saved in the diffusers LoRA format, so ``pipe.load_lora_weights(folder,
  weight_name="pytorch_lora_weights.safetensors", adapter_name="normal")`` loads it into any
  Stable Diffusion pipeline with this UNet;
* ``augmented``: the same LoRA on a UNet whose ``conv_in`` takes the image latent as extra input
  channels (InstructPix2Pix style), plus a LoRA on that widened ``conv_in``. The widened layer
  itself is rebuilt from the base on load and never stored: zero weights on the new channels.
  Its LoRA is the image's only way in. The paper starts those channels from InstructPix2Pix's
  trained ``conv_in`` and freezes them; frozen at zero (no InstructPix2Pix exists for our base)
  the UNet never sees the image and draws some plausible scene's map instead (measured: depth
  AbsRel 0.51 against 0.13 single-step), so here the path is learned, and stays zero at the start;
* ``decoder``: LoRA on the VAE decoder (saved in peft's format), the image's own latent in.

A UNet adapter may carry a **decoder adapter** of its intrinsic (``decoder_rank`` > 0): LoRA on
the VAE decoder trained only to decode the intrinsic's own latents (the round trip map -> encoder
-> decoder -> map), so that a VAE which never saw such maps can draw them. The paper needed none:
Stable Diffusion's VAE reconstructs normal maps. The embedded model's VAE, trained on scene
renders only, does not: its round trip of exact normal maps is 44 degrees off. The decoder can
draw such maps (latents optimised per image decode to within 3 degrees), but the encoder does not
give those latents, and the UNet adapter learns to predict the encoder's; a rank-2 decoder adapter
brings the round trip to 3.5 degrees (``benchmarks/ilora.py vae``). The reading of intrinsics from
the image stays the UNet adapter's alone: the decoder adapter never sees an image.

Decoder LoRA sits on the decoder's convolutions as well as its attention: an AutoencoderKL decoder
has a single attention layer, at its coarsest resolution, which cannot change the colours it draws.

Each adapter folder holds its weights and ``ilora.json`` (the card: intrinsic, variant, rank,
layers, decoder rank, timestep, the base model's name and weight fingerprint, the training config
and held-out scores). The fingerprint makes "this LoRA belongs to another base model" an error
that names both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import torch

from .targets import check_intrinsic

VARIANTS: Final[tuple[str, ...]] = ("single_step", "augmented", "decoder")
LAYER_CHOICES: Final[tuple[str, ...]] = ("both", "self", "cross")
PROJECTIONS: Final[str] = r"(to_q|to_k|to_v|to_out\.0)"
#: Every convolution and attention projection of an AutoencoderKL decoder.
DECODER_LAYERS: Final[str] = (
    r"^decoder\.(.*\.)?(conv_in|conv1|conv2|conv|conv_shortcut|conv_out|to_q|to_k|to_v|to_out\.0)$"
)
CARD: Final[str] = "ilora.json"
UNET_WEIGHTS: Final[str] = "pytorch_lora_weights.safetensors"
DECODER_WEIGHTS: Final[str] = "decoder_lora.safetensors"
NORMAL_CONVENTION: Final[str] = "camera space, x right, y up, z toward the camera, stored as (n + 1) / 2"


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown I-LoRA variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return variant


def target_pattern(variant: str, layers: str = "both") -> str:
    """The peft ``target_modules`` regex of a variant: the attention projections (augmented: and ``conv_in``)."""
    check_variant(variant)
    if layers not in LAYER_CHOICES:
        raise ValueError(f"layers must be one of {', '.join(LAYER_CHOICES)}, got {layers!r}")
    if variant == "decoder":
        if layers != "both":
            raise ValueError(
                "a decoder adapter covers the whole decoder (it has no cross-attention); leave layers at 'both'"
            )
        return DECODER_LAYERS
    attention = {"both": "attn[12]", "self": "attn1", "cross": "attn2"}[layers]
    pattern = rf".*\.{attention}\.{PROJECTIONS}$"
    return rf"{pattern}|^conv_in$" if variant == "augmented" else pattern


def add_adapter(module: torch.nn.Module, name: str, variant: str, rank: int = 8, layers: str = "both") -> int:
    """Add a trainable LoRA adapter ``name`` to ``module`` (a UNet, or a VAE for ``decoder``); returns its size.

    A ~ N(0, 1/r), B = 0 (peft's "gaussian" initialisation, as the paper's code): a new adapter
    leaves the base's output unchanged. Everything but this adapter is frozen.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if rank <= 0:
        raise ValueError(f"LoRA rank must be positive, got {rank}")
    config = LoraConfig(
        r=rank, lora_alpha=rank, target_modules=target_pattern(variant, layers), init_lora_weights="gaussian"
    )
    inject_adapter_in_model(config, module, adapter_name=name)
    added = 0
    for parameter_name, parameter in module.named_parameters():
        trainable = f".lora_A.{name}." in parameter_name or f".lora_B.{name}." in parameter_name
        parameter.requires_grad_(trainable)
        added += parameter.numel() if trainable else 0
    if added == 0:
        raise ValueError(f"{type(module).__name__} has no layer for a {variant} LoRA ({layers})")
    activate(module, name)
    return added


def adapter_parameters(module: torch.nn.Module, name: str) -> list[torch.nn.Parameter]:
    return [p for n, p in module.named_parameters() if f".lora_A.{name}." in n or f".lora_B.{name}." in n]


def activate(module: torch.nn.Module, name: str | None) -> None:
    """Make ``name`` the one active adapter of every LoRA layer in ``module`` (``None``: the base alone).

    Every layer is switched, also those without ``name`` (they then compute the base): an
    adapter on self-attention only must not run beside another intrinsic's cross-attention LoRA.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [layer for layer in module.modules() if isinstance(layer, BaseTunerLayer)]
    if name is not None and not any(name in layer.lora_A for layer in layers):
        raise ValueError(f"no adapter named {name!r} is loaded")
    for layer in layers:
        layer.set_adapter([] if name is None else name)


def widen_conv_in(unet: torch.nn.Module, extra: int) -> torch.nn.Module:
    """Give ``unet.conv_in`` ``extra`` more input channels with zero weights (frozen): the augmented input.

    With zero weights on the new channels the widened UNet computes exactly what the base does,
    whatever image latent rides along, so training starts from the base model.
    """
    old = unet.conv_in
    if old.in_channels != unet.config.in_channels:
        raise ValueError("conv_in is already widened")
    new = torch.nn.Conv2d(old.in_channels + extra, old.out_channels, old.kernel_size, old.stride, old.padding)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels].copy_(old.weight)
        new.bias.copy_(old.bias)
    new.requires_grad_(False)
    unet.conv_in = new.to(old.weight.device, old.weight.dtype)
    return unet


def decoder_rank(card: Mapping[str, Any]) -> int:
    """The rank of the adapter's LoRA on the VAE decoder (0: it decodes with the base decoder)."""
    return int(card["rank"]) if card["variant"] == "decoder" else int(card.get("decoder_rank", 0))


def save_adapter(pipe: Any, name: str, folder: str | os.PathLike[str], card: Mapping[str, Any]) -> Path:
    """Write adapter ``name`` of ``pipe`` (its UNet part, its decoder part) and its card to ``folder``, atomically."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from ..fileio import atomic_write_json, replace_dir

    variant = check_variant(card["variant"])

    def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {
            k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(module, adapter_name=name).items()
        }

    folder = Path(folder)
    with replace_dir(folder) as tmp:
        if variant != "decoder":
            from diffusers import StableDiffusionPipeline

            StableDiffusionPipeline.save_lora_weights(
                tmp,
                unet_lora_layers=state(pipe.unet),
                weight_name=UNET_WEIGHTS,
                unet_lora_adapter_metadata={
                    "r": card["rank"],
                    "lora_alpha": card["rank"],
                    "target_modules": target_pattern(variant, card["layers"]),
                },
            )
        if decoder_rank(card):
            save_file(state(pipe.vae), str(tmp / DECODER_WEIGHTS), metadata={"format": "pt"})
        atomic_write_json(tmp / CARD, dict(card))
    return folder


def read_card(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The card of an adapter folder, checked; a clear error for a folder that is not one."""
    folder = Path(folder)
    path = folder / CARD
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} is not an I-LoRA adapter folder (no {CARD}); `spatialgen train ilora`"
        )
    try:
        card = json.loads(path.read_text())
        check_intrinsic(card["intrinsic"])
        check_variant(card["variant"])
    except (json.JSONDecodeError, KeyError, ValueError) as error:
        raise ValueError(f"{path} is not a valid I-LoRA card: {error}") from error
    return card


def check_base(card: Mapping[str, Any], fingerprint: str, model: str, key: str = "fingerprint") -> None:
    """Refuse an adapter trained on another base model, naming both (``key``: which weights' fingerprint)."""
    trained = card.get("base", {})
    if trained.get(key) != fingerprint:
        part = "VAE " if key == "vae_fingerprint" else ""
        raise ValueError(
            f"the {card['intrinsic']} I-LoRA was trained for base model {trained.get('model')!r} "
            f"({part}weights {trained.get(key)}), but the model given is {model!r} ({part}weights {fingerprint}); "
            f"load it with --model {trained.get('model')} or train an adapter for {model!r}"
        )


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; re-train or re-copy the adapter")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error}); re-train or re-copy it") from error


def load_adapter(pipe: Any, folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Load the adapter in ``folder`` into ``pipe`` under its intrinsic's name; returns its card.

    The UNet part loads through diffusers' ``pipe.load_lora_weights`` (the path users take), the
    decoder part through peft into ``pipe.vae``. Every file is read before anything is loaded, so
    an unreadable file is an error that leaves the model as it was.
    """
    from peft import set_peft_model_state_dict

    folder = Path(folder)
    card = read_card(folder)
    name, variant, rank = card["intrinsic"], card["variant"], decoder_rank(card)
    decoder_state = _read_weights(folder / DECODER_WEIGHTS) if rank else None
    if variant != "decoder":
        _read_weights(folder / UNET_WEIGHTS)
    try:
        if variant != "decoder":
            pipe.load_lora_weights(str(folder), weight_name=UNET_WEIGHTS, adapter_name=name)
        if decoder_state is not None:
            add_adapter(pipe.vae, name, "decoder", rank)
            result = set_peft_model_state_dict(pipe.vae, decoder_state, adapter_name=name)
            unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
            if unexpected:
                raise ValueError(f"unexpected keys {unexpected[:3]}")
    except (RuntimeError, ValueError, KeyError) as error:
        raise ValueError(f"the LoRA in {str(folder)!r} does not fit this model: {error}") from error
    for module in (pipe.unet, pipe.vae):
        module.requires_grad_(False)
    return card
