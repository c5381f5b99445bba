"""Run tables made elsewhere (RegMix, Olmix) loaded into the run store, reusable by searches."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mixopt.errors import MixoptError, MixoptWarning
from mixopt.search.config import PROXY
from mixopt.search.prepare import reuse_key
from mixopt.store import RunRecord, RunStore, now
from mixopt.tables import read_run_tables


def import_table(
    store: RunStore,
    *,
    ratios: str | Path,
    metrics: str | Path,
    corpus: str | None = None,
    fidelity: Mapping[str, Any] | None = None,
    prefix: str | None = None,
    evaluator: str = "proxy",
) -> dict[str, Any]:
    """Load a ratios + metrics table pair made elsewhere (RegMix, Olmix) into the store.

    Run ids are ``<prefix><id>`` (default prefix: the ratios file's name and ``:``), so RegMix's
    train and test tables (both numbered from 1) do not collide; an id already in the store is an
    error and nothing is written. NaN metrics are left out of a run (a run with no finite metric
    is recorded as ``diverged``). With ``corpus`` naming a built corpus, the runs carry its hash and
    are reused by searches on that corpus at the same fidelity.
    """
    table = read_run_tables(ratios, metrics)
    prefix = f"{Path(ratios).stem}:" if prefix is None else prefix
    fid = dict(fidelity or {})
    corpus_hash = None
    if corpus is not None:
        from mixopt.corpus import Corpus

        try:
            c = Corpus.open(corpus)
            corpus, corpus_hash = c.name, c.hash
            fid["corpus"] = corpus
        except MixoptError:
            warnings.warn(
                f"corpus {corpus!r} is not built here; the runs are stored under its name only and will "
                "not be reused by searches until imported again with the built corpus",
                MixoptWarning, stacklevel=2,
            )
    # The key a search of this corpus and rung computes, rung hash included, so the runs are reused;
    # a rung mixopt does not know (RegMix's 1m) keys them by its name alone.
    try:
        key = reuse_key(fid, evaluator, proxy=evaluator == PROXY and "rung" in fid)
    except MixoptError:
        key = reuse_key(fid, evaluator, proxy=False)
    names = table.metric_names
    values = table.metrics.to_numpy().astype(float)
    records, n_nan = [], 0
    for i, rid in enumerate(table.run_ids):
        row = {m: float(v) for m, v in zip(names, values[i], strict=True) if math.isfinite(v)}
        n_nan += len(names) - len(row)
        records.append(RunRecord(
            run_id=f"{prefix}{rid}", role="import", label=table.names[i] if table.names else rid,
            weights={d: float(w) for d, w in zip(table.domains, table.X[i], strict=True)}, fidelity=fid,
            fidelity_key=key, status="ok" if row else "diverged", corpus=corpus, corpus_hash=corpus_hash,
            metrics=row, error=None if row else "no finite metric in the imported table", finished=now(),
        ))
    if n_nan:
        warnings.warn(f"{n_nan} NaN metric value(s) left out of the imported runs", MixoptWarning,
                      stacklevel=2)
    store.add(records)
    return {
        "runs": len(records), "domains": list(table.domains), "metrics": len(names), "key": table.key,
        "first": records[0].run_id, "last": records[-1].run_id, "store": str(store.path),
        "fidelity_key": key, "corpus_hash": corpus_hash,
    }
