"""``mixopt fit --fidelity-law --report DIR``: the laws across scale drawn, and ``report.md``.

``steps.png``  (with ``--target-tokens``) the largest rungs' runs along their checkpoints, the
               objective as measured, and the step law fitted through them, carried to the target
               (BiMix: its one law over the largest rung's checkpoints, with or without a target);
``sizes.png``  (with ``--target-size``) each mixture's objective at every rung and the size law
               carried to the target size;
``report.md``  the laws' exponents and residuals, the proposal, the fit's warnings.

The same few mixtures, from the best to the worst at the largest rung, are drawn in each plot, each
in its own colour ("mixture 1" is the best), so that a mixture can be followed across them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixopt.errors import MixoptError
from mixopt.fitters.nested import mixture_key
from mixopt.plots import color, md_cell, pyplot, save

MAX_SHOWN = 6  # mixtures drawn: from the best to the worst, evenly by rank
MAX_RUNGS = 3  # step-law panels: the largest rungs, nearest the target
GRID = 24  # points along a law's curve


def write_scale_report(folder: str | Path, result: Mapping[str, Any], *, pred: Any, curves: Sequence[Any],
                       weights: Mapping[str, float], model: Any = None,
                       warned: Sequence[str] = ()) -> list[Path]:
    """Plots and report.md of a fit across scale (``result``: what ``fit_across_scale`` returns;
    ``pred``: its :class:`~mixopt.fitters.nested.ScalePrediction`; ``weights``: the objective's
    metric weights; ``model``: BiMix's fitted law; ``warned``: the fit's warnings), written whole
    into ``folder`` (checked as :func:`mixopt.plots.check_report_dir` checks it). Returns the files."""
    from mixopt.atomic import atomic_dir
    from mixopt.plots import check_report_dir

    folder = check_report_dir(folder, out=result.get("out"))
    metrics = list(pred.metrics)
    w = np.array([weights[m] for m in metrics])
    target = result["target_tokens"]
    shown = _shown(curves, metrics, w)
    names = []
    with atomic_dir(folder) as tmp:
        if model is not None:
            _plot_bimix(tmp / "steps.png", curves, metrics, w, model, target, shown)
            names.append("steps.png")
        elif pred.fits.get("step") and _plot_steps(tmp / "steps.png", pred.fits["step"], metrics, w,
                                                   float(target), result.get("rungs", {}), shown):
            names.append("steps.png")
        if pred.fits.get("size"):
            _plot_sizes(tmp / "sizes.png", pred.fits["size"], w, float(result["target_size"]), target, shown)
            names.append("sizes.png")
        (tmp / "report.md").write_text(_markdown(result, names, shown, curves, warned), encoding="utf-8")
    return [folder / n for n in [*names, "report.md"]]


def _objective(c: Any, metrics: Sequence[str], w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A run's (tokens, objective) at its checkpoints after 0 tokens where every metric is measured."""
    Y = np.column_stack([np.asarray(c.losses[m], dtype=float) for m in metrics])
    keep = (np.asarray(c.tokens) > 0) & np.isfinite(Y).all(axis=1)
    return np.asarray(c.tokens, dtype=float)[keep], Y[keep] @ w


def _shown(curves: Sequence[Any], metrics: Sequence[str], w: np.ndarray) -> list[tuple[float, ...]]:
    """The mixtures to draw, best first: up to :data:`MAX_SHOWN`, evenly by rank of their last
    measured objective at the largest rung (runs with no checkpoint measuring every metric are
    left out: nothing of theirs could be drawn)."""
    size = max(float(c.size) for c in curves)
    last: dict[tuple[float, ...], float] = {}
    for c in curves:
        _, y = _objective(c, metrics, w)
        if float(c.size) == size and len(y):
            last.setdefault(mixture_key(c.weights), float(y[-1]))
    keys = sorted(last, key=last.get)
    picks = np.linspace(0, len(keys) - 1, min(MAX_SHOWN, len(keys))).round().astype(int)
    return [keys[i] for i in dict.fromkeys(picks)]


