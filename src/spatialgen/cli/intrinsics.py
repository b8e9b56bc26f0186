"""``spatialgen intrinsics``: intrinsic maps for folders of images."""

from __future__ import annotations

from pathlib import Path

import typer

from ..logs import console, quiet_libraries
from .common import friendly_errors

intrinsics_app = typer.Typer(help="Intrinsic maps (normals, depth, albedo, shading) for images.", no_args_is_help=True)


@intrinsics_app.command("extract")
@friendly_errors
def extract_command(
    images: Path = typer.Option(..., "--images", help="Folder of images (any size; greyscale and RGBA are fine)."),
    out: Path = typer.Option(..., "--out", help="Folder for NAME.png with NAME.normal.png, NAME.depth.png, ..."),
    method: str = typer.Option("ilora", "--method", help="ilora (LoRA adapters) or estimator (the scene estimator)."),
    intrinsics: str = typer.Option(
        "normal,depth", "--intrinsics", help="Comma-separated: normal, depth, albedo, shading."
    ),
    lora: str = typer.Option(
        "embedded", "--lora", help="Adapter folder, or a folder of them ('embedded': the shipped ones)."
    ),
    model: str = typer.Option("embedded", "--model", help="The base model the adapters were trained on."),
    batch_size: int = typer.Option(16, "--batch-size", help="Images per forward pass."),
    steps: int = typer.Option(25, "--steps", help="Augmented variant: DPM-Solver++ steps."),
    guidance: float = typer.Option(3.0, "--guidance", help="Augmented variant: text guidance scale."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or mps."),
) -> None:
    """Write intrinsic maps for every image of a folder; images whose maps exist are skipped (resumable)."""
    quiet_libraries()
    from tqdm.auto import tqdm

    from ..ilora.extract import IntrinsicExtractor, extract_folder, list_images

    options = {"steps": steps, "guidance": guidance} if method == "ilora" else {}
    extractor = IntrinsicExtractor.load(method, intrinsics, lora=lora, model=model, device=device, **options)
    if extractor.model is not None and extractor.model.variant != "augmented":
        extractor.predict_options = {}
    with tqdm(total=len(list_images(images)), desc="extracting", unit="image") as bar:
        report = extract_folder(extractor, images, out, batch_size, progress=bar.update)
    side = extractor.resolution
    console.print(
        f"{report.written} image(s) written, {report.skipped} already done, to {out}"
        + (
            f"; {report.resized} resized to the model's {side} x {side} px and their maps back"
            if report.resized
            else ""
        ),
        highlight=False,
    )
