"""VISOR (Gokhale et al. 2022): 2D spatial relations scored from box centres, as the official code does.

Follows microsoft/VISOR at commit 044c8ce: the detection step of ``text2image_realtime_evaluate.ipynb``
(``process_detection``) and the aggregation of ``visor.py`` (``get_visor_spatial``, ``get_visor_n``).

Per image (``visor_verdict``): keep the detections named A or B with score strictly above 0.1 (the
notebook's ``score > 0.1`` on OWL-ViT's ``"a photo of a {obj}"`` queries); take every box centre;
the image passes when both objects are present and ANY (A box, B box) pair satisfies the relation,
with no margin, in image coordinates (x right, y down):

* A *left of* B: x_A - x_B < 0; *right of*: > 0; *above*: y_A - y_B < 0; *below*: > 0.

Over a set of images (``visor_scores``), grouped by prompt:

* OA: % of images in which both objects are detected (also OA_A and OA_B, each object alone);
* VISOR_cond: % of those images that pass; VISOR_uncond = VISOR_cond * OA / 100;
* VISOR_n: % of prompts with at least n passing images (n = 1..4 for VISOR's four images per
  prompt). Every prompt counts in the denominator, also prompts none of whose images shows both
  objects: that is ``visor.py`` (the notebook's variant counts only prompts with a detection).

Where the official code divides by zero (no image with both objects) VISOR_cond is reported as 0.
SR2D writes its relations "to the left of" / "to the right of"; both spellings are accepted here.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from ...relations import RELATIONS_2D  # VISOR's four relations
from ..detection.detections import ObjectDetection, above_threshold

VISOR_THRESHOLD = 0.1  # OWL-ViT score, strictly above
_SPELLINGS = {"to the left of": "left of", "to the right of": "right of"}

Point = tuple[float, float]


def normalise_relation(relation: str) -> str:
    """The relation in our spelling ("left of", ...), from ours or SR2D's ("to the left of", ...)."""
    name = " ".join(relation.lower().split())
    name = _SPELLINGS.get(name, name)
    if name not in RELATIONS_2D:
        raise ValueError(f"unknown 2D relation {relation!r}; choose one of {RELATIONS_2D} (or 'to the left of' ...)")
    return name


def relation_holds(centre_a: Point, centre_b: Point, relation: str) -> bool:
    """VISOR's comparison of two box centres (x right, y down), without margin."""
    relation = normalise_relation(relation)
    dx, dy = centre_a[0] - centre_b[0], centre_a[1] - centre_b[1]
    if relation == "left of":
        return dx < 0
    if relation == "right of":
        return dx > 0
    if relation == "above":
        return dy < 0
    return dy > 0


@dataclass(frozen=True)
class ImageVerdict:
    """One image of a prompt: which objects were found and whether the relation holds."""

    prompt_id: Hashable
    a_present: bool
    b_present: bool
    passed: bool

    @property
    def both_present(self) -> bool:
        return self.a_present and self.b_present


def judge_image(
    prompt_id: Hashable, centres_a: Sequence[Point], centres_b: Sequence[Point], relation: str
) -> ImageVerdict:
    """Verdict from the centres of the (already thresholded) A and B boxes: ANY pair may pass."""
    relation = normalise_relation(relation)
    a_present, b_present = len(centres_a) > 0, len(centres_b) > 0
    passed = any(relation_holds(a, b, relation) for a in centres_a for b in centres_b)
    return ImageVerdict(prompt_id, a_present, b_present, passed)


def visor_verdict(
    detections: Sequence[ObjectDetection],
    a: str,
    b: str,
    relation: str,
    prompt_id: Hashable = 0,
    threshold: float = VISOR_THRESHOLD,
) -> ImageVerdict:
    """VISOR's verdict on one image of the prompt "A <relation> B" from its detections.

    Detections of other names are ignored; the threshold is strict (``score > threshold``).
    """
    kept = [d for d in detections if above_threshold(d.score, threshold)]
    centres_a = [d.centre for d in kept if d.label == a]
    centres_b = [d.centre for d in kept if d.label == b]
    return judge_image(prompt_id, centres_a, centres_b, relation)


def visor_scores(verdicts: Sequence[ImageVerdict], max_n: int = 4) -> dict[str, float]:
    """OA, OA_A, OA_B, VISOR_cond, VISOR_uncond and VISOR_1..max_n (percentages) of image verdicts.

    Images are grouped into prompts by ``prompt_id``; ``max_n`` is the number of images per prompt
    (4 in VISOR).
    """
    if not verdicts:
        raise ValueError("no images to score: pass at least one ImageVerdict")
    if max_n < 1:
        raise ValueError(f"max_n must be at least 1 (the images per prompt), got {max_n}")
    n = len(verdicts)
    present = [v for v in verdicts if v.both_present]
    oa = 100.0 * len(present) / n
    cond = 100.0 * sum(v.passed for v in present) / len(present) if present else 0.0
    scores = {
        "OA": oa,
        "OA_A": 100.0 * sum(v.a_present for v in verdicts) / n,
        "OA_B": 100.0 * sum(v.b_present for v in verdicts) / n,
        "VISOR_cond": cond,
        "VISOR_uncond": cond * oa / 100.0,
    }
    passes: dict[Hashable, int] = {}
    for v in verdicts:
        passes[v.prompt_id] = passes.get(v.prompt_id, 0) + int(v.passed and v.both_present)
    for k in range(1, max_n + 1):
        scores[f"VISOR_{k}"] = 100.0 * sum(count >= k for count in passes.values()) / len(passes)
    return scores
