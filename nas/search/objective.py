"""The objective of a search: train one in-band spec per trial and store what it measured.

A trial first claims its place in the study-wide count (a trial asked for after the count was
reached is ``surplus``), draws its spec and hyper-parameters, picks its seed, measures latency,
trains with the search's :class:`~nas.training.config.TrainConfig`, and stores everything as user
attributes (:func:`nas.search.records.trial_record` reads them back).
"""

from __future__ import annotations

import math
import socket
import sys
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.data import Dataset
from nas.search.attrs import (
    CONFIRM,
    SEARCH,
    config_key,
    display_state,
    is_trained_proxy,
    notation,
    phase,
)
from nas.search.confirm import ConfirmSettings
from nas.search.space import SearchSpace, SpecGrid
from nas.search.study import ENQUEUED, Progress, grid_key, run_folder
from nas.search.suggest import OutOfBudget, suggest_hparams, suggest_spec
from nas.training.config import TrainConfig
from resnext.complexity import complexity
from resnext.spec import Spec

WEIGHTS = "weights.pt"  # a trial's final weights, in its run folder
RESULT = "result.json"  # what a trial measured, beside its weights
_WEIGHTS_FORMAT = 1


class Surplus(optuna.TrialPruned):
    """The study-wide count was reached while this trial was being asked for."""


