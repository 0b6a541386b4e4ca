"""The analytic complexity against built models, fvcore, torchvision and the paper."""

from __future__ import annotations

import random
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

import resnext
from resnext.complexity import format_count
from resnext.spec import Spec

PRESETS = resnext.preset_names()


def _fvcore(spec: Spec, model: torch.nn.Module | None = None, activations: bool = True) -> tuple:
    """fvcore's conv+linear multiply-adds (and activations) of the built form-(c) model."""
    from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis

    if model is None:
        # Uninitialised weights: fvcore counts shapes, and He init of 600M weights costs seconds.
        model = resnext.build(spec, device="meta").to_empty(device="cpu")
    model.eval()
    x = torch.zeros(1, 3, spec.resolution, spec.resolution)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        counts = []
        for analysis in (FlopCountAnalysis, ActivationCountAnalysis)[: 1 + activations]:
            a = analysis(model, x)
            a.unsupported_ops_warnings(False)
            a.uncalled_modules_warnings(False)
            ops = a.by_operator()
            # Only conv and linear layers count (the paper's convention); fvcore also counts
            # BN and pooling by default, which we leave out on purpose.
            counts.append(ops["conv"] + ops["linear"])
        return tuple(counts)


def _numel(spec: Spec, form: str = "c") -> int:
    return sum(p.numel() for p in resnext.build(spec, form, device="meta").parameters())


def random_spec(rng: random.Random) -> Spec:
    """A small random spec: odd resolutions, odd widths, any C and d."""
    template = rng.choice(["imagenet", "cifar"])
    n = 4 if template == "imagenet" else 3
    return Spec(
        template=template,
        depths=tuple(rng.randint(1, 3) for _ in range(n)),
        width=rng.randint(1, 48),
        cardinality=rng.randint(1, 8),
        bottleneck_width=rng.randint(1, 6),
        classes=rng.randint(1, 20),
        resolution=rng.randint(8, 72) if template == "imagenet" else rng.randint(4, 36),
        stem_width=rng.randint(1, 24),
    )


RANDOM_SPECS = [random_spec(random.Random(seed)) for seed in range(200)]


@pytest.mark.parametrize("name", PRESETS)
def test_params_equal_built_model_on_every_preset(name: str) -> None:
    spec = resnext.preset(name)
    assert resnext.complexity(spec).params == _numel(spec)


# Every preset is held against fvcore at full resolution in the slow tier; the default tier
# takes the shallow ones under 40M params at a small input (the same structure), and the 200
# random specs below.
SHALLOW = [
    n
    for n in PRESETS
    if n.startswith(("resnext29", "resnet50", "resnext50"))
    and resnext.complexity(resnext.preset(n)).params < 40e6
]


@pytest.mark.parametrize("name", SHALLOW)
def test_flops_and_activations_equal_fvcore_on_shallow_presets(name: str) -> None:
    spec = resnext.preset(name)
    spec = replace(spec, resolution=48 if spec.template == "imagenet" else 12)
    cx = resnext.complexity(spec)
    assert (cx.flops, cx.activations) == _fvcore(spec)


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_flops_and_activations_equal_fvcore_at_full_resolution(name: str) -> None:
    spec = resnext.preset(name)
    cx = resnext.complexity(spec)
    assert (cx.flops, cx.activations) == _fvcore(spec)


@pytest.mark.parametrize("i", range(len(RANDOM_SPECS)))
def test_random_specs_match_model_and_fvcore(i: int) -> None:
    spec = RANDOM_SPECS[i]
    model = resnext.build(spec)
    cx = resnext.complexity(spec)
    assert cx.params == sum(p.numel() for p in model.parameters())
    # Activations take a second trace: every spec's FLOPs, a quarter of them both.
    want = (cx.flops, cx.activations) if i % 4 == 0 else (cx.flops,)
    assert _fvcore(spec, model, activations=i % 4 == 0) == want


