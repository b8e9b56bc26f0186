"""Stable Diffusion as one ``.safetensors`` file (the original LDM layout), in and out.

Many users hold SD weights as a single checkpoint file (the layout of the original
``ldm`` code, and of A1111 / ComfyUI model folders), not as a diffusers folder. Reading one is
diffusers' ``from_single_file``, which needs the model's component configs: from the hub when
online, or offline from a diffusers folder of the same architecture (``config``), e.g. the
model's own diffusers release. :func:`export_single_file` writes a pipeline in that layout, the
inverse of diffusers' conversion for any SD 1.x-style UNet (any number of levels and layers per
block), its VAE and its CLIP text encoder, so a tiny model can travel the whole round trip in a
test and a trained model can be handed to tools that want one file. ``.ckpt`` files are refused:
they are pickles and could run code on load.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
_RESNET = (
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("time_emb_proj.", "emb_layers.1."),
    ("conv_shortcut.", "skip_connection."),
)
_VAE_ATTENTION = (
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
)


def is_single_file(model: str | os.PathLike[str]) -> bool:
    path = Path(model)
    return path.suffix.lower() in SINGLE_FILE_SUFFIXES and path.is_file()


def _renamed(state: dict[str, torch.Tensor], prefixes: list[tuple[str, str, tuple]]) -> dict[str, torch.Tensor]:
    """Keys moved from each diffusers prefix to its LDM prefix, inner names renamed by the given pairs."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for old, new, inner in prefixes:
            if key.startswith(old):
                rest = key[len(old) :]
                for a, b in inner:
                    if rest.startswith(a):
                        rest = b + rest[len(a) :]
                        break
                out[new + rest] = value
                break
    return out


