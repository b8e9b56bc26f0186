"""InfSplign in InfSplignPipeline: exact at weight 0, moves centroids when on, per-row, early stop, the CLI.

(Guidance inside I-LDM is tested with the I-LDM pipeline, in test_ildm_pipeline.py.)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from typer.testing import CliRunner

from spatialgen.cli import app
from spatialgen.guidance import InfSplignConfig, infsplign_pipeline
from spatialgen.guidance.capture import default_layers, resolve_layers
from spatialgen.guidance.config import PAPER_WEIGHT, recommended_weight
from spatialgen.models import build_pipeline, make_scheduler
from spatialgen.models.pipeline import embedded_path, set_model_card

from .conftest import TINY

PROMPTS = ["a red cube to the left of a blue sphere", "a green cone above a yellow cylinder"]


def _guided(seed: int = 0):
    torch.manual_seed(seed)
    pipe = infsplign_pipeline(build_pipeline(TINY))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sharpen_cross_attention(pipe, factor: float = 4.0) -> None:
    """Random cross-attention is nearly uniform whatever the latent; larger q / k weights make its maps
    depend on the latent, as a trained model's do (without it, guidance has nothing to move)."""
    with torch.no_grad():
        for name, module in pipe.unet.named_modules():
            if name.endswith("attn2"):
                module.to_q.weight.mul_(factor)
                module.to_k.weight.mul_(factor)


def _sample(pipe, prompts=PROMPTS, steps: int = 6, seed: int = 3, call=None, **kwargs):
    call = call or type(pipe).__call__
    return call(
        pipe,
        prompts,
        num_inference_steps=steps,
        generator=[torch.Generator().manual_seed(seed + k) for k in range(len(prompts))],
        output_type="np",
        **kwargs,
    )


def _processor_types(unet) -> dict[str, type]:
    return {name: type(p) for name, p in unet.attn_processors.items()}


@pytest.mark.parametrize("scheduler", ["ddim", "euler"])
def test_weight_zero_reproduces_stable_diffusion_exactly(scheduler: str) -> None:
    pipe = _guided()
    pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    before = _processor_types(pipe.unet)
    reference = _sample(pipe, call=StableDiffusionPipeline.__call__).images
    plain = _sample(pipe).images
    zero = _sample(pipe, spatial_guidance=InfSplignConfig(weight=0.0, guide_fraction=0.5))
    assert np.array_equal(plain, reference)
    assert np.array_equal(zero.images, reference)
    assert len(zero.trace.steps) == 3  # the guidance machinery did run: 3 gradient passes, each measured
    assert _processor_types(pipe.unet) == before  # capture processors are gone after the call
    guided = _sample(pipe, spatial_guidance=InfSplignConfig(weight=300.0, guide_fraction=0.5)).images
    assert not np.array_equal(guided, reference)


def test_a_zero_terminal_snr_v_prediction_model_is_guided_from_its_second_step() -> None:
    """The embedded model's schedule: the first step (SNR 0) cannot be steered; guidance starts after it, finite."""
    from dataclasses import replace

    torch.manual_seed(0)
    config = replace(TINY, prediction_type="v_prediction", zero_terminal_snr=True, timestep_spacing="trailing")
    pipe = infsplign_pipeline(build_pipeline(config))
    pipe.set_progress_bar_config(disable=True)
    reference = _sample(pipe, call=StableDiffusionPipeline.__call__).images
    assert np.array_equal(
        _sample(pipe, spatial_guidance=InfSplignConfig(weight=0.0, guide_fraction=0.5)).images, reference
    )
    guided = _sample(pipe, spatial_guidance=InfSplignConfig(weight=300.0, guide_fraction=0.5))
    assert np.isfinite(guided.images).all() and not np.array_equal(guided.images, reference)
    assert len(guided.trace.steps) == 3 and all(torch.isfinite(s.delta).all() for s in guided.trace.steps)
    assert float(pipe.scheduler.alphas_cumprod[int(guided.trace.steps[0].timestep)]) == 0.0  # measured, not steered


def test_guidance_moves_the_measured_centroids_toward_the_relation() -> None:
    """Over 6 prompts x 2 seeds, Delta (> 0 when the relation holds) grows under guidance, not without it."""
    pipe = _guided()
    _sharpen_cross_attention(pipe)
    prompts = [
        "a red cube to the left of a blue sphere",
        "a red cube to the right of a blue sphere",
        "a green cone above a yellow cylinder",
        "a green cone below a yellow cylinder",
        "a blue sphere to the left of a red cone",
        "a yellow cube above a green sphere",
    ]
    finals = {}
    for weight in (0.0, 300.0):
        config = InfSplignConfig(weight=weight, guide_fraction=1.0)
        runs = [_sample(pipe, prompts, steps=8, seed=s, spatial_guidance=config).trace for s in (0, 10)]
        first = torch.cat([r.steps[0].delta for r in runs])
        last = torch.cat([r.steps[-1].delta for r in runs])
        finals[weight] = last
        if weight > 0:
            assert float((last - first).mean()) > 0.1
            assert float((last > first).float().mean()) >= 0.75
    assert float(finals[300.0].mean()) > float(finals[0.0].mean()) + 0.1


