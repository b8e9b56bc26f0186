"""Reading "<object A> <relation> <object B>" out of a prompt, for every benchmark's phrasing.

VISOR writes "a dog to the left of a cat", T2I-CompBench "a dog on the left of a cat", GenEval
"a photo of a dog left of a cat", and the scene world "a red cube to the left of a blue sphere".
All of them name two objects around one relation phrase; the phrase maps to one canonical
relation (the names :mod:`spatialgen.eval.visor` and :mod:`spatialgen.eval.relations3d` use).
Structured records (GenEval metadata, our JSONL prompt sets) are read in preference to text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..relations import PHRASE_PATTERN, PHRASES, RELATIONS_2D, RELATIONS_3D, RELATIONS_NEAR

__all__ = [
    "PHRASES",
    "RELATIONS_2D",
    "RELATIONS_3D",
    "RELATIONS_NEAR",
    "SpatialPrompt",
    "parse_spatial_prompt",
    "spatial_prompt_of",
]

_ARTICLE = re.compile(r"^(?:a photo of\s+)?(?:a|an|the|one)\s+", re.IGNORECASE)
_PATTERN = re.compile(
    r"^(?P<a>.+?)\s+(?P<phrase>" + PHRASE_PATTERN + r")\s+(?P<b>.+)$",
    re.IGNORECASE,
)
# GenEval's position words in its metadata ("left of", "right of", "above", "below").
_GENEVAL_POSITIONS = {"left of": "left of", "right of": "right of", "above": "above", "below": "below"}


@dataclass(frozen=True)
class SpatialPrompt:
    """Object A stands in ``relation`` to object B."""

    a: str
    relation: str
    b: str

    @property
    def is_3d(self) -> bool:
        return self.relation in RELATIONS_3D


def _object(text: str) -> str:
    text = text.strip().strip(".,;:!").strip()
    return _ARTICLE.sub("", text).strip()


def parse_spatial_prompt(prompt: str) -> SpatialPrompt | None:
    """The (A, relation, B) a prompt states, or None when it states no single known relation."""
    match = _PATTERN.match(prompt.strip().rstrip("."))
    if match is None:
        return None
    a, b = _object(match.group("a")), _object(match.group("b"))
    if not a or not b:
        return None
    return SpatialPrompt(a, PHRASES[match.group("phrase").lower()], b)


def spatial_prompt_of(record: dict[str, Any]) -> SpatialPrompt | None:
    """From a structured record when it has one (ours: obj_a / relation / obj_b; GenEval: include), else its text."""
    if {"obj_a", "relation", "obj_b"} <= record.keys():
        return SpatialPrompt(str(record["obj_a"]), str(record["relation"]), str(record["obj_b"]))
    include = record.get("include")
    if record.get("tag") == "position" and isinstance(include, list) and len(include) == 2:
        position = include[1].get("position")
        if position and position[0] in _GENEVAL_POSITIONS:
            anchor = include[int(position[1])]["class"]
            return SpatialPrompt(include[1]["class"], _GENEVAL_POSITIONS[position[0]], anchor)
    return parse_spatial_prompt(str(record.get("prompt", "")))
