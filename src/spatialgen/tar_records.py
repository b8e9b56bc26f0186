"""Webdataset-style tar shards: byte-reproducible writing and random access by sample.

Every shard format of the project (scene datasets, extracted intrinsics, curated captions) stores
one sample as the members ``KEY.FIELD`` of a plain tar. Members are written with fixed metadata,
so a shard's bytes depend only on its contents (engines and resumed jobs can be compared byte for
byte), and read back by seeking to each member's data: an index of offsets is built once, and a
sample costs one seek and read per field, with no tar parsing in a training loop.
"""

from __future__ import annotations

import bisect
import io
import itertools
import os
import tarfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

Sample = TypeVar("Sample")
#: (shard path, {field: (data offset, size)}) for one sample.
Entry = tuple[Path, dict[str, tuple[int, int]]]


def tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """A member with fixed metadata (mtime, uid, gid 0; mode 644): a shard's bytes depend only on its contents."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
    tar.addfile(info, io.BytesIO(data))


def index_tar(path: Path) -> list[Entry]:
    """One entry per sample key, in the shard's order."""
    samples: dict[str, dict[str, tuple[int, int]]] = {}
    with tarfile.open(path, mode="r:") as tar:
        for member in tar:
            key, _, field = member.name.partition(".")
            samples.setdefault(key, {})[field] = (member.offset_data, member.size)
    return [(path, fields) for fields in samples.values()]


class TarRecords(ABC, Generic[Sample]):
    """Random access to the samples of a list of shards; subclasses say how a sample's files decode.

    Open file handles are per process (a forked DataLoader worker opens its own: shared offsets
    would interleave reads) and never pickled.
    """

    def __init__(self, shards: Sequence[Path], counts: Sequence[int] | None = None) -> None:
        """``counts``, the samples of each shard (a manifest knows them), defers indexing a shard to its
        first read: a job that reads one slice of a 50-shard dataset then indexes one shard, not 50
        (indexing parses every member header: about 4 s per 1,000 scene samples here).
        """
        self._shards = [Path(shard) for shard in shards]
        self._entries: list[list[Entry] | None]
        if counts is None:
            self._entries = [index_tar(shard) for shard in self._shards]
            counts = [len(entries) for entries in self._entries]
        elif len(counts) != len(self._shards):
            raise ValueError(f"got {len(counts)} sample counts for {len(self._shards)} shards")
        else:
            self._entries = [None] * len(self._shards)
        self._starts = [0, *itertools.accumulate(counts)]
        self._handles: dict[Path, Any] = {}
        self._pid = os.getpid()

    @abstractmethod
    def decode(self, files: dict[str, bytes]) -> Sample:
        """One sample from its fields' bytes (``{field: bytes}``): what the format stores per sample."""

    def __len__(self) -> int:
        return self._starts[-1]

    def _entry(self, index: int) -> Entry:
        shard = bisect.bisect_right(self._starts, index) - 1
        if self._entries[shard] is None:
            entries = index_tar(self._shards[shard])
            expected = self._starts[shard + 1] - self._starts[shard]
            if len(entries) != expected:
                raise ValueError(
                    f"{self._shards[shard]} holds {len(entries)} samples, but its dataset's manifest says {expected}: "
                    "the shard changed after the dataset was made; make the dataset again"
                )
            self._entries[shard] = entries
        return self._entries[shard][index - self._starts[shard]]

    def _handle(self, path: Path) -> Any:
        if os.getpid() != self._pid:
            self._handles, self._pid = {}, os.getpid()
        if path not in self._handles:
            self._handles[path] = open(path, "rb")
        return self._handles[path]

    def read_files(self, index: int) -> dict[str, bytes]:
        """The raw bytes of sample ``index``'s fields."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} out of range for a dataset of {len(self)}")
        path, members = self._entry(index % len(self))
        handle = self._handle(path)
        files = {}
        for field, (offset, size) in members.items():
            handle.seek(offset)
            files[field] = handle.read(size)
        return files

    def __getitem__(self, index: int) -> Sample:
        return self.decode(self.read_files(index))

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(len(self)))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles = {}
