"""`spatialgen bias` measures each relation both ways round on held-out prompts; `generate --tore` uses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from spatialgen.bias import BiasPrompt, bias_prompts, bias_table
from spatialgen.cli import app
from spatialgen.eval.prompts.prompt_sets import scene_prompt_set
from spatialgen.eval.prompts.scene_prompts import EVAL_SEED
from spatialgen.models import build_pipeline, save_pipeline
from spatialgen.relations import INVERSE_RELATION, RELATIONS_2D, RELATIONS_3D
from spatialgen.scenes.held_out import is_held_out

from .conftest import TINY


def test_bias_prompts_ask_every_held_out_triplet_both_ways_round() -> None:
    prompts = bias_prompts(3)
    assert len(prompts) == 2 * 3 * len(RELATIONS_2D + RELATIONS_3D)
    for drawn, swapped in zip(prompts[::2], prompts[1::2], strict=True):
        assert is_held_out(drawn.a, drawn.relation, drawn.b) and is_held_out(swapped.a, swapped.relation, swapped.b)
        assert (swapped.a, swapped.relation, swapped.b) == (drawn.b, INVERSE_RELATION[drawn.relation], drawn.a)
        assert drawn.a in drawn.prompt and drawn.b in drawn.prompt and swapped.a in swapped.prompt
    assert {p.relation for p in prompts} == set(RELATIONS_2D + RELATIONS_3D)
    evaluated = [r.prompt for r in scene_prompt_set(RELATIONS_2D + RELATIONS_3D, 3 * 6, EVAL_SEED)]
    assert [p.prompt for p in prompts[::2]] != evaluated  # TORE is never tuned on the evaluation's own draw
    assert [p.prompt for p in bias_prompts(3, seed=EVAL_SEED)[::2]] == evaluated


def test_the_table_is_the_share_of_passing_images_per_phrasing() -> None:
    prompts = [
        BiasPrompt("x", "red cube", "left of", "blue cone"),
        BiasPrompt("y", "blue cone", "right of", "red cube"),
        BiasPrompt("z", "red cube", "left of", "gray cone"),
    ]
    passed = [True, False, False, False, True, True]  # two seeds per prompt, prompt-major
    table = bias_table(prompts, passed, seeds=2)
    assert table["accuracy"] == {"left of": pytest.approx(0.75), "right of": 0.0}
    assert table["prompts"] == {"left of": 2, "right of": 1}
    low, high = table["interval"]["left of"]
    assert 0.5 <= low <= 0.75 <= high <= 1.0


def test_bias_command_writes_the_card_and_generate_tore_rewrites_with_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    save_pipeline(build_pipeline(TINY), tmp_path / "model")
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["bias", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "bias"), "--prompts", "1"]
        + ["--seeds", "1", "--steps", "1"],
    )
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "model" / "spatialgen.json").read_text())
    assert set(card["tore_bias"]["accuracy"]) == set(RELATIONS_2D + RELATIONS_3D)
    assert len(list((tmp_path / "bias" / "images").glob("*.png"))) == 12
    # a table under which "right of" is drawn far better: TORE must say "left of" the other way round
    card["tore_bias"]["accuracy"].update({"left of": 0.1, "right of": 0.6})
    (tmp_path / "model" / "spatialgen.json").write_text(json.dumps(card))
    prompt = "a red cube to the left of a blue sphere"
    args = ["generate", prompt, "--model", str(tmp_path / "model"), "--n", "2", "--steps", "1", "--tore"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "tore")])
    assert result.exit_code == 0, result.output
    sidecars = [json.loads(p.with_suffix(".json").read_text()) for p in sorted((tmp_path / "tore").glob("*-seed*.png"))]
    assert len(sidecars) == 2
    for sidecar in sidecars:
        assert sidecar["prompt"] == "a blue sphere to the right of a red cube"
        assert sidecar["tore"]["original"] == prompt and sidecar["tore"]["applied"] is True
        assert sidecar["tore"]["gain"] == pytest.approx(0.5)
    kept = runner.invoke(app, [*args, "--tore-tau", "0.6", "--out", str(tmp_path / "kept")])
    assert kept.exit_code == 0
    assert all(json.loads(p.read_text())["prompt"] == prompt for p in (tmp_path / "kept").glob("*-seed*.json"))
    save_pipeline(build_pipeline(TINY), tmp_path / "bare")
    bare = runner.invoke(app, ["generate", prompt, "--model", str(tmp_path / "bare"), "--tore", "--out", "x"])
    assert bare.exit_code == 2 and "no bias table" in bare.output
