"""Type checks of a TOML recipe's values against the dataclass fields they fill (a proxy rung, a
model config): TOML's ``true`` is a Python int, ``"false"`` is truthy, and ``eval_at = 0.5`` or
``warmup = "0.1"`` had failed deep inside with Python's own message, or trained at ``lr = true``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from mixopt.errors import MixoptError


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def field_types(*classes: Any) -> dict[str, str]:
    """Each field of the dataclasses ``classes``: its type as written (``"float"``, ``"tuple[float, …]"``)."""
    def written(t: Any) -> str:  # a string under postponed annotations; else the type's own name
        return t if isinstance(t, str) else getattr(t, "__name__", str(t).removeprefix("typing."))

    return {f.name: written(f.type) for c in classes for f in fields(c)}


def check_field_types(where: str, data: Mapping[str, Any], types: Mapping[str, str]) -> dict[str, Any]:
    """Refuse a value of ``data`` whose field (``types``: name → type as written) is a bool, int,
    float, str, tuple of numbers or Literal and which is not of that type, naming ``where`` (the
    recipe and its file), the key and what it must be. Keys of other types are left to the caller.

    Returns ``data`` with a whole float in an int field as an int: TOML reads ``tokens = 2e7`` as a
    float, and token counts are written so.

    Raises:
        MixoptError: the first value of the wrong type.
    """
    out = dict(data)
    for key, value in data.items():
        kind = types.get(key, "")
        if kind == "int" and isinstance(value, float) and value.is_integer():
            out[key] = value = int(value)
        if kind == "bool":
            ok, want = isinstance(value, bool), "true or false"
        elif kind == "int":
            ok, want = _number(value) and isinstance(value, int), "an integer"
        elif kind == "float":
            ok, want = _number(value), "a number"
        elif kind.startswith("tuple"):
            ok = isinstance(value, list | tuple) and all(_number(v) for v in value)
            want = "a list of numbers, e.g. [0.5, 1.0]"
        elif kind.startswith("Literal") or kind == "str":
            ok, want = isinstance(value, str), "a string"
        else:
            continue
        if not ok:
            raise MixoptError(f"{where}: {key} = {value!r} must be {want}")
    return out
