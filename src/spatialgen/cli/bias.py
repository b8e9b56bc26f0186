"""``spatialgen bias``: measure a model's accuracy per relation and phrasing, the table TORE reads."""

from __future__ import annotations

from pathlib import Path

import typer

from ..logs import console, quiet_libraries
from .common import friendly_errors


@friendly_errors
def bias(
    out: Path = typer.Option(..., "--out", help="Folder for the images and bias.json."),
    model: str = typer.Option("embedded", "--model", help="'embedded', a diffusers pipeline folder, or a hub id."),
    prompts: int = typer.Option(16, "--prompts", help="Held-out triplets per relation (each asked both ways round)."),
    seeds: int = typer.Option(4, "--seeds", help="Images per prompt."),
    steps: int = typer.Option(25, "--steps", help="Denoising steps."),
    batch_size: int = typer.Option(8, "--batch-size", help="Images per forward batch."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or mps."),
    write_card: bool = typer.Option(
        True, "--write-card/--no-write-card", help="Record the table in a local model folder's spatialgen.json."
    ),
) -> None:
    """Accuracy per relation (left/right, above/below, front/behind, each way round) on held-out scene prompts."""
    quiet_libraries()
    import json

    from ..bias import CARD_KEY, measure_bias
    from ..fileio import atomic_write_json, ensure_writable_dir
    from ..models import load_pipeline
    from ..models.pipeline import SPATIALGEN_CONFIG

    for name, value in (("prompts", prompts), ("seeds", seeds), ("steps", steps), ("batch_size", batch_size)):
        if value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
    folder = ensure_writable_dir(out)
    pipe = load_pipeline(model, device=device)
    table = measure_bias(pipe, prompts, seeds, steps, batch_size, out=folder / "images")
    table["model"] = model
    atomic_write_json(folder / "bias.json", table)
    for relation, accuracy in table["accuracy"].items():
        low, high = table["interval"][relation]
        console.print(f"{relation:>12}: {100 * accuracy:5.1f}% ({100 * low:.1f}-{100 * high:.1f})", highlight=False)
    local = Path(model)
    if write_card and model != "embedded" and local.is_dir():
        card_path = local / SPATIALGEN_CONFIG
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        atomic_write_json(card_path, {**card, CARD_KEY: table})
        console.print(f"bias table recorded in {card_path}; `generate --tore` uses it", highlight=False)
    else:
        console.print(
            f"bias table in {folder / 'bias.json'}; use it with `spatialgen generate --tore --tore-bias "
            f"{folder / 'bias.json'}`"
            + (" (or ship it: tools/ship_embedded.py --tore-bias)" if model == "embedded" else ""),
            highlight=False,
        )
