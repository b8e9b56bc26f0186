"""Sharded scene datasets: webdataset-style tar shards plus a JSON manifest.

Why tar shards: each shard is one sequential file (fast to stream from disk or object storage,
readable by the ``webdataset`` library as is), written with the standard library alone, and a
natural unit of both parallelism and resumption. Members are stored uncompressed, so a reader
can index a shard once and then seek straight to any sample.

Resumption: a shard is written to ``<name>.tmp`` and renamed when complete, and the manifest
(rewritten atomically after every shard) lists the finished ones. Re-running ``make_dataset``
with the same parameters keeps those, deletes leftover ``.tmp`` files and redoes the rest. Shards
are byte-identical whoever writes them, so a resumed dataset equals an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import tarfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..fileio import atomic_open, atomic_write_json, ensure_writable_dir
from ..tar_records import TarRecords, tar_member
from .captions import CaptionRules
from .codec import decode_sample, encode_sample
from .render import check_resolution
from .sampling import scene_seed
from .spec import SceneConfig
from .world import SceneSample, make_sample

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "spatialgen-scenes"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DatasetParams:
    """What determines a dataset's bytes; a resumed run must match these exactly."""

    n: int
    resolution: int
    seed: int
    shard_size: int = 1000
    antialias: bool = True
    config: SceneConfig = SceneConfig()
    rules: CaptionRules = CaptionRules()

    def validate(self) -> DatasetParams:
        if self.n <= 0:
            raise ValueError(f"n (number of scenes) must be positive, got {self.n}")
        if self.shard_size <= 0:
            raise ValueError(f"shard size must be positive, got {self.shard_size}")
        check_resolution(self.resolution)
        self.config.validate()
        return self

    @property
    def num_shards(self) -> int:
        return -(-self.n // self.shard_size)

    def shard_range(self, shard: int) -> range:
        return range(shard * self.shard_size, min(self.n, (shard + 1) * self.shard_size))

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "resolution": self.resolution,
            "seed": self.seed,
            "shard_size": self.shard_size,
            "antialias": self.antialias,
            "config": self.config.to_dict(),
            "caption_rules": vars(self.rules).copy(),
        }


def shard_name(shard: int) -> str:
    return f"shard-{shard:06d}.tar"


def sample_key(index: int) -> str:
    return f"{index:09d}"


def _sample_stats(sample: SceneSample) -> Counter[str]:
    stats: Counter[str] = Counter({"samples": 1, "objects": len(sample.objects)})
    stats.update(f"caption:{kind}" for kind in sample.captions)
    stats.update(f"shape:{o.shape}" for o in sample.objects)
    stats.update(f"colour:{o.colour}" for o in sample.objects)
    stats[f"floor:{sample.spec.floor.material}"] += 1
    return stats


_progress_counter: Any = None


def _init_worker(counter: Any) -> None:
    global _progress_counter
    _progress_counter = counter


def write_shard(root: Path, params: DatasetParams, shard: int) -> tuple[str, dict[str, Any]]:
    """Render and write one shard atomically; returns its manifest entry."""
    name = shard_name(shard)
    stats: Counter[str] = Counter()
    with atomic_open(root / name) as handle:
        with tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for index in params.shard_range(shard):
                sample = make_sample(
                    scene_seed(params.seed, index), params.resolution, params.config, params.antialias, params.rules
                )
                for field, data in encode_sample(sample).items():
                    tar_member(tar, f"{sample_key(index)}.{field}", data)
                stats.update(_sample_stats(sample))
                if _progress_counter is not None:
                    with _progress_counter.get_lock():
                        _progress_counter.value += 1
    entry = {"first": params.shard_range(shard).start, "count": len(params.shard_range(shard)), "stats": dict(stats)}
    return name, entry


