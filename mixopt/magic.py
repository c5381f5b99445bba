"""What a binary file is, from its first bytes: named where a text reader would only say "not UTF-8"
or read noise (run tables, corpus input)."""

from __future__ import annotations

# magic bytes → what the file is
KINDS = {
    b"PAR1": "a Parquet file",
    b"PK\x03\x04": "a zip archive (an Excel .xlsx?)",
    b"\x1f\x8b": "gzip-compressed",
    b"\xd0\xcf\x11\xe0": "an old Excel .xls file",
}


def binary_kind(head: bytes) -> str | None:
    """``"a Parquet file"``, ``"gzip-compressed"``, … for a file starting with ``head``; None for text."""
    return next((kind for magic, kind in KINDS.items() if head.startswith(magic)), None)


def has_nul(head: bytes) -> bool:
    """Whether ``head`` holds a NUL byte: valid UTF-8, but no text file (a run table, a corpus
    document) has one, so a file of zeros or an image that happens to decode is binary."""
    return b"\x00" in head
