"""Running a study definition with :func:`nas.search.workers.run_search` (workers, resume, retries).

A grid study queues every (spec, seed) point that its storage has not trained, is not running
and has not queued (:func:`nas.search.study.enqueue_grid`), then runs until the study-wide count is
the
grid size: a re-run after a crash trains only what is missing, and each point exactly once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from nas.data import Dataset
from nas.search.attrs import is_trained_proxy
from nas.search.space import SpecGrid
from nas.search.storage import HEARTBEAT, load, open_storage, storage_url
from nas.search.study import (
    STALE,
    Progress,
    drop_queue,
    enqueue_grid,
    grid_key,
    grid_point,
    prepare,
)
from nas.search.workers import WorkerReport, run_search
from nas.training.config import TrainConfig
from studies.definition import StudyDefinition


@dataclass
class StudyRun:
    """What one run of a study definition did."""

    study: str
    trials: int  # the study-wide count it ran to
    queued: int = 0  # grid points queued by this run
    missing: list[str] = field(default_factory=list)  # grid points still untrained, "8x6d seed 2"
    reports: list[WorkerReport] = field(default_factory=list)
    wall_seconds: float = 0.0


def missing_points(study_name: str, storage: str | None, grid: SpecGrid, seeds: int) -> list[str]:
    """The grid points that no counted trial of the study has trained, as "CxDd seed N"."""
    done = {
        grid_key(t)
        for t in load(study_name, storage).get_trials(deepcopy=False)
        if is_trained_proxy(t)
    }
    return [
        f"{spec.notation} seed {seed}"
        for spec in grid.specs
        for seed in range(seeds)
        if grid_point(grid.params(spec), seed) not in done
    ]


def run_study(
    definition: StudyDefinition,
    data: Dataset,
    *,
    study: str | None = None,
    storage: str | None = None,
    seeds: int | None = None,
    train: TrainConfig | None = None,
    workers: int = 1,
    trials_per_gpu: int = 1,
    latency: bool = True,
    heartbeat: int = HEARTBEAT,
    progress: Progress | None = None,
    runs_dir: Path | None = None,
) -> StudyRun:
    """Run (or resume) ``definition`` on ``data`` until every grid point or trial is trained.

    ``train`` is how every trial trains (None: the definition's trial budget, on the device
    "auto" stands for); ``workers`` and ``trials_per_gpu`` are
    :func:`nas.search.workers.run_search`'s.
    """
    n = definition.n_trials(seeds, data.classes, data.resolution)
    seeds = seeds or definition.seeds
    url = storage_url(storage)
    settings = definition.settings(
        study, data.classes, data.resolution, latency=latency, runs_dir=runs_dir
    )
    train = train or definition.trial_budget.train_config()
    t0 = time.perf_counter()
    run = StudyRun(settings.study, n)
    grid = settings.space if isinstance(settings.space, SpecGrid) else None
    target = n
    if grid is not None:
        handle, _ = prepare(settings, storage=url, n_trials=n)
        # Points of an earlier run with other --seeds are not this run's grid: their queue is
        # dropped, and those already trained stay but do not fill this run's count.
        wanted = {grid_point(grid.params(s), seed) for s in grid.specs for seed in range(seeds)}
        drop_queue(open_storage(url), settings.study, lambda t: grid_key(t) in wanted, STALE)
        others = sum(is_trained_proxy(t) and grid_key(t) not in wanted for t in handle.get_trials())
        target = n + others
        run.queued = enqueue_grid(handle, grid, range(seeds))
    run.reports = run_search(
        settings,
        data,
        train,
        target,
        storage=url,
        workers=workers,
        trials_per_gpu=trials_per_gpu,
        heartbeat=heartbeat,
        progress=progress,
    )
    if grid is not None:
        run.missing = missing_points(settings.study, url, grid, seeds)
    run.wall_seconds = time.perf_counter() - t0
    return run
