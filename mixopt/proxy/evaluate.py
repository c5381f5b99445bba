"""The built-in evaluator of the contract in :mod:`mixopt.evaluator`: train a proxy, return metrics.

``evaluate(request)`` reads from ``request.fidelity``:

- ``corpus`` (required): a built corpus's name or folder;
- ``rung`` (default ``xs``): a rung name from ``proxies/`` or a path to a rung TOML;
- ``tokens`` (optional): overrides the rung's training token budget;
- ``threads`` (optional): torch threads for this run; otherwise ``MIXOPT_THREADS``, then
  ``OMP_NUM_THREADS`` from the environment, then torch's default;
- ``max_epochs`` (optional): the repetition cap above which a warning is given.

Use it by name as ``--evaluator mixopt.proxy.evaluate:evaluate``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from mixopt.errors import MixoptError
from mixopt.evaluator import EvalRequest
from mixopt.proxy.train import ProxyResult

DEFAULT_RUNG = "xs"


def threads_from(fidelity: Mapping[str, Any]) -> int | None:
    """Threads for a run: fidelity ``threads``, else MIXOPT_THREADS, else OMP_NUM_THREADS, else None."""
    for where, value in (
        ("fidelity threads", fidelity.get("threads")),
        ("MIXOPT_THREADS", os.environ.get("MIXOPT_THREADS")),
        ("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS")),
    ):
        if value in (None, ""):
            continue
        try:
            n = int(value)
        except (TypeError, ValueError) as exc:
            raise MixoptError(f"{where} is {value!r}; give a positive integer") from exc
        if n < 1:
            raise MixoptError(f"{where} is {n}; give a positive integer")
        return n
    return None


# What the proxy reads from a request's fidelity; a search adds corpus and rung itself.
FIDELITY_KEYS = ("corpus", "rung", "tokens", "max_epochs", "threads")


def check_fidelity(fidelity: Mapping[str, Any], *, unknown_ok: bool = False) -> None:
    """Refuse fidelity fields the proxy does not read, or cannot read, before any run starts.

    ``unknown_ok``: a search started before unknown keys were refused goes on (its resume).

    Raises:
        MixoptError: an unknown key (it would be ignored, yet split the reuse key), or a value that
            is not a number where one is needed.
    """
    unknown = sorted(set(fidelity) - set(FIDELITY_KEYS))
    if unknown and not unknown_ok:
        raise MixoptError(
            f"--fidelity {', '.join(unknown)}: the built-in proxy reads only tokens, max_epochs and threads "
            "(--corpus and --rung set the rest); other fields are for your own --evaluator"
        )
    for key in ("tokens", "max_epochs"):
        value = fidelity.get(key)
        if value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and number > 0 and (key != "tokens" or number >= 1)):
            raise MixoptError(f"--fidelity {key}={value!r}: give a positive number")
        if key == "tokens" and not number.is_integer() and not unknown_ok:  # a resume goes on as it began
            # it had trained int(2500.5) tokens without a word
            raise MixoptError(f"--fidelity tokens={value!r}: the built-in proxy trains a whole number of "
                              f"tokens; give e.g. tokens={math.floor(number)}")
    if fidelity.get("threads") not in (None, ""):  # the field only: the driver's env is not the workers'
        threads_from({"threads": fidelity["threads"]})


def evaluate(request: EvalRequest | Mapping[str, Any]) -> ProxyResult:
    """Train the proxy that ``request.fidelity`` names on ``request.mixture``; see the module doc."""
    from mixopt.proxy.rungs import load_rung
    from mixopt.proxy.train import train_proxy

    fidelity = dict(request["fidelity"] or {})
    if not fidelity.get("corpus"):
        raise MixoptError("the proxy evaluator needs fidelity['corpus'] (a built corpus name or folder)")
    rung = load_rung(str(fidelity.get("rung", DEFAULT_RUNG)))
    if fidelity.get("tokens") is not None:
        try:
            tokens = int(float(fidelity["tokens"]))
        except (TypeError, ValueError) as exc:
            raise MixoptError(f"fidelity tokens is {fidelity['tokens']!r}; give a number of tokens") from exc
        rung = rung.with_tokens(tokens)
    max_epochs = fidelity.get("max_epochs")
    return train_proxy(
        str(fidelity["corpus"]),
        request["mixture"],
        rung,
        seed=int(request["seed"]),
        threads=threads_from(fidelity),
        workdir=request["workdir"] or None,
        max_epochs=None if max_epochs is None else float(max_epochs),
    )
