"""What the scene-world recogniser and estimator share: their weight files and their training loop.

Both are small per-pixel networks (:class:`~spatialgen.eval.scene.recogniser.RecogniserNet`) trained on
exact scene-world ground truth and shipped as ``NAME.safetensors`` + ``NAME.json``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from ...scenes.held_out import HELD_OUT_SEED


def save_network(folder: str | os.PathLike[str], name: str, net: torch.nn.Module, config: dict[str, Any]) -> None:
    """Write ``name.safetensors`` and ``name.json`` atomically into ``folder``."""
    from safetensors.torch import save as save_bytes

    from ...fileio import atomic_write_bytes, atomic_write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write_bytes(folder / f"{name}.safetensors", save_bytes(state))
    atomic_write_json(folder / f"{name}.json", config)


def load_network_files(folder: str | os.PathLike[str], name: str, train_hint: str) -> tuple[dict, dict]:
    """(config, state dict) from ``folder``, or a FileNotFoundError that says how to make them."""
    folder = Path(folder)
    config_path, weights_path = folder / f"{name}.json", folder / f"{name}.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(
            f"no {name} in {str(folder)!r} (expected {config_path.name} and {weights_path.name}); "
            f"train one with `{train_hint}`"
        )
    return json.loads(config_path.read_text()), load_file(str(weights_path))


def fit(
    net: torch.nn.Module,
    batch_loss: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    n_items: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    desc: str,
    progress: bool = True,
) -> torch.nn.Module:
    """AdamW with linear warm-up (5%) and cosine decay; ``batch_loss(indices, generator)`` gives each step's loss.

    Indices are drawn with replacement from a seeded generator, so a run is reproducible.
    """
    if steps <= 0 or batch_size <= 0:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: min(1.0, (k + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps))
    )
    net.train()
    bar = tqdm(range(steps), desc=desc, disable=not progress)
    for _ in bar:
        loss = batch_loss(torch.randint(0, n_items, (batch_size,), generator=generator), generator)
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return net.eval()


@dataclass
class SceneNetworkConfig:
    """Everything that determines a scene-network training run (``spatialgen train recogniser / estimator``).

    ``data`` lists scene folders (one per distribution the network must read); ``max_scenes`` applies
    to each. Scored on ``held_out`` scenes of each folder's distribution from ``held_out_seed``.
    """

    data: list[str]
    out: str
    steps: int = 1500
    batch_size: int = 32
    max_scenes: int = 10000
    held_out: int = 500
    held_out_seed: int = HELD_OUT_SEED
    seed: int = 0
    lr: float = 2e-3
    # Start from a trained network ("embedded" or a folder) instead of random weights: a fine-tune.
    init: str | None = None

    def validate(self) -> SceneNetworkConfig:
        if not self.data:
            raise ValueError("pass at least one --data folder")
        for name in ("steps", "batch_size", "max_scenes", "held_out"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        return self


@dataclass
class RecogniserTrainConfig(SceneNetworkConfig):
    steps: int = 1500


@dataclass
class EstimatorTrainConfig(SceneNetworkConfig):
    steps: int = 800
