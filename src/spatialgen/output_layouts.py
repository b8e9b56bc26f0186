"""Where generated images go on disk: our own layout, or the one a benchmark's reader expects.

Each layout maps a job (prompt line i, sample k, seed) to a file name, so that the name alone says
which prompt and sample an image is: a process can skip what is already written, several
processes never write the same file, and `spatialgen eval` (``eval/runs/image_sets.py``) pairs
every image with its prompt again:

* ``spatialgen``: ``00012-a-red-cube-seed3.png`` with its JSON sidecar (prompt, seed, settings),
  I-LDM's intrinsic maps and InfSplign's attention strips beside it;
* ``geneval``: GenEval's ``00012/metadata.jsonl`` (the prompt's record) + ``00012/samples/00003.png``;
* ``t2i-compbench``: T2I-CompBench's ``samples/<prompt>_000051.png``, numbered over the whole run
  (``i * n + k``); read back with ``--prompts`` (the prompt text names the file);
* ``visor``: ``<id>_<k>.png``, the id being VISOR's ``unique_id`` when the prompt records carry
  one (``spatialgen eval prompts visor --out visor.jsonl``), else the line number; a JSON sidecar
  beside each image keeps the pairing exact (VISOR's ids are not line numbers).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAYOUTS = ("spatialgen", "geneval", "t2i-compbench", "visor")
_MAX_NAME_BYTES = 255  # most file systems


@dataclass(frozen=True)
class Job:
    """One image to make: sample ``sample`` of prompt line ``prompt_index``, drawn with ``seed``."""

    prompt_index: int
    sample: int
    prompt: str
    seed: int
    # the prompt's record (GenEval's metadata, VISOR's id); its "details" join the image's metadata
    record: dict[str, Any] = field(compare=False)


def plan_jobs(records: list[dict[str, Any]], n: int, seed: int) -> list[Job]:
    """Every (prompt, sample) of a run in a fixed order: prompt-major, sample k drawn with ``seed + k``."""
    return [Job(i, k, r["prompt"], seed + k, r) for i, r in enumerate(records) for k in range(n)]


def slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].rstrip("-") or "prompt"


class Layout:
    """The file of each job in a run of ``prompts`` prompts x ``n`` samples."""

    name = "spatialgen"
    sidecars = True  # a JSON sidecar (prompt, seed, settings) beside each image
    extras = True  # I-LDM's maps and InfSplign's attention strips beside each image

    def __init__(self, prompts: int, n: int) -> None:
        self.prompts, self.n = prompts, n
        self.width = max(3, len(str(max(prompts - 1, 0))))

    def image_path(self, job: Job) -> Path:
        return Path(f"{job.prompt_index:0{self.width}d}-{slug(job.prompt)}-seed{job.seed}.png")

    def prompt_files(self, job: Job) -> dict[Path, bytes]:
        """Files a prompt's folder needs besides its images (identical whichever process writes them)."""
        return {}

    def check(self, records: list[dict[str, Any]]) -> None:
        """Refuse, before any sampling, prompts this layout cannot name."""


class GenEvalLayout(Layout):
    name = "geneval"
    sidecars = extras = False

    def image_path(self, job: Job) -> Path:
        return Path(f"{job.prompt_index:05d}") / "samples" / f"{job.sample:05d}.png"

    def prompt_files(self, job: Job) -> dict[Path, bytes]:
        record = {k: v for k, v in job.record.items() if k != "details"}  # GenEval's fields, not our metadata
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        return {Path(f"{job.prompt_index:05d}") / "metadata.jsonl": line.encode("utf-8")}


class T2ICompBenchLayout(Layout):
    name = "t2i-compbench"
    sidecars = extras = False

    def image_path(self, job: Job) -> Path:
        return Path("samples") / f"{job.prompt}_{job.prompt_index * self.n + job.sample:06d}.png"

    def check(self, records: list[dict[str, Any]]) -> None:
        for number, record in enumerate(records):
            prompt = record["prompt"]
            if "/" in prompt or "\0" in prompt:
                raise ValueError(
                    f"prompt {number} ({prompt!r}) cannot name a file: T2I-CompBench's layout uses the prompt text "
                    "as the file name; remove '/' from it or use --layout spatialgen"
                )
            if len(f"{prompt}_000000.png".encode()) > _MAX_NAME_BYTES:
                raise ValueError(
                    f"prompt {number} is too long to name a file ({len(prompt)} characters) in T2I-CompBench's layout; "
                    "use --layout spatialgen or geneval"
                )


_VISOR_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class VisorLayout(Layout):
    name = "visor"
    extras = False

    def image_path(self, job: Job) -> Path:
        identifier = job.record.get("index", job.prompt_index)
        return Path(f"{identifier}_{job.sample}.png")

    def check(self, records: list[dict[str, Any]]) -> None:
        """Ids name files: letters, digits, ``_`` and ``-`` only (no path), and unique as file names ("7" is 7)."""
        ids = [str(r.get("index", i)) for i, r in enumerate(records)]
        for number, identifier in enumerate(ids):
            if not _VISOR_ID.fullmatch(identifier):
                raise ValueError(
                    f"prompt record {number} has 'index' {identifier[:80]!r}: VISOR's layout names images by it, so "
                    "it must be 1-64 letters, digits, '_' or '-' (no '/', '.' or spaces); fix the record's index"
                )
        repeated = sorted(i for i, count in Counter(ids).items() if count > 1)
        if repeated:
            raise ValueError(
                f"the prompt records' 'index' fields repeat ({', '.join(repeated[:5])}): VISOR's layout names "
                "images by them, so one image would overwrite another"
            )


def check_layout(name: str) -> str:
    """``name`` if it is a layout, else an error listing them (before any model is loaded)."""
    if name not in LAYOUTS:
        raise ValueError(f"unknown --layout {name!r}; choose one of {', '.join(LAYOUTS)}")
    return name


def make_layout(name: str, prompts: int, n: int) -> Layout:
    classes = {cls.name: cls for cls in (Layout, GenEvalLayout, T2ICompBenchLayout, VisorLayout)}
    return classes[check_layout(name)](prompts, n)
