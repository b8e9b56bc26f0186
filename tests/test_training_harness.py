"""Run folders remember how a resumed run's settings changed, so a shipped model's history is complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spatialgen.training_harness import checkpoint_name, open_run, resume_history

RESUMABLE = ("diffusion_steps", "checkpoint_every")


def fake_checkpoint(run: Path, stage: str, step: int) -> None:
    folder = run / "checkpoints" / checkpoint_name(stage, step)
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({"stage": stage, "step": step}))


def test_a_resume_that_changes_settings_is_recorded_with_its_step(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = open_run(str(out), {"diffusion_steps": 24000, "checkpoint_every": 250, "lr": 1e-3}, None, RESUMABLE)
    assert resume_history(run) == []
    fake_checkpoint(run, "diffusion", 3000)
    open_run(str(out), {"diffusion_steps": 24000, "checkpoint_every": 250, "lr": 1e-3}, "latest", RESUMABLE)
    assert resume_history(run) == []  # an unchanged resume adds nothing
    open_run(str(out), {"diffusion_steps": 10500, "checkpoint_every": 250, "lr": 1e-3}, "latest", RESUMABLE)
    fake_checkpoint(run, "diffusion", 6000)
    open_run(str(out), {"diffusion_steps": 10500, "checkpoint_every": 500, "lr": 1e-3}, "latest", RESUMABLE)
    assert resume_history(run) == [
        {"stage": "diffusion", "step": 3000, "changed": {"diffusion_steps": [24000, 10500]}},
        {"stage": "diffusion", "step": 6000, "changed": {"checkpoint_every": [250, 500]}},
    ]
    assert json.loads((run / "config.json").read_text())["diffusion_steps"] == 10500


def test_a_resume_with_a_setting_that_may_not_change_is_refused_and_not_recorded(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = open_run(str(out), {"diffusion_steps": 100, "lr": 1e-3}, None, RESUMABLE)
    fake_checkpoint(run, "diffusion", 50)
    with pytest.raises(ValueError, match=r"changed: \['lr'\]"):
        open_run(str(out), {"diffusion_steps": 200, "lr": 2e-3}, "latest", RESUMABLE)
    assert resume_history(run) == []
    assert json.loads((run / "config.json").read_text())["lr"] == 1e-3
