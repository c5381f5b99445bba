"""The final trainer: a mixture-of-experts language model trained on an exported mixture.

``moe`` (the layer: router, balancing, experts), ``kernels`` (fused grouped-GEMM path and the
naive reference), ``triton_gather`` (optional gathering Triton kernels), ``config`` (model
configs), ``model`` (the MoE language model), ``trainer``, ``updater`` (online weight updaters)
and ``compare`` (mixtures against each other at equal budget).
"""
