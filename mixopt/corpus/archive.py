"""Read selected files out of a source without unpacking it: .deb, wheel/zip, tar.*, folder or file.

Members are selected by glob patterns on their path inside the source (``*`` also crosses
``/``, as in :func:`fnmatch.fnmatchcase`; a leading ``./`` is ignored). A member ending in
``.gz`` is decompressed and matched by its name without the suffix too, so ``*.rst`` finds
Debian's gzipped ``foo.rst.gz``.
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import shutil
import subprocess
import tarfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from mixopt.errors import MixoptError


def _selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    name = name.removeprefix("./")
    names = [name, name.removesuffix(".gz")] if name.endswith(".gz") else [name]
    if not any(fnmatch.fnmatchcase(n, p) for n in names for p in include):
        return False
    return not any(fnmatch.fnmatchcase(n, p) for n in names for p in exclude)


def gunzip(data: bytes, name: str, fix: str) -> bytes:
    """``data`` decompressed if it starts as gzip does, else as it is; damaged, one error naming it."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: a damaged stream behind a good header
        raise MixoptError(f"{name} is not a readable gzip file ({exc}); {fix}") from None


def _maybe_gunzip(name: str, data: bytes, where: str) -> tuple[str, bytes]:
    if name.endswith(".gz") and data[:2] == b"\x1f\x8b":
        return name.removesuffix(".gz"), gunzip(data, f"{where}: {name}", "exclude it")
    return name, data


def _tar_members(fileobj, where: str, include, exclude) -> Iterator[tuple[str, bytes]]:
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
            for m in tar:
                if m.isfile() and _selected(m.name, include, exclude):
                    f = tar.extractfile(m)
                    if f is not None:
                        yield _maybe_gunzip(m.name.removeprefix("./"), f.read(), where)
    except tarfile.TarError as exc:
        raise MixoptError(
            f"{where} is not a readable tar archive ({exc}); delete it from the cache"
        ) from None


def _ar_members(data: bytes, where: str) -> dict[str, bytes]:
    if not data.startswith(b"!<arch>\n"):
        raise MixoptError(f"{where} is not a Debian package (no ar header); delete it from the cache")
    out: dict[str, bytes] = {}
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        try:  # a damaged or cut-off download: said as the file's, not as a ValueError
            name = header[:16].decode("ascii").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            size = -1
        if size < 0 or header[58:60] != b"`\n" or pos + 60 + size > len(data):
            raise MixoptError(f"{where} is a damaged Debian package (a bad member header at byte {pos}); "
                              "delete it from the cache")
        out[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size & 1)
    return out


def _deb_members(path: Path, include, exclude) -> Iterator[tuple[str, bytes]]:
    members = _ar_members(path.read_bytes(), str(path))
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if data_name is None:
        raise MixoptError(f"{path} has no data.tar member; delete it from the cache")
    blob = members[data_name]
    if data_name.endswith(".zst"):  # tarfile cannot read zstd: let dpkg-deb unpack it
        if shutil.which("dpkg-deb") is None:
            raise MixoptError(f"{path} is zstd-compressed and dpkg-deb is not installed; install dpkg")
        done = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(path)], capture_output=True)
        if done.returncode:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            raise MixoptError(f"dpkg-deb cannot unpack {path} ({said[-1] if said else 'no message'}); "
                              "delete it from the cache")
        blob = done.stdout
    yield from _tar_members(io.BytesIO(blob), str(path), include, exclude)


def iter_members(
    path: Path, include: Sequence[str], exclude: Sequence[str] = ()
) -> Iterator[tuple[str, bytes]]:
    """(member path, bytes) of every file in ``path`` whose path matches ``include`` and not ``exclude``.

    ``path`` may be a .deb, a wheel or zip, a tar archive (any compression tarfile reads), a folder
    (members are paths relative to it) or a single file (its member path is its name).
    """
    include = list(include) or ["*"]
    name = path.name
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            rel = p.relative_to(path).as_posix()
            if p.is_file() and _selected(rel, include, exclude):
                yield _maybe_gunzip(rel, p.read_bytes(), str(path))
    elif name.endswith(".deb"):
        yield from _deb_members(path, include, exclude)
    elif name.endswith((".whl", ".zip")):
        try:  # damaged data, or a compression method Python lacks: said as the archive's
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    if not info.is_dir() and _selected(info.filename, include, exclude):
                        yield _maybe_gunzip(info.filename, z.read(info), str(path))
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            raise MixoptError(
                f"{path} is not a readable zip archive ({exc}); delete it from the cache"
            ) from None
    elif ".tar" in name or name.endswith((".tgz", ".tbz2", ".txz")):
        with path.open("rb") as f:
            yield from _tar_members(f, str(path), include, exclude)
    elif path.is_file():
        if _selected(name, include, exclude):
            yield _maybe_gunzip(name, path.read_bytes(), str(path))
    else:
        raise MixoptError(f"source {path} does not exist; check the path in the recipe")
