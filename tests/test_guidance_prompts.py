"""InfSplign's prompt parsing and token mapping: a table of phrasings, negative cases, three tokenizers."""

from __future__ import annotations

import pytest
from tokenizers.pre_tokenizers import ByteLevel
from transformers import CLIPTokenizer

from spatialgen.guidance.prompts import object_token_indices, token_char_spans, tokenize_triplet
from spatialgen.models import build_word_tokenizer
from spatialgen.scenes.captions import vocabulary
from spatialgen.triplets import parse_triplet, triplet_from_parts


@pytest.mark.parametrize(
    ("prompt", "a", "relation", "b"),
    [
        ("a dog to the left of a cat", "dog", "left of", "cat"),
        ("a dog on the left of a cat", "dog", "left of", "cat"),
        ("a photo of a dog left of a cat", "dog", "left of", "cat"),
        ("a dog to the right of a cat", "dog", "right of", "cat"),
        ("a dog on the right of a cat", "dog", "right of", "cat"),
        ("a bird above a boat", "bird", "above", "boat"),
        ("a bird on the top of a boat", "bird", "above", "boat"),
        ("a vase on top of a table", "vase", "above", "table"),
        ("a bird below a boat", "bird", "below", "boat"),
        ("a bird on the bottom of a boat", "bird", "below", "boat"),
        ("a cat under a table", "cat", "below", "table"),
        ("a car in front of a house", "car", "in front of", "house"),
        ("a car behind a house", "car", "behind", "house"),
        ("a potted plant to the right of a clock", "potted plant", "right of", "clock"),
        ("A photo of a traffic light above a dog on the street.", "traffic light", "above", "dog"),
        ("two cats to the left of an umbrella", "cats", "left of", "umbrella"),
        ("a red cube to the left of a blue sphere on the grass", "red cube", "left of", "blue sphere"),
        ("a large red cube below a small blue cone", "large red cube", "below", "small blue cone"),
        ("a teddy bear to the left of a hair drier, in a kitchen", "teddy bear", "left of", "hair drier"),
    ],
)
def test_parse_triplet_reads_every_phrasing(prompt: str, a: str, relation: str, b: str) -> None:
    triplet = parse_triplet(prompt)
    assert triplet is not None
    assert (triplet.a.text, triplet.relation, triplet.b.text) == (a, relation, b)
    assert prompt[triplet.a.start : triplet.a.end] == a and prompt[triplet.b.start : triplet.b.end] == b
    assert triplet.is_2d == (relation in ("left of", "right of", "above", "below"))


@pytest.mark.parametrize(
    "prompt",
    [
        "a cat and a dog",
        "a cat to the left",  # no object B
        "to the left of a dog",  # no object A
        "a cat on the left",  # "on the left" without "of" names no relation to anything
        "the leftmost cube on the grass",
        "an overcast sky",  # "over" inside a word is not the relation
        "a cat, left of a dog",  # punctuation right before the relation
        "",
    ],
)
def test_parse_triplet_refuses_prompts_without_a_relation(prompt: str) -> None:
    assert parse_triplet(prompt) is None


def test_word_tokenizer_positions_count_the_start_token() -> None:
    tokenizer = build_word_tokenizer(vocabulary(), 32)
    prompt = "a red cube to the left of a blue sphere"
    item = tokenize_triplet(tokenizer, parse_triplet(prompt))
    words = ["<start>", *prompt.split()]
    assert [words[i] for i in item.a_tokens] == ["red", "cube"]
    assert [words[i] for i in item.b_tokens] == ["blue", "sphere"]


def _tiny_clip_tokenizer() -> CLIPTokenizer:
    """A byte-level BPE vocabulary in CLIP's format where 'skateboard' becomes 'skate' + 'board</w>'."""
    symbols = ByteLevel.alphabet()
    pairs = ["s k", "sk a", "ska t", "skat e", "b o", "bo a", "boa r", "boar d</w>", "c a", "ca t</w>"]
    merges = [tuple(pair.split()) for pair in pairs]
    vocab = sorted(symbols) + [s + "</w>" for s in sorted(symbols)]
    vocab += ["sk", "ska", "skat", "skate", "bo", "boa", "boar", "board</w>", "ca", "cat</w>"]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={token: i for i, token in enumerate(vocab)}, merges=merges)


class WithoutOffsets:
    """A tokenizer that cannot report character offsets (transformers 4's slow CLIPTokenizer)."""

    is_fast = False

    def __init__(self, inner: CLIPTokenizer) -> None:
        self.inner = inner
        self.all_special_ids = inner.all_special_ids
        self.model_max_length = inner.model_max_length

    def __call__(self, text: str, **kwargs):
        assert "return_offsets_mapping" not in kwargs
        return self.inner(text, **kwargs)


@pytest.mark.parametrize("offsets", [True, False])
def test_clip_bpe_tokenizers_map_split_words_to_all_their_tokens(offsets: bool) -> None:
    clip = _tiny_clip_tokenizer()
    tokenizer = clip if offsets else WithoutOffsets(clip)
    prompt = "a skateboard to the left of a cat"
    ids = clip(prompt)["input_ids"]
    assert clip.convert_ids_to_tokens(ids[2:4]) == ["skate", "board</w>"]  # the premise: one word, 2 tokens
    item = tokenize_triplet(tokenizer, parse_triplet(prompt))
    assert item.a_tokens == (2, 3)
    assert [ids[i] for i in item.b_tokens] == [clip.convert_tokens_to_ids("cat</w>")]
    assert token_char_spans(tokenizer, prompt)[0] is None  # the start token spells nothing


def test_an_object_the_text_encoder_cannot_read_is_an_error() -> None:
    tokenizer = build_word_tokenizer(vocabulary(), 8)
    prompt = "a red cube to the left of a blue sphere"
    triplet = parse_triplet(prompt)
    with pytest.raises(ValueError, match="beyond the 8 tokens"):
        object_token_indices(tokenizer, prompt, triplet.b)


def test_triplet_from_parts_names_objects_the_parser_would_cut_differently() -> None:
    prompt = "a dog sitting to the left of a cat"
    assert parse_triplet(prompt).a.text == "dog sitting"
    triplet = triplet_from_parts(prompt, "dog", "to the left of", "cat")
    assert (triplet.a.text, triplet.relation, triplet.b.text) == ("dog", "left of", "cat")
    with pytest.raises(ValueError, match="does not occur"):
        triplet_from_parts(prompt, "horse", "left of", "cat")
    with pytest.raises(ValueError, match="unknown spatial relation"):
        triplet_from_parts(prompt, "dog", "diagonal to", "cat")
