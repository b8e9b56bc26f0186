"""An evaluation's output folder: resumable per-image records, never-overwritten final results.

Long evaluations (thousands of images through a detector) must survive an interruption, and a
finished evaluation's numbers must never be replaced by a later run that happened to name the
same folder. So a run folder holds:

* ``settings.json``: what was evaluated and how; a later run into the same folder must match it;
* ``records.jsonl``: one line per scored image, appended and flushed as the run goes, read back
  on resume (a torn last line from a crash is ignored and redone);
* ``results.json``: written once, atomically, at the end; its presence marks the run finished,
  and a finished run folder is refused as an output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ...fileio import atomic_write_json, ensure_writable_dir

SETTINGS = "settings.json"
RECORDS = "records.jsonl"
RESULTS = "results.json"
REPORT = "report.html"


class FinishedRunError(FileExistsError):
    pass


class RunFolder:
    """Open ``path`` for an evaluation with ``settings``; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str], settings: dict[str, Any]) -> None:
        self.path = Path(path)
        if (self.path / RESULTS).exists():
            raise FinishedRunError(
                f"{str(self.path)!r} already holds a finished evaluation ({RESULTS}); results are never "
                "overwritten: choose another --out"
            )
        ensure_writable_dir(self.path)
        settings = json.loads(json.dumps(settings))  # the JSON form, so that comparison is like for like
        previous = self.path / SETTINGS
        if previous.exists():
            old = json.loads(previous.read_text(encoding="utf-8"))
            if old != settings:
                changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
                raise ValueError(
                    f"{str(self.path)!r} holds an unfinished evaluation with other settings ({', '.join(changed)}); "
                    "resume it with the same settings or choose another --out"
                )
        else:
            atomic_write_json(previous, settings)
        self.settings = settings
        self.records = self._read_records()

    def _read_records(self) -> dict[str, dict[str, Any]]:
        path = self.path / RECORDS
        records: dict[str, dict[str, Any]] = {}
        if not path.exists():
            return records
        text = path.read_text(encoding="utf-8")
        good = 0
        for line in text.splitlines(keepends=True):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break  # a line torn by a crash: it and anything after it are redone
            if not line.endswith("\n"):
                break
            records[record["key"]] = record
            good += len(line.encode("utf-8"))
        if good != len(text.encode("utf-8")):
            with open(path, "r+b") as handle:
                handle.truncate(good)
        return records

    def done(self, key: str) -> bool:
        return key in self.records

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Add records (each with a unique ``key``) and flush them to disk before returning."""
        lines = []
        for record in records:
            if "key" not in record:
                raise ValueError("every record needs a 'key'")
            self.records[record["key"]] = record
            lines.append(json.dumps(record, sort_keys=True) + "\n")
        if not lines:
            return
        with open(self.path / RECORDS, "a", encoding="utf-8") as handle:
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())

    def finish(self, results: dict[str, Any]) -> Path:
        """Write the final results once; after this the folder is closed to further runs."""
        path = self.path / RESULTS
        if path.exists():
            raise FinishedRunError(f"{str(path)!r} exists; results are never overwritten")
        atomic_write_json(path, {**results, "settings": self.settings})
        return path


def read_results(run: str | os.PathLike[str]) -> dict[str, Any]:
    """The results of a finished run folder (or of a results.json file)."""
    path = Path(run)
    path = path / RESULTS if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no finished evaluation at {str(run)!r} (expected {RESULTS})")
    return json.loads(path.read_text(encoding="utf-8"))
