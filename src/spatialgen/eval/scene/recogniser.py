"""The scene-world object recogniser: a small segmentation network that finds "red cube"s.

Evaluations of the embedded model need a detector for the scene world's objects, as VISOR needs
OWL-ViT for COCO's. Ours is trained on the world's exact ground truth: every pixel gets one of
``1 + 8 colours x 4 shapes`` classes (0 = floor), a compact encoder-decoder CNN predicts the
class map, and each connected region of one class becomes a :class:`Detection` with a box, a
centroid, an area and a score (the mean probability of its class over the region).

Training adds light noise, blur and colour jitter so that the recogniser also reads generated
images, whose textures are less crisp than renders.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...scenes.catalog import COLOURS, SHAPES
from .scene_networks import load_network_files, save_network

if TYPE_CHECKING:
    from ..scorers.visor import ImageVerdict

#: ((colour, shape) of A, relation, (colour, shape) of B)
SceneTriplet = tuple[tuple[str, str], str, tuple[str, str]]

COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
CLASSES: tuple[str, ...] = ("floor", *(f"{c} {s}" for c in COLOUR_NAMES for s in SHAPES))
NETWORK_NAME = "recogniser"  # recogniser.safetensors + recogniser.json


def class_index(colour: str, shape: str) -> int:
    return 1 + COLOUR_NAMES.index(colour) * len(SHAPES) + SHAPES.index(shape)


@dataclass(frozen=True)
class Detection:
    """One recognised object. Boxes are (x0, y0, x1, y1) in pixels; the centroid is normalised."""

    label: str
    colour: str
    shape: str
    score: float
    box: tuple[float, float, float, float]
    centroid: tuple[float, float]
    area: int
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)  # (H, W) bool, the region

    @property
    def box_centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the mask is left out)."""
        return {k: v for k, v in asdict(self).items() if k != "mask"}


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.GroupNorm(4, cout),
            nn.SiLU(),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.GroupNorm(4, cout),
            nn.SiLU(),
        )


class RecogniserNet(nn.Module):
    """A small U-Net over RGB in [-1, 1] giving per-pixel class logits at full resolution.

    A strided stem halves the resolution first (objects span 5-30 pixels at 64 px, so half
    resolution keeps them), which makes it four times cheaper than a full-resolution U-Net.
    """

    def __init__(self, width: int = 24, num_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.width = width
        w = width
        self.stem = nn.Conv2d(3, w, 4, stride=2, padding=1)
        self.enc1, self.enc2, self.enc3 = _Block(w, w), _Block(w, 2 * w), _Block(2 * w, 4 * w)
        self.dec2, self.dec1 = _Block(6 * w, 2 * w), _Block(3 * w, w)
        self.head = nn.Conv2d(w, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"the recogniser needs image sides divisible by 8, got {tuple(x.shape[-2:])}")
        e1 = self.enc1(self.stem(x))
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(e3, scale_factor=2.0, mode="nearest"), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode="nearest"), e1], 1))
        return F.interpolate(self.head(d1), size=x.shape[-2:], mode="bilinear", align_corners=False)


