"""The template generator: every (C, d, depths, width) whose complexity lies in a budget band.

Complexity grows strictly with d at fixed C (every conv in a block is at least linear in C*d),
so for each template skeleton (template, depths, width) the generator finds the largest d that
can still fit by doubling, then counts the whole (C, d) grid in one vectorised pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from resnext.complexity import Complexity, complexity, complexity_grid
from resnext.spec import DEFAULT_DEPTHS, LIMITS, Spec

DEFAULT_CARDINALITIES = (1, 2, 4, 8, 16, 32, 64)
MAX_BOTTLENECK_WIDTH = LIMITS["bottleneck width"]  # beyond: the budget is not a ResNeXt budget
# Issue 12: a grid is counted in memory at once (about 200 bytes a cell), so its size is capped;
# 4,096 cardinalities x 5,000 widths took 3.25 GB. The cap is 1,048,576 cells in all.
MAX_GRID_CELLS = 1 << 20
INT64_MAX = int(np.iinfo(np.int64).max)  # the grid is counted in int64
METRICS = ("flops", "params")


@dataclass(frozen=True)
class Budget:
    """A FLOP and/or parameter target with a relative tolerance band around it."""

    flops: float | None = None
    params: float | None = None
    tolerance: float = 0.05

    def __post_init__(self) -> None:
        if self.flops is None and self.params is None:
            raise ValueError("give a budget: --flops, --params, or both")
        for name in METRICS:
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value > 0):
                raise ValueError(f"the {name} budget must be a positive number, got {value:g}")
        if not 0 < self.tolerance < 1:
            raise ValueError(
                f"the tolerance must lie strictly between 0 and 1, got {self.tolerance:g}"
            )

    def targets(self) -> dict[str, float]:
        """The metrics that are budgeted, with their targets."""
        return {m: getattr(self, m) for m in METRICS if getattr(self, m) is not None}

    def deviation(self, cx: Complexity) -> Any:
        """Largest relative deviation from a target over the budgeted metrics."""
        devs = [np.abs(getattr(cx, m) - t) / t for m, t in self.targets().items()]
        return np.maximum.reduce(devs) if len(devs) > 1 else devs[0]

    def contains(self, cx: Complexity) -> Any:
        """Whether ``cx`` lies inside the band (elementwise for arrays)."""
        return self.deviation(cx) <= self.tolerance

    def describe(self) -> str:
        """E.g. ``4.1e+09 FLOPs ±5%``."""
        parts = [
            f"{t:.3g} {'FLOPs' if m == 'flops' else 'params'}" for m, t in self.targets().items()
        ]
        return f"{' and '.join(parts)} ±{self.tolerance:.0%}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"flops": self.flops, "params": self.params, "tolerance": self.tolerance}


@dataclass(frozen=True)
class Config:
    """One configuration inside a budget band, with its marks."""

    spec: Spec
    complexity: Complexity
    deviation: float  # largest relative deviation from a budgeted target
    closest: bool = False  # closest to the budget among configs of its skeleton and C
    pareto: bool = False  # on the (params, FLOPs) Pareto front of the band

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``budget --json``."""
        s = self.spec
        return {
            "template": s.template,
            "cardinality": s.cardinality,
            "bottleneck_width": s.bottleneck_width,
            "depths": list(s.depths),
            "width": s.width,
            "classes": s.classes,
            "resolution": s.resolution,
            **self.complexity.to_dict(),
            "deviation": self.deviation,
            "closest": self.closest,
            "pareto": self.pareto,
        }


def _d_limit(skeleton: Spec, c_min: int, budget: Budget) -> int:
    """A d past which no C >= c_min fits under the band's upper edge."""
    hi = {m: t * (1 + budget.tolerance) for m, t in budget.targets().items()}
    d = 1
    while d <= MAX_BOTTLENECK_WIDTH:
        # Exact Python ints: a huge budget stops here, before any int64 could overflow.
        cx = complexity(replace(skeleton, cardinality=c_min, bottleneck_width=d))
        if any(getattr(cx, m) > h for m, h in hi.items()):
            return d
        d *= 2
    raise ValueError(
        f"the budget {budget.describe()} needs a bottleneck width beyond {MAX_BOTTLENECK_WIDTH} "
        "for this template; use more blocks or a wider template"
    )


def _check_at_most(name: str, value: int, limit: int) -> None:
    if value > limit:
        raise ValueError(f"{name} must be at most {limit:,} (the spec's limit), got {value:,}")


def _fits_int64(skeleton: Spec, c: int, d: int) -> bool:
    """Whether every count of ``skeleton`` with (C, d) = (c, d) fits in int64 (exact ints)."""
    cx = complexity(replace(skeleton, cardinality=c, bottleneck_width=d))
    return max(cx.flops, cx.params, cx.activations) <= INT64_MAX


def _check_int64(skeleton: Spec, cards: Sequence[int], d_max: int, given_d: bool) -> None:
    """Refuse a grid whose counts would overflow int64, naming the option that pushes them over.

    Every count grows with C and with d, so the grid's largest corner bounds it. Within the
    spec's limits a network with C = d = 1 fits, so the culprit is the cardinalities if the
    largest overflows at d = 1, else the bottleneck widths (or the budget that sets them).
    """
    if _fits_int64(skeleton, cards[-1], d_max):
        return
    where = (
        f"depths {'-'.join(map(str, skeleton.depths))}, width {skeleton.width}, "
        f"{skeleton.resolution}x{skeleton.resolution} input, {skeleton.classes} classes"
    )
    if not _fits_int64(skeleton, cards[-1], 1):
        culprit = f"--cardinalities (up to {cards[-1]:,})"
    elif given_d:
        culprit = f"--bottleneck-widths (up to {d_max:,})"
    else:
        culprit = f"the budget (it asks for bottleneck widths up to {d_max:,})"
    raise ValueError(
        f"the grid's counts for {where} exceed {INT64_MAX:.3g}, the largest that int64 holds; "
        f"lower {culprit}"
    )


