"""Prompt sets over the scene world's vocabulary, and reading objects back out of a prompt.

The relational sets draw ordered pairs of distinct (colour, shape) objects with a seeded
generator; the default seed is reserved for evaluation (training captions come from rendered
scenes, not from this generator).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from ...relations import RELATIONS_2D
from ...scenes.captions import plural
from ...scenes.catalog import COLOURS, RELATION_PHRASES, SHAPES

EVAL_SEED = 20261123
_OBJECT = re.compile(
    r"\b(?:(?:small|large)\s+)?("
    + "|".join(COLOURS)
    + r")\s+("
    + "|".join(SHAPES + tuple(plural(s) for s in SHAPES))
    + r")\b"
)
_SINGULAR = {plural(s): s for s in SHAPES}


@dataclass(frozen=True)
class RelationalPrompt:
    prompt: str
    a: tuple[str, str]  # (colour, shape)
    relation: str
    b: tuple[str, str]


def prompt_objects(prompt: str) -> list[tuple[str, str]]:
    """The (colour, shape) pairs a prompt names, in order ("two red cubes" gives one pair)."""
    return [(colour, _SINGULAR.get(shape, shape)) for colour, shape in _OBJECT.findall(prompt.lower())]


def relational_prompts(
    n: int, relations: tuple[str, ...] = RELATIONS_2D, seed: int = EVAL_SEED
) -> list[RelationalPrompt]:
    """``n`` prompts "a <colour> <shape> <relation phrase> a <colour> <shape>", relations in turn."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    unknown = [r for r in relations if r not in RELATION_PHRASES]
    if unknown:
        raise ValueError(f"unknown relations {unknown}; choose from {list(RELATION_PHRASES)}")
    rng = random.Random(seed)
    objects = [(c, s) for c in COLOURS for s in SHAPES]
    out = []
    for i in range(n):
        a, b = rng.sample(objects, 2)
        relation = relations[i % len(relations)]
        text = f"a {a[0]} {a[1]} {RELATION_PHRASES[relation]} a {b[0]} {b[1]}"
        out.append(RelationalPrompt(text, a, relation, b))
    return out
