"""The three block forms compute the same function, and specs validate their input."""

from __future__ import annotations

import pytest
import torch

import resnext
from resnext.spec import Spec

FORM_SPECS = [
    Spec("cifar", (1, 2, 1), 32, 4, 3, classes=5, resolution=16),
    Spec("cifar", (2, 1, 1), 24, 8, 2, classes=3, resolution=9),
    Spec("imagenet", (1, 1, 2, 1), 16, 2, 5, classes=7, resolution=37),
    Spec("imagenet", (1, 1, 1, 1), 64, 1, 16, classes=10, resolution=32),
]


def _randomise_bn(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial BN statistics and affine terms, so that a wrong slice cannot hide."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g))


@pytest.mark.parametrize("spec", FORM_SPECS, ids=lambda s: f"{s.template}-{s.notation}")
@pytest.mark.parametrize("form", ["a", "b"])
def test_forms_compute_the_same_function(spec: Spec, form: str) -> None:
    torch.manual_seed(0)
    model = resnext.build(spec, "c")
    _randomise_bn(model, 1)
    model.eval()
    x = torch.randn(3, 3, spec.resolution, spec.resolution)
    with torch.no_grad():
        ref = model(x)
        other = resnext.convert(model, form)
        assert other.form == form
        got = other(x)
        back = resnext.convert(other, "c")(x)
    scale = ref.abs().max()
    assert (got - ref).abs().max() / scale <= 1e-5
    assert (back - ref).abs().max() / scale <= 1e-5


def test_conversion_changes_the_modules() -> None:
    from resnext.blocks import BlockA, BlockB, BlockC

    model = resnext.build(FORM_SPECS[0])
    assert isinstance(model.stages.conv2[0], BlockC)
    assert isinstance(resnext.convert(model, "a").stages.conv2[0], BlockA)
    assert isinstance(resnext.convert(model, "b").stages.conv2[0], BlockB)
    assert len(resnext.convert(model, "a").stages.conv2[0].paths) == 4


def test_a_wrong_copy_would_be_caught() -> None:
    # The equivalence test is only worth something if a perturbed weight breaks it.
    spec = FORM_SPECS[0]
    model = resnext.build(spec)
    _randomise_bn(model, 2)
    model.eval()
    other = resnext.convert(model, "a")
    with torch.no_grad():
        other.stages.conv3[0].outs[1].weight.mul_(1.5)
        x = torch.randn(2, 3, spec.resolution, spec.resolution)
        assert (other(x) - model(x)).abs().max() / model(x).abs().max() > 1e-3


def test_output_shape_and_template_stride() -> None:
    spec = resnext.preset("resnext29_2x64d")
    model = resnext.build(spec)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    sizes = [s.out_size for s in resnext.stages(spec)]
    assert sizes == [32, 16, 8]  # Sec. 5.3: feature maps 32, 16, 8
    assert [s.out_size for s in resnext.stages(resnext.preset("resnet50"))] == [56, 28, 14, 7]


def test_template_rules_double_widths() -> None:
    stages = resnext.stages(resnext.preset("resnext50_32x4d"))
    assert [s.out_width for s in stages] == [256, 512, 1024, 2048]  # Table 1
    assert [s.group_width for s in stages] == [128, 256, 512, 1024]
    assert {s.cardinality for s in stages} == {32}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"template": "mnist"}, "unknown template"),
        ({"depths": (3, 4, 6)}, "needs 4 numbers"),
        ({"template": "cifar", "depths": (3, 3, 3, 3)}, "needs 3 numbers"),
        ({"cardinality": 0}, "cardinality must be a positive integer"),
        ({"bottleneck_width": -4}, "bottleneck width must be a positive integer"),
        ({"depths": (3, 0, 6, 3)}, "every depth must be a positive integer"),
        ({"width": 2.5}, "width must be a positive integer"),
    ],
)
def test_invalid_specs_raise_actionable_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Spec(**kwargs)


def test_spec_round_trips_through_dict() -> None:
    for name in resnext.preset_names():
        spec = resnext.preset(name)
        assert Spec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown spec fields: colour"):
        Spec.from_dict({"colour": 1})


def test_registry_has_the_paper_presets() -> None:
    names = set(resnext.preset_names())
    required = {
        "resnet50",
        "resnext50_2x40d",
        "resnext50_4x24d",
        "resnext50_8x14d",
        "resnext50_32x4d",
        "resnet101",
        "resnext101_2x40d",
        "resnext101_4x24d",
        "resnext101_8x14d",
        "resnext101_32x4d",
        "resnext101_64x4d",
        "resnext101_2x64d",
        "resnet101_1x100d",
        "resnext29_1x64d",
        "resnext29_2x64d",
        "resnext29_4x64d",
        "resnext29_8x64d",
        "resnext29_16x64d",
        "resnext29_1x128d",
        "resnext29_1x256d",
        "resnext29_1x512d",
        "resnext29_1x1024d",
    }
    assert required <= names
    with pytest.raises(ValueError, match="did you mean resnext50_32x4d"):
        resnext.preset("resnext50_32x4")


@pytest.mark.parametrize("name", resnext.preset_names())
def test_preset_names_match_their_specs(name: str) -> None:
    spec = resnext.preset(name)
    if name.startswith("resnext") or "_1x" in name:
        assert name.endswith(spec.notation)
    else:
        assert spec.cardinality == 1 and spec.bottleneck_width == 64