@pytest.mark.parametrize("form", ["a", "b"])
def test_all_forms_have_the_same_params(form: str) -> None:
    for spec in RANDOM_SPECS[:4]:
        assert _numel(spec, form) == resnext.complexity(spec).params


def test_grid_counts_equal_scalar_counts() -> None:
    rng = random.Random(7)
    for spec in RANDOM_SPECS[:20]:
        c = np.array([rng.randint(1, 64) for _ in range(30)])
        d = np.array([rng.randint(1, 64) for _ in range(30)])
        grid = resnext.complexity_grid(spec, c, d)
        for i in range(len(c)):
            one = resnext.complexity(
                replace(spec, cardinality=int(c[i]), bottleneck_width=int(d[i]))
            )
            assert (grid.flops[i], grid.params[i], grid.activations[i]) == (
                one.flops,
                one.params,
                one.activations,
            )


def test_parts_sum_to_total() -> None:
    for spec in RANDOM_SPECS[:20]:
        parts = resnext.complexity_by_part(spec)
        assert [n for n, _ in parts][0] == "conv1" and parts[-1][0] == "fc"
        assert sum(p.flops for _, p in parts) == resnext.complexity(spec).flops
        assert sum(p.params for _, p in parts) == resnext.complexity(spec).params


# torchvision's model docs: parameter counts of its ImageNet models, which follow Table 1
# with the stride in the 3x3 conv (as here).
TORCHVISION_PARAMS = {
    "resnet50": 25_557_032,
    "resnext50_32x4d": 25_028_904,
    "resnet101": 44_549_160,
    "resnext101_64x4d": 83_455_272,
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_torchvision_parameter_counts(name: str) -> None:
    assert resnext.complexity(resnext.preset(name)).params == TORCHVISION_PARAMS[name]


def test_torchvision_specs_outside_the_registry() -> None:
    # torchvision's docs: resnext101_32x8d has 88,791,336 params and 16.41 GFLOPS;
    # wide_resnet50_2 (C=1, d=128 here) 68.9M params and 11.398 GFLOPS.
    x101 = resnext.complexity(Spec("imagenet", (3, 4, 23, 3), 256, 32, 8))
    assert x101.params == 88_791_336 and round(x101.flops / 1e9, 2) == 16.41
    wide = resnext.complexity(Spec("imagenet", (3, 4, 6, 3), 256, 1, 128))
    assert round(wide.params / 1e6, 1) == 68.9 and round(wide.flops / 1e9, 3) == 11.398


# torchvision's docs: GFLOPS (multiply-adds of conv and linear layers, 224x224).
TORCHVISION_GFLOPS = {"resnext50_32x4d": 4.23, "resnext101_64x4d": 15.46}


@pytest.mark.parametrize("name", sorted(TORCHVISION_GFLOPS))
def test_torchvision_gflops(name: str) -> None:
    assert (
        round(resnext.complexity(resnext.preset(name)).flops / 1e9, 2) == TORCHVISION_GFLOPS[name]
    )


def test_table1_sizes() -> None:
    # Table 1: ResNet-50 25.5e6 params, 4.1e9 FLOPs; ResNeXt-50 (32x4d) 25.0e6, 4.2e9.
    # The paper truncates to one decimal (25,557,032 is printed as 25.5).
    r50 = resnext.complexity(resnext.preset("resnet50"))
    x50 = resnext.complexity(resnext.preset("resnext50_32x4d"))
    assert int(r50.params / 1e5) == 255 and round(r50.flops / 1e9, 1) == 4.1
    assert int(x50.params / 1e5) == 250 and round(x50.flops / 1e9, 1) == 4.2


def test_table7_sizes() -> None:
    # Table 7: ResNeXt-29 8x64d has 34.4M parameters.
    assert round(resnext.complexity(resnext.preset("resnext29_8x64d")).params / 1e6, 1) == 34.4


@pytest.mark.parametrize("c,d", [(1, 64), (2, 40), (4, 24), (8, 14), (32, 4)])
def test_table2_block_formula(c: int, d: int) -> None:
    # Table 2: a conv2 block has C*(256*d + 3*3*d*d + d*256) conv weights, ~70k, ~0.22 GFLOPs.
    base = Spec("imagenet", (1, 1, 1, 1), 256, c, d)
    one_more = replace(base, depths=(2, 1, 1, 1))
    extra = resnext.complexity(one_more)
    extra_params = extra.params - resnext.complexity(base).params
    bn = 2 * (c * d + c * d + 256)
    assert extra_params - bn == c * (256 * d + 9 * d * d + d * 256)
    assert abs(extra_params - bn - 70_000) / 70_000 < 0.04
    extra_flops = extra.flops - resnext.complexity(base).flops
    assert extra_flops == 56 * 56 * (extra_params - bn)
    assert round(extra_flops / 1e9, 2) in (0.21, 0.22, 0.23)


@pytest.mark.parametrize(
    "name", ["resnext101_64x4d", "resnext101_2x64d", "resnet101_1x100d", "resnet200"]
)
def test_table4_is_twice_resnet101(name: str) -> None:
    # Table 4: about 2x the complexity of ResNet-101, ~15 GFLOPs.
    flops = resnext.complexity(resnext.preset(name)).flops
    assert abs(flops - 15e9) / 15e9 < 0.05
    assert 1.85 < flops / resnext.complexity(resnext.preset("resnet101")).flops < 2.05


def test_table3_pairs_preserve_complexity() -> None:
    # Table 2/3: the (C, d) pairs keep "about equal" complexity; the paper's own pairs differ
    # from 1x64d by up to 2.1% in params (32x4d) and 4.4% in FLOPs (8x14d).
    for depth in (50, 101):
        ref = resnext.complexity(resnext.preset(f"resnet{depth}"))
        for pair in ("2x40d", "4x24d", "8x14d", "32x4d"):
            cx = resnext.complexity(resnext.preset(f"resnext{depth}_{pair}"))
            assert abs(cx.params - ref.params) / ref.params < 0.025
            assert abs(cx.flops - ref.flops) / ref.flops < 0.05


def test_format_count_as_tables_show_it() -> None:
    # resnext50_32x4d's torchvision params and FLOPs, as `budget` and `presets` print them.
    assert format_count(25_028_904) == "25.03M"
    assert format_count(4_230_000_000) == "4.23G"
    assert format_count(70_000) == "70.00k"
    assert format_count(512) == "512"


def test_grid_over_c_and_d_and_a_clear_error_for_unpaired_arrays() -> None:
    spec = resnext.preset("resnext50_32x4d")
    cs, ds = [1, 2, 4], [4, 8]
    grid = resnext.complexity_grid(spec, *np.meshgrid(cs, ds, indexing="ij"))
    assert grid.flops.shape == (3, 2)
    for i, c in enumerate(cs):
        for j, d in enumerate(ds):
            one = resnext.complexity(replace(spec, cardinality=c, bottleneck_width=d))
            assert (grid.flops[i, j], grid.params[i, j]) == (one.flops, one.params)
    with pytest.raises(ValueError, match="meshgrid"):
        resnext.complexity_grid(spec, cs, ds)


def test_imagenet_side_flops_count_the_same_network_at_224() -> None:
    from resnext.complexity import complexity, imagenet_side_flops

    small = Spec("imagenet", (1, 1, 1, 1), 64, 8, 4, 10, 64)  # the default CPU trial's space
    side, flops = imagenet_side_flops(small)  # type: ignore[misc]
    assert (side, flops) == (224, complexity(replace(small, resolution=224)).flops)
    # Convolutions scale with the pixels, (224/64)^2 = 12.25, the fc layer does not.
    assert 11 < flops / complexity(small).flops < 12.25
    assert imagenet_side_flops(replace(small, resolution=224)) is None
    assert imagenet_side_flops(Spec("cifar", (1, 1, 1), 32, 4, 2, 10, 64)) is None
