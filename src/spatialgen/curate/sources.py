"""Where curation reads image-caption pairs from, one input shard at a time.

A source folder holds one of: webdataset tar shards (``KEY.jpg`` / ``.png`` / ``.webp`` with
``KEY.txt`` or ``KEY.json`` holding ``caption``), parquet files (an ``image`` column of bytes, or
of ``{"bytes": ...}`` structs, or a ``path`` column; a ``caption`` / ``text`` / ``TEXT`` column),
a folder of images with ``NAME.txt`` captions (one caption a line), or a scene-world dataset
(``manifest.json``; every caption of each scene). Each is split into input shards (a tar, a
parquet file, 256 images or scenes), the unit of work, of resumption and of parallelism.
Unreadable members never stop a job: they come through as items with an ``error``.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
CAPTION_COLUMNS = ("caption", "text", "TEXT")
CHUNK = 256


@dataclass(frozen=True)
class InputShard:
    """One unit of work: ``kind`` is webdataset, parquet, folder or scenes; ``start``/``stop`` slice folders."""

    name: str
    kind: str
    path: str
    start: int = 0
    stop: int | None = None
    captions: tuple[str, ...] | None = None  # scenes: the caption kinds read (None: all of them)


@dataclass
class Item:
    """One image with its captions, or the reason it could not be read."""

    key: str
    image: Any = None  # encoded bytes, or an (H, W, 3) uint8 array (scene world)
    captions: list[str] = field(default_factory=list)
    error: str | None = None


def list_shards(
    source: str | os.PathLike[str], chunk: int = CHUNK, scene_captions: tuple[str, ...] | None = None
) -> list[InputShard]:
    """The input shards of a source folder, in a fixed order (``chunk`` images or scenes per folder shard).

    ``scene_captions`` keeps only those caption kinds of a scene dataset (e.g. ``attributes``, ``count``:
    a source with no spatial captions, so that curation must synthesise every spatial one).
    """
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    if scene_captions is not None:
        from ..scenes.captions import CAPTION_KINDS

        unknown = [k for k in scene_captions if k not in CAPTION_KINDS]
        if unknown or not scene_captions:
            raise ValueError(
                f"scene caption kinds must be some of {', '.join(CAPTION_KINDS)}, got {list(scene_captions)}"
            )
    root = Path(source)
    if not root.is_dir():
        raise FileNotFoundError(f"--source {str(root)!r} is not a folder")
    if (root / "manifest.json").is_file():
        from ..scenes.shards import SceneShards

        n = len(SceneShards(root))
        kinds = tuple(scene_captions) if scene_captions is not None else None
        return [
            InputShard(f"scenes-{i:07d}", "scenes", str(root), i, min(i + chunk, n), kinds) for i in range(0, n, chunk)
        ]
    tars = sorted(root.glob("*.tar"))
    if tars:
        return [InputShard(p.stem, "webdataset", str(p)) for p in tars]
    parquets = sorted(root.glob("*.parquet"))
    if parquets:
        return [InputShard(p.stem, "parquet", str(p)) for p in parquets]
    images = sorted(p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if images:
        return [
            InputShard(f"folder-{i:07d}", "folder", str(root), i, min(i + chunk, len(images)))
            for i in range(0, len(images), chunk)
        ]
    raise ValueError(
        f"{str(root)!r} holds no webdataset .tar, .parquet, images or scene dataset; see `spatialgen curate --help`"
    )


def read_shard(shard: InputShard) -> Iterator[Item]:
    """The items of one input shard, in a fixed order."""
    readers = {"webdataset": _read_tar, "parquet": _read_parquet, "folder": _read_folder, "scenes": _read_scenes}
    yield from readers[shard.kind](shard)


def _captions_from(name: str, data: bytes) -> list[str]:
    text = data.decode("utf-8", errors="replace")
    if name.endswith(".json"):
        record = json.loads(text)
        value = next((record[c] for c in CAPTION_COLUMNS if c in record), None)
        values = value if isinstance(value, list) else [value] if value else []
        return [str(v) for v in values]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _read_tar(shard: InputShard) -> Iterator[Item]:
    try:
        with tarfile.open(shard.path) as tar:
            groups: dict[str, dict[str, bytes]] = {}
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.partition(".")
                handle = tar.extractfile(member)
                groups.setdefault(key, {})["." + ext.lower()] = handle.read() if handle else b""
    except (tarfile.TarError, OSError, EOFError) as error:
        yield Item(f"{shard.name}/*", error=f"corrupt shard: {error}")
        return
    for key, files in groups.items():
        image = next((files[s] for s in IMAGE_SUFFIXES if s in files), None)
        captions: list[str] = []
        try:
            for suffix in (".txt", ".json"):
                if suffix in files:
                    captions += _captions_from(suffix, files[suffix])
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            yield Item(key, error=f"unreadable caption: {error}")
            continue
        yield Item(key, image, captions, None if image is not None else "no image")


def _read_parquet(shard: InputShard) -> Iterator[Item]:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ImportError("parquet sources need pyarrow: pip install 'spatialgen[scale]'") from error
    try:
        table = pq.read_table(shard.path).to_pylist()
    except Exception as error:  # pyarrow raises its own kinds for a damaged file
        yield Item(f"{shard.name}/*", error=f"corrupt shard: {error}")
        return
    base = Path(shard.path).parent
    for i, row in enumerate(table):
        key = str(row.get("key", f"{shard.name}-{i:06d}"))
        caption = next((row[c] for c in CAPTION_COLUMNS if row.get(c)), None)
        image = row.get("image")
        if isinstance(image, dict):
            image = image.get("bytes")
        if image is None and row.get("path"):
            path = base / str(row["path"])
            image = path.read_bytes() if path.is_file() else None
        yield Item(key, image, [str(caption)] if caption else [], None if image is not None else "no image")


def _read_folder(shard: InputShard) -> Iterator[Item]:
    root = Path(shard.path)
    names = sorted(p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[shard.start : shard.stop]
    for name in names:
        path = root / name
        text = path.with_suffix(".txt")
        captions = _captions_from(".txt", text.read_bytes()) if text.is_file() else []
        yield Item(path.stem, path.read_bytes(), captions)


def _read_scenes(shard: InputShard) -> Iterator[Item]:
    from ..scenes.shards import SceneShards

    shards = SceneShards(shard.path)
    try:
        for i in range(shard.start, shard.stop if shard.stop is not None else len(shards)):
            sample = shards[i]
            kept = [t for k, t in sample.captions.items() if shard.captions is None or k in shard.captions]
            yield Item(f"scene-{i:07d}", np.ascontiguousarray(sample.rgb), kept)
    finally:
        shards.close()


def decode_image(image: Any) -> Any:
    """An item's image as an RGB PIL image (arrays come from the scene world, bytes from files)."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        return Image.fromarray(image)
    with Image.open(io.BytesIO(image)) as im:
        im.load()
        return im.convert("RGB")
