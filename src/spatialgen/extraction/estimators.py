"""Which model makes which intrinsic map of a real image: one choice per intrinsic, by name.

Every estimator takes a batch of RGB images ``(B, H, W, 3)`` uint8 at the dataset's resolution
and returns maps in the project's conventions (:mod:`spatialgen.intrinsics`):

========================  ==========================================================================
``--depth``               ``scenes`` (the embedded scene estimator), ``ilora[:FOLDER]`` (Intrinsic LoRA
                          adapters; ``embedded`` by default), any transformers depth-estimation model
                          (DPT, Depth Anything, ZoeDepth: a folder or hub id), or ``none``
``--normal``              ``scenes``, ``ilora[:FOLDER]``, ``marigold:MODEL`` (diffusers' Marigold
                          normals pipeline), ``from-depth`` (weight-free: the depth map's surface,
                          back-projected through a 60-degree pinhole), or ``none``
``--segmentation``        ``panoptic:MODEL`` (a transformers universal-segmentation model: Mask2Former,
                          MaskFormer, OneFormer), ``sam:MODEL`` (a transformers SAM, prompted on a
                          grid of points), or ``none``
``--lines``               ``edges`` (weight-free: depth steps, normal creases and segment borders of
                          the other maps), ``image-edges`` (Sobel edges of the image itself), or ``none``
========================  ==========================================================================

Depth is disparity in [0, 1] per image (near = 1); normals are camera-space unit vectors (x right,
y up, z toward the camera); segmentation is an instance-id map (0 = no segment); lines are in [0, 1].
A model folder of the wrong kind is an error that names the class the choice expects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..hub import check_model_source

Batch = np.ndarray  # (B, H, W, 3) uint8

DEPTH_CHOICES = "scenes, ilora[:FOLDER], a transformers depth model (folder or hub id), none"
NORMAL_CHOICES = "scenes, ilora[:FOLDER], marigold:MODEL, from-depth, none"
SEGMENTATION_CHOICES = "panoptic:MODEL, sam:MODEL, none"
LINES_CHOICES = "edges, image-edges, none"


def _pil(images: Batch) -> list[Any]:
    from PIL import Image

    return [Image.fromarray(im) for im in images]


def _extractor(kind: str, spec: str, intrinsic: str, device: str) -> Callable[[Batch], np.ndarray]:
    """Depth or normals from the project's own extractors: the scene estimator or I-LoRA adapters."""
    from ..ilora.extract import IntrinsicExtractor

    if kind == "scenes":
        extractor = IntrinsicExtractor.load("estimator", intrinsic, lora=spec or "embedded", device=device)
    else:
        extractor = IntrinsicExtractor.load("ilora", intrinsic, lora=spec or "embedded", device=device)

    def run(images: Batch) -> np.ndarray:
        maps = [m[intrinsic] for m in extractor.extract(_pil(images))]
        if intrinsic == "depth":
            return np.stack([m[0] for m in maps]).astype(np.float32)
        return np.stack([np.moveaxis(m, 0, -1) * 2.0 - 1.0 for m in maps]).astype(np.float32)

    return run


def _split(spec: str) -> tuple[str, str]:
    kind, _, rest = spec.partition(":")
    return kind, rest


def _check_class(path: str, expected: tuple[str, ...], what: str, config_file: str = "config.json") -> None:
    """A local model folder must hold the expected class; hub ids are checked by their loaders."""
    folder = Path(path)
    if not folder.is_dir():
        return
    config = folder / config_file
    if not config.is_file():
        raise ValueError(f"{path!r} is not a {what} folder (no {config_file}); expected a {' or '.join(expected)}")
    data = json.loads(config.read_text())
    found = data.get("_class_name") or (data.get("architectures") or [data.get("model_type", "?")])[0]
    if not any(name.lower() in str(found).lower() for name in expected):
        raise ValueError(f"{path!r} holds a {found}, not a {what}; expected a {' or '.join(expected)}")


