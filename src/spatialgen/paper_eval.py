"""``spatialgen eval paper``: the I-LDM paper's evaluation (its Table 1) in one resumable command.

Rows: the base model, I-LDM with each schedule asked for (Drop and Gaussian by default), and any
baseline whose images the user made elsewhere (an LDM3D-style model: a folder of images with
``spatialgen`` sidecars or a prompt file, as ``eval quality`` reads). Each generated row samples
the same prompts and seeds (Parti prompts by default, the paper's "Multi" set, or a file) through
:func:`spatialgen.generation_run.generate_run`, so a large run resumes after a crash and spreads
over ``accelerate launch`` processes. Columns: CMMD against the user's reference images (or the
embedded model's held-out renders), CLIP score, HPSv2 and ImageReward (each when its model is
given), and the hands experiment: the share of images of hand prompts in which MediaPipe finds
a hand, for the base, I-LDM, and I-LDM with an image-domain LoRA when one is given.

Everything lands in ``OUT``: ``images/<row>/`` and ``hands/<row>/``, one ``eval quality`` run per
row under ``quality/<row>/``, and ``results.json`` + ``report.html`` with the table.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .fileio import atomic_write_bytes, atomic_write_json, ensure_writable_dir

PROMPT_SETS = ("parti", "multi")


@dataclass
class PaperEvalSettings:
    """What ``eval paper`` compares and measures (saved in ``results.json``)."""

    model: str = "embedded"  # the base model
    ildm: str = "embedded"  # the I-LDM pipeline folder ("embedded": the shipped one)
    prompts: str = "parti"  # parti, multi, or a prompt file
    n_prompts: int | None = 200  # the first N prompts (None: all)
    seeds: int = 1
    seed: int = 0
    steps: int = 25
    guidance: float = 7.5
    batch_size: int = 4
    schedules: tuple[str, ...] = ("drop", "gaussian")
    baselines: dict[str, str] = field(default_factory=dict)  # row name -> folder of images made elsewhere
    reference: str = "scenes"  # CMMD reference: a folder of real images, or the embedded held-out renders
    clip: str | None = None  # CLIP model for CMMD
    scene_features: bool = True  # CMMD / Frechet in the scene recogniser's features (the embedded model)
    clip_score: str | None = None
    hps: str | None = None
    imagereward: str | None = None
    hand_model: str | None = None  # MediaPipe hand_landmarker.task: the hands experiment
    hand_prompts: int = 50
    image_lora: str | None = None  # an SD LoRA for I-LDM's image domain (the hands experiment's third row)
    device: str = "cpu"

    def validate(self) -> PaperEvalSettings:
        if self.prompts not in PROMPT_SETS and not Path(self.prompts).is_file():
            raise ValueError(f"--prompts must be {', '.join(PROMPT_SETS)} or a prompt file, got {self.prompts!r}")
        if self.n_prompts is not None and self.n_prompts <= 0:
            raise ValueError(f"--n-prompts must be positive, got {self.n_prompts}")
        if self.seeds <= 0 or self.steps <= 0 or self.batch_size <= 0 or self.hand_prompts <= 0:
            raise ValueError("--seeds, --steps, --batch-size and --hand-prompts must be positive")
        for name, folder in self.baselines.items():
            if not Path(folder).is_dir():
                raise FileNotFoundError(f"baseline {name!r}: {folder!r} is not a folder of images")
        if self.hand_model is not None and not Path(self.hand_model).is_file():
            raise FileNotFoundError(
                f"--hand-model {self.hand_model!r} is not a file; give MediaPipe's hand_landmarker.task "
                "(no wheel ships it)"
            )
        if self.image_lora is not None and not Path(self.image_lora).exists():
            raise FileNotFoundError(f"--image-lora {self.image_lora!r} does not exist")
        return self


def prompt_records(settings: PaperEvalSettings) -> list[dict[str, Any]]:
    """The evaluation prompts as records (``{"prompt": ...}`` plus the set's own fields)."""
    from .eval.prompts.prompt_sets import multi_prompts, parti_prompts
    from .eval.runs.image_sets import read_prompt_records

    if settings.prompts == "parti":
        records = [{"prompt": p.prompt, "category": p.category, "challenge": p.challenge} for p in parti_prompts()]
    elif settings.prompts == "multi":
        records = [{"prompt": p.prompt} for p in multi_prompts(settings.n_prompts or 1000)]
    else:
        records = read_prompt_records(settings.prompts)
    return records[: settings.n_prompts] if settings.n_prompts else records


def hand_records(settings: PaperEvalSettings) -> list[dict[str, Any]]:
    """Parti prompts about hands (the paper's hand prompts are of this kind), the first ``hand_prompts``."""
    from .eval.metrics.hands import is_hand_prompt
    from .eval.prompts.prompt_sets import parti_prompts

    found = [{"prompt": p.prompt} for p in parti_prompts() if is_hand_prompt(p.prompt)]
    return found[: settings.hand_prompts]


def hand_rows(settings: PaperEvalSettings) -> dict[str, tuple[str, str, str | None, str | None]]:
    """The hands experiment's rows: base, I-LDM (first schedule), and I-LDM with the image-domain LoRA if given."""
    schedule = settings.schedules[0] if settings.schedules else "drop"
    rows: dict[str, tuple[str, str, str | None, str | None]] = {
        "base": ("sd", settings.model, None, None),
        f"I-LDM {schedule}": ("ildm", settings.ildm, schedule, None),
    }
    if settings.image_lora is not None:
        rows[f"I-LDM {schedule} + image LoRA"] = ("ildm", settings.ildm, schedule, settings.image_lora)
    return rows


def generated_rows(settings: PaperEvalSettings) -> dict[str, tuple[str, str, str | None]]:
    """Row name -> (method, model, schedule) of every row this command samples itself."""
    rows: dict[str, tuple[str, str, str | None]] = {"base": ("sd", settings.model, None)}
    for schedule in settings.schedules:
        rows[f"I-LDM {schedule}"] = ("ildm", settings.ildm, schedule)
    return rows


def sample_row(
    settings: PaperEvalSettings,
    method: str,
    model: str,
    schedule: str | None,
    records: list[dict[str, Any]],
    folder: Path,
    image_lora: str | None = None,
) -> Path:
    """Generate (or finish) one row's images in ``folder``; returns it."""
    from accelerate import PartialState

    from .generate import GenerationSettings
    from .generation_run import generate_run
    from .generators import load_generator

    generator = load_generator(method, model, device=settings.device, schedule=schedule)
    if image_lora is not None:
        generator.pipe.load_image_lora(image_lora)
    state = PartialState()
    common = {"model": model, "method": method, "schedule": schedule, "image_lora": image_lora}
    generate_run(
        generator,
        records,
        folder,
        common,
        n=settings.seeds,
        seed=settings.seed,
        settings=GenerationSettings(steps=settings.steps, guidance=settings.guidance),
        batch_size=settings.batch_size,
        resume=True,
        process_index=state.process_index,
        num_processes=state.num_processes,
        progress=state.is_main_process,
        wait_for_everyone=state.wait_for_everyone,
    )
    return folder


def run_paper_eval(settings: PaperEvalSettings, out: str | os.PathLike[str]) -> dict[str, Any]:
    """Sample every row, score it, and write ``results.json`` and ``report.html``; returns the results."""
    from accelerate import PartialState

    from .eval.runs.image_sets import list_images
    from .eval.runs.report import render_comparison

    settings.validate()
    folder = ensure_writable_dir(out)
    records = prompt_records(settings)
    image_folders: dict[str, Path] = {}
    for name, (method, model, schedule) in generated_rows(settings).items():
        image_folders[name] = sample_row(settings, method, model, schedule, records, folder / "images" / _slug(name))
    image_folders.update({name: Path(path) for name, path in settings.baselines.items()})
    hand_folders: dict[str, Path] = {}
    if settings.hand_model is not None:  # sampled by every process (each its share), scored once below
        hands = hand_records(settings)
        for name, (method, model, schedule, lora) in hand_rows(settings).items():
            hand_folders[name] = sample_row(
                settings, method, model, schedule, hands, folder / "hands" / _slug(name), lora
            )
    state = PartialState()
    if not state.is_main_process:  # scoring runs once; the other processes only sampled their shares
        return {}
    table: dict[str, dict[str, float]] = {}
    for name, images in image_folders.items():
        table[name] = quality_row(settings, images, folder / "quality" / _slug(name))
    if hand_folders:
        from .eval.metrics.hands import HandDetector, hand_detection_rate

        detector = HandDetector(settings.hand_model)
        for name, made in hand_folders.items():
            table.setdefault(name, {}).update(hand_detection_rate(detector.count, list_images(made)))
    results = {
        "rows": list(table),  # the table's row order (JSON objects are written with sorted keys)
        "table": table,
        "prompts": {"set": settings.prompts, "count": len(records), "seeds": settings.seeds},
        "settings": asdict(settings),
    }
    atomic_write_json(folder / "results.json", results)
    page = render_comparison({name: {"Table 1": row} for name, row in table.items()}, "I-LDM paper evaluation")
    atomic_write_bytes(folder / "report.html", page.encode("utf-8"))
    return results


def quality_row(settings: PaperEvalSettings, images: Path, run: Path) -> dict[str, float]:
    """One row's CMMD / CLIP / preference scores: an ``eval quality`` run, reused when it has finished already."""
    from .eval.runs.run_folder import RESULTS, read_results
    from .eval.runs.runners import evaluate_quality_folder

    if (run / RESULTS).is_file():  # a resumed ``eval paper``: this row was scored before the interruption
        tables = read_results(run)["tables"]
    else:
        tables = evaluate_quality_folder(
            images,
            run,
            settings.reference,
            None,
            settings.scene_features,
            settings.clip,
            settings.clip_score,
            settings.hps,
            settings.imagereward,
            settings.device,
        ).tables
    return {key: float(value) for values in tables.values() for key, value in values.items()}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def load_results(out: str | os.PathLike[str]) -> dict[str, Any]:
    return json.loads((Path(out) / "results.json").read_text())
