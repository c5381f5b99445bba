"""``mixopt fit`` as a library call: fit a method on run tables made elsewhere.

:func:`fit_tables` reads a ratios and a metrics CSV (:mod:`mixopt.tables`), fits the method on one
target, and optionally cross-validates it, predicts new mixtures into a CSV, or proposes a mixture
and writes its JSON. Outputs are written atomically, and only after every input check has passed.
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mixopt.errors import MixoptError, MixoptWarning, warn, warnings_as_notes, warnings_if_ok
from mixopt.swarm import prior_name, single_mixture

if TYPE_CHECKING:
    from mixopt.reuse import Reuse


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """What ``mixopt fit`` was asked to do.

    Attributes:
        ratios, metrics: the run tables.
        target: metric column to model, or ``mean`` (mean of all metric columns).
        method: method name (:func:`mixopt.methods.available_methods`).
        cv: K for K-fold cross-validation, None for none.
        predict: ratios file of new mixtures to predict (written to ``out``).
        propose: propose a mixture (written to ``out`` as mixture JSON).
        out: output path for ``predict`` or ``propose``.
        seed: seeds the fitter, the CV folds and the proposer's candidates.
        min_weight, ceilings, fixed: constraints on the proposed mixture.
        n_candidates, k: the top-k proposer's options.
        kl: λ of the exact proposer's KL(x ‖ prior) term (None: its default, Olmix's 0.1; 0: the
            law's own optimum). Only for methods solved exactly.
        tokens: available tokens per domain: the prior (token shares, as Olmix's natural mixture)
            of the KL term and of the top-k sampler's candidates; None: uniform.
        max_epochs: the proposal's repetition cap, passes over any domain at ``target_tokens``
            (default: the sum of ``tokens``); needs ``tokens``.
        reuse: ``[NAME=]MIXTURE.json``: that mixture's domains (less ``recompute``) are fitted and
            proposed as one group at its shares (:mod:`mixopt.reuse`); the mixture written is over
            every domain.
    """

    ratios: Path
    metrics: Path
    target: str
    method: str = "regmix"
    cv: int | None = None
    predict: Path | None = None
    propose: bool = False
    out: Path | None = None
    seed: int = 0
    min_weight: float = 0.0
    ceilings: Mapping[str, float] = field(default_factory=dict)
    fixed: Mapping[str, float] = field(default_factory=dict)
    n_candidates: int = 100_000
    k: int = 128
    kl: float | None = None
    tokens: Mapping[str, float] | None = None
    max_epochs: float | None = None
    target_tokens: float | None = None
    reuse: str | None = None
    recompute: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from mixopt.methods import get_method
        from mixopt.objective import names_the_mean

        method = get_method(self.method)  # an unknown name is the first thing to hear about
        if names_the_mean(self.target):
            # ' mean' (a quoted variable's space) is the mean, as search --target reads it: it had been
            # read as a list naming 'mean', "cannot be combined with columns" though it named nothing else
            object.__setattr__(self, "target", "mean")
        if self.predict is not None and self.propose:
            raise MixoptError("--predict and --propose each write --out; run them as two commands")
        if (self.predict is not None or self.propose) and self.out is None:
            raise MixoptError(f"{'--predict' if self.predict is not None else '--propose'} needs --out PATH")
        if self.out is not None and self.predict is None and not self.propose:
            raise MixoptError("--out is given but nothing to write; add --predict FILE or --propose")
        if self.max_epochs is not None and not self.tokens:
            raise MixoptError("--max-epochs needs the tokens of each domain (--tokens a=1e9,b=2e9,...)")
        if self.target_tokens is not None and not self.tokens:  # it had been taken and used for nothing
            raise MixoptError("--target-tokens needs the tokens of each domain (--tokens a=1e9,b=2e9,...): "
                              "it is the budget at which each domain's passes are counted")
        # TopKProposer checks them too, but not by their option names; a fit that proposes nothing
        # (--cv, --predict) never builds it, so its options are left alone there
        if method.proposer == "topk" and self.propose:
            if self.n_candidates < 1 or self.k < 1:
                raise MixoptError(f"--candidates {self.n_candidates} and --top-k {self.k}: both must be at "
                                  "least 1")
            if self.k > self.n_candidates:
                raise MixoptError(f"--top-k {self.k} exceeds --candidates {self.n_candidates}; lower --top-k "
                                  "or raise --candidates")
        if self.cv is not None and self.cv < 2:
            raise MixoptError(f"--cv {self.cv}: K must be at least 2")
        if self.predict is not None and str(self.out).lower().endswith(".json"):
            raise MixoptError(f"--predict writes a CSV (one predicted value per mixture), not {self.out}; "
                              "give --out P.csv")
        if self.cv is None and self.predict is None and not self.propose and self.method != "auto":
            # auto's answer is its cross-validation table; any other fit would print nothing
            raise MixoptError("nothing was asked of the fit: add --cv K (accuracy), --predict FILE --out "
                              "P.csv, or --propose --out mixture.json")


@dataclass(frozen=True, kw_only=True)
class FitReport:
    """What :func:`fit_tables` did, with its figures (``as_dict`` is the ``--json`` output)."""

    method: str
    target: str
    domains: tuple[str, ...]
    n_runs: int
    n_excluded: int
    cv: dict[str, Any] | None = None
    predictions: dict[str, Any] | None = None
    proposal: dict[str, Any] | None = None
    out: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    selection: list[dict[str, Any]] | None = None
    per_metric: int = 0  # metric columns fitted one law each (the mean target of a law), else 0
    groups: dict[str, int] | None = None  # domains per source, when the fitter uses the names' groups
    reuse: dict[str, Any] | None = None  # --reuse-mixture: the group (``domains`` are then the units fitted)
    # --cv: every run's out-of-fold prediction beside its measured target (run_ids, measured,
    # predicted), which `fit --report` plots; not in as_dict (a number per run)
    held_out: dict[str, list[Any]] | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "target": self.target, "domains": list(self.domains),
            "n_runs": self.n_runs, "n_excluded": self.n_excluded, "cv": self.cv,
            "predictions": self.predictions, "proposal": self.proposal, "out": self.out,
            "seconds": self.seconds, "selection": self.selection, "groups": self.groups,
            "per_metric": self.per_metric, "reuse": self.reuse,
        }


def fit_tables(config: FitConfig) -> FitReport:
    """Fit ``config.method`` on the run tables and do what ``config`` asks (CV, predict, propose).

    Raises:
        MixoptError: bad method, target, tables, constraints or output path.
    """
    from mixopt.fitters.cv import distinct_mixtures
    from mixopt.fitters.varied import flat
    from mixopt.methods import fit_target, get_method
    from mixopt.reuse import resolve_reuse
    from mixopt.space import SearchSpace, default_target_tokens
    from mixopt.tables import check_same_domains, read_ratios, read_run_tables

    method = get_method(config.method)
    if method.training_free:  # entropy: nothing to fit in run tables
        method.make_proposer()  # raises, saying where it does work
    kl_params = method.kl_option(config.kl)  # a bad --kl is refused before any fitting
    if config.out is not None:
        from mixopt.atomic import check_writable
        from mixopt.reuse import reuse_path

        reused = reuse_path(config.reuse) if config.reuse else None
        check_writable(config.out, inputs={"--ratios": config.ratios, "--metrics": config.metrics,
                                           "--predict": config.predict, "--reuse-mixture": reused},
                       example="predictions.csv" if config.predict is not None else "mixture.json")
        if config.propose and str(config.out).lower().endswith((".csv", ".tsv", ".parquet")):
            raise MixoptError(f"--propose writes a mixture JSON, not {config.out}; give --out mixture.json")
    if method.fitter is None and (config.cv is not None or config.predict is not None):
        raise MixoptError(
            f"method {method.name!r} fits no model, so it cannot --cv or --predict; use regmix or linear"
        )
    # The tables' notes (rows renormalised, runs left out) are said once the target is known good:
    # before a refused --target they were noise above the one error line.
    with warnings_if_ok():
        table = read_run_tables(config.ratios, config.metrics)
        # The tables' contents as read, for the mixture to record (hashed at its writing, they had
        # been the contents of a file rewritten while the fit ran: a review; hashed apart, a pipe's)
        sha256 = dict(table.sha256) if config.propose else {}
        if table.history:
            warn(_checkpoints_note(table, config.metrics), MixoptWarning)
        # --reuse-mixture: fitted and proposed over the units, written over the domains
        group = resolve_reuse(config.reuse, table.domains, config.recompute, table=True)
        if group is not None:
            units, W = group.collapse(table.domains, table.X, table.run_ids, f"--ratios {config.ratios}")
            table = replace(table, domains=units, X=W)
        X, y, run_ids = table.target_rows(config.target)
        if len(y) < 2:
            raise MixoptError(f"only {len(y)} run(s) have a finite {config.target!r}; fitting needs at "
                              "least 2")
        if flat(y):  # every model fits it exactly and ranks nothing: CV would print NaN
            raise MixoptError(f"{config.target!r} is {y[0]:.9g} in every run (to 9 significant digits), "
                              "so there is nothing to fit; "
                              "check --target (`mixopt fit --help` lists how it is read)")
        if method.fitter is not None and distinct_mixtures(X) == 1:
            # a model then predicts the runs' mean for any mixture (the laws and --cv refused it;
            # regmix, gp, log-ridge and linear had answered with that constant, without a word)
            raise MixoptError(f"all {len(y)} runs have the same mixture, so no model can say how the mixture "
                              "moves the target; add runs of other mixtures")
        # (in the block: a --predict file that is missing is the one line, without the tables' notes)
        n_all = len(table.run_ids)
        tokens = dict(config.tokens) if config.tokens else None
        target_tokens = default_target_tokens(config.target_tokens, tokens)  # as a search's, of every domain
        if group is not None:
            group.check_bounds(config.ceilings, "--max-weight")
            group.check_bounds(config.fixed, "--fix")
            if tokens is not None:
                tokens = group.tokens(tokens)
        # Validates the constraints against the domains even when nothing is proposed.
        space = SearchSpace(domains=table.domains, min_weight=config.min_weight,
                            ceilings=dict(config.ceilings), fixed=dict(config.fixed), tokens=tokens,
                            max_epochs=config.max_epochs, target_tokens=target_tokens)
        if config.propose and (single := single_mixture(space, "propose")) is not None:
            raise single  # as search refuses it: the proposal had been that mixture, with two warnings
        new = None
        if config.predict is not None:
            if group is None:
                new = read_ratios(config.predict, what="--predict", domains=table.domains)
            else:
                ids, found, W, key = read_ratios(config.predict, what="--predict")
                found, W = group.collapse(found, W, ids, f"--predict {config.predict}",
                                          fix="leave those rows out of --predict")
                check_same_domains(found, table.domains, config.predict)
                new = ids, found, W, key
    # One unfitted fitter: cross-validation fits clones of it, --predict/--propose fit it itself.
    # The laws fit the mean target as the mean of one law per metric column (as their papers do).
    Y, metrics = table.target_parts(config.target, run_ids)
    fitter = method.make_fitter(seed=config.seed, domains=table.domains, metrics=metrics)
    target = fit_target(fitter, y, Y)
    seconds: dict[str, float] = {}
    cv = calibrated = held_out = None
    if config.cv is not None:
        from mixopt.fitters.cv import cross_validate

        t = time.perf_counter()
        res = cross_validate(fitter, X, target, k=config.cv, seed=config.seed)
        seconds["cv"] = round(time.perf_counter() - t, 3)
        cv = res.as_dict()
        calibrated = res.calibration
        held_out = {"run_ids": list(run_ids), "measured": [float(v) for v in y],
                    "predicted": [float(v) for v in res.pred]}
        poor = _poor_cv_note(res.metrics["spearman"], method.name, config.cv, len(y), len(table.domains))
        if poor and not config.propose:  # a proposal's own notes say it, of the proposal
            warn(poor, MixoptWarning)
    predictions = proposal = selection = None
    # ``auto`` fits even when nothing is written: its cross-validation table is the answer.
    if config.predict is not None or config.propose or method.name == "auto":
        t = time.perf_counter()
        params: dict[str, Any] = {}
        if method.proposer == "topk":
            params = {"n_candidates": config.n_candidates, "k": config.k}
        params.update(kl_params)
        model = fitter
        fit_notes: list[str] = []
        if model is not None:
            with warnings_as_notes() as fit_notes:  # a fit that did not converge: said in the JSON too
                model.fit(X, target)
            selection = getattr(model, "cv_table_", None)
        seconds["fit"] = round(time.perf_counter() - t, 3)
        if new is not None:
            predictions = _write_predictions(model, new, table.domains, config)
        if config.propose:
            t = time.perf_counter()
            proposer = method.make_proposer(seed=config.seed, **params)
            if model is None:
                prop = proposer.propose_from_runs(X, y, space)
            else:
                from mixopt.proposers.hold import propose_holding
                from mixopt.proposers.topk import FLAT_WARNING

                with warnings.catch_warnings():  # its note says it (had been said twice)
                    warnings.filterwarnings("ignore", message=FLAT_WARNING, category=MixoptWarning)
                    prop = propose_holding(proposer, model, X, space)
            seconds["propose"] = round(time.perf_counter() - t, 3)
            from mixopt.proposers.proposal import widen

            # --cv's own figures, else auto's cross-validation of the model it chose
            prop, said = widen(prop, *((calibrated, f"--cv {config.cv}") if calibrated is not None else
                                       (getattr(model, "calibration_", None), "auto's cross-validation")))
            if said:
                warn(said, MixoptWarning)
                fit_notes.append(said)
            from mixopt.fitters.cv import own_ranking

            # how the model ranks runs it did not see, where --cv or auto's own selection measured it
            rank = (cv["spearman"], cv["k"]) if cv is not None else own_ranking(model)
            proposal = _save_mixture(prop, model, method.name, table, X, y, run_ids, space, config, params,
                                     fit_notes, rank, sha256=sha256, group=group, cv=cv)
    return FitReport(
        method=method.name, target=config.target, domains=table.domains, n_runs=len(y),
        n_excluded=n_all - len(y), cv=cv, predictions=predictions, proposal=proposal,
        out=str(config.out) if config.out is not None else None, seconds=seconds, selection=selection,
        groups=_groups_used(fitter), reuse=group.as_dict() if group is not None else None,
        # auto fits its law candidates per metric only up to a count (MAX_PER_METRIC)
        per_metric=Y.shape[1] if target is Y and getattr(fitter, "per_metric_", True) else 0,
        held_out=held_out,
    )


def _checkpoints_note(table: Any, metrics: str | Path) -> str:
    """What ``fit`` does with a metrics table of checkpoints: it fits each run's last row."""
    most = max(len(h) for h in table.history.values())
    ends = [h[-1][table.checkpoints] for h in table.history.values()]
    # a run stopped early is fitted as if it had trained as long as the others (a QA pass)
    early = (f"; the last rows are at {min(ends):.3g} to {max(ends):.3g} {table.checkpoints}, so runs that "
             "stopped early are fitted beside whole ones" if max(ends) > 1.01 * min(ends) else "")
    return (f"{metrics} holds checkpoints (up to {most} rows per run, by {table.checkpoints}): each run's "
            f"last row is fitted{early}; to fit along them (a step law, or bimix's), load the tables with "
            "`mixopt runs import` and fit with `mixopt fit --fidelity-law`")


def _groups_used(fitter: Any) -> dict[str, int] | None:
    """Domains per source, when the fitter was given the groups in the domain names."""
    from collections import Counter

    groups = getattr(fitter, "groups", None)
    return dict(Counter(groups)) if groups is not None else None


def _write_predictions(model: Any, new: tuple, domains: tuple[str, ...], config: FitConfig) -> dict[str, Any]:
    import polars as pl

    from mixopt.atomic import write_text
    from mixopt.fitters.protocol import predict_objective

    ids, new_domains, W, key = new
    order = [new_domains.index(d) for d in domains]
    pred, std = predict_objective(model, W[:, order], return_std=True)
    cols = {key: ids, f"predicted/{config.target}": pred}
    if std is not None:  # a model with uncertainty (gp): its predictive standard deviation
        cols[f"std/{config.target}"] = std
    buf = io.StringIO()
    pl.DataFrame(cols).write_csv(buf)
    write_text(config.out, buf.getvalue())  # type: ignore[arg-type]
    return {"n": len(ids), "path": str(config.out), "min": float(pred.min()), "max": float(pred.max())}


def _poor_cv_note(spearman: float, method: str, k: int, runs: int, domains: int) -> str | None:
    """:func:`~mixopt.proposers.proposal.ranking_note` for a cross-validation alone, naming the
    runs-to-domains count where runs are fewer than domains (a QA pass: 300 domains, 100 runs,
    every method at Spearman −0.1 to 0.2, unsaid)."""
    from mixopt.proposers.proposal import ranking_note

    advice = (f"{runs} runs over {domains} domains are fewer runs than domains, which leaves most weights' "
              "effects unmeasured: add runs, or group domains" if runs < domains else
              "add runs or try another method")
    return ranking_note(spearman, method, k, advice=advice)


def _save_mixture(
    prop: Any, model: Any, method: str, table: Any, X: np.ndarray, y: np.ndarray, run_ids: list[str],
    space: Any, config: FitConfig, proposer_params: dict[str, Any], fit_notes: list[str],
    rank: tuple[float, int] | None = None, *, sha256: dict[str, str | None] | None = None,
    group: Reuse | None = None, cv: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    from mixopt.baselines import baseline_weights, moved_note
    from mixopt.fitters.protocol import predict_objective
    from mixopt.mixture import Mixture, evidence
    from mixopt.proposers.proposal import best_run_note, proposal_notes

    def over_domains(w: np.ndarray) -> dict[str, float]:  # what a training job reads: every domain
        if group is None:
            return {d: float(x) for d, x in zip(table.domains, w, strict=True)}
        return dict(zip(group.domains(table.domains), map(float, group.expand(table.domains, w)[0]),
                        strict=True))

    weights = over_domains(prop.weights)
    inside = space.best_row(X, y)  # the best run the proposal could have been, if any is
    best = inside if inside is not None else int(np.argmin(y))
    if model is None:
        notes = [f"the best run ({run_ids[best]}); 'predicted' is its measured value, not a model's"]
    baselines: dict[str, Any] = {
        "best_run": {"run_id": run_ids[best], "measured": float(y[best]),
                     "inside_constraints": inside is not None,
                     "weights": over_domains(X[best])},
    }
    # inside the constraints, as a search's (a QA pass: with --fix a=0.1 it had been 1/3 each, unsaid)
    uniform = baseline_weights("uniform", space)
    baselines["uniform"] = {"weights": over_domains(uniform)}
    moved = [n for n in [moved_note("uniform", space, inside=uniform),
                         best_run_note(space, X, y, run_ids, listed=True)] if n]
    if model is None:
        notes += moved
        for n in moved:
            warn(n, MixoptWarning)
    if model is not None:
        baselines["uniform"]["predicted"] = float(predict_objective(model, uniform[None, :])[0])
        baselines["best_run"]["predicted"] = float(predict_objective(model, X[best][None, :])[0])
        # Against the best run the proposal could have been (inside the constraints): a better run
        # outside them is the constraints' doing, not the KL term's.
        best_pred = baselines["best_run"]["predicted"]
        rms = float(np.sqrt(np.mean((predict_objective(model, X) - y) ** 2))) if len(y) > 2 else None
        notes = proposal_notes(prop, X, y, table.domains, method, fixed=space.fixed,
                               kl=proposer_params.get("kl"),
                               best=None if inside is None else (best_pred, run_ids[inside]),
                               fit_rms=rms, runs_std=float(np.std(y)), cv=rank)
        if repeats := space.repetition_note(prop.weights):
            notes.append(repeats)
        notes += moved
        for n in notes:
            warn(n, MixoptWarning)
        notes = [*fit_notes, *notes]  # the fit's own warnings were shown when it ran
    if group is not None:  # what the group kept, and which uniform the baseline is (a QA pass read 1/7)
        notes += [group.note(weights), group.baselines_note(space.n)]
    # The options given, then what the proposer reports; "kl" only from the report, because a
    # model without a convex form is proposed by top-k sampling, which has no KL term.
    info_params = {k: v for k, v in prop.info.items() if _jsonable(v)}
    given = {k: v for k, v in proposer_params.items() if k != "kl"}
    params: dict[str, Any] = {"target": config.target, "seed": config.seed,
                              "proposer": {**given, **info_params,
                                           **({"held": prop.info["held"]} if prop.info.get("held") else {})},
                              "constraints": space.constraints(),
                              # of the KL term and the sampler: Olmix pulls towards the natural mixture
                              "prior": prior_name(space, proposer_params.get("temperature", 1.0))}
    if model is not None:
        params["fitter"] = {k: v for k, v in model.get_params().items() if _jsonable(v)}
    if cv is not None:  # --cv's figures, the file's own evidence of the fit (a QA pass: on screen only)
        params["cv"] = {k: v for k, v in cv.items() if k not in ("folds", "calibration")}
    planner = space
    if group is not None:  # the shares the group kept, and the plan per domain the job trains
        params["reuse"] = group.as_dict()
        planner = group.plan_space(space, config.tokens)
    mixture = Mixture(weights, meta=evidence(**{
        # "columns": the table's metric columns and their weights in the target ("weights" is the
        # contract's per-domain loss weights, which a table's columns are not)
        "objective": {"kind": "mean" if config.target == "mean" else "metric", "metric": config.target,
                      "weights": {}, "columns": table.target_weights(config.target)},
        "method": method,
        "params": params,
        "predicted": {"mean": prop.predicted, "std": prop.std,
                      "interval": list(prop.interval) if prop.interval is not None else None,
                      **({"sd_scale": prop.info["sd_scale"]} if "sd_scale" in prop.info else {})},
        "baselines": baselines,
        # the plan at the final run's budget (its target_tokens null when none is known)
        "tokens": planner.token_plan(list(weights.values())),
        # the tables' contents too, as read: a path says nothing of a file rewritten since
        "provenance": {"run_ids": list(run_ids), "tables": dict(table.sources),
                       "tables_sha256": sha256 or {}},
        "notes": notes,
    }))
    mixture.save(config.out)  # type: ignore[arg-type]
    info = dict(prop.info)
    if "run_index" in info:
        info["run_id"] = run_ids[info["run_index"]]
    # what the mixture JSON explains, in --json's stdout too (a QA pass: notes, interval and the
    # baselines had reached only stderr and the --out file)
    return {"weights": weights, "predicted": prop.predicted, "std": prop.std,
            "interval": list(prop.interval) if prop.interval is not None else None,
            "baselines": baselines, "notes": notes, "info": info, "params": params}


def _jsonable(v: Any) -> bool:
    return v is None or isinstance(v, bool | int | float | str)
