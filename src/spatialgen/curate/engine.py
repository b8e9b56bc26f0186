"""Running curation over a source: shard by shard (:mod:`spatialgen.shard_jobs`), resumable, same bytes either way.

Each input shard becomes ``OUT/shards/<name>.tar`` (webdataset: ``KEY.png`` and ``KEY.json`` with
the curated captions, the source's captions and the detections) and ``OUT/reports/<name>.json``
(its counts). A shard is done when its report exists; both files are written atomically, the tar
first, so a killed job restarted keeps every finished shard and redoes none. Tar members carry
fixed metadata, so a shard's bytes depend only on its input: the local engine and Ray Data write
identical files. ``OUT/report.json`` adds the shard reports up: counts per filter, the balance of
relations, the items that could not be read.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_bytes, atomic_write_json
from ..tar_records import tar_member
from .curation import CurationRules, Curator
from .sources import CHUNK, InputShard, Item, decode_image, list_shards, read_shard

BATCH = 16


@dataclass
class CurationSettings:
    """What a worker needs to build its curator: names, not objects, so Ray can ship it to any node."""

    detector: str = "scenes"
    depth: str = "scenes"  # a depth estimator, or "none"
    vocabulary: str = "scenes"  # "scenes", "coco" or a text file (one object name a line)
    rules: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    # torch threads per shard: the same number in every engine makes the detectors' floats, and so the
    # output bytes, identical (parallelism comes from running shards side by side)
    threads: int = 1

    def vocabulary_names(self) -> list[str]:
        if self.vocabulary == "scenes":
            from ..scenes.catalog import COLOURS, SHAPES

            return [f"{c} {s}" for c in COLOURS for s in SHAPES]
        if self.vocabulary == "coco":
            from ..eval.prompts.prompt_sets import coco_classes

            return list(coco_classes())
        path = Path(self.vocabulary)
        if not path.is_file():
            raise FileNotFoundError(f"--vocabulary {self.vocabulary!r}: use scenes, coco or a text file of names")
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]

    def worker(self) -> Callable[[InputShard, Path], dict[str, Any]]:
        """What one process runs per shard (the detector and depth model loaded once)."""
        curator = self.build()
        return lambda shard, out: process_shard(shard, out, curator)

    def build(self) -> Curator:
        from ..eval.detection.depth import load_depth_estimator
        from ..eval.detection.detectors import load_detector

        depth = None if self.depth == "none" else load_depth_estimator(self.depth, self.device)
        rules = CurationRules(**self.rules)
        return Curator(load_detector(self.detector, self.device), depth, self.vocabulary_names(), rules)


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def process_shard(shard: InputShard, out: Path, curator: Curator) -> dict[str, Any]:
    """Curate one input shard into its output tar and report; returns the report."""
    counts: Counter = Counter()
    unreadable: list[str] = []
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        batch: list[tuple[Item, Any]] = []

        def flush() -> None:
            curated = curator.curate([im for _, im in batch], [it.captions for it, _ in batch], counts)
            for (item, image), result in zip(batch, curated, strict=True):
                if not result.captions:
                    counts["dropped_items"] += 1
                    continue
                counts["kept_items"] += 1
                record = {
                    "key": item.key,
                    "captions": result.captions,
                    "verified": result.verified,
                    "synthesised": result.synthesised,
                    "source_captions": item.captions,
                    "detections": result.detections,
                    "size": list(result.size),
                }
                tar_member(tar, f"{item.key}.png", _png(image))
                tar_member(tar, f"{item.key}.json", json.dumps(record, sort_keys=True).encode())
            batch.clear()

        for item in read_shard(shard):
            counts["items"] += 1
            if item.error is not None:
                counts["unreadable"] += 1
                unreadable.append(f"{item.key}: {item.error}")
                continue
            try:
                image = decode_image(item.image)
            except (OSError, ValueError) as error:
                counts["unreadable"] += 1
                unreadable.append(f"{item.key}: unreadable image ({error})")
                continue
            batch.append((item, image))
            if len(batch) == BATCH:
                flush()
        if batch:
            flush()
    for folder in ("shards", "reports"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "shards" / f"{shard.name}.tar", buffer.getvalue())
    report = {"shard": shard.name, "counts": dict(sorted(counts.items())), "unreadable": unreadable}
    atomic_write_json(out / "reports" / f"{shard.name}.json", report)
    return report


def merge_reports(out: Path, shards: list[InputShard]) -> dict[str, Any]:
    """The job's report: every shard's counts added up, relations balanced or not, unreadable items listed."""
    total: Counter = Counter()
    unreadable: list[str] = []
    for shard in shards:
        report = json.loads((out / "reports" / f"{shard.name}.json").read_text())
        total.update(report["counts"])
        unreadable += report["unreadable"]
    relations = {k.split(":", 1)[1]: v for k, v in total.items() if k.startswith("relation:")}
    counts = {k: v for k, v in sorted(total.items()) if not k.startswith("relation:")}
    pairs = (("left of", "right of"), ("above", "below"), ("in front of", "behind"))
    balance = {f"{a} / {b}": [relations.get(a, 0), relations.get(b, 0)] for a, b in pairs}
    report = {"shards": len(shards), "counts": counts, "relations": relations, "balance": balance}
    report["unreadable"] = unreadable
    atomic_write_json(out / "report.json", report)
    return report


def curate(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: CurationSettings | None = None,
    engine: str = "local",
    address: str | None = None,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
    chunk: int = CHUNK,
    scene_captions: tuple[str, ...] | None = None,
    max_shards: int | None = None,
) -> dict[str, Any]:
    """Curate every input shard of ``source`` not yet done into ``out``; returns the merged report.

    ``chunk`` is the number of images (or scenes) per input shard of a folder source;
    ``scene_captions`` the caption kinds read from a scene dataset (None: all); ``max_shards`` the
    first input shards only (a sample of a big source: a later call with more, or None, continues
    the same job, since the limit is not one of the recorded settings).
    """
    from ..fileio import ensure_writable_dir
    from ..shard_jobs import check_engine, run_shards

    settings = settings or CurationSettings()
    CurationRules(**settings.rules).validate()
    check_engine(engine)
    if max_shards is not None and max_shards <= 0:
        raise ValueError(f"max_shards must be positive (or None for all), got {max_shards}")
    shards = list_shards(source, chunk, scene_captions)[:max_shards]
    folder = ensure_writable_dir(out)
    settings_path = folder / "settings.json"
    recorded = {"source": str(Path(source).resolve()), "chunk": chunk, **asdict(settings)}
    if scene_captions is not None:
        recorded["scene_captions"] = list(scene_captions)
    if settings_path.is_file() and json.loads(settings_path.read_text()) != recorded:
        raise ValueError(f"{folder} holds a curation with other settings; choose another --out")
    atomic_write_json(settings_path, recorded)
    run_shards(shards, folder, settings, engine, address, workers, progress)
    return merge_reports(folder, shards)