def test_rows_without_a_relation_are_sampled_as_if_unguided(caplog) -> None:
    pipe = _guided()
    prompts = ["a red cube to the left of a blue sphere", "a red cube on the grass"]
    plain = _sample(pipe, prompts).images
    with caplog.at_level(logging.WARNING):
        guided = _sample(pipe, prompts, spatial_guidance=InfSplignConfig(weight=300.0)).images
    assert "found no spatial relation" in caplog.text
    assert np.array_equal(guided[1], plain[1]) and not np.array_equal(guided[0], plain[0])
    with pytest.raises(ValueError, match="found no spatial relation"):
        _sample(pipe, prompts, spatial_guidance=InfSplignConfig(strict=True))
    with pytest.raises(ValueError, match="guides left of, right of, above and below"):
        _sample(pipe, ["a red cube behind a blue sphere"], spatial_guidance=InfSplignConfig(strict=True))


def test_the_gradient_pass_stops_after_the_last_captured_layer() -> None:
    pipe = _guided()
    calls = []
    hook = pipe.unet.conv_out.register_forward_hook(lambda *args: calls.append(1))
    try:
        trace = _sample(pipe, steps=4, spatial_guidance=InfSplignConfig(guide_fraction=1.0)).trace
    finally:
        hook.remove()
    assert len(trace.steps) == 4 and len(calls) == 4  # only the 4 sampling passes reach the UNet's output
    assert all(p.requires_grad for p in pipe.unet.parameters())  # parameters get their flags back


def test_presence_term_updates_latents_and_refines_until_objects_are_attended() -> None:
    pipe = _guided()
    config = InfSplignConfig(weight=0.0, presence=True, presence_fraction=0.5, refinement_iterations=3)
    out = _sample(pipe, steps=6, spatial_guidance=config)
    plain = _sample(pipe, steps=6).images
    assert not np.array_equal(out.images, plain)  # weight 0: only the presence update changed anything
    assert len(out.trace.steps) == 3 and all(s.presence is not None for s in out.trace.steps)
    assert out.trace.refinement_passes > 0  # a random model attends weakly: step 0's refinement had to run


def test_default_layers_are_the_first_six_decoder_cross_attentions_of_an_sd_layout() -> None:
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        layers_per_block=2,
        cross_attention_dim=8,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    layers = default_layers(unet)
    assert len(layers) == 6
    assert [x.split(".attentions")[0] for x in layers] == ["up_blocks.1"] * 3 + ["up_blocks.2"] * 3
    assert resolve_layers(unet, ["up_blocks.3"]) == [x.replace("up_blocks.2", "up_blocks.3") for x in layers[3:]]
    with pytest.raises(ValueError, match="choose names or prefixes of: down_blocks.0"):
        resolve_layers(unet, ["up_blocks.9"])


def test_generate_infsplign_writes_settings_triplets_and_attention_strips(tmp_path: Path) -> None:
    from spatialgen.eval.runs.image_sets import collect_images

    out = tmp_path / "out"
    args = ["generate", PROMPTS[0], "--n", "2", "--steps", "4", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--method", "infsplign", "--loss", "gelu", "--save-attention"])
    assert result.exit_code == 0, result.output
    sidecars = sorted(out.glob("*seed*.json"))
    assert len(sidecars) == 2 and len(list(out.glob("*.attention.png"))) == 2
    meta = json.loads(sidecars[0].read_text())
    assert meta["method"] == "infsplign"
    assert meta["infsplign"]["a"] == "red cube" and meta["infsplign"]["b"] == "blue sphere"
    assert meta["infsplign_settings"]["alpha"] == 2.0 and meta["infsplign_settings"]["margin"] == 0.25
    card_weight = json.loads((embedded_path() / "spatialgen.json").read_text())["infsplign"]["weight"]
    assert meta["infsplign_settings"]["weight"] == card_weight  # no --weight: the model card's recommendation
    assert len(collect_images(out)) == 2  # strips are not samples to evaluate
    both = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "both"), "--method", "ildm+infsplign"])
    assert both.exit_code == 0, both.output
    assert len(list((tmp_path / "both").glob("*.depth.png"))) == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "infsplign", "--loss", "hinge"], "unknown InfSplign loss"),
        (["--save-attention"], "--save-attention shows InfSplign's maps"),
        (["--method", "splign"], "--method must be one of"),
        (["--method", "infsplign", "--layers", "up_blocks.7"], "no cross-attention layer matches"),
    ],
)
def test_generate_infsplign_refuses_bad_input(tmp_path: Path, extra: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["generate", PROMPTS[0], "--steps", "2", "--out", str(tmp_path), *extra])
    assert result.exit_code == 2 and message in result.output, result.output


def test_recommended_weight_comes_from_the_model_card_else_the_paper() -> None:
    pipe = build_pipeline(TINY)
    set_model_card(pipe, {})
    assert recommended_weight(pipe) == PAPER_WEIGHT
    set_model_card(pipe, {"infsplign": {"weight": 123.0}})
    assert recommended_weight(pipe) == 123.0
