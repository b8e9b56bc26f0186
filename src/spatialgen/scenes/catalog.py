"""The closed vocabulary of the scene world: shapes, colours, sizes and floor materials.

Everything a caption can say about a scene comes from these tables, so the embedded model's
tokenizer (built from :func:`spatialgen.scenes.captions.vocabulary`) and the evaluation's object
recogniser share one source of truth.
"""

from __future__ import annotations

from typing import Final

RGB = tuple[float, float, float]

SHAPES: Final[tuple[str, ...]] = ("cube", "sphere", "cylinder", "cone")

# Linear albedos, saturated enough to stay recognisable under the darkest shading (the ambient term).
COLOURS: Final[dict[str, RGB]] = {
    "red": (0.82, 0.13, 0.11),
    "green": (0.16, 0.62, 0.20),
    "blue": (0.14, 0.30, 0.86),
    "yellow": (0.92, 0.80, 0.14),
    "purple": (0.55, 0.20, 0.72),
    "cyan": (0.14, 0.76, 0.80),
    "gray": (0.52, 0.52, 0.52),
    "brown": (0.50, 0.30, 0.14),
}

# Half-extent (cube half-side, sphere radius, cylinder/cone base radius) in world units.
SIZES: Final[dict[str, float]] = {"small": 0.36, "large": 0.62}

# Floor materials: two base colours that the procedural pattern mixes, and the caption phrase.
FLOORS: Final[dict[str, dict[str, object]]] = {
    "checker": {"a": (0.86, 0.86, 0.82), "b": (0.32, 0.32, 0.36), "phrase": "on a checkered floor"},
    "wood": {"a": (0.66, 0.47, 0.28), "b": (0.48, 0.32, 0.18), "phrase": "on a wooden floor"},
    "grass": {"a": (0.36, 0.58, 0.22), "b": (0.24, 0.44, 0.16), "phrase": "on the grass"},
    "stone": {"a": (0.66, 0.64, 0.60), "b": (0.52, 0.50, 0.47), "phrase": "on a stone floor"},
}

# The relation names themselves (2D, 3D, inverses) are defined once, in spatialgen.relations.
# How captions phrase each relation (VISOR's templates for the 2D ones).
RELATION_PHRASES: Final[dict[str, str]] = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
    "in front of": "in front of",
    "behind": "behind",
}

NUMBER_WORDS: Final[tuple[str, ...]] = ("zero", "one", "two", "three", "four", "five")


def check_names(kind: str, names: tuple[str, ...] | list[str], known: tuple[str, ...] | list[str]) -> None:
    """Raise a ValueError naming the unknown entries of ``names`` and the valid choices."""
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown {kind} name(s) {unknown}; choose from {list(known)}")
    if not names:
        raise ValueError(f"at least one {kind} is required; choose from {list(known)}")