def depth_estimator(spec: str, device: str = "cpu") -> Callable[[Batch], np.ndarray] | None:
    """``(B, H, W)`` disparity in [0, 1] per image, or ``None`` for ``none``."""
    kind, rest = _split(spec)
    if spec == "none":
        return None
    if kind in ("scenes", "ilora"):
        return _extractor(kind, rest, "depth", device)
    from ..eval.detection.depth import load_depth_estimator

    _check_class(spec, ("ForDepthEstimation",), "transformers depth-estimation model")
    model = load_depth_estimator(spec, device)
    return lambda images: np.stack(model.disparity(list(images))).astype(np.float32)


def normals_from_depth(disparity: np.ndarray, fov_degrees: float = 60.0) -> np.ndarray:
    """Weight-free normals ``(B, H, W, 3)`` of disparity maps ``(B, H, W)``: the surface they imply, seen by a pinhole.

    Disparity is relative (scale and shift unknown), so depth is taken as ``1 / (0.1 + disparity)``
    and the camera as a pinhole of ``fov_degrees``: a rough but weight-free estimate, where no normal
    model is at hand. Tangents are central differences of the back-projected points.
    """
    b, h, w = disparity.shape
    depth = 1.0 / (0.1 + np.clip(disparity, 0.0, 1.0))
    focal = 0.5 * w / np.tan(np.radians(fov_degrees) / 2)
    u = (np.arange(w) - (w - 1) / 2) / focal
    v = ((h - 1) / 2 - np.arange(h)) / focal  # image rows go down, y goes up
    points = np.stack([depth * u[None, None, :], depth * v[None, :, None], -depth], axis=-1)  # camera looks down -z
    padded = np.pad(points, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    along_x = padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]
    along_up = padded[:, :-2, 1:-1] - padded[:, 2:, 1:-1]
    normal = np.cross(along_x, along_up)
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-8)
    return normal.astype(np.float32)


def marigold_normals(path: str, device: str = "cpu", steps: int = 4) -> Callable[[Batch], np.ndarray]:
    """Diffusers' Marigold normals pipeline (its frame is the project's: x right, y up, z toward the viewer)."""
    from diffusers import MarigoldNormalsPipeline

    _check_class(path, ("MarigoldNormalsPipeline",), "Marigold normals pipeline", "model_index.json")
    dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
    pipe = MarigoldNormalsPipeline.from_pretrained(path, torch_dtype=dtype, use_safetensors=True).to(device)
    pipe.set_progress_bar_config(disable=True)

    def run(images: Batch) -> np.ndarray:
        generator = torch.Generator(device="cpu").manual_seed(0)
        out = pipe(
            _pil(images),
            num_inference_steps=steps,
            ensemble_size=1,
            processing_resolution=0,  # the images' own resolution
            batch_size=len(images),
            output_type="np",
            generator=generator,
        ).prediction
        normal = np.asarray(out, dtype=np.float32)
        return normal / np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-8)

    return run


def normal_estimator(spec: str, device: str = "cpu") -> Callable[[Batch, np.ndarray | None], np.ndarray] | None:
    """``(B, H, W, 3)`` unit normals, given the images and (for ``from-depth``) their disparity."""
    kind, rest = _split(spec)
    if spec == "none":
        return None
    if spec == "from-depth":

        def from_depth(images: Batch, disparity: np.ndarray | None) -> np.ndarray:
            if disparity is None:
                raise ValueError("--normal from-depth needs a depth map: set --depth to an estimator, not none")
            return normals_from_depth(disparity)

        return from_depth
    if kind in ("scenes", "ilora"):
        run = _extractor(kind, rest, "normal", device)
        return lambda images, disparity: run(images)
    if kind == "marigold" and rest:
        run = marigold_normals(check_model_source(rest, "--normal marigold:"), device)
        return lambda images, disparity: run(images)
    raise ValueError(f"unknown --normal {spec!r}; choose one of {NORMAL_CHOICES}")


