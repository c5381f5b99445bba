#!/usr/bin/env bash
# The checks and benchmarks that need a CUDA GPU, in one call (a lent GPU machine's time is short):
# the MoE kernels' GPU tests, `mixopt bench moe` in bf16 at the Qwen3-30B-A3B-like shape (fused,
# Triton and naive kernels, and moe-s vs its dense twin end to end), a wider grid of expert
# counts, a kernel-by-kernel profile and a sweep of the Triton tiles (TILES=0 skips it). Needs
# python3 with torch (CUDA), triton, pytest and mixopt's own dependencies for the CLI (typer, rich,
# pydantic). Usage: scripts/gpu_check.sh OUTDIR
set -u
out=${1:-gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mixopt=(python3 -c 'from mixopt.cli import main; main()')  # the CLI without installing the package
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,utilization.gpu \
  --format=csv 2>&1 | tee "$out/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
  2>&1 | tee -a "$out/gpu.txt"
echo "== tests"; timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_moe_gpu.py \
  > "$out/tests.txt" 2>&1; echo "pytest exit $?"; tail -15 "$out/tests.txt"
echo "== bench moe (GPU shape)"; timeout 120 "${mixopt[@]}" bench moe --device cuda --dtype bf16 --rounds 10 \
  --out "$out/moe_bf16.json" 2>&1 | tee "$out/bench.txt"
echo "== bench moe (grid)"; timeout 90 "${mixopt[@]}" bench moe --device cuda --dtype bf16 --rounds 5 \
  --experts 8,32,64 --top-k 1,2,8 --tokens 16384 --no-train --out "$out/moe_grid.json" 2>&1 \
  | tee "$out/grid.txt"
echo "== profile"; timeout 90 python3 scripts/moe_profile.py > "$out/profile.txt" 2>&1; echo "exit $?"
[ "${TILES:-1}" = 0 ] && exit 0  # TILES=0: skip the sweep
echo "== triton tiles"; timeout 120 python3 scripts/triton_tiles.py 2>&1 | tee "$out/tiles.txt"
