"""Encode a :class:`SceneSample` as named files and back (the members of a shard).

Layout per sample, webdataset style (``<key>.<field>``): ``rgb.png``, ``albedo.png``,
``shading.png``, ``instance.png``, ``lines.png`` (8-bit PNG), ``depth.npy`` (float32 metric
depth), ``normal.npy`` (float16 camera-space normals) and ``json`` (spec, annotations,
relations, captions). Arrays are read with ``allow_pickle=False``: a shard can never run code.
"""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from .annotate import ObjectAnnotation, Relation
from .spec import SceneSpec
from .world import SceneSample

FIELDS: tuple[str, ...] = (
    "rgb.png",
    "albedo.png",
    "shading.png",
    "instance.png",
    "lines.png",
    "depth.npy",
    "normal.npy",
    "json",
)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # Fixed compression settings: the same pixels always give the same bytes.
    Image.fromarray(array).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _read_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def _read_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def encode_sample(sample: SceneSample) -> dict[str, bytes]:
    return {
        "rgb.png": _png(sample.rgb),
        "albedo.png": _png(sample.albedo),
        "shading.png": _png(sample.shading),
        "instance.png": _png(sample.instance),
        "lines.png": _png(sample.lines.astype(np.uint8) * 255),
        "depth.npy": _npy(sample.depth.astype(np.float32)),
        "normal.npy": _npy(sample.normal.astype(np.float16)),
        "json": json.dumps(sample.metadata(), separators=(",", ":"), sort_keys=True).encode(),
    }


def decode_sample(files: dict[str, bytes]) -> SceneSample:
    missing = [f for f in FIELDS if f not in files]
    if missing:
        raise ValueError(f"sample is missing field(s) {missing}; the shard is damaged or not a spatialgen scene shard")
    meta = json.loads(files["json"])
    return SceneSample(
        seed=int(meta["seed"]),
        spec=SceneSpec.from_dict(meta["spec"]),
        rgb=_read_png(files["rgb.png"]),
        albedo=_read_png(files["albedo.png"]),
        shading=_read_png(files["shading.png"]),
        depth=_read_npy(files["depth.npy"]),
        normal=_read_npy(files["normal.npy"]),
        instance=_read_png(files["instance.png"]),
        lines=_read_png(files["lines.png"]) > 127,
        objects=[ObjectAnnotation.from_dict(o) for o in meta["objects"]],
        relations=[Relation.from_dict(r) for r in meta["relations"]],
        captions=dict(meta["captions"]),
    )
