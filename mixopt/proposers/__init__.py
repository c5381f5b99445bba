"""Proposers: turn a fitted model (or the runs themselves) and a search space into a mixture.

:class:`TopKProposer` is RegMix's: sample many candidates from the space, predict them, average the
k best. :class:`BestRunProposer` returns the best run measured (the ``random`` method). Options live
on the proposer object; caps, floors and sum-to-one come with the space.
"""

from mixopt.proposers.best_run import BestRunProposer
from mixopt.proposers.proposal import Proposal
from mixopt.proposers.topk import TopKProposer

__all__ = ["BestRunProposer", "Proposal", "TopKProposer"]
