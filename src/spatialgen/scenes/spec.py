"""The scene description: plain, JSON-serialisable dataclasses.

A :class:`SceneSpec` is the whole 3D scene (floor, objects, camera, light). Every dataset
sample stores its spec, so any sample can be re-rendered later at another resolution.

World frame: y is up, the floor is the plane y = 0. Camera frame (used for normals and
depth): x right, y up, z toward the camera, as DESIGN.md fixes for the intrinsics.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .catalog import COLOURS, FLOORS, SHAPES, SIZES, check_names

Vec3 = tuple[float, float, float]

# Shape proportions relative to the half-extent ``scale``: (height / scale, radius / scale).
_HEIGHT_FACTOR = {"cube": 2.0, "sphere": 2.0, "cylinder": 1.9, "cone": 2.3}
_RADIUS_FACTOR = {"cube": 1.0, "sphere": 1.0, "cylinder": 0.9, "cone": 1.0}


@dataclass(frozen=True)
class ObjectSpec:
    """One object standing on the floor at (x, z), rotated by ``yaw`` degrees about the y axis."""

    shape: str
    colour: str
    size: str
    x: float
    z: float
    yaw: float
    scale: float

    @property
    def height(self) -> float:
        return _HEIGHT_FACTOR[self.shape] * self.scale

    @property
    def radius(self) -> float:
        """Radius of the sphere, or of the cylinder / cone base; the cube's half-side."""
        return _RADIUS_FACTOR[self.shape] * self.scale

    @property
    def footprint_radius(self) -> float:
        """Radius of a vertical cylinder that contains the object whatever its yaw."""
        return self.radius * (math.sqrt(2.0) if self.shape == "cube" else 1.0)

    @property
    def centre(self) -> Vec3:
        """Centre of the object's bounding box, in world coordinates."""
        return (self.x, self.height / 2.0, self.z)

    def describe(self, with_size: bool = False) -> str:
        return f"{self.size} {self.colour} {self.shape}" if with_size else f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class CameraSpec:
    """A pinhole camera orbiting ``target`` at the given elevation, azimuth and distance."""

    elevation: float
    azimuth: float
    distance: float
    fov: float
    target: Vec3 = (0.0, 0.3, 0.0)

    @property
    def position(self) -> Vec3:
        el, az = math.radians(self.elevation), math.radians(self.azimuth)
        tx, ty, tz = self.target
        return (
            tx + self.distance * math.cos(el) * math.sin(az),
            ty + self.distance * math.sin(el),
            tz + self.distance * math.cos(el) * math.cos(az),
        )

    def basis(self) -> tuple[Vec3, Vec3, Vec3]:
        """(right, up, forward) unit vectors in world coordinates; forward looks at the target."""
        px, py, pz = self.position
        tx, ty, tz = self.target
        f = _normalise((tx - px, ty - py, tz - pz))
        r = _normalise((-f[2], 0.0, f[0]))  # forward x world-up, world-up = (0, 1, 0)
        u = (r[1] * f[2] - r[2] * f[1], r[2] * f[0] - r[0] * f[2], r[0] * f[1] - r[1] * f[0])
        return r, u, f

    @property
    def tan_half_fov(self) -> float:
        return math.tan(math.radians(self.fov) / 2.0)


@dataclass(frozen=True)
class LightSpec:
    """A directional light coming from (elevation, azimuth) degrees, plus ambient light."""

    elevation: float
    azimuth: float
    ambient: float

    @property
    def direction(self) -> Vec3:
        """Unit vector from a surface point toward the light."""
        el, az = math.radians(self.elevation), math.radians(self.azimuth)
        return (math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az))


@dataclass(frozen=True)
class FloorSpec:
    """A floor material with its two pattern colours, pattern period and phase (world units)."""

    material: str
    colour_a: Vec3
    colour_b: Vec3
    period: float
    offset_x: float
    offset_z: float


@dataclass(frozen=True)
class SceneSpec:
    floor: FloorSpec
    objects: tuple[ObjectSpec, ...]
    camera: CameraSpec
    light: LightSpec

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneSpec:
        floor = dict(data["floor"])
        floor["colour_a"], floor["colour_b"] = tuple(floor["colour_a"]), tuple(floor["colour_b"])
        camera = dict(data["camera"])
        camera["target"] = tuple(camera["target"])
        return cls(
            floor=FloorSpec(**floor),
            objects=tuple(ObjectSpec(**o) for o in data["objects"]),
            camera=CameraSpec(**camera),
            light=LightSpec(**data["light"]),
        )


@dataclass(frozen=True)
class SceneConfig:
    """The distribution scenes are sampled from. Every range is (low, high), inclusive."""

    min_objects: int = 1
    max_objects: int = 5
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    sizes: tuple[str, ...] = tuple(SIZES)
    floors: tuple[str, ...] = tuple(FLOORS)
    elevation: tuple[float, float] = (28.0, 55.0)
    distance: tuple[float, float] = (6.5, 8.0)
    fov: float = 40.0
    light_elevation: tuple[float, float] = (35.0, 70.0)
    ambient: tuple[float, float] = (0.30, 0.42)
    region_half_width: float = 2.0
    # An object must show at least this fraction of its unoccluded, in-frame area ...
    min_visible_fraction: float = 0.3
    # ... and at least this fraction of the image, checked on a low-resolution probe render.
    min_visible_area: float = 0.006
    max_attempts: int = 64

    def validate(self) -> SceneConfig:
        check_names("shape", self.shapes, SHAPES)
        check_names("colour", self.colours, tuple(COLOURS))
        check_names("size", self.sizes, tuple(SIZES))
        check_names("floor", self.floors, tuple(FLOORS))
        if not 1 <= self.min_objects <= self.max_objects <= 5:
            raise ValueError(
                f"object counts must satisfy 1 <= min_objects <= max_objects <= 5, "
                f"got min_objects={self.min_objects}, max_objects={self.max_objects}"
            )
        near, far = self.distance
        if not 0.0 < near <= far:
            raise ValueError(f"camera distance range {self.distance} must satisfy 0 < low <= high")
        if not self.region_half_width > 0.0:
            raise ValueError(f"region_half_width must be positive, got {self.region_half_width}")
        low, high = self.elevation
        if not (0.0 < low <= high < 90.0 and high + self.fov / 2.0 < 90.0 and low - self.fov / 2.0 >= 5.0):
            raise ValueError(
                f"camera elevation range {self.elevation} with fov {self.fov} must keep every pixel "
                "on the floor: need elevation - fov/2 >= 5 and elevation + fov/2 < 90 degrees"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _normalise(v: Vec3) -> Vec3:
    n = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    return (v[0] / n, v[1] / n, v[2] / n)
