"""The template generator: every (C, d, depths, width) whose complexity lies in a budget band.

Complexity grows strictly with d at fixed C (every conv in a block is at least linear in C*d),
so for each template skeleton (template, depths, width) the generator finds the largest d that
can still fit by doubling, then counts the whole (C, d) grid in one vectorised pass. The band is
kept as columns (:class:`Band`), so its size, marks and nearest rows cost milliseconds and a few
bytes a row; a :class:`Config` object is made only for a row that is shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from resnext.complexity import Complexity, complexity, complexity_grid
from resnext.spec import DEFAULT_DEPTHS, LIMITS, Spec

DEFAULT_CARDINALITIES = (1, 2, 4, 8, 16, 32, 64)
MAX_BOTTLENECK_WIDTH = LIMITS["bottleneck width"]  # beyond: the budget is not a ResNeXt budget
# A grid is counted in memory at once (about 200 bytes a cell), so its size is capped;
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

    def offset(self, cx: Complexity) -> Any:
        """Signed relative offset from the target of the budgeted metric furthest from its own:
        ``+0.044`` is 4.4% over, ``-0.031`` 3.1% under; its size is :meth:`deviation`."""
        offs = [(getattr(cx, m) - t) / t for m, t in self.targets().items()]
        if len(offs) == 1:
            return offs[0]
        return np.where(np.abs(offs[0]) >= np.abs(offs[1]), offs[0], offs[1])

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
        s, cx = self.spec, self.complexity
        return _row_dict(
            s, s.cardinality, s.bottleneck_width, cx.flops, cx.params, cx.activations,
            self.deviation, self.closest, self.pareto,
        )  # fmt: skip


def _row_dict(
    skeleton: Spec,
    c: int,
    d: int,
    flops: int,
    params: int,
    activations: int,
    deviation: float,
    closest: bool,
    pareto: bool,
) -> dict[str, Any]:
    """One configuration's JSON form: ``skeleton`` with (C, d) = (c, d) and its counts."""
    return {
        "template": skeleton.template,
        "cardinality": c,
        "bottleneck_width": d,
        "depths": list(skeleton.depths),
        "width": skeleton.width,
        "classes": skeleton.classes,
        "resolution": skeleton.resolution,
        "flops": int(flops),
        "params": int(params),
        "activations": int(activations),
        "deviation": deviation,
        "closest": closest,
        "pareto": pareto,
    }


