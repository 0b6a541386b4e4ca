"""Search quality against ground truth: regret and top-2 rate of each strategy at equal compute.

Replays searches from a ground-truth JSON of ``scripts/ground_truth.py`` (every configuration of
one band trained at the proxy and the confirmation schedule with several seeds, and truth seeds).
A replayed search draws as ``search`` draws, and each of its trials reads one run the table
measured:

- the sampler is the search's own (:func:`nas.search.study.make_sampler`: TPE's start-up trials
  sized from the proxy trial count, the constant liar of a study several workers share, or none
  with ``--lone-worker``), seeded with the search seed, which stands for the seed ``search``
  derives for each worker (:func:`nas.search.study.worker_seed`); the pruner is
  :func:`nas.search.study.make_pruner`'s;
- a trial draws its spec with :func:`nas.search.suggest.suggest_spec` over the table's band, built
  from the table's settings as ``scripts/ground_truth.py`` built it (``bottleneck_width`` an
  integer range of the cell; a cell with no in-band d is rejected at no cost);
- a proxy trial takes its training seed as the objective does
  (:func:`nas.search.objective.claim_seed`: a configuration proposed again trains with the next
  seed) and reads the table's proxy run of that seed; a confirmation trial reads the
  confirmation run of the seed :func:`nas.search.confirm.plan` gave it, racing included; the
  answer is :func:`nas.search.confirm.recommendation`'s.

No run is read twice. A search that needs a run the table does not hold (a seed beyond the
table's runs, or a configuration of the band the table lacks) is stopped there: that phase ends
(a proxy phase goes on to confirm what it has, a confirmation phase answers from what it
confirmed), and the search is counted in ``stopped``. Its answer rests on less compute than the
others had, never on a run read twice or made up; ``--strict`` makes the first such need an
error instead. A bigger table (more ``--proxy-seeds`` or ``--confirm-seeds``) lets it finish.

Strategies, each with the same compute:

- ``random+confirm``, ``tpe+confirm``: proxy trials with that sampler, then the confirmation
  phase;
- ``tpe+hyperband+confirm`` (what ``search`` does by default) and ``tpe+median+confirm``: the
  same with the search's pruner, fed each proxy run's per-epoch curve as the objective reports
  it; a pruned trial costs the epochs it ran, and the compute it saves buys more proxy trials.
  Needs a table with curves (format 2);
- ``grid+confirm``: every configuration of the table in turn (a seeded order), then the same
  confirmation phase;
- ``tpe best-single``: TPE spends all the compute on proxy trials and answers with the best
  single trial, as a search did before the confirmation phase (the baseline).

Compute is counted in trial-epochs (``--compute epochs``: a proxy trial costs its epochs, a
confirmation trial its longer schedule's) or in the seconds the table measured (``--compute
seconds``: a run's CPU-seconds where the table has them for every run, else its wall seconds; a
pruned trial the share of them its epochs ran); both are
counted and printed, whichever one budgets. The confirmation phase is budgeted at its worst case
(``k x max_seeds`` confirmation trials; in seconds, of the ``k`` configurations whose slowest
confirmation run is slowest); proxy trials run while a whole one fits in what is left.

Regret: ground-truth mean accuracy of the band's best configuration minus that of the
recommended one, in points. The ground truth is the mean over the table's ``truth`` seeds where
every configuration has them: runs of the confirmation schedule on seeds that no replayed trial
reads, or of a longer schedule of their own (``ground_truth.py --truth-from``: the long schedule
of a ``calibrate --compare`` file), so a confirmation phase is judged on runs it never saw. An
older table without them
falls back to the confirmation seeds themselves, which flatters the confirmation phase; the
report says which. Top-2: how often the recommended configuration is one of the two best by
ground truth.

Intervals: a nested parametric bootstrap over both sources of error. Each of ``--bootstrap``
draws resamples the search seeds with replacement (the search's randomness) and draws every
configuration's truth mean from a normal distribution around the table's with its standard error
(the table's own noise): the pooled seed-to-seed SD of every run at the truth's schedule
(confirmation and truth seeds alike where they share one: one schedule, one noise), over the
square root of the configuration's truth seeds. Each resampled answer is scored against the
drawn truth, whose best configuration may change. The 95% interval is the basic (reverse
percentile) one, twice the mean regret minus the draws' 97.5 and 2.5 percentiles, cut at 0: the
best of noisy means lies above the best true mean, so a regret measured on the table is biased
upwards, and a drawn truth's regret further still; the basic interval takes that bias off where
the percentile interval would add it again. The paired differences use the same draws. ``search
only`` is the same bootstrap with the truth means held at the table's: the search's randomness
alone.

    PYTHONPATH=. python benchmarks/bench_search_quality.py gt.json --search-seeds 10
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.search.attrs import CONFIRM, SEARCH, notation, phase  # noqa: E402
from nas.search.confirm import ConfirmSettings, plan, recommendation  # noqa: E402
from nas.search.objective import claim_seed  # noqa: E402
from nas.search.space import SearchSpace, spec_params  # noqa: E402
from nas.search.study import ENQUEUED, make_pruner, make_sampler  # noqa: E402
from nas.search.suggest import OutOfBudget, suggest_spec  # noqa: E402
from nas.stats import rank  # noqa: E402
from resnext.spec import Spec  # noqa: E402
from scripts.ground_truth import band  # noqa: E402

PARAMS = ("depths", "width", "cardinality", "bottleneck_width")
UNITS = ("epochs", "seconds")
# The training seed of a configuration's first trial under `search --seed 0`; the table's proxy
# and confirmation runs are numbered from it too (scripts/ground_truth.py seed_of).
BASE_SEED = 0


class TableExhausted(LookupError):
    """A replay needs a run the table does not hold (a seed beyond its runs, or a configuration
    of the band it lacks); no run is read twice, so the search cannot go on."""


class OverBudget(optuna.TrialPruned):
    """A proposal whose whole trial does not fit in the compute left: the proxy phase ends."""


@dataclass
class Truth:
    """The ground-truth table: configurations, their measured runs, the schedules and the band."""

    configs: list[dict[str, Any]]
    proxy_epochs: int
    confirm_epochs: int
    space: SearchSpace | None = None  # the table's band, as `search` builds it; None: no replay
    independent: bool = False  # every configuration has truth seeds of its own
    curves: bool = False  # every proxy run has its per-epoch curve
    timed: bool = False  # every run has its wall seconds
    # What a run's seconds are: its CPU-seconds where every run has them (a table trained beside
    # other work keeps them true), else its wall seconds.
    clock: str = "seconds"
    # The truth's own schedule where it is not the confirmation's (scripts/ground_truth.py
    # --truth-from: train_images, epochs, from); None: the confirmation schedule.
    truth_schedule: dict[str, Any] | None = None
    _index: dict[tuple, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {
            tuple(c["params"][k] for k in PARAMS): i
            for i, c in enumerate(self.configs)
            if "params" in c
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "the table") -> Truth:
        """A ``scripts/ground_truth.py`` table as its JSON reads; configurations lacking a run of
        either schedule are dropped."""
        configs = [c for c in raw["configs"] if c["proxy"] and c["confirm"]]
        if len(configs) < 2:
            raise ValueError(f"{where} has fewer than two configurations with both schedules")
        s = raw["settings"]
        first = configs[0]["spec"]
        space = band(argparse.Namespace(**s), first["classes"], first["resolution"])
        outside = [c["notation"] for c in configs if not space.contains(Spec.from_dict(c["spec"]))]
        if outside:
            raise ValueError(
                f"{where}: {', '.join(outside)} lie outside the band its settings describe"
            )
        runs = [v for c in configs for sched in ("proxy", "confirm", "truth")
                for v in c.get(sched, {}).values()]  # fmt: skip
        return cls(
            configs,
            s["epochs"],
            s["confirm_epochs"],
            space,
            independent=all(c.get("truth") for c in configs),
            curves=all("curve" in v for c in configs for v in c["proxy"].values()),
            timed=all("seconds" in v for v in runs),
            clock="cpu_seconds" if all("cpu_seconds" in v for v in runs) else "seconds",
            truth_schedule=raw.get("truth_schedule"),
        )

    @classmethod
    def load(cls, path: Path) -> Truth:
        """Read a ``scripts/ground_truth.py`` JSON."""
        return cls.from_dict(json.loads(path.read_text()), str(path))

    @property
    def noise_runs(self) -> tuple[str, ...]:
        """The schedules whose runs share the truth's seed noise: the truth's own where it has a
        schedule of its own, else every confirmation-schedule run."""
        return ("truth",) if self.truth_schedule else ("confirm", "truth")

    def schedule_name(self) -> str:
        """The truth's schedule in words."""
        s = self.truth_schedule
        if s is None:
            return f"the confirmation schedule of {self.confirm_epochs} epochs"
        return f"the truth schedule of {s['train_images']:,} images x {s['epochs']} epochs"

    @property
    def source(self) -> str:
        """The schedule whose seeds make the ground truth."""
        return "truth" if self.independent else "confirm"

    def truth(self) -> np.ndarray:
        """Each configuration's ground-truth mean accuracy (see :attr:`source`)."""
        return np.array(
            [np.mean([v["val_accuracy"] for v in c[self.source].values()]) for c in self.configs]
        )

    def standard_errors(self) -> np.ndarray:
        """Each ground-truth mean's standard error, in points: the pooled seed-to-seed SD of
        the truth's schedule over the square root of its seeds."""
        n = np.array([len(c[self.source]) for c in self.configs])
        return seed_sd(self) / np.sqrt(n)

    def index(self, params: dict[str, Any]) -> int | None:
        """The configuration with these Optuna params, if the table has it."""
        return self._index.get(tuple(params[k] for k in PARAMS))

    def missing(self, spec: Spec, schedule: str, seed: int) -> str:
        """Why the table cannot answer a trial of ``spec`` at ``schedule`` with ``seed``."""
        i = self.index(spec_params(spec))
        if i is None:
            return f"{notation(spec)} is in the band but not in the table"
        runs = sorted(self.configs[i][schedule], key=int)
        return (
            f"{self.configs[i]['notation']} needs {schedule} seed {seed}; the table holds "
            f"{len(runs)} {schedule} run{'s' * (len(runs) != 1)} of it (seeds {', '.join(runs)})"
        )

    def proxy_cost(self, unit: str) -> float:
        """A whole proxy trial's mean compute in ``unit``."""
        if unit == "epochs":
            return float(self.proxy_epochs)
        if not self.timed:
            raise ValueError("the table lacks the wall seconds of some runs: count in epochs")
        return float(np.mean([v[self.clock] for c in self.configs for v in c["proxy"].values()]))

    def cheapest_proxy(self, unit: str) -> float:
        """The least compute a whole proxy trial of the table costs in ``unit``."""
        if unit == "epochs":
            return float(self.proxy_epochs)
        return float(min(v[self.clock] for c in self.configs for v in c["proxy"].values()))

    def whole(self, i: int | None, run: dict[str, Any] | None, unit: str) -> float:
        """The compute of a whole proxy trial that reads ``run`` of configuration ``i`` (for a
        run the table lacks: its configuration's mean, or the table's for a configuration it
        lacks)."""
        if unit == "epochs":
            return float(self.proxy_epochs)
        if run is not None:
            return float(run[self.clock])
        if i is not None:
            return float(np.mean([v[self.clock] for v in self.configs[i]["proxy"].values()]))
        return self.proxy_cost(unit)

    def reserve(self, settings: ConfirmSettings, unit: str) -> float:
        """The confirmation phase's worst-case compute: ``k`` configurations, ``max_seeds``
        trials each."""
        if unit == "epochs":
            return float(settings.k * settings.max_seeds * self.confirm_epochs)
        slowest = sorted(
            (max(v[self.clock] for v in c["confirm"].values()) for c in self.configs),
            reverse=True,
        )
        return settings.max_seeds * float(sum(slowest[: settings.k]))


