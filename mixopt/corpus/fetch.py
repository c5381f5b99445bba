"""Download recipe sources once, into the workspace cache, and identify them by sha256.

``apt`` sources are fetched with ``apt-get download`` (no root needed, nothing installed; one
``apt-get update`` is tried when a package is not found and we are root), ``pip`` sources with
``pip download --no-deps``. Files land in ``<workspace>/cache/{apt,pip}/`` (or ``$MIXOPT_CACHE``)
and are reused by later builds. Where apt cannot deliver a package (no apt-get, no network,
not in the archive), :class:`SourceUnavailable` lets the build go on without it; a pip or path
source that fails is an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from mixopt import paths
from mixopt.corpus.recipe import SourceSpec
from mixopt.errors import MixoptError

log = logging.getLogger(__name__)
_APT_UPDATED = False  # one `apt-get update` per process at most


class SourceUnavailable(Exception):
    """An apt source that this machine cannot fetch; the build skips it and says so."""


@dataclass(frozen=True, kw_only=True)
class Fetched:
    source: SourceSpec
    path: Path
    version: str
    sha256: str

    def record(self) -> dict[str, str]:
        """The manifest's description of this source."""
        return {
            "domain": self.source.domain,
            "kind": self.source.kind,
            "package": self.source.package,
            "version": self.version,
            "licence": self.source.licence,
            "sha256": self.sha256,
            "file": self.path.name,
        }


def cache_dir() -> Path:
    return paths.home() / "cache"


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a folder's relative paths and contents in sorted order."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        if path.is_dir():
            h.update(p.relative_to(path).as_posix().encode() + b"\0")
        try:
            with p.open("rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(block)
        except OSError as exc:  # a file the user cannot read: one line, not a traceback
            raise MixoptError(f"cannot read {p}: {exc.strerror or exc}; check its permissions, or move "
                              f"it out of {path}") from None
    return h.hexdigest()


def _run(cmd: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    log.info("running %s", " ".join(cmd))
    env = {**os.environ, "LC_ALL": "C", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def _last_line(p: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in (p.stderr + "\n" + p.stdout).splitlines() if ln.strip() and not ln.startswith("W:")]
    return lines[-1].strip() if lines else f"exit code {p.returncode}"


def _deb_version(path: Path) -> str:
    parts = path.name.removesuffix(".deb").split("_")
    return unquote(parts[1]) if len(parts) >= 3 else "unknown"


def _cached_deb(folder: Path, src: SourceSpec) -> Path | None:
    if not folder.is_dir():
        return None
    debs = [
        p
        for p in folder.glob(f"{src.package}_*.deb")
        if p.name.split("_")[0] == src.package and (src.version is None or _deb_version(p) == src.version)
    ]
    return max(debs, key=lambda p: p.stat().st_mtime) if debs else None


def fetch_apt(src: SourceSpec) -> Fetched:
    global _APT_UPDATED
    folder = cache_dir() / "apt"
    hit = _cached_deb(folder, src)
    if hit is None:
        if shutil.which("apt-get") is None:
            raise SourceUnavailable("apt-get is not installed")
        folder.mkdir(parents=True, exist_ok=True)
        spec = f"{src.package}={src.version}" if src.version else src.package
        with tempfile.TemporaryDirectory(dir=folder, prefix=".download.") as tmp:
            try:
                p = _run(["apt-get", "download", spec], Path(tmp))
                if p.returncode != 0 and not _APT_UPDATED and os.geteuid() == 0:
                    _APT_UPDATED = True  # package lists may be missing or stale: refresh once
                    _run(["apt-get", "update"], Path(tmp))
                    p = _run(["apt-get", "download", spec], Path(tmp))
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise SourceUnavailable(f"apt-get download {spec} failed: {exc}") from None
            got = list(Path(tmp).glob("*.deb"))
            if p.returncode != 0 or not got:
                raise SourceUnavailable(f"apt-get download {spec}: {_last_line(p)}")
            for g in got:
                os.replace(g, folder / g.name)
        hit = _cached_deb(folder, src)
        if hit is None:
            raise SourceUnavailable(f"apt-get download {spec} gave no {src.package}_*.deb")
    return Fetched(source=src, path=hit, version=_deb_version(hit), sha256=sha256_of(hit))


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _pip_version(path: Path, package: str) -> str | None:
    """Version from a wheel or sdist file name, if it is a file of ``package``."""
    stem = re.sub(r"(\.tar\.gz|\.tar\.bz2|\.zip|\.whl|\.tgz)$", "", path.name)
    if path.name.endswith(".whl"):
        parts = stem.split("-")
        return parts[1] if len(parts) >= 5 and _norm(parts[0]) == _norm(package) else None
    m = re.match(r"^(.*)-([0-9][^-]*)$", stem)
    return m.group(2) if m and _norm(m.group(1)) == _norm(package) else None


def _cached_pip(folder: Path, src: SourceSpec) -> Path | None:
    if not folder.is_dir():
        return None
    hits = [
        p
        for p in folder.iterdir()
        if p.is_file()
        and (v := _pip_version(p, src.package)) is not None
        and (src.version is None or v == src.version)
    ]
    return max(hits, key=lambda p: p.stat().st_mtime) if hits else None


def fetch_pip(src: SourceSpec) -> Fetched:
    folder = cache_dir() / "pip"
    hit = _cached_pip(folder, src)
    if hit is None:
        folder.mkdir(parents=True, exist_ok=True)
        spec = f"{src.package}=={src.version}" if src.version else src.package
        with tempfile.TemporaryDirectory(dir=folder, prefix=".download.") as tmp:
            try:
                p = _run(
                    [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, spec],
                    Path(tmp),
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise MixoptError(f"pip download {spec} failed: {exc}; check access to PyPI") from None
            got = [g for g in Path(tmp).iterdir() if g.is_file()]
            if p.returncode != 0 or not got:
                raise MixoptError(
                    f"pip download {spec} failed: {_last_line(p)}; "
                    f"check access to PyPI, or put the file in {folder}"
                )
            for g in got:
                os.replace(g, folder / g.name)
        hit = _cached_pip(folder, src)
        if hit is None:
            raise MixoptError(
                f"pip download {spec} gave no file named like {src.package}-<version>; "
                f"put the package file in {folder}"
            )
    return Fetched(
        source=src, path=hit, version=_pip_version(hit, src.package) or "unknown", sha256=sha256_of(hit)
    )


def fetch_path(src: SourceSpec, base: Path) -> Fetched:
    p = Path(src.package).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.exists():
        raise MixoptError(
            f"source path {p} of domain {src.domain!r} does not exist; fix the path in the recipe"
        )
    return Fetched(source=src, path=p, version=src.version or "local", sha256=sha256_of(p))


def fetch(src: SourceSpec, base: Path) -> Fetched:
    """The cached (downloaded if needed) file of ``src``; ``base`` resolves relative paths."""
    if src.kind == "apt":
        return fetch_apt(src)
    if src.kind == "pip":
        return fetch_pip(src)
    return fetch_path(src, base)
