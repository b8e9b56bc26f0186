"""The (A, relation, B) an evaluated image was asked for: from its record, else from its prompt.

VISOR writes "a dog to the left of a cat", T2I-CompBench "a dog on the left of a cat", GenEval
"a photo of a dog left of a cat", and the scene world "a red cube to the left of a blue sphere".
Text is read by the project's one parser, :func:`spatialgen.triplets.parse_triplet`, the same
that InfSplign steers with, so the scorer looks for the objects the guide moved. Structured
records (GenEval metadata, our JSONL prompt sets) are read in preference to text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...relations import PHRASES, RELATIONS_2D, RELATIONS_3D, RELATIONS_NEAR
from ...triplets import parse_triplet

__all__ = [
    "PHRASES",
    "RELATIONS_2D",
    "RELATIONS_3D",
    "RELATIONS_NEAR",
    "SpatialPrompt",
    "parse_spatial_prompt",
    "spatial_prompt_of",
]

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


def parse_spatial_prompt(prompt: str) -> SpatialPrompt | None:
    """The (A, relation, B) a prompt states (:func:`spatialgen.triplets.parse_triplet`), or None."""
    triplet = parse_triplet(prompt)
    return None if triplet is None else SpatialPrompt(triplet.a.text, triplet.relation, triplet.b.text)


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
