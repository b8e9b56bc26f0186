"""``spatialgen generate``: prompts to PNG files with their settings in metadata and sidecars."""

from __future__ import annotations

from pathlib import Path

import typer

from ..logs import console, quiet_libraries
from .common import friendly_errors


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
    method: str = typer.Option("sd", "--method", help="sd (the image alone) or ildm (with its intrinsics)."),
    schedule: str | None = typer.Option(
        None, "--schedule", help="I-LDM cross-domain weights: drop, gaussian or none (default: the model's)."
    ),
) -> None:
    """Generate images from a prompt (or a prompt file): PNGs with their settings, sidecars and a grid."""
    quiet_libraries()  # before importing diffusers: its import prints notices
    import torch

    from ..generate import (
        GenerationSettings,
        generate_images,
        native_size,
        read_prompt_file,
        save_generated,
        settings_metadata,
    )
    from ..models import load_pipeline

    if (prompt is None) == (prompts is None):
        raise ValueError("give either a PROMPT argument or --prompts FILE (exactly one)")
    prompt_list = read_prompt_file(prompts) if prompts is not None else [prompt]
    settings = GenerationSettings(steps, guidance, scheduler, size, negative).validate()
    if half and not str(device).startswith("cuda"):
        raise ValueError("--half needs --device cuda: float16 on the CPU is slow and inexact")
    if method not in ("sd", "ildm"):
        raise ValueError(f"--method must be sd or ildm, got {method!r}")
    if schedule is not None and method != "ildm":
        raise ValueError("--schedule applies to --method ildm only")
    dtype = torch.float16 if half else torch.float32
    if method == "ildm":
        from ..ildm.pipeline import load_ildm_pipeline
        from ..ildm.schedules import make_schedule

        if schedule is not None:
            make_schedule(schedule)  # a clear error for a wrong name before any work
        pipe = load_ildm_pipeline(model, device, dtype, scheduler)
    else:
        pipe = load_pipeline(model, device, dtype, scheduler)
    results = generate_images(pipe, prompt_list, n, seed, settings, batch_size, strict, schedule=schedule)
    metadata = settings_metadata(settings, model, settings.size or native_size(pipe))
    if method == "ildm":
        metadata.update(method="ildm", schedule=schedule or "default")
    saved = save_generated(results, out, metadata)
    console.print(f"wrote {len(saved)} image(s) and grid.png to {out}", highlight=False)
