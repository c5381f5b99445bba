"""Small fake evaluators for tests, benchmarks and trying mixopt without training anything.

Each is an ordinary evaluator (``--evaluator mixopt.testing:loglinear``) that follows the contract
in :mod:`mixopt.evaluator`. The landscape is a log-linear mixing law, as fitted by Ye et al.
(2024): for each domain i, ``loss_i(w) = c_i + k_i · exp(Σ_j t_ij · w_j)``, with parameters drawn
from the domain *names* (so the same domains give the same landscape in every process) and
Gaussian noise drawn from the seed and the mixture. Every call leaves a marker file
``evaluated-*`` in the request's work folder, so tests can count evaluator calls across processes.

Knobs read from the request's fidelity: ``noise`` (std of the loss noise, default 0.01),
``rung`` (a larger rung lowers every loss a little), ``sleep`` (seconds), ``work`` (size of a
fixed CPU-bound job), ``fail_rate`` (probability that :func:`flaky` raises).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixopt.evaluator import EvalRequest, EvalResult

# Larger proxies reach lower losses; the shape of the landscape stays the same.
RUNG_OFFSET = {"debug": 0.30, "xs": 0.15, "s": 0.0, "m": -0.10, "l": -0.20}


def _seed_of(*parts: Any) -> int:
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little")


def law_params(domains: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(c, k, t) of the log-linear law over ``domains``: shapes (n,), (n,), (n, n)."""
    n = len(domains)
    c, k, t = np.zeros(n), np.zeros(n), np.zeros((n, n))
    for i, di in enumerate(domains):
        rng = np.random.default_rng(_seed_of("law", di))
        c[i] = rng.uniform(1.5, 2.5)
        k[i] = rng.uniform(0.5, 1.5)
        for j, dj in enumerate(domains):
            r = np.random.default_rng(_seed_of("transfer", di, dj))
            t[i, j] = -r.uniform(1.5, 3.0) if i == j else r.uniform(-0.5, 0.3)
    return c, k, t


def true_losses(weights: Mapping[str, float], rung: str | None = None) -> dict[str, float]:
    """Noise-free per-domain losses of the landscape (``loss/<domain>``)."""
    domains = list(weights)
    w = np.array([float(weights[d]) for d in domains])
    c, k, t = law_params(domains)
    loss = c + k * np.exp(t @ w) + RUNG_OFFSET.get(str(rung), 0.0)
    return {f"loss/{d}": float(v) for d, v in zip(domains, loss, strict=True)}


def true_objective(weights: Mapping[str, float], rung: str | None = None) -> float:
    """Noise-free mean loss over all domains (the default objective)."""
    losses = true_losses(weights, rung)
    return float(np.mean(list(losses.values())))


def _mark(request: EvalRequest) -> None:
    folder = Path(request.workdir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"evaluated-{os.getpid()}-{uuid.uuid4().hex[:8]}").write_text(request.run_id)


def count_calls(root: str | os.PathLike[str]) -> int:
    """Evaluator calls made under ``root`` (the markers left by this module's evaluators)."""
    return sum(1 for _ in Path(root).rglob("evaluated-*"))


def calls_by_run(root: str | os.PathLike[str]) -> dict[str, int]:
    """Evaluator calls made under ``root``, by the run id each was made for."""
    from collections import Counter

    return dict(Counter(p.read_text() for p in Path(root).rglob("evaluated-*")))


def _metrics(request: EvalRequest) -> dict[str, float]:
    fid = request.fidelity or {}
    noise = float(fid.get("noise", 0.01))
    losses = true_losses(request.mixture, fid.get("rung"))
    rng = np.random.default_rng(_seed_of("noise", request.seed, sorted(request.mixture.items())))
    out: dict[str, float] = {}
    for name, v in losses.items():
        v = v + noise * rng.standard_normal()
        out[name] = v
        # bits per byte with 4 bytes per token, so `--metric bpb` works on this landscape too
        out["bpb/" + name.split("/", 1)[1]] = v / math.log(2) / 4.0
    return out


def loglinear(request: EvalRequest) -> EvalResult:
    """The log-linear landscape with seeded noise; optionally sleeps or burns CPU first."""
    t0 = time.perf_counter()
    _mark(request)
    fid = request.fidelity or {}
    if fid.get("sleep"):
        time.sleep(float(fid["sleep"]))
    if fid.get("work"):
        burn(int(fid["work"]))
    return EvalResult(metrics=_metrics(request), cost=time.perf_counter() - t0)


def gpus_seen(request: EvalRequest) -> dict[str, float]:
    """:func:`loglinear`'s metrics, with the GPUs Ray gave the trial: ``gpus`` (the ids
    ``ray.get_gpu_ids`` names) and ``visible_devices`` (the ids in ``CUDA_VISIBLE_DEVICES``)."""
    import ray

    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return {**_metrics(request), "gpus": float(len(ray.get_gpu_ids())),
            "visible_devices": float(len(visible))}


def noop(request: EvalRequest) -> dict[str, float]:
    """Returns fixed metrics at once and writes nothing: for measuring orchestration overhead
    (``fidelity["tilt"]``: each loss moves by tilt × its domain's weight, a near-flat landscape)."""
    tilt = float((request.fidelity or {}).get("tilt", 0.0))
    return {f"loss/{d}": 1.0 + tilt * w for d, w in request.mixture.items()}


