"""What every front end samples from: a pipeline together with the method it runs (``load_generator``).

``spatialgen generate``, the benchmarks and the web demo all need the same four methods: ``sd``
(the image alone), ``ildm`` (the image with its intrinsics), ``infsplign`` (spatial guidance) and
``ildm+infsplign``. :func:`load_generator` loads the right pipeline for a method and checks its
options before any weights are read; :func:`as_generator` wraps a pipeline you already hold, by
its type. :func:`spatialgen.generate.generate_images` takes either and knows from the
:class:`Generator` (not from the pipeline's attributes) whether intrinsics and guidance traces
come back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .guidance.config import InfSplignConfig

METHODS = ("sd", "ildm", "infsplign", "ildm+infsplign")


@dataclass(frozen=True)
class Generator:
    """A loaded pipeline and the method it runs: what a sampling call passes and what its results carry."""

    pipe: Any  # StableDiffusionPipeline, InfSplignPipeline or IntrinsicLDMPipeline
    method: str = "sd"
    schedule: Any = None  # I-LDM: a schedule name or object; None is the pipeline's default
    spatial_guidance: InfSplignConfig | None = None
    given_intrinsics: Any = None  # I-LDM: maps (an Intrinsics of batch 1) that every image follows
    intrinsic_lag: int = 0  # I-LDM: steps the maps start after the image (0: synchronous, the paper's)

    def with_given(self, maps: Any) -> Generator:
        """This generator drawing images that follow ``maps`` (I-LDM's intrinsic domain held clean)."""
        if not self.co_generates_intrinsics:
            raise ValueError("given maps need an I-LDM method: --method ildm")
        if self.spatial_guidance is not None:
            raise ValueError("given maps and InfSplign do not combine: use --method ildm")
        from .ildm.held_jobs import held_job_refusal

        refusal = held_job_refusal(self.pipe, "follow")
        if refusal is not None:
            raise ValueError(refusal)
        return replace(self, given_intrinsics=maps)

    @property
    def co_generates_intrinsics(self) -> bool:
        """Whether each result carries depth, normals, segmentation and lines (the I-LDM methods)."""
        return self.method.startswith("ildm")

    @property
    def guided(self) -> bool:
        """Whether each result carries what InfSplign guided (and, when asked, its attention strip)."""
        return self.spatial_guidance is not None

    def call_kwargs(self, save_attention: bool = False, rows: int = 1) -> dict[str, Any]:
        """The method's own arguments of a pipeline call of ``rows`` prompts, beside the usual diffusers ones."""
        kwargs: dict[str, Any] = {}
        if self.co_generates_intrinsics:
            kwargs["schedule"] = self.schedule
            if self.intrinsic_lag:
                kwargs["intrinsic_lag"] = self.intrinsic_lag
        if self.given_intrinsics is not None:
            from .intrinsics import Intrinsics

            maps = self.given_intrinsics
            kwargs["given_intrinsics"] = Intrinsics(
                *(getattr(maps, name).expand(rows, -1, -1, -1) for name in ("depth", "normal", "segmentation", "lines"))
            )
        if self.spatial_guidance is not None:
            kwargs["spatial_guidance"] = replace(self.spatial_guidance, record_maps=save_attention)
        return kwargs


def as_generator(pipe: Any, schedule: Any = None, spatial_guidance: InfSplignConfig | None = None) -> Generator:
    """The :class:`Generator` of a pipeline already loaded; its method follows from the pipeline's type."""
    if isinstance(pipe, Generator):
        return pipe
    from .guidance.pipeline import InfSplignPipeline
    from .ildm.pipeline import IntrinsicLDMPipeline

    ildm = isinstance(pipe, IntrinsicLDMPipeline)
    if schedule is not None and not ildm:
        raise ValueError("a cross-domain schedule applies to an I-LDM pipeline only (IntrinsicLDMPipeline)")
    if spatial_guidance is not None and not (ildm or isinstance(pipe, InfSplignPipeline)):
        raise ValueError(
            "spatial guidance needs an InfSplignPipeline or an I-LDM pipeline; "
            "wrap an SD pipeline with spatialgen.guidance.infsplign_pipeline(pipe)"
        )
    method = "ildm" if ildm else "sd"
    if spatial_guidance is not None:
        method = "ildm+infsplign" if ildm else "infsplign"
    return Generator(pipe, method, schedule, spatial_guidance)


def load_generator(
    method: str = "sd",
    model: str = "embedded",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    scheduler: str | None = None,
    schedule: str | None = None,
    spatial_guidance: InfSplignConfig | None = None,
    guidance_weight: float | None = None,
) -> Generator:
    """Load ``model`` for ``method`` (one of :data:`METHODS`).

    ``schedule`` (I-LDM methods) names the cross-domain weights; ``spatial_guidance`` (InfSplign
    methods; default :class:`~spatialgen.guidance.InfSplignConfig`) sets the loss and its knobs, and
    ``guidance_weight`` its weight, which defaults to the model card's recommendation. Wrong names
    and knobs are refused before any weights are loaded.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    ildm, guided = method.startswith("ildm"), method.endswith("infsplign")
    if schedule is not None:
        if not ildm:
            raise ValueError("--schedule applies to --method ildm and ildm+infsplign only")
        from .ildm.schedules import make_schedule

        make_schedule(schedule)
    if spatial_guidance is not None and not guided:
        raise ValueError(f"spatial guidance settings apply to the InfSplign methods, not to {method!r}")
    config = None
    if guided:
        from .guidance import InfSplignConfig, recommended_weight

        config = (spatial_guidance or InfSplignConfig()).validate()
    if ildm:
        from .ildm.pipeline import load_ildm_pipeline

        pipe = load_ildm_pipeline(model, device, dtype, scheduler)
    else:
        from .models import load_pipeline

        pipe = load_pipeline(model, device, dtype, scheduler)
    if config is not None:
        from .guidance import infsplign_pipeline

        weight = recommended_weight(pipe) if guidance_weight is None else guidance_weight
        config = replace(config, weight=weight).validate()
        if not ildm:
            pipe = infsplign_pipeline(pipe)
    return Generator(pipe, method, schedule, config)
