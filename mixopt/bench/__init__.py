"""Benchmarks that print measured figures: speeds as ratios against this machine, in one run.

:mod:`mixopt.bench.proxy` measures the proxy trainer (tokens/s, peak memory, MFU per rung).
"""
