"""Cross-domain self-attention (I-LDM, Eq. 1 and 4) as one diffusers attention processor.

The image and the intrinsic domain run as one joint batch through the same backbone. Only the
self-attention layers (``attn1``) differ from the base model:

* projections: image samples use the frozen base weights; intrinsic samples use base + LoRA
  (the intrinsic domain's adapter, applied here per sample because peft refuses mixed-adapter
  batches in training mode; at sampling, merged into one weight per domain, see
  :mod:`spatialgen.ildm.projections`);
* keys and values: every sample attends over its own tokens concatenated with its partner's
  (the other domain of the same sample), so each domain sees the other;
* weights: the image queries' scores on the intrinsic keys get ``log w(l, t)`` added; w = 0
  skips those keys altogether (the image half then costs what the base model costs), w = 1 adds
  nothing. The intrinsic queries see both domains unweighted.

Which sample is which is never guessed from the batch shape: :class:`JointLayout` says, per
sample, whether it is intrinsic and which sample is its partner, and the processor checks that
the layout fits the batch. Without a layout the processor is the base model's attention.
Cross-attention (``attn2``) keeps its own processor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .projections import MergedProjection, mergeable, project
from .schedules import ConstantSchedule, WeightSchedule

ADAPTER = "intrinsic"


@dataclass
class JointLayout:
    """Per sample of a joint batch: is it intrinsic, and the index of its partner in the other domain."""

    intrinsic: torch.Tensor  # bool (B,)
    partner: torch.Tensor  # int64 (B,)
    stacked_n: int | None = None  # set when the batch is cat([n images, n intrinsics]): slices replace gathers

    def __post_init__(self) -> None:
        # Computed once per batch, not once per attention layer (nonzero synchronises on a GPU).
        self.intrinsic_rows = torch.nonzero(self.intrinsic, as_tuple=True)[0]
        self.image_rows = torch.nonzero(~self.intrinsic, as_tuple=True)[0]

    @classmethod
    def stacked(cls, n: int, device: torch.device | str = "cpu") -> JointLayout:
        """The layout of ``torch.cat([image_batch, intrinsic_batch])`` with n samples per domain."""
        if n <= 0:
            raise ValueError(f"a joint batch needs at least one sample per domain, got {n}")
        index = torch.arange(2 * n, device=device)
        return cls(index >= n, (index + n) % (2 * n), stacked_n=n)

    def check(self, batch_size: int) -> None:
        if self.intrinsic.shape != (batch_size,) or self.partner.shape != (batch_size,):
            raise ValueError(
                f"the joint layout describes {self.intrinsic.shape[0]} samples but the batch has {batch_size}; "
                "set a layout for this batch (JointLayout.stacked(n) for cat([images, intrinsics]))"
            )

    def validate(self) -> JointLayout:
        """Partners must be mutual and in the other domain; raise otherwise."""
        n = self.partner.shape[0]
        if self.intrinsic.shape != (n,) or self.partner.min() < 0 or self.partner.max() >= n:
            raise ValueError("partner indices must lie in the batch, one per sample")
        if not torch.equal(self.partner[self.partner], torch.arange(n, device=self.partner.device)):
            raise ValueError("partners must be mutual: partner[partner[j]] == j")
        if torch.any(self.intrinsic == self.intrinsic[self.partner]):
            raise ValueError("every sample's partner must be in the other domain")
        return self


@dataclass
class CrossDomainState:
    """What every cross-domain processor of one model reads: the layout, the schedule and the timestep.

    The pipeline (or trainer) sets ``layout`` for each forward pass and ``timestep`` for each step;
    ``layout=None`` makes the model its base self.
    """

    schedule: WeightSchedule = field(default_factory=lambda: ConstantSchedule(1.0))
    layout: JointLayout | None = None
    timestep: float = 0.0
    image_adapters: dict[str, float] = field(default_factory=dict)  # extra LoRAs of the image domain only

    def image_rows(self, batch_size: int, device: torch.device) -> torch.Tensor:
        """Batch indices of the image domain: all of them without a layout."""
        if self.layout is None:
            return torch.arange(batch_size, device=device)
        self.layout.check(batch_size)
        return self.layout.image_rows

    def weight(self, block: int) -> float:
        w = float(self.schedule(block, self.timestep))
        if not (w >= 0 and math.isfinite(w)):
            raise ValueError(f"the weight schedule gave {w} for block {block} at t={self.timestep}; weights are >= 0")
        return w


class CrossDomainAttnProcessor:
    """Processor for one ``attn1`` layer in block ``block``; see the module docstring."""

    def __init__(self, state: CrossDomainState, block: int, adapter: str = ADAPTER) -> None:
        self.state = state
        self.block = block
        self.adapter = adapter
        self._merged: dict[str, MergedProjection] = {}

    def _projector(
        self, attn: torch.nn.Module, layout: JointLayout | None, batch_size: int, device: torch.device
    ) -> Callable[[tuple[str, ...], torch.Tensor], list[torch.Tensor]]:
        """A function (layer names, input) -> projections that gives each domain its own adapters.

        Merged per-domain weights where the layout is stacked and nothing trains through the
        adapters (sampling); the per-sample LoRA path otherwise (training, any other layout).
        """
        extra = self.state.image_adapters
        linears = {"to_q": attn.to_q, "to_k": attn.to_k, "to_v": attn.to_v, "to_out": attn.to_out[0]}
        n = layout.stacked_n if layout is not None else None
        if n is not None and mergeable(list(linears.values()), [self.adapter, *extra]):

            def merged(names: tuple[str, ...], x: torch.Tensor) -> list[torch.Tensor]:
                projection = self._merged.setdefault(",".join(names), MergedProjection())
                return projection([linears[name] for name in names], x, n, self.adapter, extra)

            return merged
        rows = layout.intrinsic_rows if layout is not None else None
        image_rows = self.state.image_rows(batch_size, device) if extra else None

        def per_row(names: tuple[str, ...], x: torch.Tensor) -> list[torch.Tensor]:
            return [project(linears[name], x, rows, self.adapter, image_rows, extra) for name in names]

        return per_row

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: object,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None:
            raise ValueError("CrossDomainAttnProcessor is for self-attention (attn1) layers only")
        layout = self.state.layout
        if layout is not None and attention_mask is not None:
            raise ValueError("cross-domain attention takes no attention mask (self-attention over latents has none)")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size = hidden_states.shape[0]
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, hidden_states.shape[1], batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        if layout is not None:
            layout.check(batch_size)
        projection = self._projector(attn, layout, batch_size, hidden_states.device)
        query, key, value = projection(("to_q", "to_k", "to_v"), hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (x.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        if layout is None:
            hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        else:
            hidden_states = self._joint_attention(query, key, value, layout)

        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(query.dtype)
        (hidden_states,) = projection(("to_out",), hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    def _joint_attention(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, layout: JointLayout
    ) -> torch.Tensor:
        """Eq. 4 over (B, heads, N, d) tensors: own keys + partner keys, log w on the image rows' partner columns."""
        w = self.state.weight(self.block)
        if layout.stacked_n is not None:
            return self._stacked_attention(query, key, value, layout.stacked_n, w)
        partner_key, partner_value = key[layout.partner], value[layout.partner]
        if w == 0.0:
            image, intrinsic = layout.image_rows, layout.intrinsic_rows
            out_image = F.scaled_dot_product_attention(query[image], key[image], value[image])
            out_intrinsic = F.scaled_dot_product_attention(
                query[intrinsic],
                torch.cat([key[intrinsic], partner_key[intrinsic]], dim=2),
                torch.cat([value[intrinsic], partner_value[intrinsic]], dim=2),
            )
            order = torch.cat([image, intrinsic])
            return torch.cat([out_image, out_intrinsic])[torch.argsort(order)]
        joint_key = torch.cat([key, partner_key], dim=2)
        joint_value = torch.cat([value, partner_value], dim=2)
        if w == 1.0:
            return F.scaled_dot_product_attention(query, joint_key, joint_value)
        # One call for both domains: log w on the partner columns of the image rows, 0 elsewhere.
        tokens = key.shape[2]
        bias = torch.zeros(query.shape[0], 1, 1, 2 * tokens, dtype=query.dtype, device=query.device)
        bias[layout.image_rows, :, :, tokens:] = math.log(w)
        return F.scaled_dot_product_attention(query, joint_key, joint_value, attn_mask=bias)

    @staticmethod
    def _stacked_attention(
        query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, n: int, w: float
    ) -> torch.Tensor:
        """Eq. 4 for ``cat([n images, n intrinsics])``: both samples of a pair attend over the same keys.

        Softmax does not care about key order, so the image and the intrinsic queries of pair i
        share one key set, [image tokens, intrinsic tokens] of that pair: one concatenation per
        layer instead of a partner gather plus a joint one. At w = 0 the image queries use their
        own keys (a view, the base model's cost).
        """
        joint_key = torch.cat([key[:n], key[n:]], dim=2)
        joint_value = torch.cat([value[:n], value[n:]], dim=2)
        if w == 0.0:
            out_image = F.scaled_dot_product_attention(query[:n], key[:n], value[:n])
        elif w == 1.0:
            out_image = F.scaled_dot_product_attention(query[:n], joint_key, joint_value)
        else:
            tokens = key.shape[2]
            bias = torch.zeros(1, 1, 1, 2 * tokens, dtype=query.dtype, device=query.device)
            bias[..., tokens:] = math.log(w)
            out_image = F.scaled_dot_product_attention(query[:n], joint_key, joint_value, attn_mask=bias)
        out_intrinsic = F.scaled_dot_product_attention(query[n:], joint_key, joint_value)
        # Concatenated token-major, so the caller's transpose(1, 2).reshape is a view, not a second copy.
        return torch.cat([out_image.transpose(1, 2), out_intrinsic.transpose(1, 2)]).transpose(1, 2)
