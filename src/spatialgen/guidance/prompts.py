"""Find <A, R, B> in a prompt and the tokenizer positions of A and B (InfSplign's step 0).

"a photo of a potted plant to the right of a clock on the table" gives A = "potted plant",
R = "right of", B = "clock". Object phrases are cut around the relation phrase: A is what follows
the last article or number word before the relation (so "a photo of a" falls away), B is what
follows the relation up to the first punctuation or trailing context word ("on", "in", "with"
...). Each object's token positions are every token whose characters overlap its phrase, so
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

from ..relations import RELATIONS_2D, canonical_relation, find_relations

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


@dataclass(frozen=True)
class TokenizedTriplet:
    """A triplet with the token positions (in the encoded prompt, start token = 0) of A and of B."""

    triplet: SpatialTriplet
    a_tokens: tuple[int, ...]
    b_tokens: tuple[int, ...]
    length: int  # tokens of the whole encoded prompt, start and end included, before truncation


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


def _words(text: str, offset: int = 0) -> list[tuple[str, int, int]]:
    return [(m.group(0).lower(), offset + m.start(), offset + m.end()) for m in _WORD.finditer(text)]


def _object_before(prompt: str, end: int) -> ObjectSpan | None:
    head = prompt[:end]
    if re.search(r"[,;:.!?]\s*$", head):
        return None  # "a cat, left of ..." names no object right before the relation
    clause = re.split(r"[,;:.!?]", head)[-1]
    words = _words(clause, len(head) - len(clause))
    if not words:
        return None
    last_determiner = max((i for i, (w, _, _) in enumerate(words) if w in _DETERMINERS), default=-1)
    kept = words[last_determiner + 1 :]
    if not kept:
        return None
    return ObjectSpan(prompt[kept[0][1] : kept[-1][2]], kept[0][1], kept[-1][2])


def _object_after(prompt: str, start: int) -> ObjectSpan | None:
    clause = re.split(r"[,;:.!?]", prompt[start:])[0]
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
