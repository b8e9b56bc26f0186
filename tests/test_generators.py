"""The contract between front ends and pipelines: load_generator / as_generator, and generate's input checks."""

from __future__ import annotations

import pytest

from spatialgen.generate import GenerationSettings, decode_memory_bytes, generate_images
from spatialgen.generators import Generator, as_generator, load_generator
from spatialgen.guidance import InfSplignConfig, infsplign_pipeline

FAST = GenerationSettings(steps=2)


def test_a_pipeline_is_wrapped_by_its_type_and_says_what_its_results_carry(tiny_pipe) -> None:
    plain = as_generator(tiny_pipe)
    assert plain.method == "sd" and not plain.co_generates_intrinsics and not plain.guided
    assert plain.call_kwargs() == {} and as_generator(plain) is plain
    config = InfSplignConfig(weight=10.0)
    guided = as_generator(infsplign_pipeline(tiny_pipe), spatial_guidance=config)
    assert guided.method == "infsplign" and guided.guided and not guided.co_generates_intrinsics
    assert guided.call_kwargs(save_attention=True)["spatial_guidance"].record_maps is True
    with pytest.raises(ValueError, match="schedule applies to an I-LDM pipeline only"):
        as_generator(tiny_pipe, schedule="drop")
    with pytest.raises(ValueError, match="wrap an SD pipeline with spatialgen.guidance.infsplign_pipeline"):
        as_generator(tiny_pipe, spatial_guidance=config)


def test_generated_images_say_whether_guidance_ran(tiny_pipe) -> None:
    plain = generate_images(tiny_pipe, ["a red cube"], settings=FAST, progress=False)
    assert not plain[0].has_guidance and not plain[0].has_intrinsics
    generator = Generator(infsplign_pipeline(tiny_pipe), "infsplign", spatial_guidance=InfSplignConfig(weight=1.0))
    guided = generate_images(generator, ["a red cube to the left of a blue sphere"], settings=FAST, progress=False)
    assert guided[0].has_guidance and guided[0].details["infsplign"]["relation"] == "left of"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "dalle"}, "method must be one of sd, ildm, infsplign, ildm\\+infsplign"),
        ({"method": "sd", "schedule": "drop"}, "--schedule applies to --method ildm and ildm\\+infsplign only"),
        ({"method": "ildm", "schedule": "cosine"}, "cosine"),
        ({"method": "sd", "spatial_guidance": InfSplignConfig()}, "apply to the InfSplign methods, not to 'sd'"),
        ({"method": "infsplign", "spatial_guidance": InfSplignConfig(loss="hinge")}, "unknown InfSplign loss"),
    ],
)
def test_load_generator_refuses_bad_options_before_loading_anything(kwargs: dict, message: str) -> None:
    # the model does not exist: had loading started, the error would be a FileNotFoundError about it
    with pytest.raises(ValueError, match=message):
        load_generator(model="no/such-model-here", **kwargs)


def test_generate_refuses_sizes_and_seeds_it_cannot_honour(tiny_pipe) -> None:
    with pytest.raises(ValueError, match="--size must be a positive number of pixels"):
        GenerationSettings(size=0).validate()
    with pytest.raises(ValueError, match="--seed must be an integer from 0 to 9223372036854775806"):
        generate_images(tiny_pipe, ["a red cube"], n=2, seed=99999999999999999999, settings=FAST, progress=False)
    with pytest.raises(ValueError, match="--seed must be an integer"):
        generate_images(tiny_pipe, ["a red cube"], seed=-1, settings=FAST, progress=False)
    with pytest.raises(ValueError, match=r"--size 100000 at --batch-size 1 would need about [\d.]+ GiB to decode"):
        generate_images(tiny_pipe, ["a red cube"], settings=GenerationSettings(steps=2, size=100000), progress=False)


def test_the_decode_estimate_grows_with_area_and_batch(tiny_pipe) -> None:
    small = decode_memory_bytes(tiny_pipe, 32, 1)
    assert decode_memory_bytes(tiny_pipe, 64, 1) == pytest.approx(4 * small, rel=0.01)
    assert decode_memory_bytes(tiny_pipe, 32, 3) == 3 * small


def test_generate_help_quotes_the_defaults_the_settings_dataclasses_apply() -> None:
    """The CLI leaves unset options to GenerationSettings / InfSplignConfig; its help must say their values."""
    import re

    from typer.testing import CliRunner

    from spatialgen.cli import app

    text = " ".join(CliRunner().invoke(app, ["generate", "--help"], env={"COLUMNS": "400"}).output.split())
    settings, config = GenerationSettings(), InfSplignConfig()
    for option, value in (
        ("--steps", settings.steps),
        ("--guidance", settings.guidance),
        ("--scheduler", settings.scheduler),
        ("--loss", config.loss),
        ("--guide-fraction", config.guide_fraction),
        ("--orthogonal-p", config.orthogonal_p),
    ):
        quoted = re.search(re.escape(option) + r"\b.*?\(default: ([^)]+)\)", text)
        assert quoted is not None, option
        assert quoted.group(1) == f"{value:g}" if isinstance(value, float) else quoted.group(1) == str(value), option
