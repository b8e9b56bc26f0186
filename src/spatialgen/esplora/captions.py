"""Captions that stay true under augmentation: a horizontal flip mirrors left and right.

SPRIGHT's ``random_flip`` flipped images without touching their captions, so "a dog to the left of
a cat" came to label pictures of the dog on the right. Here a flipped image's caption has every
standalone "left" and "right" exchanged (in relation phrases, "on the left side", "turning right"),
which is what a mirror does; above / below and in front of / behind are unchanged by it.
"""

from __future__ import annotations

import re

_SIDE = re.compile(r"(?<![\w-])(left|right)(?![\w-])", re.IGNORECASE)


def mirror_caption(caption: str) -> str:
    """The caption of the horizontally flipped image: "left" <-> "right", keeping each word's case."""

    def swap(match: re.Match[str]) -> str:
        word = match.group(1)
        other = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return other.upper()
        return other.capitalize() if word[0].isupper() else other

    return _SIDE.sub(swap, caption)
