"""Sample random scenes, deterministically from a seed.

Randomness comes only from ``random.Random(seed).random()``, whose sequence Python guarantees
across versions and platforms; every choice is derived from it by hand (no ``choice`` or
``shuffle``, whose algorithms may change), so a seed names the same scene everywhere.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from .catalog import FLOORS, SIZES
from .render import camera_rays, trace
from .spec import CameraSpec, FloorSpec, LightSpec, ObjectSpec, SceneConfig, SceneSpec

T = TypeVar("T")

_PROBE_RESOLUTION = 32
_GAP = 0.08  # minimum free space between two objects' footprints (world units)
_PLACEMENT_TRIES = 40
_PERIODS = {"checker": (0.8, 1.2), "wood": (0.35, 0.5), "grass": (0.9, 1.3), "stone": (0.9, 1.3)}


class Draw:
    """The only source of randomness of the scene world (see module docstring)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self._rng.random()

    def index(self, n: int) -> int:
        return min(int(self._rng.random() * n), n - 1)

    def pick(self, items: Sequence[T]) -> T:
        return items[self.index(len(items))]

    def permutation(self, n: int) -> list[int]:
        order = list(range(n))
        for i in range(n - 1, 0, -1):  # Fisher-Yates from our own draws
            j = self.index(i + 1)
            order[i], order[j] = order[j], order[i]
        return order

    def chance(self, p: float) -> bool:
        return self._rng.random() < p


def scene_seed(dataset_seed: int, index: int) -> int:
    """Seed of scene ``index`` of a dataset: a stable hash, so scenes are independent of sharding."""
    digest = hashlib.blake2b(f"spatialgen-scene:{dataset_seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def sample_scene(seed: int, config: SceneConfig | None = None) -> SceneSpec:
    """Draw a scene whose every object is clearly visible, or raise after ``max_attempts``."""
    config = (config or SceneConfig()).validate()
    draw = Draw(seed)
    for _ in range(config.max_attempts):
        spec = _draw_scene(draw, config)
        if spec is not None and _objects_visible(spec, config):
            return spec
    raise RuntimeError(
        f"could not sample a scene with all objects visible in {config.max_attempts} attempts "
        f"(seed {seed}); widen the camera ranges or lower max_objects / min_visible_area"
    )


def _draw_scene(draw: Draw, config: SceneConfig) -> SceneSpec | None:
    material = draw.pick(config.floors)
    base = FLOORS[material]
    brightness = draw.uniform(0.9, 1.1)
    colour_a = tuple(min(1.0, c * brightness) for c in base["a"])  # type: ignore[union-attr]
    colour_b = tuple(min(1.0, c * brightness) for c in base["b"])  # type: ignore[union-attr]
    floor = FloorSpec(
        material=material,
        colour_a=colour_a,  # type: ignore[arg-type]
        colour_b=colour_b,  # type: ignore[arg-type]
        period=draw.uniform(*_PERIODS[material]),
        offset_x=draw.uniform(0.0, 4.0),
        offset_z=draw.uniform(0.0, 4.0),
    )
    camera = CameraSpec(
        elevation=draw.uniform(*config.elevation),
        azimuth=draw.uniform(0.0, 360.0),
        distance=draw.uniform(*config.distance),
        fov=config.fov,
        target=(draw.uniform(-0.3, 0.3), 0.3, draw.uniform(-0.3, 0.3)),
    )
    light = LightSpec(
        elevation=draw.uniform(*config.light_elevation),
        azimuth=draw.uniform(0.0, 360.0),
        ambient=draw.uniform(*config.ambient),
    )
    count = config.min_objects + draw.index(config.max_objects - config.min_objects + 1)
    objects: list[ObjectSpec] = []
    half = config.region_half_width
    for _ in range(count):
        shape, colour, size = draw.pick(config.shapes), draw.pick(config.colours), draw.pick(config.sizes)
        scale = SIZES[size] * draw.uniform(0.92, 1.08)
        yaw = draw.uniform(0.0, 90.0)
        for _ in range(_PLACEMENT_TRIES):
            candidate = ObjectSpec(
                shape, colour, size, draw.uniform(-half, half), draw.uniform(-half, half), yaw, scale
            )
            if all(_apart(candidate, other) for other in objects):
                objects.append(candidate)
                break
        else:
            return None
    return SceneSpec(floor=floor, objects=tuple(objects), camera=camera, light=light)


def _apart(a: ObjectSpec, b: ObjectSpec) -> bool:
    return math.hypot(a.x - b.x, a.z - b.z) >= a.footprint_radius + b.footprint_radius + _GAP


def _objects_visible(spec: SceneSpec, config: SceneConfig) -> bool:
    """Every object keeps enough of itself in view, and its centre projects inside the frame."""
    res = _PROBE_RESOLUTION
    tr = trace(spec, camera_rays(spec.camera, res))
    visible = np.bincount(tr.instance, minlength=len(spec.objects) + 1)[1:]
    if np.any(visible < config.min_visible_area * res * res):
        return False
    if np.any(visible < config.min_visible_fraction * np.maximum(tr.unoccluded, 1)):
        return False
    (rx, ry, rz), (ux, uy, uz), (fx, fy, fz) = spec.camera.basis()
    px, py, pz = spec.camera.position
    limit = 0.9 * spec.camera.tan_half_fov
    for obj in spec.objects:
        cx, cy, cz = obj.centre
        vx, vy, vz = cx - px, cy - py, cz - pz
        depth = vx * fx + vy * fy + vz * fz
        if abs((vx * rx + vy * ry + vz * rz) / depth) > limit or abs((vx * ux + vy * uy + vz * uz) / depth) > limit:
            return False
    return True