def panoptic_segmentation(path: str, device: str = "cpu") -> Callable[[Batch], np.ndarray]:
    """A transformers universal-segmentation model's panoptic output as instance ids (1, 2, ...; 0 = none)."""
    from transformers import AutoImageProcessor, AutoModelForUniversalSegmentation

    _check_class(path, ("Mask2Former", "MaskFormer", "OneFormer"), "universal-segmentation model")
    model = AutoModelForUniversalSegmentation.from_pretrained(path, use_safetensors=True).to(device).eval()
    processor = AutoImageProcessor.from_pretrained(path)
    extra = {"task_inputs": ["panoptic"]} if "oneformer" in type(model).__name__.lower() else {}

    @torch.no_grad()
    def run(images: Batch) -> np.ndarray:
        h, w = images.shape[1:3]
        out = []
        for image in _pil(images):  # one at a time: OneFormer's task input is per image
            inputs = processor(images=image, return_tensors="pt", **extra).to(device)
            result = processor.post_process_panoptic_segmentation(model(**inputs), target_sizes=[(h, w)])[0]
            segments = result["segmentation"].cpu().numpy().astype(np.int64)
            out.append(np.where(segments < 0, 0, segments))  # unlabelled pixels: -1 -> 0
        return np.stack(out)

    return run


def sam_segmentation(path: str, device: str = "cpu", grid: int = 4) -> Callable[[Batch], np.ndarray]:
    """A transformers SAM prompted with a ``grid`` x ``grid`` lattice of points: each point's best mask is one instance.

    Later points never overwrite pixels an earlier mask claimed, so masks become disjoint ids.
    """
    from transformers import SamModel, SamProcessor

    _check_class(path, ("SamModel", "sam"), "SAM model")
    model = SamModel.from_pretrained(path, use_safetensors=True).to(device).eval()
    processor = SamProcessor.from_pretrained(path)

    @torch.no_grad()
    def run(images: Batch) -> np.ndarray:
        h, w = images.shape[1:3]
        lattice = [[[(i + 0.5) * w / grid, (j + 0.5) * h / grid]] for j in range(grid) for i in range(grid)]
        out = []
        for image in _pil(images):
            inputs = processor(image, input_points=[lattice], return_tensors="pt").to(device)
            result = model(**inputs, multimask_output=False)
            masks = processor.image_processor.post_process_masks(
                result.pred_masks.cpu(), inputs["original_sizes"].cpu(), inputs["reshaped_input_sizes"].cpu()
            )[0][:, 0].numpy()
            ids = np.zeros((h, w), dtype=np.int64)
            for index, mask in enumerate(masks, start=1):
                ids[(ids == 0) & mask] = index
            out.append(ids)
        return np.stack(out)

    return run


def segmentation_estimator(spec: str, device: str = "cpu") -> Callable[[Batch], np.ndarray] | None:
    kind, rest = _split(spec)
    if spec == "none":
        return None
    if kind == "panoptic" and rest:
        return panoptic_segmentation(check_model_source(rest, "--segmentation panoptic:"), device)
    if kind == "sam" and rest:
        return sam_segmentation(check_model_source(rest, "--segmentation sam:"), device)
    raise ValueError(f"unknown --segmentation {spec!r}; choose one of {SEGMENTATION_CHOICES}")


