"""``mixopt fit --fidelity-law --report DIR``: the laws across scale drawn, and ``report.md``.

``steps.png``  each rung's runs along their checkpoints (the objective as measured) and the step law
               fitted through them, carried to ``--target-tokens`` (BiMix: its one law over the
               largest rung's checkpoints), for a few runs from the best to the worst;
``sizes.png``  each mixture's objective at ``--target-tokens`` by model size, and the size law carried
               to ``--target-size`` (where one is fitted);
``report.md``  the laws' exponents and residuals, the proposal, the notes.

A fit with no target scale fits no law across training or size, and draws nothing but report.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixopt.errors import MixoptError
from mixopt.plots import color, pyplot

MAX_SHOWN = 6  # runs per rung (and mixtures) drawn: from the best to the worst, evenly
GRID = 16  # points along a law's curve


def write_scale_report(folder: str | Path, result: Mapping[str, Any], *, pred: Any, curves: Sequence[Any],
                       weights: Mapping[str, float], model: Any = None) -> list[Path]:
    """Plots and report.md of a fit across scale (``result``: what ``fit_across_scale`` returns;
    ``pred``: its :class:`~mixopt.fitters.nested.ScalePrediction`; ``weights``: the objective's
    metric weights), written whole into ``folder``. Returns the files."""
    from mixopt.atomic import atomic_dir

    folder = Path(folder)
    w = np.array([weights[m] for m in pred.metrics])
    names = []
    with atomic_dir(folder) as tmp:
        if model is not None and result["target_tokens"]:
            if _plot_bimix(tmp / "steps.png", curves, pred.metrics, w, model, float(result["target_tokens"])):
                names.append("steps.png")
        elif pred.fits.get("step") and _plot_steps(tmp / "steps.png", pred.fits["step"], pred.metrics, w,
                                                   float(result["target_tokens"]), result.get("rungs", {})):
            names.append("steps.png")
        if pred.fits.get("size"):
            _plot_sizes(tmp / "sizes.png", pred.fits["size"], w, float(result["target_size"]),
                        result["target_tokens"], [ids[0] for ids in pred.run_ids])
            names.append("sizes.png")
        (tmp / "report.md").write_text(_markdown(result, names), encoding="utf-8")
    return [folder / n for n in [*names, "report.md"]]


def _objective(c: Any, metrics: Sequence[str], w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A run's (tokens, objective) at its checkpoints after 0 tokens where every metric is measured."""
    Y = np.column_stack([np.asarray(c.losses[m], dtype=float) for m in metrics])
    keep = (np.asarray(c.tokens) > 0) & np.isfinite(Y).all(axis=1)
    return np.asarray(c.tokens, dtype=float)[keep], Y[keep] @ w


def _grid(t: np.ndarray, target: float) -> tuple[np.ndarray, int]:
    """Tokens to draw a law at, from a run's first checkpoint to past its last and the target, and
    the index of the target among them (it may lie before the last checkpoint)."""
    grid = np.union1d(np.geomspace(float(t.min()), max(target, float(t.max())), GRID), [target])
    return grid, int(np.searchsorted(grid, target))


def _spread(values: Sequence[float], k: int = MAX_SHOWN) -> list[int]:
    """Indices of up to ``k`` values from the lowest to the highest, evenly by rank."""
    order = np.argsort(values)
    picks = np.linspace(0, len(order) - 1, min(k, len(order))).round().astype(int)
    return sorted({int(order[i]) for i in picks}, key=lambda i: values[i])


def _step_curve(law: Any, k: int, c: Any, grid: np.ndarray, annealed: bool) -> np.ndarray | None:
    """Curve ``k`` of a step law at ``grid`` tokens (in the learning rate's areas where annealed:
    each point is the end of a run of that many tokens on the run's schedule); None if a point lies
    outside what the law is carried to."""
    if not annealed:
        return np.asarray(law.predict(grid), dtype=float)[k]
    out = []
    for t in grid:
        try:
            s1, s2 = (float(a[0]) for a in c.areas(float(t)))
        except MixoptError:  # under one optimizer step, or past the steps a law is carried
            return None
        out.append(law.E[k] + law.B[k] * (s1 / law.x_ref) ** (-law.beta) - law.C * s2)
    return np.array(out)


