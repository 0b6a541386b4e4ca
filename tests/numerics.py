"""Comparing two numerical paths (kernels, memory formats, precisions) on the same weights.

Training runs amplify rounding: two epochs on different kernels diverge by amounts that depend on
the processor (AVX2 and AVX-512 machines order their reductions differently), so a comparison of
training curves passes on one CPU and fails on another. What is deterministic is one forward and
backward pass on the same weights and inputs: both paths compute the same sums, differing only in
the order of their additions and the precision of their operands. Their difference is bounded by
the standard rounding-error bound of a dot product of length k, |fl(s) - s| <= k * u * sum|terms|
(Higham, *Accuracy and Stability of Numerical Algorithms*, eq. 3.4, u = eps / 2), applied once per
layer on the path (:func:`layer_error`, :func:`rounding_bound`, :func:`precision_bound`).
Gradients are compared on the same side of every ReLU's kink (:class:`SameKinks`).
"""

from __future__ import annotations

import copy
import platform
from functools import cache
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

import resnext
from resnext.spec import Spec

# The vector extensions that decide which CPU kernels torch runs (and how they round).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


@cache
def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The processor, with the vector extensions that change kernels, for failure messages.

    Read from ``cpuinfo`` where there is one (Linux), else from :func:`platform.processor`.
    """
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    have = [f for f in CPU_FLAGS if f in flags]
    capability = torch.backends.cpu.get_cpu_capability()
    where = f"{name} ({', '.join(have) or 'no AVX flags read'}; torch kernels {capability})"
    if torch.cuda.is_available():
        where += f"; {torch.cuda.get_device_name()}"
    return where


def machine() -> str:
    """:func:`cpu_name`, torch's version and its thread count now: the line a failure names."""
    return f"{cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def calibrated(spec: Spec, batch: int, seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor]:
    """``spec``'s network (He initialisation, fp32, NCHW) whose batch-norm running statistics are
    those of a random batch, and the batch: evaluation mode then normalises for real, instead of
    the identity of freshly initialised statistics. Momentum stays 1, so that a train-mode
    forward leaves the running statistics of its own batch."""
    torch.manual_seed(seed)
    model = resnext.build(spec)
    x = torch.randn(batch, 3, spec.resolution, spec.resolution)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
    with torch.no_grad():
        model.train()(x)
    return model, x


def twin(model: torch.nn.Module, memory_format: torch.memory_format) -> torch.nn.Module:
    """A copy of ``model`` with the same weights and buffers, stored in ``memory_format``."""
    return copy.deepcopy(model).to(memory_format=memory_format)