@dataclass
class Objective:
    """Train one in-band spec per trial and return its validation error (and other objectives).

    Stores as user attributes: ``spec``, ``flops``, ``params``, ``activations``, ``latency``,
    ``class_names`` (the data's, in label order), ``augment`` (the data's augmentation family,
    which sets the view the trial is scored on), ``curve`` (one dict per epoch),
    ``val_accuracy``, ``images_per_second``, ``inference_images_per_second``,
    ``train_seconds``, ``wall_seconds``, ``status``; with ``runs_dir``, once a trial trained an
    epoch (completed, pruned or stopped early, not diverged): ``weights`` (absolute path of its
    final weights), ``host`` (where they are) and ``final_val_accuracy`` (of those weights;
    ``val_accuracy`` is the best epoch's), or ``weights_error`` when they could not be written
    (the trial keeps its metrics). With ``runs_dir``, every trial that trained (diverged ones
    too) also leaves :data:`RESULT` in its folder (:func:`result_record`).
    """

    space: SearchSpace | SpecGrid
    data: Dataset
    train: TrainConfig
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
    # How a confirmation trial (user attribute phase=confirm) trains, as the caller's search
    # settings say; None: the search has no confirmation phase, and refuses such a trial.
    confirm: ConfirmSettings | None = None
    _warned_weights: bool = False  # whether this process has warned of unwritable weights
    _warned_result: bool = False  # the same for result.json

    def _claim(self, trial: optuna.Trial) -> list[FrozenTrial]:
        """Give the trial up (as surplus) if the study-wide count is already claimed.

        Returns the study's trials as read for the check.
        """
        ts = trial.study.get_trials(deepcopy=False)
        mine = next(t for t in ts if t.number == trial.number)

        def key(t: FrozenTrial) -> tuple:
            return (t.datetime_start or mine.datetime_start, t.number)

        done = sum(is_trained_proxy(t) for t in ts)
        ahead = sum(
            t.state == TrialState.RUNNING
            and key(t) <= key(mine)
            and display_state(t) == "RUNNING"
            and phase(t) != CONFIRM
            for t in ts
        )
        if done + ahead > self.n_trials:
            fixed = mine.user_attrs.get(ENQUEUED)
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
            and (is_trained_proxy(t) or (t.state == TrialState.RUNNING and t.number < mine.number))
        ]
        if ENQUEUED not in mine.user_attrs or "seed" not in mine.user_attrs or dup:
            trial.set_user_attr("surplus", True)
            raise Surplus(f"trial #{dup[0]} has this grid point" if dup else "not a grid point")

    def _claim_confirm_point(self, trial: optuna.Trial) -> list[FrozenTrial]:
        """Train a confirmation point (configuration, seed) once; a second copy is surplus.

        Two workers may both queue a point the plan asked for: the copy whose twin is trained,
        or runs with a lower number, gives up. Confirmation trials claim no place in the
        ``--trials`` count. Returns the study's trials as read for the check.
        """
        ts = trial.study.get_trials(deepcopy=False)
        mine = next(t for t in ts if t.number == trial.number)

        def point(t: FrozenTrial) -> tuple:
            return (t.user_attrs.get("confirm_of"), t.user_attrs.get("seed"))

        dup = [
            t.number
            for t in ts
            if t.number != mine.number
            and phase(t) == CONFIRM
            and point(t) == point(mine)
            and "surplus" not in t.user_attrs
            and (
                t.state == TrialState.COMPLETE
                or (t.state == TrialState.RUNNING and t.number < mine.number)
            )
        ]
        if ENQUEUED not in mine.user_attrs or "seed" not in mine.user_attrs or dup:
            trial.set_user_attr("surplus", True)
            raise Surplus(f"trial #{dup[0]} has this point" if dup else "not a confirmation point")
        return ts

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        self.current = trial.number
        try:
            if phase(trial) == CONFIRM:
                trials = self._claim_confirm_point(trial)
            else:
                trials = self._claim(trial)
                trial.set_user_attr("phase", SEARCH)
            if isinstance(self.space, SpecGrid) and phase(trial) != CONFIRM:
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
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: its note says so, not "worker lost"
            trial.set_user_attr("interrupted", True)
            raise
        except Exception as e:
            # Optuna records only the state; keep the reason with the trial.
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            raise

    def _keep_weights(
        self,
        trial: optuna.Trial,
        folder: Path,
        spec: Spec,
        curve: list[dict[str, float]],
        weights: dict[str, Any],
    ) -> bool:
        """Save the weights; if they cannot be written, note why and warn once. Whether saved.

        Weights are an extra, the accuracy is the result: a full disk, a read-only runs folder
        or a name too long for the file system must not turn a trained trial into FAIL.
        (torch.save reports a short write as RuntimeError, "unexpected pos ...".)
        """
        try:
            _save_weights(trial, folder, spec, curve, weights)
        except (OSError, RuntimeError) as e:
            why = _weights_failed(e)
            trial.set_user_attr("weights_error", why)
            if not self._warned_weights:
                self._warned_weights = True
                sys.stderr.write(
                    f"warning: trial {trial.number}'s weights were not saved ({why}); "
                    "trials keep their metrics, see `trials` for each one's weights_error\n"
                )
            return False
        return True

    def _keep_result(self, folder: Path, record: dict[str, Any]) -> None:
        """Write ``result.json``; like the weights, an extra that warns once if it cannot."""
        from nas.fileio import write_json

        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_json(folder / RESULT, record, allow_nan=False)
        except (OSError, ValueError) as e:
            if not self._warned_result:
                self._warned_result = True
                sys.stderr.write(
                    f"warning: trial {record['trial']}'s {RESULT} was not written "
                    f"({_weights_failed(e)}); the study keeps its metrics\n"
                )

    def _train(
        self,
        trial: optuna.Trial,
        trials: list[FrozenTrial],
        spec: Spec,
        hparams: dict[str, float],
    ) -> float | list[float]:
        from nas.training import plan as perf
        from nas.training.device import resolve_device
        from nas.training.loop import measure_latency, train

        t0 = time.perf_counter()
        cx = complexity(spec).to_dict()
        cfg = replace(self.train, **hparams)
        confirming = phase(trial) == CONFIRM
        if confirming:
            if self.confirm is None:
                raise ValueError(
                    f"trial {trial.number} is a confirmation trial, and this search has no "
                    "confirmation settings"
                )
            # The longer schedule of the confirmation phase, never pruned.
            cfg = replace(cfg, epochs=self.confirm.confirm_epochs(self.train.epochs))
        seed = claim_seed(trial, spec, hparams, cfg.seed)
        cfg = replace(cfg, seed=seed["seed"])
        # The held-out images that score it: what a verdict on its accuracy rests on; and the
        # arithmetic that trained it (the machine plan's bf16 or fp32).
        device_type = resolve_device(cfg.device).type
        bf16 = perf.plan(device_type, cfg.channels_last, cfg.compile, cfg.precision).bf16
        attrs: dict[str, Any] = {
            **cx,
            **seed,
            "val_images": len(self.data.val_y),
            "precision": "bf16" if bf16 else "fp32",
            "augment": self.data.kind,
        }
        if self.data.class_names:  # what an export labels the logits with
            attrs["class_names"] = list(self.data.class_names)
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
                    "train_seconds": st.train_seconds,
                    "val_images": st.val_images,
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
            if single and not confirming:
                # Pruners compare reported values in the study's direction: report the error.
                trial.report(1 - st.val_accuracy, st.epoch)
                # After the last epoch there is nothing left to save: no pruner call.
                if not baseline and st.epoch < cfg.epochs and trial.should_prune():
                    set_user_attrs(
                        trial, {"status": "pruned", "wall_seconds": time.perf_counter() - t0}
                    )
                    raise optuna.TrialPruned(f"pruned after epoch {st.epoch}")

        saved: list[bool] = []  # whether the weights were written, once they were offered
        folder = None
        if self.runs_dir is not None:
            folder = run_folder(self.runs_dir, trial.study.study_name, trial.number)
        keep = partial(self._keep_weights, trial, folder, spec, curve)

        def save(weights: dict[str, Any]) -> None:
            saved.append(keep(weights))

        on_end = None if folder is None else save
        about = {**attrs, "phase": phase(trial), "spec": spec.to_dict(), "hparams": hparams}
        t = time.perf_counter()
        try:
            result = train(spec, self.data, cfg, callback=on_epoch, on_end=on_end)
        except optuna.TrialPruned:
            if folder is not None and curve:
                best = max(curve, key=lambda c: c["val_accuracy"])
                self._keep_result(
                    folder,
                    result_record(
                        trial, about, curve, "pruned", best["val_accuracy"], best["epoch"], saved
                    ),
                )
            raise
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
        if folder is not None:
            self._keep_result(
                folder,
                result_record(
                    trial,
                    about,
                    curve,
                    result.status,
                    result.val_accuracy,
                    result.best_epoch,
                    saved,
                ),
            )
        metrics["error"] = error
        values = [float(metrics[o]) for o in self.objectives]
        return values[0] if single else values


