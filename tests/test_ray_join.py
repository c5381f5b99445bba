"""Joining an existing Ray cluster by address, from a shell that has not set RAY_AUTH_MODE.

A Ray 2.60 cluster has token auth on by default, and a client given ``address=host:port`` sends no
token unless it is in token mode, so the join is refused after 20 s of retries. ``ensure_ray``
switches the client to token mode when a token is at hand; a client in token mode also joins a
cluster whose auth is off. The other tests cannot see this: Ray sets ``RAY_AUTH_MODE=token`` in the
environment of a process that started a local Ray, so every subprocess of the test session inherits
it. Here the cluster runs in a process of its own and the joining driver's environment lacks it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CLUSTER = """
import sys, ray
ctx = ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
print(ctx.address_info["gcs_address"], flush=True)
sys.stdin.read()  # until the test closes stdin
ray.shutdown()
"""

JOIN = """
import sys
from mixopt.search.ray_env import ensure_ray
info = ensure_ray(sys.argv[1])
print("joined", info.auth, info.num_cpus, info.started_here)
"""


def _env(home: Path, **extra: str) -> dict[str, str]:
    # a HOME of the test's own: the token the cluster writes (~/.ray/auth_token) is not the user's
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", **extra}


@contextlib.contextmanager
def _running(script: str, env: dict[str, str]) -> Iterator[str]:
    """The GCS address of the Ray cluster ``script`` starts in a process of its own, until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        address = proc.stdout.readline().strip() if ready else ""
        assert address, f"the cluster did not start within 120 s (exit {proc.poll()})"
        yield address
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=["token", "disabled"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """(auth mode, GCS address, HOME) of a one-CPU Ray cluster running in a process of its own."""
    with _running(CLUSTER, _env(tmp_path, RAY_AUTH_MODE=request.param)) as address:
        yield request.param, address, tmp_path


def test_a_driver_without_ray_auth_mode_joins_a_cluster_by_address(cluster):
    mode, address, home = cluster
    # A token cluster: the driver finds the token where the cluster wrote it (HOME/.ray/auth_token).
    # Auth off: the driver holds a token anyway (a user's shell may), and still joins.
    extra = {"RAY_AUTH_TOKEN": "0" * 32} if mode == "disabled" else {}
    res = subprocess.run([sys.executable, "-c", JOIN, address], capture_output=True, text=True,
                         env=_env(home, **extra), timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    # the client's mode is token in both cases: the switch was taken
    assert res.stdout.split() == ["joined", "token", "1", "False"], res.stdout + res.stderr[-2000:]


GPU_CLUSTER = CLUSTER.replace("num_cpus=1,", "num_cpus=2, num_gpus=1,")


@pytest.mark.slow  # a cluster of its own and a search on it (~30 s): in CI with the other slow tests
def test_a_search_reserves_gpus_per_trial_on_a_cluster_that_has_them(tmp_path):
    """--gpus-per-trial 0.5 on a cluster with one GPU (declared: Ray hands out the resource whether
    or not the hardware is there): each trial gets the GPU's id in ray.get_gpu_ids() and in its
    CUDA_VISIBLE_DEVICES, and the search says the cluster's GPUs."""
    env = _env(tmp_path, RAY_AUTH_MODE="token")
    with _running(GPU_CLUSTER, env) as address:
        home = tmp_path / "mixopt"
        cli = [sys.executable, "-c", "import sys; from mixopt.cli import main; main(sys.argv[1:])"]
        res = subprocess.run([*cli, "search", "--evaluator", "mixopt.testing:gpus_seen", "--domains", "a,b,c",
                              "--budget", "4", "--validate", "0", "--name", "ongpu", "--address", address,
                              "--gpus-per-trial", "0.5", "--json"],
                             capture_output=True, text=True, env={**env, "MIXOPT_HOME": str(home)},
                             timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert any("1 GPU)" in line for line in json.loads(res.stdout)["ray"]), res.stdout[-2000:]
    from mixopt.store import RunStore

    runs = RunStore(home / "runs.sqlite").runs(search_id="ongpu")
    assert len(runs) == 4 and all(r.metrics["gpus"] == r.metrics["visible_devices"] == 1 for r in runs)
