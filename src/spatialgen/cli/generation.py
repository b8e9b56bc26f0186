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
    prompts: Path | None = typer.Option(
        None,
        "--prompts",
        help="Text file with one prompt per line (# comments), or JSONL records with a 'prompt' field "
        "(GenEval's metadata, `spatialgen eval prompts ... --out FILE.jsonl`).",
    ),
    n: int = typer.Option(4, "--n", help="Images per prompt; image k uses seed + k."),
    seed: int = typer.Option(0, "--seed", help="Seed of the first image of each prompt."),
    steps: int | None = typer.Option(None, "--steps", help="Denoising steps (default: 25)."),
    guidance: float | None = typer.Option(
        None, "--guidance", help="Classifier-free guidance scale (<= 1 turns it off) (default: 7.5)."
    ),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Sampler: ddim, dpm (DPM-Solver++), ddpm or euler (default: ddim)."
    ),
    size: int | None = typer.Option(None, "--size", help="Image side in pixels (default: the model's native size)."),
    negative: str | None = typer.Option(None, "--negative", help="Negative prompt."),
    model: str = typer.Option("embedded", "--model", help="'embedded', a diffusers pipeline folder, or a hub id."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or mps."),
    half: bool = typer.Option(False, "--half", help="Run in float16 (GPU only)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Images per forward batch."),
    strict: bool = typer.Option(False, "--strict", help="Refuse prompts with words the model does not know."),
    method: str = typer.Option(
        "sd",
        "--method",
        help="sd (the image alone), ildm (with its intrinsics), infsplign (spatial guidance) or ildm+infsplign.",
    ),
    schedule: str | None = typer.Option(
        None, "--schedule", help="I-LDM cross-domain weights: drop, gaussian or none (default: the model's)."
    ),
    given: str | None = typer.Option(
        None,
        "--given",
        help="I-LDM: images that follow given maps, e.g. depth=d.png,segmentation=s.png (depth or normal needed; "
        "the rest is completed from them).",
    ),
    loss: str | None = typer.Option(
        None, "--loss", help="InfSplign loss: sigmoid, gelu, leaky_relu or relu (default: sigmoid)."
    ),
    alpha: float | None = typer.Option(None, "--alpha", help="InfSplign loss sharpness (default: 8 sigmoid, else 2)."),
    margin: float | None = typer.Option(None, "--margin", help="InfSplign margin (default: 0 sigmoid, else 0.25)."),
    weight: float | None = typer.Option(
        None, "--weight", help="InfSplign guidance weight w (default: the model's recommendation, else 1000)."
    ),
    guide_fraction: float | None = typer.Option(
        None, "--guide-fraction", help="Share of the first steps InfSplign guides (default: 0.25)."
    ),
    layers: str | None = typer.Option(
        None, "--layers", help="Comma-separated attention layers or prefixes (default: first 6 of the decoder)."
    ),
    orthogonal_p: float | None = typer.Option(
        None, "--orthogonal-p", help="p of the orthogonal term ||delta||_p^p (0: off) (default: 2)."
    ),
    presence: bool = typer.Option(
        False, "--presence/--no-presence", help="Add Attend-and-Excite's object-presence update to InfSplign."
    ),
    lora: Path | None = typer.Option(
        None, "--lora", help="A spatial LoRA (`train esplora` folder or a diffusers LoRA file), fused: no extra cost."
    ),
    lora_scale: float = typer.Option(1.0, "--lora-scale", help="Strength of --lora."),
    tore: bool = typer.Option(
        False, "--tore", help="Rewrite each prompt into the equivalent phrasing the model draws best (TORE)."
    ),
    tore_tau: float = typer.Option(0.05, "--tore-tau", help="TORE rewrites only when the accuracy gain exceeds tau."),
    tore_bias: Path | None = typer.Option(
        None, "--tore-bias", help="TORE's bias.json (`spatialgen bias`); default: the model card's table."
    ),
    save_attention: bool = typer.Option(
        False, "--save-attention", help="Write each image's attention maps and centroids as NAME.attention.png."
    ),
    layout: str = typer.Option(
        "spatialgen",
        "--layout",
        help="File layout: spatialgen (PNG + JSON sidecar), geneval, t2i-compbench or visor (each benchmark's own).",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Keep the images already in --out (made with the same settings) and make the rest."
    ),
) -> None:
    """Generate images from a prompt (or a prompt file): PNGs with their settings, sidecars and a grid."""
    quiet_libraries()  # before importing diffusers: its import prints notices
    import torch

    from ..generate import GenerationSettings, native_size, settings_metadata
    from ..generation_run import generate_run
    from ..generators import METHODS, load_generator
    from ..output_layouts import check_layout

    if (prompt is None) == (prompts is None):
        raise ValueError("give either a PROMPT argument or --prompts FILE (exactly one)")
    check_layout(layout)
    records = read_prompt_records(prompts) if prompts is not None else [{"prompt": prompt}]
    prompt_list = [r["prompt"] for r in records]
    processes = distributed_state(device)
    if processes is not None and str(device).startswith("cuda") and ":" not in str(device):
        device = str(processes.device)  # accelerate launch: one GPU per process
    # unset options take the settings dataclasses' defaults (the help texts quote them; a test checks they agree)
    chosen = {"steps": steps, "guidance": guidance, "scheduler": scheduler, "size": size, "negative_prompt": negative}
    settings = GenerationSettings(**{k: v for k, v in chosen.items() if v is not None}).validate()
    if half and not str(device).startswith("cuda"):
        raise ValueError("--half needs --device cuda: float16 on the CPU is slow and inexact")
    if method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    guided = method.endswith("infsplign")
    if save_attention and not guided:
        raise ValueError("--save-attention shows InfSplign's maps: use it with --method infsplign or ildm+infsplign")
    config = None
    if guided:
        from ..guidance import InfSplignConfig

        chosen_layers = tuple(x for x in layers.split(",") if x.strip()) if layers else None
        knobs = {"loss": loss, "guide_fraction": guide_fraction, "orthogonal_p": orthogonal_p}
        config = InfSplignConfig(
            alpha=alpha,
            margin=margin,
            layers=chosen_layers,
            presence=presence,
            strict=strict,
            **{k: v for k, v in knobs.items() if v is not None},
        )
    generator = load_generator(
        method,
        model,
        device,
        torch.float16 if half else torch.float32,
        scheduler,
        schedule=schedule,
        spatial_guidance=config,
        guidance_weight=weight,
    )
    if given is not None:
        from ..ildm.given import load_given_maps, parse_given
        from ..intrinsics import Intrinsics

        files = parse_given(given)
        if not generator.co_generates_intrinsics:
            raise ValueError("--given needs --method ildm (an I-LDM model trained with --p-intrinsic-clean)")
        maps = load_given_maps(files, settings.size or native_size(generator.pipe))
        generator = generator.with_given(
            Intrinsics(*(torch.from_numpy(m) for m in (maps.depth, maps.normal, maps.segmentation, maps.lines)))
        )
    if lora is not None:
        if generator.co_generates_intrinsics:
            raise ValueError("--lora is not supported with I-LDM methods yet; use --method sd or infsplign")
        from ..esplora.apply import apply_spatial_lora

        apply_spatial_lora(generator.pipe, lora, lora_scale, model)
    rewrites = None
    if tore:
        from ..bias import load_bias_table
        from ..tore import tore_rewrite

        table = load_bias_table(tore_bias, generator.pipe)
        rewrites = [tore_rewrite(p, table["accuracy"], tore_tau) for p in prompt_list]
        for rewrite in rewrites:
            if rewrite.applied:
                console.print(
                    f"TORE: {rewrite.original!r} -> {rewrite.prompt!r} (+{rewrite.gain:.2f})", highlight=False
                )
        prompt_list = [r.prompt for r in rewrites]
    if rewrites is not None:  # the prompt as given and why it was rewritten, in every image's metadata
        records = [
            {**r, "prompt": w.prompt, "details": {"tore": tore_record(w, tore_tau)}}
            for r, w in zip(records, rewrites, strict=True)
        ]
    pipe = generator.pipe
    metadata = settings_metadata(settings, model, settings.size or native_size(pipe))
    metadata["method"] = method
    if generator.co_generates_intrinsics:
        metadata["schedule"] = schedule or ("none (given maps)" if given else "default")
    if given is not None:
        metadata["given"] = given
    if lora is not None:
        metadata["lora"] = {"path": str(lora), "scale": lora_scale}
    if generator.spatial_guidance is not None:
        metadata["infsplign_settings"] = generator.spatial_guidance.to_dict()
    report = generate_run(
        generator,
        records,
        out,
        metadata,
        n=n,
        seed=seed,
        settings=settings,
        batch_size=batch_size,
        layout=layout,
        resume=resume,
        strict=strict,
        save_attention=save_attention,
        process_index=processes.process_index if processes else 0,
        num_processes=processes.num_processes if processes else 1,
        wait_for_everyone=processes.wait_for_everyone if processes else None,
    )
    share = f" (process {processes.process_index} of {processes.num_processes})" if processes else ""
    kept = f", kept {report.skipped} already there" if report.skipped else ""
    grid = " and grid.png" if (report.folder / "grid.png").is_file() and not report.skipped else ""
    console.print(f"wrote {report.written} image(s){grid}{kept} to {out}{share}", highlight=False)


def read_prompt_records(path: Path) -> list[dict]:
    """A prompt file's records: JSONL objects with a 'prompt' field, or one prompt a line (# starts a comment)."""
    from ..generate import read_prompt_file

    if path.suffix == ".jsonl":
        from ..eval.runs.image_sets import read_prompt_records as read_jsonl

        return read_jsonl(path)
    return [{"prompt": p} for p in read_prompt_file(path)]


def distributed_state(device: str):
    """accelerate's process state when launched on several processes (``accelerate launch``), else None."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=not str(device).startswith("cuda"))


def tore_record(rewrite, tau: float) -> dict:
    """What a sidecar says about TORE: the prompt as given, whether and why it was rewritten."""
    return {
        "original": rewrite.original,
        "applied": rewrite.applied,
        "relation": rewrite.relation,
        "rewritten_relation": rewrite.rewritten_relation,
        "gain": rewrite.gain,
        "tau": tau,
    }
