from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from safetensors.torch import load_file

from spatialgen.models.data import batch_generator, draw_captions
from spatialgen.models.training import BaseTrainConfig, diffusion_loss, train_base
from spatialgen.scenes import DatasetParams, make_dataset
from spatialgen.training_harness import list_checkpoints

from .conftest import TINY


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    make_dataset(root, DatasetParams(n=24, resolution=32, seed=3, shard_size=12), workers=1)
    return root


def test_the_loss_decreases_when_a_fresh_model_fits_a_batch(tiny_pipe) -> None:
    torch.manual_seed(0)
    scheduler = DDPMScheduler.from_config(tiny_pipe.scheduler.config)
    latents = torch.randn(4, 4, 16, 16)
    prompts = ["a red cube", "a blue sphere", "two cones", "a gray cylinder on the grass"]
    params = list(tiny_pipe.unet.parameters()) + list(tiny_pipe.text_encoder.parameters())
    optimizer = torch.optim.Adam(params, lr=2e-3)

    def loss_at(step: int) -> torch.Tensor:  # the same noise and timesteps at every evaluation
        return diffusion_loss(
            tiny_pipe.unet,
            tiny_pipe.text_encoder,
            tiny_pipe.tokenizer,
            scheduler,
            latents,
            prompts,
            torch.Generator().manual_seed(step % 2),
        )[0]

    with torch.no_grad():
        before = (loss_at(0) + loss_at(1)).item()
    for step in range(30):
        loss_at(step).backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        after = (loss_at(0) + loss_at(1)).item()
    assert after < 0.7 * before


def test_caption_draws_follow_the_mix_and_dropout() -> None:
    captions = [{"attributes": "a red cube", "relation2d": "a red cube to the left of a blue cone"}] * 4000
    drawn = draw_captions(batch_generator(0, 0), captions, np.arange(4000), {"attributes": 0.9, "relation2d": 0.1}, 0.2)
    assert abs(drawn.count("") / 4000 - 0.2) < 0.03
    assert abs(sum("left" in c for c in drawn) / 4000 - 0.08) < 0.02
    again = draw_captions(batch_generator(0, 0), captions, np.arange(4000), {"attributes": 0.9, "relation2d": 0.1}, 0.2)
    assert drawn == again


def test_held_out_captions_are_dropped_by_their_text_whatever_their_kind() -> None:
    from spatialgen.eval.prompts.prompt_sets import scene_prompt_set

    held_out = scene_prompt_set("2d", 1)[0].prompt
    # A scene dataset read back from `intrinsics extract --source` names its captions caption, caption-2, ...
    extracted = [{"caption": held_out, "caption-2": "a red cube"}] * 200
    drawn = draw_captions(batch_generator(0, 0), extracted, np.arange(200), exclude_held_out=True)
    assert set(drawn) == {"a red cube"}
    assert held_out in draw_captions(batch_generator(0, 0), extracted, np.arange(200))  # kept when not asked
    only_held_out = [{"caption": held_out}] * 3
    assert draw_captions(batch_generator(0, 0), only_held_out, np.arange(3), exclude_held_out=True) == [""] * 3


def _config(scenes: Path, out: Path, diffusion_steps: int) -> BaseTrainConfig:
    return BaseTrainConfig(
        data=str(scenes),
        out=str(out),
        model=TINY.to_dict(),
        vae_steps=2,
        diffusion_steps=diffusion_steps,
        batch_size=4,
        warmup_steps=2,
        checkpoint_every=2,
        sample_steps=2,
        seed=1,
    )


def test_resumed_training_equals_uninterrupted_training(scenes: Path, tmp_path: Path) -> None:
    straight = train_base(_config(scenes, tmp_path / "a", 4), cpu=True)
    # The same run, stopped after 2 steps (a checkpoint, no pipeline), moved to another folder, and resumed to 4.
    assert train_base(_config(scenes, tmp_path / "first", 4), cpu=True, stop_after=2) is None
    assert not (tmp_path / "first" / "pipeline").exists()
    assert train_base(_config(scenes, tmp_path / "first", 4), resume="latest", cpu=True, stop_after=2) is None
    (tmp_path / "first").rename(tmp_path / "b")
    resumed = train_base(_config(scenes, tmp_path / "b", 4), resume="latest", cpu=True)
    for part in ("unet", "text_encoder", "vae"):
        a = load_file(next((straight / part).glob("*.safetensors")))
        b = load_file(next((resumed / part).glob("*.safetensors")))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    assert [step for _, step, _ in list_checkpoints(tmp_path / "b")] == [2, 4]
    recorded = json.loads((resumed / "spatialgen.json").read_text())
    assert recorded["training"]["diffusion_steps"] == 4 and "spatialgen train base --config" in recorded["command"]
    assert (tmp_path / "b" / "samples" / "step-0000004.png").is_file()


def test_a_finished_run_is_not_overwritten_and_configs_must_match(scenes: Path, tmp_path: Path) -> None:
    train_base(_config(scenes, tmp_path, 2), cpu=True)
    with pytest.raises(ValueError, match="pass --resume latest"):
        train_base(_config(scenes, tmp_path, 2), cpu=True)
    changed = _config(scenes, tmp_path, 2)
    changed.batch_size = 8
    with pytest.raises(ValueError, match=r"changed: \['batch_size'\]"):
        train_base(changed, resume="latest", cpu=True)


def test_bad_training_configs_are_refused(scenes: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size must be positive"):
        BaseTrainConfig(data=str(scenes), out=str(tmp_path), batch_size=0).validate()
    with pytest.raises(ValueError, match="caption_dropout"):
        BaseTrainConfig(data=str(scenes), out=str(tmp_path), caption_dropout=1.5).validate()
    wrong_size = _config(scenes, tmp_path, 2)
    wrong_size.model = {**TINY.to_dict(), "resolution": 64}
    with pytest.raises(ValueError, match="the data are 32 px but the model is for 64 px"):
        train_base(wrong_size, cpu=True)


def test_training_captions_can_exclude_the_held_out_split() -> None:
    from spatialgen.scenes.held_out import is_held_out_caption

    pairs = [(a, b) for a in ("red cube", "green cone") for b in ("blue sphere", "gray cylinder")]
    texts = [f"a {a} {p} a {b}" for a, b in pairs for p in ("to the left of", "above", "behind")]
    held_texts = [t for t in texts if is_held_out_caption(t)]
    assert held_texts and len(held_texts) < len(texts)  # both sides of the split occur
    captions = [{"attributes": "a red cube on the grass", "relation2d": t} for t in texts] * 50
    mix = {"attributes": 0.01, "relation2d": 0.99}
    excluded = draw_captions(batch_generator(0, 0), captions, np.arange(len(captions)), mix, 0.0, True)
    assert not any(is_held_out_caption(c) for c in excluded)
    assert any(c in texts for c in excluded)  # kept relational captions are still drawn
    included = draw_captions(batch_generator(0, 0), captions, np.arange(len(captions)), mix, 0.0, False)
    assert any(c in held_texts for c in included)


def test_configs_from_before_the_split_reproduce_without_exclusion(tmp_path: Path) -> None:
    legacy = {"data": "d", "out": "o"}
    (tmp_path / "config.json").write_text(json.dumps(legacy))
    assert BaseTrainConfig.from_file(tmp_path / "config.json").exclude_held_out is False
    assert BaseTrainConfig(data="d", out="o").exclude_held_out is True
