"""The scene world's fixed evaluation split of relational triplets, which no training set may contain.

An evaluation of spatial relations on the scene world is only honest if the triplets it asks
for ("a red cube to the left of a blue sphere") never appeared in a training caption. The split
is a property of the world, not of any dataset: a stable hash of the triplet decides, so every
dataset, trainer and prompt set agrees without sharing state. Training code filters captions
with :func:`is_held_out_caption`; :mod:`spatialgen.eval.prompts.prompt_sets` draws evaluation prompts
only from held-out triplets.
"""

from __future__ import annotations

import hashlib
import re

from ..relations import INVERSE_RELATION
from .catalog import COLOURS, RELATION_PHRASES, SHAPES

HELD_OUT_FRACTION = 0.2
#: The dataset seed of held-out scenes: no training set is made with it, so renders of
#: ``scene_seed(HELD_OUT_SEED, i)`` are the world's own distribution without being training images.
HELD_OUT_SEED = 999
_HELD_OUT_SALT = "spatialgen-scene-heldout-v1"

SceneObject = tuple[str, str] | str
_OBJECT_NAME = re.compile(r"^(" + "|".join(COLOURS) + r") (" + "|".join(SHAPES) + r")$")
_CAPTION = re.compile(
    r"^an? (?:(?:small|large) )?(?P<a>(?:"
    + "|".join(COLOURS)
    + r") (?:"
    + "|".join(SHAPES)
    + r")) (?P<phrase>"
    + "|".join(re.escape(p) for p in RELATION_PHRASES.values())
    + r") an? (?:(?:small|large) )?(?P<b>(?:"
    + "|".join(COLOURS)
    + r") (?:"
    + "|".join(SHAPES)
    + r"))\b"
)
_RELATION_BY_PHRASE = {phrase: name for name, phrase in RELATION_PHRASES.items()}


def _object(obj: SceneObject) -> tuple[str, str]:
    if isinstance(obj, str):
        match = _OBJECT_NAME.match(obj.strip().lower())
        if not match:
            raise ValueError(f"not a scene-world object {obj!r}; expected '<colour> <shape>' like 'red cube'")
        return match.group(1), match.group(2)
    colour, shape = obj
    if colour not in COLOURS or shape not in SHAPES:
        raise ValueError(f"not a scene-world object {obj!r}; colours {list(COLOURS)}, shapes {list(SHAPES)}")
    return colour, shape


def triplet_key(a: SceneObject, relation: str, b: SceneObject) -> str:
    """The split key of a triplet, the same for it and its inverse ("A left of B" = "B right of A").

    A triplet and its inverse describe the same picture, so they must fall on the same side of the
    split; the key is the lexicographically smaller of the two spellings.
    """
    if relation not in INVERSE_RELATION:
        raise ValueError(f"unknown relation {relation!r}; choose from {list(INVERSE_RELATION)}")
    (ca, sa), (cb, sb) = _object(a), _object(b)
    if (ca, sa) == (cb, sb):
        raise ValueError(f"a triplet needs two different objects, got {ca} {sa} twice")
    forward = f"{ca} {sa}|{relation}|{cb} {sb}"
    backward = f"{cb} {sb}|{INVERSE_RELATION[relation]}|{ca} {sa}"
    return min(forward, backward)


def is_held_out(a: SceneObject, relation: str, b: SceneObject) -> bool:
    """Whether the scene-world triplet (A, relation, B) belongs to the fixed evaluation split.

    A stable hash (blake2b of a salted :func:`triplet_key`, read as a number in [0, 1)) below
    :data:`HELD_OUT_FRACTION` means held out: independent of Python's hash seed, platform and
    version, and closed under inversion. Objects are (colour, shape) pairs or "colour shape"
    strings; size words are not part of a triplet. Training-data builders must drop captions for
    which this (or :func:`is_held_out_caption`) is true; evaluation sets use only those triplets.
    """
    digest = hashlib.blake2b(f"{_HELD_OUT_SALT}:{triplet_key(a, relation, b)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < HELD_OUT_FRACTION


def caption_triplet(text: str) -> tuple[tuple[str, str], str, tuple[str, str]] | None:
    """(A, relation, B) of a scene-world relational caption or prompt, or None if it is not one.

    Reads captions as :mod:`spatialgen.scenes.captions` writes them ("a small red cube to the left
    of a blue sphere on the grass"); size words and a trailing floor phrase are ignored.
    """
    match = _CAPTION.match(text.strip().lower())
    if not match:
        return None
    a, b = _object(match.group("a")), _object(match.group("b"))
    return a, _RELATION_BY_PHRASE[match.group("phrase")], b


def is_held_out_caption(text: str) -> bool:
    """True for a relational caption whose triplet is held out; False for any other caption."""
    triplet = caption_triplet(text)
    return triplet is not None and triplet[0] != triplet[2] and is_held_out(*triplet)
