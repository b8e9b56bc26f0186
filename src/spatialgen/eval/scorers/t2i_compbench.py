"""T2I-CompBench spatial scores (Huang et al. 2023), as the official UniDet-based scripts compute them.

Follows Karine-Huang/T2I-CompBench: ``UniDet_eval/2D_spatial_eval.py`` (commit 6d58bed) for 2D and
``UniDet_eval/3D_spatial_eval.py`` (commit ed5367e) for 3D, with the detector set-up of
``UniDet_eval/experts/model_bank.py`` and ``experts/obj_detection/utils.py``.

**Relation.** The first phrase of the official vocabulary, in its order, that occurs in the prompt
as a substring: ``on side of, next to, near, on the left of, on the right of, on the bottom of,
on the top of, on top of`` (2D) and ``in front of, behind, hidden`` (3D; "A hidden by B" scores as
"A behind B"). "on top of" is in the 2D vocabulary but the official position rule has no branch
for it, so its position score is always 0; that is kept.

**Objects.** The official script takes A and B as the first and last spaCy NOUN of the prompt and
maps girl / boy / man / woman to UniDet's "person". :func:`parse_spatial_prompt` instead splits
the prompt at the relation phrase and drops the leading article, which gives the same nouns on
the official prompt files ("a giraffe next to a lamp"); :func:`official_object_name` is the person
mapping, for detectors with UniDet's closed vocabulary. Of each object only the detection with the
best score counts (detectron2 returns detections best first and the script takes ``obj.index``).
Detections count when their score is above 0.5 (UniDet's ``SCORE_THRESH_TEST``; strict ``>``,
compared in float32 as detectron2 does).

**Position score** (2D, A relative to B): with dx, dy = centre_B - centre_A,

* near types (next to, on side of, near): 1 if |dx| < 150 or |dy| < 150, else 150 / max(|dx|, |dy|);
* on the left of: dx > 0 and |dx| > |dy| (right of: dx < 0; on the top of: dy > 0 and |dy| > |dx|;
  on the bottom of: dy < 0), then 1 if IoU < 0.1 else 0.1 / IoU; otherwise 0. When both chosen
  boxes have zero area the official script divides 0 by 0 (IoU = nan, so its score is nan and
  poisons the mean); we take IoU = 0 there (:func:`~spatialgen.eval.detection.detections.box_iou`),
  so two degenerate boxes count as not overlapping.

**Image score** = 0.25 * score_A + 0.25 * score_B + 0.5 * position (detector scores); with only one
object found 0.25 * its score; with none 0. In 2D a score below 0.5 becomes 0 (so an image needs
both objects); the 3D script has no such cut. The benchmark score is the mean over images.

**Pixel units.** The 150 px constant is in the pixels of the image the detector saw. The official
script resizes every image with ``torchvision.transforms.Resize(size=479, max_size=480)`` (shorter
side to 479 px, longer side capped at 480 px) and passes that size as detectron2's output size,
so its boxes are in that frame: a 512 x 512 image is scored at 479 x 479, where 150 px are 160 px
of the original. We therefore map boxes from the scored image (``image_size``) into the same frame
(:func:`official_frame_size`) before measuring, which makes scores independent of the resolution
the images were generated at, as the official ones are.

**3D** (:func:`depth_position_score`): the mean of the depth map over each box, A minus B. The map
is the DPT (MiDaS) prediction min-max normalised to [0, 1] per image: a disparity, near = 1, so
pass a disparity (the project's convention; :func:`spatialgen.intrinsics.disparity_from_depth`
turns metric depth into one). "in front of" holds when the difference is > 0, "behind" / "hidden"
when < 0; then 1 if IoU > 0.5, IoU / 0.5 if 0 < IoU < 0.5, and 0 otherwise (also at IoU = 0.5
exactly, and with no overlap). The official code slices the map as ``depth[x0:x1, y0:y1]``, rows by
x: the box transposed. ``official_indexing=True`` (the default) reproduces that, False reads the
box itself. We read the map at the resolution it is given (negative box coordinates clipped to 0);
the official code first resamples it to the 479-480 px frame (8-bit PNG), which changes a region's
mean only by pixel rounding, and IoU does not change when either axis is scaled. Its
object matching is by substring of the label ("cat" finds "wildcat"), taking for A the last match
seen before B is found; that is reproduced on the label list best score first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..detection.detections import Box, ObjectDetection, above_threshold, box_iou

SPATIAL_VOCABULARY = (
    "on side of",
    "next to",
    "near",
    "on the left of",
    "on the right of",
    "on the bottom of",
    "on the top of",
    "on top of",
)
SPATIAL_3D_VOCABULARY = ("in front of", "behind", "hidden")
NEAR_TYPES = ("next to", "on side of", "near")
PERSON_WORDS = ("girl", "boy", "man", "woman")

DETECTION_THRESHOLD = 0.5  # UniDet SCORE_THRESH_TEST (score > 0.5)
DISTANCE_THRESHOLD = 150.0  # pixels of the official frame
IOU_THRESHOLD = 0.1
IOU_THRESHOLD_3D = 0.5
SCORE_CUT = 0.5  # 2D image scores below this become 0
OFFICIAL_SHORT_SIDE = 479
OFFICIAL_MAX_SIDE = 480


@dataclass(frozen=True)
class SpatialPrompt:
    """A T2I-CompBench prompt read as "<a> <relation> <b>"."""

    text: str
    a: str
    relation: str
    b: str


def read_prompts(path: str | os.PathLike[str]) -> list[str]:
    """The prompts of a T2I-CompBench prompt file (e.g. ``spatial_val.txt``): one per non-empty line."""
    with open(path, encoding="utf-8") as handle:
        prompts = [line.strip() for line in handle]
    prompts = [p for p in prompts if p]
    if not prompts:
        raise ValueError(f"{os.fspath(path)!r} holds no prompts; expected one prompt per line")
    return prompts


def find_relation(prompt: str, vocabulary: Sequence[str] = SPATIAL_VOCABULARY) -> str | None:
    """The official relation of a prompt: the first vocabulary phrase, in order, that occurs in it."""
    for phrase in vocabulary:
        if phrase in prompt:
            return phrase
    return None


def _strip_article(phrase: str) -> str:
    words = phrase.strip().strip(".,;:!").split()
    if words and words[0].lower() in ("a", "an", "the"):
        words = words[1:]
    return " ".join(words)


def parse_spatial_prompt(prompt: str, three_d: bool = False) -> SpatialPrompt:
    """Object A, relation and object B of a prompt such as "a giraffe next to a lamp"."""
    vocabulary = SPATIAL_3D_VOCABULARY if three_d else SPATIAL_VOCABULARY
    relation = find_relation(prompt, vocabulary)
    if relation is None:
        raise ValueError(f"no T2I-CompBench relation in {prompt!r}; it must contain one of {vocabulary}")
    left, right = prompt.split(relation, 1)
    if relation == "hidden":
        right = right.strip()
        right = right[3:] if right.startswith("by ") else right
    a, b = _strip_article(left), _strip_article(right)
    if not a or not b:
        raise ValueError(f"{prompt!r} must name an object on each side of {relation!r}")
    return SpatialPrompt(prompt, a, relation, b)


def official_object_name(noun: str) -> str:
    """UniDet's class for a prompt noun: girl, boy, man and woman are all "person"."""
    return "person" if noun in PERSON_WORDS else noun


