"""The projections of a cross-domain attention layer: base weights for images, base + LoRA for intrinsics.

peft refuses mixed-adapter batches in training mode, so the cross-domain processor applies the
adapters per sample itself. Two ways, with the same result:

* :func:`project` (training, any layout): the base projection for every sample plus the LoRA
  update on the intrinsic rows. Gradients reach the LoRA weights.
* :class:`MergedProjection` (inference on ``cat([images, intrinsics])``): each domain's weight is
  merged once (``W + scale * B @ A``, peft's ``get_delta_weight``) and cached until a weight
  changes in place; the joint batch is then one batched matmul, with no LoRA matmuls, gathers or
  scatters per step. It is what brings I-LDM's sampling cost close to the two-domain floor.
"""

from __future__ import annotations

import torch


def lora_delta(linear: torch.nn.Module, x: torch.Tensor, adapter: str) -> torch.Tensor | None:
    """The LoRA update of a peft-wrapped linear layer for inputs x, or None if it has no such adapter."""
    lora_a = getattr(linear, "lora_A", None)
    if lora_a is None or adapter not in lora_a:
        return None
    dropout = linear.lora_dropout[adapter]
    return linear.lora_B[adapter](lora_a[adapter](dropout(x))) * linear.scaling[adapter]


def add_lora(
    out: torch.Tensor, linear: torch.nn.Module, x: torch.Tensor, rows: torch.Tensor, adapter: str, scale: float = 1.0
) -> torch.Tensor:
    """``out`` plus the adapter's LoRA update on the samples ``rows`` (batch indices); out-of-place."""
    if rows.numel() == 0:
        return out
    delta = lora_delta(linear, x[rows], adapter)
    if delta is None:
        return out
    return out.index_add(0, rows, (scale * delta).to(out.dtype))


def project(
    linear: torch.nn.Module,
    x: torch.Tensor,
    rows: torch.Tensor | None,
    adapter: str,
    image_rows: torch.Tensor | None = None,
    image_adapters: dict[str, float] | None = None,
) -> torch.Tensor:
    """Base projection for every sample, the intrinsic adapter on ``rows``, image-only adapters on ``image_rows``."""
    out = getattr(linear, "base_layer", linear)(x)
    if rows is not None:
        out = add_lora(out, linear, x, rows, adapter)
    if image_rows is not None:
        for name, scale in (image_adapters or {}).items():
            out = add_lora(out, linear, x, image_rows, name, scale)
    return out


def _adapter_tensors(linear: torch.nn.Module, adapter: str) -> list[torch.Tensor]:
    tensors = [linear.lora_A[adapter].weight, linear.lora_B[adapter].weight]
    bias = getattr(linear.lora_B[adapter], "bias", None)
    return tensors + ([bias] if bias is not None else [])


def mergeable(linears: list[torch.nn.Module], adapters: list[str]) -> bool:
    """Can these layers' adapters be merged into per-domain weights without changing results or gradients?

    Not while any adapter weight is being trained (its gradient must flow through B @ A x), not
    with dropout active, and not for adapter kinds whose update is not a plain B @ A (DoRA).
    """
    for linear in linears:
        lora_a = getattr(linear, "lora_A", None)
        if lora_a is None:
            continue
        for adapter in adapters:
            if adapter not in lora_a:
                continue
            if getattr(linear, "use_dora", {}).get(adapter, False) or getattr(linear, "fan_in_fan_out", False):
                return False
            dropout = linear.lora_dropout[adapter]
            if dropout.training and not isinstance(dropout, torch.nn.Identity):
                return False
            if torch.is_grad_enabled() and any(t.requires_grad for t in _adapter_tensors(linear, adapter)):
                return False
    return True


class MergedProjection:
    """Linear layers that read one input, with a merged weight per domain, for ``cat([n images, n intrinsics])``.

    The image weight carries the image-only adapters (with their scales), the intrinsic weight
    the intrinsic adapter. Layers given together (q, k and v) are fused along their outputs, so
    the input is read once. The weights are rebuilt when any weight they were merged from changes
    (an optimizer step, ``load_state_dict``, a new adapter scale), detected through tensor versions.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._weight: torch.Tensor | None = None  # (2, in, sum of outs): transposed for baddbmm
        self._bias: torch.Tensor | None = None  # (2, 1, sum of outs)

    @staticmethod
    def _sources(linear: torch.nn.Module, adapter: str, image_adapters: dict[str, float]) -> list:
        base = getattr(linear, "base_layer", linear)
        key: list = [base.weight, base.bias]
        lora_a = getattr(linear, "lora_A", None)
        for name in [adapter, *image_adapters]:
            if lora_a is not None and name in lora_a:
                key += [name, image_adapters.get(name, 1.0), linear.scaling[name], *_adapter_tensors(linear, name)]
        return key

    @staticmethod
    def _domain_weights(
        linear: torch.nn.Module, adapter: str, image_adapters: dict[str, float]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(2, out, in) weights and (2, out) biases: [image domain, intrinsic domain]."""
        base = getattr(linear, "base_layer", linear)
        weights = base.weight.detach().unsqueeze(0).repeat(2, 1, 1)
        if base.bias is None:
            biases = torch.zeros(2, base.out_features, dtype=base.weight.dtype, device=base.weight.device)
        else:
            biases = base.bias.detach().unsqueeze(0).repeat(2, 1)
        lora_a = getattr(linear, "lora_A", None)
        domains = [(1, adapter, 1.0)] + [(0, name, scale) for name, scale in image_adapters.items()]
        with torch.no_grad():
            for domain, name, scale in domains:
                if lora_a is None or name not in lora_a:
                    continue
                weights[domain] += scale * linear.get_delta_weight(name).to(weights.dtype)
                lora_bias = getattr(linear.lora_B[name], "bias", None)
                if lora_bias is not None:
                    biases[domain] += scale * linear.scaling[name] * lora_bias.to(biases.dtype)
        return weights, biases

    def _merge(self, linears: list[torch.nn.Module], adapter: str, image_adapters: dict[str, float]) -> None:
        sources = [s for linear in linears for s in self._sources(linear, adapter, image_adapters)]
        key = tuple(
            (s.data_ptr(), s._version, s.dtype, s.device) if isinstance(s, torch.Tensor) else s for s in sources
        )
        if key == self._key:
            return
        merged = [self._domain_weights(linear, adapter, image_adapters) for linear in linears]
        self._weight = torch.cat([w for w, _ in merged], dim=1).transpose(1, 2).contiguous()
        self._bias = torch.cat([b for _, b in merged], dim=1).unsqueeze(1)
        self._key = key

    def __call__(
        self,
        linears: list[torch.nn.Module],
        x: torch.Tensor,
        n: int,
        adapter: str,
        image_adapters: dict[str, float],
    ) -> list[torch.Tensor]:
        """``x`` is (2n, ..., in) with the images first; one (2n, ..., out) per layer, from one batched matmul."""
        self._merge(linears, adapter, image_adapters)
        assert self._weight is not None and self._bias is not None
        tokens = x.shape[1:-1]
        out = torch.baddbmm(self._bias, x.reshape(2, -1, x.shape[-1]), self._weight).view(2 * n, *tokens, -1)
        sizes = [getattr(linear, "base_layer", linear).out_features for linear in linears]
        return list(out.split(sizes, dim=-1))