def _grid(t: np.ndarray, target: float | None) -> tuple[np.ndarray, int | None]:
    """Tokens to draw a law at, spanning a run's checkpoints and the target (which may lie before
    or after them), and the target's index among them."""
    lo, hi = float(t.min()), float(t.max())
    if target is None:
        return np.geomspace(lo, hi, GRID), None
    grid = np.union1d(np.geomspace(min(lo, target), max(hi, target), GRID), [target])
    return grid, int(np.searchsorted(grid, target))


def _runs_of(c: Any, grid: np.ndarray) -> np.ndarray | None:
    """The learning rate's areas (S1, S2) at the end of a run of each ``grid`` tokens on ``c``'s
    schedule (its schedule stretched to that length); None where a point lies outside what a step
    law is carried to."""
    out = []
    for t in grid:
        try:
            out.append([float(a[0]) for a in c.areas(float(t))])
        except MixoptError:  # under one optimizer step, or past the steps a law is carried
            return None
    return np.array(out)


def _panels(n: int, height: float = 4.4) -> tuple[Any, Any]:
    fig, axes = pyplot().subplots(1, n, figsize=(min(5.4 * n, 16), height), squeeze=False)
    return fig, axes[0]


def _plot_steps(path: Path, fits: Mapping[tuple[float, str], Any], metrics: Sequence[str], w: np.ndarray,
                target: float, rungs: Mapping[str, str], shown: Sequence[tuple[float, ...]]) -> bool:
    """Each of the largest rungs' shown runs: its checkpoints, and the step law through them. A law in
    tokens is one line, carried to the target. A law in the learning rate's areas (mixopt's proxies,
    whose schedules are known) is drawn twice: solid at the run's own checkpoints, which is what
    was fitted, and dashed for whole runs of each length on its schedule, which is what is carried
    to the target. Returns whether a law was drawn (nothing is written otherwise)."""
    sizes = sorted({size for size, _ in fits})[-MAX_RUNGS:]
    fig, axes = _panels(len(sizes))
    drawn = annealed_any = False
    for ax, size in zip(axes, sizes, strict=True):
        group = fits[(size, metrics[0])][1]
        where = {mixture_key(c.weights): k for k, c in reversed(list(enumerate(group)))}  # first run of each
        for n, key in enumerate(shown):
            if key not in where:
                continue
            k = where[key]
            c = group[k]
            t, y = _objective(c, metrics, w)
            if not len(t):
                continue
            ax.scatter(t, y, s=16, color=color(n), zorder=3)
            laws = [fits[(size, m)] for m in metrics]
            grid, at = _grid(t, target)
            if not any(annealed for _, _, annealed in laws):
                fitted = np.column_stack([law.predict(grid)[k] for law, _, _ in laws]) @ w
                ax.plot(grid, fitted, color=color(n), linewidth=1.2, label=f"mixture {n + 1}")
            else:
                annealed_any = True
                s1, s2 = (np.asarray(a, dtype=float) for a in c.areas())
                own = np.asarray(c.tokens) > 0
                at_own = np.column_stack([law.predict(s1[own], s2[own])[k] for law, _, _ in laws]) @ w
                ax.plot(np.asarray(c.tokens)[own], at_own, color=color(n), linewidth=1.2,
                        label=f"mixture {n + 1}")
                areas = _runs_of(c, grid)
                if areas is None:
                    continue
                fitted = np.column_stack([law.predict(areas[:, 0], areas[:, 1])[k]
                                          for law, _, _ in laws]) @ w
                ax.plot(grid, fitted, color=color(n), linewidth=1, linestyle=":")
            ax.scatter([grid[at]], [fitted[at]], marker="*", s=90, color=color(n), zorder=4)
            drawn = True
        ax.axvline(target, color="grey", linestyle="--", linewidth=1)
        _log_x(ax)
        rung = rungs.get(f"{size:.6g}", "")
        named = f"rung {rung}, " if rung and not rung.endswith(" params") else ""  # an import's size alone
        ax.set_title(f"{named}{size:.3g} params", fontsize=10)
        ax.set_xlabel("training tokens (dashed line: --target-tokens)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    how = ("lines: the step law at each run's checkpoints;\ndotted: at the end of a run of that length on "
           "its schedule" if annealed_any else "lines: the step law")
    axes[0].set_ylabel("objective (points: measured; ★ at target)")
    more = f"the {len(sizes)} largest rungs; " if len({s for s, _ in fits}) > len(sizes) else ""
    fig.suptitle(f"step law per run, carried to the target tokens\n({more}{how})", fontsize=9)
    if drawn:
        save(fig, path)
    else:
        pyplot().close(fig)
    return drawn


