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
        except (ValueError, FileNotFoundError) as error:
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


def main() -> None:
    app()
