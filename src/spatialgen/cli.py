"""The ``spatialgen`` command line: one typer app, one sub-app per area.

Heavy imports (torch, the renderer) happen inside commands, so ``spatialgen --help`` is instant.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from . import __version__
from .logs import console, quiet_libraries, setup_logging

app = typer.Typer(
    name="spatialgen",
    help="Spatially consistent text-to-image generation with latent diffusion models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
scenes_app = typer.Typer(help="The procedural scene world: make datasets, preview scenes.", no_args_is_help=True)
app.add_typer(scenes_app, name="scenes")
train_app = typer.Typer(help="Train models: the embedded base model (more methods follow).", no_args_is_help=True)
app.add_typer(train_app, name="train")
eval_app = typer.Typer(
    help="Evaluate images: spatial benchmarks, quality, intrinsics; compare runs.", no_args_is_help=True
)
app.add_typer(eval_app, name="eval")

F = TypeVar("F", bound=Callable[..., Any])


def _version(value: bool) -> None:
    if value:
        console.print(f"spatialgen {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    """Spatially consistent text-to-image generation with latent diffusion models."""
    setup_logging(verbose)


def friendly_errors(command: F) -> F:
    """Turn the library's input errors into one red line and exit status 2, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (ValueError, FileNotFoundError, FileExistsError, ImportError) as error:
            console.print(f"[bold red]error:[/] {error}", highlight=False)
            raise typer.Exit(2) from error

    return wrapper  # type: ignore[return-value]


def _names(values: list[str] | None) -> tuple[str, ...] | None:
    """Accept repeated options and comma-separated lists alike: --floors wood,grass --floors stone."""
    if not values:
        return None
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())


def _scene_config(
    min_objects: int, max_objects: int, shapes: list[str] | None, colours: list[str] | None, floors: list[str] | None
) -> Any:
    from .scenes import SceneConfig

    overrides: dict[str, Any] = {"min_objects": min_objects, "max_objects": max_objects}
    for key, value in (("shapes", shapes), ("colours", colours), ("floors", floors)):
        names = _names(value)
        if names is not None:
            overrides[key] = names
    return SceneConfig(**overrides).validate()


_SHAPES_HELP = "Shapes to use (repeat or comma-separate): cube, sphere, cylinder, cone."
_COLOURS_HELP = "Colours to use: red, green, blue, yellow, purple, cyan, gray, brown."
_FLOORS_HELP = "Floor materials to use: checker, wood, grass, stone."


