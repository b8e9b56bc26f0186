"""TORE rewrites a prompt only into an equivalent one, and only when the measured gain exceeds tau."""

from __future__ import annotations

import pytest

from spatialgen.relations import INVERSE_RELATION
from spatialgen.tore import swap_objects, tore_rewrite
from spatialgen.triplets import parse_triplet

PROMPTS = [
    "a red cube to the left of a blue sphere",
    "a red cube to the left of a blue sphere on the grass",
    "A dog to the right of a bench",
    "an apple above a cube",
    "a cube below an orange",
    "two red cubes to the left of a blue sphere on the grass",
    "the large yellow cone in front of the small gray cylinder",
    "a photo of a cat behind a dog",
    "a horse on the left of a car, at sunset",
    "a sheep under a kite",
    "a purple sphere on top of a wooden table",
    "a cup left of a plate",
]


def _objects(text: str) -> str:
    return " ".join(w for w in text.lower().split() if w not in {"a", "an", "the"})


@pytest.mark.parametrize("prompt", PROMPTS)
def test_the_swapped_prompt_states_the_same_relation_between_the_same_objects(prompt: str) -> None:
    before = parse_triplet(prompt)
    after = parse_triplet(swap_objects(before))
    assert after is not None, swap_objects(before)
    assert after.relation == INVERSE_RELATION[before.relation]
    assert _objects(after.a.text) == _objects(before.b.text) and _objects(after.b.text) == _objects(before.a.text)
    assert parse_triplet(swap_objects(after)).relation == before.relation  # and back


def test_articles_capitals_and_the_rest_of_the_prompt_survive() -> None:
    assert swap_objects(parse_triplet("an apple above a cube")) == "a cube below an apple"
    assert swap_objects(parse_triplet("A dog to the right of a bench")) == "A bench to the left of a dog"
    assert (
        swap_objects(parse_triplet("two red cubes to the left of a blue sphere on the grass"))
        == "a blue sphere to the right of two red cubes on the grass"
    )
    assert swap_objects(parse_triplet("a horse on the left of a car, at sunset")) == (
        "a car to the right of a horse, at sunset"
    )


def test_the_rewrite_happens_only_when_the_gain_exceeds_tau() -> None:
    accuracy = {"left of": 0.30, "right of": 0.50, "above": 0.4, "below": 0.42}
    done = tore_rewrite("a red cube to the right of a blue sphere", accuracy, tau=0.05)
    assert not done.applied and done.prompt == done.original and done.gain == pytest.approx(-0.2)
    done = tore_rewrite("a red cube to the left of a blue sphere", accuracy, tau=0.05)
    assert done.applied and done.prompt == "a blue sphere to the right of a red cube"
    assert (done.relation, done.rewritten_relation, done.gain) == ("left of", "right of", pytest.approx(0.2))
    assert not tore_rewrite("a red cube to the left of a blue sphere", accuracy, tau=0.25).applied
    assert not tore_rewrite("a cube above a sphere", accuracy, tau=0.05).applied  # a gain of 0.02 <= tau
    assert not tore_rewrite("a cube in front of a sphere", accuracy).applied  # no measurement: left alone
    assert not tore_rewrite("a cube next to a sphere", accuracy).applied  # "near" has no inverse
    assert tore_rewrite("three cubes", accuracy).relation is None
    with pytest.raises(ValueError, match="tau must be >= 0"):
        tore_rewrite("a cube above a sphere", accuracy, tau=-1)
