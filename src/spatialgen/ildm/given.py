"""Maps a user hands in for I-LDM's conditioned generation (``generate --method ildm --given depth=FILE``).

The intrinsic VAE encodes all four intrinsics at once, so a partial set is completed first, the
way the data pipeline makes training maps from what it has: normals from depth
(:func:`~spatialgen.extraction.estimators.normals_from_depth`), lines from the depth, normal and
segment edges (:func:`~spatialgen.extraction.estimators.edges_of_maps`), and a missing
segmentation left at the packed value 0, the "zeroed intrinsic" the VAE was trained to fill in
(each intrinsic is zeroed with p = 0.1 in its training).

File conventions are those of ``NAME.<map>.png`` files (:mod:`spatialgen.intrinsic_files`): depth
as grey disparity (near = bright; 8 or 16 bit), normals as RGB (n + 1) / 2, segmentation coloured
with :data:`~spatialgen.intrinsics.SEGMENTATION_PALETTE` (other colours snap to the nearest one),
lines as grey with 1 (white) = line.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..intrinsics import INTRINSIC_CHANNELS, SEGMENTATION_PALETTE, Intrinsics

GIVEN_NAMES = tuple(INTRINSIC_CHANNELS)


def parse_given(spec: str) -> dict[str, Path]:
    """``"depth=a.png,segmentation=b.png"`` -> {name: path}; names are checked, files must exist."""
    files: dict[str, Path] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, sep, path = part.partition("=")
        name = name.strip()
        if not sep or not path.strip():
            raise ValueError(f"--given takes NAME=FILE pairs separated by commas, got {part!r}")
        if name not in GIVEN_NAMES:
            raise ValueError(f"--given names {', '.join(GIVEN_NAMES)}; got {name!r}")
        if name in files:
            raise ValueError(f"--given names {name} twice")
        files[name] = Path(path.strip())
    if not files:
        raise ValueError("--given needs at least one map, e.g. --given depth=depth.png")
    if "depth" not in files and "normal" not in files:
        raise ValueError("--given needs a depth or a normal map: the others alone do not fix the scene's shape")
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(f"--given file {str(path)!r} does not exist")
    return files


def _read(path: Path, size: int, channels: int, nearest: bool = False) -> np.ndarray:
    """A map file as float (C, size, size) in [0, 1]."""
    try:
        with Image.open(path) as im:
            im.load()
            picture = im.copy()
    except OSError as error:
        raise ValueError(f"--given file {str(path)!r} is not a readable image ({error})") from error
    if picture.mode in ("I;16", "I;16B", "I"):  # 16-bit grey, as NAME.depth.png is written
        array = np.asarray(picture, dtype=np.float64) / 65535.0
        picture = Image.fromarray(array.astype(np.float32), mode="F")
    else:
        picture = picture.convert("RGB" if channels == 3 else "L")
    if picture.size != (size, size):
        picture = picture.resize((size, size), Image.NEAREST if nearest else Image.BILINEAR)
    array = np.asarray(picture, dtype=np.float64)
    if picture.mode != "F":
        array = array / 255.0
    array = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    return np.clip(array, 0.0, 1.0)


def snap_to_palette(segmentation: np.ndarray) -> np.ndarray:
    """Colour maps (3, H, W) in [0, 1] with every pixel moved to its nearest palette colour."""
    palette = SEGMENTATION_PALETTE.astype(np.float64) / 255.0
    pixels = np.moveaxis(segmentation, 0, -1)
    nearest = ((pixels[..., None, :] - palette) ** 2).sum(-1).argmin(-1)
    return np.moveaxis(palette[nearest], -1, 0)


def complete_maps(
    depth: np.ndarray | None = None,
    normal: np.ndarray | None = None,
    segmentation: np.ndarray | None = None,
    lines: np.ndarray | None = None,
) -> Intrinsics:
    """A full :class:`Intrinsics` (batch 1, float32) from the maps given; see the module docstring."""
    from ..eval.metrics.intrinsic_metrics import colours_to_ids
    from ..extraction.estimators import edges_of_maps, normals_from_depth

    if depth is None and normal is None:
        raise ValueError("give a depth or a normal map")
    shape = (depth if depth is not None else normal).shape[-2:]
    for name, value, c in (("depth", depth, 1), ("normal", normal, 3), ("segmentation", segmentation, 3)):
        if value is not None and value.shape != (c, *shape):
            raise ValueError(f"the {name} map has shape {value.shape}; expected {(c, *shape)}")
    if normal is None:
        normal = (np.moveaxis(normals_from_depth(depth[None, 0])[0], -1, 0) + 1.0) * 0.5
    if lines is None:
        unit_normal = np.moveaxis(normal * 2.0 - 1.0, 0, -1)[None].astype(np.float32)
        ids = colours_to_ids(segmentation[None]) if segmentation is not None else None
        disparity = depth[None, 0].astype(np.float32) if depth is not None else None
        lines = edges_of_maps(disparity, unit_normal, ids)[0][None]
    if depth is None:
        depth = np.full((1, *shape), 0.5)  # packed 0: a zeroed (missing) intrinsic, as in VAE training
    if segmentation is None:
        segmentation = np.full((3, *shape), 0.5)  # packed 0: a zeroed (missing) intrinsic
    maps = [np.asarray(m, dtype=np.float32)[None] for m in (depth, normal, segmentation, lines)]
    return Intrinsics(*maps)


def load_given_maps(files: dict[str, str | os.PathLike[str]], size: int) -> Intrinsics:
    """The maps of ``files`` ({name: path}) at ``size`` x ``size`` pixels, completed (batch 1)."""
    channels = INTRINSIC_CHANNELS
    read = {
        name: _read(Path(path), size, channels[name], nearest=name == "segmentation") for name, path in files.items()
    }
    if "normal" in read:
        n = read["normal"] * 2.0 - 1.0
        read["normal"] = (n / np.maximum(np.linalg.norm(n, axis=0, keepdims=True), 1e-8) + 1.0) * 0.5
    if "segmentation" in read:
        read["segmentation"] = snap_to_palette(read["segmentation"])
    return complete_maps(read.get("depth"), read.get("normal"), read.get("segmentation"), read.get("lines"))
