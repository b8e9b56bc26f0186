"""Weight schedules w(l, t) of cross-domain self-attention (I-LDM, Eq. 2 and 3).

The image domain's queries see the intrinsic domain's keys with weight w(l, t) (added as log w
to their attention scores); w = 0 leaves the intrinsic keys out entirely, w = 1 attends to both
domains plainly. ``l`` is a block number (:mod:`spatialgen.ildm.blocks`), ``t`` the scheduler's
timestep (0 = clean, ~999 = pure noise). Training always uses w = 1 (the paper's setting).

Schedules are small frozen dataclasses that serialise to a dict (``to_dict`` / :func:`schedule_from_dict`)
so that a pipeline's ``save_pretrained`` carries the one it was configured with; any callable
``(block, timestep) -> weight`` works too, but only the named ones can be saved.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class WeightSchedule(Protocol):
    def __call__(self, block: int, timestep: float) -> float: ...


def _check_weight(w: float) -> float:
    if not 0.0 <= w or not math.isfinite(w):
        raise ValueError(f"a cross-domain weight must be finite and >= 0, got {w}")
    return w


@dataclass(frozen=True)
class DropSchedule:
    """Eq. 2: w = 1 in the blocks ``blocks`` once t <= tau, else 0 (paper: tau = 900, L = {3..7})."""

    blocks: tuple[int, ...] = (3, 4, 5, 6, 7)
    tau: float = 900.0
    name: str = field(default="drop", init=False)

    def __call__(self, block: int, timestep: float) -> float:
        return 1.0 if block in self.blocks and timestep <= self.tau else 0.0


@dataclass(frozen=True)
class GaussianSchedule:
    """Eq. 3: w = alpha * exp(-(t - tau)^2 / sigma^2), the same in every block (paper: 1, 800, 100)."""

    alpha: float = 1.0
    tau: float = 800.0
    sigma: float = 100.0
    name: str = field(default="gaussian", init=False)

    def __post_init__(self) -> None:
        if self.sigma <= 0 or self.alpha < 0:
            raise ValueError(f"GaussianSchedule needs sigma > 0 and alpha >= 0, got {self.sigma} and {self.alpha}")

    def __call__(self, block: int, timestep: float) -> float:
        return self.alpha * math.exp(-((timestep - self.tau) ** 2) / self.sigma**2)


@dataclass(frozen=True)
class ConstantSchedule:
    """w everywhere: 1 is the paper's "None" (no scheduling) and the training setting; 0 is the base model."""

    weight: float = 1.0
    name: str = field(default="constant", init=False)

    def __post_init__(self) -> None:
        _check_weight(self.weight)

    def __call__(self, block: int, timestep: float) -> float:
        return self.weight


def NoneSchedule() -> ConstantSchedule:  # noqa: N802 - the paper's name for it
    """The paper's "None": no scheduling, w = 1 in every block at every step."""
    return ConstantSchedule(1.0)


SCHEDULES: dict[str, Callable[..., Any]] = {
    "drop": DropSchedule,
    "gaussian": GaussianSchedule,
    "none": NoneSchedule,
    "constant": ConstantSchedule,
}


def make_schedule(name: str, **params: Any) -> WeightSchedule:
    """A named schedule ("drop", "gaussian", "none", "constant") with optional parameters."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown weight schedule {name!r}; choose one of {', '.join(SCHEDULES)} or pass a callable")
    if "blocks" in params:
        params["blocks"] = tuple(int(b) for b in params["blocks"])
    return SCHEDULES[name](**params)


def schedule_to_dict(schedule: WeightSchedule) -> dict[str, Any]:
    """The JSON form of a named schedule; a plain callable cannot be saved and says so."""
    if not isinstance(schedule, (DropSchedule, GaussianSchedule, ConstantSchedule)):
        raise TypeError(f"only named schedules can be saved, not {schedule!r}; use drop, gaussian, none or constant")
    data = asdict(schedule)
    name = data.pop("name")
    if "blocks" in data:
        data["blocks"] = list(data["blocks"])
    return {"name": name, **data}


def schedule_from_dict(data: dict[str, Any]) -> WeightSchedule:
    params = dict(data)
    return make_schedule(params.pop("name"), **params)


def resolve_schedule(schedule: str | WeightSchedule | None) -> WeightSchedule:
    """A schedule from a name, a schedule object or any ``(block, timestep) -> weight`` callable."""
    if schedule is None:
        return NoneSchedule()
    if isinstance(schedule, str):
        return make_schedule(schedule)
    if not callable(schedule):
        raise TypeError(f"a schedule is a name or a callable (block, timestep) -> weight, got {schedule!r}")
    return schedule
