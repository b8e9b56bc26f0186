"""Each mistake a user can make with a model id, a cluster address, a caption set or a prompt gets one sentence
that names the option and what to do, in seconds; none ends in a traceback or a minute of retries."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatialgen.hub import check_model_source


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_model_sources_are_told_apart_and_refused_in_seconds(no_network, tmp_path: Path, monkeypatch) -> None:
    from spatialgen.eval.detection.depth import load_depth_estimator
    from spatialgen.eval.detection.detectors import load_detector
    from spatialgen.extraction.estimators import normal_estimator

    assert check_model_source(str(tmp_path), "--depth") == str(tmp_path)  # a folder here is a folder
    with pytest.raises(ValueError, match="--normal marigold: '/nonexistent': no such folder"):
        normal_estimator("marigold:/nonexistent")
    started = time.perf_counter()
    with pytest.raises(ValueError, match="--depth 'Intel/dpt-large' is not a folder here nor in the hub cache"):
        load_depth_estimator("Intel/dpt-large")
    with pytest.raises(ValueError, match="--detector 'bogus'.*hub .* cannot be reached.*hf download bogus"):
        load_detector("bogus")
    assert time.perf_counter() - started < 5  # no retries
    with pytest.raises(ValueError, match="is neither a folder here nor a hub id"):
        check_model_source("not a/valid id!", "--model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE is set"):
        check_model_source("org/model", "--model")


def test_generate_with_an_unreachable_hub_id_says_so_without_a_traceback(no_network) -> None:
    from typer.testing import CliRunner

    from spatialgen.cli import app

    result = CliRunner().invoke(app, ["generate", "a cube", "--model", "org/model", "--out", "unused"])
    assert result.exit_code != 0 and "--model 'org/model'" in result.output and "Traceback" not in result.output


def test_a_ray_address_without_a_cluster_names_the_option(monkeypatch, tmp_path: Path) -> None:
    import ray

    from spatialgen.shard_jobs import run_ray

    def no_cluster(**kwargs):
        raise ConnectionError(
            "Could not find any running Ray instance. Please specify the one to connect to by setting `--address`"
        )

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", no_cluster)
    with pytest.raises(ValueError, match="no Ray cluster answers at --ray-address auto.*ray start --head"):
        run_ray([object()], tmp_path, settings=None, address="auto")


def test_captions_all_held_out_are_reported_as_held_out(tmp_path: Path) -> None:
    from spatialgen.esplora.data import from_folder
    from spatialgen.eval.prompts.prompt_sets import scene_prompt_set

    held_out = [record.prompt for record in scene_prompt_set("2d", 3)]
    for i, caption in enumerate(held_out):
        Image.fromarray(np.full((40, 40, 3), 90 * i, np.uint8)).save(tmp_path / f"{i}.png")
        (tmp_path / f"{i}.txt").write_text(caption)
    with pytest.raises(ValueError, match="all 3 relational caption\\(s\\) name triplets held out for evaluation"):
        from_folder(tmp_path, 32)


def test_infsplign_on_words_the_model_cannot_spell_is_one_message(tiny_pipe) -> None:
    from spatialgen.generate import check_prompts

    assert tiny_pipe.tokenizer.unk_token  # the project's word-level tokenizer: "dog" and "cat" are not words of it
    with pytest.raises(ValueError) as refused:
        check_prompts(tiny_pipe, ["a dog to the left of a cat"], guided=True)
    message = str(refused.value)
    assert "InfSplign cannot guide" in message and "dog, cat" in message and "--method sd" in message
    check_prompts(tiny_pipe, ["a dog to the left of a cat"], guided=False)  # unguided: a warning, not an error


def test_one_unreadable_image_is_skipped_and_named_while_the_folder_is_read(tmp_path: Path) -> None:
    from spatialgen.ilora.extract import IntrinsicExtractor, extract_folder
    from spatialgen.intrinsic_files import map_path
    from spatialgen.scenes import make_sample, scene_seed

    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(make_sample(scene_seed(2, i), 64).rgb).save(images / f"scene{i}.png")
    (images / "broken.png").write_bytes(b"\x89PNG not really")
    report = extract_folder(IntrinsicExtractor.load("estimator", "depth"), images, tmp_path / "out")
    assert report.written == 3 and [u.split(":")[0] for u in report.unreadable] == ["broken.png"]
    assert all(map_path(tmp_path / "out" / f"scene{i}.png", "depth").is_file() for i in range(3))
