#!/usr/bin/env bash
# Every GPU figure docs/scaling.md wants, in one run of under 8 minutes, each as JSON in OUT
# (default runs/gpu-bench): pretraining step of `small` (ours under bf16 autocast, the naive fp32
# reference of the same objective, and torch.compile), DMA at N = 784 and 3136, and the CPU
# inference latency for comparison (benchmarks/inference.py has no --device yet).
# Each command has its own time limit so that one slow figure cannot take the others with it.
# Usage: bash benchmarks/gpu.sh [OUT]     (from the repository root, with the venv's python)
set -u
OUT=${1:-runs/gpu-bench}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
run() {  # name, seconds, command...
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  if timeout "$limit" "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"; then
    echo "   ok: $OUT/$name.json"
  else
    echo "   FAILED or timed out (rc $?): see $OUT/$name.err"
  fi
}
start=$(date +%s)
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
  || exit 1
run pretrain_step_small 200 "$PY" benchmarks/pretrain_step.py --device cuda --preset small --batch 32 --repeats 5 --compile
run dma_784_3136 90 "$PY" benchmarks/dma.py --device cuda --ns 784 3136 --batch 8 --repeats 5
run inference_cpu 90 "$PY" benchmarks/inference.py --presets small
echo "total $(( $(date +%s) - start )) s; JSON in $OUT"
