"""GenEval (Ghosh et al. 2023): the official per-image check of a prompt's metadata, position first.

Follows djghosh13/geneval ``evaluation/evaluate_images.py`` (commit 16f1681) with its default
options, ``evaluation/summary_scores.py`` for the aggregation and ``prompts/create_prompts.py``
for the metadata format. Each prompt has one JSON record in ``evaluation_metadata.jsonl``::

    {"tag": "position", "include": [{"class": "cat", "count": 1},
     {"class": "dog", "count": 1, "position": ["right of", 0]}], "prompt": "a photo of a dog right of a cat"}

meaning "1 cat, and 1 dog that is right of include-group 0".

**Detections** (:func:`filter_detections`): per class, best score first, those with score > 0.3
(> 0.9 for the "counting" tag), at most 16 per class; no extra NMS (``max_overlap`` 1.0, the
default; below 1 a class's boxes overlapping a better one by IoU >= max_overlap are dropped, with
the official +1-pixel IoU).

**Clauses** (:func:`evaluate_metadata`), in order: an ``include`` clause takes the first ``count``
detections of its class and fails if there are fewer; a ``color`` clause needs a colour classifier
(GenEval uses CLIP; pass ``classify_colour``); a ``position`` clause ``[relation, g]`` requires,
for EVERY pair (one of its ``count`` objects, one object of include-group ``g``), that the relation
is among :func:`relative_position`'s; it fails if group ``g`` failed. An ``exclude`` clause fails
when its class has at least ``count`` detections. The image is correct when no clause fails.

**Relative position** (:func:`relative_position`, A relative to B): offset = centre_A - centre_B;
per axis the offset shrinks by 0.1 * (dim_A + dim_B) towards 0 (not past it); if every revised
component is below 1e-3 in size there is no relation; else (dx, dy) = revised / ||offset|| and
dx < -0.5 gives "left of", dx > 0.5 "right of", dy < -0.5 "above", dy > 0.5 "below" (image y
down). A diagonal offset can give two relations, and both count as found.

**Scores** (:func:`geneval_scores`): per tag the fraction of correct images, the overall score is
the mean over tags; also the fraction of correct images, and of prompts with at least one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...relations import RELATIONS_2D as RELATIONS  # GenEval's four positions
from ..detection.detections import Box, ObjectDetection, above_threshold

DETECTION_THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16
MAX_OVERLAP = 1.0
POSITION_THRESHOLD = 0.1
AMBIGUITY = 1e-3


def relative_position(box_a: Box, box_b: Box, position_threshold: float = POSITION_THRESHOLD) -> set[str]:
    """GenEval's relations of box A relative to box B ((x0, y0, x1, y1), y down); possibly empty or two."""
    centre_a = ((box_a[0] + box_a[2]) / 2.0, (box_a[1] + box_a[3]) / 2.0)
    centre_b = ((box_b[0] + box_b[2]) / 2.0, (box_b[1] + box_b[3]) / 2.0)
    dims = (abs(box_a[2] - box_a[0]) + abs(box_b[2] - box_b[0]), abs(box_a[3] - box_a[1]) + abs(box_b[3] - box_b[1]))
    offset = (centre_a[0] - centre_b[0], centre_a[1] - centre_b[1])
    revised = [math.copysign(max(abs(o) - position_threshold * d, 0.0), o) for o, d in zip(offset, dims, strict=True)]
    if all(abs(r) < AMBIGUITY for r in revised):
        return set()
    norm = math.hypot(*offset)
    dx, dy = revised[0] / norm, revised[1] / norm
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


