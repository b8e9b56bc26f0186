"""The tokenizer positions of a triplet's objects A and B (InfSplign's step 0).

The triplet itself comes from the project's one prompt parser, :func:`spatialgen.triplets.parse_triplet`
(A = "potted plant", R = "right of", B = "clock" in "a photo of a potted plant to the right of a
clock on the table"). Each object's token positions are every token whose characters overlap its phrase, so
multi-word objects ("traffic light") and words a BPE tokenizer splits ("skateboard" ->
"skate", "board") are covered; :mod:`.centroids` averages their maps.

Positions are found from the tokenizer's character offsets when it has them (fast tokenizers),
else by tokenizing word by word and checking the result against the whole prompt's ids, so any
CLIP tokenizer (slow or fast) and our word-level one give the same answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..triplets import ObjectSpan, SpatialTriplet


@dataclass(frozen=True)
class TokenizedTriplet:
    """A triplet with the token positions (in the encoded prompt, start token = 0) of A and of B."""

    triplet: SpatialTriplet
    a_tokens: tuple[int, ...]
    b_tokens: tuple[int, ...]
    length: int  # tokens of the whole encoded prompt, start and end included, before truncation


def token_char_spans(tokenizer: Any, prompt: str) -> list[tuple[int, int] | None]:
    """Per position of ``tokenizer(prompt).input_ids``: the characters it spells, None for special tokens."""
    ids = tokenizer(prompt, truncation=False)["input_ids"]
    special = set(getattr(tokenizer, "all_special_ids", []))
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(prompt, truncation=False, return_offsets_mapping=True)
        return [
            None if token in special or end <= start else (int(start), int(end))
            for token, (start, end) in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)
        ]
    spans: list[tuple[int, int] | None] = []
    pieces: list[int] = []
    for word in re.finditer(r"\S+", prompt):
        word_ids = tokenizer(word.group(0), add_special_tokens=False, truncation=False)["input_ids"]
        pieces.extend(word_ids)
        spans.extend([(word.start(), word.end())] * len(word_ids))
    content = [t for t in ids if t not in special]
    if pieces != content:
        raise ValueError(
            f"could not align the tokens of {prompt!r} to its words with this tokenizer; pass the objects' token "
            "indices yourself (token_indices=...) or use a fast tokenizer"
        )
    out: list[tuple[int, int] | None] = []
    it = iter(spans)
    for token in ids:
        out.append(None if token in special else next(it))
    return out


def object_token_indices(
    tokenizer: Any, prompt: str, span: ObjectSpan, max_length: int | None = None
) -> tuple[int, ...]:
    """Positions of the tokens that spell ``span``, or a ValueError when it is cut off or spelled by none."""
    limit = max_length if max_length is not None else getattr(tokenizer, "model_max_length", None)
    return _indices(token_char_spans(tokenizer, prompt), span, prompt, limit)


def tokenize_triplet(tokenizer: Any, triplet: SpatialTriplet) -> TokenizedTriplet:
    spans = token_char_spans(tokenizer, triplet.prompt)  # tokenized once for both objects
    limit = getattr(tokenizer, "model_max_length", None)
    a = _indices(spans, triplet.a, triplet.prompt, limit)
    b = _indices(spans, triplet.b, triplet.prompt, limit)
    if set(a) & set(b):
        raise ValueError(f"objects {triplet.a.text!r} and {triplet.b.text!r} share tokens in {triplet.prompt!r}")
    return TokenizedTriplet(triplet, a, b, len(spans))


# ------------------------------------------------------------------------------------------ helpers


def _indices(
    spans: Sequence[tuple[int, int] | None], span: ObjectSpan, prompt: str, limit: int | None
) -> tuple[int, ...]:
    found = tuple(i for i, s in enumerate(spans) if s is not None and s[0] < span.end and s[1] > span.start)
    if not found:
        raise ValueError(f"no token of the prompt {prompt!r} spells {span.text!r}")
    if limit is not None and max(found) >= limit - 1:
        raise ValueError(
            f"{span.text!r} lies beyond the {limit} tokens the text encoder reads in {prompt!r}; shorten the prompt"
        )
    return found
