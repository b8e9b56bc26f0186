"""A scene-world sample: the scene, its render, annotations, relations and captions.

:func:`make_sample` quantises exactly as storage does (RGB, albedo and shading to 8 bits,
normals to float16, depth kept as float32), so a sample made on the fly and the same sample
read back from a shard are identical.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..intrinsics import Intrinsics, colour_segmentation, disparity_from_depth, normal_to_unit_range
from .annotate import ObjectAnnotation, Relation, all_relations, annotate_objects
from .captions import CaptionRules, make_captions
from .render import render
from .sampling import Draw, sample_scene
from .spec import SceneConfig, SceneSpec


def derive_seed(seed: int, purpose: str) -> int:
    """An independent seed for another use of the same scene (e.g. caption draws)."""
    digest = hashlib.blake2b(f"spatialgen-{purpose}:{seed}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 with round-half-up (the storage quantisation)."""
    return np.floor(np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@dataclass
class SceneSample:
    seed: int
    spec: SceneSpec
    rgb: np.ndarray  # uint8 (H, W, 3)
    albedo: np.ndarray  # uint8 (H, W, 3)
    shading: np.ndarray  # uint8 (H, W)
    depth: np.ndarray  # float32 (H, W), metric z-depth
    normal: np.ndarray  # float16 (H, W, 3), camera space
    instance: np.ndarray  # uint8 (H, W), 0 = floor
    lines: np.ndarray  # bool (H, W)
    objects: list[ObjectAnnotation]
    relations: list[Relation]
    captions: dict[str, str]

    @property
    def resolution(self) -> int:
        return int(self.rgb.shape[0])

    def intrinsics(self) -> Intrinsics:
        """The four intrinsics in the project's convention, channel-first float32 in [0, 1]."""
        depth = disparity_from_depth(self.depth)[None]
        normal = normal_to_unit_range(np.moveaxis(self.normal.astype(np.float32), -1, 0))
        segmentation = np.moveaxis(colour_segmentation(self.instance), -1, 0).astype(np.float32) / 255.0
        return Intrinsics(
            depth=depth, normal=normal, segmentation=segmentation, lines=self.lines[None].astype(np.float32)
        )

    def metadata(self) -> dict[str, Any]:
        """Everything but the pixels, JSON-serialisable."""
        return {
            "seed": self.seed,
            "resolution": self.resolution,
            "spec": self.spec.to_dict(),
            "objects": [o.to_dict() for o in self.objects],
            "relations": [r.to_dict() for r in self.relations],
            "captions": self.captions,
        }


def make_sample(
    seed: int,
    resolution: int = 64,
    config: SceneConfig | None = None,
    antialias: bool = True,
    rules: CaptionRules | None = None,
) -> SceneSample:
    """Sample, render, annotate and caption the scene of ``seed``."""
    spec = sample_scene(seed, config)
    return sample_from_spec(spec, seed, resolution, antialias, rules)


def sample_from_spec(
    spec: SceneSpec,
    seed: int,
    resolution: int = 64,
    antialias: bool = True,
    rules: CaptionRules | None = None,
) -> SceneSample:
    """Render an existing spec (e.g. a stored sample at another resolution)."""
    r = render(spec, resolution, antialias)
    objects = annotate_objects(spec, r)
    relations = all_relations(objects)
    captions = make_captions(spec.floor.material, objects, relations, Draw(derive_seed(seed, "captions")), rules)
    return SceneSample(
        seed=seed,
        spec=spec,
        rgb=to_uint8(r.rgb),
        albedo=to_uint8(r.albedo),
        shading=to_uint8(r.shading),
        depth=r.depth,
        normal=r.normal.astype(np.float16),
        instance=r.instance,
        lines=r.lines,
        objects=objects,
        relations=relations,
        captions=captions,
    )
