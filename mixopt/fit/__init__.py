"""The ``mixopt fit`` pipeline: run tables (:mod:`.on_tables`) or the run store's checkpoints across
rungs (:mod:`.across_scale`) → a fitter → a proposal → the mixture JSON and its report.

It comes after :mod:`mixopt.fitters` and :mod:`mixopt.proposers` in the flow and uses both; the
fitters themselves use neither it nor anything after them."""
