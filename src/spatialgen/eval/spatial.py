"""2D spatial-relation scoring in VISOR's rule, over any detector's boxes.

VISOR (Gokhale et al. 2022, microsoft/VISOR) decides a relation from box centres in image
coordinates (x right, y down), without margin: A is *left of* B when x_A - x_B < 0, *right of*
when > 0, *above* when y_A - y_B < 0, *below* when > 0. An image passes when both objects are
detected and ANY (A box, B box) pair satisfies the relation. Over a prompt set:

* OA: % of images in which both objects are detected;
* VISOR_cond: % of those images that pass; VISOR_uncond = VISOR_cond * OA / 100;
* VISOR_n: % of prompts with at least n of their images passing (n = 1..4 with 4 images each).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

RELATIONS_2D = ("left of", "right of", "above", "below")


def relation_holds(centre_a: tuple[float, float], centre_b: tuple[float, float], relation: str) -> bool:
    """VISOR's comparison of two box centres (x right, y down)."""
    dx, dy = centre_a[0] - centre_b[0], centre_a[1] - centre_b[1]
    if relation == "left of":
        return dx < 0
    if relation == "right of":
        return dx > 0
    if relation == "above":
        return dy < 0
    if relation == "below":
        return dy > 0
    raise ValueError(f"unknown 2D relation {relation!r}; choose one of {RELATIONS_2D}")


@dataclass(frozen=True)
class ImageVerdict:
    prompt_id: int
    both_present: bool
    passed: bool


def judge_image(
    prompt_id: int,
    centres_a: Sequence[tuple[float, float]],
    centres_b: Sequence[tuple[float, float]],
    relation: str,
) -> ImageVerdict:
    present = bool(centres_a) and bool(centres_b)
    passed = present and any(relation_holds(a, b, relation) for a in centres_a for b in centres_b)
    return ImageVerdict(prompt_id, present, passed)


def visor_scores(verdicts: Sequence[ImageVerdict], max_n: int = 4) -> dict[str, float]:
    """OA, VISOR_cond, VISOR_uncond and VISOR_1..max_n (percentages) of per-image verdicts."""
    if not verdicts:
        raise ValueError("no images to score")
    present = [v for v in verdicts if v.both_present]
    oa = 100.0 * len(present) / len(verdicts)
    cond = 100.0 * sum(v.passed for v in present) / len(present) if present else 0.0
    scores = {"OA": oa, "VISOR_cond": cond, "VISOR_uncond": cond * oa / 100.0}
    per_prompt: dict[int, int] = {}
    for v in verdicts:
        per_prompt[v.prompt_id] = per_prompt.get(v.prompt_id, 0) + int(v.passed)
    for n in range(1, max_n + 1):
        scores[f"VISOR_{n}"] = 100.0 * sum(k >= n for k in per_prompt.values()) / len(per_prompt)
    return scores
