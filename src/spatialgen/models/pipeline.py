"""Build, load and configure Stable Diffusion pipelines: the embedded tiny model or any SD checkpoint.

``build_pipeline`` makes a randomly initialised tiny model from a :class:`TinySDConfig` (tests,
training from scratch). ``load_pipeline`` resolves ``"embedded"`` to the checkpoint shipped in
the package, a folder to a local ``save_pretrained`` checkpoint, and anything else to a hub id
(the user's machine downloads it; ours never do). Loading errors say what to change.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

from ..devices import check_device
from .config import TinySDConfig, scheduler_config, text_encoder_config, unet_config, vae_config
from .tokenizer import build_word_tokenizer

logger = logging.getLogger(__name__)

EMBEDDED = "embedded"
SCHEDULERS = ("ddim", "dpm", "ddpm", "euler")
SPATIALGEN_CONFIG = "spatialgen.json"  # written beside model_index.json: our model config + provenance
#: A diffusers folder (or hub id) of a single-file checkpoint's architecture, for loading one offline.
SINGLE_FILE_CONFIG_ENV = "SPATIALGEN_SINGLE_FILE_CONFIG"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def model_card(pipe: Any) -> dict[str, Any]:
    """A pipeline's model card: the ``spatialgen.json`` saved beside its diffusers files, as loaded.

    The card records how the model was made and what it was measured to do: ``model`` (its
    :class:`~spatialgen.models.config.TinySDConfig`), ``training``, ``data`` (the scene dataset's
    parameters, so its distribution), ``cpu_hours``, ``measured`` and the recommended ``infsplign``
    weight. diffusers has no place for these, so the card rides on the pipeline object as the
    ``spatialgen_config`` attribute; read and write it only through this function and
    :func:`set_model_card`. A pipeline without one (a hub checkpoint) has the empty card.
    """
    return getattr(pipe, "spatialgen_config", None) or {}


def set_model_card(pipe: Any, card: dict[str, Any]) -> None:
    """Attach ``card`` to ``pipe``: :func:`save_pipeline` writes it as ``spatialgen.json``."""
    pipe.spatialgen_config = card


def embedded_path() -> Path:
    """Folder of the embedded checkpoint shipped inside the package."""
    return Path(str(resources.files("spatialgen") / "weights" / EMBEDDED))


def build_pipeline(config: TinySDConfig | None = None, words: Iterable[str] | None = None) -> StableDiffusionPipeline:
    """A randomly initialised tiny SD pipeline (no safety checker) for ``config`` and vocabulary ``words``.

    ``words`` defaults to the scene world's caption vocabulary.
    """
    config = (config or TinySDConfig()).validate()
    if words is None:
        from ..scenes.captions import vocabulary

        words = vocabulary()
    tokenizer = build_word_tokenizer(words, config.max_length)
    text_config = text_encoder_config(
        config, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
    )
    clip_config = CLIPTextConfig(**text_config)
    clip_config._attn_implementation = "sdpa"  # what from_pretrained picks: built and loaded models compute alike
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**vae_config(config)),
        text_encoder=CLIPTextModel(clip_config),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**unet_config(config)),
        scheduler=DDIMScheduler(**scheduler_config(config)),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    set_model_card(pipe, {"model": config.to_dict()})
    return pipe


def make_scheduler(name: str, base_config: Any) -> Any:
    """A sampler of kind ``name`` sharing the noise schedule of ``base_config`` (any SD scheduler config)."""
    if name == "ddim":
        return DDIMScheduler.from_config(base_config)
    if name == "dpm":
        return DPMSolverMultistepScheduler.from_config(base_config, algorithm_type="dpmsolver++", solver_order=2)
    if name == "ddpm":
        return DDPMScheduler.from_config(base_config)
    if name == "euler":
        return EulerDiscreteScheduler.from_config(base_config)
    raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")


def resolve_model(model: str | os.PathLike[str]) -> tuple[str, bool]:
    """``(location, is_local)`` for a model argument, or a FileNotFoundError that says what to pass."""
    text = str(model)
    if text == EMBEDDED:
        path = embedded_path()
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(
                f"the embedded model is missing from the installed package ({path}); "
                "reinstall spatialgen or train one with `spatialgen train base`"
            )
        return str(path), True
    path = Path(text).expanduser()
    if path.exists():
        if path.is_file() and path.suffix.lower() in (".safetensors", ".ckpt"):
            return str(path), True  # a single-file checkpoint (models/single_file.py)
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(
                f"{str(path)!r} is not a diffusers pipeline folder (no model_index.json) nor a .safetensors "
                "checkpoint; pass the folder written by save_pretrained, a single file, a hub id such as "
                "'org/model', or 'embedded'"
            )
        return str(path), True
    if _HUB_ID.match(text) and not text.startswith((".", "~")):
        return text, False
    raise FileNotFoundError(
        f"model {text!r} is neither an existing folder nor a hub id ('org/model'); pass a path to a diffusers "
        "checkpoint folder, a hub id, or 'embedded'"
    )


def load_pipeline(
    model: str | os.PathLike[str] = EMBEDDED,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    scheduler: str | None = None,
) -> StableDiffusionPipeline:
    """Load an SD-family pipeline without safety checker, on ``device`` in ``dtype``.

    Weights are read from safetensors only (``use_safetensors=True``): never unpickled.
    """
    device = check_device(device)
    location, local = resolve_model(model)
    if local and Path(location).is_file():
        from .single_file import load_single_file

        pipe = load_single_file(location, os.environ.get(SINGLE_FILE_CONFIG_ENV), dtype)
        set_model_card(pipe, {})
        if scheduler is not None:
            pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device)
    if not local:
        from ..hub import check_model_source

        check_model_source(location, "--model")  # seconds, not a minute of retries, when the hub is out of reach
    try:
        with warnings.catch_warnings():  # newer diffusers renamed torch_dtype to dtype; older ones know only the former
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = _from_pretrained(location, dtype, local)
    except Exception as error:  # diffusers raises many kinds for a broken folder; say which file to fix
        where = f"the folder {location!r}" if local else f"the hub id {location!r}"
        raise ValueError(
            f"could not load a Stable Diffusion pipeline from {where}: {type(error).__name__}: {error}. "
            "The checkpoint may be incomplete or corrupt (re-save or re-download it), or not a diffusers "
            "StableDiffusionPipeline with safetensors weights"
        ) from error
    if local:
        extra = Path(location) / SPATIALGEN_CONFIG
        set_model_card(pipe, json.loads(extra.read_text()) if extra.is_file() else {})
    else:
        set_model_card(pipe, {})
    if scheduler is not None:
        pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _from_pretrained(location: str, dtype: torch.dtype, local: bool) -> StableDiffusionPipeline:
    return StableDiffusionPipeline.from_pretrained(
        location,
        torch_dtype=dtype,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        use_safetensors=True,
        local_files_only=local,
    )


def save_pipeline(pipe: StableDiffusionPipeline, folder: str | os.PathLike[str], fp16: bool = False) -> Path:
    """``save_pretrained`` (safetensors) plus our config, written to a temporary folder and renamed.

    With ``fp16`` the stored weights are converted to half precision file by file (half the
    size); the pipeline in memory is left untouched, and loading casts back to the dtype asked for.
    """
    from ..fileio import atomic_write_json, replace_dir

    folder = Path(folder)
    with replace_dir(folder) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        if fp16:
            for path in tmp.rglob("*.safetensors"):
                _to_half(path)
        atomic_write_json(tmp / SPATIALGEN_CONFIG, model_card(pipe))
    return folder


def _to_half(path: Path) -> None:
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(half, str(path), metadata=metadata)
