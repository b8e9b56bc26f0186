"""Keeping the captions whose relations hold, and writing ones for images whose captions state none.

Per image: every caption that states a relation (the project's one parser, :mod:`spatialgen.triplets`)
is checked against the image. Its two objects must each be found exactly once (uniquely named),
be large enough, overlap little, stand clearly apart along the relation's axis, and the relation
must hold: VISOR's rule on box centres for left / right / above / below, the project's depth rule
for in front of / behind (the spirit of CoMPaSS's SCOP filters). An image with no caption left is
given synthesised ones: the vocabulary's objects found exactly once, paired along their clearest
axis ("a dog to the left of a bench") and, with depth, by their depth order ("a dog in front of a
bench"), phrased so that each relation and its inverse stay balanced. Every rejection is counted by
its reason; nothing stops a job.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..relations import INVERSE_RELATION, RELATIONS_2D, RELATIONS_3D
from ..tore import RELATION_PHRASE
from ..triplets import parse_triplet

REASONS = (
    "caption_without_relation",
    "relation_not_checkable",
    "object_unknown",
    "object_missing",
    "object_not_unique",
    "object_too_small",
    "objects_overlap",
    "objects_too_close",
    "depth_undecided",
    "relation_false",
)


@dataclass(frozen=True)
class CurationRules:
    """Thresholds of the filters (areas and distances as fractions of the image)."""

    min_score: float = 0.3
    min_area: float = 0.005
    max_iou: float = 0.3
    min_separation: float = 0.05
    synthesise: bool = True
    max_synthesised: int = 2

    def validate(self) -> CurationRules:
        for name in ("min_score", "min_area", "max_iou", "min_separation"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.max_synthesised < 0:
            raise ValueError(f"max_synthesised must be >= 0, got {self.max_synthesised}")
        return self


def _area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def _centre(box: Sequence[float], size: tuple[int, int]) -> tuple[float, float]:
    return ((box[0] + box[2]) / 2 / size[0], (box[1] + box[3]) / 2 / size[1])


def judge_pair(
    det_a: Any, det_b: Any, relation: str, size: tuple[int, int], disparity: np.ndarray | None, rules: CurationRules
) -> str | None:
    """None if "A <relation> B" clearly holds for these two detections, else the reason it is rejected."""
    from ..eval.scorers.relations3d import detection_depth_order

    image_area = float(size[0] * size[1])
    if min(_area(det_a.box), _area(det_b.box)) / image_area < rules.min_area:
        return "object_too_small"
    if iou(det_a.box, det_b.box) > rules.max_iou:
        return "objects_overlap"
    if relation in RELATIONS_3D:
        if disparity is None:
            return "depth_undecided"
        found = detection_depth_order(det_a, det_b, disparity).relation
        return "depth_undecided" if found is None else (None if found == relation else "relation_false")
    (ax, ay), (bx, by) = _centre(det_a.box, size), _centre(det_b.box, size)
    along = ax - bx if relation in ("left of", "right of") else ay - by
    if abs(along) < rules.min_separation:
        return "objects_too_close"
    holds = {"left of": along < 0, "right of": along > 0, "above": along < 0, "below": along > 0}[relation]
    return None if holds else "relation_false"


def _unique(detections: Sequence[Any], label: str, rules: CurationRules) -> tuple[Any | None, str | None]:
    found = [d for d in detections if d.label == label and d.score > rules.min_score]
    if not found:
        return None, "object_missing"
    if len(found) > 1:
        return None, "object_not_unique"
    return found[0], None


def with_article(name: str) -> str:
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


@dataclass
class CuratedItem:
    key: str
    verified: list[str]
    synthesised: list[str]
    detections: list[dict[str, Any]]
    size: tuple[int, int]

    @property
    def captions(self) -> list[str]:
        return self.verified + self.synthesised


class Curator:
    """Curates batches of (image, captions) with a detector, an optional depth estimator and a vocabulary."""

    def __init__(self, detector: Any, depth: Any | None, vocabulary: Sequence[str], rules: CurationRules) -> None:
        self.detector = detector
        self.depth = depth
        self.vocabulary = list(vocabulary)
        self.rules = rules.validate()

    def _known(self, name: str) -> bool:
        parse = getattr(self.detector, "parse_name", None)
        if parse is None:
            return True
        try:
            parse(name)
        except ValueError:
            return False
        return True

    def curate(self, images: Sequence[Any], captions: Sequence[Sequence[str]], counts: Counter) -> list[CuratedItem]:
        """Curated captions of each image (PIL RGB); reasons and totals added to ``counts``."""
        parsed = [[(c, parse_triplet(c)) for c in cs] for cs in captions]
        queries = []
        for rows in parsed:
            names = {t.a.text.lower() for _, t in rows if t} | {t.b.text.lower() for _, t in rows if t}
            queries.append(sorted(n for n in names if self._known(n)))
        needs_pairs = [k for k, q in enumerate(queries) if q]
        found: dict[int, list[Any]] = {}
        if needs_pairs:
            detected = self.detector.detect([images[k] for k in needs_pairs], [queries[k] for k in needs_pairs])
            found = dict(zip(needs_pairs, detected, strict=True))
        wants_depth = [k for k, rows in enumerate(parsed) if any(t and t.relation in RELATIONS_3D for _, t in rows)]
        if self.rules.synthesise:
            wants_depth = list(range(len(images)))
        depth: dict[int, np.ndarray] = {}
        if self.depth is not None and wants_depth:
            depth = dict(zip(wants_depth, self.depth.disparity([images[k] for k in wants_depth]), strict=True))
        checks = [  # each caption's verdict: None when it holds, else the reason it is rejected
            [self._check(caption, triplet, found.get(k, []), image.size, depth.get(k)) for caption, triplet in rows]
            for k, (image, rows) in enumerate(zip(images, parsed, strict=True))
        ]
        bare = [k for k, reasons in enumerate(checks) if None not in reasons]  # nothing verified: synthesise
        scenes: dict[int, list[Any]] = {}
        if bare and self.rules.synthesise and self.vocabulary:  # one batched detection, not one per image
            scenes = dict(
                zip(bare, self.detector.detect([images[k] for k in bare], [self.vocabulary] * len(bare)), strict=True)
            )
        out = []
        for k, (image, rows) in enumerate(zip(images, parsed, strict=True)):
            detections = list(found.get(k, []))
            verified = []
            for (caption, triplet), reason in zip(rows, checks[k], strict=True):
                if reason is None:
                    verified.append(caption)
                    counts[f"relation:{triplet.relation}"] += 1
                else:
                    counts[reason] += 1
            synthesised: list[str] = []
            if k in scenes:  # in image order, so the balance of phrasings evolves as it did image by image
                synthesised = self._synthesise(scenes[k], image.size, depth.get(k), counts)
                detections += scenes[k]
            counts["verified_captions"] += len(verified)
            counts["synthesised_captions"] += len(synthesised)
            out.append(CuratedItem("", verified, synthesised, [d.to_dict() for d in detections], image.size))
        return out

    def _check(self, caption: str, triplet: Any, detections: Sequence[Any], size, disparity) -> str | None:
        if triplet is None:
            return "caption_without_relation"
        if triplet.relation not in RELATIONS_2D + RELATIONS_3D:
            return "relation_not_checkable"
        a_name, b_name = triplet.a.text.lower(), triplet.b.text.lower()
        if not (self._known(a_name) and self._known(b_name)):
            return "object_unknown"
        det_a, reason = _unique(detections, a_name, self.rules)
        if reason:
            return reason
        det_b, reason = _unique(detections, b_name, self.rules)
        if reason:
            return reason
        return judge_pair(det_a, det_b, triplet.relation, size, disparity, self.rules)

    def _synthesise(self, detections: Sequence[Any], size, disparity, counts: Counter) -> list[str]:
        """Captions for pairs of uniquely found vocabulary objects, in a fixed order.

        Per pair: its relation along the clearer image axis and, with a depth map, its depth order
        (in front of / behind), each kept only if it passes the same checks as a given caption.
        Each is phrased the way round ("A left of B" or "B right of A") that the counts so far hold
        less of, so the curated set stays balanced between a relation and its inverse: which
        object comes first in a pair (alphabetical) must not decide what the LoRA learns.
        """
        from ..eval.scorers.relations3d import detection_depth_order

        labels = sorted({d.label for d in detections})
        unique = {}
        for label in labels:
            det, _ = _unique(detections, label, self.rules)
            if det is not None:
                unique[label] = det
        out = []
        for a, b in itertools.combinations(sorted(unique), 2):  # one caption per pair and kind, not its inverse too
            (ax, ay), (bx, by) = _centre(unique[a].box, size), _centre(unique[b].box, size)
            dx, dy = ax - bx, ay - by
            along_x = abs(dx) >= abs(dy)
            relations = [("left of" if dx < 0 else "right of") if along_x else ("above" if dy < 0 else "below")]
            order = detection_depth_order(unique[a], unique[b], disparity).relation if disparity is not None else None
            if order is not None:  # decided: in front of / behind
                relations.append(order)
            for relation in relations:
                if len(out) >= self.rules.max_synthesised:
                    return out
                if judge_pair(unique[a], unique[b], relation, size, disparity, self.rules) is not None:
                    continue
                first, second, phrased = a, b, relation
                if counts[f"relation:{INVERSE_RELATION[relation]}"] < counts[f"relation:{relation}"]:
                    first, second, phrased = b, a, INVERSE_RELATION[relation]
                out.append(f"{with_article(first)} {RELATION_PHRASE[phrased]} {with_article(second)}")
                counts[f"relation:{phrased}"] += 1
        return out
