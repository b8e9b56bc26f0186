"""``spatialgen intrinsics``: intrinsic maps for folders of images, or training shards for image datasets."""

from __future__ import annotations

from pathlib import Path

import typer

from ..logs import console, quiet_libraries
from .common import friendly_errors

intrinsics_app = typer.Typer(help="Intrinsic maps (normals, depth, albedo, shading) for images.", no_args_is_help=True)


@intrinsics_app.command("extract")
@friendly_errors
def extract_command(
    images: Path | None = typer.Option(
        None, "--images", help="Folder of images: maps written beside copies (any size; greyscale and RGBA are fine)."
    ),
    source: Path | None = typer.Option(
        None,
        "--source",
        help="An image dataset (webdataset .tar, .parquet, images + .txt, scenes): training shards with intrinsics.",
    ),
    out: Path = typer.Option(..., "--out", help="--images: NAME.png with NAME.normal.png, ...; --source: a dataset."),
    method: str = typer.Option(
        "ilora",
        "--method",
        help="--images: ilora (LoRA adapters), estimator, or ildm (an I-LDM trained to read images: --model).",
    ),
    intrinsics: str = typer.Option(
        "normal,depth",
        "--intrinsics",
        help="--images: comma-separated normal, depth, albedo, shading (ilora), or depth, normal, segmentation, "
        "lines (ildm).",
    ),
    lora: str = typer.Option(
        "embedded", "--lora", help="Adapter folder, or a folder of them ('embedded': the shipped ones)."
    ),
    model: str = typer.Option(
        "embedded", "--model", help="The base model the adapters were trained on (ildm: the I-LDM pipeline)."
    ),
    depth: str = typer.Option(
        "scenes", "--depth", help="--source: scenes, ilora[:FOLDER], a transformers depth model, or none."
    ),
    normal: str = typer.Option(
        "scenes", "--normal", help="--source: scenes, ilora[:FOLDER], marigold:MODEL, from-depth, or none."
    ),
    segmentation: str = typer.Option(
        "none", "--segmentation", help="--source: panoptic:MODEL (Mask2Former, OneFormer), sam:MODEL, or none."
    ),
    lines: str = typer.Option("edges", "--lines", help="--source: edges (of the other maps), image-edges, or none."),
    resolution: int = typer.Option(64, "--resolution", help="--source: side of the square training images."),
    engine: str = typer.Option("local", "--engine", help="--source: local (or accelerate launch), or ray."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="An existing Ray cluster (default: start one)."),
    workers: int = typer.Option(2, "--workers", help="Ray Data workers."),
    chunk: int = typer.Option(256, "--chunk", help="--source: images per input shard of a folder."),
    batch_size: int = typer.Option(16, "--batch-size", help="Images per forward pass."),
    steps: int = typer.Option(
        25, "--steps", help="Augmented I-LoRA variant: DPM-Solver++ steps; ildm: denoising steps."
    ),
    guidance: float = typer.Option(3.0, "--guidance", help="Augmented variant: text guidance scale."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N, mps, or auto (accelerate's device)."),
) -> None:
    """Intrinsic maps for a folder of images (--images), or a training dataset from an image dataset (--source).

    Both resume: images whose maps exist, and shards already written, are skipped.
    """
    quiet_libraries()
    if (images is None) == (source is None):
        raise typer.BadParameter("give exactly one of --images (maps beside images) or --source (a dataset)")
    if source is not None:
        extract_dataset_command(
            source,
            out,
            depth,
            normal,
            segmentation,
            lines,
            resolution,
            engine,
            ray_address,
            workers,
            chunk,
            batch_size,
            device,
        )
        return
    from tqdm.auto import tqdm

    from ..ilora.extract import IntrinsicExtractor, extract_folder, list_images

    options = (
        {"steps": steps, "guidance": guidance} if method == "ilora" else {"steps": steps} if method == "ildm" else {}
    )
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
    if report.unreadable:
        more = len(report.unreadable) - 5
        shown = "; ".join(report.unreadable[:5]) + (f"; and {more} more" if more > 0 else "")
        console.print(f"{len(report.unreadable)} unreadable image(s) skipped: {shown}", highlight=False)


def extract_dataset_command(
    source: Path,
    out: Path,
    depth: str,
    normal: str,
    segmentation: str,
    lines: str,
    resolution: int,
    engine: str,
    ray_address: str | None,
    workers: int,
    chunk: int,
    batch_size: int,
    device: str,
) -> None:
    from accelerate import PartialState
    from tqdm.auto import tqdm

    from ..curate.sources import list_shards
    from ..extraction import ExtractionSettings, extract_dataset

    settings = ExtractionSettings(
        resolution=resolution,
        depth=depth,
        normal=normal,
        segmentation=segmentation,
        lines=lines,
        batch_size=batch_size,
        device=device,
    )
    main = PartialState().is_main_process
    with tqdm(total=len(list_shards(source, chunk)), desc="extracting", unit="shard", disable=not main) as bar:
        manifest = extract_dataset(source, out, settings, engine, ray_address, workers, bar.update, chunk)
    if main:
        counts = manifest["counts"]
        console.print(
            f"{counts.get('kept', 0)} of {counts.get('items', 0)} images written to {out} "
            f"({counts.get('unreadable', 0)} unreadable, {counts.get('too_small', 0)} too small, "
            f"{counts.get('downscaled', 0)} downscaled first); maps by {manifest['models']}; "
            f"train on it: spatialgen train intrinsic-vae --data {out}",
            highlight=False,
        )
