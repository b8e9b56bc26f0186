"""The command line, end to end, with its error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from spatialgen import __version__
from spatialgen.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_help_lists_every_command_with_its_summary() -> None:
    result = run("--help")
    for command in ("scenes", "generate", "train", "eval"):
        assert command in result.output
    assert result.exit_code == 0
    result = run("train", "--help")
    assert result.exit_code == 0 and "base" in result.output and "recogniser" in result.output
    result = run("scenes", "--help")
    assert result.exit_code == 0
    for command in ("make", "preview", "info"):
        assert command in result.output


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_make_info_and_preview_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "scenes"
    result = run(
        "scenes", "make", "--out", str(out), "--n", "5", "--resolution", "32", "--seed", "3", "--shard-size", "2"
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["params"]["n"] == 5 and len(manifest["shards"]) == 3
    result = run("scenes", "info", str(out))
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "5 of 5 scenes at 32px, seed 3 (complete)" in text

    png = tmp_path / "preview.png"
    result = run("scenes", "preview", "--out", str(png), "--n", "2", "--resolution", "32", "--floors", "wood,grass")
    assert result.exit_code == 0, result.output
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 5 * 32


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resolution", "0"], "positive multiple of 8"),
        (["--resolution", "100"], "positive multiple of 8"),
        (["--n", "0"], "must be positive"),
        (["--floors", "marble"], "unknown floor name(s) ['marble']"),
        (["--shapes", "cube,torus"], "unknown shape name(s) ['torus']"),
        (["--min-objects", "6"], "max_objects <= 5"),
    ],
)
def test_make_refuses_bad_arguments_with_a_clear_message(tmp_path: Path, args: list[str], message: str) -> None:
    base = {"--n": "3", "--resolution": "32"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    flat = [item for pair in base.items() for item in pair]
    result = run("scenes", "make", "--out", str(tmp_path / "out"), *flat)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_make_refuses_an_unwritable_output_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("scenes", "make", "--out", str(blocker / "out"), "--n", "2", "--resolution", "32")
    assert result.exit_code == 2 and "cannot write to output directory" in " ".join(result.output.split())


def test_info_on_a_directory_without_a_dataset(tmp_path: Path) -> None:
    result = run("scenes", "info", str(tmp_path))
    assert result.exit_code == 2 and "no manifest.json" in result.output


def test_generate_on_the_embedded_model_end_to_end(tmp_path: Path) -> None:
    result = run(
        "generate",
        "a red cube to the left of a blue sphere",
        "--n",
        "2",
        "--steps",
        "2",
        "--seed",
        "7",
        "--out",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == [
        "000-a-red-cube-to-the-left-of-a-blue-sphere-seed7.png",
        "000-a-red-cube-to-the-left-of-a-blue-sphere-seed8.png",
        "grid.png",
    ]
    with Image.open(tmp_path / names[0]) as image:
        assert image.size == (64, 64)
        meta = json.loads(image.text["parameters"])
    assert meta["prompt"] == "a red cube to the left of a blue sphere" and meta["seed"] == 7
    assert meta["steps"] == 2 and meta["scheduler"] == "ddim" and meta["model"] == "embedded"


def test_generate_from_a_prompt_file(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a green cone\n# skipped\na yellow sphere on the grass\n")
    result = run(
        "generate",
        "--prompts",
        str(prompts),
        "--n",
        "1",
        "--steps",
        "1",
        "--scheduler",
        "dpm",
        "--out",
        str(tmp_path / "out"),
    )
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*-seed0.json"))) == 2  # a sidecar per image
    record = json.loads((tmp_path / "out" / "generation.json").read_text())  # and what made them, for --resume
    assert record["prompts"] == 2 and record["settings"]["scheduler"] == "dpm" and record["layout"] == "spatialgen"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a red dragon", "--strict"], "outside the model's vocabulary: dragon"),
        (["a red cube", "--steps", "0"], "--steps must be a positive"),
        (["a red cube", "--size", "50"], "multiple of 16"),
        (["a red cube", "--model", "/no/such/model"], "neither an existing folder nor a hub id"),
        (["a red cube", "--device", "quantum"], "unknown device"),
        ([], "give either a PROMPT argument or --prompts FILE"),
    ],
)
def test_generate_refuses_bad_input_with_a_clear_message(tmp_path: Path, args: list[str], message: str) -> None:
    result = run("generate", *args, "--out", str(tmp_path))
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not list(tmp_path.glob("*.png"))


def test_the_make_command_of_a_dataset_writes_the_same_dataset_params(tmp_path) -> None:
    """A model card's reproduce line must rebuild its data: params -> command -> params is the identity."""
    import json
    import shlex

    from spatialgen.cli.scenes import make_command

    first = [
        "scenes", "make", "--out", str(tmp_path / "a"), "--n", "4", "--resolution", "32", "--seed", "7",
        "--workers", "1", "--max-objects", "3", "--distance", "4.5", "5.5", "--region", "1.4", "--floors", "grass,wood",
    ]  # fmt: skip
    assert runner.invoke(app, first).exit_code == 0
    params = json.loads((tmp_path / "a" / "manifest.json").read_text())["params"]
    command = make_command(params, out=str(tmp_path / "b"))
    assert "--distance 4.5 5.5 --region 1.4" in command and "--min-objects" not in command
    args = shlex.split(command)[1:]
    assert runner.invoke(app, [*args, "--workers", "1"]).exit_code == 0
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["params"] == params
    with pytest.raises(ValueError, match=r"no `scenes make` flag: \['ambient'\]"):
        make_command({**params, "config": {**params["config"], "ambient": [0.1, 0.2]}})
