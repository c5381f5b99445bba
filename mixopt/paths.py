"""Where mixopt keeps things: recipes in the project, built artefacts in a workspace.

The workspace defaults to ``./.mixopt`` (override with ``MIXOPT_HOME``): built corpora under
``corpora/``, the run store ``runs.sqlite``, searches under ``searches/``, proxy results under
``runs/``. Recipes (``corpora/*.toml``, ``proxies/*.toml``) are looked up in the current folder
first, then among the recipes shipped with the package (``mixopt/recipes/``; the repository's
``corpora/`` and ``proxies/`` link to them).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mixopt.errors import MixoptError

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent
SHIPPED = PACKAGE_ROOT / "recipes"  # <kind>/ under it: the recipes a wheel carries
# A name that becomes one folder under the workspace (a corpus, a search): no path separators, no
# leading dot, at most 100 characters.
FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")


def check_name(name: str, option: str, what: str = "name") -> None:
    """Refuse ``name`` (given by ``option``) where a search's name goes: it names a folder."""
    from mixopt.errors import MixoptError

    if not FOLDER_NAME.match(name):
        raise MixoptError(f"{option} {name!r} is not a valid {what}; use letters, digits, '.', '_' and '-' "
                          "(at most 100 characters, starting with a letter or digit)")


def home() -> Path:
    """The workspace folder (not created here)."""
    return Path(os.environ.get("MIXOPT_HOME", ".mixopt")).resolve()


def recipe_dirs(kind: str) -> list[Path]:
    """Folders searched for recipes of ``kind`` (``"corpora"`` or ``"proxies"``), in order."""
    dirs = [Path.cwd() / kind, *shipped_dirs(kind)]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def shipped_dirs(kind: str) -> list[Path]:
    """Where the recipes of ``kind`` that come with mixopt live (resolved): the package's, in a wheel
    and in a checkout alike (the root's folders only link to them)."""
    return [(SHIPPED / kind).resolve()] if (SHIPPED / kind).is_dir() else []


def find_recipe(kind: str, name: str) -> Path | None:
    """The TOML recipe ``name`` of ``kind``, or None. A path to a .toml file is taken as is."""
    p = Path(name)
    try:
        if p.suffix == ".toml" and p.is_file():
            return p
        for d in recipe_dirs(kind):
            cand = d / f"{name}.toml"
            if cand.is_file():
                return cand
    except PermissionError as exc:  # a recipe that is there but cannot be read is no unknown name
        what = {"corpora": "corpus recipe", "proxies": "proxy rung"}.get(kind, f"{kind} recipe")
        raise MixoptError(f"cannot look for {what} {name!r} in {exc.filename or 'its folder'}: "
                          "permission denied; make it readable, or run from another folder") from None
    except OSError:  # a name too long for a file name (ENAMETOOLONG) names no recipe
        return None
    return None


def warn_if_overriding(kind: str, found: Path, what: str) -> None:
    """Say so when ``found``, a recipe looked up by name, is the current folder's copy of a shipped
    recipe that differs from it: a forgotten ``./proxies/xs.toml`` had changed a search's proxies
    without a word (and its runs, keyed by that file, reused none of the shipped rung's)."""
    from mixopt.errors import warn

    found = found.resolve()
    local = (Path.cwd() / kind).resolve()
    if not found.is_relative_to(local):
        return
    for d in shipped_dirs(kind):
        twin = d / found.relative_to(local)
        if twin.is_file() and twin.read_bytes() != found.read_bytes():
            warn(f"{what} {found.stem!r} is {found}, which overrides the shipped {twin} (move or rename "
                 "it to use the shipped one)")
            return


def check_recipe_path(name: str, what: str) -> None:
    """Refuse a ``name`` that is a path (a .toml, or with a folder in it) to nothing usable, naming
    the path: "unknown name" would send the user to the list of known recipes instead.

    Raises:
        MixoptError: the path is missing, or a folder.
    """
    from mixopt.errors import MixoptError

    p = Path(name).expanduser()
    if p.suffix != ".toml" and "/" not in name and not name.startswith(("~", ".")):
        return  # a plain name: looked up among the recipes
    if p.is_dir():
        raise MixoptError(f"{what} {name} is a folder; give the path to a .toml recipe file")
    if not p.exists():
        raise MixoptError(f"{what} file {name} does not exist; check the path (or give a known name)")


def available_recipes(kind: str) -> list[str]:
    names: set[str] = set()
    for d in recipe_dirs(kind):
        # a broken link or a folder named x.toml is no recipe: find_recipe would not find it
        names.update(p.stem for p in d.glob("*.toml") if p.is_file())
    return sorted(names)