@dataclass(frozen=True)
class Plan:
    """What every replayed search gets: its confirmation settings, its compute budget in
    ``unit``, how its sampler is built and what a run the table lacks does."""

    confirm: ConfirmSettings
    budget: float
    unit: str = "epochs"
    shared: bool = True  # the sampler of a study several workers share (constant liar)
    strict: bool = False  # a run the table lacks is an error; else the search stops there

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"--compute takes {' or '.join(UNITS)}, got {self.unit!r}")


@dataclass
class Replay:
    """The objective of a replayed search: the table's runs, each read once, compute counted."""

    truth: Truth
    unit: str = "epochs"
    limit: float = math.inf  # the proxy phase's compute, in ``unit``
    study: optuna.Study | None = None
    epochs: float = 0.0
    seconds: float = 0.0
    pruned: int = 0
    proxies: int = 0  # proxy trials trained, pruned ones included
    reads: list[tuple[int, str, int]] = field(default_factory=list)  # (config, schedule, seed)
    stopped: str | None = None  # why the table stopped this search, if it did
    spent_out: bool = False  # a proposal did not fit in the proxy phase's compute
    tie: bool = False  # the confirmed verdict was not ``best`` (equivalent or no-signal)

    def spent(self) -> float:
        """Compute spent so far, in ``unit``."""
        return self.epochs if self.unit == "epochs" else self.seconds

    def _proxy_trial(self, trial: optuna.Trial, run: dict[str, Any]) -> float:
        """A proxy trial's accuracy, reporting its curve epoch by epoch as the objective does
        (the error, step = epoch); pruned after epoch e, it costs e epochs and that share of
        the run's seconds."""
        curve = run.get("curve") or []
        seconds = float(run.get(self.truth.clock, math.nan))
        for epoch, acc in enumerate(curve, 1):
            trial.report(1 - acc, epoch)
            if epoch < self.truth.proxy_epochs and trial.should_prune():
                self.epochs += epoch
                self.seconds += seconds * epoch / len(curve)
                self.pruned += 1
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")
        self.epochs += self.truth.proxy_epochs
        self.seconds += seconds
        return float(run["val_accuracy"])

    def __call__(self, trial: optuna.Trial) -> float:
        confirming = phase(trial) == CONFIRM
        if not confirming:
            trial.set_user_attr("phase", SEARCH)
        try:
            spec = suggest_spec(trial, self.truth.space)
        except OutOfBudget as e:
            trial.set_user_attr("rejected", str(e))
            raise
        seed = claim_seed(trial, spec, {}, BASE_SEED)["seed"]
        schedule = "confirm" if confirming else "proxy"
        i = self.truth.index(spec_params(spec))
        run = None if i is None else self.truth.configs[i][schedule].get(str(seed))
        if not confirming and self.spent() + self.truth.whole(i, run, self.unit) > self.limit:
            self.spent_out = True
            trial.set_user_attr("surplus", "the proxy phase's compute is spent")
            raise OverBudget("the proxy phase's compute is spent")
        if run is None or i is None:
            raise TableExhausted(self.truth.missing(spec, schedule, seed))
        self.reads.append((i, schedule, seed))
        if confirming:
            acc = float(run["val_accuracy"])
            self.epochs += self.truth.confirm_epochs
            self.seconds += float(run.get(self.truth.clock, math.nan))
        else:
            self.proxies += 1
            acc = self._proxy_trial(trial, run)
        trial.set_user_attr("val_accuracy", acc)
        return 1 - acc


