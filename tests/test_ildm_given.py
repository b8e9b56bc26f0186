"""I-LDM's two held-domain jobs from the command line: maps of given images, images for given maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from spatialgen.cli import app
from spatialgen.ildm.given import complete_maps, load_given_maps, parse_given, snap_to_palette
from spatialgen.intrinsic_files import load_maps, save_maps
from spatialgen.intrinsics import SEGMENTATION_PALETTE
from spatialgen.scenes import make_sample, scene_seed


def _render_maps(tmp_path: Path, size: int = 32) -> tuple[Path, dict[str, np.ndarray]]:
    sample = make_sample(scene_seed(7, 1), size)
    maps = sample.intrinsics()
    arrays = {name: getattr(maps, name) for name in ("depth", "normal", "segmentation", "lines")}
    image = tmp_path / "scene.png"
    Image.fromarray(sample.rgb).save(image)
    save_maps(image, arrays)
    return image, arrays


def test_given_files_load_as_written_and_missing_maps_are_completed(tmp_path: Path) -> None:
    image, exact = _render_maps(tmp_path)
    files = {name: tmp_path / f"scene.{name}.png" for name in exact}
    full = load_given_maps(files, 32)
    assert np.abs(full.depth[0] - exact["depth"]).max() < 1 / 65535 + 1e-6  # 16-bit depth, read at its size
    assert np.array_equal(full.segmentation[0], exact["segmentation"])  # palette colours survive exactly
    partial = load_given_maps({"depth": files["depth"]}, 32)
    assert np.all(partial.segmentation == 0.5)  # missing: packed 0, the VAE's zeroed intrinsic
    # normals from depth: the floor and object faces the camera sees face it (z > 0), like the render's
    z = partial.normal[0, 2] * 2 - 1
    assert (z > 0).mean() > 0.95
    # lines from depth and normal edges: they fall on the render's contours far more often than by chance
    lines = partial.lines[0, 0] > 0.5
    near_contour = np.maximum.reduce([np.roll(exact["lines"][0], s, a) for s in (-1, 0, 1) for a in (0, 1)]) > 0.5
    assert lines.any() and (lines & near_contour).sum() / lines.sum() > 2 * near_contour.mean()
    upscaled = load_given_maps({"segmentation": files["segmentation"], "depth": files["depth"]}, 64)
    palette = {tuple(c) for c in SEGMENTATION_PALETTE.tolist()}
    pixels = np.rint(np.moveaxis(upscaled.segmentation[0], 0, -1).reshape(-1, 3) * 255).astype(int)
    colours = {tuple(c) for c in pixels.tolist()}
    assert colours <= palette  # nearest-neighbour resizing: no blended colours between segments


def test_given_specs_say_what_to_change(tmp_path: Path) -> None:
    image, _ = _render_maps(tmp_path)
    depth = tmp_path / "scene.depth.png"
    assert parse_given(f"depth={depth}") == {"depth": depth}
    with pytest.raises(ValueError, match="NAME=FILE"):
        parse_given(str(depth))
    with pytest.raises(ValueError, match="names depth, normal, segmentation, lines"):
        parse_given(f"albedo={depth}")
    with pytest.raises(ValueError, match="needs a depth or a normal map"):
        parse_given(f"segmentation={tmp_path / 'scene.segmentation.png'}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        parse_given(f"depth={tmp_path / 'missing.png'}")
    with pytest.raises(ValueError, match="depth or a normal"):
        complete_maps()


def test_snapping_moves_noisy_colours_to_the_palette() -> None:
    colour = SEGMENTATION_PALETTE[3] / 255.0
    noisy = np.broadcast_to(colour[:, None, None], (3, 2, 2)) + 0.04
    assert np.allclose(snap_to_palette(noisy), colour[:, None, None])


def _tiny_ildm(tmp_path: Path, tiny_pipe) -> Path:
    from spatialgen.ildm import lora_parameters
    from spatialgen.ildm.intrinsic_vae import widen_vae
    from spatialgen.ildm.pipeline import IntrinsicLDMPipeline

    pipe = IntrinsicLDMPipeline.from_base(
        tiny_pipe, widen_vae(tiny_pipe.vae), rank=4, placement=("self-attention", "conv-io")
    )
    torch.manual_seed(1)
    for p in lora_parameters(pipe.unet):
        p.data.normal_(0, 0.2)
    pipe.save_pretrained(tmp_path / "ildm")
    return tmp_path / "ildm"


def test_cli_reads_maps_of_images_and_draws_images_for_maps(tmp_path: Path, tiny_pipe) -> None:
    model = _tiny_ildm(tmp_path, tiny_pipe)
    image, _ = _render_maps(tmp_path)
    folder = tmp_path / "images"
    folder.mkdir()
    Image.open(image).resize((48, 40)).save(folder / "a.png")  # any size: maps come back at the image's size
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["intrinsics", "extract", "--images", str(folder), "--method", "ildm", "--model", str(model),
         "--intrinsics", "depth,segmentation", "--steps", "2", "--out", str(tmp_path / "maps")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    maps = load_maps(tmp_path / "maps" / "a.png")
    assert set(maps) == {"depth", "segmentation"} and maps["depth"].shape == (1, 40, 48)
    bad = runner.invoke(
        app,
        ["intrinsics", "extract", "--images", str(folder), "--method", "ildm", "--model", str(model),
         "--intrinsics", "albedo", "--out", str(tmp_path / "x")],
    )  # fmt: skip
    assert bad.exit_code != 0 and "I-LDM reads depth, normal, segmentation, lines" in " ".join(bad.output.split())

    given = f"depth={tmp_path / 'scene.depth.png'},segmentation={tmp_path / 'scene.segmentation.png'}"
    args = ["generate", "a red cube", "--method", "ildm", "--model", str(model), "--n", "2", "--steps", "2"]
    result = runner.invoke(app, [*args, "--given", given, "--out", str(tmp_path / "drawn")])
    assert result.exit_code == 0, result.output
    drawn = sorted(p for p in (tmp_path / "drawn").glob("*-seed*.png") if p.name.count(".") == 1)
    assert len(drawn) == 2
    held = [load_maps(p)["segmentation"] for p in drawn]
    assert np.array_equal(held[0], held[1])  # both images follow the same held maps
    refused = runner.invoke(app, ["generate", "a red cube", "--given", given, "--out", str(tmp_path / "sd")])
    assert refused.exit_code != 0 and "--method ildm" in refused.output


def test_held_jobs_are_refused_only_for_models_whose_card_says_they_were_not_trained_for_them() -> None:
    from types import SimpleNamespace

    from spatialgen.ildm.held_jobs import held_job_refusal
    from spatialgen.models.pipeline import set_model_card

    def pipe(card: dict) -> SimpleNamespace:
        p = SimpleNamespace()
        set_model_card(p, card)
        return p

    reader = pipe({"training": {"p_image_clean": 0.15, "p_intrinsic_clean": 0.0}})
    assert held_job_refusal(reader, "read") is None
    follow = held_job_refusal(reader, "follow")
    assert follow is not None and "follow given maps (p_intrinsic_clean = 0)" in follow
    assert "--p-intrinsic-clean" in follow  # the refusal says what to change
    old = pipe({"training": {"steps": 1500}})  # trained before clean pairs existed
    assert held_job_refusal(old, "read") is not None and held_job_refusal(old, "follow") is not None
    assert held_job_refusal(pipe({}), "read") is None  # no record: the author's own model is trusted
    with pytest.raises(ValueError, match="job must be one of read, follow"):
        held_job_refusal(reader, "draw")  # type: ignore[arg-type]
