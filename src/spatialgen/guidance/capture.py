"""Keep the cross-attention probabilities of chosen UNet layers, differentiably, without changing any output.

:class:`CaptureAttnProcessor` wraps whatever processor a cross-attention (``attn2``) layer already
has (diffusers' ``AttnProcessor2_0``, or one of ours): the layer's output is still computed by
that processor, bit for bit, and *besides* it the processor recomputes ``softmax(q k^T * scale)``
for the batch rows being guided, averages it over heads and hands it to the
:class:`AttentionCapture`. Because the output path is untouched, guidance at weight 0 reproduces
unguided sampling exactly, and any other processor (I-LDM's cross-domain self-attention lives on
``attn1``) keeps working.

The capture can stop the UNet as soon as the last chosen layer has run (``stop_early``): InfSplign's
loss depends only on those maps, so the gradient pass skips the rest of the decoder, which in SD
is its most expensive part (the highest-resolution block).

Layers are named as in ``unet.attn_processors`` without the ``.processor`` suffix
(``up_blocks.1.attentions.0.transformer_blocks.0.attn2``); a selection may name a prefix
("up_blocks.1") to take every cross-attention layer under it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

DEFAULT_LAYER_COUNT = 6  # InfSplign: the first 6 cross-attention layers of the decoder (SD 1.x/2.x: up_blocks.1-2)


class StopForward(Exception):
    """Raised by the capture after the last chosen layer: the rest of the UNet is not needed."""


def cross_attention_layers(unet: torch.nn.Module) -> list[str]:
    """Names of the UNet's cross-attention layers in execution order (down, mid, up)."""
    names = []
    for name, module in unet.named_modules():
        if name.endswith("attn2") and hasattr(module, "processor") and getattr(module, "is_cross_attention", True):
            names.append(name)

    def block_order(name: str) -> tuple[int, int]:
        part = name.split(".")[0]
        order = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}.get(part, 3)
        index = int(name.split(".")[1]) if part in ("down_blocks", "up_blocks") else 0
        return order, index

    return sorted(names, key=block_order)  # stable: module order within a block is execution order


def decoder_layers(unet: torch.nn.Module) -> list[str]:
    return [n for n in cross_attention_layers(unet) if n.startswith("up_blocks.")]


def default_layers(unet: torch.nn.Module, count: int = DEFAULT_LAYER_COUNT) -> list[str]:
    """The paper's choice: the first ``count`` cross-attention layers of the decoder (all of them if fewer)."""
    layers = decoder_layers(unet)
    if not layers:
        raise ValueError("this UNet has no cross-attention layers in its decoder (up_blocks); InfSplign needs them")
    return layers[:count]


def resolve_layers(unet: torch.nn.Module, selection: Sequence[str] | None) -> list[str]:
    """Layer names for a selection of names or prefixes (None: :func:`default_layers`), in execution order."""
    if selection is None or len(selection) == 0:
        return default_layers(unet)
    available = cross_attention_layers(unet)
    chosen: set[str] = set()
    for item in selection:
        item = item.strip().removesuffix(".processor")
        hits = [n for n in available if n == item or n.startswith(item.rstrip(".") + ".")]
        if not hits:
            raise ValueError(
                f"no cross-attention layer matches {item!r}; choose names or prefixes of: {', '.join(available)}"
            )
        chosen.update(hits)
    return [n for n in available if n in chosen]


class AttentionCapture:
    """What one guided forward pass collects: per layer, head-averaged probabilities ``(rows, queries, tokens)``."""

    def __init__(self, layers: Sequence[str]) -> None:
        self.layers = list(layers)
        self.active = False
        self.rows: slice = slice(None)
        self.stop_early = False
        self.maps: dict[str, torch.Tensor] = {}

    def start(self, rows: slice = slice(None), stop_early: bool = True) -> None:
        self.maps = {}
        self.rows = rows
        self.stop_early = stop_early
        self.active = True

    def finish(self) -> dict[str, torch.Tensor]:
        self.active = False
        maps, self.maps = self.maps, {}
        missing = [n for n in self.layers if n not in maps]
        if missing:
            raise RuntimeError(f"the forward pass never ran the capture layers {missing}")
        return maps

    def record(self, name: str, attn: Any, hidden_states: torch.Tensor, context: torch.Tensor) -> None:
        if hidden_states.ndim != 3:
            raise ValueError(
                f"layer {name}: expected (batch, tokens, channels) hidden states, got {hidden_states.ndim}D"
            )
        if getattr(attn, "spatial_norm", None) is not None:
            raise ValueError(f"layer {name} uses a spatial norm; attention capture supports SD-style cross-attention")
        x = hidden_states[self.rows]
        c = context[self.rows]
        if attn.group_norm is not None:
            x = attn.group_norm(x.transpose(1, 2)).transpose(1, 2)
        if attn.norm_cross:
            c = attn.norm_encoder_hidden_states(c)
        query, key = attn.to_q(x), attn.to_k(c)
        batch, heads = query.shape[0], attn.heads
        head_dim = key.shape[-1] // heads
        query = query.view(batch, -1, heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        scale = getattr(attn, "scale", 1.0 / math.sqrt(head_dim))
        scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scale
        self.maps[name] = scores.softmax(dim=-1).mean(dim=1)  # (rows, queries, tokens): the probabilities SDPA used
        if self.stop_early and len(self.maps) == len(self.layers):
            raise StopForward


class CaptureAttnProcessor:
    """Runs the wrapped processor unchanged; when the capture is active, also records this layer's maps."""

    def __init__(self, name: str, inner: Any, capture: AttentionCapture) -> None:
        self.name = name
        self.inner = inner
        self.capture = capture

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        out = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        if self.capture.active and encoder_hidden_states is not None:
            self.capture.record(self.name, attn, hidden_states, encoder_hidden_states)
        return out


@contextmanager
def capturing(unet: torch.nn.Module, layers: Sequence[str]) -> Iterator[AttentionCapture]:
    """Install capture processors on ``layers`` for the duration of the block, then put the originals back."""
    capture = AttentionCapture(layers)
    modules = dict(unet.named_modules())
    originals = {}
    try:
        for name in layers:
            module = modules[name]
            originals[name] = module.processor
            module.set_processor(CaptureAttnProcessor(name, module.processor, capture))
        yield capture
    finally:
        for name, processor in originals.items():
            modules[name].set_processor(processor)


def layer_grid(queries: int, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of a layer with ``queries`` positions in a UNet on latents of ``latent_hw`` (halved per level)."""
    height, width = latent_hw
    for level in range(8):
        h, w = height, width
        for _ in range(level):
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        if h * w == queries:
            return h, w
    raise ValueError(f"{queries} attention queries match no resolution of a {height} x {width} latent")
