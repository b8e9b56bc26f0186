"""``spatialgen intrinsics extract --source``: a dataset of real images into training shards with intrinsics.

The input is anything ``spatialgen curate`` reads (webdataset tars, parquet, a folder of images with
``.txt`` captions, a scene dataset), split into the same input shards. Each input shard becomes
one output shard (:mod:`spatialgen.intrinsic_shards`) and a report of its counts (images kept,
skipped as unreadable or too small, downscaled), run by :mod:`spatialgen.shard_jobs`: in this
process, across ``accelerate launch`` processes (GPUs, nodes), or on Ray Data, resumable by shard
and byte-identical whichever engine runs it. When every shard is done, the manifest lists them with
the models that made each map, and ``OUT`` is a dataset the trainers read.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_write_bytes, atomic_write_json, ensure_writable_dir
from ..intrinsic_shards import FORMAT, FORMAT_VERSION, MANIFEST, ImageIntrinsics, encode_record
from ..shard_jobs import check_engine, report_path, run_shards
from ..tar_records import tar_member
from .estimators import IntrinsicsEstimator
from .images import prepare_image


@dataclass
class ExtractionSettings:
    """What an extraction worker needs: names and numbers only, so Ray can ship it to any node."""

    resolution: int = 64
    depth: str = "scenes"
    normal: str = "scenes"
    segmentation: str = "none"
    lines: str = "edges"
    batch_size: int = 16
    device: str = "cpu"
    threads: int = 1  # torch threads per shard: the same in every engine, so the same bytes

    def validate(self) -> ExtractionSettings:
        if self.resolution < 8 or self.resolution % 8:
            raise ValueError(f"--resolution must be a multiple of 8 (the VAE's factor), got {self.resolution}")
        if self.batch_size <= 0 or self.threads <= 0:
            raise ValueError("--batch-size and threads must be positive")
        return self

    def models(self) -> dict[str, str]:
        return {"depth": self.depth, "normal": self.normal, "segmentation": self.segmentation, "lines": self.lines}

    def worker(self) -> Callable[[Any, Path], dict[str, Any]]:
        """Load the estimators once (on this process's device) and return the per-shard function."""
        device = self.device
        if device == "auto":
            from accelerate import PartialState

            device = str(PartialState().device)
        estimator = IntrinsicsEstimator.build(self.depth, self.normal, self.segmentation, self.lines, device)
        return lambda shard, out: process_shard(shard, out, estimator, self)


def process_shard(
    shard: Any, out: Path, estimator: IntrinsicsEstimator, settings: ExtractionSettings
) -> dict[str, Any]:
    """One input shard -> ``OUT/shards/<name>.tar`` and its report (written last: the shard's "done")."""
    from ..curate.sources import read_shard

    counts: Counter = Counter()
    skipped: list[str] = []
    buffer = io.BytesIO()
    pending: list[tuple[Any, Any]] = []
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:

        def flush() -> None:
            maps = estimator.estimate(np.stack([prepared.rgb for _, prepared in pending]))
            for i, (item, prepared) in enumerate(pending):
                record = ImageIntrinsics(
                    key=item.key,
                    rgb=prepared.rgb,
                    disparity=maps["depth"][i],
                    normal=maps["normal"][i],
                    instance=maps["instance"][i],
                    lines=maps["lines"][i],
                    caption_list=list(item.captions),
                    meta={"source_size": list(prepared.size), "downscaled": prepared.downscaled},
                )
                for name, data in encode_record(record).items():
                    tar_member(tar, f"{item.key}.{name}", data)
            counts["kept"] += len(pending)
            pending.clear()

        for item in read_shard(shard):
            counts["items"] += 1
            if item.error is not None:
                counts["unreadable"] += 1
                skipped.append(f"{item.key}: {item.error}")
                continue
            prepared = prepare_image(item.image, settings.resolution)
            if prepared.skipped is not None:
                counts["too_small" if prepared.skipped.startswith("too small") else "unreadable"] += 1
                skipped.append(f"{item.key}: {prepared.skipped}")
                continue
            counts["downscaled"] += int(prepared.downscaled)
            counts["no_caption"] += int(not item.captions)
            pending.append((item, prepared))
            if len(pending) == settings.batch_size:
                flush()
        if pending:
            flush()
    (out / "shards").mkdir(parents=True, exist_ok=True)
    (out / "reports").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "shards" / f"{shard.name}.tar", buffer.getvalue())
    report = {"shard": shard.name, "counts": dict(sorted(counts.items())), "skipped": skipped}
    atomic_write_json(report_path(out, shard.name), report)
    return report


def extract_dataset(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: ExtractionSettings | None = None,
    engine: str = "local",
    address: str | None = None,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
    chunk: int | None = None,
) -> dict[str, Any]:
    """Extract every input shard of ``source`` not yet done into ``out``; returns the manifest.

    Under ``accelerate launch`` every process calls this; each takes its share, and the main process
    writes the manifest once all are done.
    """
    from ..curate.sources import CHUNK, list_shards

    settings = (settings or ExtractionSettings()).validate()
    check_engine(engine)
    chunk = chunk or CHUNK
    shards = list_shards(source, chunk)
    folder = ensure_writable_dir(out)
    recorded = {"source": str(Path(source).resolve()), "chunk": chunk, **asdict(settings)}
    recorded.pop("device")  # where it runs may move between restarts (a GPU job resumed on another node)
    settings_path = folder / "settings.json"
    if settings_path.is_file() and json.loads(settings_path.read_text()) != recorded:
        raise ValueError(f"{folder} holds an extraction with other settings; choose another --out or the same flags")
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process:
        atomic_write_json(settings_path, recorded)
    run_shards(shards, folder, settings, engine, address, workers, progress)
    totals: Counter = Counter()
    skipped: list[str] = []
    for shard in shards:
        report = json.loads(report_path(folder, shard.name).read_text())
        totals.update(report["counts"])
        skipped += report["skipped"]
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "resolution": settings.resolution,
        "source": recorded["source"],
        "models": settings.models(),
        "normal_convention": "camera space, x right, y up, z toward the camera (unit vectors)",
        "depth_convention": "disparity in [0, 1] per image, near = 1",
        "shards": [f"{s.name}.tar" for s in shards],
        "counts": dict(sorted(totals.items())),
        "skipped": skipped,
        "complete": True,
    }
    if state.is_main_process:
        atomic_write_json(folder / MANIFEST, manifest)
    return manifest
