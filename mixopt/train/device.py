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
    return dev
