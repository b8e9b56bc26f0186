"""Does a co-generated map describe its own image? Per-sample agreement of I-LDM's maps with the image.

Generated images have no ground truth, but the scene world's recogniser and estimator read any
image of that world. Each measure compares the co-generated intrinsic with what they read from
the image drawn beside it:

* depth: AbsRel and delta1 of the co-generated disparity against the estimator's, after per-image
  scale-and-shift alignment (:func:`~spatialgen.eval.metrics.intrinsic_metrics.depth_metrics`);
* normals: mean angle against the estimator's normals, over all pixels and over object pixels
  (most of an image is one flat floor, which is easy);
* segmentation: foreground IoU between the map's non-floor pixels (colour farther than
  ``FLOOR_DISTANCE`` from the floor's palette colour) and the recogniser's object pixels (argmax
  class not the floor); and whether the map has as many segments (palette ids of at least
  ``min_area`` pixels) as the recogniser finds objects.

:func:`shuffled_pairs` pairs every map with another prompt's image, the chance level each figure
should be read against. Values are per sample, so intervals can resample prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...intrinsics import SEGMENTATION_PALETTE, normal_to_unit_range
from .intrinsic_metrics import colours_to_ids, depth_metrics, normal_angular_error

FLOOR_DISTANCE = 0.25  # in [0, 1] RGB: how far from the floor's colour a map pixel must be to count as an object
MIN_AREA_FRACTION = 0.004  # the recogniser's own smallest object (16 pixels at 64 x 64)
MEASURES = ("depth_abs_rel", "depth_delta1", "normal_mean", "normal_object_mean", "seg_iou", "count_agrees")


def map_foreground(segmentation: Any, floor_distance: float = FLOOR_DISTANCE) -> np.ndarray:
    """Non-floor pixels (N, H, W) of colour-coded segmentations (N, 3, H, W) in [0, 1]."""
    seg = np.asarray(segmentation, dtype=np.float64)
    if seg.ndim != 4 or seg.shape[1] != 3:
        raise ValueError(f"segmentations must be (N, 3, H, W) in [0, 1], got shape {seg.shape}")
    floor = SEGMENTATION_PALETTE[0].astype(np.float64)[None, :, None, None] / 255.0
    return np.sqrt(((seg - floor) ** 2).sum(1)) > floor_distance


def map_segment_counts(segmentation: Any, min_area: int, floor_distance: float = FLOOR_DISTANCE) -> np.ndarray:
    """Segments per map (N,): non-floor palette ids covering at least ``min_area`` foreground pixels."""
    if min_area < 1:
        raise ValueError(f"min_area must be at least 1 pixel, got {min_area}")
    ids = colours_to_ids(np.asarray(segmentation, dtype=np.float64))
    foreground = map_foreground(segmentation, floor_distance)
    counts = []
    for image_ids, mask in zip(ids, foreground, strict=True):
        areas = np.bincount(image_ids[mask], minlength=len(SEGMENTATION_PALETTE))
        counts.append(int((areas[1:] >= min_area).sum()))
    return np.asarray(counts, dtype=np.int64)


def foreground_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU per image of two boolean masks (N, H, W); two empty masks agree (IoU 1)."""
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"foreground_iou needs two (N, H, W) masks of one shape, got {a.shape} and {b.shape}")
    inter = (a & b).sum((1, 2)).astype(np.float64)
    union = (a | b).sum((1, 2)).astype(np.float64)
    return np.where(union > 0, inter / np.maximum(union, 1.0), 1.0)


@dataclass
class ImageReading:
    """What the recogniser and the estimator read from a batch of images (all arrays per image)."""

    object_mask: np.ndarray  # bool (N, H, W): the recogniser's argmax class is not the floor
    detections: list[list[Any]]  # the recogniser's detections per image
    depth: np.ndarray  # float (N, 1, H, W): the estimator's disparity
    normal: np.ndarray  # float (N, 3, H, W): its normals in [0, 1]

    @property
    def object_count(self) -> np.ndarray:
        return np.asarray([len(d) for d in self.detections], dtype=np.int64)

    def take(self, order: np.ndarray) -> ImageReading:
        detections = [self.detections[i] for i in order]
        return ImageReading(self.object_mask[order], detections, self.depth[order], self.normal[order])


