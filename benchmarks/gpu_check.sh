#!/bin/bash
# The GPU path in one go (docs/benchmarks.md, "GPU"): the field benchmark on CUDA, then trials with
# device=cuda through the CLI.  --serial runs them without Ray, so a bare GPU box with torch,
# pandas, pyarrow, scipy and matplotlib suffices.  Every step has its own time limit; what finished
# lands in $OUT (default gpu_out/): gpu.txt, bench_cuda.json, results.tgz (the sweep folders).
#   bash benchmarks/gpu_check.sh [device]     # device defaults to cuda (cpu: try the script here)
set -u
DEV=${1:-cuda}
OUT=${OUT:-gpu_out}
RES=$(mktemp -d)
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
pack() { tar czf "$OUT/results.tgz" -C "$RES" . 2>/dev/null; }
step() {  # step SECONDS LABEL COMMAND...: run with a limit, report its time and exit code
  local limit=$1 label=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@"
  echo "== $label: rc=$? wall_s=$(( $(date +%s) - t0 ))" | tee -a "$OUT/gpu.txt"
  pack
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name())"
  nproc; } | tee "$OUT/gpu.txt"
step 150 bench $PY -m benchmarks.field --device "$DEV" --in-process --backends stream,dense --repeats 3 \
  --operators meanshift,deng --kernels gaussian,laplacian --case-budget-s 3 --max-case-s 5 \
  --sizes 16384x16384x2,65536x65536x2,4096x4096x64,65536x65536x2t --bandwidths 1 --json "$OUT/bench_cuda.json"
step 90 quickstart $PY -m drift_sweeps.run quickstart --serial --set device="$DEV" --results "$RES"
step 120 generator_kmax $PY -m drift_sweeps.run generator_kmax --serial --set device="$DEV" --results "$RES"
step 180 repro_annealed_2d $PY -m drift_sweeps.run repro_annealed_2d --serial --set device="$DEV" --results "$RES"
pack
rm -rf "$RES"
