"""RegMix's proposer: predict many candidates from the space and average the k best.

Candidates come from the swarm sampler's fast path, in chunks (each with its own seed stream
spawned from ``random_state``, so the result does not depend on how chunks are scheduled) that are
sampled and predicted in threads; only the running k best are kept, so memory stays bounded for
1M candidates. The average of points of a box ∩ simplex is inside it; it is checked anyway and
projected back if rounding put it outside.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from mixopt.cpus import usable_cpus
from mixopt.errors import MixoptError, MixoptWarning, warn
from mixopt.fitters.protocol import predict_objective
from mixopt.proposers.proposal import Proposal, check_space
from mixopt.space import SearchSpace
from mixopt.stats import normal_interval
from mixopt.swarm import project, sample_candidates

log = logging.getLogger(__name__)

# The start of the proposer's warning for a flat model: fit --propose and search say it as a note
# of their own (with the runs it had), and leave this one out.
FLAT_WARNING = "the fitted model predicts the same value"


class TopKProposer:
    """Sample ``n_candidates`` mixtures from the space, predict them, average the ``k`` lowest.

    Args:
        n_candidates: candidates scored (RegMix: 1M; at least 100k is the default).
        k: how many of the best are averaged (RegMix: 128).
        random_state: seed of the candidate stream.
        temperature: prior temperature of the candidate sampler.
        chunk_size: candidates sampled and predicted at once.
        n_threads: threads for sampling and predicting (default: usable cores).
    """

    SAY_AFTER_S = 60.0  # a proposal expected to take longer is announced

    def __init__(
        self,
        n_candidates: int = 100_000,
        k: int = 128,
        random_state: int = 0,
        *,
        temperature: float = 1.0,
        chunk_size: int = 32_768,
        n_threads: int | None = None,
    ) -> None:
        if n_candidates < 1 or k < 1:
            raise MixoptError(f"need n_candidates ≥ 1 and k ≥ 1, got {n_candidates} and {k}")
        if k > n_candidates:
            raise MixoptError(f"k ({k}) cannot exceed the number of candidates ({n_candidates})")
        self.n_candidates = int(n_candidates)
        self.k = int(k)
        self.random_state = random_state
        self.temperature = temperature
        self.chunk_size = int(chunk_size)
        self.n_threads = n_threads

    def params(self) -> dict[str, Any]:
        return {"n_candidates": self.n_candidates, "k": self.k, "random_state": self.random_state,
                "temperature": self.temperature}

    def _chunk(self, space: SearchSpace, model: Any, seq: np.random.SeedSequence, size: int):  # noqa: ANN202
        cand = sample_candidates(space, size, seed=np.random.default_rng(seq), temperature=self.temperature)
        pred = predict_objective(model, cand)
        if not np.isfinite(pred).all():
            raise MixoptError("the model predicts NaN or infinite values for some candidates; check the fit")
        keep = min(self.k, len(pred))
        idx = np.argpartition(pred, keep - 1)[:keep]
        return cand[idx], pred[idx], float(pred.max())

    def _say_duration(self, first_s: float, chunks: int, threads: int) -> None:
        """Warn, from the first chunk's time, when scoring every candidate takes minutes: a large
        --candidates (1e9) had run for an hour with nothing on the screen."""
        eta = first_s * (chunks - threads) / threads  # the first `threads` chunks run together
        if eta > self.SAY_AFTER_S:
            # the hint only where more than RegMix's 1M were asked for (`fit --candidates`; a search
            # scores the default and has no such option: a QA pass saw it suggested there)
            more = (f"; RegMix scores 1M (--candidates 1M), and more rarely changes the average of the best "
                    f"{self.k}" if self.n_candidates > 1_000_000 else "")
            warn(f"scoring {self.n_candidates:,} candidates takes about {eta / 60:.0f} more minute(s) here"
                 f"{more}", MixoptWarning)

    def propose(self, model: Any, space: SearchSpace) -> Proposal:
        """Average of the ``k`` candidates with the lowest prediction, inside ``space``."""
        check_space(model, space)
        t0 = time.perf_counter()
        n_chunks = -(-self.n_candidates // self.chunk_size)
        last = self.n_candidates - (n_chunks - 1) * self.chunk_size
        # Chunk i's seed stream is the i-th child of random_state's (as SeedSequence.spawn numbers
        # them), made when the chunk is: spawning every chunk up front held 30M of them for 1e12.
        root = np.random.SeedSequence(self.random_state)

        def job(i: int) -> tuple[np.random.SeedSequence, int]:
            return (np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, i)),
                    last if i == n_chunks - 1 else self.chunk_size)

        threads = min(self.n_threads or usable_cpus(), n_chunks)
        best = _RunningBest(self.k)

        def take(part: tuple[np.ndarray, np.ndarray, float]) -> None:
            best.add(part)
            if best.chunks == 1:
                self._say_duration(time.perf_counter() - t0, n_chunks, threads)

        if threads > 1:
            from collections import deque
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:  # a few chunks in flight, merged in order
                pending: deque = deque()
                for i in range(n_chunks):
                    pending.append(pool.submit(self._chunk, space, model, *job(i)))
                    if len(pending) >= 2 * threads:
                        take(pending.popleft().result())
                while pending:
                    take(pending.popleft().result())
        else:
            for i in range(n_chunks):
                take(self._chunk(space, model, *job(i)))
        top, pred, highest = best.cand, best.pred, best.highest  # the k best, lowest first
        # A space the constraints shrink to one mixture (--fix d=1) has nothing to rank: not a flat model.
        lo, hi = space.bounds()
        one_point = bool(lo.sum() >= 1 - 1e-9 or hi.sum() <= 1 + 1e-9)
        # flat to rounding: a LightGBM with no split had given values 1 ulp apart, and passed as a model
        lowest = float(pred[0])
        constant = bool(highest - lowest <= 1e-9 * max(1.0, abs(lowest))) and not one_point
        if constant:
            # LightGBM needs 2 × min_child_samples runs for a single split: fewer give a flat model.
            warn(
                f"{FLAT_WARNING} for every candidate, so the proposal is an "
                "average of arbitrary candidates; fit on more runs, or with another method",
                MixoptWarning,
            )
        centre = avg = top.mean(axis=0)
        projected = not space.contains(avg)
        if projected:
            log.info("average of the top %d left the space (%s); projected back", self.k,
                     "; ".join(space.violations(avg)[:3]))
            avg = project(space, avg)
        avg = space.snap(avg)  # a weight a float error past its bound is set on it
        mean, std = predict_objective(model, avg[None, :], return_std=True)
        predicted, sd = float(mean[0]), None if std is None else float(std[0])
        return Proposal(
            weights=avg,
            predicted=predicted,
            std=sd,
            # as the exact proposer gives it (a GP's top-k proposal had a std and no interval)
            interval=normal_interval(predicted, sd),
            method="",
            info={
                **self.params(),
                "top_k_predicted_mean": float(pred.mean()),
                "best_candidate_predicted": lowest,
                # how far apart the averaged candidates are (L1, the farthest from their average)
                "top_k_spread": float(np.abs(top - centre).sum(axis=1).max()),
                "projected": projected,
                "constant_model": constant,
                "seconds": round(time.perf_counter() - t0, 3),
            },
        )


class _RunningBest:
    """The ``k`` lowest predictions over the chunks added so far, lowest first, and the highest
    prediction seen. Ties go to the earlier chunk, as one stable sort of every chunk's kept
    candidates (in the order a chunk's argpartition left them) would give them."""

    def __init__(self, k: int) -> None:
        self.k, self.chunks, self.highest = k, 0, -np.inf
        self.cand: np.ndarray | None = None
        self.pred = np.empty(0)

    def add(self, part: tuple[np.ndarray, np.ndarray, float]) -> None:
        cand, pred, highest = part
        self.chunks += 1
        self.highest = max(self.highest, highest)
        if self.cand is not None:
            cand, pred = np.vstack([self.cand, cand]), np.concatenate([self.pred, pred])
        order = np.argsort(pred, kind="stable")[: self.k]
        self.cand, self.pred = cand[order], pred[order]
