from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatialgen.generate import (
    GenerationSettings,
    check_size,
    generate_images,
    image_grid,
    read_prompt_file,
    save_generated,
)

FAST = GenerationSettings(steps=2)


def test_an_image_depends_on_its_seed_only_not_on_its_batch(tiny_pipe) -> None:
    together = generate_images(tiny_pipe, ["a red cube"], n=3, seed=10, settings=FAST, batch_size=3, progress=False)
    alone = generate_images(tiny_pipe, ["a red cube"], n=1, seed=12, settings=FAST, progress=False)
    assert [r.seed for r in together] == [10, 11, 12]
    a, b = np.asarray(together[2].image, dtype=int), np.asarray(alone[0].image, dtype=int)
    assert np.abs(a - b).max() <= 1  # the same seed gives the same image (up to uint8 rounding of BLAS noise)
    assert np.abs(np.asarray(together[0].image, dtype=int) - a).max() > 10, "other seeds give other images"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (GenerationSettings(steps=0), "--steps must be a positive"),
        (GenerationSettings(steps=-3), "--steps must be a positive"),
        (GenerationSettings(guidance=-1), "--guidance must be"),
        (GenerationSettings(scheduler="plms"), "unknown --scheduler"),
        (GenerationSettings(steps=2, size=30), "use a positive multiple of 4"),
    ],
)
def test_bad_settings_are_refused_with_what_to_change(tiny_pipe, settings, message) -> None:
    with pytest.raises(ValueError, match=message):
        generate_images(tiny_pipe, ["a red cube"], settings=settings, progress=False)


def test_sizes_are_multiples_of_the_model_downsampling(tiny_pipe) -> None:
    assert check_size(tiny_pipe, 64) == 64
    with pytest.raises(ValueError, match="native size is 32"):
        check_size(tiny_pipe, 0)


def test_unknown_words_warn_or_with_strict_refuse(tiny_pipe, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="spatialgen"):
        generate_images(tiny_pipe, ["a red dragon"], settings=FAST, progress=False)
    assert "dragon" in caplog.text
    with pytest.raises(ValueError, match="outside the model's vocabulary: dragon"):
        generate_images(tiny_pipe, ["a red dragon"], settings=FAST, strict=True, progress=False)
    with pytest.raises(ValueError, match="tokens long"):
        generate_images(tiny_pipe, ["a red cube and " * 10], settings=FAST, strict=True, progress=False)


def test_files_carry_prompt_seed_and_settings(tiny_pipe, tmp_path: Path) -> None:
    results = generate_images(tiny_pipe, ["a red cube", "a blue cone"], n=2, seed=5, settings=FAST, progress=False)
    saved = save_generated(results, tmp_path, {"steps": 2, "model": "tiny"})
    assert len(saved) == 4 and (tmp_path / "grid.png").is_file()
    first = saved[0].path
    assert first.name == "000-a-red-cube-seed5.png"
    with Image.open(first) as image:
        meta = json.loads(image.text["parameters"])
        assert image.text["prompt"] == "a red cube"
    assert meta["seed"] == 5 and meta["steps"] == 2 and meta["model"] == "tiny"
    assert json.loads(first.with_suffix(".json").read_text()) == meta
    assert saved[3].path.name == "001-a-blue-cone-seed6.png"


def test_prompt_file_skips_blanks_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text("# relations\na red cube\n\n  a blue sphere  \n")
    assert read_prompt_file(path) == ["a red cube", "a blue sphere"]
    path.write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no prompts"):
        read_prompt_file(path)
    with pytest.raises(FileNotFoundError):
        read_prompt_file(tmp_path / "missing.txt")


def test_grid_places_images_in_rows() -> None:
    tiles = [Image.new("RGB", (16, 16), c) for c in ("red", "green", "blue")]
    grid = image_grid(tiles, ["r", "g", "b"], columns=2)
    assert grid.width == 2 * (128 + 4) + 4
    assert grid.getpixel((10, 10)) == (255, 0, 0) and grid.getpixel((4 + 132 + 10, 10)) == (0, 128, 0)
