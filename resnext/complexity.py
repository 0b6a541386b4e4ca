"""Exact analytic complexity of a spec, without building a model (pycls-style ``_cx`` helpers).

What is counted, for a batch of one image:

- ``flops``: multiply-adds of every convolution and fully-connected layer, the paper's
  convention (Table 1). Conv and fc biases, batch norm, ReLU, pooling and the residual additions
  are not counted. fvcore's ``FlopCountAnalysis`` restricted to its ``conv`` and ``linear``
  operators gives the same number.
- ``params``: every trainable parameter: conv weights (no conv biases), the two affine
  parameters of each batch norm, the fc weight and bias. Equals ``sum(p.numel())`` of the model.
- ``activations``: output elements of every conv and fc layer (pycls, and fvcore's
  ``ActivationCountAnalysis``).

The helpers are plain arithmetic, so the same walk counts one spec (ints) or a whole grid of
cardinalities and bottleneck widths at once (numpy int64 arrays).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from resnext.spec import TEMPLATES, Spec
from resnext.template import conv_out, stages, stem


def format_count(n: float) -> str:
    """A count for people: ``25.03M``, ``4.23G``, ``512``."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


@dataclass(frozen=True)
class Complexity:
    """FLOPs (multiply-adds), parameters and activations of one spec, or arrays of them."""

    flops: Any
    params: Any
    activations: Any

    def to_dict(self) -> dict[str, int]:
        """A JSON-ready dict of plain ints (scalar complexities only)."""
        return {
            "flops": int(self.flops),
            "params": int(self.params),
            "activations": int(self.activations),
        }


class _Cx:
    """Running totals; the fields may be ints or numpy arrays."""

    def __init__(self) -> None:
        self.flops: Any = 0
        self.params: Any = 0
        self.acts: Any = 0

    def add(self, other: _Cx, times: int = 1) -> None:
        """Add ``times`` copies of ``other``'s totals."""
        self.flops = self.flops + other.flops * times
        self.params = self.params + other.params * times
        self.acts = self.acts + other.acts * times