def official_frame_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of an image after the official ``Resize(size=479, max_size=480)`` (torchvision rule)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive (width, height), got {(width, height)}")
    short, long = min(width, height), max(width, height)
    new_short, new_long = OFFICIAL_SHORT_SIDE, int(OFFICIAL_SHORT_SIDE * long / short)
    if new_long > OFFICIAL_MAX_SIDE:
        new_short, new_long = int(OFFICIAL_MAX_SIDE * new_short / new_long), OFFICIAL_MAX_SIDE
    return (new_short, new_long) if width <= height else (new_long, new_short)


def to_official_frame(box: Box, image_size: tuple[int, int]) -> Box:
    """A box in pixels of an image of ``image_size`` (width, height) -> pixels of the official frame."""
    width, height = image_size
    new_width, new_height = official_frame_size(width, height)
    sx, sy = new_width / width, new_height / height
    return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


def _directional(along: float, across: float, sign: float, iou: float) -> float:
    """Left/right/top/bottom: the offset must point the right way and dominate; overlap is penalised."""
    if along * sign > 0 and abs(along) > abs(across):
        return 1.0 if iou < IOU_THRESHOLD else IOU_THRESHOLD / iou
    return 0.0


def position_score(relation: str, box_a: Box, box_b: Box) -> float:
    """The official 2D position score of A relative to B, boxes in pixels of the official frame."""
    if relation not in SPATIAL_VOCABULARY:
        raise ValueError(f"unknown T2I-CompBench 2D relation {relation!r}; choose one of {SPATIAL_VOCABULARY}")
    (xa, ya), (xb, yb) = _centre(box_a), _centre(box_b)
    dx, dy = xb - xa, yb - ya
    iou = box_iou(box_a, box_b)
    if relation in NEAR_TYPES:
        if abs(dx) < DISTANCE_THRESHOLD or abs(dy) < DISTANCE_THRESHOLD:
            return 1.0
        return DISTANCE_THRESHOLD / max(abs(dx), abs(dy))
    if relation == "on the left of":
        return _directional(dx, dy, 1.0, iou)
    if relation == "on the right of":
        return _directional(dx, dy, -1.0, iou)
    if relation == "on the top of":
        return _directional(dy, dx, 1.0, iou)
    if relation == "on the bottom of":
        return _directional(dy, dx, -1.0, iou)
    return 0.0  # "on top of": in the vocabulary, but the official rule scores it 0


def _best(detections: Sequence[ObjectDetection], name: str, threshold: float) -> ObjectDetection | None:
    found = [d for d in detections if d.label == name and above_threshold(d.score, threshold)]
    return max(found, key=lambda d: d.score) if found else None