def _panels(n: int) -> tuple[Any, Any, Any]:
    plt = pyplot()
    fig, axes = plt.subplots(1, n, figsize=(min(5.2 * n, 16), 4.4), squeeze=False)
    return plt, fig, axes[0]


def _plot_steps(path: Path, fits: Mapping[tuple[float, str], Any], metrics: Sequence[str], w: np.ndarray,
                target: float, rungs: Mapping[str, str]) -> bool:
    sizes = sorted({size for size, _ in fits})[-3:]  # the largest rungs, where the laws matter most
    plt, fig, axes = _panels(len(sizes))
    drawn = False
    for ax, size in zip(axes, sizes, strict=True):
        group = fits[(size, metrics[0])][1]
        measured = [_objective(c, metrics, w) for c in group]
        last = [float(y[-1]) if len(y) else np.inf for _, y in measured]
        for n, k in enumerate(_spread(last)):
            t, y = measured[k]
            if not len(t):
                continue
            grid, at = _grid(t, target)
            parts = [_step_curve(fits[(size, m)][0], k, group[k], grid, fits[(size, m)][2]) for m in metrics]
            ax.scatter(t, y, s=16, color=color(n), zorder=3)
            if all(p is not None for p in parts):
                fitted = np.column_stack(parts) @ w
                ax.plot(grid, fitted, color=color(n), linewidth=1.2, label=group[k].run_id)
                ax.scatter([grid[at]], [fitted[at]], marker="*", s=90, color=color(n), zorder=4)
                drawn = True
        ax.axvline(target, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        rung = rungs.get(f"{size:.6g}", "")
        named = f"rung {rung}, " if rung and not rung.endswith(" params") else ""  # an import's size alone
        ax.set_title(f"{named}{size:.3g} params", fontsize=10)
        ax.set_xlabel("training tokens (dashed: --target-tokens)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, frameon=False)
    axes[0].set_ylabel("objective (points: measured; lines: step law; ★ at target)")
    fig.suptitle("step law per run, carried to the target tokens", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn


def _plot_bimix(path: Path, curves: Sequence[Any], metrics: Sequence[str], w: np.ndarray, model: Any,
                target: float) -> bool:
    from mixopt.fitters.metricsum import MetricSum
    law = model.estimator_ if isinstance(model, MetricSum) else model
    size = max(float(c.size) for c in curves)
    group = [c for c in curves if float(c.size) == size]
    measured = [_objective(c, metrics, w) for c in group]
    last = [float(y[-1]) if len(y) else np.inf for _, y in measured]
    plt, fig, axes = _panels(1)
    ax = axes[0]
    for n, k in enumerate(_spread(last)):
        t, y = measured[k]
        if not len(t):
            continue
        grid, at = _grid(t, target)
        X = np.repeat(np.asarray(group[k].weights, dtype=float)[None, :], len(grid), axis=0)
        fitted = np.asarray(law.predict(X, steps=grid), dtype=float).reshape(len(grid), len(metrics)) @ w
        ax.scatter(t, y, s=16, color=color(n), zorder=3)
        ax.plot(grid, fitted, color=color(n), linewidth=1.2, label=group[k].run_id)
        ax.scatter([grid[at]], [fitted[at]], marker="*", s=90, color=color(n), zorder=4)
    ax.axvline(target, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("training tokens (dashed: --target-tokens)")
    ax.set_ylabel("objective (points: measured; lines: BiMix; ★ at target)")
    ax.set_title(f"BiMix over mixtures and checkpoints, {size:.3g} params", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _plot_sizes(path: Path, fit: tuple[Any, list, list[float], np.ndarray], w: np.ndarray, target: float,
                target_tokens: float | None, labels: Sequence[str]) -> None:
    """``labels``: a run of each mixture, to name it by."""
    law, keys, sizes, V = fit  # V: (n_sizes, n_mixtures, n_metrics), each mixture at each rung
    n_mix, n_met = V.shape[1], V.shape[2]
    grid = np.geomspace(min(sizes), max(target, max(sizes)), GRID)
    F = np.asarray(law.predict(grid), dtype=float).reshape(n_met, n_mix, GRID)
    fitted = np.tensordot(w, F, axes=1)  # (n_mixtures, GRID)
    at = V @ w  # (n_sizes, n_mixtures)
    plt, fig, axes = _panels(1)
    ax = axes[0]
    for n, i in enumerate(_spread(list(fitted[:, -1]))):
        ax.scatter(sizes, at[:, i], s=18, color=color(n), zorder=3)
        ax.plot(grid, fitted[i], color=color(n), linewidth=1.2, label=f"the mixture of {labels[i]}")
        ax.scatter([grid[-1]], [fitted[i, -1]], marker="*", s=90, color=color(n), zorder=4)
    ax.axvline(target, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("model parameters (dashed: --target-size)")
    at_tokens = f"at {target_tokens:.3g} tokens" if target_tokens else "at each rung's last checkpoint"
    ax.set_ylabel(f"objective {at_tokens}")
    ax.set_title("size law per mixture (points: the step laws' values; ★ at target)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(res: Mapping[str, Any], plots: Sequence[str]) -> str:
    tokens, size = res["target_tokens"], res["target_size"]
    target = (f"{tokens:.3g} tokens" if tokens else "the last checkpoint") + (
        f", {size:.3g} params" if size else ", the largest rung's size")
    named = res.get("rungs", {})  # size → rung name
    rungs = ", ".join(f"{s:.3g}" + (f" ({n})" if (n := named.get(f"{s:.6g}")) and not n.endswith(" params")
                                    else "") for s in res["sizes"])
    lines = [f"# `mixopt fit --fidelity-law`: {res['method']}", "",
             f"- runs: {res['n_runs']} runs of {res['n_mixtures']} mixtures, at rung(s) of {rungs} params",
             f"- target: {target}" + ("" if tokens or size else " (nothing extrapolated)"),
             f"- metrics: {', '.join(res['metrics'])}", ""]
    prop = res["proposal"]
    where = f" → `{Path(res['out']).absolute()}`" if res.get("out") else ""
    sd = f" ± {prop['std']:.4f}" if prop.get("std") else ""
    lines += [f"## Proposal{where}", "", f"Predicted objective at the target: **{prop['predicted']:.4f}**"
              f"{sd}", "", "| domain | weight |", "|---|---:|"]
    lines += [f"| {d} | {v:.4f} |" for d, v in sorted(prop["weights"].items(), key=lambda kv: -kv[1])]
    laws = res["laws"]
    rows = [f"| step | {size} | {metric} | {law['beta']:.3f} | {law['rms']:.4g} |"
            for (size, _, metric), law in ((k.partition("/"), v) for k, v in laws.get("step", {}).items())]
    rows += [f"| size | all | {name} | {law['beta']:.3f} | {law['rms']:.4g} |"
             for name, law in laws.get("size", {}).items()]
    for name, law in laws.get("bimix", {}).items():
        beta = "-" if law["beta"] is None else f"{law['beta']:.3f}"
        rows.append(f"| bimix | largest | {name} | {beta} | {law['rms']:.4g} |")
    if rows:
        lines += ["", "## Laws", "", "| law | rung (params) | metric | β | RMS residual |",
                  "|---|---|---|---:|---:|", *rows]
    if res.get("notes"):
        lines += ["", "## Notes", "", *(f"- {n}" for n in res["notes"])]
    lines += ["", "## Plots", "", *(f"![{Path(p).stem}]({p})" for p in plots)]
    if not plots:
        lines.append("No law across training or size was fitted (no target scale): nothing to draw.")
    return "\n".join(lines) + "\n"