def _study(
    seed: int, sampler: optuna.samplers.BaseSampler, pruner: str = "none", epochs: int = 1
) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a stopped search's failed trial
    # A name per search seed: Hyperband picks a trial's bracket from a hash of the study name,
    # and an unnamed study gets a random one, which would make a replay unrepeatable.
    return optuna.create_study(
        study_name=f"replay-{seed}", sampler=sampler, pruner=make_pruner(pruner, epochs)
    )


def _proxy(
    replay: Replay,
    limit: float,
    strict: bool,
    next_point: Callable[[], dict[str, Any]] | None = None,
    max_asks: int = 1000,
) -> None:
    """Run proxy trials while a whole one fits in ``limit`` (rejected proposals cost nothing,
    a pruned trial the compute it ran); ``next_point`` gives each trial's fixed params."""
    assert replay.study is not None
    replay.limit = limit
    for _ in range(max_asks):
        if replay.spent_out or replay.spent() + replay.truth.cheapest_proxy(replay.unit) > limit:
            return
        if next_point is not None:
            replay.study.enqueue_trial(next_point())
        try:
            replay.study.optimize(replay, n_trials=1)
        except TableExhausted as e:
            if strict:
                raise
            replay.stopped = str(e)
            return


def _confirm(replay: Replay, settings: ConfirmSettings, strict: bool) -> int | None:
    """Run the confirmation phase to its end (or to a run the table lacks); the recommended
    configuration's index."""
    study = replay.study
    assert study is not None
    while points := plan(study.trials, settings):
        for p in points:
            study.enqueue_trial(p.params, user_attrs={**p.user_attrs(), ENQUEUED: p.params})
        try:
            study.optimize(replay, n_trials=len(points))
        except TableExhausted as e:
            if strict:
                raise
            replay.stopped = replay.stopped or str(e)
            break
    rec = recommendation(study.trials, settings.prefer)
    if rec is None:
        return None
    replay.tie = rec["verdict"] != "best"
    return replay.truth.index(spec_params(Spec.from_dict(rec["spec"])))


