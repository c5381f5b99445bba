"""Worker processes for fits that take seconds each: the folds of a cross-validation.

Every fitter fits on one thread with its own seed (the laws and the GP limit their threads, LightGBM
is given one), so a fold fitted in a worker gives the same numbers as in the driver; spreading the
folds over the cores changes only the time. The pool is made on first use and kept (its workers
start in seconds: importing numpy, scipy and the fitter).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loky's: its shutdown(kill_workers=True) is what cv relies on
    from joblib.externals.loky.process_executor import ProcessPoolExecutor

IN_WORKER = "MIXOPT_FIT_WORKER"  # set in a worker: its own cross-validations run in it, not in more workers


def one_thread(driver_stops: bool = False) -> None:
    """Initialise a worker: one BLAS/OpenMP/torch thread (the pool's processes share the cores).

    torch is not imported for it (220 MB a worker): one imported later reads OMP_NUM_THREADS.
    ``driver_stops``: a Ctrl-C is the driver's to handle, which stops the workers (a traceback
    from each had followed it)."""
    import signal
    import sys

    from threadpoolctl import threadpool_limits

    if driver_stops:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ[IN_WORKER] = "1"
    threadpool_limits(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def in_worker() -> bool:
    return os.environ.get(IN_WORKER) == "1"


def pool(size: int) -> ProcessPoolExecutor:
    """A pool of ``size`` worker processes, kept between calls (and for a while after).

    loky's (joblib's) reusable executor: its workers are started without importing the caller's
    main module again, so a user's script without an ``if __name__ == "__main__"`` guard works
    (multiprocessing's spawn had run such a script again in every worker); a pool a Ctrl-C broke
    is made anew; idle workers exit after five minutes.
    """
    from joblib.externals.loky import get_reusable_executor

    return get_reusable_executor(max_workers=size, initializer=one_thread, initargs=(True,),
                                 env={"OMP_NUM_THREADS": "1", IN_WORKER: "1"})
