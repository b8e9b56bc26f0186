"""The embedded tiny text-to-image model: Stable Diffusion's architecture at CPU size.

Configs (:mod:`.config`), the word-level tokenizer (:mod:`.tokenizer`), building and loading
pipelines (:mod:`.pipeline`) and training (:mod:`.training`).
"""

from .config import TinySDConfig
from .pipeline import EMBEDDED, SCHEDULERS, build_pipeline, load_pipeline, make_scheduler, save_pipeline
from .tokenizer import build_word_tokenizer, unknown_words

__all__ = [
    "EMBEDDED",
    "SCHEDULERS",
    "TinySDConfig",
    "build_pipeline",
    "build_word_tokenizer",
    "load_pipeline",
    "make_scheduler",
    "save_pipeline",
    "unknown_words",
]