@scenes_app.command("make")
@friendly_errors
def scenes_make(
    out: Path = typer.Option(..., "--out", help="Dataset directory (created; resumed if it holds a partial dataset)."),
    n: int = typer.Option(..., "--n", help="Number of scenes."),
    resolution: int = typer.Option(64, "--resolution", help="Square image size, a multiple of 8."),
    seed: int = typer.Option(0, "--seed", help="Dataset seed: scene i is fully determined by (seed, i)."),
    shard_size: int = typer.Option(1000, "--shard-size", help="Scenes per tar shard."),
    workers: int = typer.Option(2, "--workers", help="Processes rendering shards in parallel."),
    min_objects: int = typer.Option(1, "--min-objects", help="Fewest objects per scene (1-5)."),
    max_objects: int = typer.Option(5, "--max-objects", help="Most objects per scene (1-5)."),
    shapes: list[str] | None = typer.Option(None, "--shapes", help=_SHAPES_HELP),
    colours: list[str] | None = typer.Option(None, "--colours", help=_COLOURS_HELP),
    floors: list[str] | None = typer.Option(None, "--floors", help=_FLOORS_HELP),
    antialias: bool = typer.Option(True, "--antialias/--no-antialias", help="Antialias RGB at geometry edges."),
) -> None:
    """Write a sharded scene dataset (tar shards + manifest.json); re-run to resume."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from .scenes import DatasetParams, make_dataset

    config = _scene_config(min_objects, max_objects, shapes, colours, floors)
    params = DatasetParams(
        n=n, resolution=resolution, seed=seed, shard_size=shard_size, antialias=antialias, config=config
    )
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("scenes", total=n)
        manifest = make_dataset(
            out, params, workers=workers, on_progress=lambda done, total: progress.update(task, completed=done)
        )
    console.print(f"wrote {n} scenes in {len(manifest['shards'])} shard(s) to {out}", highlight=False)


@scenes_app.command("preview")
@friendly_errors
def scenes_preview(
    out: Path = typer.Option(Path("scenes-preview.png"), "--out", help="PNG file to write."),
    n: int = typer.Option(6, "--n", help="Number of scenes (rows)."),
    seed: int = typer.Option(0, "--seed", help="Dataset seed of the scenes shown."),
    resolution: int = typer.Option(128, "--resolution", help="Render size, a multiple of 8."),
    min_objects: int = typer.Option(1, "--min-objects", help="Fewest objects per scene (1-5)."),
    max_objects: int = typer.Option(5, "--max-objects", help="Most objects per scene (1-5)."),
    shapes: list[str] | None = typer.Option(None, "--shapes", help=_SHAPES_HELP),
    colours: list[str] | None = typer.Option(None, "--colours", help=_COLOURS_HELP),
    floors: list[str] | None = typer.Option(None, "--floors", help=_FLOORS_HELP),
) -> None:
    """Draw a grid of scenes: RGB, depth, normals, segmentation, lines and captions."""
    from .fileio import ensure_writable_dir
    from .scenes import make_sample, scene_seed
    from .scenes.preview import save_preview

    if n <= 0:
        raise ValueError(f"--n must be positive, got {n}")
    config = _scene_config(min_objects, max_objects, shapes, colours, floors)
    ensure_writable_dir(out.parent if str(out.parent) else Path("."), "directory of --out")
    samples = [make_sample(scene_seed(seed, i), resolution, config) for i in range(n)]
    save_preview(samples, out)
    console.print(f"wrote {out} ({n} scenes at {resolution}x{resolution})", highlight=False)


@scenes_app.command("export")
@friendly_errors
def scenes_export(
    out: Path = typer.Option(..., "--out", help="Folder for NAME.png, NAME.depth.png, ... and NAME.json."),
    n: int = typer.Option(..., "--n", help="Number of scenes."),
    seed: int = typer.Option(999, "--seed", help="Dataset seed (999: the held-out seed no training set uses)."),
    resolution: int = typer.Option(64, "--resolution", help="Square image size, a multiple of 8."),
) -> None:
    """Write scenes as images with their exact intrinsic maps and a caption sidecar, for evaluations."""
    import numpy as np
    from PIL import Image

    from .fileio import atomic_write_bytes, atomic_write_json, ensure_writable_dir
    from .generate import png_bytes
    from .intrinsic_files import save_maps
    from .scenes import make_sample, scene_seed

    if n <= 0:
        raise ValueError(f"--n must be positive, got {n}")
    folder = ensure_writable_dir(out)
    for i in range(n):
        sample = make_sample(scene_seed(seed, i), resolution)
        intrinsics = sample.intrinsics()
        image = folder / f"{i:05d}.png"
        caption = sample.captions.get("attributes", "")
        atomic_write_bytes(image, png_bytes(Image.fromarray(sample.rgb), {"prompt": caption}))
        maps = {k: getattr(intrinsics, k) for k in ("depth", "normal", "segmentation", "lines")}
        maps["albedo"] = np.moveaxis(sample.albedo, -1, 0) / 255.0
        maps["shading"] = sample.shading[None] / 255.0
        save_maps(image, maps)
        atomic_write_json(image.with_suffix(".json"), {"prompt": caption, "scene_seed": seed, "index": i})
    console.print(f"{n} scenes with intrinsic maps written to {folder}")


@scenes_app.command("info")
@friendly_errors
def scenes_info(
    path: Path = typer.Argument(..., help="A dataset directory written by `spatialgen scenes make`."),
) -> None:
    """Summarise a scene dataset: parameters, progress and content statistics."""
    import json

    manifest_path = path / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"no manifest.json in {str(path)!r}: is it a `spatialgen scenes make` output?")
    manifest = json.loads(manifest_path.read_text())
    params = manifest["params"]
    done = sum(entry["count"] for entry in manifest["shards"].values())
    state = "complete" if manifest["complete"] else "incomplete: re-run the same `scenes make` command to finish"
    console.print(
        f"{path}: {done} of {params['n']} scenes at {params['resolution']}px, seed {params['seed']} ({state})",
        highlight=False,
    )
    for key, value in manifest.get("stats", {}).items():
        console.print(f"  {key:24s} {value}", highlight=False)


@app.command("generate")
@friendly_errors
def generate(
    prompt: str | None = typer.Argument(None, help="The prompt (or use --prompts FILE)."),
    out: Path = typer.Option(
        Path("outputs/generate"), "--out", help="Folder for the PNGs, JSON sidecars and grid.png."
    ),
    prompts: Path | None = typer.Option(None, "--prompts", help="Text file with one prompt per line (# comments)."),
    n: int = typer.Option(4, "--n", help="Images per prompt; image k uses seed + k."),
    seed: int = typer.Option(0, "--seed", help="Seed of the first image of each prompt."),
    steps: int = typer.Option(25, "--steps", help="Denoising steps."),
    guidance: float = typer.Option(7.5, "--guidance", help="Classifier-free guidance scale (<= 1 turns it off)."),
    scheduler: str = typer.Option("ddim", "--scheduler", help="Sampler: ddim, dpm (DPM-Solver++), ddpm or euler."),
    size: int | None = typer.Option(None, "--size", help="Image side in pixels (default: the model's native size)."),
    negative: str | None = typer.Option(None, "--negative", help="Negative prompt."),
    model: str = typer.Option("embedded", "--model", help="'embedded', a diffusers pipeline folder, or a hub id."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or mps."),
    half: bool = typer.Option(False, "--half", help="Run in float16 (GPU only)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Images per forward batch."),
    strict: bool = typer.Option(False, "--strict", help="Refuse prompts with words the model does not know."),
) -> None:
    """Generate images from a prompt (or a prompt file): PNGs with their settings, sidecars and a grid."""
    quiet_libraries()  # before importing diffusers: its import prints notices
    import torch

    from .generate import (
        GenerationSettings,
        generate_images,
        native_size,
        read_prompt_file,
        save_generated,
        settings_metadata,
    )
    from .models import load_pipeline

    if (prompt is None) == (prompts is None):
        raise ValueError("give either a PROMPT argument or --prompts FILE (exactly one)")
    prompt_list = read_prompt_file(prompts) if prompts is not None else [prompt]
    settings = GenerationSettings(steps, guidance, scheduler, size, negative).validate()
    if half and not str(device).startswith("cuda"):
        raise ValueError("--half needs --device cuda: float16 on the CPU is slow and inexact")
    pipe = load_pipeline(model, device, torch.float16 if half else torch.float32, scheduler)
    results = generate_images(pipe, prompt_list, n, seed, settings, batch_size, strict)
    metadata = settings_metadata(settings, model, settings.size or native_size(pipe))
    saved = save_generated(results, out, metadata)
    console.print(f"wrote {len(saved)} image(s) and grid.png to {out}", highlight=False)


@train_app.command("base")
@friendly_errors
def train_base_command(
    data: Path | None = typer.Option(None, "--data", help="Scene dataset folder (`spatialgen scenes make`)."),
    out: Path | None = typer.Option(None, "--out", help="Run folder: config, checkpoints, samples, pipeline/."),
    config: Path | None = typer.Option(None, "--config", help="A run's config.json to reproduce (flags override it)."),
    vae_steps: int | None = typer.Option(None, "--vae-steps", help="VAE training steps."),
    diffusion_steps: int | None = typer.Option(None, "--diffusion-steps", help="UNet + text encoder steps."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Batch size per process."),
    max_scenes: int | None = typer.Option(None, "--max-scenes", help="Use only the first N scenes."),
    checkpoint_every: int | None = typer.Option(None, "--checkpoint-every", help="Steps between checkpoints."),
    seed: int | None = typer.Option(None, "--seed", help="Training seed."),
    resume: str | None = typer.Option(None, "--resume", help="'latest' or a checkpoint folder."),
    cpu: bool = typer.Option(False, "--cpu", help="Train on the CPU even if a GPU is present."),
) -> None:
    """Train the embedded-style base model: VAE, then text encoder + UNet (EMA), under accelerate."""
    quiet_libraries()
    from .models.training import BaseTrainConfig, train_base

    overrides = {
        "data": str(data) if data else None,
        "out": str(out) if out else None,
        "vae_steps": vae_steps,
        "diffusion_steps": diffusion_steps,
        "batch_size": batch_size,
        "max_scenes": max_scenes,
        "checkpoint_every": checkpoint_every,
        "seed": seed,
    }
    if config is not None:
        if not config.is_file():
            raise FileNotFoundError(f"--config {str(config)!r} does not exist")
        cfg = BaseTrainConfig.from_file(config, **overrides)
    else:
        if data is None or out is None:
            raise ValueError("pass --data DIR and --out DIR (or --config RUN/config.json)")
        cfg = BaseTrainConfig(**{k: v for k, v in overrides.items() if v is not None}).validate()
    pipeline = train_base(cfg, resume=resume, cpu=cpu)
    console.print(f"trained pipeline written to {pipeline}; try: spatialgen generate 'a red cube' --model {pipeline}")


@train_app.command("recogniser")
@friendly_errors
def train_recogniser_command(
    data: Path = typer.Option(..., "--data", help="Scene dataset folder (`spatialgen scenes make`)."),
    out: Path = typer.Option(..., "--out", help="Folder for recogniser.safetensors and recogniser.json."),
    steps: int = typer.Option(1500, "--steps", help="Training steps."),
    batch_size: int = typer.Option(32, "--batch-size", help="Batch size."),
    max_scenes: int = typer.Option(10000, "--max-scenes", help="Use only the first N scenes."),
    held_out: int = typer.Option(500, "--held-out", help="Held-out scenes (sampled with --held-out-seed) to score."),
    held_out_seed: int = typer.Option(999, "--held-out-seed", help="Dataset seed of the held-out scenes."),
    seed: int = typer.Option(0, "--seed", help="Training seed."),
) -> None:
    """Train the scene-world object recogniser on exact labels and print its held-out accuracy."""
    import json

    from .eval.recogniser_training import LabelledScenes, score_recogniser, train_recogniser
    from .fileio import atomic_write_json, ensure_writable_dir
    from .scenes import make_sample, scene_seed

    ensure_writable_dir(out)
    recogniser = train_recogniser(LabelledScenes.from_shards(data, max_scenes), steps, batch_size, seed=seed)
    recogniser.save(out)
    held = [make_sample(scene_seed(held_out_seed, i), recogniser.resolution) for i in range(held_out)]
    scores = score_recogniser(recogniser, held)
    atomic_write_json(out / "held-out.json", {**scores, "held_out_seed": held_out_seed, "held_out": held_out})
    console.print(json.dumps(scores, indent=2), highlight=False)


@train_app.command("estimator")
@friendly_errors
def train_estimator_command(
    data: Path = typer.Option(..., "--data", help="Scene dataset folder (`spatialgen scenes make`)."),
    out: Path = typer.Option(..., "--out", help="Folder for estimator.safetensors and estimator.json."),
    steps: int = typer.Option(1500, "--steps", help="Training steps."),
    batch_size: int = typer.Option(32, "--batch-size", help="Batch size."),
    max_scenes: int = typer.Option(10000, "--max-scenes", help="Use only the first N scenes."),
    held_out: int = typer.Option(500, "--held-out", help="Held-out scenes (sampled with --held-out-seed) to score."),
    held_out_seed: int = typer.Option(999, "--held-out-seed", help="Dataset seed of the held-out scenes."),
    seed: int = typer.Option(0, "--seed", help="Training seed."),
) -> None:
    """Train the scene-world depth and normal estimator on exact intrinsics and print its held-out accuracy."""
    import json

    from .eval.scene_estimator import IntrinsicTargets, score_estimator, train_estimator
    from .fileio import atomic_write_json, ensure_writable_dir
    from .scenes import make_sample, scene_seed

    ensure_writable_dir(out)
    estimator = train_estimator(IntrinsicTargets.from_shards(data, max_scenes), steps, batch_size, seed=seed)
    estimator.save(out)
    held = [make_sample(scene_seed(held_out_seed, i), estimator.resolution) for i in range(held_out)]
    scores = score_estimator(estimator, held)
    atomic_write_json(out / "held-out.json", {**scores, "held_out_seed": held_out_seed, "held_out": held_out})
    console.print(json.dumps(scores, indent=2), highlight=False)


_DETECTOR_HELP = (
    "'scenes' (the embedded scene-world recogniser), 'owlvit' (VISOR's OWL-ViT), or an OWL-ViT path / hub id."
)
_DEPTH_HELP = "Depth for 3D relations: 'scenes' (embedded estimator), a transformers depth model, or 'none'."


def _write_report(out: Path, html_text: str) -> Path:
    from .eval.run_folder import REPORT
    from .fileio import atomic_write_bytes

    atomic_write_bytes(out / REPORT, html_text.encode("utf-8"))
    return out / REPORT


def _print_tables(tables: dict[str, dict[str, float]]) -> None:
    from rich.table import Table

    for name, values in tables.items():
        table = Table(title=name, title_justify="left")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in values.items():
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
        console.print(table)


@eval_app.command("spatial")
@friendly_errors
def eval_spatial(
    images: Path = typer.Option(
        ..., "--images", help="Folder of generated images (ours, GenEval's layout, or named by prompt)."
    ),
    out: Path = typer.Option(..., "--out", help="Run folder for records, results.json and report.html (resumable)."),
    prompts: Path | None = typer.Option(
        None, "--prompts", help="Prompt file (text or JSONL); optional with our sidecars."
    ),
    detector: str = typer.Option("scenes", "--detector", help=_DETECTOR_HELP),
    depth: str = typer.Option("scenes", "--depth", help=_DEPTH_HELP),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or mps."),
    batch_size: int = typer.Option(16, "--batch-size", help="Images per detector batch."),
    failures: int = typer.Option(24, "--failures", help="Worst failures drawn in the report."),
) -> None:
    """Score images on VISOR, T2I-CompBench and GenEval spatial rules and our 3D relations."""
    from PIL import Image

    from .eval.depth import load_depth_estimator
    from .eval.detections import ObjectDetection
    from .eval.detectors import load_detector
    from .eval.image_sets import collect_images
    from .eval.report import Failure, render_report
    from .eval.run_folder import RunFolder
    from .eval.spatial_eval import failure_note, failure_rank, parse_images, run_spatial, spatial_tables

    if batch_size <= 0:
        raise ValueError(f"--batch-size must be positive, got {batch_size}")
    found = collect_images(images, prompts)
    parsed, skipped = parse_images(found, images)
    if skipped:
        console.print(
            f"[yellow]{len(skipped)} image(s) have no spatial relation in their prompt and are not scored "
            f"(e.g. {skipped[0].prompt!r})[/yellow]"
        )
    if not parsed:
        raise ValueError("no image's prompt states a spatial relation (e.g. 'a dog to the left of a cat')")
    settings = {
        "kind": "spatial",
        "images": str(images.resolve()),
        "prompts": str(prompts.resolve()) if prompts else None,
        "detector": detector,
        "depth": depth,
    }
    run = RunFolder(out, settings)
    run_spatial(
        parsed,
        load_detector(detector, device),
        run,
        None if depth == "none" else load_depth_estimator(depth, device),
        batch_size,
    )
    records = [run.records[p.key] for p in parsed]
    tables = spatial_tables(records)
    worst = sorted(records, key=failure_rank)[: max(0, failures)]
    drawn = []
    for r in worst:
        with Image.open(images / r["key"]) as im:
            dets = [ObjectDetection.from_dict(d) for d in r["detections"]]
            drawn.append(Failure(im.convert("RGB"), r["prompt"], failure_note(r), dets))
    meta = {"images": len(records), "prompts": len({r["prompt_id"] for r in records}), **settings}
    report = _write_report(out, render_report("Spatial evaluation", tables, drawn, meta))
    results = run.finish({"kind": "spatial", "tables": tables, "images": len(records), "skipped": len(skipped)})
    _print_tables(tables)
    console.print(f"results: {results}\nreport: {report}")


@eval_app.command("quality")
@friendly_errors
def eval_quality(
    images: Path = typer.Option(..., "--images", help="Folder of generated images."),
    out: Path = typer.Option(..., "--out", help="Run folder for results.json and report.html."),
    reference: str = typer.Option(
        "scenes", "--reference", help="'scenes' (held-out renders) or a folder of real images."
    ),
    prompts: Path | None = typer.Option(
        None, "--prompts", help="Prompt file, for prompt-aware scores (optional with our sidecars)."
    ),
    scene_features: bool = typer.Option(
        True, "--scene-features/--no-scene-features", help="CMMD / Frechet distance in the scene recogniser's features."
    ),
    clip: str | None = typer.Option(
        None, "--clip", help="CLIP model for CMMD (e.g. openai/clip-vit-large-patch14-336)."
    ),
    clip_score: str | None = typer.Option(
        None, "--clip-score", help="CLIP model for CLIP score (e.g. openai/clip-vit-large-patch14)."
    ),
    hps: str | None = typer.Option(
        None, "--hps", help="HPSv2 checkpoint file or version (v2.0, v2.1); needs spatialgen[hps]."
    ),
    imagereward: str | None = typer.Option(
        None, "--imagereward", help="ImageReward model name or path; needs spatialgen[imagereward]."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or mps."),
) -> None:
    """Image quality and text alignment: CMMD, Frechet distance, CLIP score, HPSv2, ImageReward."""
    from .eval.image_sets import collect_images, list_images
    from .eval.quality import ClipImageEmbedder, ClipScorer, compare_image_sets, scene_reference_images
    from .eval.report import render_report
    from .eval.run_folder import RunFolder

    files = list_images(images) if images.is_dir() else []
    if not files:
        raise ValueError(f"no images under {str(images)!r}")
    settings = {
        "kind": "quality",
        "images": str(images.resolve()),
        "reference": reference,
        "clip": clip,
        "clip_score": clip_score,
        "hps": hps,
        "imagereward": imagereward,
        "scene_features": scene_features,
    }
    run = RunFolder(out, settings)
    if reference == "scenes":
        refs: list[Any] = scene_reference_images(len(files))
    else:
        refs = list_images(Path(reference)) if Path(reference).is_dir() else []
        if not refs:
            raise ValueError(f"--reference must be 'scenes' or a folder with images; {reference!r} has none")
    embedder = ClipImageEmbedder.from_pretrained(clip, device=device) if clip else None
    report = compare_image_sets(files, refs, clip_embedder=embedder, use_recogniser=scene_features)
    distances = {k: v for k, v in report.to_dict().items() if v is not None}
    tables: dict[str, dict[str, float]] = {"Distribution distance (lower is better)": distances}
    if clip_score or hps or imagereward:
        items = collect_images(images, prompts)
        paths, texts = [str(e.path) for e in items], [e.prompt for e in items]
        alignment: dict[str, float] = {}
        if clip_score:
            alignment["clip_score"] = ClipScorer.from_pretrained(clip_score, device=device).score(paths, texts).mean
        if hps:
            from .eval.preference import HPSv2Scorer

            is_file = Path(hps).is_file()
            scorer = HPSv2Scorer.from_pretrained(
                hps if is_file else None, **({} if is_file else {"version": hps}), device=device
            )
            alignment["hpsv2"] = sum(scorer.score(paths, texts)) / len(paths)
        if imagereward:
            from .eval.preference import ImageRewardScorer

            rewards = ImageRewardScorer.from_pretrained(imagereward, device=device).score(paths, texts)
            alignment["imagereward"] = sum(rewards) / len(paths)
        tables["Text alignment and preference (higher is better)"] = alignment
    page = render_report("Quality evaluation", tables, meta={"images": len(files), **settings})
    report_path = _write_report(out, page)
    results = run.finish({"kind": "quality", "tables": tables, "images": len(files)})
    _print_tables(tables)
    console.print(f"results: {results}\nreport: {report_path}")


@eval_app.command("intrinsics")
@friendly_errors
def eval_intrinsics(
    images: Path = typer.Option(
        ..., "--images", help="Folder of NAME.png with predicted maps NAME.depth.png, NAME.normal.png, ..."
    ),
    out: Path = typer.Option(..., "--out", help="Run folder for records, results.json and report.html (resumable)."),
    target: str = typer.Option(
        "estimated",
        "--target",
        help="'estimated' (scene estimator on each image: consistency) or a folder of true maps.",
    ),
    depth_align: str = typer.Option(
        "scale_shift", "--depth-align", help="Depth alignment before scoring: scale_shift, scale or none."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or mps."),
) -> None:
    """Intrinsic accuracy: depth AbsRel / RMSE / delta, normal angles, segmentation mIoU, line F, albedo RMS."""
    import numpy as np
    from PIL import Image

    from .eval.image_sets import list_images
    from .eval.intrinsic_metrics import intrinsic_scores
    from .eval.report import render_report
    from .eval.run_folder import RunFolder
    from .intrinsic_files import load_maps, map_path

    if depth_align not in ("scale_shift", "scale", "none"):
        raise ValueError(f"--depth-align must be scale_shift, scale or none, got {depth_align!r}")
    files = list_images(images) if images.is_dir() else []
    files = [f for f in files if load_maps(f)]
    if not files:
        raise ValueError(f"no image under {str(images)!r} has intrinsic maps beside it (NAME.depth.png, ...)")
    settings = {"kind": "intrinsics", "images": str(images.resolve()), "target": target, "depth_align": depth_align}
    run = RunFolder(out, settings)
    estimator = None
    if target == "estimated":
        from .eval.depth import SceneDepth
        from .eval.scene_estimator import SceneEstimator
        from .intrinsics import normal_to_unit_range

        estimator = SceneEstimator.load(device=device)
        depth_of = SceneDepth(estimator)
    elif not Path(target).is_dir():
        raise ValueError(f"--target must be 'estimated' or a folder of true maps; {target!r} is neither")
    todo = [f for f in files if not run.done(str(f.relative_to(images)))]
    from tqdm.auto import tqdm

    for path in tqdm(todo, desc="scoring", unit="image"):
        predicted = load_maps(path)
        if estimator is not None:
            with Image.open(path) as im:
                rgb = im.convert("RGB")
            truth = {"depth": depth_of.disparity([rgb])[0][None]}
            normals = np.moveaxis(estimator.estimate([rgb.resize((estimator.resolution,) * 2)]).normal[0], -1, 0)
            if normals.shape[-2:] != (rgb.height, rgb.width):
                import torch

                resized = torch.nn.functional.interpolate(torch.from_numpy(normals)[None], size=(rgb.height, rgb.width))
                normals = torch.nn.functional.normalize(resized[0], dim=0).numpy()
            truth["normal"] = normal_to_unit_range(normals)
        else:
            truth = load_maps(Path(target) / path.relative_to(images))
            if not truth:
                raise FileNotFoundError(
                    f"no true maps for {path.name} in {target} (expected {map_path(path.name, 'depth').name}, ...)"
                )
        scores = intrinsic_scores(predicted, truth, depth_align=depth_align)
        run.append([{"key": str(path.relative_to(images)), **scores}])
    records = [run.records[str(f.relative_to(images))] for f in files]
    metrics = sorted({k for r in records for k in r if k != "key"})
    table = {m: float(np.mean([r[m] for r in records if m in r])) for m in metrics}
    tables = {"Intrinsic accuracy (mean over images)": table}
    report = _write_report(
        out, render_report("Intrinsics evaluation", tables, meta={"images": len(records), **settings})
    )
    results = run.finish({"kind": "intrinsics", "tables": tables, "images": len(records)})
    _print_tables(tables)
    console.print(f"results: {results}\nreport: {report}")


PROMPT_SETS = ("visor", "multi", "scenes-2d", "scenes-3d", "geneval-position")


@eval_app.command("prompts")
@friendly_errors
def eval_prompts(
    name: str = typer.Argument(..., help=f"Prompt set: {', '.join(PROMPT_SETS)}."),
    out: Path = typer.Option(..., "--out", help="File to write: .txt (one prompt a line) or .jsonl (records)."),
    n: int | None = typer.Option(None, "--n", help="Number of prompts (default: the whole set; Multi: 1,000)."),
    seed: int | None = typer.Option(
        None, "--seed", help="Seed of sampled sets (default: the reserved evaluation seed)."
    ),
) -> None:
    """Write a shipped prompt set: VISOR's SR2D, I-LDM's Multi, held-out scene-world relations, GenEval position."""
    from .eval import prompt_sets as ps
    from .eval.geneval import position_metadata
    from .fileio import atomic_write_bytes

    if out.exists():
        raise FileExistsError(f"{out} exists; choose another --out")
    seeded = {} if seed is None else {"seed": seed}
    if name == "visor":
        records: list[Any] = ps.visor_prompts()[:n] if n else ps.visor_prompts()
    elif name == "multi":
        records = ps.multi_prompts(n or ps.MULTI_PROMPT_COUNT, **seeded)
    elif name in ("scenes-2d", "scenes-3d"):
        records = ps.scene_prompt_set(name.split("-")[1], n, **seeded)
    elif name == "geneval-position":
        if out.suffix != ".jsonl":
            raise ValueError("GenEval metadata is JSONL: give --out a .jsonl file")
        lines = [position_metadata(r.obj_a, r.relation, r.obj_b) for r in ps.scene_prompt_set("2d", n, **seeded)]
        import json

        atomic_write_bytes(out, "".join(json.dumps(r) + "\n" for r in lines).encode("utf-8"))
        console.print(f"{len(lines)} GenEval position records (scene-world objects) written to {out}")
        return
    else:
        raise ValueError(f"unknown prompt set {name!r}; choose one of {', '.join(PROMPT_SETS)}")
    ps.write_prompts(out, records)
    console.print(f"{len(records)} prompts written to {out}")


@eval_app.command("compare")
@friendly_errors
def eval_compare(
    runs: list[Path] = typer.Argument(..., help="Finished evaluation run folders (or results.json files)."),
    out: Path | None = typer.Option(None, "--out", help="Write the comparison as an HTML file here."),
) -> None:
    """Put finished evaluations side by side, one row per run for each metric table."""
    from .eval.report import render_comparison
    from .eval.run_folder import read_results
    from .fileio import atomic_write_bytes

    names = [str(r) for r in runs]
    if len(set(names)) != len(names):
        raise ValueError("a run is named twice; give each run folder once")
    loaded = {name: read_results(run)["tables"] for name, run in zip(names, runs, strict=True)}
    by_table: dict[str, dict[str, dict[str, float]]] = {}
    for name, tables in loaded.items():
        for table, values in tables.items():
            by_table.setdefault(table, {})[name] = values
    from rich.table import Table

    for table, rows in by_table.items():
        columns = list(dict.fromkeys(k for row in rows.values() for k in row))
        view = Table(title=table, title_justify="left")
        view.add_column("run")
        for c in columns:
            view.add_column(c, justify="right")
        for name, row in rows.items():
            view.add_row(name, *(f"{row[c]:.4g}" if c in row else "" for c in columns))
        console.print(view)
    if out is not None:
        if out.exists():
            raise FileExistsError(f"{out} exists; choose another --out (comparisons are never overwritten)")
        atomic_write_bytes(out, render_comparison(loaded).encode("utf-8"))
        console.print(f"comparison: {out}")


def main() -> None:
    app()