def _sobel(channel: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude of ``(B, 1, H, W)`` maps."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
    kernels = torch.stack([kx, kx.T])[:, None]
    grad = F.conv2d(F.pad(channel, (1, 1, 1, 1), mode="replicate"), kernels)
    return grad.pow(2).sum(1, keepdim=True).sqrt()


def edges_of_maps(
    disparity: np.ndarray | None,
    normal: np.ndarray | None,
    instance: np.ndarray | None,
    depth_step: float = 0.04,
    crease_degrees: float = 30.0,
) -> np.ndarray:
    """Weight-free line maps ``(B, H, W)``: depth discontinuities, normal creases and segment borders.

    The scene world draws occluding contours and creases; these are their image-space analogues.
    """
    parts: list[np.ndarray] = []
    if disparity is not None:
        parts.append(_sobel(torch.from_numpy(disparity)[:, None]).numpy()[:, 0] > depth_step)
    if normal is not None:
        n = torch.from_numpy(normal).permute(0, 3, 1, 2)
        padded = F.pad(n, (0, 1, 0, 1), mode="replicate")
        cos_x = (padded[:, :, :-1, 1:] * padded[:, :, :-1, :-1]).sum(1)
        cos_y = (padded[:, :, 1:, :-1] * padded[:, :, :-1, :-1]).sum(1)
        limit = float(np.cos(np.radians(crease_degrees)))
        parts.append(((cos_x < limit) | (cos_y < limit)).numpy())
    if instance is not None:
        ids = np.pad(instance, ((0, 0), (0, 1), (0, 1)), mode="edge")
        parts.append((ids[:, :-1, 1:] != ids[:, :-1, :-1]) | (ids[:, 1:, :-1] != ids[:, :-1, :-1]))
    if not parts:
        raise ValueError("--lines edges needs at least one other map: set --depth, --normal or --segmentation")
    return np.logical_or.reduce(parts).astype(np.float32)


def image_edges(images: Batch, quantile: float = 0.9) -> np.ndarray:
    """Sobel edges of the grey image: the strongest ``1 - quantile`` of each image's gradients."""
    grey = torch.from_numpy(images.astype(np.float32) / 255.0).mean(-1)[:, None]
    magnitude = _sobel(grey)[:, 0]
    limit = torch.quantile(magnitude.flatten(1), quantile, dim=1)[:, None, None]
    return ((magnitude >= limit) & (magnitude > 0.02)).float().numpy()


def lines_estimator(spec: str) -> str | None:
    if spec == "none":
        return None
    if spec not in ("edges", "image-edges"):
        raise ValueError(f"unknown --lines {spec!r}; choose one of {LINES_CHOICES}")
    return spec


@dataclass
class IntrinsicsEstimator:
    """The four estimators of one extraction job, run in dependency order (depth, normals, segments, lines)."""

    depth: Callable[[Batch], np.ndarray] | None
    normal: Callable[[Batch, np.ndarray | None], np.ndarray] | None
    segmentation: Callable[[Batch], np.ndarray] | None
    lines: str | None

    @classmethod
    def build(cls, depth: str, normal: str, segmentation: str, lines: str, device: str = "cpu") -> IntrinsicsEstimator:
        lines_kind = lines_estimator(lines)
        if normal == "from-depth" and depth == "none":
            raise ValueError("--normal from-depth needs a depth map: set --depth to an estimator, not none")
        return cls(
            depth_estimator(depth, device),
            normal_estimator(normal, device),
            segmentation_estimator(segmentation, device),
            lines_kind,
        )

    def estimate(self, images: Batch) -> dict[str, np.ndarray]:
        """Every map of a batch; a map with no estimator is zeros (normals: facing the camera)."""
        b, h, w = images.shape[:3]
        disparity = self.depth(images) if self.depth is not None else None
        normal = self.normal(images, disparity) if self.normal is not None else None
        instance = self.segmentation(images) if self.segmentation is not None else None
        if self.lines == "edges":
            lines = edges_of_maps(disparity, normal, instance)
        elif self.lines == "image-edges":
            lines = image_edges(images)
        else:
            lines = np.zeros((b, h, w), np.float32)
        facing = np.zeros((b, h, w, 3), np.float32)
        facing[..., 2] = 1.0
        return {
            "depth": disparity if disparity is not None else np.zeros((b, h, w), np.float32),
            "normal": normal if normal is not None else facing,
            "instance": instance if instance is not None else np.zeros((b, h, w), np.int64),
            "lines": lines,
        }
