"""PyTorch datasets over the scene world: from shards on disk, or sampled on the fly.

Both yield the same examples for the same dataset seed and index (shards store exactly what
:func:`make_sample` makes), as dicts that the default ``DataLoader`` collate can batch:

* ``pixel_values``: float32 (3, H, W) in [-1, 1], the RGB image;
* ``intrinsics``: float32 (8, H, W) in [-1, 1], packed depth + normal + segmentation + lines;
* ``caption`` and ``caption_kind``: drawn with the dataset's caption mix;
* ``index``: the scene's index in the dataset.

The caption drawn for a scene depends on (caption seed, index, epoch): call ``set_epoch`` to
draw fresh captions each epoch, reproducibly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from .captions import DEFAULT_CAPTION_MIX, CaptionRules, check_caption_mix, choose_caption
from .render import check_resolution
from .sampling import Draw, scene_seed
from .shards import SceneShards
from .spec import SceneConfig
from .world import SceneSample, derive_seed, make_sample


def sample_to_example(
    sample: SceneSample, index: int, mix: Mapping[str, float], caption_seed: int, epoch: int = 0
) -> dict[str, Any]:
    draw = Draw(derive_seed(caption_seed, f"caption-choice:{index}:{epoch}"))
    kind, caption = choose_caption(sample.captions, mix, draw)
    rgb = torch.from_numpy(np.ascontiguousarray(np.moveaxis(sample.rgb, -1, 0))).float() / 127.5 - 1.0
    packed = torch.from_numpy(np.ascontiguousarray(sample.intrinsics().pack()))
    return {"pixel_values": rgb, "intrinsics": packed, "caption": caption, "caption_kind": kind, "index": index}


class SceneDataset(Dataset):
    """Map-style dataset over a directory written by ``spatialgen scenes make``."""

    def __init__(
        self,
        root: str | os.PathLike[str] | SceneShards,
        caption_mix: Mapping[str, float] | None = None,
        caption_seed: int = 0,
    ) -> None:
        self.shards = root if isinstance(root, SceneShards) else SceneShards(root)
        self.caption_mix = check_caption_mix(caption_mix or DEFAULT_CAPTION_MIX)
        self.caption_seed = caption_seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.shards)

    def sample(self, index: int) -> SceneSample:
        """The full structured sample (spec, annotations, relations, all captions)."""
        return self.shards[index]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return sample_to_example(self.shards[index], index, self.caption_mix, self.caption_seed, self.epoch)


class SceneStream(IterableDataset):
    """Scenes ``start .. start + n`` (or endless when ``n`` is None) rendered on the fly.

    With several DataLoader workers, worker w takes every ``num_workers``-th index from
    ``start + w``, so together they yield each index once.
    """

    def __init__(
        self,
        seed: int,
        n: int | None = None,
        resolution: int = 64,
        config: SceneConfig | None = None,
        caption_mix: Mapping[str, float] | None = None,
        caption_seed: int = 0,
        start: int = 0,
        antialias: bool = True,
        rules: CaptionRules | None = None,
    ) -> None:
        if n is not None and n <= 0:
            raise ValueError(f"n must be positive or None (endless), got {n}")
        self.seed, self.n, self.start = seed, n, start
        self.resolution = check_resolution(resolution)
        self.config = (config or SceneConfig()).validate()
        self.caption_mix = check_caption_mix(caption_mix or DEFAULT_CAPTION_MIX)
        self.caption_seed = caption_seed
        self.antialias, self.rules = antialias, rules
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        index = self.start + worker
        while self.n is None or index < self.start + self.n:
            sample = make_sample(scene_seed(self.seed, index), self.resolution, self.config, self.antialias, self.rules)
            yield sample_to_example(sample, index, self.caption_mix, self.caption_seed, self.epoch)
            index += workers
