from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from spatialgen.models.tokenizer import EOS, SPECIAL_TOKENS, build_word_tokenizer, split_words, unknown_words
from spatialgen.scenes.captions import vocabulary


@pytest.fixture(scope="module")
def tokenizer():
    return build_word_tokenizer(vocabulary(), model_max_length=16)


def test_one_word_one_token_and_decode_round_trip(tokenizer) -> None:
    prompt = "a red cube to the left of a blue sphere"
    ids = tokenizer(prompt)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert len(ids) == len(prompt.split()) + 2
    assert tokenizer.decode(ids, skip_special_tokens=True) == prompt


def test_normalisation_ignores_case_and_punctuation(tokenizer) -> None:
    assert (
        tokenizer("A Red cube, and a BLUE sphere!")["input_ids"]
        == tokenizer("a red cube and a blue sphere")["input_ids"]
    )


def test_unknown_words_are_listed_once_in_order(tokenizer) -> None:
    assert unknown_words(tokenizer, "a red dragon beside a blue dragon and a teapot") == ["dragon", "beside", "teapot"]
    assert unknown_words(tokenizer, "two green cones on the grass") == []
    ids = tokenizer("a dragon")["input_ids"]
    assert ids[2] == tokenizer.unk_token_id


def test_padding_truncation_and_special_ids(tokenizer) -> None:
    batch = tokenizer(["a cube", "a " * 40], padding="max_length", max_length=16, truncation=True)
    assert [len(x) for x in batch["input_ids"]] == [16, 16]
    assert batch["input_ids"][0][4:] == [tokenizer.pad_token_id] * 12
    # CLIPTextModel pools at argmax(ids) when eos_token_id == 2: ours must not be 2.
    assert tokenizer.convert_tokens_to_ids(EOS) == SPECIAL_TOKENS.index(EOS) != 2


def test_save_and_reload_keeps_the_vocabulary(tokenizer, tmp_path) -> None:
    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.get_vocab() == tokenizer.get_vocab()
    assert again.model_max_length == 16
    assert split_words(again, "Left-of THE cube") == ["left", "of", "the", "cube"]


def test_bad_vocabulary_is_refused() -> None:
    with pytest.raises(ValueError, match="single lowercase words"):
        build_word_tokenizer(["red", "two words"])
