"""The scene-world intrinsics estimator: depth (disparity) and surface normals from an RGB image.

Evaluations need intrinsics of *generated* images, which have no ground truth: 3D relations
("in front of" needs depth) and I-LDM's consistency measure (do the co-generated intrinsics
agree with what the image shows?). On real images users bring a hub estimator; on the scene
world we train our own on exact ground truth, as we do for the recogniser, and measure it on
held-out renders.

The network is the recogniser's small U-Net with four output channels: disparity in the
project convention (per-image normalised, near = 1) through a sigmoid, and camera-space normals
normalised to unit length.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ...intrinsics import disparity_from_depth
from .recogniser import RecogniserNet, augment, to_tensor
from .scene_networks import fit, load_network_files, save_network

logger = logging.getLogger(__name__)

NETWORK_NAME = "estimator"  # estimator.safetensors + estimator.json


@dataclass
class EstimatedIntrinsics:
    depth: np.ndarray  # float32 (N, H, W), disparity in [0, 1], near = 1
    normal: np.ndarray  # float32 (N, H, W, 3), unit camera-space normals (x right, y up, z to the camera)


class SceneEstimator:
    """Depth and normals for scene-world images. ``estimate(images)`` takes PIL images, arrays or a tensor."""

    def __init__(self, net: RecogniserNet, resolution: int = 64) -> None:
        if net.head.out_channels != 4:
            raise ValueError(f"the estimator's network must have 4 output channels, got {net.head.out_channels}")
        self.net = net.eval()
        self.resolution = resolution

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @staticmethod
    def split(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(disparity (N, H, W), unit normals (N, 3, H, W)) from the network's raw output."""
        return torch.sigmoid(raw[:, 0]), F.normalize(raw[:, 1:], dim=1, eps=1e-6)

    @torch.no_grad()
    def estimate(self, images: torch.Tensor | Sequence[Any], batch_size: int = 64) -> EstimatedIntrinsics:
        tensor = images if isinstance(images, torch.Tensor) else to_tensor(images)
        depths, normals = [], []
        for start in range(0, len(tensor), batch_size):
            depth, normal = self.split(self.net(tensor[start : start + batch_size].to(self.device, torch.float32)))
            depths.append(depth.cpu())
            normals.append(normal.permute(0, 2, 3, 1).cpu())
        return EstimatedIntrinsics(torch.cat(depths).numpy(), torch.cat(normals).numpy())

    def estimate_each(self, images: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per image of any size: (disparity (H, W), unit normals (3, H, W)) at that image's own size.

        Images are resized to the estimator's resolution and its maps resized back (normals
        renormalised), so callers can compare with maps of the original image.
        """
        from PIL import Image

        pil = [im.convert("RGB") if hasattr(im, "convert") else Image.fromarray(np.asarray(im)) for im in images]
        side = self.resolution
        estimated = self.estimate(
            [im if im.size == (side, side) else im.resize((side, side), Image.BILINEAR) for im in pil]
        )
        out = []
        for im, depth, normal in zip(pil, estimated.depth, estimated.normal, strict=True):
            d, n = torch.from_numpy(depth)[None, None], torch.from_numpy(normal).permute(2, 0, 1)[None]
            if im.size != (side, side):
                d = F.interpolate(d, size=(im.height, im.width), mode="bilinear")
                n = F.normalize(F.interpolate(n, size=(im.height, im.width), mode="bilinear"), dim=1, eps=1e-6)
            out.append((d[0, 0].numpy(), n[0].numpy()))
        return out

    def save(self, folder: str | os.PathLike[str]) -> None:
        save_network(folder, NETWORK_NAME, self.net, {"width": self.net.width, "resolution": self.resolution})

    @classmethod
    def load(cls, folder: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> SceneEstimator:
        """Load from ``folder``, or the embedded estimator when None."""
        folder = Path(folder) if folder is not None else embedded_estimator_path()
        config, state = load_network_files(folder, NETWORK_NAME, "spatialgen train estimator")
        net = RecogniserNet(config["width"], num_classes=4)
        net.load_state_dict(state)
        return cls(net.to(device), config["resolution"])


def embedded_estimator_path() -> Path:
    return Path(str(resources.files("spatialgen") / "weights" / "estimator"))


@dataclass
class IntrinsicTargets:
    images: torch.Tensor  # float (N, 3, H, W) in [-1, 1]
    depth: torch.Tensor  # float (N, H, W) disparity in [0, 1]
    normal: torch.Tensor  # float (N, 3, H, W) unit normals

    @classmethod
    def from_samples(cls, samples: Sequence[Any]) -> IntrinsicTargets:
        images = torch.from_numpy(np.stack([s.rgb for s in samples])).permute(0, 3, 1, 2).float() / 127.5 - 1
        depth = torch.from_numpy(np.stack([disparity_from_depth(s.depth) for s in samples]).astype(np.float32))
        normal = torch.from_numpy(np.stack([s.normal.astype(np.float32) for s in samples])).permute(0, 3, 1, 2)
        return cls(images, depth, F.normalize(normal, dim=1, eps=1e-6))

    @classmethod
    def from_shards(cls, root: str | os.PathLike[str], limit: int | None = None) -> IntrinsicTargets:
        from ...scenes.shards import SceneShards

        shards = SceneShards(root)
        n = len(shards) if limit is None else min(limit, len(shards))
        return cls.from_samples([shards[i] for i in tqdm(range(n), desc="loading scenes", unit="scene")])


def estimator_loss(raw: torch.Tensor, depth: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    """L1 on disparity plus (1 - cosine) on normals: both are bounded, so neither term swamps the other."""
    pred_depth, pred_normal = SceneEstimator.split(raw)
    return (pred_depth - depth).abs().mean() + (1 - (pred_normal * normal).sum(1)).mean()


def train_estimator(
    data: IntrinsicTargets,
    steps: int = 800,
    batch_size: int = 32,
    lr: float = 2e-3,
    width: int = 24,
    seed: int = 0,
    progress: bool = True,
    init: SceneEstimator | None = None,
) -> SceneEstimator:
    """Photometric augmentation only (pixels never move), so the targets stay exact. ``init`` starts from a
    trained estimator's weights (a fine-tune to a new scene distribution)."""
    torch.manual_seed(seed)
    net = RecogniserNet(width, num_classes=4) if init is None else copy.deepcopy(init.net)

    def batch_loss(idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return estimator_loss(net(augment(data.images[idx].clone(), generator)), data.depth[idx], data.normal[idx])

    fit(net, batch_loss, len(data.images), steps, batch_size, lr, seed, "estimator", progress)
    return SceneEstimator(net, resolution=int(data.images.shape[-1]))


def score_estimator(estimator: SceneEstimator, samples: Sequence[Any]) -> dict[str, float]:
    """Held-out accuracy against exact ground truth: depth metrics with and without alignment, normal errors.

    Every pixel is scored (the floor too: it is part of the scene a consistency check looks at).
    ``depth_raw_*`` compare the predicted disparity as is (our convention fixes scale and shift per
    image, so a good estimator needs no alignment); ``depth_*`` after the per-image scale-and-shift
    alignment that papers report.
    """
    from ..metrics.intrinsic_metrics import depth_metrics, normal_metrics

    targets = IntrinsicTargets.from_samples(samples)
    predicted = estimator.estimate(targets.images)
    pred_depth, true_depth = predicted.depth[:, None], targets.depth.numpy()[:, None]
    scores = {f"depth_{k}": v for k, v in depth_metrics(pred_depth, true_depth, align="scale_shift").items()}
    scores.update({f"depth_raw_{k}": v for k, v in depth_metrics(pred_depth, true_depth, align="none").items()})
    normals = normal_metrics(np.moveaxis(predicted.normal, -1, 1), targets.normal.numpy(), encoded=False)
    scores.update({f"normal_{k}": v for k, v in normals.items()})
    scores["images"] = float(len(samples))
    return scores