@dataclass(frozen=True, eq=False)
class Band:
    """Every configuration of a grid inside a budget band, as columns: row i is one configuration.

    Rows are sorted by skeleton (depths, then width), then C, then d. ``skeleton`` indexes
    ``skeletons``; the other columns are the row's C, d, counts, deviation and marks.
    """

    budget: Budget
    skeletons: tuple[Spec, ...]
    skeleton: np.ndarray
    cardinality: np.ndarray
    bottleneck_width: np.ndarray
    flops: np.ndarray
    params: np.ndarray
    activations: np.ndarray
    deviation: np.ndarray
    closest: np.ndarray  # closest to the budget among rows of its skeleton and C
    pareto: np.ndarray  # on the (params, FLOPs) Pareto front of the band

    def __len__(self) -> int:
        return len(self.deviation)

    def nearest(self, n: int) -> np.ndarray:
        """The rows of the ``n`` configurations closest to the budget, in table order.

        Ties in deviation go to the earlier row, so the choice is the same on every run.
        """
        if n >= len(self):
            return np.arange(len(self))
        return np.sort(np.argsort(self.deviation, kind="stable")[:n])

    def configs(self, rows: Iterable[int] | None = None) -> Iterator[Config]:
        """A :class:`Config` for each of ``rows`` (all by default), made as it is asked for."""
        for i in range(len(self)) if rows is None else rows:
            skeleton = self.skeletons[int(self.skeleton[i])]
            yield Config(
                replace(
                    skeleton,
                    cardinality=int(self.cardinality[i]),
                    bottleneck_width=int(self.bottleneck_width[i]),
                ),
                Complexity(int(self.flops[i]), int(self.params[i]), int(self.activations[i])),
                float(self.deviation[i]),
                bool(self.closest[i]),
                bool(self.pareto[i]),
            )

    def dicts(self, chunk: int = 4096) -> Iterator[dict[str, Any]]:
        """Every row's JSON form (that of :meth:`Config.to_dict`), without building specs.

        Columns are turned into Python values ``chunk`` rows at a time, so memory holds one
        chunk of dicts whatever the band's size.
        """
        for start in range(0, len(self), chunk):
            part = slice(start, start + chunk)
            columns = (
                self.skeleton[part].tolist(),
                self.cardinality[part].tolist(),
                self.bottleneck_width[part].tolist(),
                self.flops[part].tolist(),
                self.params[part].tolist(),
                self.activations[part].tolist(),
                self.deviation[part].tolist(),
                self.closest[part].tolist(),
                self.pareto[part].tolist(),
            )
            for k, *rest in zip(*columns, strict=True):
                yield _row_dict(self.skeletons[k], *rest)


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
    Vectorised: in (params, flops) order a point is on the front when its flops are below every
    earlier point's; copies of one point share its mark (a duplicate does not dominate).
    """
    params, flops = np.asarray(params), np.asarray(flops)
    mask = np.zeros(len(params), dtype=bool)
    if not len(params):
        return mask
    order = np.lexsort((flops, params))  # by params, ties by flops
    p, f = params[order], flops[order]
    # fmin skips NaN: a point with no cost is on no front and hides none.
    earlier = np.fmin.accumulate(np.concatenate(([np.inf], f[:-1])))
    new = np.concatenate(([True], (p[1:] != p[:-1]) | (f[1:] != f[:-1])))
    group = np.cumsum(new) - 1  # copies of one point are one group, its first member leads
    mask[order] = (f < earlier)[new][group]
    return mask


def scan(
    budget: Budget,
    template: str = "imagenet",
    depths: Iterable[Sequence[int]] | None = None,
    widths: Iterable[int] = (256,),
    cardinalities: Iterable[int] = DEFAULT_CARDINALITIES,
    bottleneck_widths: Iterable[int] | None = None,
    classes: int = 0,
    resolution: int = 0,
) -> Band:
    """Every configuration of the grid inside the budget band, as a marked :class:`Band`.

    The grid is depths x widths x cardinalities x bottleneck widths (every integer d by default);
    a value given twice counts once. Raises ValueError with the nearest miss when the band holds
    no configuration.
    """
    depths_list = (
        list(dict.fromkeys(tuple(d) for d in depths))
        if depths is not None
        else [DEFAULT_DEPTHS.get(template, ())]
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
    skeletons = sorted(
        (
            # The spec validates the skeleton once; C and d are then swept as arrays.
            Spec(template, dep, width, cards[0], 1, classes, resolution)
            for dep in depths_list
            for width in widths
        ),
        key=lambda s: (s.depths, s.width),  # table order; repeated depths were dropped above
    )
    d_counts = [len(d_given) if d_given else _d_limit(s, cards[0], budget) for s in skeletons]
    cells = len(cards) * sum(d_counts)
    if cells > MAX_GRID_CELLS:
        raise ValueError(
            f"the grid has {cells:,} cells ({len(skeletons)} depths x widths, {len(cards)} "
            f"cardinalities, {sum(d_counts):,} bottleneck widths in all), more than the "
            f"{MAX_GRID_CELLS:,} counted at once; give fewer --cardinalities, "
            "--bottleneck-widths, --depths or --widths, or a smaller budget"
        )
    parts: list[tuple[np.ndarray, ...]] = []
    nearest: tuple[float, Spec, Complexity] | None = None
    for k, (skeleton, d_count) in enumerate(zip(skeletons, d_counts, strict=True)):
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
        inside = dev <= budget.tolerance  # C-major, so rows come out sorted by C, then d
        parts.append(
            (
                np.full(int(inside.sum()), k, dtype=np.int32),
                *(
                    np.asarray(a, dtype=np.int64)[inside]
                    for a in (c_arr, d_arr, cx.flops, cx.params, cx.activations)
                ),
                np.asarray(dev, dtype=np.float64)[inside],
            )
        )
    sk, c, d, flops, params, acts, dev = (np.concatenate(col) for col in zip(*parts, strict=True))
    if not len(dev):
        assert nearest is not None
        _, spec, cx = nearest
        raise ValueError(
            f"no configuration lies within {budget.describe()}; the nearest is "
            f"{spec.describe()} ({spec.notation}) with {cx.flops:.3g} FLOPs and "
            f"{cx.params:.3g} params: widen --tolerance or change the budget or grid"
        )
    return Band(
        budget, tuple(skeletons), sk, c, d, flops, params, acts, dev,
        _closest_mask(sk, c, d, dev), pareto_mask(params, flops),
    )  # fmt: skip


def _closest_mask(
    skeleton: np.ndarray, c: np.ndarray, d: np.ndarray, deviation: np.ndarray
) -> np.ndarray:
    """True on the row closest to the budget of each (skeleton, C); a tie goes to the lower d."""
    order = np.lexsort((d, deviation, c, skeleton))
    sk, cs = skeleton[order], c[order]
    first = np.concatenate(([True], (sk[1:] != sk[:-1]) | (cs[1:] != cs[:-1])))
    mask = np.zeros(len(order), dtype=bool)
    mask[order[first]] = True
    return mask


def generate(budget: Budget, *args: Any, **kwargs: Any) -> list[Config]:
    """Every configuration of the grid inside the budget band, sorted and marked: the rows of
    :func:`scan` (same arguments) as :class:`Config` objects.

    Raises ValueError with the nearest miss when the band holds no configuration.
    """
    return list(scan(budget, *args, **kwargs).configs())