def recording(
    model: torch.nn.Module, x: torch.Tensor, kind: type[torch.nn.Module] = torch.nn.BatchNorm2d
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``model(x)`` and a copy of the output of each module of ``kind`` on the way (copied before
    an in-place ReLU overwrites it), by module name."""
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str, out: torch.Tensor) -> None:
        seen[name] = out.detach().clone()

    hooks = [
        m.register_forward_hook(lambda _m, _i, out, name=name: keep(name, out))
        for name, m in model.named_modules()
        if isinstance(m, kind)
    ]
    try:
        return model(x), seen
    finally:
        for h in hooks:
            h.remove()


class SameKinks(TorchFunctionMode):
    """Within it, every ReLU is ``x * mask``: the first pass records each mask (``x > 0``), the
    passes after it replay those masks in call order.

    A gradient jumps at ReLU's kink: where rounding leaves a pre-activation on the other side of
    0 in one path (now and then one of the million in the 4x2d test network's batch), that
    term's gradient is 0 in one path and whole in the other, up to a few percent of a weight's
    gradient, and which ones flip depends on the processor. On the same linear piece both paths
    differentiate the same function, so a second path replays the first one's masks; its values
    move by no more than the rounding of the pre-activations it zeroes.
    """

    RELUS = (torch.relu, torch.relu_, torch.nn.functional.relu, torch.Tensor.relu)

    def __init__(self) -> None:
        super().__init__()
        self.masks: list[torch.Tensor] = []
        self.replayed: int | None = None  # None while the first pass records

    def __enter__(self) -> SameKinks:
        self.replayed = 0 if self.masks else None
        return super().__enter__()

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        super().__exit__(kind, *exc)
        if kind is None and self.replayed is not None:
            assert self.replayed == len(self.masks), (
                f"the replay ran {self.replayed} ReLUs, the recorded pass {len(self.masks)}"
            )

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        if func not in self.RELUS:
            return func(*args, **(kwargs or {}))
        x = args[0]
        if self.replayed is None:
            self.masks.append((x > 0).detach())
            mask = self.masks[-1]
        else:
            assert self.replayed < len(self.masks), "the replay ran more ReLUs than recorded"
            mask = self.masks[self.replayed]
            self.replayed += 1
        return x * torch.empty_like(x).copy_(mask)  # in x's memory format


def reductions(
    model: torch.nn.Module, batch: int, side: int, *, training: bool = False
) -> tuple[int, int, int]:
    """The longest reduction of the forward pass (a convolution's or the classifier's fan-in;
    in training also batch-norm's statistics over batch x pixels), of the backward pass (a
    fan-out, or a weight gradient's sum over batch x pixels), and the number of layers (every
    convolution and the classifier: at least the longest chain)."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    fc = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    area = [m.kernel_size[0] * m.kernel_size[1] for m in convs]
    fan_in = [m.in_channels // m.groups * a for m, a in zip(convs, area, strict=True)]
    fan_out = [m.out_channels // m.groups * a for m, a in zip(convs, area, strict=True)]
    pixels = [batch * side * side]  # the largest feature map: the input's resolution
    forward = max(fan_in + [m.in_features for m in fc] + (pixels if training else []))
    backward = max(fan_out + [m.out_features for m in fc] + pixels)
    return forward, backward, len(convs) + len(fc)


def layer_error(dtype: torch.dtype, k: int, inputs: torch.dtype | None = None) -> float:
    """One path's relative error per layer against exact arithmetic: ``k * u(dtype)``.

    ``k`` is the layer's reduction length, accumulated in ``dtype`` (Higham eq. 3.4, the
    products' rounding included). Under autocast to ``inputs`` (bf16, fp16), add
    ``3 * u(inputs)``: the activation and the weight rounded before their product, the result
    rounded after.
    """
    u = torch.finfo(dtype).eps / 2
    narrow = 3 * torch.finfo(inputs).eps / 2 if inputs is not None else 0.0
    return k * u + narrow


def rounding_bound(
    dtype: torch.dtype, k: int, layers: int, *, inputs: torch.dtype | None = None
) -> float:
    """Relative bound on the difference of two summation orders of the same network (memory
    formats, kernels) in the same precision::

        2 * layers * (k * u(dtype) + 3 * u(inputs))     (the u(inputs) term only under autocast)

    ``k`` is the longest reduction on the path (:func:`reductions`: a convolution's
    Cin/groups * kh * kw, or a sum over batch * H * W), ``layers`` the number of reductions in a
    chain; each path is within :func:`layer_error` of the exact result per layer, so the two
    differ by at most twice that.
    """
    return 2 * layers * layer_error(dtype, k, inputs)


def precision_bound(dtype: torch.dtype, k: int, layers: int, inputs: torch.dtype) -> float:
    """Relative bound on the difference of autocast to ``inputs`` and the plain ``dtype`` path
    of the same network::

        layers * (2 * k * u(dtype) + 3 * u(inputs))

    the sum of the two paths' :func:`layer_error` over ``layers`` layers (see
    :func:`rounding_bound` for ``k`` and ``layers``).
    """
    return layers * (layer_error(dtype, k, inputs) + layer_error(dtype, k))


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| over the largest magnitude of ``want``."""
    got, want = got.detach().float().cpu(), want.detach().float().cpu()
    scale = max(want.abs().max().item(), torch.finfo(torch.float32).tiny)
    return (got - want).abs().max().item() / scale


def assert_close(name: str, got: torch.Tensor, want: torch.Tensor, bound: float) -> None:
    """``got`` within ``bound`` x the largest magnitude of ``want``, naming the machine if not."""
    err = relative_error(got, want)
    assert err <= bound, (
        f"{name}: max abs difference is {err:.3g} x max |value|, more than the bound {bound:.3g}, "
        f"on {machine()}"
    )
