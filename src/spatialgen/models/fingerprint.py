"""A short hash of a network's weights: which base model an adapter (I-LoRA, ESPLoRA) was trained on."""

from __future__ import annotations

import hashlib

import torch


def base_fingerprint(module: torch.nn.Module) -> str:
    """A short hash of a base network's weights (names, shapes and leading values in fp16).

    Adapter layers (``.lora_``) and peft's ``base_layer`` renaming are ignored, so the hash of a
    network is the same with or without adapters installed, and values are rounded to fp16, so
    the fp32 training copy and the fp16 shipped copy of one model agree while different models (or
    a retrained one) do not.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if ".lora_" in name:
            continue
        digest.update(name.replace(".base_layer", "").encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().flatten()[:512].to("cpu", torch.float16).numpy().tobytes())
    return digest.hexdigest()[:16]
