"""Optuna studies over a :class:`~nas.space.SearchSpace`: storage, objective, workers, Pareto.

One study lives in one Optuna storage (a SQLite file by default, any Optuna RDB URL otherwise),
so the same command started on several machines against one PostgreSQL URL makes one study.
Each worker takes trials until the *study-wide* number of trained trials is reached, counted from
the storage and not per process. Heartbeats mark a killed worker's trial failed and queue it
again, so a crash loses at most the trials that were running.

Trial states as shown to people:

- ``COMPLETE``: trained to the end (or stopped early by the trainer);
- ``PRUNED``: stopped by the pruner after some epochs;
- ``rejected``: a proposal with no in-band configuration, refused before any model existed;
- ``surplus``: a trial asked for after the study-wide count was reached by another worker, or,
  in a grid study (:class:`~nas.space.SpecGrid`), a second copy of a (spec, seed) point or a
  trial that is no grid point; nothing ran (Optuna has no way to take an ask back, so it is
  recorded as pruned);
- ``FAIL``: a worker died in it (a retry is queued) or it raised.

Only ``COMPLETE`` and ``PRUNED`` trials count towards ``--trials``.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import queue
import re
import socket
import time
import warnings
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.data import Dataset
from nas.space import (
    OutOfBudget,
    SearchSpace,
    SpecGrid,
    depths_key,
    suggest_hparams,
    suggest_spec,
)
from resnext.budget import pareto_mask
from resnext.complexity import complexity
from resnext.registry import preset
from resnext.spec import Spec

DEFAULT_STUDY = "resnext-search"
DEFAULT_STORAGE = "sqlite:///resnext-nas.db"
STORAGE_ENV = "RESNEXT_NAS_STORAGE"
OBJECTIVES = ("error", "flops", "params", "latency", "activations")
SAMPLERS = ("tpe", "nsga2", "random")
PRUNERS = ("hyperband", "median", "none")
# Heartbeat: a running trial writes a beat every HEARTBEAT seconds; one silent for
# GRACE_BEATS beats is failed by the next worker that asks for a trial, and queued again.
HEARTBEAT = 10
GRACE_BEATS = 3
MAX_RETRY = 2  # a trial killed three times is left failed (it may be what kills the worker)
MAX_FAILURES = 3  # a worker whose trials raise this many times in a row stops
SQLITE_TIMEOUT = 60  # seconds a SQLite writer waits for the lock before "database is locked"
ATTR = "resnext_nas"  # the study user attribute holding the space and objectives
WEIGHTS = "weights.pt"  # a trial's final weights, in its run folder
_WEIGHTS_FORMAT = 1

Progress = Callable[[int, dict[str, Any]], None]


# ----------------------------------------------------------------------------------- storage


def storage_url(url: str | None = None) -> str:
    """``url``, else ``$RESNEXT_NAS_STORAGE``, else a SQLite file in the working directory."""
    return url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def _sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other backends and in-memory databases)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[-1] if ":///" in url else ""
    return Path(path) if path and path != ":memory:" else None


def _serialise_sqlite_writes(engine: Any) -> None:
    """Begin every SQLite transaction with BEGIN IMMEDIATE.

    pysqlite's deferred transactions take the write lock only at the first write; when two
    processes both read first, the later upgrade fails at once with "database is locked" instead
    of waiting (SQLite's busy handler cannot resolve that deadlock). Taking the lock up front
    makes every contender wait in the busy handler, for up to SQLITE_TIMEOUT seconds.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" below open it
        # Write-ahead log: readers (``trials``, heartbeats' checks) do not block the writer,
        # and a commit appends instead of rewriting pages. synchronous=NORMAL syncs at
        # checkpoints, not every commit: a power cut may lose the last commits, never the file.
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # pooled connections were opened before the listeners


def open_storage(
    url: str | None = None, *, heartbeat: int = HEARTBEAT, must_exist: bool = False
) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage with heartbeats; ValueError naming the URL if it cannot be used."""
    import sqlalchemy.exc

    url = storage_url(url)
    path = _sqlite_path(url)
    if must_exist and path is not None and not path.exists():
        raise ValueError(f"no study database at {path} (storage {url}); run `resnext-nas search`")
    if path is not None and not path.parent.is_dir():
        raise ValueError(f"cannot open storage {url}: folder {path.parent} does not exist")
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT}}
    elif url.startswith("postgresql"):
        kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeats are "experimental" since Optuna 2.9
        try:
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=kwargs,
                heartbeat_interval=heartbeat,
                grace_period=heartbeat * GRACE_BEATS,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=MAX_RETRY
                ),
            )
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"cannot open storage {redact(url)}: {first}") from None
    if url.startswith("sqlite"):
        _serialise_sqlite_writes(storage.engine)
    return storage


# ------------------------------------------------------------------------------------ studies


@dataclass(frozen=True)
class SearchSettings:
    """What a study is: its name, space and objectives, and how it is searched."""

    space: SearchSpace | SpecGrid
    study: str = DEFAULT_STUDY
    objectives: tuple[str, ...] = ("error",)
    sampler: str = "tpe"
    pruner: str | None = None  # None: hyperband for one objective, none for several
    seed: int = 0
    enqueue: tuple[str, ...] = ()
    latency: bool = True  # measure latency (seconds per image, batch 1) before training
    # Where each trained trial saves its final weights (see run_folder); None: nowhere.
    runs_dir: str | Path | None = None

    def __post_init__(self) -> None:
        objs = tuple(self.objectives)
        object.__setattr__(self, "objectives", objs)
        unknown = [o for o in objs if o not in OBJECTIVES]
        if unknown or not objs or objs[0] != "error" or len(set(objs)) != len(objs):
            raise ValueError(
                f"--objectives takes error, optionally followed by distinct ones of "
                f"{', '.join(OBJECTIVES[1:])} (e.g. error,flops), got {','.join(objs) or '(none)'}"
            )
        if self.sampler not in SAMPLERS:
            raise ValueError(
                f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}"
            )
        if self.pruner is not None and self.pruner not in PRUNERS:
            raise ValueError(f"unknown pruner {self.pruner!r}; choose one of {', '.join(PRUNERS)}")
        if len(objs) > 1 and self.pruner not in (None, "none"):
            raise ValueError(
                f"--pruner {self.pruner} needs a single objective: Optuna's pruners do not "
                "handle several; with --objectives error,... the trainer stops early (--patience)"
            )
        if "latency" in objs and not self.latency:
            raise ValueError("the latency objective needs latency measurements")
        if not self.study:
            raise ValueError("--study needs a name")

    @property
    def pruner_name(self) -> str:
        """The pruner actually used."""
        return self.pruner or ("hyperband" if len(self.objectives) == 1 else "none")


def safe_name(name: str) -> str:
    """``name`` as one part of a file name; a name that had to change gets its checksum, so that
    two studies never share a folder."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    if safe != name or safe.strip(".") == "":
        safe = f"{safe}-{zlib.crc32(name.encode()):08x}"
    return safe


def run_folder(runs_dir: str | Path, study: str, number: int) -> Path:
    """The folder of trial ``number``'s files: ``<runs_dir>/<study>/trial-<number>``."""
    return Path(runs_dir) / safe_name(study) / f"trial-{number}"


def _sampler(
    name: str, seed: int, n_trials: int, shared: bool = True
) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        # A population of a fifth of the trials leaves a few generations to evolve.
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, n_trials // 5))
    # constant_liar: with several workers (``shared``), running trials count as bad guesses so
    # that the workers do not all propose the same point. It costs a fresh read of the trials
    # at every suggest; a lone worker reads them once per trial.
    # n_startup_trials: Optuna's 10 random start-up trials would leave a short study (the
    # default is 50 trials) little room to model; a fifth of the trials, 3 to 10.
    return optuna.samplers.TPESampler(
        seed=seed, constant_liar=shared, n_startup_trials=max(3, min(10, n_trials // 5))
    )


def _pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def worker_seed(seed: int, worker: int, n_existing: int) -> int:
    """The sampler seed of one worker: deterministic, but distinct per worker, host and resume.

    Re-seeding with ``seed`` alone on resume would replay the random start-up proposals.
    """
    host = zlib.crc32(socket.gethostname().encode())
    return int(np.random.SeedSequence([seed, worker, n_existing, host]).generate_state(1)[0])


def _describe(settings: SearchSettings) -> dict[str, Any]:
    return {"objectives": list(settings.objectives), "space": settings.space.to_dict()}


def create_or_load(
    storage: optuna.storages.BaseStorage,
    settings: SearchSettings,
    *,
    n_trials: int = 50,
    epochs: int = 1,
    worker: int = 0,
    shared: bool = True,
) -> optuna.Study:
    """Create the study, or load it after checking it has the same objectives and space."""
    directions = ["minimize"] * len(settings.objectives)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=settings.study,
            directions=directions,
            load_if_exists=True,
        )
    except Exception as e:  # sqlalchemy errors of a broken or foreign database
        raise ValueError(f"cannot open study {settings.study!r}: {e}") from None
    want = _describe(settings)
    have = study.user_attrs.get(ATTR)
    if have is None:
        if study.trials:
            raise ValueError(
                f"study {settings.study!r} exists but was not made by `resnext-nas search`; "
                "use another --study name"
            )
        study.set_user_attr(ATTR, want)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental" since Optuna 3.2
            study.set_metric_names(list(settings.objectives))
    _check_objectives(study, settings)
    if have is not None and have["space"] != want["space"]:
        diff = [k for k in want["space"] if have["space"].get(k) != want["space"][k]]
        raise ValueError(
            f"study {settings.study!r} was created over another search space (differs in "
            f"{', '.join(diff)}); use the same budget and grid options or another --study name"
        )
    seed = worker_seed(settings.seed, worker, len(study.trials))
    return optuna.load_study(
        study_name=settings.study,
        storage=storage,
        sampler=_sampler(settings.sampler, seed, n_trials, shared),
        pruner=_pruner(settings.pruner_name, epochs),
    )


def check_study(settings: SearchSettings, storage: str | None = None) -> int:
    """Refuse an unusable storage, or an existing study of that name with other objectives.

    Returns how many trials of the study count towards ``--trials`` already (0 if it is new).
    """
    _quiet_optuna()
    st = open_storage(storage)
    names = {s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)}
    if settings.study not in names:
        return 0
    study = optuna.load_study(study_name=settings.study, storage=st)
    _check_objectives(study, settings)
    return sum(counts(t) for t in study.get_trials(deepcopy=False))


def _check_objectives(study: optuna.Study, settings: SearchSettings) -> None:
    have = study.user_attrs.get(ATTR, {}).get("objectives")
    dirs = [d.name.lower() for d in study.directions]
    if (have is not None and have != list(settings.objectives)) or dirs != ["minimize"] * len(
        settings.objectives
    ):
        desc = ",".join(have) if have else ",".join(dirs)
        raise ValueError(
            f"study {settings.study!r} has objectives {desc}, this command asks for "
            f"{','.join(settings.objectives)}; use the same --objectives or another --study name"
        )


def enqueue_specs(space: SearchSpace, names: Iterable[str]) -> list[tuple[str, Spec]]:
    """The specs that ``--enqueue`` names: presets put on the space's skeleton, or ``family``.

    A preset enters only if its (C, d) lands in band on one of the space's skeletons
    (:meth:`SearchSpace.adjust`); otherwise this raises ValueError saying why.
    """
    out: list[tuple[str, Spec]] = []
    for name in names:
        if name == "family":
            out += [(f"family {notation(c.spec)}", c.spec) for c in space.family()]
        else:
            out.append((name, space.adjust(preset(name), name)))
    return out


def enqueue(study: optuna.Study, space: SearchSpace, names: Iterable[str]) -> int:
    """Queue the named baselines unless the study already has (or had) them; returns how many.

    Baselines are never pruned, so that they are measured to the end.
    """
    specs = enqueue_specs(space, names)
    arch = ("depths", "width", "cardinality", "bottleneck_width")

    def key(params: dict[str, Any]) -> tuple:
        return tuple(params.get(k) for k in arch)

    # Once per study: a baseline already queued, run, or failed for good is not queued again.
    existing = {
        key(t.params or t.system_attrs.get("fixed_params", {}))
        for t in study.get_trials(deepcopy=False)
        if "baseline" in t.user_attrs
    }
    n = 0
    for name, spec in specs:
        params = space.params(spec)
        if key(params) in existing:
            continue
        existing.add(key(params))
        study.enqueue_trial(params, user_attrs={"baseline": name})
        n += 1
    return n


def grid_point(params: dict[str, Any], seed: int | None) -> tuple:
    """The identity of a grid point: its Optuna params and its training seed."""
    return (tuple(sorted(params.items())), seed)


def grid_key(t: FrozenTrial) -> tuple:
    """The grid point of a trial, from its params or its enqueued fixed params."""
    return grid_point(t.params or t.system_attrs.get("fixed_params", {}), t.user_attrs.get("seed"))


def _grid_present(t: FrozenTrial) -> bool:
    """Whether a trial holds its grid point: trained, running (a lost one is retried), queued."""
    return counts(t) or t.state in (TrialState.RUNNING, TrialState.WAITING)


def enqueue_grid(study: optuna.Study, grid: SpecGrid, seeds: Iterable[int]) -> int:
    """Queue every (spec, seed) of the grid that the study has not trained, is not running and
    has not queued; returns how many. Failed points are queued again, so a re-run completes them.
    """
    have = {grid_key(t) for t in study.get_trials(deepcopy=False) if _grid_present(t)}
    n = 0
    for spec in grid.specs:
        params = grid.params(spec)
        for seed in seeds:
            if grid_point(params, seed) in have:
                continue
            study.enqueue_trial(params, user_attrs={"seed": seed})
            n += 1
    return n


# ---------------------------------------------------------------------------------- objective


def _kind(t: FrozenTrial) -> str:
    """The state shown to people (see the module docstring)."""
    if "surplus" in t.user_attrs:
        return "surplus"
    if "rejected" in t.user_attrs:
        return "rejected"
    return t.state.name


def counts(t: FrozenTrial) -> bool:
    """Whether a finished trial counts towards ``--trials``: trained, completely or pruned."""
    return t.state in (TrialState.COMPLETE, TrialState.PRUNED) and _kind(t) == t.state.name


class Surplus(optuna.TrialPruned):
    """The study-wide count was reached while this trial was being asked for."""


@dataclass
class Objective:
    """Train one in-band spec per trial and return its validation error (and other objectives).

    Stores as user attributes: ``spec``, ``flops``, ``params``, ``activations``, ``latency``,
    ``curve`` (one dict per epoch), ``val_accuracy``, ``images_per_second``,
    ``inference_images_per_second``, ``train_seconds``, ``wall_seconds``, ``status``; with
    ``runs_dir``, once a trial trained an epoch (completed, pruned or stopped early, not
    diverged): ``weights`` (absolute path of its final weights), ``host`` (where they are) and
    ``final_val_accuracy`` (of those weights; ``val_accuracy`` is the best epoch's).
    """

    space: SearchSpace | SpecGrid
    data: Dataset
    train_kwargs: dict[str, Any]
    objectives: tuple[str, ...]
    n_trials: int
    latency: bool = True
    worker: int = 0
    progress: Progress | None = None
    runs_dir: str | Path | None = None
    best_error: float = math.inf
    train_seconds: float = 0.0  # spent inside train() by this worker, for the overhead figure
    latency_seconds: float = 0.0
    _warm: bool = False  # whether this process has run a forward pass yet
    current: int | None = None  # number of the trial being run, for an interrupt's retry

    def _claim(self, trial: optuna.Trial) -> list[FrozenTrial]:
        """Give the trial up (as surplus) if the study-wide count is already claimed.

        Returns the study's trials as read for the check.
        """
        ts = trial.study.get_trials(deepcopy=False)
        mine = next(t for t in ts if t.number == trial.number)

        def key(t: FrozenTrial) -> tuple:
            return (t.datetime_start or mine.datetime_start, t.number)

        done = sum(counts(t) for t in ts)
        ahead = sum(
            t.state == TrialState.RUNNING and key(t) <= key(mine) and _kind(t) == "RUNNING"
            for t in ts
        )
        if done + ahead > self.n_trials:
            fixed = mine.system_attrs.get("fixed_params")
            if fixed:  # an enqueued trial: put it back for a later run
                attrs = {k: v for k, v in trial.user_attrs.items() if k != "surplus"}
                trial.study.enqueue_trial(fixed, user_attrs=attrs)
            trial.set_user_attr("surplus", True)
            raise Surplus(f"{self.n_trials} trials are already done or running")
        return ts

    def _claim_grid_point(self, trial: optuna.Trial, ts: list[FrozenTrial]) -> None:
        """In a grid study, train only enqueued grid points, each (spec, seed) once.

        A trial the sampler made up, or a second copy of a point that another trial trained or
        runs with a lower number (two `study run` started at once both queue the missing
        points), is given up as surplus.
        """
        mine = next(t for t in ts if t.number == trial.number)
        dup = [
            t.number
            for t in ts
            if t.number != mine.number
            and grid_key(t) == grid_key(mine)
            and (counts(t) or (t.state == TrialState.RUNNING and t.number < mine.number))
        ]
        if "fixed_params" not in mine.system_attrs or "seed" not in mine.user_attrs or dup:
            trial.set_user_attr("surplus", True)
            raise Surplus(f"trial #{dup[0]} has this grid point" if dup else "not a grid point")

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        self.current = trial.number
        try:
            trials = self._claim(trial)
            if isinstance(self.space, SpecGrid):
                self._claim_grid_point(trial, trials)
            try:
                spec = suggest_spec(trial, self.space)
            except OutOfBudget as e:
                trial.set_user_attr("rejected", str(e))
                raise
            hparams = suggest_hparams(trial, self.space)
            return self._train(trial, trials, spec, hparams)
        except optuna.TrialPruned:
            raise
        except Exception as e:
            # Optuna records only the state; keep the reason with the trial.
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            raise

    def _train(
        self,
        trial: optuna.Trial,
        trials: list[FrozenTrial],
        spec: Spec,
        hparams: dict[str, float],
    ) -> float | list[float]:
        from nas.train import TrainConfig, measure_latency, train

        t0 = time.perf_counter()
        cx = complexity(spec).to_dict()
        cfg = replace(TrainConfig(**self.train_kwargs), **hparams)
        seed = _seed(trial.user_attrs, trials, trial.number, spec, hparams, cfg.seed)
        cfg = replace(cfg, seed=seed["seed"])
        attrs: dict[str, Any] = {"spec": spec.to_dict(), **cx, **seed}
        if hparams:
            attrs["hparams"] = hparams
        metrics: dict[str, float] = dict(cx)
        if self.latency:
            t = time.perf_counter()
            if not self._warm:
                # The first forward passes of a process pay for thread pools and allocator
                # caches (about 15x the steady latency on a CPU): run them on a throwaway call.
                measure_latency(spec, device=cfg.device, repeats=1)
                self._warm = True
            metrics["latency"] = measure_latency(spec, device=cfg.device, repeats=10)
            self.latency_seconds += time.perf_counter() - t
            attrs["latency"] = metrics["latency"]
        set_user_attrs(trial, attrs)
        single = len(self.objectives) == 1
        baseline = trial.user_attrs.get("baseline")
        curve: list[dict[str, float]] = []

        def on_epoch(st: Any) -> None:
            curve.append(
                {
                    "epoch": st.epoch,
                    "train_loss": st.train_loss,
                    "val_loss": st.val_loss,
                    "val_accuracy": st.val_accuracy,
                    "seconds": st.epoch_seconds,
                }
            )
            trial.set_user_attr("curve", curve)
            best = min(self.best_error, 1 - max(c["val_accuracy"] for c in curve))
            if self.progress:
                self.progress(
                    self.worker,
                    {
                        "trial": trial.number,
                        "spec": notation(spec),
                        "epoch": st.epoch,
                        "epochs": cfg.epochs,
                        "val_accuracy": st.val_accuracy,
                        "best_error": best,
                    },
                )
            if single:
                # Pruners compare reported values in the study's direction: report the error.
                trial.report(1 - st.val_accuracy, st.epoch)
                # After the last epoch there is nothing left to save: no pruner call.
                if not baseline and st.epoch < cfg.epochs and trial.should_prune():
                    set_user_attrs(
                        trial, {"status": "pruned", "wall_seconds": time.perf_counter() - t0}
                    )
                    raise optuna.TrialPruned(f"pruned after epoch {st.epoch}")

        on_end = None
        if self.runs_dir is not None:
            folder = run_folder(self.runs_dir, trial.study.study_name, trial.number)
            on_end = partial(_save_weights, trial, folder, spec, curve)
        t = time.perf_counter()
        try:
            result = train(spec, self.data, cfg, callback=on_epoch, on_end=on_end)
        finally:
            self.train_seconds += time.perf_counter() - t
        error = 1 - result.val_accuracy
        self.best_error = min(self.best_error, error)
        set_user_attrs(
            trial,
            {
                "status": result.status,
                "val_accuracy": result.val_accuracy,
                "best_epoch": result.best_epoch,
                "images_per_second": result.images_per_second,
                "inference_images_per_second": result.inference_images_per_second,
                "train_seconds": result.wall_seconds,
                "wall_seconds": time.perf_counter() - t0,
            },
        )
        metrics["error"] = error
        values = [float(metrics[o]) for o in self.objectives]
        return values[0] if single else values


def _seed(
    given: dict[str, Any],
    trials: list[FrozenTrial],
    number: int,
    spec: Spec,
    hparams: dict[str, float],
    base: int,
) -> dict[str, int]:
    """The training seed of trial ``number`` as attributes: ``seed``, and ``repeat`` if any.

    A seed given with the trial (``given``: an enqueued seed of a study definition) is kept.
    Otherwise a config and hyper-parameters the study has already trained or is training get the
    next free seed, so that a repeat proposed by the sampler measures seed noise instead of
    replaying the same run to the same number.
    """
    if given.get("seed") is not None:
        return {"seed": int(given["seed"])}
    # As stored: JSON turns the spec's tuples into lists.
    me = json.loads(json.dumps([spec.to_dict(), hparams]))
    seeds = {
        t.user_attrs.get("seed", base)
        for t in trials
        if t.number != number
        and (counts(t) or t.state == TrialState.RUNNING)
        and [t.user_attrs.get("spec"), t.user_attrs.get("hparams", {})] == me
    }
    seed = base
    while seed in seeds:
        seed += 1
    return {"seed": seed, "repeat": len(seeds)} if seeds else {"seed": seed}


def set_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Set several user attributes of a running trial in one storage transaction.

    ``Trial.set_user_attr`` commits one transaction per attribute (an ORM round trip of a few
    ms on SQLite, a network round trip on PostgreSQL); a trial stores about fifteen, which was
    most of the search's overhead on trials of a few seconds (issue 4). Optuna has no public
    batch call, so this uses RDBStorage's per-attribute write inside one session, and falls back
    to one call per attribute on other storages or if Optuna's internals change.
    """
    backend = getattr(trial.storage, "_backend", trial.storage)
    write = getattr(backend, "_set_trial_attr_without_commit", None)
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
    except ImportError:
        write = None
    if not isinstance(backend, optuna.storages.RDBStorage) or write is None:
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        return
    with _create_scoped_session(backend.scoped_session, True) as session:
        for k, v in attrs.items():
            write(session, models.TrialUserAttributeModel, trial._trial_id, k, v)
    trial._cached_frozen_trial.user_attrs.update(attrs)


def _save_weights(
    trial: optuna.Trial,
    folder: Path,
    spec: Spec,
    curve: list[dict[str, float]],
    weights: dict[str, Any],
) -> None:
    """Write a trial's final weights atomically into ``folder``; record where, and their accuracy.

    The last entry of ``curve`` is the epoch that ended with these weights.
    """
    import torch

    from nas.train import write_atomic

    path = folder.resolve() / WEIGHTS
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": _WEIGHTS_FORMAT, "spec": spec.to_dict(), **weights}
    write_atomic(path, lambda f: torch.save(state, f))
    set_user_attrs(
        trial,
        {
            "weights": str(path),
            "host": socket.gethostname(),
            "final_val_accuracy": curve[-1]["val_accuracy"],
        },
    )


# ------------------------------------------------------------------------------------ workers


@dataclass
class WorkerReport:
    """What one worker did, for the summary line and the overhead benchmark."""

    worker: int
    trials: int = 0  # trained here (complete or pruned)
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    latency_seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)


def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # A failed trial's traceback is kept in its "error" attribute; the log would break the
    # progress lines.
    logging.getLogger("optuna").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


def run_worker(
    settings: SearchSettings,
    data: Dataset,
    train_kwargs: dict[str, Any],
    n_trials: int,
    *,
    storage: str | optuna.storages.RDBStorage | None = None,
    worker: int = 0,
    heartbeat: int = HEARTBEAT,
    progress: Progress | None = None,
    poll: float = 1.0,
    shared: bool = True,
) -> WorkerReport:
    """Take trials of the study until ``n_trials`` trials of the whole study are trained.

    ``storage`` is a URL, or a storage :func:`open_storage` opened; ``shared=False`` says no
    other worker takes trials of the study at the same time (see :func:`_sampler`).
    """
    _quiet_optuna()
    t0 = time.perf_counter()
    if isinstance(storage, optuna.storages.RDBStorage):
        st = storage
    else:
        st = open_storage(storage, heartbeat=heartbeat)
    epochs = int(train_kwargs.get("epochs", 1))
    study = create_or_load(
        st, settings, n_trials=n_trials, epochs=epochs, worker=worker, shared=shared
    )
    objective = Objective(
        settings.space,
        data,
        train_kwargs,
        settings.objectives,
        n_trials,
        latency=settings.latency,
        worker=worker,
        progress=progress,
        runs_dir=settings.runs_dir,
    )
    report = WorkerReport(worker)
    grid = isinstance(settings.space, SpecGrid)  # only enqueued points are trained
    failures = 0
    ran: list[FrozenTrial] = []  # the trial this process just ran, from optimize's callback
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if counts(t)]
        errors = [t.values[0] for t in done if t.state == TrialState.COMPLETE and t.values]
        objective.best_error = min([objective.best_error, *errors])
        if len(done) >= n_trials:
            break
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if len(done) + running >= n_trials or (grid and running and not _waiting(trials)):
            # Wait for the others: a running trial that goes stale comes back as a retry.
            time.sleep(poll)
            continue
        if grid and not _waiting(trials):
            break  # the grid points left failed; `enqueue_grid` queues them on the next run
        try:
            study.optimize(
                objective,
                n_trials=1,
                catch=(Exception,),
                gc_after_trial=False,
                callbacks=[lambda _study, t: ran.append(t)],  # noqa: B023 (called at once)
            )
        except KeyboardInterrupt:
            requeue_interrupted(study, objective.current)
            raise
        last = ran[-1]
        kind = _kind(last)
        report.statuses[kind] = report.statuses.get(kind, 0) + 1
        if counts(last):
            report.trials += 1
        if last.state == TrialState.FAIL:
            failures += 1
            if failures >= MAX_FAILURES:
                msg = last.user_attrs.get("error", "unknown error")
                if msg.startswith("ValueError: "):
                    raise ValueError(msg.removeprefix("ValueError: "))
                raise RuntimeError(f"{failures} trials in a row failed; the last with {msg}")
        else:
            failures = 0
    report.wall_seconds = time.perf_counter() - t0
    report.train_seconds = objective.train_seconds
    report.latency_seconds = objective.latency_seconds
    return report


def _waiting(trials: list[FrozenTrial]) -> bool:
    return any(t.state == TrialState.WAITING for t in trials)


def requeue_interrupted(study: optuna.Study, number: int | None) -> None:
    """Queue again the trial an interrupt (Ctrl-C) stopped, as a killed worker's trial is.

    Optuna marks the interrupted trial failed; the retry, like a heartbeat retry, keeps its
    parameters and attributes (its seed included) and notes ``retry of #N``, so re-running the
    command trains it first.
    """
    if number is None:
        return
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if trial is None or trial.state != TrialState.FAIL or counts(trial):
        return
    if "rejected" in trial.user_attrs or "surplus" in trial.user_attrs:
        return
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, trial)


def _worker_main(
    settings: SearchSettings,
    data: Dataset,
    train_kwargs: dict[str, Any],
    n_trials: int,
    storage: str,
    worker: int,
    heartbeat: int,
    cores: list[int] | None,
    gpu: int | None,
    events: Any,
) -> None:
    """Entry point of a spawned worker process: pin cores or a GPU, run, report on ``events``."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if cores and hasattr(os, "sched_setaffinity"):
        # The trainer uses as many threads as the process has cores.
        os.sched_setaffinity(0, cores)
    try:
        report = run_worker(
            settings,
            data,
            train_kwargs,
            n_trials,
            storage=storage,
            worker=worker,
            heartbeat=heartbeat,
            progress=lambda w, ev: events.put(("progress", w, ev)),
        )
        events.put(("done", worker, report))
    except ValueError as e:
        events.put(("error", worker, str(e)))
    except BaseException as e:
        events.put(("crash", worker, f"{type(e).__name__}: {e}"))
        raise


def _placement(
    workers: int, trials_per_gpu: int = 1, gpus: int | None = None
) -> list[tuple[list[int] | None, int | None]]:
    """Cores and GPU of each local worker: ``trials_per_gpu`` workers a GPU, else split cores.

    ``gpus`` None counts the visible CUDA devices; 0 (a CPU run) splits the cores. Workers
    fill one GPU before the next (0, 0, 1, 1 for two a GPU), and more workers than the GPUs
    hold at ``trials_per_gpu`` each are refused rather than crowded onto one.
    """
    if trials_per_gpu < 1:
        raise ValueError(f"--trials-per-gpu must be a positive integer, got {trials_per_gpu}")
    if gpus is None:
        try:
            import torch

            gpus = torch.cuda.device_count()
        except Exception:
            gpus = 0
    if gpus:
        if workers > gpus * trials_per_gpu:
            raise ValueError(
                f"--workers {workers} needs {-(-workers // trials_per_gpu)} GPUs at "
                f"--trials-per-gpu {trials_per_gpu}, and {gpus} "
                f"{'is' if gpus == 1 else 'are'} visible; raise --trials-per-gpu or lower --workers"
            )
        return [(None, i // trials_per_gpu) for i in range(workers)]
    cores = (
        sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else list(range(os.cpu_count() or 1))
    )
    per = max(1, len(cores) // workers)
    return [([cores[(i * per + j) % len(cores)] for j in range(per)], None) for i in range(workers)]


def prepare(
    settings: SearchSettings,
    *,
    storage: str | optuna.storages.RDBStorage | None = None,
    n_trials: int = 50,
    epochs: int = 1,
) -> tuple[optuna.Study, int]:
    """Create or check the study and queue its baselines; returns it and the number queued.

    ``storage`` is a URL, or a storage :func:`open_storage` opened.
    """
    _quiet_optuna()
    st = storage if isinstance(storage, optuna.storages.RDBStorage) else open_storage(storage)
    study = create_or_load(st, settings, n_trials=n_trials, epochs=epochs)
    return study, enqueue(study, settings.space, settings.enqueue)


def run_search(
    settings: SearchSettings,
    data: Dataset,
    train_kwargs: dict[str, Any],
    n_trials: int,
    *,
    storage: str | None = None,
    workers: int = 1,
    heartbeat: int = HEARTBEAT,
    progress: Progress | None = None,
    trials_per_gpu: int = 1,
) -> list[WorkerReport]:
    """Run (or resume) the study with ``workers`` local processes until it has ``n_trials``.

    On CUDA, ``trials_per_gpu`` workers share each GPU (:func:`_placement`).
    """
    if n_trials < 1:
        raise ValueError(f"--trials must be a positive integer, got {n_trials}")
    if workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {workers}")
    # A CPU run spreads workers over cores even where there are GPUs.
    on_cpu = str(train_kwargs.get("device", "auto")).startswith(("cpu", "mps"))
    placement = _placement(workers, trials_per_gpu, 0 if on_cpu else None)
    url = storage_url(storage)
    epochs = int(train_kwargs.get("epochs", 1))
    st = open_storage(url, heartbeat=heartbeat)
    prepare(settings, storage=st, n_trials=n_trials, epochs=epochs)
    if workers == 1:
        # Another machine may share a server's study; a SQLite file is this machine's alone.
        return [
            run_worker(
                settings,
                data,
                train_kwargs,
                n_trials,
                storage=st,
                heartbeat=heartbeat,
                progress=progress,
                shared=not url.startswith("sqlite"),
            )
        ]
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(settings, data, train_kwargs, n_trials, url, i, heartbeat, cores, gpu, events),
            daemon=True,
        )
        for i, (cores, gpu) in enumerate(placement)
    ]
    for p in procs:
        p.start()
    reports: dict[int, WorkerReport] = {}
    errors: list[str] = []
    failed: set[int] = set()
    try:
        while len(reports) + len(errors) < workers:
            try:
                kind, w, payload = events.get(timeout=1.0)
            except queue.Empty:
                for i, p in enumerate(procs):
                    if p.exitcode not in (None, 0) and i not in reports and i not in failed:
                        failed.add(i)
                        errors.append(f"[{i}] worker {i} died with exit code {p.exitcode}")
                continue
            if kind == "progress" and progress:
                progress(w, payload)
            elif kind == "done":
                reports[w] = payload
            elif kind in ("error", "crash"):
                failed.add(w)
                errors.append(f"[{w}] {payload}" if kind == "crash" else payload)
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
    if errors:
        user = [e for e in errors if not e.startswith("[")]
        if user:
            raise ValueError(user[0])
        raise RuntimeError("; ".join(errors))
    return [reports[i] for i in sorted(reports)]


# ------------------------------------------------------------------------------------ reading


def notation(spec: Spec) -> str:
    """The paper's notation with the skeleton, e.g. ``8x14d 3-4-6-3 w256``."""
    return f"{spec.notation} {depths_key(spec.depths)} w{spec.width}"


def load(name: str, storage: str | None = None) -> optuna.Study:
    """An existing study; ValueError listing the storage's studies if there is none of that name."""
    _quiet_optuna()
    st = open_storage(storage, must_exist=True)
    names = [s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)]
    if name not in names:
        have = ", ".join(names) if names else "none"
        raise ValueError(
            f"no study {name!r} in {redact(storage_url(storage))} (studies there: {have})"
        )
    return optuna.load_study(study_name=name, storage=st)


FRONT_METRICS = ("flops", "params", "latency", "activations")


def trial_rows(study: optuna.Study, front: str | None = None) -> list[dict[str, Any]]:
    """One JSON-ready dict per trial, with ``pareto`` marking the (error, ``front``) front.

    ``front`` defaults to the study's second objective, or FLOPs for a single-objective study.
    """
    objectives = study.user_attrs.get(ATTR, {}).get("objectives", ["error"])
    front = front or (objectives[1] if len(objectives) > 1 else "flops")
    if front not in FRONT_METRICS:
        raise ValueError(f"--front takes one of {', '.join(FRONT_METRICS)}, got {front!r}")
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        spec = Spec.from_dict(a["spec"]) if "spec" in a else None
        acc = a.get("val_accuracy")
        if acc is None and a.get("curve"):
            acc = max(c["val_accuracy"] for c in a["curve"])
        rows.append(
            {
                "number": t.number,
                "state": _kind(t),
                "spec": notation(spec) if spec else None,
                "spec_dict": a.get("spec"),
                "flops": a.get("flops"),
                "params": a.get("params"),
                "activations": a.get("activations"),
                "latency": a.get("latency"),
                "val_accuracy": acc,
                "error": None if acc is None else 1 - acc,
                "epochs": len(a.get("curve", [])),
                "images_per_second": a.get("images_per_second"),
                "inference_images_per_second": a.get("inference_images_per_second"),
                "wall_seconds": a.get("wall_seconds"),
                "status": a.get("status"),
                "baseline": a.get("baseline"),
                "hparams": a.get("hparams", {}),
                "seed": a.get("seed"),
                "repeat": a.get("repeat"),
                "values": t.values,
                "note": a.get("rejected") or a.get("error") or _retry_note(t) or _repeat_note(a),
                "pareto": False,
            }
        )
    done = [r for r in rows if r["state"] == "COMPLETE" and r[front] is not None]
    if done:
        mask = pareto_mask(
            np.array([r[front] for r in done], dtype=float),
            np.array([r["error"] for r in done], dtype=float),
        )
        for r, m in zip(done, mask, strict=True):
            r["pareto"] = bool(m)
    for r in rows:
        r["spec_trials"], r["spec_mean_accuracy"] = 0, None
    for group in _by_config(r for r in rows if r["state"] == "COMPLETE").values():
        mean = sum(r["val_accuracy"] for r in group) / len(group)
        for r in group:
            r["spec_trials"], r["spec_mean_accuracy"] = len(group), mean
    return rows


def _by_config(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Trial rows with an accuracy grouped by spec and hyper-parameters (repeats and seeds)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["spec_dict"] is not None and r["val_accuracy"] is not None:
            key = json.dumps([r["spec_dict"], r["hparams"]], sort_keys=True)
            groups.setdefault(key, []).append(r)
    return groups


def best_config(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The config with the best mean accuracy over its complete trials, if any has several.

    A sampler that returns to a config trains it with the next seed; the best single trial is
    then a maximum over seeds, biased upwards, and the mean is the fairer pick.
    """
    groups = _by_config(r for r in rows if r["state"] == "COMPLETE")
    if not any(len(g) > 1 for g in groups.values()):
        return None
    g = max(groups.values(), key=lambda g: sum(r["val_accuracy"] for r in g) / len(g))
    accs = [r["val_accuracy"] for r in g]
    return {
        "spec": g[0]["spec"],
        "hparams": g[0]["hparams"],
        "trials": [r["number"] for r in g],
        "mean_accuracy": sum(accs) / len(accs),
        "std_accuracy": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
    }


def _repeat_note(a: dict[str, Any]) -> str | None:
    return f"repeat {a['repeat']} (seed {a.get('seed')})" if a.get("repeat") else None


def _retry_note(t: FrozenTrial) -> str | None:
    if "failed_trial" in t.system_attrs:
        return f"retry of #{t.system_attrs['failed_trial']}"
    if t.state == TrialState.FAIL:
        return "worker lost (heartbeat)"
    return None


def study_rows(storage: str | None = None) -> list[dict[str, Any]]:
    """One JSON-ready dict per study of the storage: name, directions, trials by state, best."""
    _quiet_optuna()
    st = open_storage(storage, must_exist=True)
    rows = []
    for s in optuna.get_all_study_summaries(st, include_best_trial=False):
        trials = st.get_all_trials(s._study_id, deepcopy=False)
        by_state: dict[str, int] = {}
        for t in trials:
            by_state[_kind(t)] = by_state.get(_kind(t), 0) + 1
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
        best = min(done, key=lambda t: t.values[0]) if done else None
        rows.append(
            {
                "name": s.study_name,
                "objectives": s.user_attrs.get(ATTR, {}).get("objectives"),
                "directions": [d.name.lower() for d in s.directions],
                "trials": by_state,
                "best": None
                if best is None
                else {
                    "number": best.number,
                    "error": best.values[0],
                    "spec": notation(Spec.from_dict(best.user_attrs["spec"]))
                    if "spec" in best.user_attrs
                    else None,
                },
            }
        )
    return rows