def burn(work: int) -> float:
    """A fixed CPU-bound job in pure Python (one core, no BLAS threads): ``work`` × 10k steps."""
    acc = 0.0
    for i in range(work * 10_000):
        acc += (i % 7) * 1e-9
    return acc


def cpu_bound(request: EvalRequest) -> EvalResult:
    """Fixed CPU work (``fidelity["work"]``, default 200), then the landscape: for throughput tests."""
    t0, c0 = time.perf_counter(), time.process_time()
    burn(int((request.fidelity or {}).get("work", 200)))
    # cpu_s next to the wall time tells a benchmark whether the trial had its core to itself
    metrics = {**_metrics(request), "cpu_s": time.process_time() - c0}
    return EvalResult(metrics=metrics, cost=time.perf_counter() - t0)


def failing(request: EvalRequest) -> dict[str, float]:
    """Always raises, as a crashing training job does."""
    _mark(request)
    raise RuntimeError(f"simulated crash of run {request.run_id}")


def nan_loss(request: EvalRequest) -> dict[str, float]:
    """Returns NaN losses, as a diverged training run does."""
    _mark(request)
    return {f"loss/{d}": math.nan for d in request.mixture}


def unread_nan(request: EvalRequest) -> dict[str, float]:
    """loglinear's losses and a NaN downstream score no objective reads (the run still counts)."""
    return {**loglinear(request).metrics, "downstream/mmlu": math.nan}


def no_metrics(request: EvalRequest) -> dict[str, float]:
    """Returns an empty dict: a broken evaluator (the search stops with one clear error)."""
    _mark(request)
    return {}


def broken_until_fixed(request: EvalRequest) -> EvalResult | dict[str, float]:
    """Breaks the contract (no metrics) until the file ``fidelity["fixed"]`` exists, then :func:`loglinear`.

    For the resume after a contract error: the user fixes the evaluator and resumes.
    """
    if not Path(str((request.fidelity or {}).get("fixed", ""))).is_file():
        _mark(request)
        return {}
    return loglinear(request)


def diverges_past(request: EvalRequest) -> dict[str, float]:
    """Loss falls with the first domain's weight, but training diverges (NaN) above
    ``fidelity["diverge_above"]`` (default 0.5): a landscape whose best lies where runs break."""
    first = next(iter(request.mixture))
    if request.mixture[first] > float((request.fidelity or {}).get("diverge_above", 0.5)):
        _mark(request)
        return {f"loss/{d}": math.nan for d in request.mixture}
    return {f"loss/{d}": 3.0 - 2.0 * request.mixture[first] for d in request.mixture}


def raises_until_fixed(request: EvalRequest) -> EvalResult:
    """Raises (a crash, within the contract) until the file ``fidelity["fixed"]`` exists, then
    :func:`loglinear`: the resume after every run failed."""
    if not Path(str((request.fidelity or {}).get("fixed", ""))).is_file():
        _mark(request)
        raise RuntimeError(f"simulated crash of run {request.run_id}, until fixed")
    return loglinear(request)


def diverges_until_fixed(request: EvalRequest) -> EvalResult | dict[str, float]:
    """NaN losses (a diverged run) until the file ``fidelity["fixed"]`` exists, then :func:`loglinear`:
    the resume after every run diverged (a learning rate too high, say)."""
    if not Path(str((request.fidelity or {}).get("fixed", ""))).is_file():
        return nan_loss(request)
    return loglinear(request)


def hangs_once(request: EvalRequest) -> EvalResult:
    """Hangs (sleeps ``fidelity["hang"]`` s, default 600) on the first attempt of slot s0001, as a
    stuck training job does; otherwise :func:`loglinear`."""
    if request.run_id.endswith("-s0001-a1"):
        _mark(request)
        time.sleep(float((request.fidelity or {}).get("hang", 600)))
    return loglinear(request)


def flaky(request: EvalRequest) -> EvalResult:
    """Raises for a seeded share of (mixture, seed) pairs (``fail_rate``, default 0.3); with
    ``diverge=1`` in the fidelity it returns NaN losses for them instead.

    Otherwise it is :func:`loglinear`. A retry has another run id (its attempt), so it draws again.
    """
    rate = float((request.fidelity or {}).get("fail_rate", 0.3))
    u = np.random.default_rng(_seed_of("flaky", request.run_id, sorted(request.mixture.items()))).uniform()
    if u < rate:
        _mark(request)
        if (request.fidelity or {}).get("diverge"):  # NaN losses instead of an exception
            return {f"loss/{d}": math.nan for d in request.mixture}  # type: ignore[return-value]
        raise RuntimeError(f"simulated transient failure of run {request.run_id}")
    return loglinear(request)


def sleepy(request: EvalRequest) -> EvalResult:
    """:func:`loglinear` after sleeping ``fidelity["sleep"]`` seconds (default 1): for kill/resume tests."""
    fid = dict(request.fidelity or {})
    fid.setdefault("sleep", 1.0)
    return loglinear(EvalRequest(mixture=request.mixture, fidelity=fid, seed=request.seed,
                                 run_id=request.run_id, workdir=request.workdir))
