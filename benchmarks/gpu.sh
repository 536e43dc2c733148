#!/usr/bin/env bash
# Every GPU figure docs/scaling.md wants, in one run of under 8 minutes, each as JSON in OUT
# (default runs/gpu-bench):
#   pretrain_step_small          `small`, batch 32: ours (bf16 autocast, and under torch.compile) against
#                                the naive fp32 reference of the same objective (--reference same-objective)
#   pretrain_step_small_release  the same against the release's objective (DINO, 2 global + 8 local
#                                crops, decoder fed by the DMA output), ours as the dino variant set up alike
#   dma_784_3136                 DMA at N = 784 and 3136
#   inference_cuda, inference_cpu  per-clip and per-pair latency with the model on the GPU, and on the CPU
# Each command has its own time limit, cut to what is left of the 470 s budget, so that one slow figure
# cannot take the others (or the 8 minutes) with it; the most wanted figures run first.
# Usage: bash benchmarks/gpu.sh [OUT]     (from the repository root, with the venv's python)
set -u
OUT=${1:-runs/gpu-bench}
PY=${PYTHON:-.venv/bin/python}
BUDGET_S=470
mkdir -p "$OUT"
start=$(date +%s)
run() {  # name, seconds, command...
  local name=$1 limit=$2; shift 2
  local left=$(( start + BUDGET_S - $(date +%s) ))
  if (( left < 15 )); then echo "== $name: skipped, ${left}s of the budget left"; return; fi
  (( limit > left )) && limit=$left
  echo "== $name (limit ${limit}s)"
  if timeout "$limit" "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"; then
    echo "   ok: $OUT/$name.json"
  else
    echo "   FAILED or timed out (rc $?): see $OUT/$name.err"
  fi
}
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
  || exit 1
run pretrain_step_small 170 "$PY" benchmarks/pretrain_step.py --device cuda --preset small --batch 32 --repeats 5 --compile
run pretrain_step_small_release 110 "$PY" benchmarks/pretrain_step.py --device cuda --preset small --batch 32 \
  --repeats 5 --reference release
run dma_784_3136 60 "$PY" benchmarks/dma.py --device cuda --ns 784 3136 --batch 8 --repeats 5
run inference_cuda 60 "$PY" benchmarks/inference.py --device cuda --presets tiny,small --threads 4
run inference_cpu 60 "$PY" benchmarks/inference.py --presets tiny,small --threads 4
echo "total $(( $(date +%s) - start )) s; JSON in $OUT"