def pareto_mask(params: np.ndarray, flops: np.ndarray) -> np.ndarray:
    """True where no other point has params <= and flops <= with one strictly smaller.

    Both axes are minimised, so any two costs work (the search passes FLOPs and error).
    """
    order = np.lexsort((flops, params))  # by params, ties by flops
    mask = np.zeros(len(params), dtype=bool)
    best, best_params = np.inf, None
    for i in order:
        if flops[i] < best:
            mask[i] = True
            best, best_params = flops[i], params[i]
        elif flops[i] == best and params[i] == best_params:
            mask[i] = True  # a duplicate of a front point is not dominated by it
    return mask


def generate(
    budget: Budget,
    template: str = "imagenet",
    depths: Iterable[Sequence[int]] | None = None,
    widths: Iterable[int] = (256,),
    cardinalities: Iterable[int] = DEFAULT_CARDINALITIES,
    bottleneck_widths: Iterable[int] | None = None,
    classes: int = 0,
    resolution: int = 0,
) -> list[Config]:
    """Every configuration of the grid inside the budget band, sorted and marked.

    The grid is depths x widths x cardinalities x bottleneck widths (every integer d by default).
    Raises ValueError with the nearest miss when the band holds no configuration.
    """
    depths_list = (
        [tuple(d) for d in depths] if depths is not None else [DEFAULT_DEPTHS.get(template, ())]
    )
    cards = sorted(set(cardinalities))
    if not cards or cards[0] < 1:
        raise ValueError(f"cardinalities must be positive integers, got {cards}")
    _check_at_most("cardinalities", cards[-1], LIMITS["cardinality"])
    d_given = sorted(set(bottleneck_widths)) if bottleneck_widths is not None else None
    if d_given is not None and (not d_given or d_given[0] < 1):
        raise ValueError(f"bottleneck widths must be positive integers, got {d_given}")
    if d_given is not None:
        _check_at_most("bottleneck widths", d_given[-1], LIMITS["bottleneck width"])
    widths = sorted(set(widths))
    skeletons = [
        # The spec validates the skeleton once; C and d are then swept as arrays.
        Spec(template, dep, width, cards[0], 1, classes, resolution)
        for dep in depths_list
        for width in widths
    ]
    d_counts = [len(d_given) if d_given else _d_limit(s, cards[0], budget) for s in skeletons]
    cells = len(cards) * sum(d_counts)
    if cells > MAX_GRID_CELLS:
        raise ValueError(
            f"the grid has {cells:,} cells ({len(skeletons)} depths x widths, {len(cards)} "
            f"cardinalities, {sum(d_counts):,} bottleneck widths in all), more than the "
            f"{MAX_GRID_CELLS:,} counted at once; give fewer --cardinalities, "
            "--bottleneck-widths, --depths or --widths, or a smaller budget"
        )
    found: list[Config] = []
    nearest: tuple[float, Spec, Complexity] | None = None
    for skeleton, d_count in zip(skeletons, d_counts, strict=True):
        d_values = d_given or range(1, d_count + 1)
        _check_int64(skeleton, cards, d_values[-1], d_given is not None)
        c_arr, d_arr = np.meshgrid(np.array(cards), np.array(list(d_values)), indexing="ij")
        cx = complexity_grid(skeleton, c_arr, d_arr)
        dev = budget.deviation(cx)
        j = np.unravel_index(np.argmin(dev), dev.shape)
        if nearest is None or dev[j] < nearest[0]:
            nearest = (
                float(dev[j]),
                replace(skeleton, cardinality=int(c_arr[j]), bottleneck_width=int(d_arr[j])),
                Complexity(int(cx.flops[j]), int(cx.params[j]), int(cx.activations[j])),
            )
        for i, k in zip(*np.nonzero(dev <= budget.tolerance), strict=True):
            spec = replace(
                skeleton, cardinality=int(c_arr[i, k]), bottleneck_width=int(d_arr[i, k])
            )
            found.append(
                Config(
                    spec,
                    Complexity(
                        int(cx.flops[i, k]), int(cx.params[i, k]), int(cx.activations[i, k])
                    ),
                    float(dev[i, k]),
                )
            )
    if not found:
        assert nearest is not None
        _, spec, cx = nearest
        raise ValueError(
            f"no configuration lies within {budget.describe()}; the nearest is "
            f"{spec.describe()} ({spec.notation}) with {cx.flops:.3g} FLOPs and "
            f"{cx.params:.3g} params: widen --tolerance or change the budget or grid"
        )
    return _mark(found)


def _mark(configs: list[Config]) -> list[Config]:
    """Sort by skeleton, C, d; mark the closest per (skeleton, C) and the Pareto front."""

    def skey(c: Config) -> tuple:
        return (c.spec.depths, c.spec.width, c.spec.cardinality)

    configs = sorted(configs, key=lambda c: (*skey(c), c.spec.bottleneck_width))
    best: dict[tuple, Config] = {}
    for c in configs:
        if skey(c) not in best or c.deviation < best[skey(c)].deviation:
            best[skey(c)] = c
    front = pareto_mask(
        np.array([c.complexity.params for c in configs]),
        np.array([c.complexity.flops for c in configs]),
    )
    closest = {id(c) for c in best.values()}
    return [
        replace(c, closest=id(c) in closest, pareto=bool(p))
        for c, p in zip(configs, front, strict=True)
    ]
