"""A digest of a Python value that is the same in every process, or None where none can be made.

Used to tell apart evaluators that share a name (two closures of one factory, two instances of one
class): runs are reused under the evaluator's name, so the name carries a digest of what the
evaluator holds. ``repr`` is not enough: numpy and pandas cut large arrays short (two arrays that
differ in one element print alike), sets print in a per-process hash order, and most objects print
their memory address. So the value is walked: arrays and tensors by dtype, shape and bytes,
containers by their items (sets and dicts sorted by the items' own digests), functions, classes and
modules by name, other objects by their type and attributes.
"""

from __future__ import annotations

import hashlib
import inspect
import types
from typing import Any

_MAX_DEPTH = 12


class Unstable(Exception):
    """A value whose digest would differ between processes (an object known only by its address)."""


def fingerprint(value: Any) -> str | None:
    """A 12-hex-digit digest of ``value``, or None when part of it has no stable form."""
    h = hashlib.sha256()
    try:
        _feed(h, value, 0, set())
    except Unstable:
        return None
    return h.hexdigest()[:12]


def _sub(value: Any, depth: int, path: set[int]) -> bytes:
    h = hashlib.sha256()
    _feed(h, value, depth, path)
    return h.digest()


def _feed(h: Any, value: Any, depth: int, path: set[int]) -> None:
    if depth > _MAX_DEPTH or id(value) in path:  # a cycle, or a structure deeper than an evaluator's
        h.update(b"<deep>")
        return
    t = type(value)
    h.update(f"<{t.__module__}.{t.__qualname__}>".encode())
    if value is None or isinstance(value, bool | int | float | complex):
        h.update(repr(value).encode())
    elif isinstance(value, str):
        h.update(value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, bytes | bytearray | memoryview):
        h.update(bytes(value))
    elif isinstance(value, types.ModuleType):
        h.update(value.__name__.encode())
    elif inspect.isclass(value) or inspect.isroutine(value):
        h.update(f"{getattr(value, '__module__', '?')}:{getattr(value, '__qualname__', '?')}".encode())
    else:
        path = path | {id(value)}
        _feed_object(h, value, depth + 1, path)


def _feed_object(h: Any, value: Any, depth: int, path: set[int]) -> None:
    import numpy as np

    if isinstance(value, np.ndarray | np.generic):
        arr = np.asarray(value)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        if arr.dtype.hasobject:
            for x in arr.ravel().tolist():
                _feed(h, x, depth, path)
        else:
            h.update(np.ascontiguousarray(arr).tobytes())
        return
    module = type(value).__module__.split(".")[0]
    if module == "torch" and hasattr(value, "detach"):  # a tensor (bfloat16 has no numpy form)
        t = value.detach().cpu()
        _feed(h, t.float().numpy() if str(t.dtype) == "torch.bfloat16" else t.numpy(), depth, path)
        return
    if module == "pandas" and hasattr(value, "to_numpy"):
        for part in (list(getattr(value, "columns", [])), list(value.index), value.to_numpy()):
            _feed(h, part, depth, path)
        return
    if callable(getattr(value, "state_dict", None)):  # a torch module (its repr names only its layers)
        _feed(h, value.state_dict(), depth, path)
    if isinstance(value, list | tuple):
        h.update(str(len(value)).encode())
        for x in value:
            _feed(h, x, depth, path)
    elif isinstance(value, dict):
        for k, v in sorted((_sub(k, depth, path), _sub(v, depth, path)) for k, v in value.items()):
            h.update(k + v)
    elif isinstance(value, set | frozenset):
        for d in sorted(_sub(x, depth, path) for x in value):
            h.update(d)
    else:
        state = _attributes(value)
        if state is None:
            _feed_repr(h, value)
        else:
            _feed(h, state, depth, path)


def _attributes(value: Any) -> dict[str, Any] | None:
    """An object's ``__dict__`` and ``__slots__`` values, or None for an object with neither."""
    state = dict(getattr(value, "__dict__", None) or {})
    for cls in type(value).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in ("__dict__", "__weakref__") and hasattr(value, name):
                state[name] = getattr(value, name)
    has_layout = hasattr(value, "__dict__") or any(getattr(c, "__slots__", ()) for c in type(value).__mro__)
    return state if has_layout else None


def _feed_repr(h: Any, value: Any) -> None:
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - a user's __repr__ may raise anything
        raise Unstable from exc
    if " at 0x" in text or " object at " in text:  # known only by its address
        raise Unstable
    h.update(text.encode("utf-8", "surrogatepass"))
