"""Checking a user's ``--device`` before any work starts: one leaf module every layer may import."""

from __future__ import annotations

import torch


def check_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here, or a ValueError naming what does."""
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {str(device)!r}; use cpu, cuda, cuda:N or mps") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but PyTorch sees no CUDA GPU here; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps asked for, but MPS is not available here; use --device cpu")
    return device
