"""Optuna studies over a :class:`~nas.search.space.SearchSpace`: settings, creation, baselines,
grids.

Trial states as shown to people (:func:`nas.search.attrs.display_state`):

- ``COMPLETE``: trained to the end (or stopped early by the trainer);
- ``PRUNED``: stopped by the pruner after some epochs;
- ``rejected``: a proposal with no in-band configuration, refused before any model existed;
- ``surplus``: a trial asked for after the study-wide count was reached by another worker, or,
  in a grid study (:class:`~nas.search.space.SpecGrid`), a second copy of a (spec, seed) point or a
  trial that is no grid point; nothing ran (Optuna has no way to take an ask back, so it is
  recorded as pruned);
- ``FAIL``: a worker died in it (a retry is queued) or it raised.

Only ``COMPLETE`` and ``PRUNED`` trials count towards ``--trials``. Storage lives in
:mod:`nas.search.storage`, the objective in :mod:`nas.search.objective`, the worker pool in
:mod:`nas.search.workers`, and the trial records every reader shares in :mod:`nas.search.records`.
"""

from __future__ import annotations

import socket
import warnings
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.search.attrs import ATTR, is_trained_proxy, notation
from nas.search.confirm import ConfirmSettings
from nas.search.space import SearchSpace, SpecGrid
from nas.search.storage import open_storage, quiet_optuna
from nas.training.config import TrainConfig
from resnext.registry import preset
from resnext.spec import Spec

DEFAULT_STUDY = "resnext-search"
OBJECTIVES = ("error", "flops", "params", "latency", "activations")
SAMPLERS = ("tpe", "nsga2", "random")
PRUNERS = ("hyperband", "median", "none")
# The user attribute of an enqueued trial holding its parameters (Optuna keeps them in a
# private system attribute until the trial runs).
ENQUEUED = "enqueued"
# The study user attribute holding the confirmation settings of the last search that ran it.
CONFIRM_ATTR = "confirm"

# Upper bounds of --trials and of a grid's points (spec x seed): a study larger than this is
# a typo (--seeds 1000000 queued 20,267 trials before it was stopped), and TPE reads
# every trial at each suggest (benchmarks/bench_storage.py measures what that costs).
MAX_TRIALS = 100_000
MAX_SEEDS = 1_000
STALE = "queued by an earlier run for other grid points (another --seeds), dropped"

# What a search tells its caller, with the worker's number: after each epoch ``{"trial", "spec",
# "epoch", "epochs", "val_accuracy", "best_error"}``, and ``{"ended": N}`` once trial N ends.
Progress = Callable[[int, dict[str, Any]], None]


def check_trials(n: int, option: str = "--trials") -> None:
    """ValueError naming ``option`` unless 1 <= n <= MAX_TRIALS."""
    if not 1 <= n <= MAX_TRIALS:
        raise ValueError(f"{option} takes 1 to {MAX_TRIALS:,} trials, got {n:,}")


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
    # The confirmation phase after the proxy trials (nas.search.confirm); None: none.
    confirm: ConfirmSettings | None = None

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
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(
                f"--seed must be an integer from 0 to {2**63 - 1:,}, got {self.seed!r}"
            )

    @property
    def pruner_name(self) -> str:
        """The pruner actually used."""
        return self.pruner or ("hyperband" if len(self.objectives) == 1 else "none")


def safe_name(name: str) -> str:
    """``name`` as one part of a file name (:func:`nas.fileio.name_part`): two studies never
    share a folder, and a long name is cut to fit a file system's limit."""
    from nas.fileio import name_part

    return name_part(name)


def run_folder(runs_dir: str | Path, study: str, number: int) -> Path:
    """The folder of trial ``number``'s files: ``<runs_dir>/<study>/trial-<number>``."""
    return Path(runs_dir) / safe_name(study) / f"trial-{number}"


