"""Generating a whole prompt set to disk: a disjoint share per process, resumable, the same bytes at any scale.

VISOR alone is 25,280 prompts x 4 seeds, so a benchmark run spans GPUs and nodes and outlives
crashes. The jobs (prompt, sample, seed) are cut into batches in one fixed order, and batch b
belongs to process ``b % num_processes`` (``accelerate launch`` says how many there are and which
one this is): shares are disjoint, and every batch holds the same jobs whatever the number of
processes, so every image comes out with the same bytes (a batch's composition moves pixels by
BLAS rounding). A batch whose images all exist is skipped; one with a missing image is sampled
again whole (the same bytes) and only the missing files are written. ``generation.json`` in the
folder records what made the images, and a resume with other settings is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .fileio import atomic_write_bytes, atomic_write_json, ensure_writable_dir
from .generate import (
    GeneratedImage,
    GenerationSettings,
    check_run,
    prepare_sampling,
    sample_chunk,
    write_generated,
    write_grid,
)
from .generators import Generator
from .output_layouts import Job, Layout, make_layout, plan_jobs

logger = logging.getLogger(__name__)

RUN_RECORD = "generation.json"
GRID_LIMIT = 64  # images: above this a grid is unreadable, and a benchmark run has no use for one


@dataclass(frozen=True)
class RunReport:
    """What one process did: images written and skipped (already there) in its share, of the run's total."""

    written: int
    skipped: int
    total: int
    folder: Path


def process_share(jobs: Sequence[Job], batch_size: int, process_index: int, num_processes: int) -> list[list[Job]]:
    """The batches of process ``process_index``: batch b of the fixed cut goes to process b % num_processes."""
    if not 0 <= process_index < num_processes:
        raise ValueError(f"process {process_index} is not one of {num_processes} processes")
    batches = [list(jobs[i : i + batch_size]) for i in range(0, len(jobs), batch_size)]
    return batches[process_index::num_processes]


def run_record(records: Sequence[dict[str, Any]], n: int, seed: int, batch_size: int, layout: str, **made_by: Any):
    """What decides every image's bytes: the prompts (hashed), n, seed, batch size, layout and the settings."""
    prompts = json.dumps([r["prompt"] for r in records], ensure_ascii=False).encode("utf-8")
    return {
        "prompts": len(records),
        "prompts_sha256": hashlib.sha256(prompts).hexdigest(),
        "n": n,
        "seed": seed,
        "batch_size": batch_size,
        "layout": layout,
        **made_by,
    }


def open_run_folder(out: str | os.PathLike[str], record: dict[str, Any], resume: bool, main_process: bool) -> Path:
    """Create the output folder, or reopen one made with the same settings.

    A folder that holds another run's images is refused with or without ``resume``: writing a new
    run into it would leave the old run's files (an I-LDM sample's maps beside an InfSplign image of
    the same name), and a later ``--resume`` would trust them. With the same settings a run without
    ``resume`` makes every image again, overwriting each file it owns.
    """
    folder = ensure_writable_dir(out)
    path = folder / RUN_RECORD
    if path.is_file():
        saved = json.loads(path.read_text())
        changed = sorted(k for k in set(saved) | set(record) if saved.get(k) != record.get(k))
        if changed:
            details = ", ".join(f"{k}: {saved.get(k)!r} -> {record.get(k)!r}" for k in changed)
            raise ValueError(
                f"{folder} holds images made with other settings ({details}); write to another --out "
                "(or delete that folder), or resume with the same settings"
            )
    elif any(folder.glob("*.png")) or any(folder.glob("*/*.png")):
        raise ValueError(
            f"{folder} already holds images that no spatialgen run recorded; write to another --out (or empty it)"
        )
    if main_process:
        atomic_write_json(path, record)
    return folder


def generate_run(
    generator: Generator,
    records: Sequence[dict[str, Any]],
    out: str | os.PathLike[str],
    common: dict[str, Any],
    n: int = 1,
    seed: int = 0,
    settings: GenerationSettings | None = None,
    batch_size: int = 4,
    layout: str = "spatialgen",
    resume: bool = False,
    strict: bool = False,
    save_attention: bool = False,
    process_index: int = 0,
    num_processes: int = 1,
    progress: bool = True,
    wait_for_everyone: Any = None,
) -> RunReport:
    """Generate this process's share of ``records`` x ``n`` into ``out`` in ``layout`` (see the module doc).

    ``common`` is the metadata every image carries (model, method, settings); ``wait_for_everyone``
    (accelerate's barrier) lets the main process draw ``grid.png`` once every share is written.
    """
    settings = (settings or GenerationSettings()).validate()
    check_run(n, seed, batch_size)
    chosen = make_layout(layout, len(records), n)
    chosen.check(list(records))
    if save_attention and not chosen.extras:
        raise ValueError(f"--save-attention writes strips beside each image, which --layout {layout} has no room for")
    if not chosen.extras and getattr(generator, "co_generates_intrinsics", False):
        logger.warning("--layout %s keeps the images only: I-LDM's intrinsic maps are not written", layout)
    record = run_record(records, n, seed, batch_size, layout, **{**common, "settings": asdict(settings)})
    main = process_index == 0
    folder = open_run_folder(out, record, resume, main)
    jobs = plan_jobs(list(records), n, seed)
    mine = process_share(jobs, batch_size, process_index, num_processes)
    size = prepare_sampling(generator, [r["prompt"] for r in records], settings, min(batch_size, len(jobs)), strict)
    written = skipped = 0
    kept: list[GeneratedImage] = []
    with tqdm(total=sum(map(len, mine)), desc="generating", unit="image", disable=not progress) as bar:
        for batch in mine:
            missing = [job for job in batch if not (folder / chosen.image_path(job)).is_file()] if resume else batch
            skipped += len(batch) - len(missing)
            if missing:
                results = sample_chunk(generator, [(j.prompt, j.seed) for j in batch], settings, size, save_attention)
                for job, result in zip(batch, results, strict=True):
                    if job in missing:
                        _write_job(folder, chosen, job, result, common)
                        written += 1
                    if len(jobs) <= GRID_LIMIT:
                        kept.append(result)
            bar.update(len(batch))
    if wait_for_everyone is not None:
        wait_for_everyone()
    if main and chosen.name == "spatialgen" and num_processes == 1 and 0 < len(kept) == len(jobs):
        write_grid(kept, folder / "grid.png")
    return RunReport(written, skipped, len(jobs), folder)


def _write_job(folder: Path, layout: Layout, job: Job, result: GeneratedImage, common: dict[str, Any]) -> None:
    extra = job.record.get("details")  # per-prompt metadata (TORE's rewrite) joins the image's own
    if extra:
        result = replace(result, details={**(result.details or {}), **extra})
    for name, content in layout.prompt_files(job).items():  # the same bytes from any process: a race is harmless
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / name, content)
    write_generated(folder, layout.image_path(job), result, common, layout)
