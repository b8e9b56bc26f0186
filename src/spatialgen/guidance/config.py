"""InfSplign's knobs, with the paper's defaults (section 5.2 and the ablations)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .losses import LOSSES

#: Per loss: (alpha, margin). Sigmoid alpha = 8, m = 0; the others alpha = 2, m = 0.25 (section 5.5).
LOSS_DEFAULTS: dict[str, tuple[float, float]] = {
    "relu": (2.0, 0.25),
    "leaky_relu": (2.0, 0.25),
    "gelu": (2.0, 0.25),
    "sigmoid": (8.0, 0.0),
}
PAPER_WEIGHT = 1000.0  # w in Eq. 6, for SD 1.4 / 2.1 at 512 px


@dataclass(frozen=True)
class InfSplignConfig:
    """How strongly, when and from which layers to steer objects toward the prompt's relation.

    ``alpha`` / ``margin`` None take the loss's paper defaults. ``layers`` None takes the first 6
    cross-attention layers of the decoder; otherwise layer names or prefixes ("up_blocks.1").
    ``orthogonal_p`` is the p of ``||delta||_p^p`` (0 turns the term off; the paper's ablation
    prefers 2). ``presence`` adds Attend-and-Excite's object-presence update (off in the paper).
    ``strict``: a prompt without a 2D relation is an error instead of a warning.
    """

    loss: str = "sigmoid"
    alpha: float | None = None
    margin: float | None = None
    weight: float = PAPER_WEIGHT
    guide_fraction: float = 0.25
    layers: tuple[str, ...] | None = None
    orthogonal_p: float = 2.0
    orthogonal_weight: float = 1.0
    presence: bool = False
    presence_step: float = 20.0  # A&E: latent step 20 * sqrt(linspace(1, 0.5)) over its window
    presence_fraction: float = 0.5  # A&E alters the first 25 of 50 steps
    refinement: tuple[tuple[float, float], ...] = ((0.0, 0.05), (0.2, 0.5), (0.4, 0.8))  # (step fraction, target)
    refinement_iterations: int = 20
    record_maps: bool = False
    strict: bool = False

    def validate(self) -> InfSplignConfig:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown InfSplign loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        for name in ("alpha", "margin"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
        if self.alpha is not None and self.alpha <= 0:
            raise ValueError(f"alpha must be positive (it sharpens the loss), got {self.alpha}")
        if not math.isfinite(self.weight) or self.weight < 0:
            raise ValueError(f"the guidance weight must be a finite number >= 0, got {self.weight}")
        if not 0.0 <= self.guide_fraction <= 1.0:
            raise ValueError(f"guide_fraction is a share of the steps in [0, 1], got {self.guide_fraction}")
        if not 0.0 <= self.presence_fraction <= 1.0:
            raise ValueError(f"presence_fraction is a share of the steps in [0, 1], got {self.presence_fraction}")
        if self.orthogonal_p < 0 or not math.isfinite(self.orthogonal_p):
            raise ValueError(f"orthogonal_p must be >= 0 (0 turns the term off), got {self.orthogonal_p}")
        if self.orthogonal_p != 0 and self.orthogonal_p < 1:
            raise ValueError(f"orthogonal_p must be 0 or >= 1 (the paper's p-norm), got {self.orthogonal_p}")
        if self.refinement_iterations < 0:
            raise ValueError(f"refinement_iterations must be >= 0, got {self.refinement_iterations}")
        return self

    @property
    def resolved_alpha(self) -> float:
        return LOSS_DEFAULTS[self.loss][0] if self.alpha is None else float(self.alpha)

    @property
    def resolved_margin(self) -> float:
        return LOSS_DEFAULTS[self.loss][1] if self.margin is None else float(self.margin)

    def guided_steps(self, steps: int) -> int:
        """How many of the first denoising steps get the spatial gradient (at least one when the fraction > 0)."""
        return 0 if self.guide_fraction == 0 else max(1, round(self.guide_fraction * steps))

    def presence_steps(self, steps: int) -> int:
        return 0 if not self.presence or self.presence_fraction == 0 else max(1, round(self.presence_fraction * steps))

    def to_dict(self) -> dict[str, Any]:
        """The settings as written beside generated images (alpha and margin resolved)."""
        out = asdict(self)
        out.pop("record_maps")
        out["alpha"], out["margin"] = self.resolved_alpha, self.resolved_margin
        out["layers"] = None if self.layers is None else list(self.layers)
        out["refinement"] = [list(r) for r in self.refinement]
        return out


def recommended_weight(pipe: Any) -> float:
    """The guidance weight a model's card recommends (``spatialgen.json`` ``{"infsplign": {"weight": w}}``), else 1000.

    The paper's w = 1000 is tuned for SD's 64 x 64 latents; a model trained at another latent size
    or noise scale may need another (the embedded model's comes from ``benchmarks/infsplign.py``).
    """
    from ..models.pipeline import model_card

    card = model_card(pipe)
    value = (card.get("infsplign") or {}).get("weight")
    return PAPER_WEIGHT if value is None else float(value)
