"""Named presets: small registered functions that return a spec (timm-style)."""

from __future__ import annotations

from collections.abc import Callable

from resnext.spec import Spec

_PRESETS: dict[str, Callable[[], Spec]] = {}
_SOURCES: dict[str, str] = {}

R50 = (3, 4, 6, 3)  # Table 1: ResNet-50 / ResNeXt-50
R101 = (3, 4, 23, 3)  # Table 1: ResNet-101 / ResNeXt-101
R200 = (3, 24, 36, 3)  # He et al. 2016 (Identity Mappings), ResNet-200; Table 4 here
R29 = (3, 3, 3)  # Sec. 5.3: 3 stages of 3 blocks, 29 layers


def register(name: str, source: str, spec: Spec) -> None:
    """Register ``spec`` under ``name``, citing where in the paper it comes from."""
    if name in _PRESETS:
        raise ValueError(f"preset {name!r} is already registered")
    _PRESETS[name] = lambda: spec
    _SOURCES[name] = source


def preset(name: str) -> Spec:
    """The spec of a registered preset; ValueError naming close matches if unknown."""
    try:
        return _PRESETS[name]()
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, _PRESETS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `resnext-nas presets`"
        raise ValueError(f"unknown preset {name!r}{hint}") from None


def preset_names() -> list[str]:
    """Names of all presets, in registration order."""
    return list(_PRESETS)


def preset_source(name: str) -> str:
    """Where in the paper a preset comes from."""
    preset(name)
    return _SOURCES[name]


def _imagenet(depths: tuple[int, ...], c: int, d: int) -> Spec:
    return Spec("imagenet", depths, 256, c, d)


def _cifar(c: int, d: int) -> Spec:
    return Spec("cifar", R29, 256, c, d)


# Table 3: complexity-preserving (C, d) pairs of Table 2 at depth 50 and 101.
for _depths, _n in ((R50, 50), (R101, 101)):
    register(f"resnet{_n}", "Table 3, 1x64d", _imagenet(_depths, 1, 64))
    for _c, _d in ((2, 40), (4, 24), (8, 14), (32, 4)):
        register(f"resnext{_n}_{_c}x{_d}d", f"Table 3, {_c}x{_d}d", _imagenet(_depths, _c, _d))
# Table 4: twice the complexity of ResNet-101.
register("resnext101_64x4d", "Table 4, 64x4d", _imagenet(R101, 64, 4))
register("resnext101_2x64d", "Table 4, 2x64d", _imagenet(R101, 2, 64))
register("resnet101_1x100d", "Table 4, ResNet-101 wider 1x100d", _imagenet(R101, 1, 100))
register("resnet200", "Table 4, ResNet-200 1x64d", _imagenet(R200, 1, 64))
# Fig. 7 and Table 7: CIFAR ResNeXt-29, increasing cardinality at d=64 ...
for _c in (1, 2, 4, 8, 16):
    register(f"resnext29_{_c}x64d", f"Fig. 7 cardinality series, {_c}x64d", _cifar(_c, 64))
# ... against increasing width at C=1.
for _d in (128, 256, 512, 1024):
    register(f"resnext29_1x{_d}d", f"Fig. 7 width series, 1x{_d}d", _cifar(1, _d))
