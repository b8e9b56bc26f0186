"""TORE (ESPLoRA, papers/004): say the same relation the way the model draws best.

"A to the right of B" and "B to the left of A" state one picture, but a model may render one
phrasing measurably better than the other. Given a model's measured accuracy per relation (its
bias table: ``spatialgen bias``), :func:`tore_rewrite` swaps the two objects and inverts the
relation when the inverse's accuracy exceeds the original's by more than ``tau``. The rewrite
never changes meaning: the objects move whole (with their article and attributes), the relation
becomes its inverse, and the rest of the prompt stays as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .relations import INVERSE_RELATION, find_relations
from .triplets import ObjectSpan, SpatialTriplet, parse_triplet

#: The phrase a rewrite uses for each relation (the scene world's caption phrasing).
RELATION_PHRASE: dict[str, str] = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
    "in front of": "in front of",
    "behind": "behind",
}
_DETERMINERS = frozenset("a an the one two three four five some this that".split())


@dataclass(frozen=True)
class ToreRewrite:
    """What TORE did to one prompt: the prompt to sample, and why."""

    original: str
    prompt: str
    relation: str | None  # the original's relation (None: no relation found, nothing to do)
    rewritten_relation: str | None
    gain: float  # measured accuracy of the rewrite's relation minus the original's (0 when not applicable)
    applied: bool


def _with_article(prompt: str, span: ObjectSpan) -> tuple[int, int]:
    """The span of an object phrase with the determiner right before it ("a red cube", "two cubes")."""
    match = re.search(r"([\w]+)\s+$", prompt[: span.start])
    if match and match.group(1).lower() in _DETERMINERS:
        return match.start(1), span.end
    return span.start, span.end


def _fix_article(phrase: str) -> str:
    """ "a apple" -> "an apple", "an cube" -> "a cube" (the article now stands before another word)."""

    def repair(match: re.Match[str]) -> str:
        article, word = match.group(1), match.group(2)
        wanted = "an" if word[0].lower() in "aeiou" else "a"
        wanted = wanted.capitalize() if article[0].isupper() else wanted
        return f"{wanted} {word}"

    return re.sub(r"\b([Aa]n?)\s+(\w+)", repair, phrase)


def swap_objects(triplet: SpatialTriplet) -> str:
    """The equivalent prompt: B <inverse relation> A, everything else as written."""
    prompt = triplet.prompt
    a_start, a_end = _with_article(prompt, triplet.a)
    b_start, b_end = _with_article(prompt, triplet.b)
    middle = prompt[a_end:b_start]
    found = [m for m in find_relations(middle) if m.relation == triplet.relation]
    if not found:
        raise ValueError(f"the relation of {prompt!r} does not stand between its objects; TORE cannot swap them")
    phrase = found[0]
    inverse = INVERSE_RELATION[triplet.relation]
    middle = middle[: phrase.start] + RELATION_PHRASE[inverse] + middle[phrase.end :]
    a_text, b_text = prompt[a_start:a_end], prompt[b_start:b_end]
    if a_start == 0 and a_text[:1].isupper():  # the sentence's capital stays at the sentence's start
        a_text, b_text = a_text[:1].lower() + a_text[1:], b_text[:1].upper() + b_text[1:]
    return prompt[:a_start] + _fix_article(b_text) + middle + _fix_article(a_text) + prompt[b_end:]


def tore_rewrite(prompt: str, accuracy: Mapping[str, float], tau: float = 0.05) -> ToreRewrite:
    """Rewrite ``prompt`` into its equivalent phrasing when that relation's accuracy is higher by more than ``tau``.

    ``accuracy`` maps canonical relation names to the model's measured accuracy (0-1). A prompt
    without a directional relation, or one whose relations lack a measurement, is left alone.
    """
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    triplet = parse_triplet(prompt)
    if triplet is None or triplet.relation not in INVERSE_RELATION:
        return ToreRewrite(prompt, prompt, triplet.relation if triplet else None, None, 0.0, False)
    inverse = INVERSE_RELATION[triplet.relation]
    if triplet.relation not in accuracy or inverse not in accuracy:
        return ToreRewrite(prompt, prompt, triplet.relation, None, 0.0, False)
    gain = float(accuracy[inverse]) - float(accuracy[triplet.relation])
    if gain <= tau:
        return ToreRewrite(prompt, prompt, triplet.relation, inverse, gain, False)
    return ToreRewrite(prompt, swap_objects(triplet), triplet.relation, inverse, gain, True)
