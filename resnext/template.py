"""The two template rules (Sec. 3.1) as pure functions: a spec in, stage shapes out.

The network builder and the complexity counter both walk :func:`stages`, so the width
arithmetic lives here and nowhere else. ``cardinality`` and ``bottleneck_width`` may be numpy
integer arrays, which lets the counter evaluate a whole grid of (C, d) in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resnext.spec import Spec


@dataclass(frozen=True)
class Stem:
    """The layers before the first stage (Table 1 row conv1, or the CIFAR 3x3 conv)."""

    in_channels: int  # RGB input
    kernel: int
    stride: int
    width: int
    pool: bool  # a 3x3 max pool with stride 2 follows (ImageNet)
    in_size: int
    conv_size: int  # spatial side after the conv
    out_size: int  # spatial side after the pool, if any


@dataclass(frozen=True)
class Stage:
    """One stage: ``blocks`` bottleneck blocks that share their hyper-parameters (rule 1)."""

    name: str  # Table 1's row name: conv2, conv3, ...
    blocks: int
    in_width: int  # input channels of the stage's first block
    group_width: Any  # C*d*2**i, the grouped 3x3 conv's width (rule 2)
    out_width: int  # width*2**i (rule 2)
    cardinality: Any
    stride: int  # stride of the first block's 3x3 conv and projection
    in_size: int
    out_size: int


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Spatial side after a conv or pool with padding ``kernel // 2``."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def stem(spec: Spec) -> Stem:
    """The stem of the spec's template."""
    if spec.template == "imagenet":  # Table 1: 7x7, 64, stride 2; 3x3 max pool, stride 2
        conv = conv_out(spec.resolution, 7, 2)
        return Stem(3, 7, 2, spec.stem_width, True, spec.resolution, conv, conv_out(conv, 3, 2))
    # Sec. 5.3: a single 3x3 conv with 64 filters, no down-sampling
    conv = conv_out(spec.resolution, 3, 1)
    return Stem(3, 3, 1, spec.stem_width, False, spec.resolution, conv, conv)


def stages(spec: Spec, cardinality: Any = None, bottleneck_width: Any = None) -> list[Stage]:
    """Stage shapes of ``spec``; pass C and d as arrays to vectorise over a grid."""
    c = spec.cardinality if cardinality is None else cardinality
    d = spec.bottleneck_width if bottleneck_width is None else bottleneck_width
    result = []
    in_width = spec.stem_width
    size = stem(spec).out_size
    for i, blocks in enumerate(spec.depths):
        stride = 1 if i == 0 else 2  # Table 1: conv3..conv5 down-sample in their first block
        out_size = conv_out(size, 3, stride)
        out_width = spec.width * 2**i
        result.append(
            Stage(
                name=f"conv{i + 2}",
                blocks=blocks,
                in_width=in_width,
                group_width=c * d * 2**i,
                out_width=out_width,
                cardinality=c,
                stride=stride,
                in_size=size,
                out_size=out_size,
            )
        )
        in_width, size = out_width, out_size
    return result
