"""Vectorised analytic ray-primitive intersection.

Rays are passed as a struct of arrays (origin may be scalars, directions are 1-D arrays, not
necessarily unit length), so each primitive costs a few dozen whole-array numpy operations.
Only elementwise +, -, *, /, sqrt, comparisons and selections touch per-ray data: these are
correctly rounded in IEEE-754, which is what makes renders byte-identical across machines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .spec import ObjectSpec

_TINY = 1e-12


@dataclass
class Rays:
    ox: np.ndarray | float
    oy: np.ndarray | float
    oz: np.ndarray | float
    dx: np.ndarray
    dy: np.ndarray
    dz: np.ndarray

    def __len__(self) -> int:
        return int(self.dx.shape[0])


@dataclass
class Hit:
    """First intersection per ray: ``t`` is +inf where the ray misses."""

    t: np.ndarray
    nx: np.ndarray
    ny: np.ndarray
    nz: np.ndarray
    part: np.ndarray  # which face of the primitive (for crease lines), uint8


def _safe(d: np.ndarray) -> np.ndarray:
    """Direction components bounded away from zero, keeping their sign (for slab divisions)."""
    return np.where(np.abs(d) < _TINY, np.where(d < 0, -_TINY, _TINY), d)


def _miss_like(d: np.ndarray) -> np.ndarray:
    return np.full(d.shape, np.inf)


def intersect(obj: ObjectSpec, rays: Rays, t_min: float = 1e-6) -> Hit:
    """First hit of ``rays`` with ``obj`` beyond ``t_min``; normals are unit, in world space."""
    return _INTERSECTORS[obj.shape](obj, rays, t_min)


def _box(obj: ObjectSpec, r: Rays, t_min: float) -> Hit:
    s = obj.radius
    yaw = math.radians(obj.yaw)
    c, sn = math.cos(yaw), math.sin(yaw)
    # Into the cube's frame: rotate by -yaw about y, centre at the origin.
    X, Y, Z = r.ox - obj.x, r.oy - s, r.oz - obj.z
    lx, ly, lz = c * X - sn * Z, Y, sn * X + c * Z
    ldx, ldy, ldz = _safe(c * r.dx - sn * r.dz), _safe(r.dy), _safe(sn * r.dx + c * r.dz)
    ta, tb = (-s - lx) / ldx, (s - lx) / ldx
    tx0, tx1 = np.minimum(ta, tb), np.maximum(ta, tb)
    ta, tb = (-s - ly) / ldy, (s - ly) / ldy
    ty0, ty1 = np.minimum(ta, tb), np.maximum(ta, tb)
    ta, tb = (-s - lz) / ldz, (s - lz) / ldz
    tz0, tz1 = np.minimum(ta, tb), np.maximum(ta, tb)
    t_near = np.maximum(np.maximum(tx0, ty0), tz0)
    t_far = np.minimum(np.minimum(tx1, ty1), tz1)
    hit = (t_near <= t_far) & (t_near > t_min)
    on_x = (tx0 >= ty0) & (tx0 >= tz0)
    on_y = ~on_x & (ty0 >= tz0)
    on_z = ~on_x & ~on_y
    # The face normal points against the ray along the entered axis.
    nlx = np.where(on_x, np.where(ldx < 0, 1.0, -1.0), 0.0)
    nly = np.where(on_y, np.where(ldy < 0, 1.0, -1.0), 0.0)
    nlz = np.where(on_z, np.where(ldz < 0, 1.0, -1.0), 0.0)
    axis = np.where(on_x, 0, np.where(on_y, 1, 2))
    part = (2 * axis + (nlx + nly + nlz > 0)).astype(np.uint8)
    return Hit(
        t=np.where(hit, t_near, np.inf),
        nx=c * nlx + sn * nlz,
        ny=nly,
        nz=-sn * nlx + c * nlz,
        part=part,
    )


def _sphere(obj: ObjectSpec, r: Rays, t_min: float) -> Hit:
    rad = obj.radius
    X, Y, Z = r.ox - obj.x, r.oy - rad, r.oz - obj.z
    a = r.dx * r.dx + r.dy * r.dy + r.dz * r.dz
    b = X * r.dx + Y * r.dy + Z * r.dz
    c = X * X + Y * Y + Z * Z - rad * rad
    disc = b * b - a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    t = (-b - root) / a
    t = np.where((disc >= 0) & (t > t_min), t, np.inf)
    px, py, pz = X + t * r.dx, Y + t * r.dy, Z + t * r.dz
    finite = np.isfinite(t)
    inv = 1.0 / rad
    return Hit(
        t=t,
        nx=np.where(finite, px * inv, 0.0),
        ny=np.where(finite, py * inv, 1.0),
        nz=np.where(finite, pz * inv, 0.0),
        part=np.zeros(t.shape, np.uint8),
    )


def _cylinder(obj: ObjectSpec, r: Rays, t_min: float) -> Hit:
    rad, h = obj.radius, obj.height
    X, Z = r.ox - obj.x, r.oz - obj.z
    a = r.dx * r.dx + r.dz * r.dz
    b = X * r.dx + Z * r.dz
    c = X * X + Z * Z - rad * rad
    disc = b * b - a * c
    a_safe = np.where(a < _TINY, _TINY, a)
    t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / a_safe
    y_side = r.oy + t_side * r.dy
    side_ok = (disc >= 0) & (a >= _TINY) & (t_side > t_min) & (y_side >= 0.0) & (y_side <= h)
    t_side = np.where(side_ok, t_side, np.inf)
    # Top cap, entered from above.
    dy = _safe(r.dy)
    t_cap = (h - r.oy) / dy
    cx, cz = X + t_cap * r.dx, Z + t_cap * r.dz
    cap_ok = (r.dy < 0) & (t_cap > t_min) & (cx * cx + cz * cz <= rad * rad)
    t_cap = np.where(cap_ok, t_cap, np.inf)
    on_cap = t_cap < t_side
    t = np.minimum(t_side, t_cap)
    inv = 1.0 / rad
    return Hit(
        t=t,
        nx=np.where(on_cap, 0.0, (X + t_side * r.dx) * inv),
        ny=np.where(on_cap, 1.0, 0.0),
        nz=np.where(on_cap, 0.0, (Z + t_side * r.dz) * inv),
        part=on_cap.astype(np.uint8),
    )


def _cone(obj: ObjectSpec, r: Rays, t_min: float) -> Hit:
    rad, h = obj.radius, obj.height
    k2 = (rad / h) ** 2
    X, Y, Z = r.ox - obj.x, h - r.oy, r.oz - obj.z  # Y: height below the apex
    # (X + t dx)^2 + (Z + t dz)^2 = k^2 (Y - t dy)^2
    a = r.dx * r.dx + r.dz * r.dz - k2 * r.dy * r.dy
    b = X * r.dx + Z * r.dz + k2 * Y * r.dy
    c = X * X + Z * Z - k2 * Y * Y
    disc = b * b - a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    degenerate = np.abs(a) < _TINY
    a_safe = np.where(degenerate, 1.0, a)
    b_safe = np.where(np.abs(b) < _TINY, _TINY, b)
    t1 = np.where(degenerate, -c / (2.0 * b_safe), (-b - root) / a_safe)
    t2 = np.where(degenerate, np.inf, (-b + root) / a_safe)

    def valid(t: np.ndarray) -> np.ndarray:
        y = r.oy + t * r.dy
        ok = (disc >= 0) & (t > t_min) & (y >= 0.0) & (y <= h)
        return np.where(ok, t, np.inf)

    t = np.minimum(valid(t1), valid(t2))
    finite = np.isfinite(t)
    tt = np.where(finite, t, 0.0)
    px, pz = X + tt * r.dx, Z + tt * r.dz
    below_apex = h - (r.oy + tt * r.dy)
    gx, gy, gz = px, k2 * below_apex, pz
    norm = np.sqrt(gx * gx + gy * gy + gz * gz)
    norm = np.where(norm < _TINY, 1.0, norm)
    return Hit(
        t=t,
        nx=np.where(finite, gx / norm, 0.0),
        ny=np.where(finite, gy / norm, 1.0),
        nz=np.where(finite, gz / norm, 0.0),
        part=np.zeros(t.shape, np.uint8),
    )


_INTERSECTORS = {"cube": _box, "sphere": _sphere, "cylinder": _cylinder, "cone": _cone}


def silhouette_points(obj: ObjectSpec, eye: tuple[float, float, float], n: int = 720) -> np.ndarray:
    """World points whose projection bounds the object's projection (its amodal 2D box).

    A projection of a convex hull is the hull of the projections, so for the cube the 8 corners
    suffice, for the cylinder its two rims and for the cone its base rim and apex. A sphere's
    outline is the projection of its silhouette circle as seen from ``eye``.
    """
    angles = np.arange(n) * (2.0 * math.pi / n)
    cos_a, sin_a = np.cos(angles), np.sin(angles)

    def rim(y: float, radius: float) -> np.ndarray:
        return np.stack([obj.x + radius * cos_a, np.full(n, y), obj.z + radius * sin_a], axis=1)

    if obj.shape == "cube":
        s, yaw = obj.radius, math.radians(obj.yaw)
        c, sn = math.cos(yaw), math.sin(yaw)
        corners = []
        for lx in (-s, s):
            for lz in (-s, s):
                for y in (0.0, 2 * s):
                    corners.append((obj.x + c * lx + sn * lz, y, obj.z - sn * lx + c * lz))
        return np.asarray(corners)
    if obj.shape == "cylinder":
        return np.concatenate([rim(0.0, obj.radius), rim(obj.height, obj.radius)])
    if obj.shape == "cone":
        return np.concatenate([rim(0.0, obj.radius), np.asarray([[obj.x, obj.height, obj.z]])])
    # Sphere: tangent points from the eye form a circle around the eye-centre axis.
    centre = np.asarray(obj.centre)
    axis = np.asarray(eye) - centre
    dist = float(np.linalg.norm(axis))
    axis /= dist
    rad = obj.radius
    circle_centre = centre + axis * (rad * rad / dist)
    circle_radius = rad * math.sqrt(max(0.0, 1.0 - (rad / dist) ** 2))
    helper = np.array([0.0, 1.0, 0.0]) if abs(axis[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(axis, helper)
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    return circle_centre + circle_radius * (cos_a[:, None] * u + sin_a[:, None] * v)
