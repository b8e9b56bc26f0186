"""The guided denoising step (InfSplign Eq. 6, Algorithm 1), shared by every pipeline that samples with it.

A pipeline's loop asks :meth:`SpatialGuide.step` for each step. On a guided step the guide runs
the conditional branch once more, with gradients, up to the last captured layer only; reads the
objects' maps; computes the loss; and returns ``w * dL/dz_t`` to add to the noise prediction
(converted for v- or x0-predicting models). Unguided steps cost nothing and keep no graph.

* The gradient is taken with respect to the UNet's input (the variance-preserving ``z_t``, what
  the paper differentiates), so the same code serves DDIM, DDPM, DPM-Solver and Euler.
* The UNet's parameters are frozen during the pass, so autograd records only the path from
  ``z_t`` to the captured maps; nothing accumulates in ``.grad``.
* Each row's loss depends only on its own latent, so the summed loss gives every image its own
  gradient, whatever the batch size.
* The optional presence term is Attend-and-Excite's: a latent update
  ``z_t -= 20 * sqrt(linspace(1, 0.5)[i]) * dL_presence/dz_t`` over the first half of the steps,
  with iterative refinement at 0 %, 20 % and 40 % of the steps until the weaker object's maximum
  attention reaches 0.05, 0.5 and 0.8 (at most 20 extra passes each). Both gradients come from
  the same pass; the spatial one is applied to the noise prediction at the refined latent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ..triplets import SpatialTriplet, parse_triplet
from .capture import AttentionCapture, StopForward, resolve_layers
from .centroids import centroids, object_maps, token_maps
from .config import InfSplignConfig
from .losses import displacements, orthogonal_loss, presence_loss, relation_tensors, spatial_loss
from .prompts import TokenizedTriplet, tokenize_triplet

logger = logging.getLogger(__name__)

#: Runs the conditional branch on a model input (rows = the guided images); the guide captures during it.
ForwardFn = Callable[[torch.Tensor], Any]


@dataclass
class StepRecord:
    """What one guided step measured, per row (before that step's update)."""

    step: int
    timestep: float
    centroid_a: torch.Tensor  # (rows, 2) x, y in [0, 1]
    centroid_b: torch.Tensor
    delta: torch.Tensor  # (rows,) Delta of Eq. 8: > 0 when the relation holds
    across: torch.Tensor  # (rows,) delta of Eq. 10
    loss: torch.Tensor  # (rows,) spatial + orthogonal
    presence: torch.Tensor | None = None  # (rows,) A&E loss, when the presence term is on
    map_a: torch.Tensor | None = None  # (rows, H, W) the objects' maps, with record_maps
    map_b: torch.Tensor | None = None


@dataclass
class GuidanceTrace:
    """The parsed triplets and every guided step's measurements: for tests, benchmarks and attention strips."""

    triplets: list[TokenizedTriplet | None]
    steps: list[StepRecord] = field(default_factory=list)
    refinement_passes: int = 0


class SpatialGuide:
    """InfSplign for one batch of prompts: parsed triplets, token weights and the guided step."""

    def __init__(
        self,
        config: InfSplignConfig,
        unet: torch.nn.Module,
        tokenizer: Any,
        prompts: Sequence[str],
        sequence_length: int,
        device: torch.device,
        triplets: Sequence[SpatialTriplet | None] | None = None,
    ) -> None:
        self.config = config.validate()
        self.unet = unet
        self.layers = resolve_layers(unet, config.layers)
        tokenized = self._tokenize(tokenizer, prompts, triplets)
        self.trace = GuidanceTrace(tokenized)
        rows = len(prompts)
        self.weights_a = torch.zeros(rows, sequence_length, device=device)
        self.weights_b = torch.zeros(rows, sequence_length, device=device)
        self.text_mask = torch.zeros(rows, sequence_length, dtype=torch.bool, device=device)
        relations: list[str | None] = []
        for row, item in enumerate(tokenized):
            if item is None:
                relations.append(None)
                continue
            self.weights_a[row, list(item.a_tokens)] = 1.0 / len(item.a_tokens)
            self.weights_b[row, list(item.b_tokens)] = 1.0 / len(item.b_tokens)
            self.text_mask[row, 1 : min(item.length, sequence_length) - 1] = True
            relations.append(item.triplet.relation)
        self.axis, self.sign, self.valid = relation_tensors(relations, device)

    def _tokenize(
        self, tokenizer: Any, prompts: Sequence[str], triplets: Sequence[SpatialTriplet | None] | None
    ) -> list[TokenizedTriplet | None]:
        if triplets is not None and len(triplets) != len(prompts):
            raise ValueError(f"got {len(triplets)} triplets for {len(prompts)} prompts; give one per prompt (or None)")
        out: list[TokenizedTriplet | None] = []
        for k, prompt in enumerate(prompts):
            triplet = triplets[k] if triplets is not None else parse_triplet(prompt)
            problem = None
            if triplet is None:
                problem = (
                    f"found no spatial relation (left of, right of, above, below ...) between two objects in {prompt!r}"
                )
            elif not triplet.is_2d:
                problem = (
                    f"{prompt!r} asks for {triplet.relation!r}; InfSplign guides left of, right of, above and below"
                )
            if problem is not None:
                if self.config.strict:
                    raise ValueError(problem + "; rephrase it, or drop strict to sample it without spatial guidance")
                logger.warning("%s: sampled without spatial guidance", problem)
                out.append(None)
                continue
            assert triplet is not None
            out.append(tokenize_triplet(tokenizer, triplet))
        return out

    # ------------------------------------------------------------------------------------ the step

    @property
    def active(self) -> bool:
        return bool(self.valid.any())

    def wants(self, step: int, total_steps: int) -> bool:
        """Whether step ``step`` (0-based) of ``total_steps`` gets a gradient pass."""
        if not self.active:
            return False
        return step < max(self.config.guided_steps(total_steps), self.config.presence_steps(total_steps))

    def step(
        self,
        capture: AttentionCapture,
        forward: ForwardFn,
        scheduler: Any,
        latents: torch.Tensor,
        t: Any,
        step: int,
        total_steps: int,
        rows: slice = slice(None),
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(latents, model-output offset or None)`` for step ``step``; latents change only with presence on.

        ``forward`` may run a larger batch than the guided images (I-LDM adds the intrinsic
        domain); ``rows`` says which of its rows are the guided images, in order.
        """
        config = self.config
        # at SNR 0 (the first step of a zero-terminal-SNR schedule) a v- or x0-model's output cannot move the
        # implied noise (it is x_t itself): that step is sampled unguided, and the next guided ones carry the relation
        spatial_on = step < config.guided_steps(total_steps) and noise_is_steerable(scheduler, t)
        presence_on = step < config.presence_steps(total_steps)
        measured = self._measure(capture, forward, scheduler, latents, t, presence_on, spatial_on, rows)
        if presence_on:
            target = self._refinement_target(step, total_steps)
            if target is not None:
                for _ in range(config.refinement_iterations):
                    short = measured["presence"] > 1.0 - target
                    if not bool(short.any()):
                        break
                    latents = latents - self._presence_step(step, total_steps) * measured["grad_presence"] * short.view(
                        -1, *([1] * (latents.ndim - 1))
                    ).to(latents.dtype)
                    self.trace.refinement_passes += 1
                    measured = self._measure(capture, forward, scheduler, latents, t, True, spatial_on, rows)
            latents = latents - self._presence_step(step, total_steps) * measured["grad_presence"]
        self._record(step, t, measured)
        if not spatial_on:
            return latents, None
        offset = config.weight * measured["grad_spatial"]
        return latents, eps_to_model_output(offset, scheduler, t)

    def _measure(
        self,
        capture: AttentionCapture,
        forward: ForwardFn,
        scheduler: Any,
        latents: torch.Tensor,
        t: Any,
        presence: bool,
        spatial: bool,
        rows: slice,
    ) -> dict[str, Any]:
        config = self.config
        x = scheduler.scale_model_input(latents, t).detach().requires_grad_(True)
        with torch.enable_grad(), frozen(self.unet):
            capture.start(rows)
            try:
                forward(x)
            except StopForward:
                pass
            finally:
                capture.active = False
            maps = token_maps(capture.finish(), tuple(x.shape[-2:]))
            map_a = object_maps(maps, self.weights_a)
            map_b = object_maps(maps, self.weights_b)
            centre_a, centre_b = centroids(map_a), centroids(map_b)
            main, across = displacements(centre_a, centre_b, self.axis, self.sign)
            valid = self.valid.to(main.dtype)
            loss = valid * (
                spatial_loss(main, config.loss, config.resolved_alpha, config.resolved_margin)
                + config.orthogonal_weight * orthogonal_loss(across, config.orthogonal_p)
            )
            out: dict[str, Any] = {"main": main, "across": across, "loss": loss, "a": centre_a, "b": centre_b}
            targets = []
            if spatial:
                targets.append(loss.sum())
            if presence:
                out["presence"] = valid * presence_loss(maps, self.weights_a, self.weights_b, self.text_mask)
                targets.append(out["presence"].sum())
            grads = [torch.zeros_like(x)] * len(targets)
            for k, target in enumerate(targets):
                if target.requires_grad:
                    (grads[k],) = torch.autograd.grad(target, x, retain_graph=k + 1 < len(targets))
            grads = [g.nan_to_num(0.0, 0.0, 0.0) for g in grads]
            if spatial:
                out["grad_spatial"] = grads[0].to(latents.dtype)
            if presence:
                out["grad_presence"] = grads[-1].to(latents.dtype)
        if config.record_maps:
            out["map_a"], out["map_b"] = map_a.detach().float().cpu(), map_b.detach().float().cpu()
        return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in out.items()}

    def _record(self, step: int, t: Any, measured: dict[str, Any]) -> None:
        self.trace.steps.append(
            StepRecord(
                step=step,
                timestep=float(t),
                centroid_a=measured["a"],
                centroid_b=measured["b"],
                delta=measured["main"],
                across=measured["across"],
                loss=measured["loss"],
                presence=measured.get("presence"),
                map_a=measured.get("map_a"),
                map_b=measured.get("map_b"),
            )
        )

    def _presence_step(self, step: int, total_steps: int) -> float:
        fraction = step / max(1, total_steps - 1)
        return self.config.presence_step * math.sqrt(1.0 - 0.5 * fraction)

    def _refinement_target(self, step: int, total_steps: int) -> float | None:
        for fraction, target in self.config.refinement:
            if step == round(fraction * total_steps):
                return target
        return None


@contextmanager
def frozen(module: torch.nn.Module) -> Iterator[None]:
    """Parameters stop requiring gradients inside the block (and get their flags back after it)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _alpha_bar(scheduler: Any, t: Any) -> float:
    alphas = scheduler.alphas_cumprod
    return float(alphas[min(len(alphas) - 1, max(0, int(round(float(t)))))])


def noise_is_steerable(scheduler: Any, t: Any) -> bool:
    """Whether some change of the model's output changes its implied noise at ``t``.

    Always for epsilon models; for v- and x0-prediction only where alpha_bar_t > 0: at zero SNR
    the implied noise is x_t itself, whatever the model says.
    """
    kind = getattr(scheduler.config, "prediction_type", "epsilon")
    return kind == "epsilon" or _alpha_bar(scheduler, t) > 0.0


def eps_to_model_output(offset: torch.Tensor, scheduler: Any, t: Any) -> torch.Tensor:
    """The change of the model's output that changes its implied noise by ``offset``.

    epsilon: the offset itself; v-prediction (SD 2.x 768): ``offset / sqrt(alpha_bar_t)``;
    sample (x0) prediction: ``-sqrt(1 - alpha_bar_t) / sqrt(alpha_bar_t) * offset``. Undefined at
    zero SNR (see :func:`noise_is_steerable`).
    """
    kind = getattr(scheduler.config, "prediction_type", "epsilon")
    if kind == "epsilon":
        return offset
    alpha_bar = _alpha_bar(scheduler, t)
    if alpha_bar <= 0.0:
        raise ValueError(f"at t = {float(t):g} the SNR is 0: no {kind} output can change the implied noise")
    if kind == "v_prediction":
        return offset / math.sqrt(alpha_bar)
    if kind == "sample":
        return -math.sqrt(1.0 - alpha_bar) / math.sqrt(alpha_bar) * offset
    raise ValueError(f"InfSplign cannot guide a model with prediction_type {kind!r}")


# ------------------------------------------------------------------------------------------ pipeline glue
# What every guided pipeline (InfSplignPipeline, IntrinsicLDMPipeline) does around SpatialGuide.step, in one place.


def guide_for_call(
    config: InfSplignConfig | None,
    unet: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    images_per_prompt: int,
    sequence_length: int,
    device: torch.device,
    triplets: Sequence[SpatialTriplet | None] | None = None,
) -> tuple[SpatialGuide | None, list[str]]:
    """The guide of one pipeline call (None without ``config``) and the attention layers to capture.

    ``prompts`` holds one entry per image row (already repeated ``images_per_prompt`` times);
    ``triplets``, one per prompt as the caller gave them, are repeated here the same way.
    """
    if config is None:
        return None, []
    per_row = None if triplets is None else [x for x in triplets for _ in range(images_per_prompt)]
    guide = SpatialGuide(config, unet, tokenizer, prompts, sequence_length, device, per_row)
    return guide, (guide.layers if guide.active else [])


def combine_guidance(noise: torch.Tensor, scale: float | None, offset: torch.Tensor | None = None) -> torch.Tensor:
    """The noise prediction a guided sampler steps with: classifier-free guidance over the ``[uncond, cond]``
    halves of ``noise`` (``scale`` None: no CFG, ``noise`` is the conditional branch), then InfSplign's
    ``offset`` (``w * dL/dz_t``, None outside the guided steps). Written once so that every pipeline keeps
    diffusers' arithmetic exactly (weight 0 reproduces the unguided pipeline bit for bit)."""
    if scale is not None:
        uncond, cond = noise.chunk(2)
        noise = uncond + scale * (cond - uncond)
    return noise if offset is None else noise + offset