def result_record(
    trial: optuna.Trial,
    about: dict[str, Any],
    curve: list[dict[str, float]],
    status: str,
    val_accuracy: float,
    best_epoch: int,
    saved: list[bool],
) -> dict[str, Any]:
    """The content of a trial's ``result.json``: what it was, how it trained and what it scored.

    ``about`` holds the trial's attributes set before training (spec, complexity, seed, phase,
    class names ...); ``curve`` its epochs; ``saved`` whether the weights beside it were written.
    """
    keys = ("flops", "params", "activations", "latency")
    return {
        "study": trial.study.study_name,
        "trial": trial.number,
        "phase": about["phase"],
        "spec": about["spec"],
        "notation": notation(about["spec"]),
        **{k: about[k] for k in keys if k in about},
        "hparams": about["hparams"],
        "seed": about["seed"],
        "status": status,
        "val_accuracy": val_accuracy,  # the best epoch's, what the search ranks
        "best_epoch": best_epoch,
        "final_val_accuracy": curve[-1]["val_accuracy"] if curve else None,  # of the weights
        "epochs": len(curve),
        "val_images": about["val_images"],
        "class_names": about.get("class_names"),
        "augment": about["augment"],
        "weights": WEIGHTS if any(saved) else None,
        "curve": curve,
    }


def _same_config(t: FrozenTrial, me: str) -> bool:
    a = t.user_attrs
    return "spec" in a and config_key(a["spec"], a.get("hparams")) == me


def _holds_seed(t: FrozenTrial) -> bool:
    """Whether ``t`` holds its ``seed`` attribute: trained, or running (a claim or a fixed seed)."""
    return "seed" in t.user_attrs and (is_trained_proxy(t) or t.state == TrialState.RUNNING)


FIXED = "seed_fixed"  # user attribute: the trial checked its seed claim (see claim_seed)


def _fixed(t: FrozenTrial) -> bool:
    return is_trained_proxy(t) or bool(t.user_attrs.get(FIXED))


def claim_seed(
    trial: optuna.Trial, spec: Spec, hparams: dict[str, float], base: int
) -> dict[str, int]:
    """Pick trial's training seed, atomically across processes; returns ``seed`` (``repeat``).

    A seed given with the trial (an enqueued seed of a study definition, a retry's) is kept.
    Otherwise a config and hyper-parameters the study has already trained or is training get the
    next free seed, so that a repeat proposed by the sampler measures seed noise instead of
    replaying the same run to the same number.

    Two workers may read the same trials and pick the same seed. The pick is a claim
    written to the storage, checked by re-reading (Dekker's two flags, decided by trial number):
    write spec and hyper-parameters, then the seed; re-read, and give the seed up if another
    trial holds it and has either fixed it or a lower number; else write ``seed_fixed`` and
    re-read once more, giving it up to a lower-numbered claim that appeared meanwhile. Of two
    trials that keep one seed, the later one's first read would have seen the other fixed it.
    Only the public trial API is used, so it holds on SQLite and on PostgreSQL alike.
    """
    # The config first: a seed claim is read together with what it is a seed of.
    trial.set_user_attr("spec", spec.to_dict())
    if hparams:
        trial.set_user_attr("hparams", hparams)
    given = trial.user_attrs
    if given.get("seed") is not None:
        return {"seed": int(given["seed"])}
    me = config_key(spec, hparams)
    n = trial.number
    refused: set[int] = set()

    def others() -> list[FrozenTrial]:
        ts = trial.study.get_trials(deepcopy=False)
        return [t for t in ts if t.number != n and _same_config(t, me) and _holds_seed(t)]

    while True:
        taken = {t.user_attrs["seed"] for t in others()} | refused
        seed = base
        while seed in taken:
            seed += 1
        trial.set_user_attr("seed", seed)
        rivals = [t for t in others() if t.user_attrs["seed"] == seed]
        if any(_fixed(t) or t.number < n for t in rivals):
            refused.add(seed)
            continue
        trial.set_user_attr(FIXED, True)
        rivals = [t for t in others() if t.user_attrs["seed"] == seed]
        if any(t.number < n for t in rivals):
            trial.set_user_attr(FIXED, False)
            refused.add(seed)
            continue
        repeat = len({t.user_attrs["seed"] for t in others()})
        return {"seed": seed, "repeat": repeat} if repeat else {"seed": seed}


def set_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Set several user attributes of a running trial, through Optuna's public API.

    One transaction per attribute: fifteen take about 25 ms on SQLite (WAL), noise beside
    trials of 10-60 s (benchmarks/bench_attrs.py measures it against one batched transaction).
    """
    for k, v in attrs.items():
        trial.set_user_attr(k, v)


def _weights_failed(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip().splitlines()[0]


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

    from nas.fileio import write_atomic

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
