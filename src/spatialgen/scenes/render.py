"""Render a :class:`SceneSpec` into RGB and exact per-pixel intrinsics.

One primary ray per pixel centre gives depth, normals, instance ids, albedo and shading; the
line drawing comes from the boundaries of the per-pixel surface-part ids (occlusion contours
between objects and the floor, creases between the faces of one object). RGB alone is
antialiased: pixels on a part boundary are re-shaded from four sub-pixel rays. Everywhere else
``rgb == albedo * shading`` exactly (Lambertian shading, one directional light with cast
shadows, plus ambient).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .raycast import Rays, intersect
from .spec import CameraSpec, FloorSpec, SceneSpec

FLOOR_ID = 0
PARTS_PER_INSTANCE = 8  # part ids are instance * 8 + face
_SHADOW_BIAS = 1e-4
_SUBPIXELS = ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75))


def check_resolution(resolution: int) -> int:
    """Resolutions must be positive multiples of 8 (the latent models downsample by 8)."""
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)):
        raise ValueError(f"resolution must be an integer, got {resolution!r}")
    if resolution <= 0 or resolution % 8:
        raise ValueError(f"resolution must be a positive multiple of 8 (e.g. 64, 128, 256), got {resolution}")
    return int(resolution)


@dataclass
class SceneRender:
    """Per-pixel outputs, all (H, W[, C]) arrays in image order (row 0 at the top)."""

    rgb: np.ndarray  # float32 [0, 1], antialiased at geometry edges
    albedo: np.ndarray  # float32 [0, 1]
    shading: np.ndarray  # float32 [0, 1], grey
    depth: np.ndarray  # float32, metric z-depth along the optical axis (world units)
    normal: np.ndarray  # float32 unit vectors in camera space (x right, y up, z toward camera)
    instance: np.ndarray  # uint8, 0 = floor, k = spec.objects[k - 1]
    part: np.ndarray  # uint8, instance * 8 + face index
    lines: np.ndarray  # bool, occlusion contours and creases
    unoccluded_pixels: np.ndarray  # int64 per object: pixels it would cover if alone in the scene

    @property
    def resolution(self) -> int:
        return int(self.rgb.shape[0])


def camera_rays(camera: CameraSpec, resolution: int, offset: tuple[float, float] = (0.5, 0.5)) -> Rays:
    """Rays through each pixel at the given sub-pixel offset, row-major from the top-left.

    Directions are ``forward + x*right + y*up``, so the ray parameter t of a hit *is* its
    z-depth along the optical axis.
    """
    (rx, ry, rz), (ux, uy, uz), (fx, fy, fz) = camera.basis()
    scale = camera.tan_half_fov
    coords = (np.arange(resolution, dtype=np.float64) + offset[0]) * (2.0 / resolution) - 1.0
    x = np.tile(coords * scale, resolution)
    rows = 1.0 - (np.arange(resolution, dtype=np.float64) + offset[1]) * (2.0 / resolution)
    y = np.repeat(rows * scale, resolution)
    ox, oy, oz = camera.position
    return Rays(ox, oy, oz, fx + x * rx + y * ux, fy + x * ry + y * uy, fz + x * rz + y * uz)


@dataclass
class _Trace:
    t: np.ndarray
    nx: np.ndarray
    ny: np.ndarray
    nz: np.ndarray
    instance: np.ndarray
    part: np.ndarray
    unoccluded: np.ndarray


def trace(spec: SceneSpec, rays: Rays) -> _Trace:
    """Nearest surface along each ray: the floor, or the closest object in front of it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(rays.dy < 0, -rays.oy / np.where(rays.dy < 0, rays.dy, -1.0), np.inf)
    n = len(rays)
    nx, ny, nz = np.zeros(n), np.ones(n), np.zeros(n)
    instance = np.zeros(n, np.uint8)
    part = np.zeros(n, np.uint8)
    unoccluded = np.zeros(len(spec.objects), np.int64)
    for k, obj in enumerate(spec.objects, start=1):
        hit = intersect(obj, rays)
        unoccluded[k - 1] = np.count_nonzero(hit.t < np.inf)
        closer = hit.t < t
        t = np.where(closer, hit.t, t)
        nx, ny, nz = np.where(closer, hit.nx, nx), np.where(closer, hit.ny, ny), np.where(closer, hit.nz, nz)
        instance = np.where(closer, np.uint8(k), instance)
        part = np.where(closer, hit.part + np.uint8(k * PARTS_PER_INSTANCE), part)
    return _Trace(t, nx, ny, nz, instance, part, unoccluded)


