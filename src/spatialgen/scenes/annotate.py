"""Per-object annotations and spatial-relation labels, read off a render.

2D relations follow VISOR's rule (Gokhale et al. 2022) on the objects' visible-mask centroids in
image coordinates (x right, y down): A is *left of* B when x_A - x_B < 0, *right of* when > 0,
*above* when y_A - y_B < 0, *below* when > 0, with no margin; so every ordered pair of visible
objects carries one horizontal and one vertical label. 3D relations compare the median metric
depth over each object's visible mask: A is *in front of* B when depth_A < depth_B.

Each label also carries its ``separation`` (the size of the difference that decides it) and, for
2D labels, whether its axis is the pair's dominant one, so that captions can use only the
unambiguous relations while evaluations can apply any rule to the same data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .raycast import silhouette_points
from .render import SceneRender
from .spec import CameraSpec, SceneSpec

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ObjectAnnotation:
    """What an object is and where it shows. Pixel coordinates are continuous: pixel (row i,
    column j) covers [j, j + 1] x [i, i + 1]; normalised coordinates divide by the resolution."""

    index: int  # position in SceneSpec.objects
    instance_id: int  # value in the instance map (index + 1)
    shape: str
    colour: str
    size: str
    position: tuple[float, float, float]  # world-space centre of the bounding box
    camera_position: tuple[float, float, float]  # the same point in camera space
    box: Box | None  # amodal: the projected whole object, clipped to the image (pixels)
    visible_box: Box | None  # modal: the box of the visible mask (pixels)
    area: int  # visible mask pixels
    area_fraction: float
    centroid: tuple[float, float] | None  # visible-mask centroid, normalised (x right, y down)
    depth: float | None  # median metric depth over the visible mask

    @property
    def visible(self) -> bool:
        return self.area > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObjectAnnotation:
        data = dict(data)
        for key in ("position", "camera_position", "box", "visible_box", "centroid"):
            if data[key] is not None:
                data[key] = tuple(data[key])
        return cls(**data)


@dataclass(frozen=True)
class Relation:
    """``subject`` <relation> ``object`` (object indices into SceneSpec.objects)."""

    subject: int
    relation: str
    object: int
    kind: str  # "2d" or "3d"
    separation: float  # |centroid difference| on the relation's axis, or |depth difference|
    dominant: bool  # 2D: the axis with the larger centroid difference; 3D: always True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Relation:
        return cls(**data)


def project(camera: CameraSpec, points: np.ndarray, resolution: int) -> np.ndarray:
    """World points (N, 3) -> pixel coordinates (N, 2) as (x right, y down)."""
    (rx, ry, rz), (ux, uy, uz), (fx, fy, fz) = camera.basis()
    v = points - np.asarray(camera.position)
    depth = v @ np.array([fx, fy, fz])
    x = (v @ np.array([rx, ry, rz])) / depth / camera.tan_half_fov
    y = (v @ np.array([ux, uy, uz])) / depth / camera.tan_half_fov
    return np.stack([(x + 1.0) * 0.5 * resolution, (1.0 - y) * 0.5 * resolution], axis=1)


def to_camera(camera: CameraSpec, point: tuple[float, float, float]) -> tuple[float, float, float]:
    (rx, ry, rz), (ux, uy, uz), (fx, fy, fz) = camera.basis()
    px, py, pz = camera.position
    vx, vy, vz = point[0] - px, point[1] - py, point[2] - pz
    return (vx * rx + vy * ry + vz * rz, vx * ux + vy * uy + vz * uz, -(vx * fx + vy * fy + vz * fz))


def annotate_objects(spec: SceneSpec, render: SceneRender) -> list[ObjectAnnotation]:
    res = render.resolution
    counts = np.bincount(render.instance.reshape(-1), minlength=len(spec.objects) + 1)
    annotations = []
    for index, obj in enumerate(spec.objects):
        instance_id = index + 1
        area = int(counts[instance_id])
        pixels = project(spec.camera, silhouette_points(obj, spec.camera.position), res)
        x0, y0 = np.clip(pixels.min(axis=0), 0, res)
        x1, y1 = np.clip(pixels.max(axis=0), 0, res)
        box = (float(x0), float(y0), float(x1), float(y1)) if x1 > x0 and y1 > y0 else None
        visible_box = centroid = depth = None
        if area:
            rows, cols = np.nonzero(render.instance == instance_id)
            visible_box = (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))
            # Integer sums keep centroids exact: mean of pixel centres (j + 0.5, i + 0.5).
            centroid = (
                (2 * int(cols.sum()) + area) / (2.0 * area * res),
                (2 * int(rows.sum()) + area) / (2.0 * area * res),
            )
            depth = float(np.median(render.depth[rows, cols]))
        annotations.append(
            ObjectAnnotation(
                index=index,
                instance_id=instance_id,
                shape=obj.shape,
                colour=obj.colour,
                size=obj.size,
                position=obj.centre,
                camera_position=to_camera(spec.camera, obj.centre),
                box=box,
                visible_box=visible_box,
                area=area,
                area_fraction=area / float(res * res),
                centroid=centroid,
                depth=depth,
            )
        )
    return annotations


def relations_2d(a: ObjectAnnotation, b: ObjectAnnotation) -> list[Relation]:
    """VISOR-rule labels of the ordered pair (a, b); empty if either is not visible."""
    if a.centroid is None or b.centroid is None:
        return []
    dx, dy = a.centroid[0] - b.centroid[0], a.centroid[1] - b.centroid[1]
    out = []
    if dx != 0:
        out.append(Relation(a.index, "left of" if dx < 0 else "right of", b.index, "2d", abs(dx), abs(dx) > abs(dy)))
    if dy != 0:
        out.append(Relation(a.index, "above" if dy < 0 else "below", b.index, "2d", abs(dy), abs(dy) > abs(dx)))
    return out


def relations_3d(a: ObjectAnnotation, b: ObjectAnnotation) -> list[Relation]:
    """Depth-order label of the ordered pair (a, b) from median mask depths."""
    if a.depth is None or b.depth is None or a.depth == b.depth:
        return []
    dz = a.depth - b.depth
    return [Relation(a.index, "in front of" if dz < 0 else "behind", b.index, "3d", abs(dz), True)]


def all_relations(objects: list[ObjectAnnotation]) -> list[Relation]:
    """Labels of every ordered pair of visible objects, 2D then 3D per pair."""
    out: list[Relation] = []
    for a in objects:
        for b in objects:
            if a.index != b.index:
                out.extend(relations_2d(a, b))
                out.extend(relations_3d(a, b))
    return out
