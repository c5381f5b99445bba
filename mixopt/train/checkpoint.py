"""Checkpoints of the final trainer: written atomically, refused when they belong to another run.

A checkpoint holds everything that makes a resumed run reproduce the uninterrupted one: model and
optimizer state (the routers' balancing biases included), the sampler's random state, the step,
the logs so far and the weight updater's state. Its ``fingerprint`` names what it was trained
for (model config, training settings, corpus name and hash, mixture, seed, updater); resuming
with a different fingerprint is refused with the differences spelled out.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from mixopt.atomic import atomic_path
from mixopt.errors import MixoptError
from mixopt.train.device import device_key

CHECKPOINT = "checkpoint.pt"
FORMAT = 1



class CheckpointMismatch(MixoptError):
    """A checkpoint made by another run (config, corpus, mixture, seed, ...); ``differences`` says how."""

    def __init__(self, message: str, *, differences: str) -> None:
        super().__init__(message)
        self.differences = differences


def refuse_foreign_folder(folder: Path, *, ours: bool, writes: str) -> None:
    """Refuse an ``--out`` that is a non-empty folder holding nothing of mixopt's (``ours`` False):
    writing ``writes`` there would mix a run with, or overwrite, someone else's files. A temporary
    file that a killed write left (``.checkpoint.pt.*.tmp``) is mixopt's, not someone else's."""
    if ours or not folder.is_dir():
        return
    if any(not (p.name.startswith(".") and p.name.endswith(".tmp")) for p in folder.iterdir()):
        raise MixoptError(f"--out {folder} is not empty and holds no mixopt run; give a new or empty folder "
                          f"(mixopt writes {writes} into it)")


def save(folder: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``folder/checkpoint.pt`` via a temporary file and a rename.

    numpy values (a weight updater's state may hold them) are kept as tensors and given back as
    numpy on :func:`load`, which reads tensors and plain data only.

    Raises:
        MixoptError: a value the checkpoint cannot keep (an object or structured numpy array).
    """
    path = folder / CHECKPOINT
    plain = _pack({"format": FORMAT, **state})  # before the file: nothing half-written
    plain["digest"] = _digest(plain)
    with atomic_path(path) as tmp:  # a full disk: named by atomic_path, whatever torch says
        torch.save(plain, tmp)
    return path


# What a resume reads of a checkpoint: a file without one of them is no run's (a QA pass: a KeyError)
REQUIRED = ("fingerprint", "step", "model", "opt", "sampler_rng", "train_seconds", "eval_seconds", "log",
            "history", "window", "updater_window", "expert_load", "domain_tokens", "updater_weights")


