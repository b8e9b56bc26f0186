"""``spatialgen curate``: spatially explicit captions from an image-caption dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from ..logs import console, quiet_libraries
from .common import friendly_errors


@friendly_errors
def curate_command(
    source: Path = typer.Option(..., "--source", help="webdataset .tar shards, .parquet, images + .txt, or scenes."),
    out: Path = typer.Option(..., "--out", help="Folder for shards/*.tar, reports/ and report.json (resumable)."),
    detector: str = typer.Option("scenes", "--detector", help="scenes, owlvit, or an OWL-ViT / OWLv2 path or id."),
    depth: str = typer.Option("scenes", "--depth", help="scenes, a transformers depth model, or none."),
    vocabulary: str = typer.Option(
        "scenes", "--vocabulary", help="Objects to synthesise from: scenes, coco or a file."
    ),
    engine: str = typer.Option("local", "--engine", help="local, or ray (Ray Data)."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="An existing Ray cluster (default: start one)."),
    workers: int = typer.Option(2, "--workers", help="Ray Data workers (one CPU each)."),
    chunk: int = typer.Option(256, "--chunk", help="Images (or scenes) per input shard of a folder source."),
    scene_captions: str | None = typer.Option(
        None,
        "--scene-captions",
        help="Scene datasets: caption kinds to read, e.g. attributes,count (no spatial ones: all are synthesised).",
    ),
    max_shards: int | None = typer.Option(
        None, "--max-shards", help="Only the first N input shards (a sample; rerun with more to continue)."
    ),
    min_score: float = typer.Option(0.3, "--min-score", help="Detection score an object needs."),
    min_area: float = typer.Option(0.005, "--min-area", help="Smallest object box, as a share of the image."),
    max_iou: float = typer.Option(0.3, "--max-iou", help="Largest overlap (IoU) of the two objects' boxes."),
    min_separation: float = typer.Option(0.05, "--min-separation", help="Least centre distance along the axis."),
    synthesise: bool = typer.Option(True, "--synthesise/--no-synthesise", help="Write captions where none holds."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or mps."),
) -> None:
    """Keep captions whose relations hold in their image (2D: VISOR's rule, 3D: depth), synthesise the rest."""
    quiet_libraries()
    from tqdm.auto import tqdm

    from ..curate import CurationSettings, curate, list_shards

    rules = {
        "min_score": min_score,
        "min_area": min_area,
        "max_iou": max_iou,
        "min_separation": min_separation,
        "synthesise": synthesise,
    }
    settings = CurationSettings(detector=detector, depth=depth, vocabulary=vocabulary, rules=rules, device=device)
    kinds = tuple(k.strip() for k in scene_captions.split(",") if k.strip()) if scene_captions else None
    with tqdm(total=len(list_shards(source, chunk, kinds)[:max_shards]), desc="curating", unit="shard") as bar:
        report = curate(
            source,
            out,
            settings,
            engine,
            ray_address,
            workers,
            progress=bar.update,
            chunk=chunk,
            scene_captions=kinds,
            max_shards=max_shards,
        )
    counts = report["counts"]
    console.print(
        f"{counts.get('kept_items', 0)} of {counts.get('items', 0)} images kept "
        f"({counts.get('verified_captions', 0)} captions verified, {counts.get('synthesised_captions', 0)} "
        f"synthesised, {counts.get('unreadable', 0)} unreadable); report: {out / 'report.json'}",
        highlight=False,
    )
    for pair, (a, b) in report["balance"].items():
        console.print(f"  {pair}: {a} / {b}", highlight=False)