def make_sampler(
    name: str, seed: int, n_trials: int, shared: bool = True
) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` of SAMPLERS for a study of ``n_trials`` trials, seeded with ``seed``;
    ``shared``: other workers take trials of the study at the same time."""
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


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """The pruner ``name`` of PRUNERS for trials of ``epochs`` epochs (one report an epoch)."""
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
    train: TrainConfig | None = None,
    worker: int = 0,
    shared: bool = True,
) -> optuna.Study:
    """Create the study, or load it after checking it has the same objectives and space.

    ``train`` is how this handle's trials train: its epochs size the pruner. Without it the
    handle only queues, checks or reads trials, and its pruner prunes nothing.
    """
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
    if settings.confirm is not None and study.user_attrs.get(CONFIRM_ATTR) != (
        stored := settings.confirm.to_dict()
    ):
        study.set_user_attr(CONFIRM_ATTR, stored)
    if have is not None and have["space"] != want["space"]:
        diff = [k for k in want["space"] if have["space"].get(k) != want["space"][k]]
        raise ValueError(
            f"study {settings.study!r} was created over another search space (differs in "
            f"{', '.join(diff)}); use the same budget and grid options or another --study name"
        )
    seed = worker_seed(settings.seed, worker, len(study.trials))
    if train is None:
        pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    else:
        pruner = make_pruner(settings.pruner_name, train.epochs)
    return optuna.load_study(
        study_name=settings.study,
        storage=storage,
        sampler=make_sampler(settings.sampler, seed, n_trials, shared),
        pruner=pruner,
    )


def check_study(
    settings: SearchSettings, storage: str | None = None, *, create: bool = False
) -> int:
    """Refuse an unusable storage, or an existing study of that name with other objectives.

    Returns how many trials of the study count towards ``--trials`` already (0 if it is new).
    ``create`` (``--create``) adds Optuna's tables even to another application's SQLite file.
    """
    quiet_optuna()
    st = open_storage(storage, create=create)
    names = {s.study_name for s in st.get_all_studies()}
    if settings.study not in names:
        return 0
    study = optuna.load_study(study_name=settings.study, storage=st)
    _check_objectives(study, settings)
    return sum(is_trained_proxy(t) for t in study.get_trials(deepcopy=False))


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
        key(t.params or t.user_attrs.get(ENQUEUED, {}))
        for t in study.get_trials(deepcopy=False)
        if "baseline" in t.user_attrs
    }
    n = 0
    for name, spec in specs:
        params = space.params(spec)
        if key(params) in existing:
            continue
        existing.add(key(params))
        study.enqueue_trial(params, user_attrs={"baseline": name, ENQUEUED: params})
        n += 1
    return n


def grid_point(params: dict[str, Any], seed: int | None) -> tuple:
    """The identity of a grid point: its Optuna params and its training seed."""
    return (tuple(sorted(params.items())), seed)


def grid_key(t: FrozenTrial) -> tuple:
    """The grid point of a trial, from its params or its enqueued fixed params."""
    return grid_point(t.params or t.user_attrs.get(ENQUEUED, {}), t.user_attrs.get("seed"))


def _grid_present(t: FrozenTrial) -> bool:
    """Whether a trial holds its grid point: trained, running (a lost one is retried), queued."""
    return is_trained_proxy(t) or t.state in (TrialState.RUNNING, TrialState.WAITING)


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
            study.enqueue_trial(params, user_attrs={"seed": seed, ENQUEUED: params})
            n += 1
    return n


def drop_queue(
    storage: optuna.storages.BaseStorage,
    study: str,
    keep: Callable[[FrozenTrial], bool] = lambda _t: False,
    why: str = "dropped from the queue (`studies --drop-queue`)",
) -> int:
    """Withdraw the study's waiting trials that ``keep`` refuses; returns how many.

    Optuna has no way to take a queued trial back: each becomes ``surplus`` (a note with
    ``why``, then pruned), the state of a trial that never trained, and nothing trains it.
    Only the storage's public API is used (``set_trial_state_values`` of BaseStorage).
    """
    sid = storage.get_study_id_from_name(study)
    n = 0
    for t in storage.get_all_trials(sid, deepcopy=False, states=(TrialState.WAITING,)):
        if keep(t):
            continue
        tid = storage.get_trial_id_from_study_id_trial_number(sid, t.number)
        try:
            storage.set_trial_user_attr(tid, "surplus", why)
            storage.set_trial_state_values(tid, TrialState.PRUNED)
        except RuntimeError:  # a worker took it meanwhile, and it finished: leave it be
            continue
        n += 1
    return n


def drop_study(name: str, storage: str | None = None, *, queue_only: bool = False) -> str:
    """Delete a study, or only withdraw its queue (:func:`drop_queue`); returns what was done."""
    from nas.search.storage import load

    study = load(name, storage)  # UnknownStudy, listing the studies, if there is none
    st = open_storage(storage, must_exist=True)
    if queue_only:
        return f"withdrew {drop_queue(st, name)} queued trials of study {name!r}"
    n = len(study.get_trials(deepcopy=False))
    optuna.delete_study(study_name=name, storage=st)
    return f"deleted study {name!r} and its {n} trials"


def prepare(
    settings: SearchSettings,
    *,
    storage: str | optuna.storages.RDBStorage | None = None,
    n_trials: int = 50,
) -> tuple[optuna.Study, int]:
    """Create or check the study and queue its baselines; returns it and the number queued.

    ``storage`` is a URL, or a storage :func:`open_storage` opened. The handle returned queues
    and reads trials; the workers train them (:func:`create_or_load` with their config).
    """
    quiet_optuna()
    st = storage if isinstance(storage, optuna.storages.RDBStorage) else open_storage(storage)
    study = create_or_load(st, settings, n_trials=n_trials)
    return study, enqueue(study, settings.space, settings.enqueue)
