"""Recipes looked up by name: the current folder's first, then the shipped ones."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from mixopt import paths
from mixopt.corpus.recipe import load_recipe
from mixopt.errors import MixoptError, MixoptWarning
from mixopt.proxy.rungs import ladder, warn_if_local
from mixopt.search.prepare import _portable_rung
from mixopt.train.config import load_model

SHIPPED = [("proxies", "xs.toml", lambda: _portable_rung("xs"), "proxy rung 'xs'"),
           # `proxy rungs` and `proxy train` (a docs audit: they had used the local copy silently)
           ("proxies", "xs.toml", ladder, "proxy rung 'xs'"),
           ("proxies", "xs.toml", lambda: warn_if_local("xs"), "proxy rung 'xs'"),
           ("proxies", "moe/moe-xs.toml", lambda: load_model("moe-xs"), "model config 'moe-xs'"),
           ("corpora", "default.toml", lambda: load_recipe("default"), "corpus recipe 'default'")]


@pytest.mark.parametrize(("kind", "rel", "look_up", "what"), SHIPPED,
                         ids=["search", "proxy-rungs", "proxy-train", "moe-xs", "corpus"])
def test_a_local_copy_that_overrides_a_shipped_recipe_is_said(kind, rel, look_up, what, tmp_path: Path,  # noqa: ANN001
                                                            monkeypatch) -> None:  # noqa: ANN001
    """A QA pass: a forgotten ./proxies/xs.toml had changed a search's proxies without a word."""
    monkeypatch.chdir(tmp_path)
    local = tmp_path / kind / rel
    local.parent.mkdir(parents=True)
    shutil.copy(paths.SHIPPED / kind / rel, local)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same file: nothing to say
        look_up()
    local.write_text(local.read_text() + "\n# changed here\n")
    with pytest.warns(MixoptWarning, match=rf"{what} is {local.resolve()}, which overrides the shipped "
                                           rf".*{rel} \(move or rename it to use the shipped one\)"):
        look_up()
    local.unlink()  # gone: the shipped one, silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        look_up()


def test_a_recipe_folder_that_cannot_be_read_is_said(monkeypatch, capsys) -> None:  # noqa: ANN001
    """A QA pass: a recipe under a folder without read permission was "unknown corpus" (as root the
    tests cannot take a permission away, so the folder's look-up raises as the kernel would)."""
    from mixopt.cli import run_cli

    class Locked:
        def __truediv__(self, name: str) -> Path:
            raise PermissionError(13, "Permission denied", "/home/u/corpora")

    monkeypatch.setattr(paths, "recipe_dirs", lambda kind: [Locked()])
    with pytest.raises(MixoptError, match=r"corpus recipe 'web' in /home/u/corpora: permission denied"):
        paths.find_recipe("corpora", "web")
    assert run_cli(["corpus", "build", "web"]) == 2
    err = capsys.readouterr().err
    assert "permission denied" in err and len(err.strip().splitlines()) == 1
