"""Declarative study definitions: what a study trains, how long, with which seeds, and why.

A :class:`StudyDefinition` names a paper experiment (or a starting point), cites where it comes
from, and holds a *design* that turns the dataset's classes and resolution into the study's
space: a :class:`~nas.search.space.SpecGrid` for the paper's fixed comparisons (every spec trained
with
every seed, no sampler, no pruning) or a :class:`~nas.search.space.SearchSpace` for a budgeted
search.
Definitions are registered by name (:func:`register`, :func:`get`, :func:`definitions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.search.confirm import ConfirmSettings
from nas.search.space import SearchSpace, SpecGrid
from nas.search.study import MAX_SEEDS, SearchSettings, check_trials
from nas.training.config import TrialBudget
from resnext.budget import DEFAULT_CARDINALITIES, Budget, generate
from resnext.complexity import complexity
from resnext.spec import Spec

# The built-in synthetic dataset: 10 classes of 32x32 images (nas.data).
DEFAULT_CLASSES = 10
DEFAULT_RESOLUTION = 32


@dataclass(frozen=True)
class PreservedComplexity:
    """Table 2: one d per C, taken from the template generator, at a reference's complexity.

    The budget is the FLOPs of the reference ``C x d`` on the skeleton (Table 2 preserves
    ResNet-50's 1x64d); for every cardinality the generator's closest in-band d is kept.
    """

    reference: tuple[int, int]  # (C, d) whose FLOPs are the budget
    cardinalities: tuple[int, ...]
    template: str = "cifar"
    depths: tuple[int, ...] = (1, 1, 1)
    width: int = 32
    tolerance: float = 0.05

    def budget(self, classes: int, resolution: int) -> Budget:
        """The FLOP band around the reference's complexity."""
        c, d = self.reference
        ref = Spec(self.template, self.depths, self.width, c, d, classes, resolution)
        return Budget(float(complexity(ref).flops), None, self.tolerance)

    def space(self, classes: int, resolution: int) -> SpecGrid:
        """The closest in-band spec of every cardinality; ValueError if one has none."""
        budget = self.budget(classes, resolution)
        configs = generate(
            budget,
            self.template,
            [self.depths],
            (self.width,),
            self.cardinalities,
            None,
            classes,
            resolution,
        )
        closest = {c.spec.cardinality: c.spec for c in configs if c.closest}
        missing = [c for c in self.cardinalities if c not in closest]
        if missing:
            raise ValueError(
                f"no d puts C={','.join(map(str, missing))} within {budget.describe()} on "
                f"{self.template} {'-'.join(map(str, self.depths))} w{self.width}"
            )
        return SpecGrid(tuple(closest[c] for c in self.cardinalities), budget)


@dataclass(frozen=True)
class GrowthSeries:
    """Fig. 7: a cardinality series at fixed d against a width series at C=1.

    The cardinality series is ``C x d`` for each C; the width series ``1 x (f d)`` for each
    factor f. Both start at ``1 x d`` and grow the model; they lie on different complexity
    levels, so the grid has no budget.
    """

    bottleneck_width: int
    cardinalities: tuple[int, ...]
    width_factors: tuple[int, ...]
    template: str = "cifar"
    depths: tuple[int, ...] = (1, 1, 1)
    width: int = 32

    def _spec(self, c: int, d: int, classes: int, resolution: int) -> Spec:
        return Spec(self.template, self.depths, self.width, c, d, classes, resolution)

    def cardinality_series(self, classes: int, resolution: int) -> tuple[Spec, ...]:
        """``C x d`` for each C, at the fixed d."""
        d = self.bottleneck_width
        return tuple(self._spec(c, d, classes, resolution) for c in self.cardinalities)

    def width_series(self, classes: int, resolution: int) -> tuple[Spec, ...]:
        """``1 x d``, then ``1 x (f d)`` for each factor f."""
        ds = (1, *self.width_factors)
        return tuple(self._spec(1, f * self.bottleneck_width, classes, resolution) for f in ds)

    def space(self, classes: int, resolution: int) -> SpecGrid:
        """Both series (``1 x d`` once)."""
        return SpecGrid(
            self.cardinality_series(classes, resolution) + self.width_series(classes, resolution)
        )


@dataclass(frozen=True)
class BudgetedSpace:
    """A search space: every configuration of a grid within a budget band (``search``'s)."""

    flops: float | None = 8e6
    params: float | None = None
    tolerance: float = 0.1
    template: str = "cifar"
    depths: tuple[tuple[int, ...], ...] = ((1, 1, 1), (2, 2, 2))
    widths: tuple[int, ...] = (32,)
    cardinalities: tuple[int, ...] = DEFAULT_CARDINALITIES

    def space(self, classes: int, resolution: int) -> SearchSpace:
        """The in-band configurations at the dataset's classes and resolution."""
        return SearchSpace(
            Budget(self.flops, self.params, self.tolerance),
            self.template,
            self.depths,
            self.widths,
            self.cardinalities,
            None,
            classes,
            resolution,
        )


@dataclass(frozen=True)
class StudyDefinition:
    """A named, cited study: its design, seeds, trial count, trial budget and search settings.

    A grid study (the design gives a :class:`SpecGrid`) trains every (spec, seed) once, so its
    trial count is the grid size times ``seeds``; a search study runs ``trials`` trials.
    """

    name: str
    title: str
    citation: str  # the table or figure of the paper it reproduces, or its basis
    measures: str  # one line: what the study measures
    description: str
    design: PreservedComplexity | GrowthSeries | BudgetedSpace
    trial_budget: TrialBudget = TrialBudget()
    seeds: int = 3  # grid studies: training seeds 0..seeds-1 of every spec
    trials: int | None = None  # search studies: trained trials; None for a grid
    objectives: tuple[str, ...] = ("error",)
    sampler: str = "tpe"
    pruner: str = "none"
    enqueue: tuple[str, ...] = ()
    # Search studies: the confirmation phase after the trials (``search``'s default).
    confirm: ConfirmSettings = ConfirmSettings()

    def __post_init__(self) -> None:
        grid = self.is_grid
        if grid and (self.trials is not None or self.pruner != "none" or self.enqueue):
            raise ValueError(f"{self.name}: a grid study has no trial count, pruner or enqueue")
        if not grid and (self.trials is None or self.trials < 1):
            raise ValueError(f"{self.name}: a search study needs a positive trial count")
        if self.seeds < 1:
            raise ValueError(f"{self.name}: seeds must be a positive integer")
        self.settings()  # objectives, sampler and pruner are valid

    def space(
        self, classes: int = DEFAULT_CLASSES, resolution: int = DEFAULT_RESOLUTION
    ) -> SearchSpace | SpecGrid:
        """The study's space at the dataset's classes and resolution."""
        return self.design.space(classes, resolution)

    @property
    def is_grid(self) -> bool:
        """Whether the study trains a fixed grid of (spec, seed) points."""
        return not isinstance(self.design, BudgetedSpace)

    def n_trials(
        self,
        seeds: int | None = None,
        classes: int = DEFAULT_CLASSES,
        resolution: int = DEFAULT_RESOLUTION,
    ) -> int:
        """Trained trials of the whole study: grid size times seeds, or ``trials``.

        ValueError for ``seeds`` below 1, or given to a search study.
        """
        if seeds is not None and not 1 <= seeds <= MAX_SEEDS:
            raise ValueError(
                f"--seeds must be a positive integer up to {MAX_SEEDS:,}, got {seeds:,}"
            )
        if seeds is not None and not self.is_grid:
            raise ValueError(f"--seeds applies to grid studies; {self.name} is a search")
        space = self.space(classes, resolution)
        if isinstance(space, SpecGrid):
            n = len(space.specs) * (seeds or self.seeds)
            check_trials(n, f"--seeds {seeds or self.seeds} over {len(space.specs)} specs")
            return n
        assert self.trials is not None
        return self.trials

    def settings(
        self,
        study: str | None = None,
        classes: int = DEFAULT_CLASSES,
        resolution: int = DEFAULT_RESOLUTION,
        *,
        latency: bool = True,
        runs_dir: Path | None = None,
    ) -> SearchSettings:
        """The :class:`nas.search.study.SearchSettings` of a run; trials save weights in
        ``runs_dir``.

        A search study ends in its confirmation phase; a grid study measures every
        point with its seeds already and has none.
        """
        return SearchSettings(
            self.space(classes, resolution),
            study or self.name,
            self.objectives,
            self.sampler,
            self.pruner,
            0,
            self.enqueue,
            latency,
            runs_dir,
            None if self.is_grid else self.confirm,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary, as ``study list --json`` prints it."""
        space = self.space()
        return {
            "name": self.name,
            "title": self.title,
            "citation": self.citation,
            "measures": self.measures,
            "description": self.description,
            "kind": "grid" if self.is_grid else "search",
            "space": space.describe(),
            "seeds": self.seeds if self.is_grid else None,
            "trials": self.n_trials(),
            "schedule": {
                "epochs": self.trial_budget.epochs,
                "batch_size": self.trial_budget.batch_size,
                "lr": self.trial_budget.lr,
                "train_images": self.trial_budget.train_images,
                "val_fraction": self.trial_budget.val_fraction,
            },
            "objectives": list(self.objectives),
            "sampler": self.sampler,
            "pruner": self.pruner,
        }


_REGISTRY: dict[str, StudyDefinition] = {}


def register(definition: StudyDefinition) -> StudyDefinition:
    """Add a definition to the registry; a second one of the same name is a ValueError."""
    if definition.name in _REGISTRY:
        raise ValueError(f"a study named {definition.name!r} is already registered")
    _REGISTRY[definition.name] = definition
    return definition


def names() -> list[str]:
    """The registered study names, in registration order."""
    return list(_REGISTRY)


def definitions() -> list[StudyDefinition]:
    """The registered definitions, in registration order."""
    return list(_REGISTRY.values())


def get(name: str) -> StudyDefinition:
    """The definition of that name; ValueError listing the names if there is none."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown study {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]