def _log_x(ax: Any) -> None:
    """A log x axis labelled 30k, 2M: matplotlib's 3×10⁴ labels ran into each other on panels that
    span about a decade (a walkthrough's sizes.png and steps.png)."""
    from matplotlib.ticker import EngFormatter, LogFormatter

    class Compact(LogFormatter):
        def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
            return EngFormatter(sep="")(x)

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(Compact())
    ax.xaxis.set_minor_formatter(Compact(labelOnlyBase=False))


def _plot_bimix(path: Path, curves: Sequence[Any], metrics: Sequence[str], w: np.ndarray, model: Any,
                target: float | None, shown: Sequence[tuple[float, ...]]) -> None:
    from mixopt.fitters.metricsum import MetricSum

    law = model.estimator_ if isinstance(model, MetricSum) else model
    size = max(float(c.size) for c in curves)
    where = {mixture_key(c.weights): c for c in reversed(curves) if float(c.size) == size}
    fig, axes = _panels(1)
    ax = axes[0]
    for n, key in enumerate(shown):
        c = where[key]
        t, y = _objective(c, metrics, w)
        grid, at = _grid(t, target)
        X = np.repeat(np.asarray(c.weights, dtype=float)[None, :], len(grid), axis=0)
        fitted = np.asarray(law.predict(X, steps=grid), dtype=float).reshape(len(grid), len(metrics)) @ w
        ax.scatter(t, y, s=16, color=color(n), zorder=3)
        ax.plot(grid, fitted, color=color(n), linewidth=1.2, label=f"mixture {n + 1}")
        if at is not None:
            ax.scatter([grid[at]], [fitted[at]], marker="*", s=90, color=color(n), zorder=4)
    if target is not None:
        ax.axvline(target, color="grey", linestyle="--", linewidth=1)
    _log_x(ax)
    ax.set_xlabel("training tokens" + (" (dashed line: --target-tokens)" if target is not None else ""))
    ax.set_ylabel("objective (points: measured; lines: BiMix" + ("; ★ at target)" if target else ")"))
    ax.set_title(f"BiMix over mixtures and checkpoints, {size:.3g} params", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    save(fig, path)


def _plot_sizes(path: Path, fit: tuple[Any, list, list[float], np.ndarray], w: np.ndarray, target: float,
                target_tokens: float | None, shown: Sequence[tuple[float, ...]]) -> None:
    law, keys, sizes, V = fit  # V: (n_sizes, n_mixtures, n_metrics), each mixture at each rung
    n_mix, n_met = V.shape[1], V.shape[2]
    grid = np.union1d(np.geomspace(min(target, min(sizes)), max(target, max(sizes)), GRID), [target])
    at = int(np.searchsorted(grid, target))
    F = np.asarray(law.predict(grid), dtype=float).reshape(n_met, n_mix, len(grid))
    fitted = np.tensordot(w, F, axes=1)  # (n_mixtures, grid)
    values = V @ w  # (n_sizes, n_mixtures)
    index = {key: i for i, key in enumerate(keys)}
    fig, axes = _panels(1)
    ax = axes[0]
    for n, key in enumerate(shown):
        if (i := index.get(key)) is None:
            continue
        ax.scatter(sizes, values[:, i], s=18, color=color(n), zorder=3)
        ax.plot(grid, fitted[i], color=color(n), linewidth=1.2, label=f"mixture {n + 1}")
        ax.scatter([grid[at]], [fitted[i, at]], marker="*", s=90, color=color(n), zorder=4)
    ax.axvline(target, color="grey", linestyle="--", linewidth=1)
    _log_x(ax)
    ax.set_xlabel("model parameters (dashed line: --target-size)")
    points = (f"each rung's step law at {target_tokens:.3g} tokens" if target_tokens
              else "each rung's last checkpoint")
    ax.set_ylabel("objective (★ at target)")
    ax.set_title(f"size law per mixture (points: {points})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    save(fig, path)


def _markdown(res: Mapping[str, Any], plots: Sequence[str], shown: Sequence[tuple[float, ...]],
              curves: Sequence[Any], warned: Sequence[str]) -> str:
    tokens, size = res["target_tokens"], res["target_size"]
    target = (f"{tokens:.3g} tokens" if tokens else "the last checkpoint") + (
        f", {size:.3g} params" if size else ", the largest rung's size")
    named = res.get("rungs", {})  # size → rung name

    def rung(s: float | str) -> str:
        name = named.get(f"{float(s):.6g}")
        return f"{float(s):.3g}" + (f" ({name})" if name and not name.endswith(" params") else "")

    lines = [f"# `mixopt fit --fidelity-law`: {res['method']}", "",
             f"- runs: {res['n_runs']} runs of {res['n_mixtures']} mixtures, at rung(s) of "
             f"{', '.join(rung(s) for s in res['sizes'])} params",
             f"- target: {target}" + ("" if tokens or size else " (nothing extrapolated)"),
             f"- metrics: {', '.join(res['metrics'])}", ""]
    prop = res["proposal"]
    where = f" → `{Path(res['out']).absolute()}`" if res.get("out") else ""
    sd = f" ± {prop['std']:.4f}" if prop.get("std") else ""
    lines += [f"## Proposal{where}", "", f"Predicted objective at the target: **{prop['predicted']:.4f}**"
              f"{sd}", "", "| domain | weight |", "|---|---:|"]
    lines += [f"| {md_cell(d)} | {v:.4f} |"
              for d, v in sorted(prop["weights"].items(), key=lambda kv: -kv[1])]
    laws, rows = res["laws"], []
    for name, law in laws.get("step", {}).items():
        s, _, metric = name.partition("/")
        scale = (f"learning-rate area, C = {law['C']:.3g}" if law.get("scale") == "lr-area" else "tokens")
        rows.append(f"| step, in {scale} | {rung(s)} | {md_cell(metric)} | {law['beta']:.3f} "
                    f"| {law['rms']:.4g} |")
    fixed = " (fixed by --size-exponent)" if res.get("size_exponent") is not None else ""
    rows += [f"| size | every rung | {md_cell(name)} | {law['beta']:.3f}{fixed} | {law['rms']:.4g} |"
             for name, law in laws.get("size", {}).items()]
    for name, law in laws.get("bimix", {}).items():
        beta = "-" if law["beta"] is None else f"{law['beta']:.3f}"
        rows.append(f"| bimix (α = {law['alpha']:.3f}) | the largest | {md_cell(name)} | {beta} "
                    f"| {law['rms']:.4g} (R² {law['r2']:.2f}) |")
    if rows:
        lines += ["", "## Laws", "", "| law | rung (params) | metric | β | RMS residual |",
                  "|---|---|---|---:|---:|", *rows]
    notes = [*res.get("notes", ()), *(n for n in warned if n not in res.get("notes", ()))]
    if notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    if shown and plots:
        runs: dict[tuple[float, ...], list[str]] = {}
        for c in curves:
            runs.setdefault(mixture_key(c.weights), []).append(c.run_id)
        lines += ["", "## Mixtures drawn", "", "| mixture | its runs |", "|---|---|",
                  *(f"| {n + 1} | {md_cell(', '.join(runs[key]))} |" for n, key in enumerate(shown))]
    lines += ["", "## Plots", "", *(f"![{Path(p).stem}]({p})" for p in plots)]
    if not plots:
        lines.append("Nothing to draw: the step law is drawn with --target-tokens, the size law with "
                     "--target-size.")
    return "\n".join(lines) + "\n"
