"""The render is exactly consistent with the 3D scene: geometry, occlusion, shading, lines."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from spatialgen.scenes import SceneSpec, render, sample_scene, scene_seed
from spatialgen.scenes.annotate import annotate_objects, project
from spatialgen.scenes.render import PARTS_PER_INSTANCE, check_resolution
from spatialgen.scenes.spec import CameraSpec, FloorSpec, LightSpec, ObjectSpec

SEEDS = [scene_seed(7, i) for i in range(6)]
RES = 96


@pytest.fixture(scope="module")
def scenes() -> list[tuple[SceneSpec, object]]:
    return [(spec, render(spec, RES)) for spec in (sample_scene(s) for s in SEEDS)]


def camera_rays_cam(camera: CameraSpec, res: int) -> np.ndarray:
    """Ray directions in camera space (x right, y up, z toward the camera), with z = -1."""
    c = (np.arange(res) + 0.5) * (2.0 / res) - 1.0
    x = np.tile(c, (res, 1)) * camera.tan_half_fov
    y = -np.tile(c[:, None], (1, res)) * camera.tan_half_fov
    return np.stack([x, y, -np.ones_like(x)], axis=-1)


def planar(spec: SceneSpec, part: np.ndarray) -> np.ndarray:
    """Pixels on flat surfaces: the floor, cube faces, cylinder top caps."""
    instance, face = part // PARTS_PER_INSTANCE, part % PARTS_PER_INSTANCE
    shapes = np.array(["floor"] + [o.shape for o in spec.objects])[instance]
    return (instance == 0) | (shapes == "cube") | ((shapes == "cylinder") & (face == 1))


def test_depth_agrees_with_normals_on_flat_faces(scenes) -> None:
    errors = []
    for spec, r in scenes:
        points = camera_rays_cam(spec.camera, RES) * r.depth[..., None].astype(np.float64)
        horizontal = points[1:-1, 2:] - points[1:-1, :-2]
        vertical = points[:-2, 1:-1] - points[2:, 1:-1]
        n = np.cross(horizontal, vertical)
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        part = r.part
        same = np.ones((RES - 2, RES - 2), bool)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                same &= part[1 + di : RES - 1 + di, 1 + dj : RES - 1 + dj] == part[1:-1, 1:-1]
        keep = same & planar(spec, part)[1:-1, 1:-1]
        cos = np.sum(n * r.normal[1:-1, 1:-1], axis=-1)[keep]
        errors.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    errors = np.concatenate(errors)
    assert errors.size > 10_000
    assert np.median(errors) < 0.05 and errors.max() < 1.0


def test_normals_are_unit_and_face_the_viewer(scenes) -> None:
    for spec, r in scenes:
        n = r.normal.astype(np.float64)
        assert np.allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-5)
        facing = np.sum(n * camera_rays_cam(spec.camera, RES), axis=-1)
        assert (facing < 0).all()


def test_visible_masks_lie_in_projected_boxes_and_fill_them_when_unoccluded(scenes) -> None:
    whole_errors = []
    for spec, r in scenes:
        for ann in annotate_objects(spec, r):
            assert ann.area > 0 and ann.box is not None and ann.visible_box is not None
            x0, y0, x1, y1 = ann.box
            v0, w0, v1, w1 = ann.visible_box
            assert v0 >= math.floor(x0) and w0 >= math.floor(y0)
            assert v1 <= math.ceil(x1) and w1 <= math.ceil(y1)
            if r.unoccluded_pixels[ann.index] == ann.area:  # nothing hides it
                whole_errors.extend([abs(v0 - x0), abs(w0 - y0), abs(v1 - x1), abs(w1 - y1)])
    # Pixel-centre sampling misses at most the sub-pixel-wide tips (a cone's apex).
    assert len(whole_errors) >= 20
    assert max(whole_errors) <= 2.0 and np.mean(whole_errors) < 0.6


def test_occlusion_order_agrees_with_depth(scenes) -> None:
    occluded_pixels = 0
    for spec, r in scenes:
        for k, obj in enumerate(spec.objects, start=1):
            alone = render(dataclasses.replace(spec, objects=(obj,)), RES)
            covered = alone.instance == 1
            # Where the object shows, the full render saw exactly the same surface.
            shown = r.instance == k
            assert np.array_equal(r.depth[shown], alone.depth[shown])
            # Where something else shows over it, that thing is nearer.
            hidden = covered & (r.instance != k)
            assert (r.instance[hidden] != 0).all(), "the floor never hides an object"
            assert (r.depth[hidden] < alone.depth[hidden]).all()
            occluded_pixels += int(hidden.sum())
    assert occluded_pixels > 0


def test_rgb_is_albedo_times_shading_off_the_antialiased_edges(scenes) -> None:
    for spec, r in scenes:
        product = np.clip(r.albedo * r.shading[..., None], 0, 1)
        plain = render(spec, RES, antialias=False)
        assert np.allclose(plain.rgb, product, atol=1e-6)
        differs = np.any(r.rgb != plain.rgb, axis=-1)
        boundary = np.zeros_like(differs)
        boundary[:, 1:] |= r.part[:, 1:] != r.part[:, :-1]
        boundary[:, :-1] |= r.part[:, 1:] != r.part[:, :-1]
        boundary[1:] |= r.part[1:] != r.part[:-1]
        boundary[:-1] |= r.part[1:] != r.part[:-1]
        boundary[1:, 1:] |= r.part[1:, 1:] != r.part[:-1, :-1]
        boundary[:-1, :-1] |= r.part[1:, 1:] != r.part[:-1, :-1]
        boundary[1:, :-1] |= r.part[1:, :-1] != r.part[:-1, 1:]
        boundary[:-1, 1:] |= r.part[1:, :-1] != r.part[:-1, 1:]
        assert differs.any() and not (differs & ~boundary).any()


def test_lines_trace_every_part_boundary_and_nothing_else(scenes) -> None:
    for spec, r in scenes:
        lines, part = r.lines, r.part
        near_boundary = np.zeros_like(lines)
        for a, b in (
            ((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
            ((slice(1, None),), (slice(None, -1),)),
        ):
            diff = part[a] != part[b]
            near_boundary[a] |= diff
            near_boundary[b] |= diff
            assert (lines[a] | lines[b])[diff].all(), "every boundary pair has a line pixel"
        assert not (lines & ~near_boundary).any()
        for k in range(1, len(spec.objects) + 1):
            assert lines[r.instance == k].any(), "every visible object has a contour"


def _one_cube_scene() -> SceneSpec:
    return SceneSpec(
        floor=FloorSpec("stone", (0.6, 0.6, 0.6), (0.6, 0.6, 0.6), 1.0, 0.0, 0.0),
        objects=(ObjectSpec("cube", "red", "large", 0.0, 0.0, 0.0, 0.62),),
        camera=CameraSpec(elevation=60.0, azimuth=0.0, distance=7.0, fov=40.0, target=(0.0, 0.0, 0.0)),
        light=LightSpec(elevation=45.0, azimuth=90.0, ambient=0.3),  # light from +x
    )


def test_cast_shadow_falls_away_from_the_light_with_known_shading() -> None:
    spec = _one_cube_scene()
    r = render(spec, 128, antialias=False)
    # The cube (height 1.24) shadows the floor from x = -0.62 to x = -1.86 behind it (45 degrees).
    shadowed, lit = np.array([[-1.2, 0.0, 0.0]]), np.array([[1.5, 0.0, 0.0]])
    (sx, sy), (lx, ly) = project(spec.camera, shadowed, 128)[0], project(spec.camera, lit, 128)[0]
    assert r.instance[int(sy), int(sx)] == 0 and r.instance[int(ly), int(lx)] == 0
    assert r.shading[int(sy), int(sx)] == pytest.approx(0.3, abs=1e-6)
    assert r.shading[int(ly), int(lx)] == pytest.approx(0.3 + 0.7 * math.sin(math.radians(45.0)), abs=1e-6)


@pytest.mark.parametrize("resolution", [64, 128, 256])
def test_renders_at_each_supported_resolution(resolution: int) -> None:
    r = render(sample_scene(SEEDS[0]), resolution)
    assert r.rgb.shape == (resolution, resolution, 3) and r.depth.shape == (resolution, resolution)
    assert r.rgb.dtype == np.float32 and 0.0 <= r.rgb.min() and r.rgb.max() <= 1.0


@pytest.mark.parametrize("bad", [0, -8, 12, 63, 64.0, True])
def test_bad_resolutions_are_refused_with_a_clear_message(bad) -> None:
    with pytest.raises(ValueError, match="resolution must be"):
        check_resolution(bad)
