"""``spatialgen eval``: spatial benchmarks, quality, intrinsics, prompt sets and side-by-side comparisons.

The commands are thin: the evaluations live in :mod:`spatialgen.eval.runs.runners`, callable from Python.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..logs import console, quiet_libraries
from .common import friendly_errors, print_tables

eval_app = typer.Typer(
    help="Evaluate images: spatial benchmarks, quality, intrinsics; prompt sets; compare runs.", no_args_is_help=True
)

_IMAGES_HELP = "Folder of generated images (our sidecars, GenEval's layout, or named by prompt with --prompts)."
_OUT_HELP = "Run folder for records, results.json and report.html; resumable, never overwritten."
_DETECTOR_HELP = "'scenes' (the embedded scene-world recogniser), 'owlvit' (VISOR's OWL-ViT), or an OWL-ViT path / id."
_DEPTH_HELP = "Depth for 3D relations: 'scenes' (embedded estimator), a transformers depth model, or 'none'."
_DEVICE_HELP = "cpu, cuda, cuda:N or mps."


def _done(outcome) -> None:
    print_tables(outcome.tables)
    if outcome.skipped:
        console.print(f"[yellow]{outcome.skipped} image(s) state no spatial relation and were not scored[/yellow]")
    console.print(f"results: {outcome.results}\nreport: {outcome.report}", highlight=False)


@eval_app.command("spatial")
@friendly_errors
def eval_spatial(
    images: Path = typer.Option(..., "--images", help=_IMAGES_HELP),
    out: Path = typer.Option(..., "--out", help=_OUT_HELP),
    prompts: Path | None = typer.Option(None, "--prompts", help="Prompt file (text or JSONL records)."),
    detector: str = typer.Option("scenes", "--detector", help=_DETECTOR_HELP),
    depth: str = typer.Option("scenes", "--depth", help=_DEPTH_HELP),
    device: str = typer.Option("cpu", "--device", help=_DEVICE_HELP),
    batch_size: int = typer.Option(16, "--batch-size", help="Images per detector batch."),
    failures: int = typer.Option(24, "--failures", help="Worst failures drawn in the report."),
) -> None:
    """Score images on VISOR, T2I-CompBench and GenEval spatial rules and our 3D relations."""
    quiet_libraries()
    from ..eval.runs.runners import evaluate_spatial_folder

    _done(evaluate_spatial_folder(images, out, prompts, detector, depth, device, batch_size, failures))


@eval_app.command("quality")
@friendly_errors
def eval_quality(
    images: Path = typer.Option(..., "--images", help="Folder of generated images."),
    out: Path = typer.Option(..., "--out", help=_OUT_HELP),
    reference: str = typer.Option("scenes", "--reference", help="'scenes' (held-out renders) or a folder of images."),
    prompts: Path | None = typer.Option(None, "--prompts", help="Prompt file, for prompt-aware scores."),
    scene_features: bool = typer.Option(
        True, "--scene-features/--no-scene-features", help="CMMD / Frechet distance in the scene recogniser's features."
    ),
    clip: str | None = typer.Option(None, "--clip", help="CLIP model for CMMD (openai/clip-vit-large-patch14-336)."),
    clip_score: str | None = typer.Option(
        None, "--clip-score", help="CLIP model for CLIP score (openai/clip-vit-large-patch14)."
    ),
    hps: str | None = typer.Option(None, "--hps", help="HPSv2 checkpoint or version (v2.0, v2.1); spatialgen[hps]."),
    imagereward: str | None = typer.Option(
        None, "--imagereward", help="ImageReward name or path; needs spatialgen[imagereward]."
    ),
    device: str = typer.Option("cpu", "--device", help=_DEVICE_HELP),
) -> None:
    """Image quality and text alignment: CMMD, Frechet distance, CLIP score, HPSv2, ImageReward."""
    quiet_libraries()
    from ..eval.runs.runners import evaluate_quality_folder

    _done(
        evaluate_quality_folder(
            images, out, reference, prompts, scene_features, clip, clip_score, hps, imagereward, device
        )
    )


@eval_app.command("intrinsics")
@friendly_errors
def eval_intrinsics(
    images: Path = typer.Option(
        ..., "--images", help="Folder of NAME.png with maps NAME.depth.png, NAME.normal.png..."
    ),
    out: Path = typer.Option(..., "--out", help=_OUT_HELP),
    target: str = typer.Option(
        "estimated", "--target", help="'estimated' (scene estimator on each image: consistency) or a folder of truth."
    ),
    depth_align: str = typer.Option("scale_shift", "--depth-align", help="Depth alignment: scale_shift, scale, none."),
    device: str = typer.Option("cpu", "--device", help=_DEVICE_HELP),
) -> None:
    """Intrinsic accuracy: depth AbsRel / RMSE / delta, normal angles, segmentation mIoU, line F, albedo RMS."""
    quiet_libraries()
    from ..eval.runs.runners import evaluate_intrinsics_folder

    _done(evaluate_intrinsics_folder(images, out, target, depth_align, device))


@eval_app.command("prompts")
@friendly_errors
def eval_prompts(
    name: str = typer.Argument(..., help="visor, multi, parti, scenes-2d, scenes-3d or geneval-position."),
    out: Path = typer.Option(..., "--out", help="File to write: .txt (one prompt a line) or .jsonl (records)."),
    n: int | None = typer.Option(None, "--n", help="Number of prompts (default: the whole set; Multi: 1,000)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of sampled sets (default: the evaluation seed)."),
) -> None:
    """Write a shipped prompt set: VISOR's SR2D, I-LDM's Multi, Parti, held-out scene relations, GenEval position."""
    from ..eval.runs.runners import write_prompt_set

    count = write_prompt_set(name, out, n, seed)
    console.print(f"{count} prompts written to {out}", highlight=False)


@eval_app.command("compare")
@friendly_errors
def eval_compare(
    runs: list[Path] = typer.Argument(..., help="Finished evaluation run folders (or results.json files)."),
    out: Path | None = typer.Option(None, "--out", help="Also write the comparison as an HTML file here."),
) -> None:
    """Put finished evaluations side by side, one row per run for each metric table."""
    from rich.table import Table

    from ..eval.runs.report import render_comparison
    from ..eval.runs.runners import compare_runs
    from ..fileio import atomic_write_bytes

    if out is not None and out.exists():
        raise FileExistsError(f"{out} exists; choose another --out (comparisons are never overwritten)")
    loaded = compare_runs(list(runs))
    by_table: dict[str, dict[str, dict[str, float]]] = {}
    for name, tables in loaded.items():
        for table, values in tables.items():
            by_table.setdefault(table, {})[name] = values
    for table, rows in by_table.items():
        columns = list(dict.fromkeys(k for row in rows.values() for k in row))
        view = Table(title=table, title_justify="left")
        view.add_column("run")
        for column in columns:
            view.add_column(column, justify="right")
        for name, row in rows.items():
            view.add_row(name, *(f"{row[c]:.4g}" if c in row else "" for c in columns))
        console.print(view)
    if out is not None:
        atomic_write_bytes(out, render_comparison(loaded).encode("utf-8"))
        console.print(f"comparison: {out}", highlight=False)


@eval_app.command("paper")
@friendly_errors
def eval_paper(
    out: Path = typer.Option(..., "--out", help="Folder for images/, quality/, hands/, results.json, report.html."),
    model: str = typer.Option("embedded", "--model", help="The base model (a folder or hub id)."),
    ildm: str = typer.Option("embedded", "--ildm", help="The I-LDM pipeline folder (train ildm's RUN/pipeline)."),
    prompts: str = typer.Option("parti", "--prompts", help="parti, multi, or a prompt file (.txt / .jsonl)."),
    n_prompts: int = typer.Option(200, "--n-prompts", help="The first N prompts (0: the whole set)."),
    seeds: int = typer.Option(1, "--seeds", help="Images per prompt."),
    steps: int = typer.Option(25, "--steps", help="Denoising steps."),
    guidance: float = typer.Option(7.5, "--guidance", help="Classifier-free guidance scale."),
    batch_size: int = typer.Option(4, "--batch-size", help="Images per sampling batch."),
    schedules: str = typer.Option("drop,gaussian", "--schedules", help="I-LDM rows, comma-separated schedules."),
    baseline: list[str] = typer.Option(
        [], "--baseline", help="NAME=FOLDER: a row of images made elsewhere (an LDM3D-style model); repeatable."
    ),
    reference: str = typer.Option(
        "scenes", "--reference", help="CMMD reference: a folder of real images, or 'scenes'."
    ),
    clip: str | None = typer.Option(None, "--clip", help="CLIP model for CMMD (openai/clip-vit-large-patch14-336)."),
    scene_features: bool = typer.Option(
        True, "--scene-features/--no-scene-features", help="Distances in the scene recogniser's features too."
    ),
    clip_score: str | None = typer.Option(None, "--clip-score", help="CLIP model for CLIP score."),
    hps: str | None = typer.Option(None, "--hps", help="HPSv2 checkpoint or version; spatialgen[hps]."),
    imagereward: str | None = typer.Option(None, "--imagereward", help="ImageReward name or path."),
    hand_model: str | None = typer.Option(
        None, "--hand-model", help="MediaPipe hand_landmarker.task: the hands experiment (spatialgen[hands])."
    ),
    hand_prompts: int = typer.Option(50, "--hand-prompts", help="Parti prompts about hands to sample."),
    image_lora: str | None = typer.Option(None, "--image-lora", help="An SD LoRA for I-LDM's image domain (hands)."),
    device: str = typer.Option("cpu", "--device", help=_DEVICE_HELP),
) -> None:
    """The I-LDM paper's Table 1: base vs I-LDM schedules (and baselines) on Parti or Multi prompts."""
    quiet_libraries()
    from ..paper_eval import PaperEvalSettings, run_paper_eval

    rows = {}
    for item in baseline:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise typer.BadParameter(f"--baseline takes NAME=FOLDER, got {item!r}")
        rows[name] = folder
    settings = PaperEvalSettings(
        model=model,
        ildm=ildm,
        prompts=prompts,
        n_prompts=n_prompts or None,
        seeds=seeds,
        steps=steps,
        guidance=guidance,
        batch_size=batch_size,
        schedules=tuple(s.strip() for s in schedules.split(",") if s.strip()),
        baselines=rows,
        reference=reference,
        clip=clip,
        scene_features=scene_features,
        clip_score=clip_score,
        hps=hps,
        imagereward=imagereward,
        hand_model=hand_model,
        hand_prompts=hand_prompts,
        image_lora=image_lora,
        device=device,
    )
    results = run_paper_eval(settings, out)
    if results:
        from rich.table import Table

        columns = list(dict.fromkeys(k for row in results["table"].values() for k in row))
        table = Table(
            title=f"Table 1 ({results['prompts']['count']} {prompts} prompts x {seeds})", title_justify="left"
        )
        for column in ["row", *columns]:
            table.add_column(column, justify="left" if column == "row" else "right")
        for name in results["rows"]:
            row = results["table"][name]
            table.add_row(name, *(f"{row[c]:.4g}" if c in row else "" for c in columns))
        console.print(table)
        console.print(f"results: {out / 'results.json'}\nreport: {out / 'report.html'}", highlight=False)
