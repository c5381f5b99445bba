"""Fast exact scoring of a LightGBM tree ensemble on many rows (QuickScorer over bitmasks).

RegMix's proposer predicts 100k–1M candidate mixtures with 1000 trees. LightGBM's own predictor
walks every tree for every row (about 50–90 µs per row for 1000 trees on this project's 2-core
machine, so over a minute for 1M rows). QuickScorer (Lucchese et al., SIGIR 2015) gets the same
numbers without walking trees: number each tree's leaves left to right and give every split node a
bitmask of the leaves that stay reachable when its test fails (it clears the leaves of its left
subtree). A row's exit leaf in a tree is the lowest bit left after AND-ing the masks of all its
failing nodes. A node ``x[f] <= t`` fails when ``x[f] > t``; with the distinct thresholds of feature
``f`` sorted, the failing nodes for a value are a prefix, so the AND over that prefix is
precomputed per (feature, threshold bin, tree that splits on the feature). Scoring a row is then one
binary search per feature, an AND per (feature, tree) pair and one leaf lookup per tree, with no
data-dependent branches: about an order of magnitude faster than LightGBM here, compiled with numba.

Only plain numerical ``<=`` splits without zero-as-missing and trees of at most 64 leaves compile;
for anything else :meth:`TreeScorer.from_booster` returns None and callers use LightGBM's predict.
Inputs must be finite (LightGBM's treatment of NaN is not reproduced).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from mixopt.cpus import usable_cpus

log = logging.getLogger(__name__)

_KERNELS: dict[str, Any] = {}
_KERNELS_LOCK = threading.Lock()
# Dense tables (feature × bin × tree) are faster while they stay small enough for the cache.
DENSE_MAX_BYTES = 64 * 2**20
# Below this many rows per thread, splitting over threads costs more than it saves.
ROWS_PER_THREAD = 32_768


def _kernels() -> dict[str, Any]:
    """Compile (once per process; numba caches to disk) and return the scoring kernels.

    Both run serially and release the GIL; :meth:`TreeScorer.predict` runs blocks of rows in
    threads, which stays safe when it is itself called from several threads.
    """
    with _KERNELS_LOCK:  # proposer threads may ask at once; compile once
        if not _KERNELS:
            _KERNELS.update(_compile())
    return _KERNELS


def _compile() -> dict[str, Any]:
    import numba
    from numba.cpython.unsafe.numbers import trailing_zeros

    @numba.njit(cache=True, nogil=True)
    def _bin(thr, lo, hi, x):  # noqa: ANN001, ANN202
        # Number of thresholds of this feature strictly below x: its nodes that fail (x > t).
        a = lo
        z = hi
        while a < z:
            mid = (a + z) >> 1
            if thr[mid] < x:
                a = mid + 1
            else:
                z = mid
        return a - lo

    @numba.njit(cache=True, nogil=True)
    def dense(X, thr, thr_ptr, tab, leafv, ones, out):  # noqa: ANN001, ANN202
        n, n_feat = X.shape
        n_trees = leafv.shape[0]
        mask = np.empty(n_trees, dtype=tab.dtype)
        for i in range(n):
            mask[:] = ones
            for f in range(n_feat):
                b = _bin(thr, thr_ptr[f], thr_ptr[f + 1], X[i, f])
                if b > 0:
                    row = tab[f, b]
                    for t in range(n_trees):
                        mask[t] &= row[t]
            s = 0.0
            for t in range(n_trees):
                s += leafv[t, trailing_zeros(mask[t])]
            out[i] = s

    @numba.njit(cache=True, nogil=True)
    def sparse(X, thr, thr_ptr, trees, tab, tab_off, tree_ptr, leafv, ones, out):  # noqa: ANN001, ANN202
        n, n_feat = X.shape
        n_trees = leafv.shape[0]
        mask = np.empty(n_trees, dtype=tab.dtype)
        for i in range(n):
            mask[:] = ones
            for f in range(n_feat):
                b = _bin(thr, thr_ptr[f], thr_ptr[f + 1], X[i, f])
                if b > 0:
                    t0 = tree_ptr[f]
                    nt = tree_ptr[f + 1] - t0
                    base = tab_off[f] + (b - 1) * nt
                    for k in range(nt):
                        mask[trees[t0 + k]] &= tab[base + k]
            s = 0.0
            for t in range(n_trees):
                s += leafv[t, trailing_zeros(mask[t])]
            out[i] = s

    return {"dense": dense, "sparse": sparse}


class TreeScorer:
    """A LightGBM ensemble compiled to QuickScorer tables; ``predict`` equals ``booster.predict``."""

    def __init__(self, **arrays: Any) -> None:
        self.__dict__.update(arrays)

    @classmethod
    def from_booster(cls, booster: Any) -> TreeScorer | None:
        """Compile ``booster`` (a ``lightgbm.Booster``); None when it uses splits this cannot score."""
        model = booster.dump_model()
        n_feat = int(model["max_feature_idx"]) + 1
        trees = model["tree_info"]
        n_trees = len(trees)
        nodes: list[list[tuple[float, int, int]]] = [[] for _ in range(n_feat)]  # (threshold, tree, mask)
        leaf_values: list[list[float]] = []
        max_leaves = 1
        if any(int(info.get("num_leaves", 1)) > 64 for info in trees):
            return None
        for t, info in enumerate(trees):
            values: list[float] = []
            stack_ok = True

            def walk(node: dict, t: int = t, values: list[float] = values) -> tuple[int, int]:
                nonlocal stack_ok
                if "split_index" not in node:
                    values.append(float(node["leaf_value"]))
                    return len(values) - 1, len(values)
                if (node.get("decision_type") != "<=" or node.get("missing_type", "None") == "Zero"
                        or isinstance(node.get("threshold"), str)):
                    stack_ok = False
                a, b = walk(node["left_child"])
                _, e = walk(node["right_child"])
                nodes[int(node["split_feature"])].append((float(node["threshold"]), t, _left_clear(a, b)))
                return a, e

            walk(info["tree_structure"])  # ≤ 64 leaves: recursion depth ≤ 64
            if not stack_ok:
                log.debug("tree %d has splits QuickScorer does not handle; using LightGBM's predict", t)
                return None
            leaf_values.append(values)
            max_leaves = max(max_leaves, len(values))
        bits = 32 if max_leaves <= 32 else 64
        dtype = np.uint32 if bits == 32 else np.uint64
        full = (1 << bits) - 1
        leafv = np.zeros((n_trees, max_leaves))
        for t, vals in enumerate(leaf_values):
            leafv[t, : len(vals)] = vals
        thr_parts, tree_parts, tab_parts = [], [], []
        thr_ptr = [0]
        tree_ptr = [0]
        tab_off = []
        offset = 0
        for f in range(n_feat):
            entries = nodes[f]
            u = np.unique([e[0] for e in entries]) if entries else np.zeros(0)
            tree_ids = sorted({e[1] for e in entries})
            col = {t: k for k, t in enumerate(tree_ids)}
            # table[b-1, k] = AND of masks of tree k's nodes on f with threshold index < b.
            table = np.full((len(u), len(tree_ids)), full, dtype=object)
            for thr_v, t, m in entries:
                j = int(np.searchsorted(u, thr_v))
                table[j, col[t]] &= m
            if len(u):
                table = np.bitwise_and.accumulate(table, axis=0)
            thr_parts.append(u)
            tree_parts.append(np.array(tree_ids, dtype=np.int64))
            tab_parts.append(table.astype(np.uint64).astype(dtype).ravel())
            thr_ptr.append(thr_ptr[-1] + len(u))
            tree_ptr.append(tree_ptr[-1] + len(tree_ids))
            tab_off.append(offset)
            offset += table.size
        thr = np.concatenate(thr_parts) if thr_parts else np.zeros(0)
        thr_ptr_a = np.array(thr_ptr, dtype=np.int64)
        trees_a = np.concatenate(tree_parts) if tree_parts else np.zeros(0, dtype=np.int64)
        tab = np.concatenate(tab_parts).astype(dtype) if tab_parts else np.zeros(0, dtype=dtype)
        tab_off_a = np.array(tab_off + [offset], dtype=np.int64)
        tree_ptr_a = np.array(tree_ptr, dtype=np.int64)
        n_bins = int(np.diff(thr_ptr_a).max()) if n_feat else 0
        dense = None
        if n_feat * (n_bins + 1) * n_trees * np.dtype(dtype).itemsize <= DENSE_MAX_BYTES:
            dense = np.full((n_feat, n_bins + 1, n_trees), full, dtype=dtype)
            for f in range(n_feat):
                nb, nt = thr_ptr_a[f + 1] - thr_ptr_a[f], tree_ptr_a[f + 1] - tree_ptr_a[f]
                if nb and nt:
                    block = tab[tab_off_a[f]: tab_off_a[f] + nb * nt].reshape(nb, nt)
                    dense[f, 1: nb + 1][:, trees_a[tree_ptr_a[f]: tree_ptr_a[f + 1]]] = block
        return cls(
            n_features=n_feat, thr=thr, thr_ptr=thr_ptr_a, trees=trees_a, tab=tab, tab_off=tab_off_a,
            tree_ptr=tree_ptr_a, dense=dense, leafv=leafv, ones=dtype(full),
        )

    def predict(self, X: np.ndarray, n_threads: int | None = None) -> np.ndarray:
        """Sum of leaf values over the trees for each row of finite X (n_rows, n_features).

        Rows are split over ``n_threads`` threads (default: the usable cores, at most one per
        ``ROWS_PER_THREAD`` rows).
        """
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected X of shape (n, {self.n_features}), got {X.shape}")
        out = np.empty(len(X))
        if not len(X):
            return out
        k = _kernels()
        if self.dense is not None:
            def run(a: int, b: int) -> None:
                k["dense"](X[a:b], self.thr, self.thr_ptr, self.dense, self.leafv, self.ones, out[a:b])
        else:
            def run(a: int, b: int) -> None:
                k["sparse"](X[a:b], self.thr, self.thr_ptr, self.trees, self.tab, self.tab_off, self.tree_ptr,
                            self.leafv, self.ones, out[a:b])
        if n_threads is None:
            n_threads = min(usable_cpus(), max(1, len(X) // ROWS_PER_THREAD))
        if n_threads <= 1:
            run(0, len(X))
            return out
        from concurrent.futures import ThreadPoolExecutor

        edges = np.linspace(0, len(X), n_threads + 1).astype(int)
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(run, edges[:-1], edges[1:]))
        return out


def _left_clear(a: int, b: int) -> int:
    """Mask with every bit set except leaves a..b-1 (the left subtree, unreachable if the test fails)."""
    return ((1 << 64) - 1) ^ (((1 << (b - a)) - 1) << a)