def _best_single(study: optuna.Study, truth: Truth) -> int | None:
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not done:
        return None
    return truth.index(max(done, key=lambda t: t.user_attrs["val_accuracy"]).params)


def _noise_runs(truth: Truth) -> list[np.ndarray]:
    return [
        np.array([100 * v["val_accuracy"] for s in truth.noise_runs for v in c[s].values()])
        for c in truth.configs
    ]


def seed_sd(truth: Truth) -> float:
    """The pooled seed-to-seed SD of every run at the truth's schedule (:attr:`Truth.noise_runs`),
    in points; 0 without two runs of one configuration."""
    runs = _noise_runs(truth)
    df = sum(len(r) - 1 for r in runs)
    dev = sum(float(np.sum((r - r.mean()) ** 2)) for r in runs if len(r))
    return (dev / df) ** 0.5 if df > 0 else 0.0


def separability(truth: Truth, permutations: int = 2000, seed: int = 0) -> dict[str, float]:
    """Can the table tell its configurations apart at the truth's schedule?

    Every run of that schedule (:attr:`Truth.noise_runs`) in a one-way analysis of variance:
    the F statistic (between-configuration over within-configuration mean square), its p-value
    by permuting runs across configurations, the pooled seed-to-seed SD and the estimated SD of
    the configurations' true means (0 when F <= 1). With F near 1 the configurations differ by
    less than the seed noise can show, and so does every regret.
    """
    return rank.separability(_noise_runs(truth), permutations, seed)


