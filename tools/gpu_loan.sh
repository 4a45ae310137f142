#!/usr/bin/env bash
# On a lent GPU machine (torch with CUDA, no network), from the repository root:
#   tools/gpu_loan.sh MINUTES [CARRIED_RUN_DIR]
# joins the wheels carried in kit/parts (docs/gpu.md), installs striata with them, trains
# g1_tracking_warp for MINUTES (continuing CARRIED_RUN_DIR if given) and writes the run (newest
# checkpoint only) and figures.json to $OUT (default gpu-out).
set -euo pipefail
minutes=${1:?usage: tools/gpu_loan.sh MINUTES [CARRIED_RUN_DIR]}
resume=${2:-}
cd "$(dirname "$0")/.."
if [ -f kit/parts/SHA256SUMS ]; then
  mkdir -p kit/wheels
  while read -r _ name; do
    cat kit/parts/"$name".part* > kit/wheels/"$name"
  done < kit/parts/SHA256SUMS
  (cd kit/wheels && sha256sum -c ../parts/SHA256SUMS)
fi
if ! command -v striata >/dev/null; then
  python -m pip install -q --no-index --find-links kit/wheels --no-build-isolation -e '.[warp]'
fi
out=${OUT:-gpu-out}
striata gpu-kit run --minutes "$minutes" --out "$out" ${resume:+--resume "$resume"}
