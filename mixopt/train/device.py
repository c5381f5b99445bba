"""The device a training run or benchmark asks for, checked before any work."""

from __future__ import annotations

import torch

from mixopt.errors import MixoptError


def resolve_device(device: str) -> torch.device:
    """``--device`` as a torch device: cpu or cuda (cuda[:N]) that this machine has.

    Raises:
        MixoptError: not a device name, a device type mixopt does not train on, or cuda without a GPU.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise MixoptError(f"--device {device!r} is not a device name; use cpu or cuda") from exc
    if dev.type not in ("cpu", "cuda"):
        raise MixoptError(f"--device {device!r} is not supported; use cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MixoptError(
            f"--device {device!r} was asked for but torch sees no CUDA device; use --device cpu"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        # torch would fail later, inside the first allocation, with "invalid device ordinal".
        raise MixoptError(
            f"--device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"numbered from 0; use --device cuda:0"
        )
    return dev


def device_key(device: str) -> str:
    """One name per device a run can be on, for checkpoints and reuse: ``cpu`` (``cpu:0`` too) and
    ``cuda:N`` (``cuda`` is ``cuda:0``, torch's default), likewise for other types; a text that
    names no device, as given."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        return device
    return "cpu" if dev.type == "cpu" else f"{dev.type}:{dev.index or 0}"
