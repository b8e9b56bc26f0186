"""Block numbering of diffusion backbones, for the block index l of I-LDM's weight schedules.

The I-LDM paper sets w per "block" (Drop: L = {3, ..., 7}) without defining the numbering. Ours:

* **UNet2DConditionModel** (SD 1.x / 2.x, SDXL): blocks are numbered 1..K in forward order,
  ``down_blocks`` first, then ``mid_block``, then ``up_blocks``. SD 1.x / 2.x have 4 + 1 + 4 = 9
  blocks, so L = {3..7} is symmetric about the mid block (5) and leaves out the two outermost
  blocks of each side, as the paper intends ("a low weight to the outer blocks"); SDXL has
  3 + 1 + 3 = 7.
* **Transformer backbones** (PixArt-alpha's ``PixArtTransformer2DModel``, any model whose attention
  sits in ``transformer_blocks.N``): each transformer block is one block, numbered N + 1.

A block's number applies to every self-attention layer inside it.
"""

from __future__ import annotations

import re

import torch

_UNET = re.compile(r"^(down_blocks|mid_block|up_blocks)(?:\.(\d+))?\.")
_TRANSFORMER = re.compile(r"^transformer_blocks\.(\d+)\.")


def self_attention_layers(model: torch.nn.Module) -> list[str]:
    """Names of the self-attention (``attn1``) processors of a diffusers model, in forward order."""
    return [name for name in model.attn_processors if name.endswith("attn1.processor")]


def block_number(model: torch.nn.Module, processor_name: str) -> int:
    """The block number (1-based) of an attention processor name of ``model`` (see the module docstring)."""
    match = _UNET.match(processor_name)
    if match is not None:
        n_down = len(model.down_blocks)
        kind, index = match.group(1), int(match.group(2) or 0)
        if kind == "down_blocks":
            return index + 1
        if kind == "mid_block":
            return n_down + 1
        return n_down + 2 + index
    match = _TRANSFORMER.match(processor_name)
    if match is not None:
        return int(match.group(1)) + 1
    raise ValueError(
        f"cannot number the block of {processor_name!r}: expected a UNet (down_blocks / mid_block / up_blocks) "
        "or a transformer with transformer_blocks.N"
    )


def block_numbers(model: torch.nn.Module) -> dict[str, int]:
    """Block number of every self-attention processor of ``model``."""
    return {name: block_number(model, name) for name in self_attention_layers(model)}


def block_count(model: torch.nn.Module) -> int:
    """How many blocks the numbering has (9 for SD 1.x / 2.x UNets, 7 for SDXL's)."""
    if hasattr(model, "down_blocks") and hasattr(model, "up_blocks"):
        return len(model.down_blocks) + 1 + len(model.up_blocks)
    if hasattr(model, "transformer_blocks"):
        return len(model.transformer_blocks)
    raise ValueError(f"cannot number the blocks of a {type(model).__name__}")