def _digest(state: dict[str, Any]) -> str:
    """A hash of everything a checkpoint holds but its digest: every tensor's bytes, dtype and shape,
    and every other value, by its place. torch's archive checks nothing as it loads, and a resume
    from bytes a disk or a copy damaged had gone on silently (a QA pass: 64 KB of zeros resumed to
    other losses, exit 0), or diverged, blaming the learning rate."""
    h = hashlib.blake2b(digest_size=16)

    def feed(v: Any, where: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                if not (where == "" and k == "digest"):
                    feed(x, f"{where}/{k!r}")
        elif isinstance(v, list | tuple):
            for i, x in enumerate(v):
                feed(x, f"{where}[{i}]")
        elif isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous().reshape(-1)
            h.update(f"{where}:{t.dtype}:{tuple(v.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(f"{where}={v!r}".encode())

    feed(state, "")
    return h.hexdigest()


def remove_stale(folder: Path) -> None:
    """Remove the temporary files of checkpoint writes that a kill cut short (``.checkpoint.pt.*.tmp``,
    as large as a checkpoint): called while this process alone writes in ``folder``."""
    for p in folder.glob(f".{CHECKPOINT}.*.tmp") if folder.is_dir() else ():
        with contextlib.suppress(OSError):
            p.unlink()


_NUMPY = "__mixopt_numpy__"  # a numpy value packed as a tensor: {_NUMPY: tensor, "scalar": bool}


def _pack(v: Any) -> Any:
    """``v`` with its numpy arrays and scalars as marked tensors, so that the checkpoint loads with
    torch's ``weights_only`` (which refuses numpy: its unpickling trusts the bytes it is given)."""
    import numpy as np

    if isinstance(v, dict):
        return {k: _pack(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return type(v)(_pack(x) for x in v)
    if isinstance(v, np.ndarray | np.generic):
        a = np.asarray(v)
        if a.dtype.kind not in "biufc":
            raise MixoptError(f"a checkpoint cannot keep a numpy value of dtype {a.dtype} (in a weight "
                              "updater's state_dict?): give numbers, booleans or arrays of them")
        return {_NUMPY: torch.from_numpy(np.array(a, order="C")), "scalar": isinstance(v, np.generic)}
    return v


def _unpack(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {_NUMPY, "scalar"} and isinstance(v[_NUMPY], torch.Tensor):
            a = v[_NUMPY].numpy()
            return a[()] if v["scalar"] else a
        return {k: _unpack(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return type(v)(_unpack(x) for x in v)
    return v


_AGAIN = "resume from a copy of it if there is one, or train into another --out"


def _unreadable(path: Path, exc: Exception) -> str:
    """Why torch could not read ``path``, in a few words (its own text is a paragraph)."""
    import zipfile

    try:
        if path.stat().st_size == 0:
            return "it is empty"
        if not zipfile.is_zipfile(path):
            return "it is no PyTorch archive (cut short, or another file)"
    except OSError as err:
        return err.strerror or str(err)
    if isinstance(exc, pickle.UnpicklingError):  # torch's text offers to load it unsafely: not repeated
        return "its archive is damaged (its list of objects cannot be read)"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"its archive is damaged ({first[:120]})"


def _differences(saved: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(saved) | set(wanted)):
        a, b = saved.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: checkpoint {a!r}, now {b!r}")
    return out


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(v) if isinstance(v, str) else repr(v)


def _config_file(folder: Path, saved: dict[str, Any], name: str) -> Path | None:
    """Write the model config a checkpoint was made with to ``folder/checkpoint-config/<name>.toml``
    (named as the model, which the fingerprint holds), when it gives the checkpoint's own model and
    training settings back; None where it cannot (a config key an older mixopt lacked).

    An upgrade QA pass: a shipped config changed between two versions (moe-xs's bias step), and a
    run started before could only be resumed by rebuilding the old file by hand.
    """
    import tomllib

    from mixopt.atomic import write_text
    from mixopt.train.config import _SHAPE_KEYS, _TRAIN_KEYS, spec_from_dict

    lm, train = saved.get("lm") or {}, saved.get("train") or {}
    keys = {**{k: lm[k] for k in _SHAPE_KEYS if k in lm}, **{k: train[k] for k in _TRAIN_KEYS if k in train}}
    text = (f"# the model config checkpoint {folder / CHECKPOINT} was made with, written by mixopt to\n"
            "# resume it: mixopt train --resume --model <this file>\n"
            + "".join(f"{k} = {_toml(v)}\n" for k, v in keys.items() if v is not None))
    try:
        spec = spec_from_dict(name, tomllib.loads(text))
        same = (spec.lm_config(int(lm["vocab_size"]), dense=bool(lm.get("dense"))).__dict__ == lm
                and spec.as_dict()["train"] == train)
    except (MixoptError, KeyError, TypeError, ValueError, tomllib.TOMLDecodeError, RecursionError):
        same = False
    if not same:
        return None
    try:  # a helping hand only: a folder it cannot write must not replace the refusal itself
        return write_text(folder / "checkpoint-config" / f"{name}.toml", text)
    except (MixoptError, OSError):
        return None


def load(folder: Path, fingerprint: dict[str, Any], device: str | None = None, *,
         required: tuple[str, ...] = REQUIRED) -> dict[str, Any]:
    """Read ``folder/checkpoint.pt`` and check it is whole (its digest, and the ``required`` keys)
    and was made for ``fingerprint`` (and on ``device``, by its
    :func:`~mixopt.train.device.device_key`, where the checkpoint records one).

    Raises:
        MixoptError: no checkpoint, an unreadable one, or one from another config, corpus,
            mixture, seed, updater or device (the message lists what differs and how to proceed).
    """
    path = folder / CHECKPOINT
    if folder.is_file():
        raise MixoptError(f"--resume: {folder} is a file; give the run's folder as --out")
    if not path.is_file():
        raise MixoptError(
            f"--resume: no checkpoint at {path}; start without --resume or give the run's --out"
        )
    try:
        # tensors and plain data only: a checkpoint from elsewhere cannot run code as it loads
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # "Unsupported global: GLOBAL print was not…", "unsupported GLOBAL posix.system whose…"
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in str(exc) and found:
            raise MixoptError(
                f"{path} holds Python objects besides tensors and plain data (it names {found.group(1)}), "
                "which could run code as they load: it is not loaded (mixopt writes numpy values as "
                "tensors since 2026-12-07; an older checkpoint of an updater that kept numpy resumes with "
                "the mixopt that wrote it); train into another --out"
            ) from None
        raise MixoptError(f"checkpoint {path} cannot be read: {_unreadable(path, exc)}; {_AGAIN}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise MixoptError(
            f"{path} is not a mixopt train checkpoint (it lacks the mark of format {FORMAT} that mixopt "
            "writes); train into another --out"
        )
    if "digest" in raw and raw["digest"] != _digest(raw):  # (checkpoints before 2026-12-07 have none)
        raise MixoptError(f"checkpoint {path} is damaged: its contents differ from what was written (a disk "
                          f"or a copy changed them); {_AGAIN}")
    if missing := [k for k in required if k not in raw]:
        raise MixoptError(f"checkpoint {path} lacks {', '.join(map(repr, missing))}, which a resume reads: "
                          f"it is no mixopt train run's; {_AGAIN}")
    state = _unpack(raw)
    saved = state["fingerprint"]
    diffs = _differences(saved, fingerprint)
    if diffs:
        names = {"lm": "model config", "model": "model config", "train": "training settings"}
        tops = [d.split(".")[0].split(":")[0] for d in diffs]  # the fingerprint's key each differs in
        what = ", ".join(dict.fromkeys(names.get(t, t) for t in tops))
        # a model file can give back the model's keys and training settings; not --dense or a vocabulary
        fixable = set(tops) <= {"lm", "train"} and not any(d.startswith(("lm.dense:", "lm.vocab_size:"))
                                                           for d in diffs)
        # --tokens overrides the config's budget, so the config file alone would be refused again
        budget = (saved.get("train") or {}).get("tokens")
        tokens = f" --tokens {budget}" if any(d.startswith("train.tokens:") for d in diffs) else ""
        advice = "resume with the same settings, or train into another --out"
        if tokens and len(diffs) == 1:
            fixable = False
            advice = f"resume with{tokens}, the budget it was started with, or train into another --out"
        made = _config_file(folder, saved, str(fingerprint.get("model"))) if fixable else None
        if made:
            advice += (f"; if the model config changed since it started (an update of mixopt), resume with "
                       f"the config it was made with, written to {made}: --model {made}{tokens}")
        # "differs in seed: seed: checkpoint 0, …" said its key twice: a top-level key is said once
        shown = [d.removeprefix(f"{what}: ") if len(set(tops)) == 1 else d for d in diffs[:4]]
        listed = f"{'; '.join(shown)}{' …' if len(diffs) > 4 else ''}"
        raise CheckpointMismatch(
            f"checkpoint {path} belongs to another run (differs in {what}: {listed}); {advice}",
            differences=f"{what}: {listed}",
        )
    was = None if state.get("device") is None else device_key(str(state["device"]))  # (not before 2026-12-05)
    if device is not None and was is not None and was != device_key(device):
        # The run would mix two devices' numerics, and its result.json would name only the last.
        raise CheckpointMismatch(
            f"checkpoint {path} was trained with --device {was}: resume it with --device {was}, or train "
            "into another --out",
            differences=f"device: checkpoint {was!r}, now {device_key(device)!r}")
    return state
