"""The spatial-relation vocabulary shared by guidance (which steers toward a relation) and eval (which scores it).

Benchmarks and users phrase one relation many ways ("to the left of", "on the left of", "left of";
"on top of", "on the top of", "above", "over"). :data:`PHRASES` maps each phrase to one canonical
name; :func:`find_relation` finds the phrase in free text with its character span, so callers can
cut the two object phrases around it. This module depends on nothing else of ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RELATIONS_2D = ("left of", "right of", "above", "below")
RELATIONS_3D = ("in front of", "behind")
RELATIONS_NEAR = ("near",)
#: Each directional relation and its inverse ("A left of B" states the same picture as "B right of A").
INVERSE_RELATION: dict[str, str] = {
    "left of": "right of",
    "right of": "left of",
    "above": "below",
    "below": "above",
    "in front of": "behind",
    "behind": "in front of",
}

#: Relation phrase -> canonical relation. Longer phrases win ("on the left of" before "left of").
PHRASES: dict[str, str] = {
    "to the left of": "left of",
    "on the left of": "left of",
    "on the left side of": "left of",
    "left of": "left of",
    "to the right of": "right of",
    "on the right of": "right of",
    "on the right side of": "right of",
    "right of": "right of",
    "on the top of": "above",
    "on top of": "above",
    "above": "above",
    "over": "above",
    "on the bottom of": "below",
    "below": "below",
    "under": "below",
    "beneath": "below",
    "underneath": "below",
    "in front of": "in front of",
    "behind": "behind",
    "on the side of": "near",
    "on side of": "near",
    "next to": "near",
    "beside": "near",
    "near": "near",
}

PHRASE_PATTERN = "|".join(sorted(map(re.escape, PHRASES), key=len, reverse=True))
_PHRASE = re.compile(r"(?<![\w-])(?:" + PHRASE_PATTERN + r")(?![\w-])", re.IGNORECASE)


@dataclass(frozen=True)
class RelationMatch:
    """A relation phrase found in a text: its canonical name and where it stands (``text[start:end]``)."""

    relation: str
    phrase: str
    start: int
    end: int


def find_relations(text: str) -> list[RelationMatch]:
    """Every relation phrase in ``text``, left to right, longest phrase at each place, as whole words."""
    return [RelationMatch(PHRASES[m.group(0).lower()], m.group(0), m.start(), m.end()) for m in _PHRASE.finditer(text)]


def canonical_relation(relation: str) -> str:
    """The canonical name of a relation phrase or name ("on top of" -> "above"), or a ValueError."""
    key = " ".join(relation.lower().split())
    if key in PHRASES:
        return PHRASES[key]
    raise ValueError(f"unknown spatial relation {relation!r}; use one of: {', '.join(PHRASES)}")
