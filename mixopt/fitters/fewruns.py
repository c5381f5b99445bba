"""The warning for a model fitted on few runs per parameter (the laws, the linear baseline)."""

from __future__ import annotations

import math

from mixopt.errors import FewRunsWarning, warn

# Measured: bimix with 10 parameters on 12 runs fit them all and missed the uniform mixture by
# ~1 nat. Few runs per parameter is said, not refused: the model may still rank.
RUNS_PER_PARAMETER = 1.5
# What to do about it; ``auto`` says otherwise, having chosen the model by cross-validation.
FEWER = "use a method with fewer parameters (log-ridge, gp or auto)"
ADVICE = f"; check it with --cv, add runs, or {FEWER}"


def warn_few_runs(model: str, params: int, varying: int, n: int) -> None:
    """Warn when ``n`` runs are fewer than 1.5 per parameter of ``model`` (``params`` per target,
    over ``varying`` domains whose weights the runs varied)."""
    if n >= RUNS_PER_PARAMETER * params:
        return
    warn(
        f"{model} has {params} parameters per target ({varying} varying domains) and {n} runs to fit them: "
        f"with fewer than {math.ceil(RUNS_PER_PARAMETER * params)} runs the {model} fit can pass through "
        f"every run and be far off between them{ADVICE}",
        FewRunsWarning,
    )
