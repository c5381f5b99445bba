"""Domain groups for the fitters: which domains share a source (see :func:`mixopt.mixture.domain_groups`)."""

from __future__ import annotations

import numpy as np

from mixopt.errors import MixoptError


def group_matrix(groups: tuple[str, ...] | None, n_domains: int, *, fitter: str) -> np.ndarray:
    """(n_domains, n_groups) 0/1 membership of the groups of two or more domains (a singleton adds
    nothing); (n_domains, 0) without groups.

    Raises:
        MixoptError: ``groups`` does not name one group per domain.
    """
    if groups is None:
        return np.zeros((n_domains, 0))
    groups = tuple(groups)
    if len(groups) != n_domains:
        raise MixoptError(
            f"{fitter}: groups names {len(groups)} domains but the runs have {n_domains}; "
            "give one group per domain, in the same order"
        )
    names = [g for g in dict.fromkeys(groups) if groups.count(g) > 1]
    return np.array([[float(d == g) for g in names] for d in groups]).reshape(n_domains, len(names))