def read_images(images: Sequence[Any], recogniser: Any, estimator: Any) -> ImageReading:
    """Read generated images (PIL or uint8 arrays) with the scene recogniser and estimator."""
    from ..scene.recogniser import to_tensor

    tensor = to_tensor(images)
    probabilities = recogniser.probabilities(tensor).cpu().numpy()
    detections = recogniser.detections(probabilities)  # one pass of the network for both
    estimated = estimator.estimate(tensor)
    return ImageReading(
        object_mask=probabilities.argmax(1) != 0,
        detections=detections,
        depth=estimated.depth[:, None].astype(np.float64),
        normal=normal_to_unit_range(np.moveaxis(estimated.normal, -1, 1)).astype(np.float64),
    )


def consistency_per_sample(
    depth: Any, normal: Any, segmentation: Any, reading: ImageReading, min_area: int | None = None
) -> dict[str, np.ndarray]:
    """Each measure of the module docstring, one value per sample, for co-generated maps in [0, 1].

    ``depth`` (N, 1, H, W), ``normal`` and ``segmentation`` (N, 3, H, W), as the pipeline's
    :class:`~spatialgen.intrinsics.Intrinsics` holds them; ``reading`` the same images' reading.
    """
    depth, normal = np.asarray(depth, dtype=np.float64), np.asarray(normal, dtype=np.float64)
    segmentation = np.asarray(segmentation, dtype=np.float64)
    n, _, h, w = segmentation.shape
    if not (len(depth) == len(normal) == len(reading.object_count) == n):
        raise ValueError("the maps and the reading must describe the same samples")
    min_area = min_area if min_area is not None else max(1, round(MIN_AREA_FRACTION * h * w))
    depth_rows = [depth_metrics(depth[i : i + 1], reading.depth[i : i + 1]) for i in range(n)]
    angles = normal_angular_error(normal, reading.normal)  # (N, H, W) degrees
    objects = reading.object_mask
    object_angle = np.where(
        objects.any((1, 2)), (angles * objects).sum((1, 2)) / np.maximum(objects.sum((1, 2)), 1), np.nan
    )
    return {
        "depth_abs_rel": np.asarray([r["abs_rel"] for r in depth_rows]),
        "depth_delta1": np.asarray([r["delta1"] for r in depth_rows]),
        "normal_mean": angles.reshape(n, -1).mean(1),
        "normal_object_mean": object_angle,
        "seg_iou": foreground_iou(map_foreground(segmentation), objects),
        "count_agrees": (map_segment_counts(segmentation, min_area) == reading.object_count).astype(np.float64),
    }


def shuffled_pairs(prompt_index: Sequence[int], seed: int = 0) -> np.ndarray:
    """An order that pairs every sample with a sample of another prompt (the chance row's pairing).

    ``prompt_index[i]`` is sample i's prompt. A random permutation of the prompts without fixed
    points (rejection-sampled) maps each sample to the sample of the same seed position of its
    partner prompt, so chance pairs keep the seed structure and never pair a prompt with itself.
    """
    index = np.asarray(prompt_index)
    prompts = list(dict.fromkeys(index.tolist()))
    if len(prompts) < 2:
        raise ValueError("shuffled pairs need samples of at least two prompts")
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(len(prompts))
        if not np.any(perm == np.arange(len(prompts))):
            break
    members = {p: np.flatnonzero(index == p) for p in prompts}
    order = np.empty(len(index), dtype=np.int64)
    for k, p in enumerate(prompts):
        partner = members[prompts[perm[k]]]
        mine = members[p]
        order[mine] = partner[np.arange(len(mine)) % len(partner)]
    return order