def _official_iou(a: Box, b: Box) -> float:
    """GenEval's IoU with inclusive pixel ends (+1), used only for its optional per-class NMS."""

    def area(box: Sequence[float]) -> float:
        return max(box[2] - box[0] + 1, 0) * max(box[3] - box[1] + 1, 0)

    inter = area([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    union = area(a) + area(b) - inter
    return inter / union if union else 0.0


def filter_detections(
    detections: Sequence[ObjectDetection],
    tag: str,
    threshold: float = DETECTION_THRESHOLD,
    counting_threshold: float = COUNTING_THRESHOLD,
    max_objects: int = MAX_OBJECTS,
    max_overlap: float = MAX_OVERLAP,
) -> dict[str, list[ObjectDetection]]:
    """The detections GenEval keeps for an image of a prompt with ``tag``, per class, best first."""
    cut = counting_threshold if tag == "counting" else threshold
    kept: dict[str, list[ObjectDetection]] = {}
    for det in sorted(detections, key=lambda d: -d.score):
        if above_threshold(det.score, cut):
            kept.setdefault(det.label, []).append(det)
    out = {}
    for label, dets in kept.items():
        queue, chosen = dets[:max_objects], []
        while queue:
            best = queue.pop(0)
            chosen.append(best)
            if max_overlap != 1:
                queue = [d for d in queue if _official_iou(best.box, d.box) < max_overlap]
        out[label] = chosen
    return out


@dataclass(frozen=True)
class GenEvalResult:
    """One image's verdict; ``reason`` lists the failed clauses as the official code words them."""

    tag: str
    prompt: str
    correct: bool
    reason: str
    metadata_key: str  # the record as JSON: images with equal keys are one prompt


def _check_metadata(metadata: Mapping[str, Any]) -> None:
    for key in ("tag", "prompt"):
        if not isinstance(metadata.get(key), str):
            raise ValueError(f"GenEval metadata needs a string {key!r}; got {dict(metadata)!r}")
    for kind in ("include", "exclude"):
        clauses = metadata.get(kind, [])
        if not isinstance(clauses, list):
            raise ValueError(f"GenEval metadata {kind!r} must be a list of clauses, got {clauses!r}")
        for clause in clauses:
            if not isinstance(clause, Mapping) or "class" not in clause or "count" not in clause:
                raise ValueError(f"every {kind!r} clause needs 'class' and 'count', got {clause!r}")
    for index, clause in enumerate(metadata.get("include", [])):
        if "position" in clause:
            relation, group = clause["position"]
            if relation not in RELATIONS:
                raise ValueError(f"unknown GenEval position {relation!r} in {clause!r}; choose one of {RELATIONS}")
            if not isinstance(group, int) or not 0 <= group < index:
                raise ValueError(f"position target {group!r} in include clause {index} must name an earlier clause")


def _check_position(
    name: str, found: list[ObjectDetection], relation: str, targets: list[ObjectDetection] | None
) -> str | None:
    """None when every (object, target) pair has the relation, else the official reason."""
    if targets is None:
        return f"no target for {name} to be {relation}"
    for obj in found:
        for target in targets:
            relations = relative_position(obj.box, target.box)
            if relation not in relations:
                return f"expected {name} {relation} target, found {' and '.join(sorted(relations))} target"
    return None


def evaluate_metadata(
    detected: Mapping[str, list[ObjectDetection]],
    metadata: Mapping[str, Any],
    classify_colour: Callable[[ObjectDetection], str] | None = None,
) -> tuple[bool, str]:
    """GenEval's ``evaluate``: (correct, reason) for detections already filtered per class, best first."""
    _check_metadata(metadata)
    correct, reasons = True, []
    groups: list[list[ObjectDetection] | None] = []
    for clause in metadata.get("include", []):
        name, count = clause["class"], int(clause["count"])
        found = list(detected.get(name, []))[:count]
        matched = len(found) >= count
        if not matched:
            reasons.append(f"expected {name}>={count}, found {len(found)}")
        if matched and "color" in clause:
            if classify_colour is None:
                raise ValueError(f"clause {dict(clause)!r} asks for a colour: pass classify_colour (GenEval uses CLIP)")
            hits = sum(classify_colour(d) == clause["color"] for d in found)
            if hits < count:
                matched = False
                reasons.append(f"expected {clause['color']} {name}>={count}, found {hits} {clause['color']}")
        if matched and "position" in clause:
            relation, group = clause["position"]
            failure = _check_position(name, found, relation, groups[group])
            if failure is not None:
                matched = False
                reasons.append(failure)
        correct = correct and matched
        groups.append(found if matched else None)
    for clause in metadata.get("exclude", []):
        name, count = clause["class"], int(clause["count"])
        if len(detected.get(name, [])) >= count:
            correct = False
            reasons.append(f"expected {name}<{count}, found {len(detected[name])}")
    return correct, "\n".join(reasons)


def geneval_verdict(
    detections: Sequence[ObjectDetection],
    metadata: Mapping[str, Any],
    classify_colour: Callable[[ObjectDetection], str] | None = None,
    **filter_options: Any,
) -> GenEvalResult:
    """GenEval's verdict on one image: filter the raw detections, then check the metadata's clauses."""
    _check_metadata(metadata)
    detected = filter_detections(detections, metadata["tag"], **filter_options)
    correct, reason = evaluate_metadata(detected, metadata, classify_colour)
    return GenEvalResult(metadata["tag"], metadata["prompt"], correct, reason, json.dumps(dict(metadata)))


def geneval_scores(results: Sequence[GenEvalResult]) -> dict[str, float]:
    """Fractions in [0, 1]: per tag, the overall mean over tags, correct images and correct prompts."""
    if not results:
        raise ValueError("no images to score: pass at least one GenEvalResult")
    by_tag: dict[str, list[bool]] = {}
    by_prompt: dict[str, bool] = {}
    for r in results:
        by_tag.setdefault(r.tag, []).append(r.correct)
        by_prompt[r.metadata_key] = by_prompt.get(r.metadata_key, False) or r.correct
    scores = {f"tag/{tag}": sum(v) / len(v) for tag, v in by_tag.items()}
    scores["overall"] = sum(scores.values()) / len(scores)
    scores["correct_images"] = sum(r.correct for r in results) / len(results)
    scores["correct_prompts"] = sum(by_prompt.values()) / len(by_prompt)
    return scores


def position_metadata(a: str, relation: str, b: str) -> dict[str, Any]:
    """The record ``create_prompts.py`` writes for "a photo of a(n) A <relation> a(n) B"."""
    if relation not in RELATIONS:
        raise ValueError(f"unknown GenEval position {relation!r}; choose one of {RELATIONS}")

    def article(name: str) -> str:
        return f"an {name}" if name[0] in "aeiou" else f"a {name}"

    return {
        "tag": "position",
        "include": [{"class": b, "count": 1}, {"class": a, "count": 1, "position": [relation, 0]}],
        "prompt": f"a photo of {article(a)} {relation} {article(b)}",
    }


def read_metadata(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of an ``evaluation_metadata.jsonl`` (or a per-prompt ``metadata.jsonl``)."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{os.fspath(path)}:{number} is not JSON ({error}); expected one record a line"
                ) from None
            _check_metadata(record)
            records.append(record)
    return records


def write_metadata(path: str | os.PathLike[str], records: Sequence[Mapping[str, Any]]) -> None:
    """Write records one JSON object a line, as ``create_prompts.py`` does."""
    for record in records:
        _check_metadata(record)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(dict(record)) + "\n")
