"""The training-run harness every trainer shares: run folders, atomic checkpoints, resumption, snapshots,
learning-rate schedules, progress bars.

A run folder holds ``config.json`` (what reproduces the run), ``checkpoints/<stage>-<step>/``
(weights and EMA as safetensors, the optimizer, the step and the stage's training seconds, each
written to a temporary folder and renamed) and, for learning curves, ``snapshots/step-<N>/``
(EMA weights in fp16, never pruned). ``--resume latest`` reopens a run only with the settings it
was started with, and every schedule here is a function of the absolute step, so a resumed run
draws and steps exactly as an uninterrupted one. The base model (:mod:`spatialgen.models.training`),
the decoder fine-tune, the intrinsic VAE and I-LDM's LoRA all train through these functions.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .fileio import atomic_write_json, ensure_writable_dir, replace_dir

STAGES = ("vae", "diffusion")


def checkpoint_name(stage: str, step: int) -> str:
    return f"{stage}-{step:07d}"


def list_checkpoints(run: Path) -> list[tuple[int, int, Path]]:
    """(stage index, step, folder) of the complete checkpoints of a run, oldest first."""
    found = []
    for path in (run / "checkpoints").glob("*-*"):
        match = re.fullmatch(r"(vae|diffusion)-(\d+)", path.name)
        if match and (path / "state.json").is_file():
            found.append((STAGES.index(match[1]), int(match[2]), path))
    return sorted(found)


def save_checkpoint(
    run: Path,
    stage: str,
    step: int,
    modules: dict[str, torch.nn.Module],
    optimizer: Any,
    ema: EMAModel | None,
    keep: int,
    seconds: float | None = None,
) -> Path:
    """Write a checkpoint atomically; ``seconds`` is the stage's training time so far (for CPU-hour accounting)."""
    folder = run / "checkpoints" / checkpoint_name(stage, step)
    with replace_dir(folder) as tmp:
        for name, module in modules.items():
            save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp / f"{name}.safetensors"))
        if ema is not None:
            shadow = {f"{i:05d}": p.detach().contiguous() for i, p in enumerate(ema.shadow_params)}
            save_file(shadow, str(tmp / "ema.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        state = {"stage": stage, "step": step, "ema_step": ema.optimization_step if ema is not None else None}
        if seconds is not None:
            state["seconds"] = seconds
        atomic_write_json(tmp / "state.json", state)
    for _, _, old in list_checkpoints(run)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def load_checkpoint(folder: Path, modules: dict[str, torch.nn.Module], optimizer: Any, ema: EMAModel | None) -> int:
    for name, module in modules.items():
        module.load_state_dict(load_file(str(folder / f"{name}.safetensors")))
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    state = json.loads((folder / "state.json").read_text())
    if ema is not None:
        shadow = load_file(str(folder / "ema.safetensors"))
        ema.shadow_params = [shadow[f"{i:05d}"].to(p.device) for i, p in enumerate(ema.shadow_params)]
        ema.optimization_step = state["ema_step"]
    return int(state["step"])


# ----------------------------------------------------------------------------- helpers


def warmup_lambda(warmup: int, start: int = 0):
    """Linear warm-up over ``warmup`` steps, then constant; ``start`` offsets it for a resumed run."""
    return lambda k: min(1.0, (start + k + 1) / max(1, warmup))


def lr_lambda(schedule: str, warmup: int, total: int, start: int = 0) -> Callable[[int], float]:
    """The learning-rate factor of step ``start + k``: linear warm-up, then constant or cosine to 0 at ``total``.

    A function of the absolute step only, so a resumed run follows the uninterrupted run's curve.
    """
    if schedule == "constant":
        return warmup_lambda(warmup, start)

    def factor(k: int) -> float:
        step = start + k
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def checkpoint_seconds(folder: Path | None) -> float:
    """The training seconds a checkpoint records for its stage (0 for none, or one written before they were)."""
    if folder is None:
        return 0.0
    return float(json.loads((folder / "state.json").read_text()).get("seconds", 0.0))


def open_run(
    out: str,
    config: dict[str, Any],
    resume: str | None,
    resumable: tuple[str, ...],
    legacy_defaults: Mapping[str, Any] | None = None,
) -> Path:
    """Create or reopen a run folder and record ``config`` there.

    A folder with checkpoints is only reopened with ``resume``, and then only with the settings
    it was started with (those named in ``resumable`` may change). A setting the saved config
    lacks was added after the run started: it counts as its value in ``legacy_defaults`` (what
    such runs did), else as unchanged.
    """
    run = ensure_writable_dir(out, "run folder")
    config_path = run / "config.json"
    if config_path.is_file() and resume is None and list_checkpoints(run):
        raise ValueError(f"{run} already holds a run; pass --resume latest to continue it, or choose another --out")
    if config_path.is_file() and resume is not None:
        saved = {**(legacy_defaults or {}), **json.loads(config_path.read_text())}
        changed = sorted(k for k in saved if saved[k] != config.get(k) and k not in resumable)
        if changed:
            raise ValueError(
                f"--resume with other settings than the run's config.json (changed: {changed}); "
                f"pass --config {config_path} (only {', '.join(resumable)} may change on resume)"
            )
        record_resume(
            run, resume, {k: [saved.get(k), config.get(k)] for k in resumable if saved.get(k) != config.get(k)}
        )
    atomic_write_json(config_path, config)
    return run


def record_resume(run: Path, resume: str, changes: dict[str, list[Any]]) -> None:
    """Append a resume that changed settings to ``resumes.json`` (``{setting: [before, after]}`` and the step).

    ``config.json`` keeps only the latest settings, so without this record a run whose
    ``diffusion_steps`` grew or shrank mid-way (and with it its cosine schedule) could not be told
    from one trained with the final settings from the start.
    """
    if not changes:
        return
    checkpoint = find_resume(run, resume)
    path = run / "resumes.json"
    history = json.loads(path.read_text()) if path.is_file() else []
    step = int(json.loads((checkpoint / "state.json").read_text())["step"]) if checkpoint is not None else 0
    stage = checkpoint.name.split("-")[0] if checkpoint is not None else None
    history.append({"stage": stage, "step": step, "changed": changes})
    atomic_write_json(path, history)


def resume_history(run: Path) -> list[dict[str, Any]]:
    """The settings changes a run's resumes made, oldest first (see :func:`record_resume`)."""
    path = Path(run) / "resumes.json"
    return json.loads(path.read_text()) if path.is_file() else []


def resume_step(
    run: Path, resume: str | None, modules: dict[str, torch.nn.Module], optimizer: Any, ema: EMAModel | None
) -> int:
    """Load the checkpoint ``resume`` names (None: start afresh) and return its step; an error if there is none."""
    checkpoint = find_resume(run, resume)
    if resume is not None and checkpoint is None:
        raise FileNotFoundError(f"no checkpoint to resume in {run / 'checkpoints'}")
    return load_checkpoint(checkpoint, modules, optimizer, ema) if checkpoint is not None else 0


def find_resume(run: Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from: None, ``"latest"`` or a checkpoint folder."""
    if resume is None:
        return None
    if resume == "latest":
        found = list_checkpoints(run)
        return found[-1][2] if found else None
    path = Path(resume)
    if not (path / "state.json").is_file():
        raise FileNotFoundError(
            f"{resume!r} is not a checkpoint folder (no state.json); "
            f"pass 'latest' or a folder under {run / 'checkpoints'}"
        )
    return path


def save_snapshot(
    run: Path, step: int, seconds: float, modules: dict[str, torch.nn.Module], ema: EMAModel, params: list
) -> Path:
    """Keep the EMA weights of step ``step`` (fp16) in ``snapshots/step-N/`` for a learning curve.

    Unlike checkpoints, snapshots are never pruned; ``seconds`` is the diffusion stage's training time so far.
    """
    folder = run / "snapshots" / f"step-{step:07d}"
    ema.store(params)
    ema.copy_to(params)
    try:
        with replace_dir(folder) as tmp:
            for name, module in modules.items():
                weights = {k: v.detach().to(torch.float16).contiguous() for k, v in module.state_dict().items()}
                save_file(weights, str(tmp / f"{name}.safetensors"))
            atomic_write_json(tmp / "state.json", {"step": step, "seconds": seconds})
    finally:
        ema.restore(params)
    return folder


def list_snapshots(run: Path) -> list[tuple[int, Path]]:
    """(step, folder) of a run's complete snapshots, in step order."""
    found = []
    for path in (run / "snapshots").glob("step-*"):
        match = re.fullmatch(r"step-(\d+)", path.name)
        if match and (path / "state.json").is_file():
            found.append((int(match[1]), path))
    return sorted(found)


def progress(desc: str, start: int, total: int, enabled: bool = True) -> tqdm:
    """Steps ``start .. total`` with a bar that shows the whole run (resumed runs start part-way)."""
    return tqdm(range(start, total), desc=desc, initial=start, total=total, disable=not enabled)


class ParameterState(torch.nn.Module):
    """Trainable parameters (an adapter's LoRA weights) as one module, so a checkpoint holds them and only them."""

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        super().__init__()
        self.params = torch.nn.ParameterList(params)


def adapter_step(accelerator: Any, loss: torch.Tensor, params: list[torch.nn.Parameter], optimizer: Any) -> None:
    """Backward, average the gradients over processes, clip at 1.0 and step: one adapter-training step.

    Adapter trainers call their model outside DDP's forward (the model also serves prediction), so
    with several processes, each having drawn its own batch, the gradients are averaged here.
    """
    accelerator.backward(loss)
    if accelerator.num_processes > 1:
        for parameter in params:
            parameter.grad = accelerator.reduce(parameter.grad, reduction="mean")
    accelerator.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
