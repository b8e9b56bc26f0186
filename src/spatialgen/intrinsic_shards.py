"""Training shards of real images with estimated intrinsics, and one reader for them and scene datasets.

``spatialgen intrinsics extract --source`` writes ``OUT/shards/<name>.tar`` (webdataset style, one
sample a key) and ``OUT/manifest.json``. Per sample:

* ``KEY.rgb.png``: the image, centre-cropped and resized to the dataset's square resolution;
* ``KEY.depth.png``: disparity in [0, 1] (near = 1, the project's convention) as 16-bit PNG;
* ``KEY.normal.npy``: float16 unit camera-space normals (x right, y up, z toward the camera), H x W x 3;
* ``KEY.instance.png``: 16-bit instance ids (0: no segment / background);
* ``KEY.lines.png``: 8-bit line map (255 = line);
* ``KEY.json``: the captions, the source key and the image's original size.

A map no estimator was asked for is stored as zeros and named ``none`` in the manifest's
``models``, which records which model made which map. :func:`open_dataset` opens either this
format or a scene-world dataset, and both give samples with ``rgb``, ``captions`` and
``intrinsics()``, so ``train vae``, ``train base``, ``train intrinsic-vae`` and ``train ildm`` read
real data unchanged.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .intrinsics import Intrinsics, colour_segmentation, normal_to_unit_range
from .tar_records import TarRecords

FORMAT = "spatialgen-intrinsics"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FIELDS = ("rgb.png", "depth.png", "normal.npy", "instance.png", "lines.png", "json")


@dataclass
class ImageIntrinsics:
    """One real image at the dataset's resolution with its estimated intrinsics."""

    key: str
    rgb: np.ndarray  # (H, W, 3) uint8
    disparity: np.ndarray  # (H, W) float32 in [0, 1], near = 1
    normal: np.ndarray  # (H, W, 3) float32 unit vectors
    instance: np.ndarray  # (H, W) int, 0 = none
    lines: np.ndarray  # (H, W) float32 in [0, 1]
    caption_list: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def resolution(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def captions(self) -> dict[str, str]:
        """Captions by kind, as scene samples give them: ``caption``, ``caption-2``, ... ("" when none)."""
        texts = self.caption_list or [""]
        return {("caption" if i == 0 else f"caption-{i + 1}"): t for i, t in enumerate(texts)}

    def intrinsics(self) -> Intrinsics:
        """The four maps in the project's convention, channel-first float32 in [0, 1]."""
        return Intrinsics(
            depth=self.disparity[None].astype(np.float32),
            normal=normal_to_unit_range(np.moveaxis(self.normal.astype(np.float32), -1, 0)),
            segmentation=np.moveaxis(colour_segmentation(self.instance), -1, 0).astype(np.float32) / 255.0,
            lines=self.lines[None].astype(np.float32),
        )


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=6)  # fixed settings: fixed bytes
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def encode_record(sample: ImageIntrinsics) -> dict[str, bytes]:
    """The files of one sample (names without the key)."""
    depth16 = np.round(np.clip(sample.disparity, 0.0, 1.0) * 65535.0).astype(np.uint16)
    instance16 = np.clip(sample.instance, 0, 65535).astype(np.uint16)
    lines8 = np.round(np.clip(sample.lines, 0.0, 1.0) * 255.0).astype(np.uint8)
    meta = {"key": sample.key, "captions": sample.caption_list, **sample.meta}
    return {
        "rgb.png": _png(np.ascontiguousarray(sample.rgb, dtype=np.uint8)),
        "depth.png": _png(depth16),
        "normal.npy": _npy(sample.normal.astype(np.float16)),
        "instance.png": _png(instance16),
        "lines.png": _png(lines8),
        "json": json.dumps(meta, sort_keys=True).encode(),
    }


def decode_record(files: dict[str, bytes]) -> ImageIntrinsics:
    def png(name: str) -> np.ndarray:
        with Image.open(io.BytesIO(files[name])) as image:
            return np.asarray(image)

    missing = [f for f in FIELDS if f not in files]
    if missing:
        raise ValueError(f"an intrinsics sample lacks {missing}; the shard is damaged: delete its report and re-run")
    meta = json.loads(files["json"])
    return ImageIntrinsics(
        key=meta.pop("key"),
        rgb=png("rgb.png"),
        disparity=png("depth.png").astype(np.float32) / 65535.0,
        normal=np.load(io.BytesIO(files["normal.npy"]), allow_pickle=False).astype(np.float32),
        instance=png("instance.png").astype(np.int64),
        lines=png("lines.png").astype(np.float32) / 255.0,
        caption_list=list(meta.pop("captions")),
        meta=meta,
    )


class IntrinsicShards(TarRecords[ImageIntrinsics]):
    """Random access to the samples of a finished ``intrinsics extract --source`` output."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(
                f"no {MANIFEST} in {str(self.root)!r}: run `spatialgen intrinsics extract --source`"
            )
        self.manifest = json.loads(path.read_text())
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{path} is not a spatialgen intrinsics manifest")
        super().__init__([self.root / "shards" / name for name in self.manifest["shards"]])

    @property
    def resolution(self) -> int:
        return int(self.manifest["resolution"])

    def decode(self, files: dict[str, bytes]) -> ImageIntrinsics:
        return decode_record(files)


def open_dataset(root: str | os.PathLike[str]) -> Any:
    """A scene-world dataset (``spatialgen scenes make``) or real images with intrinsics, by its manifest."""
    from .scenes.shards import SceneShards

    path = Path(root) / MANIFEST
    if path.is_file():
        try:
            kind = json.loads(path.read_text()).get("format")
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error})") from error
        if kind == FORMAT:
            return IntrinsicShards(root)
    return SceneShards(root)
