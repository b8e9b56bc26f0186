"""Which prompt each image to evaluate was generated from.

Generators lay their outputs out in different ways; an evaluation must pair every image with
its prompt (and the images of one prompt with each other, for VISOR_n) without guessing. We
read, in this order of preference:

1. our own JSON sidecars (``spatialgen generate`` writes ``NAME.json`` beside ``NAME.png``);
2. GenEval's layout: ``OUTDIR/00012/metadata.jsonl`` + ``OUTDIR/00012/samples/0000.png``;
3. with a prompt file (``--prompts``, text with one prompt per line or JSONL with a ``prompt``
   field): an image whose name starts with the prompt's zero-based line number
   (``00012_3.png``, ``12-0.png``) or whose folder is that number, or an image named after the
   prompt text with a sample number (T2I-CompBench's ``a dog on the left of a cat_000003.png``).

An image that none of these pairs with a prompt is an error that names it: a silently dropped
image would bias every score.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...intrinsic_files import is_map_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
#: Files our own tools write beside generated images that are not samples (intrinsic maps neither).
NOT_SAMPLES = ("grid.png",)
NOT_SAMPLE_SUFFIXES = (".attention.png",)  # InfSplign's attention strips (spatialgen generate --save-attention)
_LEADING_INDEX = re.compile(r"^(\d+)(?:[_\-.]|$)")
_TRAILING_SAMPLE = re.compile(r"^(.*)_(\d+)$")


@dataclass(frozen=True)
class EvalImage:
    """One image to score: where it is, its prompt, and which prompt (images of a prompt share the id)."""

    path: Path
    prompt: str
    prompt_id: int
    seed: int | None = None
    record: dict[str, Any] = field(default_factory=dict, compare=False)  # the prompt's structured record, if any


def read_prompt_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Prompt records from a text file (one per line) or a JSONL file (objects with a ``prompt`` field)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {str(path)!r} does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    jsonl = path.suffix == ".jsonl"
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if jsonl:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number} is not valid JSON: {error}") from error
            if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                raise ValueError(f'{path}:{number} needs a "prompt" string field')
            records.append(record)
        else:
            records.append({"prompt": line.strip()})
    if not records:
        raise ValueError(f"prompt file {str(path)!r} has no prompts")
    return records


def list_images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.name not in NOT_SAMPLES
        and not p.name.endswith(NOT_SAMPLE_SUFFIXES)
        and not is_map_file(p)
        and p.is_file()
    )


def _sidecar(path: Path) -> dict[str, Any] | None:
    side = path.with_suffix(".json")
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("prompt"), str) else None


def _geneval_record(path: Path) -> dict[str, Any] | None:
    if path.parent.name != "samples":
        return None
    metadata = path.parent.parent / "metadata.jsonl"
    if not metadata.is_file():
        return None
    first = metadata.read_text(encoding="utf-8").strip().splitlines()
    return json.loads(first[0]) if first else None


def collect_images(images: str | os.PathLike[str], prompts: str | os.PathLike[str] | None = None) -> list[EvalImage]:
    """Every image under ``images`` with its prompt; see the module docstring for the layouts read."""
    folder = Path(images)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} does not exist")
    files = list_images(folder)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {str(folder)!r}")
    records = read_prompt_records(prompts) if prompts is not None else None
    by_text: dict[str, int] = {}
    if records is not None:
        for i, r in enumerate(records):
            by_text.setdefault(r["prompt"], i)
    found: list[EvalImage] = []
    unmatched: list[Path] = []
    for path in files:
        side = _sidecar(path)
        prompt, record, seed, prompt_id = None, {}, None, None
        if side is not None:
            prompt, seed = side["prompt"], side.get("seed")
        elif (geneval := _geneval_record(path)) is not None:
            prompt, record = geneval["prompt"], geneval
            if path.parent.parent.name.isdigit():
                prompt_id = int(path.parent.parent.name)
        if records is not None:
            if prompt is not None:
                prompt_id = by_text.get(prompt, prompt_id)
                if prompt not in by_text:
                    raise ValueError(f"{path} was made from {prompt!r}, which is not in the prompt file {prompts}")
            else:
                prompt_id = _index_from_name(path, folder, by_text, len(records))
            if prompt_id is None:
                unmatched.append(path)
                continue
            record = {**records[prompt_id], **record}
            prompt = records[prompt_id]["prompt"]
        elif prompt is None:
            unmatched.append(path)
            continue
        found.append(EvalImage(path, prompt, -1 if prompt_id is None else prompt_id, seed, record))
    if unmatched:
        shown = ", ".join(str(p.relative_to(folder)) for p in unmatched[:5])
        hint = (
            "name images by prompt line number (00012_0.png) or prompt text (PROMPT_000000.png)"
            if records is not None
            else "give --prompts FILE, or generate with `spatialgen generate`, which writes JSON sidecars"
        )
        raise ValueError(
            f"{len(unmatched)} image(s) have no prompt ({shown}{', ...' if len(unmatched) > 5 else ''}): {hint}"
        )
    return _number_prompts(found, records is not None)


def _index_from_name(path: Path, root: Path, by_text: dict[str, int], n: int) -> int | None:
    match = _LEADING_INDEX.match(path.stem)
    if match and int(match.group(1)) < n:
        return int(match.group(1))
    for parent in path.relative_to(root).parents:
        if parent.name.isdigit() and int(parent.name) < n:
            return int(parent.name)
    match = _TRAILING_SAMPLE.match(path.stem)
    if match and match.group(1) in by_text:
        return by_text[match.group(1)]
    return by_text.get(path.stem)


def _number_prompts(found: list[EvalImage], numbered: bool) -> list[EvalImage]:
    """Without a prompt file, prompts are numbered by first appearance (files are sorted, so stably)."""
    if numbered:
        return sorted(found, key=lambda e: (e.prompt_id, str(e.path)))
    ids: dict[str, int] = {}
    out = []
    for e in found:
        pid = ids.setdefault(e.prompt, len(ids))
        out.append(EvalImage(e.path, e.prompt, pid, e.seed, e.record))
    return out
