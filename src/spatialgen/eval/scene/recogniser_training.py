"""Training and held-out scoring of the scene-world recogniser on exact ground-truth labels."""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ...scenes.shards import SceneShards
from ...scenes.world import SceneSample
from .recogniser import CLASSES, RecogniserNet, SceneRecogniser, augment, label_map
from .scene_networks import fit

logger = logging.getLogger(__name__)


@dataclass
class LabelledScenes:
    images: torch.Tensor  # float (N, 3, H, W) in [-1, 1]
    labels: torch.Tensor  # int64 (N, H, W), class per pixel

    @classmethod
    def from_samples(cls, samples: list[SceneSample]) -> LabelledScenes:
        images = torch.from_numpy(np.stack([s.rgb for s in samples])).permute(0, 3, 1, 2).float() / 127.5 - 1
        labels = torch.from_numpy(np.stack([label_map(s.instance, s.objects) for s in samples]))
        return cls(images, labels)

    @classmethod
    def from_shards(cls, root: str | os.PathLike[str], limit: int | None = None) -> LabelledScenes:
        shards = SceneShards(root)
        n = len(shards) if limit is None else min(limit, len(shards))
        return cls.from_samples([shards[i] for i in tqdm(range(n), desc="loading scenes", unit="scene")])


def train_recogniser(
    data: LabelledScenes,
    steps: int = 1500,
    batch_size: int = 32,
    lr: float = 2e-3,
    width: int = 24,
    seed: int = 0,
    progress: bool = True,
    init: SceneRecogniser | None = None,
) -> SceneRecogniser:
    """Cross-entropy on per-pixel classes, with object pixels weighted up (the floor covers most).

    ``init`` starts from a trained recogniser's weights (a fine-tune to a new scene distribution) instead of
    a random network; its width wins over ``width``."""
    torch.manual_seed(seed)
    net = RecogniserNet(width) if init is None else copy.deepcopy(init.net)
    weights = torch.ones(len(CLASSES))
    weights[0] = 0.2

    def batch_loss(idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        logits = net(augment(data.images[idx].clone(), generator))
        return F.cross_entropy(logits, data.labels[idx], weight=weights)

    fit(net, batch_loss, len(data.labels), steps, batch_size, lr, seed, "recogniser", progress)
    return SceneRecogniser(net, resolution=int(data.images.shape[-1]))


def score_recogniser(recogniser: SceneRecogniser, samples: list[SceneSample]) -> dict[str, float]:
    """Held-out accuracy: object pixels' class accuracy and per-object recall / precision.

    An object counts as found when a detection of its colour and shape has its centroid within
    the object's visible box; objects smaller than the recogniser's minimum area are not counted.
    """
    data = LabelledScenes.from_samples(samples)
    predictions = recogniser.probabilities(data.images).argmax(1).cpu()
    object_pixels = data.labels > 0
    pixel_accuracy = float((predictions[object_pixels] == data.labels[object_pixels]).float().mean())
    detections = recogniser.detect(data.images)
    found = total = correct = n_detections = 0
    side = data.images.shape[-1]
    min_area = recogniser.min_area_fraction * side * side
    for sample, dets in zip(samples, detections, strict=True):
        n_detections += len(dets)
        matched = set()
        for obj in sample.objects:
            if obj.area < min_area or obj.visible_box is None:
                continue
            total += 1
            x0, y0, x1, y1 = obj.visible_box
            for k, det in enumerate(dets):
                cx, cy = det.centroid[0] * side, det.centroid[1] * side
                if det.colour == obj.colour and det.shape == obj.shape and x0 <= cx <= x1 and y0 <= cy <= y1:
                    found += 1
                    matched.add(k)
                    break
        correct += len(matched)
    return {
        "object_pixel_accuracy": pixel_accuracy,
        "object_recall": found / max(1, total),
        "detection_precision": correct / max(1, n_detections),
        "objects": float(total),
    }
