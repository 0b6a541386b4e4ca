"""Build a torch network from a spec, and convert it between the block forms of Fig. 3."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from resnext.blocks import BLOCKS, Block, BlockC, conv_bn, from_c, to_c
from resnext.spec import Spec
from resnext.template import stages, stem


class ResNeXt(nn.Module):
    """A ResNeXt network: stem, stages of bottleneck blocks, global average pool, fc."""

    def __init__(self, spec: Spec, form: str = "c") -> None:
        super().__init__()
        if form not in BLOCKS:
            raise ValueError(f"unknown block form {form!r}; choose one of a, b, c")
        self.spec, self.form = spec, form
        st = stem(spec)
        layers: list[nn.Module] = [
            conv_bn(st.in_channels, st.width, st.kernel, st.stride),
            nn.ReLU(inplace=True),
        ]
        if st.pool:
            layers.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*layers)
        block = BLOCKS[form]
        self.stages = nn.Sequential()
        for s in stages(spec):
            self.stages.add_module(
                s.name,
                nn.Sequential(
                    *(
                        block(
                            s.in_width if b == 0 else s.out_width,
                            s.group_width,
                            s.out_width,
                            s.cardinality,
                            s.stride if b == 0 else 1,
                        )
                        for b in range(s.blocks)
                    )
                ),
            )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(s.out_width, spec.classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation (Sec. 4) for convs, BN at identity, PyTorch default for the fc."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def build(spec: Spec, form: str = "c", device: str | torch.device | None = None) -> ResNeXt:
    """The network of ``spec`` in block form ``form``; ``device="meta"`` allocates nothing."""
    if device is None:
        return ResNeXt(spec, form)
    with torch.device(device):
        return ResNeXt(spec, form)


@torch.no_grad()
def convert(model: ResNeXt, form: str) -> ResNeXt:
    """A new network in ``form`` with ``model``'s weights: the same function, any form to any."""
    if form not in BLOCKS:
        raise ValueError(f"unknown block form {form!r}; choose one of a, b, c")
    out = ResNeXt(model.spec, form)
    out.stem.load_state_dict(model.stem.state_dict())
    out.fc.load_state_dict(model.fc.state_dict())
    for name, stage in model.stages.named_children():
        target = getattr(out.stages, name)
        for i, blk in enumerate(stage):
            assert isinstance(blk, Block)
            c = blk if isinstance(blk, BlockC) else to_c(blk)
            target[i] = from_c(c, form)
    out.train(model.training)
    return out.to(next(model.parameters()).device)
