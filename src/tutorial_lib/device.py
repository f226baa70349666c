"""Where tensors live, in which precision, and how to make runs repeatable."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["get_device", "default_dtype", "set_seed"]


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``device`` if given, else CUDA when available, else CPU.

    The ``TUTORIAL_DEVICE`` environment variable overrides the automatic choice.
    """
    if device is None:
        device = os.environ.get("TUTORIAL_DEVICE") or (
            "cuda" if torch.cuda.is_available() else "cpu"
        )
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(
            f"device={device!r} is not a torch device (use 'cpu', 'cuda', 'cuda:0', ...)"
        ) from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r} was asked for, but CUDA is not available; use 'cpu'"
        )
    return device


def default_dtype(device: torch.device) -> torch.dtype:
    """fp32 on CPU (bf16 matmuls are slow without native support); bf16 on CUDA when supported."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch so notebook outputs are the same on every run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
