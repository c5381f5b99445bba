"""What every plot of mixopt's shares: matplotlib without a display, and one palette."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only: a headless machine has no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str | Path) -> None:
    """Write a figure as every plot of mixopt's is written (laid out, PNG at 120 dpi), and free it.
    PNG by name: ``path`` may be a temporary file's (:func:`mixopt.atomic.atomic_path`)."""
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    pyplot().close(fig)


def color(i: int) -> str:
    """Series i's colour, the same in every plot (a report's proposal first, then the baselines)."""
    palette = ("#c44e52", "#8c8c8c", "#55a868", "#dd8452", "#8172b3", "#937860", "#da8bc3", "#64b5cd")
    return palette[i % len(palette)]


# what `fit --report DIR` writes (on tables, or across scale): a folder holding only these is an
# earlier report, which a new one may replace
REPORT_FILES = ("cv.png", "weights.png", "steps.png", "sizes.png", "report.md")


def check_report_dir(path: str | Path, *, out: str | Path | None = None) -> Path:
    """Refuse ``fit --report DIR`` before the fit: a file, a folder holding files other than an
    earlier report's (the report replaces the folder whole), a folder that cannot be made, the
    current folder, or one that ``out`` (the fit's own output) is inside. Returns it, resolved."""
    from mixopt.atomic import check_can_create, output_path, refuse_holding_cwd
    from mixopt.errors import MixoptError

    # resolved: a symlink or a ".." had let --out inside the folder pass, and be deleted with it
    folder = output_path(path, "--report").expanduser().resolve()
    refuse_holding_cwd(folder, "--report", "fit-report")
    if folder.exists() and not folder.is_dir():
        raise MixoptError(f"--report {folder} is a file; give a folder for the report")
    held = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if other := [n for n in held if n not in REPORT_FILES]:
        more = ", …" if len(other) > 3 else ""
        raise MixoptError(f"--report {folder} holds other files ({', '.join(other[:3])}{more}), and a report "
                          "replaces its folder whole; give a new or empty folder")
    if out is not None and Path(out).expanduser().resolve().is_relative_to(folder):
        raise MixoptError(f"--out {out} is inside --report {folder}, which the report replaces whole; write "
                          "the output elsewhere")
    check_can_create(folder, "--report")
    return folder


def md_cell(text: object) -> str:
    """Text in a markdown table's cell: a domain named a|b had split its row in two cells (a
    backslash is escaped first, so that a\\|b keeps both)."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|")
