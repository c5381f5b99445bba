"""The cluster files in services/ and the Dockerfile they run: what they name exists and parses.

No Docker engine or Kubernetes runs here, so these check the files against the repository and the
CLI: every path the image copies, the recipes the installed package looks for, and every mixopt
command line they run, parsed by the CLI itself (options and their values, without running them).
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import typer
import yaml

from mixopt.cli import _click_exceptions, _register, app
from mixopt.paths import REPO_ROOT

SERVICES = REPO_ROOT / "services"


def _copied() -> list[str]:
    """Every source path of the Dockerfile's COPY lines."""
    out: list[str] = []
    for line in (REPO_ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            *sources, _dest = line.split()[1:]
            out.extend(sources)
    return out


def test_the_image_copies_what_the_installed_package_needs() -> None:
    copied = _copied()
    for src in copied:
        assert (REPO_ROOT / src).exists(), f"Dockerfile copies {src}, which the repository lacks"
    # pip install -e . reads pyproject (and its readme, the constraints); the recipes are in the
    # package (mixopt/recipes/; the root's corpora/ and proxies/ only link to them)
    readme = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["readme"]
    for needed in ("pyproject.toml", "constraints.txt", readme, "mixopt"):
        assert needed in copied, f"the image lacks {needed}"
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert not set(copied) & set(ignored), "a copied path is in .dockerignore"


def _parse(command: str) -> None:
    """Parse one ``mixopt …`` command line as the CLI would, without running the command."""
    argv = shlex.split(command)
    assert argv[0] == "mixopt", command
    _register()
    cmd, name, args = typer.main.get_command(app), "mixopt", argv[1:]
    while hasattr(cmd, "get_command"):  # a group (corpus, runs, …): none takes options of its own
        parent = cmd.context_class(cmd, info_name=name)
        name, args = args[0], args[1:]
        sub = cmd.get_command(parent, name)
        if sub is None:
            raise LookupError(f"no command {name!r}")
        cmd = sub
    cmd.make_context(name, args)  # raises on an unknown option or a bad value


def test_the_rayjob_builds_the_corpus_before_it_searches() -> None:
    job = yaml.safe_load((SERVICES / "rayjob.yaml").read_text())
    steps = [s.strip() for s in job["spec"]["entrypoint"].split("&&")]
    # A fresh volume has no built corpus, and search refuses an unbuilt one.
    assert steps[0].startswith("mixopt corpus build ")
    corpus = shlex.split(steps[0])[3]
    search = [s for s in steps if s.startswith("mixopt search ")]
    assert search and f"--corpus {corpus}" in search[0]
    for step in steps:
        _parse(step)
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
    volume = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    mounts = [m["mountPath"] for m in volume["volumeMounts"]]
    assert any(env["MIXOPT_HOME"].startswith(m) for m in mounts), "the workspace is not on the volume"


def test_the_cluster_launcher_calls_the_venvs_ray() -> None:
    cfg = yaml.safe_load((SERVICES / "ray-cluster.yaml").read_text())
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for line in cfg[key]:
            # A bare `ray` is not on PATH when only the venv has it, and a failed command stops `ray up`.
            assert re.match(r"~/mixopt/\.venv/bin/ray ", line), line
    usage = re.findall(r"^#\s+(mixopt search .*)$", (SERVICES / "ray-cluster.yaml").read_text(), re.M)
    assert usage, "the usage comment shows no search"
    for line in usage:  # the search its usage comment runs on the head
        _parse(line)


@pytest.mark.parametrize("bad", ["mixopt search --corpus default --budgett 8", "mixopt corpus biuld default"])
def test_parse_refuses_what_the_cli_refuses(bad: str) -> None:
    usage, _ = _click_exceptions()
    with pytest.raises((*usage, LookupError)):
        _parse(bad)


def test_a_wheel_carries_the_recipes(tmp_path: Path) -> None:
    """`pip install .` (or a wheel) had no corpora/ or proxies/: `corpus build default` was unknown."""
    import shutil
    import subprocess
    import sys
    import tarfile
    import zipfile

    from mixopt import paths

    shipped = {p.relative_to(REPO_ROOT).as_posix() for kind in ("corpora", "proxies")
               for p in (REPO_ROOT / kind).rglob("*.toml")}
    assert len(shipped) >= 7 and paths.shipped_dirs("corpora") == [paths.SHIPPED / "corpora"]
    # Built from a copy of the tracked tree, so that the checkout gets no build/ and no earlier build's
    # leftovers reach the wheel; the root's links copied as plain files, as a zip of the repository or
    # a clone without symlinks has them (its wheel had shipped no recipe at all)
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    for rel in files.stdout.splitlines():
        if rel.startswith("mixopt/") or rel in ("pyproject.toml", "README.md", "corpora", "proxies"):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            if (REPO_ROOT / rel).is_symlink():
                (src / rel).write_text(str((REPO_ROOT / rel).readlink()))
            else:
                shutil.copy2(REPO_ROOT / rel, src / rel)

    def build(what: str, where: Path) -> Path:
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                               "-q", "-w", str(tmp_path / what), str(where)], capture_output=True, text=True,
                              timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        (wheel,) = (tmp_path / what).glob("mixopt-*.whl")
        return wheel

    names = set(zipfile.ZipFile(build("dist", src)).namelist())
    assert {n for n in names if n.startswith("mixopt/recipes/")} == {f"mixopt/recipes/{s}" for s in shipped}
    assert {"mixopt/schemas/mixture.v1.json", "mixopt/py.typed"} <= names
    # the sdist carries them too, and a wheel built from it ships them
    done = subprocess.run([sys.executable, "-c", "from setuptools import build_meta; "
                           f"print(build_meta.build_sdist({str(tmp_path / 'sdist')!r}))"],
                          cwd=src, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (sdist,) = (tmp_path / "sdist").glob("mixopt-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    (root,) = (tmp_path / "unpacked").iterdir()
    from_sdist = set(zipfile.ZipFile(build("dist2", root)).namelist())
    want = {f"mixopt/recipes/{s}" for s in shipped}
    assert {n for n in from_sdist if n.startswith("mixopt/recipes/")} == want