def _conv_cx(
    cx: _Cx, size: int, w_in: Any, w_out: Any, k: int, stride: int, groups: Any = 1
) -> int:
    """Add a bias-free k x k conv with padding k//2; return the output side."""
    out = conv_out(size, k, stride)
    weights = k * k * (w_in // groups) * w_out
    cx.params = cx.params + weights
    cx.flops = cx.flops + weights * out * out
    cx.acts = cx.acts + w_out * out * out
    return out


def _bn_cx(cx: _Cx, width: Any) -> None:
    """Add a batch norm: its affine weight and bias (running stats are buffers, not params)."""
    cx.params = cx.params + 2 * width


def _fc_cx(cx: _Cx, w_in: Any, w_out: int) -> None:
    """Add a fully-connected layer with bias."""
    cx.params = cx.params + w_in * w_out + w_out
    cx.flops = cx.flops + w_in * w_out
    cx.acts = cx.acts + w_out


def _block_cx(
    cx: _Cx, size: int, w_in: Any, w_group: Any, w_out: Any, groups: Any, stride: int
) -> int:
    """Add one bottleneck block in form (c) (Fig. 3c); forms (a) and (b) count the same."""
    _conv_cx(cx, size, w_in, w_group, 1, 1)
    _bn_cx(cx, w_group)
    out = _conv_cx(cx, size, w_group, w_group, 3, stride, groups)
    _bn_cx(cx, w_group)
    _conv_cx(cx, out, w_group, w_out, 1, 1)
    _bn_cx(cx, w_out)
    if stride != 1 or w_in != w_out:  # projection shortcut (type B) where the shape changes
        _conv_cx(cx, size, w_in, w_out, 1, stride)
        _bn_cx(cx, w_out)
    return out


def _count_parts(
    spec: Spec, cardinality: Any = None, bottleneck_width: Any = None
) -> list[tuple[str, _Cx]]:
    """Counts of the stem, each stage (Table 1's conv2...), and the head, in order."""
    parts = [("conv1", _Cx())]
    st = stem(spec)
    _conv_cx(parts[0][1], st.in_size, st.in_channels, st.width, st.kernel, st.stride)
    _bn_cx(parts[0][1], st.width)
    out_width = st.width
    for stage in stages(spec, cardinality, bottleneck_width):
        cx = _Cx()
        size = _block_cx(
            cx,
            stage.in_size,
            stage.in_width,
            stage.group_width,
            stage.out_width,
            stage.cardinality,
            stage.stride,
        )
        if stage.blocks > 1:
            # Rule 1: the stage's other blocks are identical (same widths, stride 1, same side),
            # so one is counted and multiplied; a 1000-block stage costs what a 2-block one does.
            rest = _Cx()
            _block_cx(
                rest, size, stage.out_width, stage.group_width, stage.out_width,
                stage.cardinality, 1,
            )  # fmt: skip
            cx.add(rest, stage.blocks - 1)
        parts.append((stage.name, cx))
        out_width = stage.out_width
    parts.append(("fc", _Cx()))
    _fc_cx(parts[-1][1], out_width, spec.classes)
    return parts


def _count(spec: Spec, cardinality: Any = None, bottleneck_width: Any = None) -> Complexity:
    parts = [cx for _, cx in _count_parts(spec, cardinality, bottleneck_width)]
    return Complexity(
        sum(cx.flops for cx in parts), sum(cx.params for cx in parts), sum(cx.acts for cx in parts)
    )


def complexity_by_part(spec: Spec) -> list[tuple[str, Complexity]]:
    """Complexity of the stem (``conv1``), each stage (``conv2``...) and the ``fc`` head."""
    return [
        (name, Complexity(int(cx.flops), int(cx.params), int(cx.acts)))
        for name, cx in _count_parts(spec)
    ]


def complexity(spec: Spec) -> Complexity:
    """Exact FLOPs (multiply-adds), parameters and activations of ``spec``."""
    cx = _count(spec)
    return Complexity(int(cx.flops), int(cx.params), int(cx.activations))


def imagenet_side_flops(spec: Spec) -> tuple[int, float] | None:
    """(224, FLOPs at 224 px) of an ImageNet-template ``spec`` counted at another input side (a
    CPU trial at 64 px), to compare with the paper's networks; None for any other spec."""
    side = TEMPLATES["imagenet"]["resolution"]
    if spec.template != "imagenet" or spec.resolution == side:
        return None
    return side, complexity(replace(spec, resolution=side)).flops


def complexity_grid(spec: Spec, cardinality: Any, bottleneck_width: Any) -> Complexity:
    """Complexity of ``spec`` with C and d replaced by integer arrays, counted in one pass.

    The arrays pair up element by element under numpy broadcasting: ``C`` and ``d`` of one
    shape give one count per (C[i], d[i]); for the grid over every C and every d, pass
    ``*np.meshgrid(C, d, indexing="ij")`` (counts of shape ``(len(C), len(d))``).
    """
    c = np.asarray(cardinality, dtype=np.int64)
    d = np.asarray(bottleneck_width, dtype=np.int64)
    try:
        c, d = np.broadcast_arrays(c, d)
    except ValueError:
        raise ValueError(
            f"cardinality (shape {c.shape}) and bottleneck_width (shape {d.shape}) do not "
            "pair up element by element; for the grid over every C and d pass "
            '*np.meshgrid(C, d, indexing="ij")'
        ) from None
    return _count(spec, c, d)


def training_memory(spec: Spec, batch_size: int, activation_bytes: int = 4) -> int:
    """A lower bound in bytes on the memory that one SGD step of ``spec`` needs.

    The float32 weights, their gradients and the momentum buffer (3 x params), and the input
    batch and the output of every conv and fc layer for ``batch_size`` images, which autograd
    keeps for the backward pass, at ``activation_bytes`` each (2 under bfloat16 autocast).
    Batch norm outputs and workspaces come on top, so real use is higher.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    cx = complexity(spec)
    image = 3 * spec.resolution * spec.resolution
    return 4 * 3 * cx.params + activation_bytes * batch_size * (image + cx.activations)
