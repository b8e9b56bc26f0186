"""IntrinsicLDMPipeline: base-exact at w = 0, same noise for both domains, save / load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spatialgen.ildm import ConstantSchedule, lora_parameters
from spatialgen.ildm.intrinsic_vae import widen_vae
from spatialgen.ildm.pipeline import IntrinsicLDMPipeline
from spatialgen.models import build_pipeline
from spatialgen.models.pipeline import model_card

from .conftest import TINY


def _pipes():
    torch.manual_seed(0)
    base = build_pipeline(TINY)
    base.set_progress_bar_config(disable=True)
    torch.manual_seed(0)
    ours = IntrinsicLDMPipeline.from_base(build_pipeline(TINY), widen_vae(base.vae), rank=4)
    ours.set_progress_bar_config(disable=True)
    torch.manual_seed(1)
    for p in lora_parameters(ours.unet):
        p.data.normal_(0, 0.3)
    return base, ours


def _sample(pipe, **kwargs):
    kwargs.setdefault("output_type", "np")
    return pipe(
        ["a red cube", "a blue sphere"], num_inference_steps=4, generator=torch.Generator().manual_seed(7), **kwargs
    )


def test_weight_zero_reproduces_the_base_pipeline_exactly() -> None:
    base, ours = _pipes()
    expected = _sample(base).images
    out = _sample(ours, schedule=ConstantSchedule(0.0))
    assert np.abs(out.images - expected).max() < 1e-5
    assert out.intrinsics.depth.shape == (2, 1, 32, 32) and out.intrinsic_latents.shape == (2, 4, 16, 16)
    mixed = _sample(ours, schedule=ConstantSchedule(1.0)).images
    assert np.abs(mixed - expected).max() > 1e-3  # with w = 1 the intrinsic domain does reach the image


def test_both_domains_start_from_the_same_noise() -> None:
    _, ours = _pipes()
    seen = {}

    def capture(pipe, i, t, tensors):
        if i == 0:
            seen.update({k: v.clone() for k, v in tensors.items()})
        return tensors

    start = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    for p in lora_parameters(ours.unet):
        p.data.zero_()  # without LoRA both domains run the same network on the same input
    _sample(ours, latents=start, schedule="none", callback_on_step_end=capture)
    assert torch.allclose(seen["latents"], seen["intrinsic_latents"], atol=1e-5)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    _, ours = _pipes()
    ours.default_schedule = ConstantSchedule(0.5)
    ours.save_pretrained(tmp_path / "ildm")
    assert (tmp_path / "ildm" / "intrinsic_lora" / "adapter_config.json").is_file()
    # the saved UNet is the plain base UNet: any diffusers tool reads it
    from diffusers import UNet2DConditionModel

    UNet2DConditionModel.from_pretrained(tmp_path / "ildm" / "unet")
    loaded = IntrinsicLDMPipeline.from_pretrained(tmp_path / "ildm")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.default_schedule == ConstantSchedule(0.5)
    a, b = _sample(ours), _sample(loaded)
    assert np.abs(a.images - b.images).max() < 1e-6
    assert torch.allclose(a.intrinsic_latents, b.intrinsic_latents, atol=1e-6)


def test_bad_inputs_say_what_to_change() -> None:
    _, ours = _pipes()
    with pytest.raises(ValueError, match="multiples of 2"):  # the tiny VAE downsamples twice
        ours("a red cube", height=31, width=32)
    with pytest.raises(ValueError, match="num_inference_steps must be positive"):
        ours("a red cube", num_inference_steps=0)


def test_generate_method_ildm_writes_images_with_their_intrinsic_maps(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from spatialgen.cli import app
    from spatialgen.intrinsic_files import load_maps

    _, ours = _pipes()
    ours.save_pretrained(tmp_path / "ildm")
    runner = CliRunner()
    args = ["generate", "a red cube", "--method", "ildm", "--model", str(tmp_path / "ildm"), "--n", "2", "--steps", "2"]
    result = runner.invoke(app, [*args, "--schedule", "gaussian", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    images = sorted(p for p in (tmp_path / "out").glob("*-seed*.png") if p.name.count(".") == 1)
    assert len(images) == 2 and (tmp_path / "out" / "grid.png").is_file()
    maps = load_maps(images[0])
    assert set(maps) == {"depth", "normal", "segmentation", "lines"} and maps["normal"].shape == (3, 32, 32)
    assert json.loads(images[0].with_suffix(".json").read_text())["schedule"] == "gaussian"
    bad = runner.invoke(app, [*args, "--schedule", "cosine", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "unknown weight schedule" in bad.output
    (tmp_path / "plain").mkdir()
    missing = runner.invoke(
        app,
        [
            "generate",
            "a red cube",
            "--method",
            "ildm",
            "--model",
            str(tmp_path / "plain"),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert missing.exit_code == 2 and "is not an I-LDM pipeline folder" in " ".join(missing.output.split())
    # the co-generated maps are what `eval intrinsics` reads: consistency with the scene estimator
    scored = runner.invoke(app, ["eval", "intrinsics", "--images", str(tmp_path / "out"), "--out", str(tmp_path / "e")])
    assert scored.exit_code == 0, scored.output


def test_the_embedded_ildm_co_generates_offline(tmp_path: Path) -> None:
    from spatialgen.ildm.pipeline import load_ildm_pipeline

    pipe = load_ildm_pipeline("embedded")
    out = pipe(
        "a red cube on the grass", num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np"
    )
    assert out.images.shape == (1, 64, 64, 3)
    assert out.intrinsics.depth.shape == (1, 1, 64, 64) and out.intrinsics.lines.shape == (1, 1, 64, 64)
    assert model_card(pipe)["training"]["rank"] == 32  # the shipped recipe travels with it


def test_guidance_inside_ildm_is_exact_at_weight_zero_and_steers_the_image_domain() -> None:
    from spatialgen.guidance import InfSplignConfig

    torch.manual_seed(0)
    base = build_pipeline(TINY)
    pipe = IntrinsicLDMPipeline.from_base(base, widen_vae(base.vae), rank=4)
    pipe.set_progress_bar_config(disable=True)

    def _sample(**kwargs):
        prompts = ["a red cube to the left of a blue sphere", "a green cone above a yellow cylinder"]
        generators = [torch.Generator().manual_seed(3 + k) for k in range(len(prompts))]
        return pipe(prompts, num_inference_steps=6, generator=generators, output_type="np", **kwargs)

    plain = _sample()
    zero = _sample(spatial_guidance=InfSplignConfig(weight=0.0, guide_fraction=0.5))
    assert np.array_equal(zero.images, plain.images)
    assert torch.equal(zero.intrinsic_latents, plain.intrinsic_latents)
    guided = _sample(spatial_guidance=InfSplignConfig(weight=300.0, guide_fraction=0.5))
    assert not np.array_equal(guided.images, plain.images)
    assert guided.trace is not None and len(guided.trace.steps) == 3
    assert pipe.cross_domain.layout is None  # the joint layout is cleared after sampling


def test_a_held_image_stays_exactly_its_latents_while_its_maps_are_drawn() -> None:
    """image=: the image domain is held clean at timestep 0; its latents leave the loop unchanged."""
    _, ours = _pipes()
    pictures = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    expected = ours.vae.encode(pictures).latent_dist.mean * ours.vae.config.scaling_factor
    out = _sample(ours, image=pictures, output_type="latent")
    assert torch.equal(out.images, expected)
    other = _sample(ours, image=pictures.flip(0), output_type="latent")
    assert not torch.allclose(other.intrinsic_latents, out.intrinsic_latents, atol=1e-3)  # the maps read the image
    seen = []

    def record(module, args, kwargs):
        seen.append(args[1] if len(args) > 1 else kwargs["timestep"])

    hook = ours.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        _sample(ours, image=pictures)
    finally:
        hook.remove()
    assert all(t.shape == (8,) and torch.all(t[:4] == 0) and torch.all(t[4:] > 0) for t in seen)  # CFG: 4 rows each


def test_given_intrinsics_stay_exactly_their_latents_and_w0_draws_the_base_image() -> None:
    from spatialgen.ildm.intrinsic_vae import encode_intrinsics
    from spatialgen.intrinsics import Intrinsics

    base, ours = _pipes()
    g = torch.Generator().manual_seed(4)
    maps = Intrinsics(*(torch.rand(2, c, 32, 32, generator=g) for c in (1, 3, 3, 1)))
    out = _sample(ours, given_intrinsics=maps)
    assert torch.equal(out.intrinsic_latents, encode_intrinsics(ours.intrinsic_vae, maps))
    # at w = 0 the image never sees the held maps: it is the base model's image for the same noise
    blind = _sample(ours, given_intrinsics=maps, schedule=ConstantSchedule(0.0))
    assert np.abs(blind.images - _sample(base).images).max() < 1e-5
    assert np.abs(out.images - blind.images).max() > 1e-3  # at w = 1 (the default here) the maps reach the image


def test_held_inputs_are_checked() -> None:
    from spatialgen.intrinsics import Intrinsics

    _, ours = _pipes()
    pictures = torch.zeros(2, 3, 32, 32)
    maps = Intrinsics(*(torch.zeros(2, c, 32, 32) for c in (1, 3, 3, 1)))
    with pytest.raises(ValueError, match="hold one domain at most"):
        _sample(ours, image=pictures, given_intrinsics=maps)
    with pytest.raises(ValueError, match="one held image or map set per prompt"):
        _sample(ours, image=pictures[:1])


def test_lagged_co_generation_holds_the_image_once_drawn_and_zero_lag_is_the_paper() -> None:
    """intrinsic_lag=k: the image's own steps are unchanged at w = 0; the maps run k steps behind."""
    base, ours = _pipes()
    plain = _sample(ours)
    assert np.array_equal(_sample(ours, intrinsic_lag=0).images, plain.images)
    lagged = _sample(ours, intrinsic_lag=2, schedule=ConstantSchedule(0.0))
    assert np.abs(lagged.images - _sample(base).images).max() < 1e-5  # at w = 0 the image is the base model's
    seen = []

    def record(module, args, kwargs):
        seen.append((args[1] if len(args) > 1 else kwargs["timestep"]).clone())

    hook = ours.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        _sample(ours, intrinsic_lag=2)
    finally:
        hook.remove()
    ours.scheduler.set_timesteps(4)
    ts = ours.scheduler.timesteps
    assert len(seen) == 6  # 4 image steps + 2 more for the maps
    assert torch.all(seen[0][4:] == ts[0]) and torch.all(seen[1][4:] == ts[0])  # maps wait at the first noise level
    assert torch.all(seen[2][:4] == ts[2]) and torch.all(seen[2][4:] == ts[0])  # ... then follow two steps behind
    assert torch.all(seen[5][:4] == 0) and torch.all(seen[5][4:] == ts[3])  # the drawn image is held clean
    with pytest.raises(ValueError, match="free co-generation only"):
        _sample(ours, intrinsic_lag=2, image=torch.zeros(2, 3, 32, 32))


def test_the_embedded_ildm_card_holds_its_recipe_budget_and_commands_the_cli_accepts() -> None:
    import shlex

    import typer

    from spatialgen.cli import app
    from spatialgen.ildm.pipeline import load_ildm_pipeline

    card = model_card(load_ildm_pipeline("embedded"))
    training = card["training"]
    assert training["p_image_clean"] > 0 and training["p_intrinsic_clean"] > 0  # it reads and follows maps too
    assert "partner-input" in training["placement"] and training["exclude_held_out"] is True
    assert 0 < card["cpu_hours"] <= 4.0  # the budget for the intrinsic VAE and the LoRA together
    assert "held-out scene seed" in card["held_out"]
    command = typer.main.get_command(app)
    for line in card["reproduce"]:
        args = shlex.split(line)
        assert args[:2] == ["spatialgen", "train"]
        group = command.commands["train"]
        sub = group.commands[args[2]]
        sub.make_context(args[2], args[3:])  # every flag and value is one the CLI takes
    assert f"--placement {','.join(training['placement'])}" in card["reproduce"][1]
    assert f"--p-image-clean {training['p_image_clean']}" in card["reproduce"][1]