def _load_or_create_manifest(root: Path, params: DatasetParams) -> dict[str, Any]:
    path = root / MANIFEST
    wanted = params.to_dict()
    if path.exists():
        manifest = json.loads(path.read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{path} is not a spatialgen scene manifest; choose an empty --out directory")
        if manifest["params"] != json.loads(json.dumps(wanted)):
            differing = sorted(k for k in wanted if manifest["params"].get(k) != json.loads(json.dumps(wanted[k])))
            raise ValueError(
                f"{root} already holds a scene dataset made with other parameters (differing: {differing}); "
                "re-run with the same parameters to resume it, or choose a new --out directory"
            )
        return manifest
    if any(root.glob("shard-*.tar")):
        raise ValueError(f"{root} holds shards but no {MANIFEST}; choose a new --out directory")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spatialgen_version": __version__,
        "params": wanted,
        "shards": {},
        "complete": False,
    }
    atomic_write_json(path, manifest)
    return manifest


def make_dataset(
    out: str | os.PathLike[str],
    params: DatasetParams,
    workers: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write (or finish) the dataset ``params`` describes under ``out``; returns the manifest.

    ``on_progress(done, total)`` is called with sample counts as work completes.
    """
    params = params.validate()
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    root = ensure_writable_dir(out)
    manifest = _load_or_create_manifest(root, params)
    for stale in root.glob(".shard-*.tmp"):
        stale.unlink()
    done = {name for name in manifest["shards"] if (root / name).exists()}
    manifest["shards"] = {name: manifest["shards"][name] for name in sorted(done)}
    pending = [s for s in range(params.num_shards) if shard_name(s) not in done]
    finished = sum(entry["count"] for entry in manifest["shards"].values())
    if pending:
        log.info("writing %d shard(s) to %s (%d of %d scenes already done)", len(pending), root, finished, params.n)

    def record(name: str, entry: dict[str, Any]) -> None:
        manifest["shards"][name] = entry
        manifest["shards"] = dict(sorted(manifest["shards"].items()))
        atomic_write_json(root / MANIFEST, manifest)

    if on_progress:
        on_progress(finished, params.n)
    if workers == 1 or len(pending) <= 1:
        for shard in pending:
            name, entry = write_shard(root, params, shard)
            record(name, entry)
            finished += entry["count"]
            if on_progress:
                on_progress(finished, params.n)
    else:
        _write_parallel(root, params, pending, workers, record, finished, on_progress)

    total: Counter[str] = Counter()
    for entry in manifest["shards"].values():
        total.update(entry["stats"])
    manifest["stats"] = dict(sorted(total.items()))
    manifest["complete"] = True
    atomic_write_json(root / MANIFEST, manifest)
    return manifest


def _write_parallel(
    root: Path,
    params: DatasetParams,
    pending: list[int],
    workers: int,
    record: Callable[[str, dict[str, Any]], None],
    finished: int,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    counter = context.Value("q", 0)
    with context.Pool(min(workers, len(pending)), initializer=_init_worker, initargs=(counter,)) as pool:
        results = [pool.apply_async(write_shard, (root, params, shard)) for shard in pending]
        while results:
            time.sleep(0.1)
            for result in [r for r in results if r.ready()]:
                record(*result.get())  # re-raises a worker's error here
                results.remove(result)
            if on_progress:
                on_progress(finished + counter.value, params.n)


class SceneShards(TarRecords[SceneSample]):
    """Random access to the samples of a finished dataset directory."""

    def __init__(self, root: str | os.PathLike[str], allow_incomplete: bool = False) -> None:
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.exists():
            raise FileNotFoundError(
                f"no {MANIFEST} in {str(self.root)!r}: make one with `spatialgen scenes make --out DIR`"
            )
        self.manifest = json.loads(path.read_text())
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{path} is not a spatialgen scene manifest")
        if not self.manifest["complete"] and not allow_incomplete:
            params = self.manifest["params"]
            raise ValueError(
                f"the dataset in {str(self.root)!r} is incomplete ({len(self.manifest['shards'])} of "
                f"{-(-params['n'] // params['shard_size'])} shards); finish it by re-running `spatialgen scenes make` "
                "with the same arguments, or pass allow_incomplete=True"
            )
        shards = self.manifest["shards"]
        super().__init__([self.root / name for name in shards], [entry["count"] for entry in shards.values()])

    @property
    def resolution(self) -> int:
        return int(self.manifest["params"]["resolution"])

    def decode(self, files: dict[str, bytes]) -> SceneSample:
        return decode_sample(files)