def unet_to_ldm(unet: Any) -> dict[str, torch.Tensor]:
    """A UNet2DConditionModel's weights under the LDM names diffusers' ``convert_ldm_unet_checkpoint`` reads."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    state = unet.state_dict()
    config = unet.config
    per_block = config.layers_per_block
    if not isinstance(per_block, int):
        raise ValueError("single-file export needs the same layers_per_block in every block (SD's layout)")
    levels = len(config.block_out_channels)
    out = {ldm: state[ours] for ours, ldm in DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"].items()}
    prefixes: list[tuple[str, str, tuple]] = []
    for b in range(levels):
        for j in range(per_block):
            index = 1 + b * (per_block + 1) + j
            prefixes.append((f"down_blocks.{b}.resnets.{j}.", f"input_blocks.{index}.0.", _RESNET))
            prefixes.append((f"down_blocks.{b}.attentions.{j}.", f"input_blocks.{index}.1.", ()))
        if b < levels - 1:
            index = 1 + b * (per_block + 1) + per_block
            prefixes.append((f"down_blocks.{b}.downsamplers.0.conv.", f"input_blocks.{index}.0.op.", ()))
    prefixes += [
        ("mid_block.resnets.0.", "middle_block.0.", _RESNET),
        ("mid_block.attentions.0.", "middle_block.1.", ()),
        ("mid_block.resnets.1.", "middle_block.2.", _RESNET),
    ]
    for b in range(levels):
        attention = any(k.startswith(f"up_blocks.{b}.attentions.") for k in state)
        for j in range(per_block + 1):
            index = b * (per_block + 1) + j
            prefixes.append((f"up_blocks.{b}.resnets.{j}.", f"output_blocks.{index}.0.", _RESNET))
            prefixes.append((f"up_blocks.{b}.attentions.{j}.", f"output_blocks.{index}.1.", ()))
        if b < levels - 1:
            index = b * (per_block + 1) + per_block
            slot = 2 if attention else 1
            prefixes.append((f"up_blocks.{b}.upsamplers.0.conv.", f"output_blocks.{index}.{slot}.conv.", ()))
    out.update(_renamed(state, prefixes))
    missing = len(state) - len(out)
    if missing:
        raise ValueError(f"{missing} UNet weights have no LDM name (an architecture single files do not describe)")
    return out


def vae_to_ldm(vae: Any) -> dict[str, torch.Tensor]:
    """An AutoencoderKL's weights under the LDM names (attention projections as 1 x 1 convolutions)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    state = vae.state_dict()
    out = {ldm: state[ours] for ours, ldm in DIFFUSERS_TO_LDM_MAPPING["vae"].items() if ours in state}
    levels = len(vae.config.block_out_channels)
    shortcut = (("conv_shortcut.", "nin_shortcut."),)
    prefixes: list[tuple[str, str, tuple]] = []
    for side in ("encoder", "decoder"):
        for k in (0, 1):
            prefixes.append((f"{side}.mid_block.resnets.{k}.", f"{side}.mid.block_{k + 1}.", shortcut))
        prefixes.append((f"{side}.mid_block.attentions.0.", f"{side}.mid.attn_1.", _VAE_ATTENTION))
    for i in range(levels):
        prefixes.append((f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.", ()))
        prefixes.append((f"encoder.down_blocks.{i}.downsamplers.0.conv.", f"encoder.down.{i}.downsample.conv.", ()))
        up = levels - 1 - i
        prefixes.append((f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{up}.block.", ()))
        prefixes.append((f"decoder.up_blocks.{i}.upsamplers.0.conv.", f"decoder.up.{up}.upsample.conv.", ()))
    renamed = _renamed({k: v for k, v in state.items() if k not in DIFFUSERS_TO_LDM_MAPPING["vae"]}, prefixes)
    for key, value in renamed.items():
        key = key.replace(".conv_shortcut.", ".nin_shortcut.")
        if ".mid.attn_1." in key and key.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # LDM's attention projections are 1 x 1 convolutions
        out[key] = value
    return out


def export_single_file(pipe: Any, path: str | os.PathLike[str]) -> Path:
    """Write an SD 1.x-style pipeline (UNet, VAE, CLIP text encoder) as one LDM-layout ``.safetensors`` file."""
    from safetensors.torch import save

    from ..fileio import atomic_write_bytes

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"write single-file checkpoints as .safetensors, got {path.name!r}")
    state = {UNET_PREFIX + k: v for k, v in unet_to_ldm(pipe.unet).items()}
    state.update({VAE_PREFIX + k: v for k, v in vae_to_ldm(pipe.vae).items()})
    # The LDM layout keeps transformers' old ``text_model.`` level, which transformers >= 5.6 flattened away.
    inner = "" if hasattr(pipe.text_encoder, "text_model") else "text_model."
    state.update({TEXT_PREFIX + inner + k: v for k, v in pipe.text_encoder.state_dict().items()})
    atomic_write_bytes(path, save({k: v.detach().contiguous().cpu() for k, v in state.items()}))
    return path


def load_single_file(
    path: str | os.PathLike[str], config: str | None = None, dtype: torch.dtype = torch.float32
) -> Any:
    """A StableDiffusionPipeline from one checkpoint file; ``config``: a diffusers folder or id of its architecture."""
    from diffusers import StableDiffusionPipeline

    path = Path(path)
    if path.suffix.lower() == ".ckpt":
        raise ValueError(
            f"{path.name} is a pickle (.ckpt) and could run code when loaded; convert it to .safetensors first"
        )
    kwargs: dict[str, Any] = {"torch_dtype": dtype, "safety_checker": None, "requires_safety_checker": False}
    if config is not None:
        kwargs["config"] = config
        kwargs["local_files_only"] = Path(config).is_dir()
    try:
        return StableDiffusionPipeline.from_single_file(str(path), **kwargs)
    except Exception as error:  # diffusers raises many kinds; say what to give
        hint = "" if config else " (offline, pass the diffusers folder of its architecture as its config)"
        raise ValueError(f"could not read {path.name} as a Stable Diffusion checkpoint{hint}: {error}") from error