def fidelity(truth: Truth, schedule: str, seed: int = 0) -> tuple[rank.Estimate, int] | None:
    """Spearman's rho of the configurations' mean over the first ``n`` runs of ``schedule``
    (``n``: the fewest any configuration has) against the ground truth, with its 95% bootstrap
    interval over configurations, and ``n``; None where the truth is those very runs."""
    if schedule == truth.source:
        return None
    n = min(len(c[schedule]) for c in truth.configs)
    means = np.array(
        [
            np.mean([c[schedule][k]["val_accuracy"] for k in sorted(c[schedule], key=int)[:n]])
            for c in truth.configs
        ]
    )
    return rank.bootstrap(rank.spearman, means, truth.truth(), seed=seed), n


Strategy = Callable[[Truth, int, Plan], tuple[int | None, Replay]]


def proxy_budget(truth: Truth, plan: Plan) -> tuple[float, int]:
    """The proxy trials' compute once the confirmation's worst case is set aside, and the
    number of whole proxy trials of mean cost it buys (the ``--trials`` a search would get)."""
    reserve = truth.reserve(plan.confirm, plan.unit)
    limit = plan.budget - reserve
    cost = truth.proxy_cost(plan.unit)
    n = int(limit / cost + 1e-9) if limit > 0 else 0  # a budget of whole trials stays whole
    if n < plan.confirm.k:
        raise ValueError(
            f"--budget {plan.budget:g} {plan.unit} leaves {n} proxy trials after the "
            f"confirmation's {reserve:g}; give at least {reserve + plan.confirm.k * cost:g}"
        )
    return limit, n


def sampled(kind: str, pruner: str = "none") -> Strategy:
    """The search's sampler ``kind`` (with ``pruner``) on proxy trials, then the confirmation
    phase."""

    def run(truth: Truth, seed: int, plan: Plan) -> tuple[int | None, Replay]:
        limit, n = proxy_budget(truth, plan)
        replay = Replay(truth, plan.unit)
        sampler = make_sampler(kind, seed, n, plan.shared)
        replay.study = _study(seed, sampler, pruner, truth.proxy_epochs)
        _proxy(replay, limit, plan.strict)
        return _confirm(replay, plan.confirm, plan.strict), replay

    return run


def grid(truth: Truth, seed: int, plan: Plan) -> tuple[int | None, Replay]:
    """Every configuration in turn (a seeded order), as often as the compute allows, then the
    confirmation phase."""
    limit, n = proxy_budget(truth, plan)
    replay = Replay(truth, plan.unit)
    replay.study = _study(seed, make_sampler("random", seed, n, plan.shared))
    order = itertools.cycle(np.random.default_rng(seed).permutation(len(truth.configs)).tolist())

    def next_point() -> dict[str, Any]:
        params = truth.configs[next(order)]["params"]
        return {k: params[k] for k in PARAMS}

    _proxy(replay, limit, plan.strict, next_point)
    return _confirm(replay, plan.confirm, plan.strict), replay


