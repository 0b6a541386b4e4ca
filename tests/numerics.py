"""Comparing two numerical paths (kernels, memory formats, precisions) on the same weights.

Training runs amplify rounding: two epochs on different kernels diverge by amounts that depend on
the processor (AVX2 and AVX-512 machines order their reductions differently), so a comparison of
training curves passes on one CPU and fails on another. What is deterministic is one forward and
backward pass on the same weights and inputs: both paths compute the same sums, differing only in
the order of their additions. Their difference is bounded by the standard rounding-error bound of
a dot product of length k, |fl(s) - s| <= k * u * sum|terms| (Higham, *Accuracy and Stability of
Numerical Algorithms*, eq. 3.4, u = eps / 2), applied once per layer on the path.
"""

from __future__ import annotations

import platform
from functools import cache

import torch


@cache
def cpu_name() -> str:
    """The processor, with the vector extensions that change kernels, for failure messages."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    have = [f for f in wanted if f in flags]
    capability = torch.backends.cpu.get_cpu_capability()
    where = f"{name} ({', '.join(have) or 'no AVX flags read'}; torch kernels {capability})"
    if torch.cuda.is_available():
        where += f"; {torch.cuda.get_device_name()}"
    return where


def reductions(model: torch.nn.Module, batch: int, side: int) -> tuple[int, int, int]:
    """The longest reduction of the forward pass (a convolution's or the classifier's fan-in),
    of the backward pass (a fan-out, or a weight gradient's sum over batch x pixels), and the
    number of layers chained."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    fc = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    area = [m.kernel_size[0] * m.kernel_size[1] for m in convs]
    fan_in = [m.in_channels // m.groups * a for m, a in zip(convs, area, strict=True)]
    fan_out = [m.out_channels // m.groups * a for m, a in zip(convs, area, strict=True)]
    forward = max(fan_in + [m.in_features for m in fc])
    backward = max(fan_out + [m.out_features for m in fc] + [batch * side * side])
    return forward, backward, len(convs) + len(fc)


def rounding_bound(
    dtype: torch.dtype, k: int, layers: int, *, inputs: torch.dtype | None = None
) -> float:
    """Relative bound on the difference of two summation orders of the same network.

    ``k`` is the longest reduction on the path (a convolution's Cin/groups * kh * kw, or a
    weight gradient's batch * H * W), ``layers`` the number of reductions in a chain. Each path is
    within ``k * u`` of the exact sum per layer, so the two differ by at most twice that. With
    ``inputs`` (autocast: operands rounded to bf16 or fp16, products accumulated in ``dtype``),
    each layer adds the operands' rounding, 2 * u(inputs), for either path.
    """
    u = torch.finfo(dtype).eps / 2
    per_layer = k * u + (2 * torch.finfo(inputs).eps / 2 if inputs is not None else 0.0)
    return 2 * layers * per_layer


def assert_close(name: str, got: torch.Tensor, want: torch.Tensor, bound: float) -> None:
    """``got`` within ``bound`` x the largest magnitude of ``want``, naming the CPU if not."""
    got, want = got.detach().float().cpu(), want.detach().float().cpu()
    scale = want.abs().max().item()
    diff = (got - want).abs().max().item()
    assert diff <= bound * max(scale, torch.finfo(torch.float32).tiny), (
        f"{name}: max abs difference {diff:.3g} exceeds {bound:.3g} x max |value| {scale:.3g} "
        f"on {cpu_name()}"
    )
