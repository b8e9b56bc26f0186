"""A word-level tokenizer over a closed vocabulary, built locally with ``tokenizers``.

The embedded model speaks only the scene world's words, so a word-level vocabulary is both
enough and exact: one word, one token, which keeps cross-attention maps (InfSplign) easy to read.
It is wrapped as a transformers ``PreTrainedTokenizerFast`` so that ``StableDiffusionPipeline``
calls it exactly as it calls a CLIP tokenizer, and it saves with the pipeline (no hub download).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from tokenizers.processors import TemplateProcessing
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

BOS, EOS, PAD, UNK = "<|startoftext|>", "<|endoftext|>", "<|pad|>", "<|unk|>"
# ids 0..3 in this order. The end token must not be id 2: CLIPTextModel treats eos_token_id == 2 as a
# legacy config and pools at the largest id instead of at the end token.
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)

# Punctuation carries no meaning in the scene world's captions: it becomes a word break.
_PUNCTUATION = r"[^a-z0-9\s<>|]"


def build_word_tokenizer(words: Iterable[str], model_max_length: int = 32) -> PreTrainedTokenizerFast:
    """A tokenizer whose ids are: the four special tokens, then ``words`` sorted and deduplicated.

    ``model_max_length`` counts the start and end tokens, like CLIP's 77.
    """
    vocabulary = sorted({w.strip().lower() for w in words})
    bad = [w for w in vocabulary if not w or re.search(r"\s|" + _PUNCTUATION, w)]
    if bad:
        raise ValueError(f"vocabulary words must be single lowercase words without punctuation; got {bad[:5]}")
    if model_max_length < 3:
        raise ValueError(f"model_max_length must be at least 3 (start, one word, end), got {model_max_length}")
    ids = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *vocabulary])}
    core = Tokenizer(WordLevel(ids, unk_token=UNK))
    core.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace(Regex(_PUNCTUATION), " ")]
    )
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, ids[BOS]), (EOS, ids[EOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
    )


def split_words(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[str]:
    """The prompt's words as the tokenizer sees them (normalised, split), without special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.normalizer is None or backend.pre_tokenizer is None:
        return prompt.lower().split()
    normalised = backend.normalizer.normalize_str(prompt)
    return [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(normalised)]


def unknown_words(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[str]:
    """Words of ``prompt`` that a word-level tokenizer maps to its unknown token, in order, unique.

    Sub-word tokenizers (CLIP's BPE) can spell any word, so for them the answer is always empty.
    """
    if tokenizer.unk_token is None or not is_word_level(tokenizer):
        return []
    vocab = tokenizer.get_vocab()
    seen: dict[str, None] = {}
    for word in split_words(tokenizer, prompt):
        if word not in vocab:
            seen.setdefault(word)
    return list(seen)


def is_word_level(tokenizer: PreTrainedTokenizerBase) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and type(backend.model).__name__ == "WordLevel"


def prompt_length(tokenizer: PreTrainedTokenizerBase, prompt: str) -> int:
    """Number of tokens of ``prompt`` including start and end tokens (before truncation)."""
    return len(tokenizer(prompt, truncation=False)["input_ids"])
