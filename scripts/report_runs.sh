#!/usr/bin/env bash
# The runs behind docs/report.md, on the built-in synthetic dataset: the paper's two studies, the
# budgeted search and the calibration of the short trial, then the report itself. Each step
# resumes where it stopped if the script is run again. 41 minutes on 2 idle CPU cores.
#
#   scripts/report_runs.sh            # STORAGE=sqlite:///runs/report.db by default
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
S=${STORAGE:-sqlite:///runs/report.db}
mkdir -p runs
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one thread a worker, two workers on two cores
step() {
    local t0=$SECONDS
    echo "+ $*"
    "$@"
    echo "  ($((SECONDS - t0)) s)"
}
step "$BIN/resnext-nas" study run cardinality-vs-width --workers 2 --storage "$S" --quiet
step "$BIN/resnext-nas" study run cardinality-vs-width-growth --workers 2 --storage "$S" --quiet
step "$BIN/resnext-nas" study run budgeted-search --workers 2 --storage "$S" --quiet
OMP_NUM_THREADS=2 step "$BIN/resnext-nas" calibrate --out runs/calibration.json
step "$BIN/python" scripts/make_report.py --storage "$S" --calibration runs/calibration.json
