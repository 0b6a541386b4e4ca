"""The ResNeXt bottleneck block in the three equivalent forms of Fig. 3.

All three hold the same parameters and, with the weights copied by ``to_c``/``load_c``, compute
the same function:

- (a) C paths ``1x1 (w_in->d), 3x3 (d->d), 1x1 (d->w_out)``, outputs summed, one BN after the sum;
- (b) C paths ``1x1, 3x3``, outputs concatenated, then one ``1x1 (C*d->w_out)``;
- (c) ``1x1 (w_in->C*d)``, grouped ``3x3`` with C groups, ``1x1 (C*d->w_out)`` (the paper's).

BN follows each conv and ReLU each BN except the last, whose ReLU comes after the shortcut add.
Splitting a per-channel BN of C*d channels into C BNs of d channels is exact, which is why
forms (a) and (b) can carry one BN per path.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def conv_bn(w_in: int, w_out: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """A bias-free k x k conv with padding k//2 followed by batch norm."""
    return nn.Sequential(
        nn.Conv2d(w_in, w_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(w_out),
    )


class Block(nn.Module):
    """Shared part of all forms: the shortcut, the add, the final ReLU."""

    def __init__(self, w_in: int, w_group: int, w_out: int, groups: int, stride: int) -> None:
        super().__init__()
        self.w_in, self.w_group, self.w_out = w_in, w_group, w_out
        self.groups, self.stride = groups, stride
        # Type B shortcut: a 1x1 projection where the shape changes, identity elsewhere.
        self.proj = conv_bn(w_in, w_out, 1, stride) if stride != 1 or w_in != w_out else None

    def residual(self, x: Tensor) -> Tensor:
        """The aggregated transformation sum_i T_i(x), up to and including its last BN."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.proj is None else self.proj(x)
        return torch.relu(self.residual(x) + shortcut)


class BlockC(Block):
    """Form (c): grouped convolution."""

    def __init__(self, w_in: int, w_group: int, w_out: int, groups: int, stride: int) -> None:
        super().__init__(w_in, w_group, w_out, groups, stride)
        self.a = conv_bn(w_in, w_group, 1)
        self.b = conv_bn(w_group, w_group, 3, stride, groups)
        self.c = conv_bn(w_group, w_out, 1)

    def residual(self, x: Tensor) -> Tensor:
        x = torch.relu(self.a(x))
        x = torch.relu(self.b(x))
        return self.c(x)


class _Path(nn.Module):
    """One path's 1x1 and 3x3 convs, each with its BN and ReLU."""

    def __init__(self, w_in: int, d: int, stride: int) -> None:
        super().__init__()
        self.a = conv_bn(w_in, d, 1)
        self.b = conv_bn(d, d, 3, stride)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.b(torch.relu(self.a(x))))


class BlockB(Block):
    """Form (b): C paths, concatenated early, then one 1x1 conv."""

    def __init__(self, w_in: int, w_group: int, w_out: int, groups: int, stride: int) -> None:
        super().__init__(w_in, w_group, w_out, groups, stride)
        d = w_group // groups
        self.paths = nn.ModuleList(_Path(w_in, d, stride) for _ in range(groups))
        self.c = conv_bn(w_group, w_out, 1)

    def residual(self, x: Tensor) -> Tensor:
        return self.c(torch.cat([p(x) for p in self.paths], dim=1))


class BlockA(Block):
    """Form (a): C full paths whose outputs are summed, then BN."""

    def __init__(self, w_in: int, w_group: int, w_out: int, groups: int, stride: int) -> None:
        super().__init__(w_in, w_group, w_out, groups, stride)
        d = w_group // groups
        self.paths = nn.ModuleList(_Path(w_in, d, stride) for _ in range(groups))
        self.outs = nn.ModuleList(nn.Conv2d(d, w_out, 1, bias=False) for _ in range(groups))
        self.bn = nn.BatchNorm2d(w_out)  # after the aggregation, before the shortcut add

    def residual(self, x: Tensor) -> Tensor:
        total = sum(out(p(x)) for p, out in zip(self.paths, self.outs, strict=True))
        return self.bn(total)


BLOCKS: dict[str, type[Block]] = {"a": BlockA, "b": BlockB, "c": BlockC}


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, sl: slice = slice(None)) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[sl])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)


def _copy_bn_into(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, sl: slice) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name)[sl].copy_(getattr(src, name))
    dst.num_batches_tracked.copy_(src.num_batches_tracked)


def _copy_conv_bn(
    dst: nn.Sequential, src: nn.Sequential, out: slice, inp: slice = slice(None)
) -> None:
    dst[0].weight.copy_(src[0].weight[out, inp])
    _copy_bn(dst[1], src[1], out)


@torch.no_grad()
def to_c(block: Block) -> BlockC:
    """An equivalent form-(c) block with the weights of ``block``."""
    out = BlockC(block.w_in, block.w_group, block.w_out, block.groups, block.stride)
    if block.proj is not None:
        out.proj.load_state_dict(block.proj.state_dict())
    if isinstance(block, BlockC):
        out.load_state_dict(block.state_dict())
        return out
    d = block.w_group // block.groups
    for i, path in enumerate(block.paths):
        sl = slice(i * d, (i + 1) * d)
        # Path i owns channels sl of the 1x1 and of the grouped 3x3 (weight [C*d, d, 3, 3]).
        for dst, src in ((out.a, path.a), (out.b, path.b)):
            dst[0].weight[sl].copy_(src[0].weight)
            _copy_bn_into(dst[1], src[1], sl)
        if isinstance(block, BlockA):
            out.c[0].weight[:, sl].copy_(block.outs[i].weight)
    if isinstance(block, BlockA):
        _copy_bn(out.c[1], block.bn)
    else:
        out.c.load_state_dict(block.c.state_dict())
    return out


@torch.no_grad()
def from_c(block: BlockC, form: str) -> Block:
    """An equivalent block of ``form`` with the weights of the form-(c) ``block``."""
    out = BLOCKS[form](block.w_in, block.w_group, block.w_out, block.groups, block.stride)
    if form == "c":
        out.load_state_dict(block.state_dict())
        return out
    if block.proj is not None:
        out.proj.load_state_dict(block.proj.state_dict())
    d = block.w_group // block.groups
    for i, path in enumerate(out.paths):
        sl = slice(i * d, (i + 1) * d)
        _copy_conv_bn(path.a, block.a, sl)
        _copy_conv_bn(path.b, block.b, sl)
        if form == "a":
            out.outs[i].weight.copy_(block.c[0].weight[:, sl])
    if form == "a":
        _copy_bn(out.bn, block.c[1])
    else:
        out.c.load_state_dict(block.c.state_dict())
    return out