def best_single(truth: Truth, seed: int, plan: Plan) -> tuple[int | None, Replay]:
    """TPE with all the compute on proxy trials, answering with the best single trial."""
    n = int(plan.budget // truth.proxy_cost(plan.unit))
    replay = Replay(truth, plan.unit)
    replay.study = _study(seed, make_sampler("tpe", seed, n, plan.shared))
    _proxy(replay, plan.budget, plan.strict)
    return _best_single(replay.study, truth), replay


PRUNED = ("tpe+hyperband+confirm", "tpe+median+confirm")  # the strategies that need curves
BASE = "tpe+confirm"  # what the pruned strategies are compared with, paired over search seeds
RANDOM = "random+confirm"  # what TPE is compared with
STRATEGIES: dict[str, Strategy] = {
    "random+confirm": sampled("random"),
    "tpe+confirm": sampled("tpe"),
    "tpe+hyperband+confirm": sampled("tpe", "hyperband"),
    "tpe+median+confirm": sampled("tpe", "median"),
    "grid+confirm": grid,
    "tpe best-single": best_single,
}


def bootstrap(
    truth: Truth, picks: dict[str, list[int | None]], draws: int, noise: bool, seed: int = 0
) -> dict[str, np.ndarray]:
    """``draws`` bootstrap replicates of each strategy's mean regret (points): the search seeds
    resampled with replacement and, with ``noise``, every truth mean drawn from a normal
    distribution around the table's with its standard error (the module docstring says more).

    The same draws serve every strategy (and ``noise`` on and off), so that differences are
    paired."""
    rng = np.random.default_rng(seed)
    gt = 100 * truth.truth()
    se = truth.standard_errors() if noise else np.zeros_like(gt)
    mu = gt + se * rng.standard_normal((draws, len(gt)))
    seeds = len(next(iter(picks.values())))
    resample = rng.integers(0, seeds, (draws, seeds))
    out = {}
    for name, chosen in picks.items():
        c = np.array([-1 if i is None else i for i in chosen])
        regret = mu.max(axis=1, keepdims=True) - mu[:, np.maximum(c, 0)]
        regret[:, c < 0] = np.nan  # a search with no answer
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # every resampled search unanswered
            out[name] = np.nanmean(np.take_along_axis(regret, resample, axis=1), axis=1)
    return out


def basic_interval(
    estimate: float, replicates: np.ndarray, floor: float | None = None
) -> list[float]:
    """The 95% basic (reverse percentile) bootstrap interval of ``estimate``: twice it minus
    the replicates' 97.5 and 2.5 percentiles, cut at ``floor``.

    A regret's bootstrap is biased upwards (the best of noisy means lies above the best true
    mean), as the table's own regret is; the basic interval takes that bias off where the
    percentile interval would add it a second time.
    """
    if np.isnan(replicates).all() or math.isnan(estimate):
        return [math.nan, math.nan]
    hi, lo = (2 * estimate - float(q) for q in np.nanquantile(replicates, [0.025, 0.975]))
    return [lo if floor is None else max(lo, floor), hi if floor is None else max(hi, floor)]


def evaluate(truth: Truth, plan: Plan, seeds: int, draws: int = 2000) -> dict[str, dict[str, Any]]:
    """Per strategy over ``seeds`` search seeds: regrets (points) with their interval over both
    the search's and the table's noise and over the search's alone, top-2 rate, compute used in
    both units, and the searches the table stopped."""
    gt = truth.truth()
    top2 = set(np.argsort(-gt)[:2].tolist())
    out: dict[str, dict[str, Any]] = {}
    picks: dict[str, list[int | None]] = {}
    for name, strategy in STRATEGIES.items():
        if name in PRUNED and not truth.curves:
            continue  # no curves: the pruner would see nothing and prune nothing
        replays, chosen = [], []
        for seed in range(seeds):
            i, replay = strategy(truth, seed, plan)
            chosen.append(i)
            replays.append(replay)
        picks[name] = chosen
        regrets = [math.nan if i is None else 100 * float(gt.max() - gt[i]) for i in chosen]
        r = np.array(regrets)
        stops = [rp.stopped for rp in replays if rp.stopped]
        out[name] = {
            "mean_regret": float(np.nanmean(r)) if (~np.isnan(r)).any() else math.nan,
            "median_regret": float(np.nanmedian(r)) if (~np.isnan(r)).any() else math.nan,
            "worst_regret": float(np.nanmax(r)) if (~np.isnan(r)).any() else math.nan,
            "top2_rate": sum(i in top2 for i in chosen) / seeds,
            "mean_epochs_used": float(np.mean([rp.epochs for rp in replays])),
            "mean_seconds_used": float(np.mean([rp.seconds for rp in replays])),
            "stopped": len(stops),
            "stopped_example": stops[0] if stops else None,
            "unanswered": sum(i is None for i in chosen),
            "pruned_trials": sum(rp.pruned for rp in replays) / seeds,
            "proxy_trials": sum(rp.proxies for rp in replays) / seeds,
            "tie_rate": sum(rp.tie for rp in replays) / seeds,
            "regrets": regrets,
        }
    noisy = bootstrap(truth, picks, draws, noise=True)
    fixed = bootstrap(truth, picks, draws, noise=False)
    for name, r in out.items():
        r["mean_regret_interval"] = basic_interval(r["mean_regret"], noisy[name], 0.0)
        r["search_interval"] = basic_interval(r["mean_regret"], fixed[name], 0.0)
        # Paired over the search seeds: each pruned strategy against TPE without pruning, and
        # TPE against random search (both with confirmation).
        for other in [BASE] if name in PRUNED else [RANDOM] if name == BASE else []:
            if other in out:
                d = r["mean_regret"] - out[other]["mean_regret"]
                r[f"minus_{other}"] = {
                    "mean": d,
                    "interval": basic_interval(d, noisy[name] - noisy[other]),
                    "search_interval": basic_interval(d, fixed[name] - fixed[other]),
                }
    return out


def default_budget(truth: Truth, settings: ConfirmSettings, unit: str) -> float:
    """The confirmation's worst case plus one proxy trial of mean cost per configuration."""
    return truth.reserve(settings, unit) + len(truth.configs) * truth.proxy_cost(unit)


def _compute(amount: float, unit: str) -> str:
    return f"{amount:,.0f} trial-epochs" if unit == "epochs" else f"{amount:,.0f} s"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse, replay, print the table (and the JSON with ``--json``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("truth", type=Path, help="JSON of scripts/ground_truth.py")
    p.add_argument(
        "--compute",
        choices=UNITS,
        default="epochs",
        help="the unit every strategy's equal budget is counted in: trial-epochs, or the "
        "table's measured seconds (CPU-seconds where it has them for every run)",
    )
    p.add_argument(
        "--budget", type=float, default=None, help="in --compute's unit (default: see --help)"
    )
    p.add_argument("--search-seeds", type=int, default=5)
    d = ConfirmSettings()
    p.add_argument("--confirm", type=int, default=d.k)
    p.add_argument("--confirm-seeds", type=int, default=d.seeds)
    p.add_argument("--confirm-max-seeds", type=int, default=d.max_seeds)
    p.add_argument(
        "--lone-worker",
        action="store_true",
        help="build the sampler as a lone worker on a SQLite file does (no constant liar); "
        "default: as for a study several workers share",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="a search that needs a run the table lacks is an error (default: it stops there)",
    )
    p.add_argument("--bootstrap", type=int, default=2000, help="draws of the intervals")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    truth = Truth.load(args.truth)
    settings = ConfirmSettings(
        k=min(args.confirm, len(truth.configs)),
        epochs=truth.confirm_epochs,
        seeds=args.confirm_seeds,
        max_seeds=args.confirm_max_seeds,
    )
    budget = args.budget or default_budget(truth, settings, args.compute)
    rp = Plan(settings, budget, args.compute, shared=not args.lone_worker, strict=args.strict)
    n_proxy = proxy_budget(truth, rp)[1]
    results = evaluate(truth, rp, args.search_seeds, args.bootstrap)
    gt = truth.truth()
    sep = separability(truth)
    print(
        f"{len(truth.configs)} configurations; ground-truth best "
        f"{truth.configs[int(np.argmax(gt))]['notation']} at {gt.max():.2%}; compute "
        f"{_compute(budget, args.compute)} a search (proxy trial {truth.proxy_epochs} epochs"
        + (
            f", {truth.proxy_cost('seconds'):.0f} "
            f"{'CPU-s' if truth.clock == 'cpu_seconds' else 's'} on average"
            if truth.timed
            else ""
        )
        + f"; confirmation trial {truth.confirm_epochs} epochs); {args.search_seeds} search "
        f"seeds; confirmation k={settings.k}, seeds {settings.seeds}..{settings.max_seeds}"
    )
    assert truth.space is not None
    band_size = len(truth.space.configs)
    print(
        f"sampler: the search's (make_sampler) for {n_proxy} proxy trials "
        + ("of a study several workers share (constant liar)" if rp.shared else "of a lone worker")
        + f"; the band has {band_size} configurations, the table {len(truth.configs)}"
    )
    truth_runs = min(len(c[truth.source]) for c in truth.configs)
    print(
        f"ground truth: {truth_runs} {truth.source} seeds a configuration at "
        f"{truth.schedule_name()}"
        + (
            ", apart from every seed a replayed trial reads"
            if truth.independent
            else ": the seeds the confirmation phase reads (no truth seeds in the table), "
            "which flatters the confirmation"
        )
    )
    print(
        f"separability at {truth.schedule_name()} ({sep['runs']} runs): F = {sep['f']:.2f}, "
        f"permutation p = {sep['p']:.2f}; seed-to-seed SD {sep['seed_sd']:.2f} pt, estimated SD "
        f"of the configurations' true means {sep['config_sd']:.2f} pt"
        + (
            ": the table cannot tell its configurations apart, and the regrets below measure "
            "the ground truth's own noise more than the strategies"
            if sep["p"] > 0.05
            else ""
        )
    )
    for sched, label in (("proxy", "proxy trials"), ("confirm", "confirmation runs")):
        agree = fidelity(truth, sched)
        if agree is not None:
            e, seeds = agree
            print(
                f"rank agreement with the ground truth over {len(truth.configs)} configurations: "
                f"the mean of {seeds} {label} a configuration, Spearman {e.value:+.2f} "
                f"[95% bootstrap {e.low:+.2f}, {e.high:+.2f}]"
            )
    random_pick = 100 * float(np.mean(gt.max() - gt))
    print(f"a configuration picked at random, no training: mean regret {random_pick:.2f} pt")
    if not truth.curves:
        print("no per-epoch curves in the table: the pruned strategies are left out")
    print(f"{'strategy':22} {'mean regret [95% CI]':>22} {'search only':>14} {'median':>7} "
          f"{'worst':>6} {'top-2':>6} {'epochs':>7} {'seconds':>8} {'proxies':>8} "
          f"{'pruned':>7} {'stopped':>8} {'ties':>5}")  # fmt: skip
    for name, r in results.items():
        lo, hi = r["mean_regret_interval"]
        slo, shi = r["search_interval"]
        print(
            f"{name:22} {r['mean_regret']:>6.2f} [{lo:5.2f}, {hi:5.2f}] pt "
            f"[{slo:5.2f}, {shi:5.2f}] {r['median_regret']:>7.2f} {r['worst_regret']:>6.2f} "
            f"{r['top2_rate']:>6.0%} {r['mean_epochs_used']:>7.0f} "
            f"{r['mean_seconds_used']:>8.0f} {r['proxy_trials']:>8.1f} "
            f"{r['pruned_trials']:>7.1f} {r['stopped']:>4}/{args.search_seeds:<3} "
            f"{r['tie_rate']:>5.0%}"
        )
    for name, r in results.items():
        for key in (k for k in r if k.startswith("minus_")):
            d = r[key]
            print(
                f"{name} minus {key[len('minus_') :]}, paired over {args.search_seeds} search "
                f"seeds: {d['mean']:+.2f} pt regret [95% CI {d['interval'][0]:+.2f}, "
                f"{d['interval'][1]:+.2f}; search only {d['search_interval'][0]:+.2f}, "
                f"{d['search_interval'][1]:+.2f}]"
            )
    se = truth.standard_errors()
    print(
        f"intervals: {args.bootstrap} bootstrap draws, each resampling the search seeds and "
        f"drawing every truth mean around the table's with its standard error "
        f"({seed_sd(truth):.2f} pt seed SD / sqrt({truth_runs}) = {float(np.mean(se)):.2f} pt); "
        "search only: the truth means held fixed"
        + ("" if truth.independent else " (approximate: the truth seeds are the ones read)")
    )
    stopped = sum(r["stopped"] for r in results.values())
    print(
        f"searches stopped by the table's limit: {stopped} of "
        f"{len(results) * args.search_seeds} (no run is read twice; a stopped search answers "
        "from what it had)"
    )
    for name, r in results.items():
        if r["stopped"]:
            print(f"  {name}: {r['stopped']}, e.g. {r['stopped_example']}")
        if r["unanswered"]:
            print(
                f"  {name}: {r['unanswered']} searches confirmed nothing (left out of the regrets)"
            )
    summary = {
        "budget": budget,
        "unit": args.compute,
        "proxy_trials": n_proxy,
        "shared": rp.shared,
        "separability": sep,
        "fidelity": {
            sched: {"spearman": e.to_dict(), "runs": n}
            for sched in ("proxy", "confirm")
            if (got := fidelity(truth, sched)) is not None
            for e, n in [got]
        },
        "random_pick_regret": random_pick,
        "settings": settings.to_dict(),
        "truth": truth.source,
        "stopped": stopped,
        "results": results,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    try:
        main()
    except (ValueError, TableExhausted) as e:
        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(2) from None
