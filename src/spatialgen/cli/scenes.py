"""``spatialgen scenes``: make, preview, export and inspect scene-world datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..logs import console
from ..scenes.held_out import HELD_OUT_SEED
from .common import friendly_errors

scenes_app = typer.Typer(help="The procedural scene world: make datasets, preview scenes.", no_args_is_help=True)


def _names(values: list[str] | None) -> tuple[str, ...] | None:
    """Accept repeated options and comma-separated lists alike: --floors wood,grass --floors stone."""
    if not values:
        return None
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())


def _scene_config(
    min_objects: int,
    max_objects: int,
    shapes: list[str] | None,
    colours: list[str] | None,
    floors: list[str] | None,
    distance: tuple[float, float] | None = None,
    region: float | None = None,
) -> Any:
    from ..scenes import SceneConfig

    overrides: dict[str, Any] = {"min_objects": min_objects, "max_objects": max_objects}
    if distance is not None:
        overrides["distance"] = tuple(distance)
    if region is not None:
        overrides["region_half_width"] = region
    for key, value in (("shapes", shapes), ("colours", colours), ("floors", floors)):
        names = _names(value)
        if names is not None:
            overrides[key] = names
    return SceneConfig(**overrides).validate()


def make_command(params: dict[str, Any], out: str = "data/scenes-train") -> str:
    """The ``spatialgen scenes make`` command that writes a dataset with these manifest ``params`` again.

    Only settings that differ from the defaults become flags, so a model card's reproduce line stays short;
    settings the command line cannot set (lighting, sizes, caption rules) must be the defaults.
    """
    from ..scenes import CaptionRules, SceneConfig

    config, default = params["config"], SceneConfig().to_dict()
    settable = {"min_objects", "max_objects", "shapes", "colours", "floors", "distance", "region_half_width"}
    fixed = sorted(k for k in config if k not in settable and _as_tuple(config[k]) != _as_tuple(default[k]))
    if fixed or params.get("caption_rules", vars(CaptionRules())) != vars(CaptionRules()):
        raise ValueError(f"these dataset settings have no `scenes make` flag: {fixed or ['caption_rules']}")
    parts = [f"spatialgen scenes make --out {out} --n {params['n']} --resolution {params['resolution']}"]
    parts.append(f"--seed {params['seed']}")
    if params.get("shard_size", 1000) != 1000:
        parts.append(f"--shard-size {params['shard_size']}")
    for key, flag in (("min_objects", "--min-objects"), ("max_objects", "--max-objects")):
        if config[key] != default[key]:
            parts.append(f"{flag} {config[key]}")
    for key in ("shapes", "colours", "floors"):
        if _as_tuple(config[key]) != _as_tuple(default[key]):
            parts.append(f"--{key} {','.join(config[key])}")
    if _as_tuple(config["distance"]) != _as_tuple(default["distance"]):
        parts.append("--distance {:g} {:g}".format(*config["distance"]))
    if config["region_half_width"] != default["region_half_width"]:
        parts.append(f"--region {config['region_half_width']:g}")
    if not params.get("antialias", True):
        parts.append("--no-antialias")
    return " ".join(parts)


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value


_SHAPES_HELP = "Shapes to use (repeat or comma-separate): cube, sphere, cylinder, cone."
_COLOURS_HELP = "Colours to use: red, green, blue, yellow, purple, cyan, gray, brown."
_FLOORS_HELP = "Floor materials to use: checker, wood, grass, stone."
_DISTANCE_HELP = "Camera distance range LOW HIGH (default 6.5 8.0); closer cameras draw larger objects."
_REGION_HELP = "Half-width of the floor square objects stand on (default 2.0)."


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
    distance: tuple[float, float] | None = typer.Option(None, "--distance", help=_DISTANCE_HELP),
    region: float | None = typer.Option(None, "--region", help=_REGION_HELP),
    antialias: bool = typer.Option(True, "--antialias/--no-antialias", help="Antialias RGB at geometry edges."),
) -> None:
    """Write a sharded scene dataset (tar shards + manifest.json); re-run to resume."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from ..scenes import DatasetParams, make_dataset

    config = _scene_config(min_objects, max_objects, shapes, colours, floors, distance, region)
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
    distance: tuple[float, float] | None = typer.Option(None, "--distance", help=_DISTANCE_HELP),
    region: float | None = typer.Option(None, "--region", help=_REGION_HELP),
) -> None:
    """Draw a grid of scenes: RGB, depth, normals, segmentation, lines and captions."""
    from ..fileio import ensure_writable_dir
    from ..scenes import make_sample, scene_seed
    from ..scenes.preview import save_preview

    if n <= 0:
        raise ValueError(f"--n must be positive, got {n}")
    config = _scene_config(min_objects, max_objects, shapes, colours, floors, distance, region)
    ensure_writable_dir(out.parent if str(out.parent) else Path("."), "directory of --out")
    samples = [make_sample(scene_seed(seed, i), resolution, config) for i in range(n)]
    save_preview(samples, out)
    console.print(f"wrote {out} ({n} scenes at {resolution}x{resolution})", highlight=False)


@scenes_app.command("export")
@friendly_errors
def scenes_export(
    out: Path = typer.Option(..., "--out", help="Folder for NAME.png, NAME.depth.png, ... and NAME.json."),
    n: int = typer.Option(..., "--n", help="Number of scenes."),
    seed: int = typer.Option(
        HELD_OUT_SEED, "--seed", help=f"Dataset seed ({HELD_OUT_SEED}: the held-out seed no training set uses)."
    ),
    resolution: int = typer.Option(64, "--resolution", help="Square image size, a multiple of 8."),
) -> None:
    """Write scenes as images with their exact intrinsic maps and a caption sidecar, for evaluations."""
    import numpy as np
    from PIL import Image

    from ..fileio import atomic_write_bytes, atomic_write_json, ensure_writable_dir
    from ..generate import png_bytes
    from ..intrinsic_files import save_maps
    from ..scenes import make_sample, scene_seed

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
