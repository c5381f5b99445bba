#!/usr/bin/env bash
# `mixopt compare` on a lent GPU within a time limit, seed-major: compare runs with --seeds 1, then
# 2, ... into one folder (each call reuses the runs already finished), so when time runs out every
# mixture has the same seeds. The corpus comes as an xz tarball of its folder, since the GPU
# machine cannot build it (no registry to fetch the packages from). Needs python3 with torch (CUDA)
# and mixopt's dependencies (typer, rich, pydantic, jsonschema, matplotlib): on a lent machine,
# carry the missing ones as wheels (jsonschema needs attrs too) and install them with `python3 -m pip`:
# a lent machine's `pip` may belong to another Python than the `python3` that runs mixopt.
# Usage: scripts/gpu_compare.sh CORPUS.tar.xz OUTDIR SECONDS SEEDS -- compare arguments...
# (DEVICE=cpu runs the same on the CPU, for trying the script.)
set -u
tarball=$1 out=$2 limit=$3 seeds=$4
shift 4
[ "${1:-}" = -- ] && shift
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MIXOPT_HOME=${MIXOPT_HOME:-/tmp/mixopt-home}
mkdir -p "$MIXOPT_HOME/corpora" "$out"
tar -xJf "$tarball" -C "$MIXOPT_HOME/corpora" || exit 2
mixopt=(python3 -c 'from mixopt.cli import main; main()')
folder=$MIXOPT_HOME/compare
start=$SECONDS
per_seed=0
for s in $(seq 1 "$seeds"); do
  left=$((limit - (SECONDS - start)))
  if [ "$s" -gt 1 ] && [ "$left" -lt $((per_seed * 11 / 10)) ]; then
    echo "stopping before seed $s: ${left} s left, the last seed took ${per_seed} s"
    break
  fi
  t0=$SECONDS
  timeout "$left" "${mixopt[@]}" compare "$@" --seeds "$s" --out "$folder" --device "${DEVICE:-cuda}" \
    > "$out/compare-seeds$s.txt" 2>&1
  echo "compare --seeds $s: exit $? after $((SECONDS - t0)) s"
  tail -25 "$out/compare-seeds$s.txt"
  per_seed=$((SECONDS - t0))
done
cp "$folder/compare.json" "$folder/compare.png" "$out/" 2>/dev/null
# every run's result and log, not its checkpoint
tar -czf "$out/runs.tgz" -C "$folder" --exclude='checkpoint*' .