def _hash01(ix: np.ndarray, iz: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic integer hash of grid cells to [0, 1] (wrapping int64 arithmetic)."""
    h = (ix * 73856093) ^ (iz * 19349663) ^ np.int64(salt * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).astype(np.float64) / 65535.0


def floor_albedo(floor: FloorSpec, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Procedural floor colour at world points (x, 0, z): returns (N, 3)."""
    u, v = (x + floor.offset_x) / floor.period, (z + floor.offset_z) / floor.period
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    iu, iv = iu.astype(np.int64), iv.astype(np.int64)
    if floor.material == "checker":
        w = ((iu + iv) & 1).astype(np.float64)
    elif floor.material == "wood":
        # Planks along x: per-plank tone, a grain of triangle waves, dark seams between planks.
        tone = _hash01(np.zeros_like(iv), iv, 1)
        grain = u * 3.0 + tone * 5.0
        tri = np.abs(2.0 * (grain - np.floor(grain)) - 1.0)
        w = np.clip(0.15 + 0.45 * tri * tri + 0.4 * (tone - 0.5), 0.0, 1.0)
        w = np.where(fv < 0.05, 1.0, w)
    elif floor.material == "grass":
        cu, cv = np.floor(u * 8.0).astype(np.int64), np.floor(v * 8.0).astype(np.int64)
        w = 0.6 * _hash01(cu, cv, 2) + 0.4 * _hash01(iu, iv, 3)
    elif floor.material == "stone":
        w = 0.5 * _hash01(iu, iv, 4)
        w = np.where((fu < 0.03) | (fv < 0.03), 1.0, w)
    else:  # pragma: no cover - SceneConfig.validate rejects unknown floors earlier
        raise ValueError(f"unknown floor material {floor.material!r}")
    a, b = np.asarray(floor.colour_a), np.asarray(floor.colour_b)
    return a[None, :] + (b - a)[None, :] * w[:, None]


def _albedo(spec: SceneSpec, rays: Rays, tr: _Trace) -> np.ndarray:
    from .catalog import COLOURS

    albedo = np.empty((len(rays), 3))
    on_floor = tr.instance == FLOOR_ID
    t = tr.t[on_floor]
    ox = rays.ox if np.isscalar(rays.ox) else rays.ox[on_floor]
    oz = rays.oz if np.isscalar(rays.oz) else rays.oz[on_floor]
    albedo[on_floor] = floor_albedo(spec.floor, ox + t * rays.dx[on_floor], oz + t * rays.dz[on_floor])
    for k, obj in enumerate(spec.objects, start=1):
        albedo[tr.instance == k] = COLOURS[obj.colour]
    return albedo


def _shading(spec: SceneSpec, rays: Rays, tr: _Trace) -> np.ndarray:
    """Lambertian shading: ambient + (1 - ambient) * max(0, n.l) * (1 if lit else 0)."""
    lx, ly, lz = spec.light.direction
    ndotl = tr.nx * lx + tr.ny * ly + tr.nz * lz
    facing = np.flatnonzero(ndotl > 0)
    lit = np.zeros(len(rays), bool)
    if facing.size:
        t = tr.t[facing]
        nx, ny, nz = tr.nx[facing], tr.ny[facing], tr.nz[facing]
        pick = (lambda o: o) if np.isscalar(rays.ox) else (lambda o: o[facing])
        px = pick(rays.ox) + t * rays.dx[facing] + _SHADOW_BIAS * nx
        py = pick(rays.oy) + t * rays.dy[facing] + _SHADOW_BIAS * ny
        pz = pick(rays.oz) + t * rays.dz[facing] + _SHADOW_BIAS * nz
        m = facing.size
        shadow = Rays(px, py, pz, np.full(m, lx), np.full(m, ly), np.full(m, lz))
        blocked = np.zeros(m, bool)
        for obj in spec.objects:
            blocked |= intersect(obj, shadow).t < np.inf
        lit[facing] = ~blocked
    amb = spec.light.ambient
    return amb + (1.0 - amb) * np.where(lit, ndotl, 0.0)


def _part_edges(part: np.ndarray) -> np.ndarray:
    """Pixels with any 8-neighbour on another surface part (where RGB needs antialiasing)."""
    p = np.pad(part, 1, mode="edge")
    edge = np.zeros(part.shape, bool)
    h, w = part.shape
    for di in (0, 1, 2):
        for dj in (0, 1, 2):
            if di != 1 or dj != 1:
                edge |= p[di : di + h, dj : dj + w] != part
    return edge


def line_drawing(part: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """One-pixel lines on part boundaries, drawn on the occluding side of each boundary.

    A boundary between two objects, or an object and the floor, is an occlusion contour; one
    between two faces of the same object is a crease. Marking one pixel of each 4-neighbour
    pair keeps lines one pixel wide: the object's pixel where an object meets the floor (the
    floor never occludes an object, though at a contact it can be the nearer sample), otherwise
    the nearer pixel.
    """
    floor = part < PARTS_PER_INSTANCE
    lines = np.zeros(part.shape, bool)
    for axis in (0, 1):
        head = [slice(None), slice(None)]
        tail = [slice(None), slice(None)]
        head[axis], tail[axis] = slice(None, -1), slice(1, None)
        a, b = tuple(head), tuple(tail)
        boundary = part[a] != part[b]
        mixed = floor[a] != floor[b]
        first = boundary & np.where(mixed, ~floor[a], depth[a] <= depth[b])
        second = boundary & np.where(mixed, ~floor[b], depth[b] <= depth[a])
        lines[a] |= first
        lines[b] |= second
    return lines


def render(spec: SceneSpec, resolution: int = 64, antialias: bool = True) -> SceneRender:
    """Render ``spec`` at ``resolution`` x ``resolution`` with all intrinsics."""
    res = check_resolution(resolution)
    rays = camera_rays(spec.camera, res)
    tr = trace(spec, rays)
    albedo = _albedo(spec, rays, tr)
    shading = _shading(spec, rays, tr)
    rgb = albedo * shading[:, None]

    shape = (res, res)
    part = tr.part.reshape(shape)
    if antialias:
        edge = np.flatnonzero(_part_edges(part).reshape(-1))
        if edge.size:
            acc = np.zeros((edge.size, 3))
            for offset in _SUBPIXELS:
                sub = camera_rays(spec.camera, res, offset)
                sub = Rays(sub.ox, sub.oy, sub.oz, sub.dx[edge], sub.dy[edge], sub.dz[edge])
                st = trace(spec, sub)
                acc += _albedo(spec, sub, st) * _shading(spec, sub, st)[:, None]
            rgb[edge] = acc * 0.25

    # World normals into camera space: x right, y up, z toward the camera (= -forward).
    (rx, ry, rz), (ux, uy, uz), (fx, fy, fz) = spec.camera.basis()
    normal = np.stack(
        [
            tr.nx * rx + tr.ny * ry + tr.nz * rz,
            tr.nx * ux + tr.ny * uy + tr.nz * uz,
            -(tr.nx * fx + tr.ny * fy + tr.nz * fz),
        ],
        axis=-1,
    )
    depth = tr.t.reshape(shape)
    return SceneRender(
        rgb=np.clip(rgb, 0.0, 1.0).reshape(res, res, 3).astype(np.float32),
        albedo=albedo.reshape(res, res, 3).astype(np.float32),
        shading=shading.reshape(shape).astype(np.float32),
        depth=depth.astype(np.float32),
        normal=normal.reshape(res, res, 3).astype(np.float32),
        instance=tr.instance.reshape(shape),
        part=part,
        lines=line_drawing(part, depth),
        unoccluded_pixels=tr.unoccluded,
    )
