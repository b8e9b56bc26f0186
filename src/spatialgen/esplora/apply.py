"""Using a spatial LoRA at generation time: loaded with diffusers, checked against the base, fused.

Fusing folds the low-rank update into the base weights and removes the LoRA layers, so a
generation with the LoRA costs exactly what one without it does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..models.fingerprint import base_fingerprint


def apply_spatial_lora(pipe: Any, lora: str | os.PathLike[str], scale: float = 1.0, model: str = "the model") -> None:
    """Load the LoRA at ``lora`` (a folder from ``train esplora``, or any diffusers LoRA file) and fuse it."""
    from .training import WEIGHTS, read_card

    path = Path(lora)
    if not path.exists():
        raise FileNotFoundError(f"--lora {str(path)!r} does not exist")
    folder, weight_name = (path, WEIGHTS) if path.is_dir() else (path.parent, path.name)
    card = read_card(folder)
    if card is not None:
        trained = card["base"]
        found = base_fingerprint(pipe.unet)
        if trained["fingerprint"] != found:
            raise ValueError(
                f"the LoRA in {str(folder)!r} was trained for base model {trained['model']!r} (weights "
                f"{trained['fingerprint']}), but {model!r} has weights {found}; use --model {trained['model']}"
            )
    if not (folder / weight_name).is_file():
        raise FileNotFoundError(f"no LoRA weights {weight_name} in {str(folder)!r}")
    try:
        pipe.load_lora_weights(str(folder), weight_name=weight_name, adapter_name="spatial")
    except Exception as error:  # diffusers raises several kinds for a file that does not fit
        raise ValueError(f"could not load the LoRA {str(folder / weight_name)!r}: {error}") from error
    pipe.fuse_lora(lora_scale=scale, adapter_names=["spatial"])
    pipe.unload_lora_weights()
