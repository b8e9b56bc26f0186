"""InfSplign: training-free guidance that moves objects where the prompt's spatial relation says.

:func:`spatialgen.triplets.parse_triplet` reads <A, R, B> from a prompt; :mod:`.prompts` finds A's
and B's tokens; :mod:`.capture` keeps the cross-attention maps of chosen layers; :mod:`.centroids`
turns them into object centroids; :mod:`.losses` scores the relation; :mod:`.guide` makes the guided denoising step;
:mod:`.pipeline` is a diffusers pipeline around it (the I-LDM pipeline uses the same guide);
:mod:`.visualise` draws the attention strips users debug guidance with.
"""

from ..triplets import SpatialTriplet, parse_triplet, triplet_from_parts
from .config import LOSS_DEFAULTS, PAPER_WEIGHT, InfSplignConfig, recommended_weight
from .guide import GuidanceTrace, SpatialGuide, StepRecord
from .pipeline import InfSplignPipeline, InfSplignPipelineOutput, infsplign_pipeline

__all__ = [
    "LOSS_DEFAULTS",
    "PAPER_WEIGHT",
    "GuidanceTrace",
    "InfSplignConfig",
    "InfSplignPipeline",
    "InfSplignPipelineOutput",
    "SpatialGuide",
    "SpatialTriplet",
    "StepRecord",
    "infsplign_pipeline",
    "parse_triplet",
    "recommended_weight",
    "triplet_from_parts",
]
