"""Declarative study definitions that reproduce the paper's experiments at proxy scale."""

from studies import paper as _paper  # noqa: F401 (registers the definitions)
from studies.definition import (
    BudgetedSpace,
    GrowthSeries,
    PreservedComplexity,
    StudyDefinition,
    TrialBudget,
    definitions,
    get,
    names,
    register,
)
from studies.run import StudyRun, run_study

__all__ = [
    "BudgetedSpace",
    "GrowthSeries",
    "PreservedComplexity",
    "TrialBudget",
    "StudyDefinition",
    "StudyRun",
    "definitions",
    "get",
    "names",
    "register",
    "run_study",
]