def _combine(found_a: ObjectDetection | None, found_b: ObjectDetection | None, position: float) -> float:
    if found_a is not None and found_b is not None:
        return 0.25 * found_a.score + 0.25 * found_b.score + position / 2.0
    if found_a is not None:
        return 0.25 * found_a.score
    if found_b is not None:
        return 0.25 * found_b.score
    return 0.0


def spatial_score(
    detections: Sequence[ObjectDetection],
    a: str,
    b: str,
    relation: str,
    image_size: tuple[int, int],
    threshold: float = DETECTION_THRESHOLD,
) -> float:
    """The official 2D score of one image of "A <relation> B" (in [0, 1]; 0 below the 0.5 cut).

    ``image_size`` is (width, height) of the image the boxes are in; boxes are mapped to the
    official 479-480 px frame before the 150 px rule applies (see the module docstring).
    """
    if relation not in SPATIAL_VOCABULARY:
        raise ValueError(f"unknown T2I-CompBench 2D relation {relation!r}; choose one of {SPATIAL_VOCABULARY}")
    found_a, found_b = _best(detections, a, threshold), _best(detections, b, threshold)
    position = 0.0
    if found_a is not None and found_b is not None:
        box_a, box_b = to_official_frame(found_a.box, image_size), to_official_frame(found_b.box, image_size)
        position = position_score(relation, box_a, box_b)
    score = _combine(found_a, found_b, position)
    return 0.0 if score < SCORE_CUT else score


def _box_region(depth: np.ndarray, box: Box, official_indexing: bool) -> np.ndarray:
    x0, y0, x1, y1 = (max(0, int(v)) for v in box)
    return depth[x0:x1, y0:y1] if official_indexing else depth[y0:y1, x0:x1]


def depth_position_score(
    relation: str, box_a: Box, box_b: Box, disparity: np.ndarray, official_indexing: bool = True
) -> float:
    """The official 3D position score of A relative to B from a disparity map (near = large).

    Boxes are in pixels of ``disparity`` (H, W). An empty region (a box outside the map, which the
    transposed official slicing can produce on non-square images) decides nothing: score 0.
    """
    if relation not in SPATIAL_3D_VOCABULARY:
        raise ValueError(f"unknown T2I-CompBench 3D relation {relation!r}; choose one of {SPATIAL_3D_VOCABULARY}")
    disparity = np.asarray(disparity, dtype=np.float64)
    if disparity.ndim != 2:
        raise ValueError(f"disparity must be one (H, W) map, got shape {disparity.shape}")
    region_a = _box_region(disparity, box_a, official_indexing)
    region_b = _box_region(disparity, box_b, official_indexing)
    if region_a.size == 0 or region_b.size == 0:
        return 0.0
    difference = float(region_a.mean() - region_b.mean())
    ordered = difference > 0 if relation == "in front of" else difference < 0
    iou = box_iou(box_a, box_b)  # scaling either axis leaves IoU unchanged: no need for the official frame
    if not ordered:
        return 0.0
    if iou > IOU_THRESHOLD_3D:
        return 1.0
    if 0 < iou < IOU_THRESHOLD_3D:
        return iou / IOU_THRESHOLD_3D
    return 0.0


def _official_3d_pick(
    detections: Sequence[ObjectDetection], a: str, b: str, threshold: float
) -> tuple[ObjectDetection | None, ObjectDetection | None]:
    """The official 3D matching: substring of the label, A's index updated until B's is found."""
    kept = sorted((d for d in detections if d.score > threshold), key=lambda d: -d.score)
    found_a = next((d for d in kept if a in d.label), None)
    found_b = next((d for d in kept if b in d.label), None)
    if found_a is None or found_b is None:
        return found_a, found_b
    pos_a = pos_b = None
    for i, det in enumerate(kept):
        if a in det.label:
            pos_a = i
        if b in det.label:
            pos_b = i
        if pos_a is not None and pos_b is not None:
            break
    return kept[pos_a], kept[pos_b]  # type: ignore[index]


def spatial_3d_score(
    detections: Sequence[ObjectDetection],
    a: str,
    b: str,
    relation: str,
    disparity: np.ndarray,
    threshold: float = DETECTION_THRESHOLD,
    official_indexing: bool = True,
) -> float:
    """The official 3D score of one image of "A <relation> B" ("in front of", "behind", "hidden").

    ``disparity`` is the image's (H, W) disparity map (near = large) and the boxes are in its
    pixels. No 0.5 cut: the 3D script has none.
    """
    if relation not in SPATIAL_3D_VOCABULARY:
        raise ValueError(f"unknown T2I-CompBench 3D relation {relation!r}; choose one of {SPATIAL_3D_VOCABULARY}")
    found_a, found_b = _official_3d_pick(detections, a, b, threshold)
    position = 0.0
    if found_a is not None and found_b is not None:
        position = depth_position_score(relation, found_a.box, found_b.box, disparity, official_indexing)
    return _combine(found_a, found_b, position)


def mean_score(scores: Iterable[float]) -> float:
    """The benchmark score: the mean of the per-image scores."""
    values = list(scores)
    if not values:
        raise ValueError("no image scores to average: score at least one image")
    return float(np.mean(values))
