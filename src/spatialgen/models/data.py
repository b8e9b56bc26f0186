"""Scene-world training data held in memory, for models small enough that disk reads would dominate.

A 64 px scene is 12 KB of pixels, so tens of thousands fit in RAM; batches are drawn by index
with a generator seeded from (seed, step), which makes a resumed run draw exactly the batches
an uninterrupted one would have drawn.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from ..intrinsic_shards import open_dataset
from ..scenes.captions import DEFAULT_CAPTION_MIX, check_caption_mix, choose_caption
from ..scenes.held_out import is_held_out_caption
from ..scenes.sampling import Draw
from ..scenes.spec import SceneConfig


@dataclass
class SceneTensors:
    """RGB images (uint8, N x 3 x H x W) and every caption of each scene."""

    images: torch.Tensor
    captions: list[dict[str, str]]

    @classmethod
    def from_shards(cls, root: str | os.PathLike[str], limit: int | None = None, progress: bool = True) -> SceneTensors:
        shards = open_dataset(root)
        n = len(shards) if limit is None else min(limit, len(shards))
        if n == 0:
            raise ValueError(f"the dataset at {str(root)!r} holds no scenes; make one with `spatialgen scenes make`")
        images = torch.empty((n, 3, shards.resolution, shards.resolution), dtype=torch.uint8)
        captions: list[dict[str, str]] = []
        for i in tqdm(range(n), desc="loading scenes", disable=not progress, unit="scene"):
            sample = shards[i]
            images[i] = torch.from_numpy(np.ascontiguousarray(np.moveaxis(sample.rgb, -1, 0)))
            captions.append(sample.captions)
        shards.close()
        return cls(images, captions)

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])


def batch_generator(seed: int, step: int, rank: int = 0) -> np.random.Generator:
    """The generator of one training step: independent of how the run was interrupted."""
    return np.random.default_rng([seed, step, rank])


def draw_indices(rng: np.random.Generator, n: int, batch_size: int) -> np.ndarray:
    return rng.integers(0, n, size=batch_size)


def draw_captions(
    rng: np.random.Generator,
    captions: Sequence[Mapping[str, str]],
    indices: np.ndarray,
    mix: Mapping[str, float] | None = None,
    dropout: float = 0.0,
    exclude_held_out: bool = False,
) -> list[str]:
    """One caption per index, of a kind drawn with ``mix``; ``dropout`` of them replaced by "" (for CFG).

    ``exclude_held_out`` removes relational captions whose triplet belongs to the scene world's
    evaluation split (:mod:`spatialgen.scenes.held_out`) before the kind is drawn, so a model
    never trains on what its spatial evaluation asks for.
    """
    mix = check_caption_mix(mix or DEFAULT_CAPTION_MIX)
    seeds = rng.integers(0, 2**63 - 1, size=len(indices))
    dropped = rng.random(len(indices)) < dropout
    out = []
    for index, seed, drop in zip(indices, seeds, dropped, strict=True):
        available = captions[int(index)]
        if exclude_held_out:
            # By text, not by kind: a scene dataset re-read through `intrinsics extract --source` keeps its
            # captions as ``caption``, ``caption-2``, ... and its held-out relational ones must still go.
            available = {k: v for k, v in available.items() if not is_held_out_caption(v)}
        out.append("" if drop or not available else choose_caption(available, mix, Draw(int(seed)))[1])
    return out


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to float in [-1, 1], the VAE's input range."""
    return images.float() / 127.5 - 1.0


#: Evaluation prompts name 1-3 objects (more objects rarely fit a 64 px image clearly).
EVAL_MAX_OBJECTS = 3


def model_scene_config(card: Mapping | None, max_objects: int | None = EVAL_MAX_OBJECTS) -> SceneConfig:
    """The scene distribution a model was trained on, from its card (:func:`~spatialgen.models.pipeline.model_card`).

    Held-out evaluation scenes must come from the same distribution as the training data (the same
    camera distances, floors, colours), only from seeds no training set uses. ``max_objects`` caps
    the object count (evaluation prompts name 1-3 objects); a card without data (a model built from
    a config, or a real checkpoint) gives the scene world's default distribution.
    """
    data = (card or {}).get("data") or {}
    config = SceneConfig.from_dict(dict(data["config"])) if "config" in data else SceneConfig()
    if max_objects is not None and config.max_objects > max_objects:
        config = replace(config, max_objects=max_objects, min_objects=min(config.min_objects, max_objects))
    return config.validate()
