"""The design space of a search: the in-band configurations of the template generator.

A :class:`SearchSpace` enumerates, once and without building a model, every (depths, width, C, d)
whose complexity lies inside the budget band (:func:`resnext.budget.generate`).
:func:`nas.search.suggest.suggest_spec` then draws a spec define-by-run with stable parameter
names, so that every proposal is in band by construction: ``depths``, ``width`` and
``cardinality`` are categorical over the values that occur in band, and ``bottleneck_width`` is
drawn from the in-band d of the chosen cell only (an integer range, since complexity grows
strictly with d at fixed C). A cell (depths, width, C) with no in-band d at all is rejected
before any model exists at no cost to the search. No Optuna here: the commands read the
default space (:data:`SEARCH_DEFAULTS`) as they start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from resnext.budget import DEFAULT_CARDINALITIES, Budget, Config, generate
from resnext.complexity import complexity
from resnext.spec import Spec

# The default space, for 32x32 images: CIFAR template (Sec. 5.3) with 1, 2 or 3 blocks a stage
# and widths 16, 32 and 64, C in {1, 4, 16} and d in {1, 3, 6}, from 2 to 8 MFLOPs (5e6 +-60%):
# 26 configurations of 3.3-7.9 MFLOPs (the stem sets the floor). On real CIFAR-10 this band's
# configurations truly differ (a long schedule separates them: docs/search-quality.md), where the
# narrower band before it (8e6 +-10%, width 32, 1-1-1 and 2-2-2, 8 configurations) was flat.
SEARCH_FLOPS = 5e6
SEARCH_TOLERANCE = 0.6
SEARCH_DEPTHS = ((1, 1, 1), (2, 2, 2), (3, 3, 3))
SEARCH_WIDTHS = (16, 32, 64)
SEARCH_CARDINALITIES = (1, 4, 16)
SEARCH_BOTTLENECK_WIDTHS = (1, 3, 6)
# The band of a budget the user gives: +-10% over every C and every integer d.
BUDGET_TOLERANCE = 0.1
# The default space of the ImageNet template at its CPU trial side (64 px, nas.training.config
# IMAGENET_TRIAL): one block a stage and width 64, 18M FLOPs (1-1-1-1 w64 8x4d has 18.2M at
# 64 px and 221M at 224 px). docs/imagenet.md gives sizes for a GPU at 224 px.
IMAGENET_SEARCH_FLOPS = 18e6
IMAGENET_SEARCH_DEPTHS = ((1, 1, 1, 1),)
IMAGENET_SEARCH_WIDTHS = (64,)


@dataclass(frozen=True)
class SpaceDefaults:
    """The space a search takes unless told: a default budget band and grid.

    Skeletons and widths apply whenever none are given. The band's tolerance, cardinalities and
    bottleneck widths belong to the default budget: with a budget of the user's own
    (``--flops``/``--params``) the band is +-:data:`BUDGET_TOLERANCE` over every C and d,
    unless those are given too.
    """

    flops: float
    depths: tuple[tuple[int, ...], ...]
    widths: tuple[int, ...]
    tolerance: float = BUDGET_TOLERANCE
    cardinalities: tuple[int, ...] | None = None  # None: every C
    bottleneck_widths: tuple[int, ...] | None = None  # None: every integer d

    def budget(self, flops: float | None, params: float | None, tolerance: float | None) -> Budget:
        """The budget of these options (None: not given)."""
        if flops is None and params is None:
            return Budget(self.flops, None, self.tolerance if tolerance is None else tolerance)
        return Budget(flops, params, BUDGET_TOLERANCE if tolerance is None else tolerance)

    def choices(
        self,
        given_budget: bool,
        cardinalities: tuple[int, ...] | None,
        bottleneck_widths: tuple[int, ...] | None,
    ) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        """The C and d choices of these options (None: not given; d None: every integer d)."""
        if given_budget:
            return cardinalities or DEFAULT_CARDINALITIES, bottleneck_widths
        return (
            cardinalities or self.cardinalities or DEFAULT_CARDINALITIES,
            bottleneck_widths or self.bottleneck_widths,
        )


# The default space of each template.
SEARCH_DEFAULTS = {
    "cifar": SpaceDefaults(
        SEARCH_FLOPS,
        SEARCH_DEPTHS,
        SEARCH_WIDTHS,
        SEARCH_TOLERANCE,
        SEARCH_CARDINALITIES,
        SEARCH_BOTTLENECK_WIDTHS,
    ),
    "imagenet": SpaceDefaults(
        IMAGENET_SEARCH_FLOPS, IMAGENET_SEARCH_DEPTHS, IMAGENET_SEARCH_WIDTHS
    ),
}


def depths_key(depths: tuple[int, ...]) -> str:
    """The categorical value of the ``depths`` parameter, e.g. ``"3-4-6-3"``."""
    return "-".join(map(str, depths))


def spec_params(spec: Spec) -> dict[str, Any]:
    """The Optuna parameters of a spec, as :func:`~nas.search.suggest.suggest_spec` names them."""
    return {
        "depths": depths_key(spec.depths),
        "width": spec.width,
        "cardinality": spec.cardinality,
        "bottleneck_width": spec.bottleneck_width,
    }


@dataclass(frozen=True)
class SearchSpace:
    """Every configuration of a template grid inside a budget band, plus optional hyper-parameters.

    Built from the same options as ``resnext-nas budget``; raises ValueError when the band holds
    no configuration.
    """

    budget: Budget
    template: str = "cifar"
    depths: tuple[tuple[int, ...], ...] = ((1, 1, 1),)
    widths: tuple[int, ...] = (64,)
    cardinalities: tuple[int, ...] = DEFAULT_CARDINALITIES
    bottleneck_widths: tuple[int, ...] | None = None  # None: every integer d
    classes: int = 0
    resolution: int = 0
    tune_lr: bool = False
    tune_wd: bool = False
    configs: tuple[Config, ...] = field(init=False, repr=False, compare=False)
    cells: dict[tuple[str, int, int], tuple[int, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(tuple(d) for d in self.depths))
        object.__setattr__(self, "widths", tuple(sorted(set(self.widths))))
        object.__setattr__(self, "cardinalities", tuple(sorted(set(self.cardinalities))))
        if self.bottleneck_widths is not None:
            ds = tuple(sorted(set(self.bottleneck_widths)))
            object.__setattr__(self, "bottleneck_widths", ds)
        configs = generate(
            self.budget,
            self.template,
            self.depths,
            self.widths,
            self.cardinalities,
            self.bottleneck_widths,
            self.classes,
            self.resolution,
        )
        cells: dict[tuple[str, int, int], list[int]] = {}
        for c in configs:
            s = c.spec
            cells.setdefault((depths_key(s.depths), s.width, s.cardinality), []).append(
                s.bottleneck_width
            )
        object.__setattr__(self, "configs", tuple(configs))
        object.__setattr__(self, "cells", {k: tuple(sorted(v)) for k, v in cells.items()})

    # The categorical choices: fixed for the life of a study (Optuna refuses changing choices).
    @property
    def depth_choices(self) -> tuple[str, ...]:
        """``depths`` values with at least one in-band configuration, in the given order."""
        used = {k[0] for k in self.cells}
        return tuple(k for k in dict.fromkeys(map(depths_key, self.depths)) if k in used)

    @property
    def width_choices(self) -> tuple[int, ...]:
        """``width`` values with at least one in-band configuration."""
        return tuple(sorted({k[1] for k in self.cells}))

    @property
    def cardinality_choices(self) -> tuple[int, ...]:
        """``cardinality`` values with at least one in-band configuration."""
        return tuple(sorted({k[2] for k in self.cells}))

    @property
    def d_choices(self) -> tuple[int, ...]:
        """In-band d values (the categorical choices when --bottleneck-widths is given)."""
        return tuple(sorted({d for ds in self.cells.values() for d in ds}))

    @property
    def empty_cells(self) -> int:
        """Combinations of the categorical choices with no in-band d (rejected if proposed)."""
        total = len(self.depth_choices) * len(self.width_choices) * len(self.cardinality_choices)
        return total - len(self.cells)

    def spec(self, depths: str, width: int, cardinality: int, bottleneck_width: int) -> Spec:
        """The spec of a point of the space (no band check)."""
        return Spec(
            self.template,
            tuple(int(v) for v in depths.split("-")),
            width,
            cardinality,
            bottleneck_width,
            self.classes,
            self.resolution,
        )

    def contains(self, spec: Spec) -> bool:
        """Whether ``spec`` is one of the space's in-band configurations."""
        return self._skeleton_matches(spec) and spec.bottleneck_width in self.cells.get(
            (depths_key(spec.depths), spec.width, spec.cardinality), ()
        )

    def _skeleton_matches(self, spec: Spec) -> bool:
        sk = self.spec(depths_key(self.depths[0]), self.widths[0], 1, 1)
        return (spec.template, spec.classes, spec.resolution, spec.stem_width) == (
            sk.template,
            sk.classes,
            sk.resolution,
            sk.stem_width,
        )

    def params(self, spec: Spec) -> dict[str, Any]:
        """The Optuna parameters that :func:`nas.search.suggest.suggest_spec` turns into
        ``spec``."""
        return spec_params(spec)

    def trainable(self) -> list[Spec]:
        """Every spec a trial of this space may train."""
        return [c.spec for c in self.configs]

    def family(self) -> list[Config]:
        """The complexity-preserving (C, d) family: the closest config per skeleton and C."""
        return [c for c in self.configs if c.closest]

    def adjust(self, spec: Spec, name: str = "spec") -> Spec:
        """``spec``'s (C, d) on the space's skeleton, if that lands in band; else ValueError.

        The preset's own depths and width are kept when the space has them, otherwise each
        skeleton of the space is tried in order; template, classes and resolution are the space's.
        """
        deps = sorted(
            dict.fromkeys(self.depth_choices),
            key=lambda k: k != depths_key(spec.depths),
        )
        widths = sorted(self.width_choices, key=lambda w: w != spec.width)
        tried = []
        for dk in deps:
            for w in widths:
                cand = self.spec(dk, w, spec.cardinality, spec.bottleneck_width)
                if self.contains(cand):
                    return cand
                tried.append(cand)
        cx = complexity(tried[0])
        raise ValueError(
            f"--enqueue {name}: {spec.notation} lies outside the study's band "
            f"{self.budget.describe()} on every skeleton of the space (on {tried[0].template} "
            f"{depths_key(tried[0].depths)} w{tried[0].width} it has {cx.flops:.3g} FLOPs and "
            f"{cx.params:.3g} params), so it cannot be a trial; use --enqueue family for the "
            "in-band (C, d) family"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: stored with the study so that a resume checks it is the same space."""
        return {
            "budget": self.budget.to_dict(),
            "template": self.template,
            "depths": [list(d) for d in self.depths],
            "widths": list(self.widths),
            "cardinalities": list(self.cardinalities),
            "bottleneck_widths": (
                list(self.bottleneck_widths) if self.bottleneck_widths is not None else None
            ),
            "classes": self.spec(depths_key(self.depths[0]), self.widths[0], 1, 1).classes,
            "resolution": self.spec(depths_key(self.depths[0]), self.widths[0], 1, 1).resolution,
            "tune_lr": self.tune_lr,
            "tune_wd": self.tune_wd,
        }

    def describe(self) -> str:
        """One line: template, skeletons, band and size."""
        deps = ", ".join(self.depth_choices)
        ws = ",".join(map(str, self.width_choices))
        extra = "".join(
            f" + {p} (log-uniform)" for p, on in (("lr", self.tune_lr), ("wd", self.tune_wd)) if on
        )
        return (
            f"{len(self.configs)} {self.template} configurations (depths {deps}; width {ws}; "
            f"C {','.join(map(str, self.cardinality_choices))}) within "
            f"{self.budget.describe()}{extra}"
        )


@dataclass(frozen=True)
class SpecGrid:
    """A fixed list of specs, for a study that trains every one of them (with several seeds).

    The trials of such a study are all enqueued grid points (:func:`nas.search.study.enqueue_grid`);
    :func:`nas.search.suggest.suggest_spec` draws the same four parameters as for a
    :class:`SearchSpace`, so the trials read the same in ``trials`` and ``dashboard``. With a
    ``budget``, every spec must lie in its band (a Table 3 style grid at preserved complexity);
    without one, the specs may lie on any complexity (a Fig. 7 style series).
    """

    specs: tuple[Spec, ...]
    budget: Budget | None = None
    tune_lr: bool = field(default=False, init=False)
    tune_wd: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        specs = tuple(dict.fromkeys(self.specs))
        object.__setattr__(self, "specs", specs)
        if not specs:
            raise ValueError("a spec grid needs at least one spec")
        skeleton = {(s.template, s.classes, s.resolution, s.stem_width) for s in specs}
        if len(skeleton) > 1:
            raise ValueError("the specs of a grid must share template, classes and resolution")
        if self.budget is not None:
            out = [s for s in specs if not self.budget.contains(complexity(s))]
            if out:
                raise ValueError(
                    f"{', '.join(s.notation for s in out)} lie outside {self.budget.describe()}"
                )

    @property
    def template(self) -> str:
        """The template shared by the specs."""
        return self.specs[0].template

    def choices(self, name: str) -> tuple[Any, ...]:
        """The values of one Optuna parameter over the grid, sorted."""
        return tuple(sorted({self.params(s)[name] for s in self.specs}))

    def params(self, spec: Spec) -> dict[str, Any]:
        """The Optuna parameters of a spec (the names of :meth:`SearchSpace.params`)."""
        return spec_params(spec)

    def contains(self, spec: Spec) -> bool:
        """Whether ``spec`` is one of the grid's specs."""
        return spec in self.specs

    def trainable(self) -> list[Spec]:
        """Every spec a trial of this grid may train."""
        return list(self.specs)

    def family(self) -> list[Config]:
        """No baselines: every spec of a grid is trained anyway."""
        return []

    def adjust(self, spec: Spec, name: str = "spec") -> Spec:
        """A grid takes no ``--enqueue``: its specs are fixed."""
        raise ValueError(f"--enqueue {name}: a spec grid study trains its own specs only")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: stored with the study so that a resume checks it is the same grid."""
        return {
            "grid": [s.to_dict() for s in self.specs],
            "budget": self.budget.to_dict() if self.budget else None,
            "template": self.template,
        }

    def describe(self) -> str:
        """One line: the specs in the paper's notation and the band, if any."""
        s = self.specs[0]
        band = f" within {self.budget.describe()}" if self.budget else ""
        return (
            f"{len(self.specs)} {s.template} specs {', '.join(x.notation for x in self.specs)} "
            f"(depths {depths_key(s.depths)}, width {s.width}){band}"
        )
