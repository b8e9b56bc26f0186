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

import json
import lzma
import os
import posixpath
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .keys import KeyAllocator

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
    source_key: str | None = None  # the source's own name for it, when ``key`` had to differ (curate.keys)


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
    """The items of one input shard, in a fixed order, each readable one under a shard-safe unique key."""
    readers = {"webdataset": _read_tar, "parquet": _read_parquet, "folder": _read_folder, "scenes": _read_scenes}
    keys = KeyAllocator()
    for item in readers[shard.kind](shard):
        if item.error is None:
            key = keys(item.key)
            if key != item.key:
                item.key, item.source_key = key, item.key
        yield item


def _captions_from(name: str, data: bytes) -> list[str]:
    text = data.decode("utf-8", errors="replace")
    if name.endswith(".json"):
        record = json.loads(text)
        value = next((record[c] for c in CAPTION_COLUMNS if c in record), None)
        values = value if isinstance(value, list) else [value] if value else []
        return [str(v) for v in values]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _member_key(name: str) -> tuple[str, str]:
    """(sample key, lower-case extension with its dot) of a tar member: ``./a/photo.2020.JPG`` -> (a/photo.2020, .jpg).

    Only the last suffix is the field (the files read here have one: .jpg, .txt, .json, ...), so a
    dotted stem stays one sample, and ``./`` or a leading ``/`` does not change the key.
    """
    normal = posixpath.normpath(name.replace("\\", "/")).lstrip("/")
    stem, dot, ext = normal.rpartition(".")
    if not dot or "/" in ext or not stem or stem.endswith("/"):
        return normal, ""
    return stem, "." + ext.lower()


def _tar_item(key: str, files: dict[str, bytes]) -> Item:
    image = next((files[s] for s in IMAGE_SUFFIXES if s in files), None)
    captions: list[str] = []
    try:
        for suffix in (".txt", ".json"):
            if suffix in files:
                captions += _captions_from(suffix, files[suffix])
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return Item(key, error=f"unreadable caption: {error}")
    return Item(key, image, captions, None if image is not None else "no image")


def _read_tar(shard: InputShard) -> Iterator[Item]:
    """Samples as their members stream past (webdataset keeps a sample's members together): one sample in memory."""
    key: str | None = None
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(shard.path, mode="r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                member_key, ext = _member_key(member.name)
                if member_key != key and key is not None:
                    yield _tar_item(key, files)
                    files = {}
                key = member_key
                handle = tar.extractfile(member)
                files[ext] = handle.read() if handle else b""
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as error:  # compressed tars too
        if key is not None:
            yield _tar_item(key, files)  # what came before the damage is kept
            key = None
        yield Item(f"{shard.name}/*", error=f"corrupt shard: {error}")
    if key is not None:
        yield _tar_item(key, files)


#: Parquet rows decoded at a time: a parquet file of any size is read a batch at a time.
PARQUET_BATCH = 256


def _read_parquet(shard: InputShard) -> Iterator[Item]:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ImportError("parquet sources need pyarrow: pip install 'spatialgen[scale]'") from error
    base = Path(shard.path).parent.resolve()
    i = 0
    try:
        with pq.ParquetFile(shard.path) as table:
            for batch in table.iter_batches(batch_size=PARQUET_BATCH):
                for row in batch.to_pylist():
                    yield _parquet_item(row, f"{shard.name}-{i:06d}", base)
                    i += 1
    except Exception as error:  # pyarrow raises its own kinds for a damaged file
        yield Item(f"{shard.name}/*", error=f"corrupt shard after {i} rows: {error}")


def _parquet_item(row: dict[str, Any], default_key: str, base: Path) -> Item:
    key = str(row.get("key") or default_key)
    caption = next((row[c] for c in CAPTION_COLUMNS if row.get(c)), None)
    captions = [str(caption)] if caption else []
    image = row.get("image")
    if isinstance(image, dict):
        image = image.get("bytes")
    if image is None and row.get("path"):
        path = (base / str(row["path"])).resolve()
        if not path.is_relative_to(base):  # an absolute or ../ path would read any file of the machine
            return Item(key, error=f"path {row['path']!r} leaves the parquet file's folder; store paths inside it")
        image = path.read_bytes() if path.is_file() else None
    return Item(key, image, captions, None if image is not None else "no image")


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
    """An item's image as an RGB PIL image (arrays come from the scene world, bytes from files).

    Raises :class:`~spatialgen.image_files.UnreadableImage` (a ``ValueError``) for anything that
    does not decode, a decompression bomb included.
    """
    from PIL import Image

    from ..image_files import read_rgb

    if isinstance(image, np.ndarray):
        return Image.fromarray(image)
    return read_rgb(image, "the image")
