"""Whether an I-LDM was trained for the jobs that hold one domain clean.

Reading maps from an image (``image=``) and drawing an image for given maps
(``given_intrinsics=``) run the joint model with one domain at timestep 0. A LoRA
trained only on pairs noised together never saw that input, so it answers with maps
that ignore the image. Its card records the shares of clean pairs it was trained
with; this module is the one place that turns those shares into a refusal, so the
CLI, the library and the demo refuse the same models with the same words.
"""

from __future__ import annotations

from typing import Any, Literal

HeldJob = Literal["read", "follow"]

#: job -> (the training share that teaches it, what the job does, in words)
HELD_JOBS: dict[str, tuple[str, str]] = {
    "read": ("p_image_clean", "read images"),
    "follow": ("p_intrinsic_clean", "follow given maps"),
}


def held_job_refusal(pipe: Any, job: HeldJob) -> str | None:
    """Why ``pipe`` cannot do ``job``, or ``None`` when it can (or its card does not say).

    A pipeline without a training record (a user's own run, a model built in code) is
    trusted: its author knows how it was trained. One whose record gives the job's
    share as 0 or leaves it out was trained before clean pairs existed and is refused.
    """
    from ..models.pipeline import model_card

    if job not in HELD_JOBS:
        raise ValueError(f"job must be one of {', '.join(HELD_JOBS)}, got {job!r}")
    training = model_card(pipe).get("training")
    if training is None:
        return None
    key, what = HELD_JOBS[job]
    if training.get(key):
        return None
    return (
        f"this I-LDM was not trained to {what} ({key} = 0); train one with "
        f"`spatialgen train ildm --{key.replace('_', '-')} 0.15` and pass its RUN/pipeline"
    )
