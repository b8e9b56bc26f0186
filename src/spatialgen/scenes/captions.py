"""Captions of a scene, of several kinds, and the mix a training set draws them in.

Kinds:

* ``attributes``: every visible object with its size and colour, and the floor
  ("a large red cube and a small blue sphere on a checkered floor").
* ``relation2d``: one unambiguous image-space relation, in VISOR's phrasing
  ("a red cube to the left of a blue sphere").
* ``relation3d``: one unambiguous depth relation ("a red cube in front of a blue sphere").
* ``count``: how many objects of each shape ("two cubes and one sphere on the grass").

A relation is used in a caption only if it is *clear*: for 2D, its axis is the dominant one and
the centroids are at least ``min_separation`` (of the image side) apart; for 3D, the median
depths differ by at least ``min_depth_gap`` world units; and both objects can be named uniquely
("red cube", or "small red cube" when two red cubes stand in the scene).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .annotate import ObjectAnnotation, Relation
from .catalog import COLOURS, FLOORS, NUMBER_WORDS, RELATION_PHRASES, SHAPES, SIZES
from .sampling import Draw

CAPTION_KINDS: tuple[str, ...] = ("attributes", "relation2d", "relation3d", "count")
RELATIONAL_KINDS: tuple[str, ...] = ("relation2d", "relation3d")

# The base model is trained mostly without relations, on purpose (issue 3): 10% relational.
DEFAULT_CAPTION_MIX: dict[str, float] = {"attributes": 0.6, "count": 0.3, "relation2d": 0.05, "relation3d": 0.05}


@dataclass(frozen=True)
class CaptionRules:
    min_separation: float = 0.1
    min_depth_gap: float = 0.5
    floor_in_relation_captions: float = 0.5  # probability of appending the floor phrase


def plural(shape: str) -> str:
    return shape + "s"


def vocabulary() -> list[str]:
    """Every word a scene-world caption can contain, sorted (for word-level tokenizers)."""
    words = {"a", "and"}
    words.update(COLOURS, SIZES, SHAPES, (plural(s) for s in SHAPES), NUMBER_WORDS[1:])
    for phrase in [*RELATION_PHRASES.values(), *(str(f["phrase"]) for f in FLOORS.values())]:
        words.update(phrase.split())
    return sorted(words)


def _names(objects: list[ObjectAnnotation]) -> dict[int, str]:
    """Shortest unique name of each visible object: "red cube", else "small red cube"."""
    visible = [o for o in objects if o.visible]
    names: dict[int, str] = {}
    for o in visible:
        short = f"{o.colour} {o.shape}"
        if sum(1 for p in visible if (p.colour, p.shape) == (o.colour, o.shape)) == 1:
            names[o.index] = short
        elif sum(1 for p in visible if (p.size, p.colour, p.shape) == (o.size, o.colour, o.shape)) == 1:
            names[o.index] = f"{o.size} {short}"
    return names


def clear_relations(objects: list[ObjectAnnotation], relations: list[Relation], rules: CaptionRules) -> list[Relation]:
    """The relations a caption may state (see module docstring), in their stored order."""
    names = _names(objects)
    out = []
    for r in relations:
        if r.subject not in names or r.object not in names:
            continue
        if r.kind == "2d" and r.dominant and r.separation >= rules.min_separation:
            out.append(r)
        elif r.kind == "3d" and r.separation >= rules.min_depth_gap:
            out.append(r)
    return out


def make_captions(
    floor: str,
    objects: list[ObjectAnnotation],
    relations: list[Relation],
    draw: Draw,
    rules: CaptionRules | None = None,
) -> dict[str, str]:
    """One caption of each kind the scene supports (relational kinds may be missing)."""
    rules = rules or CaptionRules()
    visible = [o for o in objects if o.visible]
    if not visible:
        return {}
    floor_phrase = str(FLOORS[floor]["phrase"])
    order = draw.permutation(len(visible))
    listed = " and ".join(f"a {visible[i].size} {visible[i].colour} {visible[i].shape}" for i in order)
    captions = {"attributes": f"{listed} {floor_phrase}"}

    counts: dict[str, int] = {}
    for i in order:
        counts[visible[i].shape] = counts.get(visible[i].shape, 0) + 1
    counted = " and ".join(f"{NUMBER_WORDS[n]} {shape if n == 1 else plural(shape)}" for shape, n in counts.items())
    captions["count"] = f"{counted} {floor_phrase}"

    names = _names(objects)
    clear = clear_relations(objects, relations, rules)
    for kind in RELATIONAL_KINDS:
        candidates = [r for r in clear if r.kind == kind[-2:]]
        if candidates:
            r = draw.pick(candidates)
            text = f"a {names[r.subject]} {RELATION_PHRASES[r.relation]} a {names[r.object]}"
            if draw.chance(rules.floor_in_relation_captions):
                text = f"{text} {floor_phrase}"
            captions[kind] = text
    return captions


def check_caption_mix(mix: Mapping[str, float]) -> dict[str, float]:
    unknown = [k for k in mix if k not in CAPTION_KINDS]
    if unknown:
        raise ValueError(f"unknown caption kind(s) {unknown}; choose from {list(CAPTION_KINDS)}")
    if any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"caption mix weights must be >= 0 with a positive sum, got {dict(mix)}")
    return dict(mix)


def choose_caption(captions: Mapping[str, str], mix: Mapping[str, float], draw: Draw) -> tuple[str, str]:
    """Draw (kind, caption) with probabilities ``mix`` renormalised over the kinds present.

    A scene without any kind the mix asks for (e.g. one object, relational mix) falls back to
    its attribute caption; a real image (captions of no scene kind) gives one of its own, uniformly.
    """
    kinds = [k for k in CAPTION_KINDS if mix.get(k, 0.0) > 0 and k in captions]
    if not kinds:
        if "attributes" in captions:
            return "attributes", captions["attributes"]
        present = list(captions)  # a real image's captions (``caption``, ``caption-2``, ...): any of them
        kind = present[draw.index(len(present))]
        return kind, captions[kind]
    total = sum(mix[k] for k in kinds)
    u = draw.uniform(0.0, total)
    for kind in kinds:
        u -= mix[kind]
        if u < 0:
            return kind, captions[kind]
    return kinds[-1], captions[kinds[-1]]