def label_map(instance: np.ndarray, objects: Sequence[Any]) -> np.ndarray:
    """Ground-truth class per pixel from an instance map and its objects' annotations."""
    lookup = np.zeros(256, dtype=np.int64)
    for obj in objects:
        lookup[obj.instance_id] = class_index(obj.colour, obj.shape)
    return lookup[instance]


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected component labels (1..n, numbered in raster order of first pixel) of a boolean mask.

    scipy's labelling, about 40x faster than numpy label propagation on 64 px masks; detection runs
    it once per colour per image, which made it the largest cost of curating scene data.
    """
    from scipy import ndimage

    labels, n = ndimage.label(mask)  # the default structure is the 4-neighbour cross
    return labels.astype(np.int64), int(n)


def detections_from_probabilities(probabilities: np.ndarray, min_area: int) -> list[Detection]:
    """Objects from class probabilities (C, H, W), best score first.

    Colour is decided first and shape second: a region is a connected set of pixels whose most
    likely colour (summed over shapes) is the same, and its shape is the one with the most
    probability mass over the region. Shape is the harder call, and deciding it per region
    rather than per pixel keeps one object from splitting into fragments of different shapes.
    Regions under ``min_area`` pixels are dropped. The score is the mean probability of the
    chosen class over the region.
    """
    n_colours, n_shapes = len(COLOUR_NAMES), len(SHAPES)
    h, w = probabilities.shape[-2:]
    objects = probabilities[1:].reshape(n_colours, n_shapes, h, w)
    colour_map = np.concatenate([probabilities[:1], objects.sum(1)]).argmax(0)  # 0 = floor
    found = []
    for colour in range(1, n_colours + 1):
        components, n = connected_components(colour_map == colour)
        for k in range(1, n + 1):
            region = components == k
            area = int(region.sum())
            if area < min_area:
                continue
            shape = int(objects[colour - 1][:, region].sum(1).argmax())
            ys, xs = np.nonzero(region)
            found.append(
                Detection(
                    label=f"{COLOUR_NAMES[colour - 1]} {SHAPES[shape]}",
                    colour=COLOUR_NAMES[colour - 1],
                    shape=SHAPES[shape],
                    score=float(objects[colour - 1, shape][region].mean()),
                    box=(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)),
                    centroid=(float((xs + 0.5).mean() / w), float((ys + 0.5).mean() / h)),
                    area=area,
                    mask=region,
                )
            )
    return sorted(found, key=lambda d: -d.score)


class SceneRecogniser:
    """Detector for scene-world objects. ``detect(images)`` returns detections per image."""

    def __init__(self, net: RecogniserNet, resolution: int = 64, min_area_fraction: float = 0.004) -> None:
        self.net = net.eval()
        self.resolution = resolution
        self.min_area_fraction = min_area_fraction

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, C, H, W) of images (N, 3, H, W) in [-1, 1]."""
        return self.net(images.to(self.device, torch.float32)).softmax(1)

    def detect(self, images: torch.Tensor | Sequence[Any], batch_size: int = 64) -> list[list[Detection]]:
        """Detections for each image: a tensor in [-1, 1], or PIL images / uint8 arrays (H, W, 3)."""
        tensor = images if isinstance(images, torch.Tensor) else to_tensor(images)
        out = []
        for start in range(0, len(tensor), batch_size):
            out += self.detections(self.probabilities(tensor[start : start + batch_size]).cpu().numpy())
        return out

    def detections(self, probabilities: np.ndarray) -> list[list[Detection]]:
        """Detections of class probabilities (N, C, H, W) already computed (callers that also need the map)."""
        out = []
        for p in probabilities:
            min_area = max(1, round(self.min_area_fraction * p.shape[-1] * p.shape[-2]))
            out.append(detections_from_probabilities(p, min_area))
        return out

    def relation_verdicts(
        self, images: torch.Tensor | Sequence[Any], triplets: Sequence[SceneTriplet], images_per_prompt: int
    ) -> list[ImageVerdict]:
        """VISOR's verdict on each image; images come ``images_per_prompt`` per triplet, in triplet order.

        A triplet is ``((colour, shape), relation, (colour, shape))``; every detection of an object's
        colour and shape is a candidate box, and any passing pair passes (VISOR's rule).
        """
        from ..scorers.visor import judge_image

        if len(images) != len(triplets) * images_per_prompt:
            raise ValueError(f"got {len(images)} images for {len(triplets)} triplets x {images_per_prompt} images")
        verdicts = []
        for k, found in enumerate(self.detect(images)):
            a, relation, b = triplets[k // images_per_prompt]
            centres_a = [d.box_centre for d in found if (d.colour, d.shape) == tuple(a)]
            centres_b = [d.box_centre for d in found if (d.colour, d.shape) == tuple(b)]
            verdicts.append(judge_image(k // images_per_prompt, centres_a, centres_b, relation))
        return verdicts

    def save(self, folder: str | os.PathLike[str]) -> None:
        config = {
            "width": self.net.width,
            "classes": list(CLASSES),
            "resolution": self.resolution,
            "min_area_fraction": self.min_area_fraction,
        }
        save_network(folder, NETWORK_NAME, self.net, config)

    @classmethod
    def load(cls, folder: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> SceneRecogniser:
        """Load from ``folder``, or the embedded recogniser when None."""
        folder = Path(folder) if folder is not None else embedded_recogniser_path()
        config, state = load_network_files(folder, NETWORK_NAME, "spatialgen train recogniser")
        if config["classes"] != list(CLASSES):
            raise ValueError(f"the recogniser in {str(folder)!r} was trained for other classes than this version's")
        net = RecogniserNet(config["width"])
        net.load_state_dict(state)
        return cls(net.to(device), config["resolution"], config["min_area_fraction"])


def embedded_recogniser_path() -> Path:
    return Path(str(resources.files("spatialgen") / "weights" / "recogniser"))


def to_tensor(images: Sequence[Any]) -> torch.Tensor:
    arrays = [np.asarray(im.convert("RGB")) if hasattr(im, "convert") else np.asarray(im) for im in images]
    stacked = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return stacked.float() / 127.5 - 1.0


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Photometric jitter (brightness, contrast, noise, blur): never moves pixels, so labels stay exact."""
    n = x.shape[0]
    gain = 1 + 0.2 * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5)
    bias = 0.1 * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5)
    x = x * gain + bias
    blur = torch.rand(n, generator=generator) < 0.5
    if blur.any():
        kernel = torch.tensor([0.25, 0.5, 0.25])
        kernel = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3)
        x[blur] = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    sigma = 0.06 * torch.rand(n, 1, 1, 1, generator=generator)
    return (x + sigma * torch.randn(x.shape, generator=generator)).clamp(-1, 1)
