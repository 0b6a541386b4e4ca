"""The frozen architecture spec of a network made by the ResNeXt template rules."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Sec. 3.1 and Table 1: the ImageNet template has 4 stages after a 7x7 stem and a max pool;
# Sec. 5.3: the CIFAR template has 3 stages after a 3x3 stem.
TEMPLATES: dict[str, dict[str, int]] = {
    "imagenet": {"stages": 4, "classes": 1000, "resolution": 224},
    "cifar": {"stages": 3, "classes": 10, "resolution": 32},
}
# Table 1: ResNeXt-50; Sec. 5.3: ResNeXt-29.
DEFAULT_DEPTHS: dict[str, tuple[int, ...]] = {"imagenet": (3, 4, 6, 3), "cifar": (3, 3, 3)}
# Largest value of each field (a huge value must be one line, not a hang or an
# OverflowError). Far beyond any trainable network (ResNet-1001 has 111 blocks a stage,
# ResNeXt-101 64x4d a C*d of 256), yet small enough that counts stay exact and fast.
LIMITS: dict[str, int] = {
    "depth": 1000,  # blocks a stage
    "width": 1 << 16,
    "cardinality": 1 << 16,
    "bottleneck width": 1 << 20,
    "classes": 1 << 20,
    "resolution": 4096,
    "stem width": 1 << 16,
}


@dataclass(frozen=True)
class Spec:
    """One ResNeXt network: a template, blocks per stage, and the first stage's widths.

    Everything else follows from the paper's two template rules (Sec. 3.1): blocks of one stage
    share their hyper-parameters, and each down-sampling by 2 doubles every width.
    """

    template: str = "imagenet"
    depths: tuple[int, ...] = ()  # blocks per stage; empty: the template's default
    width: int = 256  # output width of the first stage (Table 1: 256)
    cardinality: int = 32  # C of every block
    bottleneck_width: int = 4  # d of the first stage; the grouped conv is C*d wide
    classes: int = field(default=0)  # 0: the template's default
    resolution: int = field(default=0)  # 0: the template's default
    stem_width: int = 64  # Table 1 and Sec. 5.3: the stem has 64 filters

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise ValueError(
                f"unknown template {self.template!r}; choose one of {', '.join(TEMPLATES)}"
            )
        tpl = TEMPLATES[self.template]
        depths = tuple(self.depths) or DEFAULT_DEPTHS[self.template]
        object.__setattr__(self, "depths", depths)
        if not self.classes:
            object.__setattr__(self, "classes", tpl["classes"])
        if not self.resolution:
            object.__setattr__(self, "resolution", tpl["resolution"])
        if len(depths) != tpl["stages"]:
            raise ValueError(
                f"the {self.template} template has {tpl['stages']} stages, "
                f"so depths needs {tpl['stages']} numbers, got {len(depths)}: "
                f"{','.join(map(str, depths))}"
            )
        for name, value in (
            *(("depth", v) for v in depths),
            ("width", self.width),
            ("cardinality", self.cardinality),
            ("bottleneck width", self.bottleneck_width),
            ("classes", self.classes),
            ("resolution", self.resolution),
            ("stem width", self.stem_width),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                what = "every depth" if name == "depth" else name
                raise ValueError(f"{what} must be a positive integer, got {value!r}")
            if value > LIMITS[name]:
                what = "a depth (blocks a stage)" if name == "depth" else name
                raise ValueError(f"{what} must be at most {LIMITS[name]:,}, got {value:,}")

    @property
    def group_width(self) -> int:
        """Width C*d of the first stage's grouped convolution."""
        return self.cardinality * self.bottleneck_width

    @property
    def notation(self) -> str:
        """The paper's name for the block shape, e.g. ``32x4d``."""
        return f"{self.cardinality}x{self.bottleneck_width}d"

    def describe(self) -> str:
        """A one-line human description, e.g. ``ResNeXt 32x4d, depths 3-4-6-3, width 256``."""
        family = "ResNet" if self.cardinality == 1 else "ResNeXt"
        return (
            f"{family} {self.notation}, depths {'-'.join(map(str, self.depths))}, "
            f"width {self.width}"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``Spec(**d)`` rebuilds the spec."""
        d = asdict(self)
        d["depths"] = list(self.depths)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Spec:
        """Rebuild a spec from ``to_dict()`` output, refusing unknown keys."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown spec fields: {', '.join(sorted(unknown))}")
        return cls(**{**data, "depths": tuple(data.get("depths", cls.depths))})
