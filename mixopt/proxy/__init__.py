"""The proxy trainer: small language models trained on a mixture, scored on every domain.

``rungs`` (the ladder in ``proxies/*.toml``), ``model`` (the transformer) and ``fused`` (its CPU
speed-ups), ``sampler`` (batches from a mixture), ``valset`` (fixed validation windows and
metrics), ``train`` (:func:`train_proxy`), ``evaluate`` (the built-in evaluator of the contract),
``job`` (one run from CLI inputs). The evaluator is ``mixopt.proxy.evaluate:evaluate``.
Importing this package imports no torch; the names below load their module on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["train_proxy", "load_rung", "RungConfig"]

_WHERE = {"train_proxy": "train", "load_rung": "rungs", "RungConfig": "rungs"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"mixopt.proxy.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'mixopt.proxy' has no attribute {name!r}")
