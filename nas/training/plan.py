"""How a trial runs fastest on its device (memory format, torch.compile), and how far from peak.

The choices are rules in code, each citing the ``benchmarks/bench_mfu.py`` run behind it; the
benchmark prints the trainer's pick beside the best option it measured, so a rule that stops
holding shows up there. MFU (model FLOPs utilisation) counts a training image as 6 multiply-adds
per multiply-add of the forward pass (forward 2 FLOPs per multiply-add, backward twice that)
over a matrix-product peak measured on the same device.

torch is imported inside the functions that need it, so that :mod:`nas.training.config` checks a
compile mode without it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import resnext
from resnext.spec import Spec

if TYPE_CHECKING:
    import torch

# FLOPs of one training image per forward multiply-add: 2 forward, 4 backward (input and weight
# gradients), as in PaLM's MFU (Chowdhery et al. 2022, App. B) and nanoGPT's estimate_mfu.
TRAIN_FLOPS_PER_MAC = 6
# "auto": the per-device rule of :func:`plan`; "off": eager; else a torch.compile mode
# ("reduce-overhead" replays CUDA graphs, which pays most for small networks' many launches).
COMPILE = (
    "auto",
    "off",
    "default",
    "reduce-overhead",
    "max-autotune",
    "max-autotune-no-cudagraphs",
)
# "auto": bf16 autocast on CUDA, fp32 elsewhere; "bf16" autocasts on any device (on a CPU, the
# measured machine plan picks it only where the CPU computes bf16 natively and it is faster).
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Plan:
    """How a trial runs on its device: memory format, compile mode (None: eager), bf16."""

    channels_last: bool
    compile_mode: str | None  # a torch.compile mode, e.g. "default" or "reduce-overhead"
    bf16: bool  # autocast to bfloat16: convolutions and matmuls; batch norm and loss stay fp32

    def describe(self) -> str:
        """E.g. ``NHWC, eager, fp32``."""
        fmt = "NHWC" if self.channels_last else "NCHW"
        mode = "eager" if self.compile_mode is None else f"compile {self.compile_mode}"
        return f"{fmt}, {mode}, {'bf16' if self.bf16 else 'fp32'}"


def plan(
    device_type: str,
    channels_last: bool | None = None,
    compile: str = "auto",
    precision: str = "auto",
) -> Plan:
    """The trainer's plan on ``device_type``: ``channels_last`` None, ``compile`` "auto" and
    ``precision`` "auto" follow the rules below; ``compile`` "off" is eager, another of
    :data:`COMPILE` compiles; ``precision`` "fp32" or "bf16" forces one.
    """
    check_compile(compile)
    check_precision(precision)
    mode = None if compile in ("auto", "off") else compile
    if precision != "auto":
        auto = plan(device_type, channels_last, compile)
        return Plan(auto.channels_last, auto.compile_mode, bf16=precision == "bf16")
    if device_type == "cuda":
        # Tensor cores want NHWC; cuDNN's NHWC kernels are its fast path for bf16 convolutions.
        # Compile stays off until bench_mfu's CUDA run (scripts/gpu_check.sh) shows where it pays
        # for its compile time within a trial.
        fmt = True if channels_last is None else channels_last
        return Plan(fmt, mode, bf16=True)
    # CPU rule, from `OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_mfu.py --quick` on 2
    # shared cores (load 14-17, torch 2.13): the search's trial model (8x1d, width
    # 32, depths 1-1-1) at batch 32 trained at 82.7 images/s in channels_last against 53.5 in
    # NCHW (1.55x, medians of 5 interleaved turns; a separate A/B of the bare step, 20 turns:
    # 161 against 102, 1.58x); the pick was 0.99x the best option measured (its compiled twin).
    # ResNeXt-29 4x16d and 8x64d run about alike in both formats (2.98 vs 2.79, 0.31 vs 0.34).
    # torch.compile stays off: 27-156 s to compile (warm and cold inductor cache) for 1.01x, which
    # pays after about 440,000 images, against 5,880 in a search trial (40-67 s).
    # Other devices (mps) keep NCHW: nothing here has measured them.
    fmt = (device_type == "cpu") if channels_last is None else channels_last
    return Plan(fmt, mode, bf16=False)


def torch_device(name: str) -> Any:
    """The torch device a checked device name stands for; "auto" is cuda when there is one,
    else cpu. Refuses a device this machine lacks."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for, but CUDA is not available here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise ValueError(
            f"--device {name} asked for, but this machine has {n} GPUs (cuda:0 to cuda:{n - 1})"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device mps asked for, but MPS is not available here")
    return dev


def check_precision(precision: Any) -> None:
    """Refuse a precision that is not one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def check_compile(compile: Any) -> None:
    """Refuse a compile setting that is not one of :data:`COMPILE`."""
    if compile not in COMPILE:
        raise ValueError(f"compile must be one of {', '.join(COMPILE)}, got {compile!r}")


def train_flops(spec: Spec) -> float:
    """FLOPs of training on one image: 6 per forward multiply-add (:data:`TRAIN_FLOPS_PER_MAC`)."""
    return TRAIN_FLOPS_PER_MAC * resnext.complexity(spec).flops


def _sync(dev: torch.device) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def matmul_peak(
    dev: torch.device, *, n: int | None = None, repeats: int = 5, seconds: float = 0.2
) -> list[float]:
    """FLOP/s of ``repeats`` timed ``n``x``n`` matrix products: fp32 on the CPU, bf16 on CUDA.

    Random operands (zeros run faster on some GPUs); each figure times as many products as fill
    about ``seconds``, after a warm-up.
    """
    import torch

    gpu = dev.type == "cuda"
    n = n or (8192 if gpu else 1024)
    dtype = torch.bfloat16 if gpu else torch.float32
    gen = torch.Generator(dev).manual_seed(0)
    a = torch.randn(n, n, device=dev, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=dev, dtype=dtype, generator=gen)
    out = torch.empty(n, n, device=dev, dtype=dtype)
    torch.matmul(a, b, out=out)  # warm-up: library load, handles, caches
    _sync(dev)
    t0 = time.perf_counter()
    torch.matmul(a, b, out=out)
    _sync(dev)
    once = max(time.perf_counter() - t0, 1e-6)
    k = max(1, round(seconds / once))
    rates = []
    for _ in range(repeats):
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(k):
            torch.matmul(a, b, out=out)
        _sync(dev)
        rates.append(2 * n**3 * k / (time.perf_counter() - t0))
    return rates


def spread(values: list[float]) -> tuple[float, float, float]:
    """Median, smallest and largest of ``values``."""
    return statistics.median(values), min(values), max(values)


def compiled(model: Any, mode: str) -> Any:
    """``torch.compile(model, mode=mode)``; the module's own parameters are shared."""
    import torch

    return torch.compile(model, mode=mode)
