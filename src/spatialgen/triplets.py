"""The one parser of "<object A> <relation> <object B>" in a prompt, shared by guidance, evaluation and prompt sets.

"a photo of a potted plant to the right of a clock on the table" gives A = "potted plant",
R = "right of", B = "clock". The relation phrase is found by :mod:`spatialgen.relations` (every
benchmark's phrasing maps to one canonical name). Object phrases are cut around it: A is what
follows the last article or number word before the relation (so "a photo of a" and "two" fall
away: "two red cubes" gives "red cubes"), B is what follows the relation up to the first
punctuation or context word ("on", "in", "with" ...: "a clock on the table" gives "clock").
Each object keeps its character span, so guidance can map it to tokens
(:mod:`spatialgen.guidance.prompts`) and evaluation can name it to a detector.

Benchmarks whose official code reads prompts differently keep their own rule in their scorer:
T2I-CompBench splits on its relation list (:mod:`spatialgen.eval.scorers.t2i_compbench`), GenEval reads
its metadata (:func:`spatialgen.eval.prompts.spatial_prompts.spatial_prompt_of`). This module depends only
on :mod:`spatialgen.relations`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .relations import RELATIONS_2D, canonical_relation, find_relations

# Words that open a noun phrase; the object starts after the last of them before the relation.
_DETERMINERS = frozenset(
    "a an the one two three four five some this that these those his her their its my our your".split()
)
# Words that end object B: what follows them is context ("on the grass", "in a kitchen").
_B_STOPWORDS = frozenset("on in at with and while which that who where near by from during".split())
_WORD = re.compile(r"[\w'-]+")


@dataclass(frozen=True)
class ObjectSpan:
    """One object phrase of the prompt: its text and ``prompt[start:end]``."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class SpatialTriplet:
    """<A, R, B> read from a prompt: object A stands in ``relation`` (a canonical name) to object B."""

    prompt: str
    a: ObjectSpan
    relation: str
    b: ObjectSpan

    @property
    def is_2d(self) -> bool:
        """Whether InfSplign's image-plane losses can guide it (left of, right of, above, below)."""
        return self.relation in RELATIONS_2D


def parse_triplet(prompt: str) -> SpatialTriplet | None:
    """The first <A, R, B> the prompt states, or None when no relation phrase has an object on each side."""
    for match in find_relations(prompt):
        a = _object_before(prompt, match.start)
        b = _object_after(prompt, match.end)
        if a is not None and b is not None:
            return SpatialTriplet(prompt, a, match.relation, b)
    return None


def triplet_from_parts(prompt: str, a: str, relation: str, b: str) -> SpatialTriplet:
    """A triplet from objects the caller names (they must occur in the prompt, A before B when possible)."""
    lowered = prompt.lower()
    a_start = _find_word_sequence(lowered, a.lower(), 0)
    if a_start is None:
        raise ValueError(f"object A {a!r} does not occur in the prompt {prompt!r}; name it as the prompt spells it")
    b_start = _find_word_sequence(lowered, b.lower(), a_start + len(a))
    if b_start is None:
        b_start = _find_word_sequence(lowered, b.lower(), 0)
    if b_start is None:
        raise ValueError(f"object B {b!r} does not occur in the prompt {prompt!r}; name it as the prompt spells it")
    return SpatialTriplet(
        prompt,
        ObjectSpan(prompt[a_start : a_start + len(a)], a_start, a_start + len(a)),
        canonical_relation(relation),
        ObjectSpan(prompt[b_start : b_start + len(b)], b_start, b_start + len(b)),
    )


# ------------------------------------------------------------------------------------------ helpers


def _words(text: str, offset: int = 0) -> list[tuple[str, int, int]]:
    return [(m.group(0).lower(), offset + m.start(), offset + m.end()) for m in _WORD.finditer(text)]


#: How far from a relation phrase its objects are looked for: an object is a few words, and a bounded
#: window keeps parsing linear in the prompt's length (a prompt of 10,000 relation phrases included).
OBJECT_WINDOW = 200


def _object_before(prompt: str, end: int) -> ObjectSpan | None:
    head = prompt[max(0, end - OBJECT_WINDOW) : end]
    trimmed = head.rstrip()
    if trimmed and trimmed[-1] in ",;:.!?":
        return None  # "a cat, left of ..." names no object right before the relation
    clause = re.split(r"[,;:.!?]", head)[-1]
    words = _words(clause, end - len(clause))
    if not words:
        return None
    last_determiner = max((i for i, (w, _, _) in enumerate(words) if w in _DETERMINERS), default=-1)
    kept = words[last_determiner + 1 :]
    if not kept:
        return None
    return ObjectSpan(prompt[kept[0][1] : kept[-1][2]], kept[0][1], kept[-1][2])


def _object_after(prompt: str, start: int) -> ObjectSpan | None:
    clause = re.split(r"[,;:.!?]", prompt[start : start + OBJECT_WINDOW])[0]
    words = _words(clause, start)
    while words and words[0][0] in _DETERMINERS:
        words = words[1:]
    kept = []
    for word in words:
        if word[0] in _B_STOPWORDS or find_relations(word[0]):
            break
        kept.append(word)
    if not kept:
        return None
    return ObjectSpan(prompt[kept[0][1] : kept[-1][2]], kept[0][1], kept[-1][2])


def _find_word_sequence(text: str, phrase: str, start: int) -> int | None:
    match = re.compile(r"(?<![\w-])" + re.escape(" ".join(phrase.split())) + r"(?![\w-])").search(text, start)
    return None if match is None else match.start()
