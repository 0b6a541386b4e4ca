"""Search quality against ground truth: regret and top-2 rate of each strategy at equal compute.

Replays searches from a ground-truth JSON of ``scripts/ground_truth.py`` (every configuration of
one band trained at the proxy and the confirmation schedule with several seeds). Each strategy
gets the same compute, counted in trial-epochs (a proxy trial costs its epochs, a confirmation
trial its longer schedule's):

- ``random+confirm``, ``tpe+confirm``: an in-memory Optuna study with that sampler runs proxy
  trials, then the confirmation phase, planned and answered by the real
  :func:`nas.search.confirm.plan` and :func:`nas.search.confirm.recommendation` (racing included);
- ``tpe+hyperband+confirm`` (what ``search`` does by default) and ``tpe+median+confirm``: the
  same with the search's pruner (:func:`nas.search.study.make_pruner`), fed each proxy trial's
  cached
  per-epoch curve as the objective reports it; a pruned trial costs the epochs it ran, and the
  compute it saves buys more proxy trials. Needs a table with curves (format 2);
- ``grid+confirm``: every configuration of the band in turn, then the same confirmation phase;
- ``tpe best-single``: TPE spends all the compute on proxy trials and answers with the best
  single trial, as a search did before the confirmation phase (the baseline).

The confirmation phase is budgeted at its worst case (``k x max_seeds`` confirmation trials);
the proxy trials get what is left. A trial's accuracy is a measured one: a configuration's n-th
proxy trial replays its n-th cached proxy seed, a confirmation trial of seed s its s-th cached
confirmation seed. Where a configuration needs more seeds than were trained, the seeds cycle and
the report says how often; no number is invented.

Regret: ground-truth mean accuracy of the band's best configuration minus that of the
recommended one, in points. The ground truth is the mean over the table's ``truth`` seeds where
every configuration has them: runs of the confirmation schedule on seeds that no replayed trial
reads, so a confirmation phase is judged on data it never saw. An older table without them
falls back to the confirmation seeds themselves, which flatters the confirmation phase; the
report says which. Top-2: how often the recommended
configuration is one of the two best by ground truth.

    PYTHONPATH=. python benchmarks/bench_search_quality.py gt.json --search-seeds 10
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.search.attrs import CONFIRM, SEARCH  # noqa: E402
from nas.search.confirm import ConfirmSettings, plan, recommendation  # noqa: E402
from nas.search.study import ENQUEUED, make_pruner  # noqa: E402
from nas.stats.recommend import mean_interval  # noqa: E402

PARAMS = ("depths", "width", "cardinality", "bottleneck_width")


@dataclass
class Truth:
    """The ground-truth table: configurations, their cached accuracies and the schedules."""

    configs: list[dict[str, Any]]
    proxy_epochs: int
    confirm_epochs: int
    independent: bool = False  # every configuration has truth seeds of its own
    curves: bool = False  # every proxy run has its per-epoch curve

    @classmethod
    def load(cls, path: Path) -> Truth:
        """Read a ``scripts/ground_truth.py`` JSON; configurations lacking a seed are dropped."""
        raw = json.loads(path.read_text())
        configs = [c for c in raw["configs"] if c["proxy"] and c["confirm"]]
        if len(configs) < 2:
            raise ValueError(f"{path} has fewer than two configurations with both schedules")
        s = raw["settings"]
        independent = all(c.get("truth") for c in configs)
        curves = all("curve" in v for c in configs for v in c["proxy"].values())
        return cls(configs, s["epochs"], s["confirm_epochs"], independent, curves)

    @property
    def source(self) -> str:
        """The schedule whose seeds make the ground truth."""
        return "truth" if self.independent else "confirm"

    def truth(self) -> np.ndarray:
        """Each configuration's ground-truth mean accuracy (see :attr:`source`)."""
        return np.array(
            [np.mean([v["val_accuracy"] for v in c[self.source].values()]) for c in self.configs]
        )

    def index(self, params: dict[str, Any]) -> int | None:
        """The configuration with these Optuna params, if the table has it."""
        for i, c in enumerate(self.configs):
            if all(c["params"][k] == params[k] for k in PARAMS):
                return i
        return None


@dataclass
class Replay:
    """The objective of a replayed search: cached accuracies, compute and seed cycling counted."""

    truth: Truth
    proxy_seen: dict[int, int] = field(default_factory=dict)
    epochs: int = 0
    cycled: int = 0
    pruned: int = 0
    proxies: int = 0  # proxy trials trained, pruned ones included
    tie: bool = False  # the confirmed verdict was not ``best`` (equivalent or no-signal)

    def _run(self, i: int, schedule: str, n: int) -> dict[str, Any]:
        cached = self.truth.configs[i][schedule]
        seeds = sorted(cached, key=int)
        if n >= len(seeds):
            self.cycled += 1
        return cached[seeds[n % len(seeds)]]

    def _measured(self, i: int, schedule: str, n: int) -> float:
        return float(self._run(i, schedule, n)["val_accuracy"])

    def _proxy_trial(self, trial: optuna.Trial, i: int, n: int) -> float:
        """A proxy trial's accuracy, reporting its curve epoch by epoch as the objective does
        (the error, step = epoch); pruned after epoch e, it costs e epochs."""
        run = self._run(i, "proxy", n)
        curve = run.get("curve") or []
        for epoch, acc in enumerate(curve, 1):
            trial.report(1 - acc, epoch)
            if epoch < len(curve) and trial.should_prune():
                self.epochs += epoch
                self.pruned += 1
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")
        self.epochs += self.truth.proxy_epochs
        return float(run["val_accuracy"])

    def __call__(self, trial: optuna.Trial) -> float:
        choices = {k: sorted({c["params"][k] for c in self.truth.configs}, key=str) for k in PARAMS}
        params = {k: trial.suggest_categorical(k, choices[k]) for k in PARAMS}
        i = self.truth.index(params)
        if i is None:  # not in the table: rejected before any compute, as out-of-band proposals
            trial.set_user_attr("rejected", "not in the ground truth")
            raise optuna.TrialPruned()
        spec = self.truth.configs[i]["spec"]
        trial.set_user_attr("spec", spec)
        if trial.user_attrs.get("phase") == CONFIRM:
            acc = self._measured(i, "confirm", int(trial.user_attrs["seed"]))
            self.epochs += self.truth.confirm_epochs
        else:
            n = self.proxy_seen.get(i, 0)
            self.proxy_seen[i] = n + 1
            self.proxies += 1
            trial.set_user_attr("phase", SEARCH)
            trial.set_user_attr("seed", n)
            acc = self._proxy_trial(trial, i, n)
        trial.set_user_attr("val_accuracy", acc)
        return 1 - acc


def _study(
    seed: int, sampler: optuna.samplers.BaseSampler, pruner: str = "none", epochs: int = 1
) -> optuna.Study:
    # A name per search seed: Hyperband picks a trial's bracket from a hash of the study name,
    # and an unnamed study gets a random one, which would make a replay unrepeatable.
    return optuna.create_study(
        study_name=f"replay-{seed}", sampler=sampler, pruner=make_pruner(pruner, epochs)
    )


def _proxy(study: optuna.Study, replay: Replay, epochs: int, max_asks: int = 1000) -> None:
    """Run proxy trials while a whole one fits in ``epochs`` trial-epochs (rejected proposals
    cost nothing; a pruned trial costs the epochs it ran)."""
    asks = 0
    while replay.epochs + replay.truth.proxy_epochs <= epochs and asks < max_asks:
        study.optimize(replay, n_trials=1)
        asks += 1


def _confirm(study: optuna.Study, replay: Replay, settings: ConfirmSettings) -> int | None:
    """Run the confirmation phase to its end; the recommended configuration's index."""
    while points := plan(study.trials, settings):
        for p in points:
            study.enqueue_trial(p.params, user_attrs={**p.user_attrs(), ENQUEUED: p.params})
        study.optimize(replay, n_trials=len(points))
    rec = recommendation(study.trials)
    if rec is None:
        return None
    replay.tie = rec["verdict"] != "best"
    return replay.truth.index(
        next(c["params"] for c in replay.truth.configs if c["spec"] == rec["spec"])
    )


def _best_single(study: optuna.Study, truth: Truth) -> int:
    best = max(
        (t for t in study.trials if t.state == TrialState.COMPLETE),
        key=lambda t: t.user_attrs["val_accuracy"],
    )
    i = truth.index(best.params)
    assert i is not None
    return i


def separability(truth: Truth, permutations: int = 2000, seed: int = 0) -> dict[str, float]:
    """Can the table tell its configurations apart at the confirmation schedule?

    Every run of that schedule (confirmation and truth seeds) in a one-way analysis of
    variance: the F statistic (between-configuration over within-configuration mean square), its
    p-value by permuting runs across configurations, the pooled seed-to-seed SD and the
    estimated SD of the configurations' true means (0 when F <= 1). With F near 1 the
    configurations differ by less than the seed noise can show, and so does every regret.
    """
    runs = [
        np.array([100 * v["val_accuracy"] for s in ("confirm", "truth") for v in c[s].values()])
        for c in truth.configs
    ]
    sizes = np.array([len(r) for r in runs])
    flat = np.concatenate(runs)
    groups = np.repeat(np.arange(len(runs)), sizes)

    def f_stat(values: np.ndarray) -> tuple[float, float, float]:
        means = np.bincount(groups, values) / sizes
        between = float(np.sum(sizes * (means - values.mean()) ** 2)) / (len(runs) - 1)
        within = float(np.sum((values - means[groups]) ** 2)) / (len(values) - len(runs))
        return between / within, between, within

    f, between, within = f_stat(flat)
    rng = np.random.default_rng(seed)
    exceed = sum(f_stat(rng.permutation(flat))[0] >= f for _ in range(permutations))
    n0 = float(np.mean(sizes))
    return {
        "f": f,
        "p": (exceed + 1) / (permutations + 1),
        "runs": int(len(flat)),
        "seed_sd": within**0.5,
        "config_sd": max(0.0, (between - within) / n0) ** 0.5,
    }


Strategy = Callable[[Truth, int, int, ConfirmSettings], tuple[int | None, Replay]]


def sampled(kind: str, pruner: str = "none") -> Strategy:
    """A sampler's search (with ``pruner``) followed by the confirmation phase."""

    def run(truth: Truth, seed: int, budget: int, settings: ConfirmSettings) -> Any:
        sampler = (
            optuna.samplers.RandomSampler(seed=seed)
            if kind == "random"
            else optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
        )
        study, replay = _study(seed, sampler, pruner, truth.proxy_epochs), Replay(truth)
        n = proxy_trials(truth, budget, settings)
        _proxy(study, replay, n * truth.proxy_epochs)
        return _confirm(study, replay, settings), replay

    return run


def grid(truth: Truth, seed: int, budget: int, settings: ConfirmSettings) -> Any:
    """Every configuration in turn (a seeded order), as often as the compute allows, then
    the confirmation phase."""
    study, replay = _study(seed, optuna.samplers.RandomSampler(seed=seed)), Replay(truth)
    order = np.random.default_rng(seed).permutation(len(truth.configs))
    n = proxy_trials(truth, budget, settings)
    for j in range(n):
        params = truth.configs[order[j % len(order)]]["params"]
        study.enqueue_trial({k: params[k] for k in PARAMS})
    study.optimize(replay, n_trials=n)
    return _confirm(study, replay, settings), replay


def best_single(truth: Truth, seed: int, budget: int, settings: ConfirmSettings) -> Any:
    """TPE with all the compute on proxy trials, answering with the best single trial."""
    study = _study(seed, optuna.samplers.TPESampler(seed=seed, n_startup_trials=5))
    replay = Replay(truth)
    _proxy(study, replay, budget)
    return _best_single(study, truth), replay


def proxy_trials(truth: Truth, budget: int, settings: ConfirmSettings) -> int:
    """Proxy trials left once the confirmation phase's worst case is set aside."""
    reserve = settings.k * settings.max_seeds * truth.confirm_epochs
    n = (budget - reserve) // truth.proxy_epochs
    if n < settings.k:
        raise ValueError(
            f"--budget {budget} trial-epochs leaves {max(n, 0)} proxy trials after the "
            f"confirmation's {reserve}; give at least "
            f"{reserve + settings.k * truth.proxy_epochs}"
        )
    return n


PRUNED = ("tpe+hyperband+confirm", "tpe+median+confirm")  # the strategies that need curves
STRATEGIES: dict[str, Strategy] = {
    "random+confirm": sampled("random"),
    "tpe+confirm": sampled("tpe"),
    "tpe+hyperband+confirm": sampled("tpe", "hyperband"),
    "tpe+median+confirm": sampled("tpe", "median"),
    "grid+confirm": grid,
    "tpe best-single": best_single,
}


def evaluate(
    truth: Truth, budget: int, settings: ConfirmSettings, seeds: int
) -> dict[str, dict[str, Any]]:
    """Per strategy: regrets (points), top-2 rate, compute used and seed cycling, over seeds."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    gt = truth.truth()
    top2 = set(np.argsort(-gt)[:2].tolist())
    out = {}
    for name, strategy in STRATEGIES.items():
        if name in PRUNED and not truth.curves:
            continue  # no curves: the pruner would see nothing and prune nothing
        regrets, hits, used, cycled, pruned, proxies, ties = [], 0, [], 0, 0, 0, 0
        for seed in range(seeds):
            i, replay = strategy(truth, seed, budget, settings)
            regret = float("nan") if i is None else 100 * (gt.max() - gt[i])
            regrets.append(regret)
            hits += i in top2
            used.append(replay.epochs)
            cycled += replay.cycled
            pruned += replay.pruned
            proxies += replay.proxies
            ties += replay.tie
        r = np.array(regrets)
        iv = mean_interval(r[~np.isnan(r)]) if (~np.isnan(r)).any() else None
        out[name] = {
            "mean_regret": iv.mean if iv else float("nan"),
            "mean_regret_interval": [iv.low, iv.high] if iv else [float("nan")] * 2,
            "median_regret": float(np.median(r)),
            "worst_regret": float(np.max(r)),
            "top2_rate": hits / seeds,
            "mean_epochs_used": float(np.mean(used)),
            "cycled_seeds": cycled,
            "pruned_trials": pruned / seeds,
            "proxy_trials": proxies / seeds,
            "tie_rate": ties / seeds,
            "regrets": regrets,
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse, replay, print the table (and the JSON with ``--json``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("truth", type=Path, help="JSON of scripts/ground_truth.py")
    p.add_argument("--budget", type=int, default=None, help="trial-epochs (default: see --help)")
    p.add_argument("--search-seeds", type=int, default=5)
    d = ConfirmSettings()
    p.add_argument("--confirm", type=int, default=d.k)
    p.add_argument("--confirm-seeds", type=int, default=d.seeds)
    p.add_argument("--confirm-max-seeds", type=int, default=d.max_seeds)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    truth = Truth.load(args.truth)
    settings = ConfirmSettings(
        k=min(args.confirm, len(truth.configs)),
        epochs=truth.confirm_epochs,
        seeds=args.confirm_seeds,
        max_seeds=args.confirm_max_seeds,
    )
    # Default compute: the confirmation's worst case plus one proxy trial per configuration.
    budget = args.budget or (
        settings.k * settings.max_seeds * truth.confirm_epochs
        + len(truth.configs) * truth.proxy_epochs
    )
    results = evaluate(truth, budget, settings, args.search_seeds)
    gt = truth.truth()
    sep = separability(truth)
    print(
        f"{len(truth.configs)} configurations; ground-truth best "
        f"{truth.configs[int(np.argmax(gt))]['notation']} at {gt.max():.2%}; compute "
        f"{budget} trial-epochs (proxy trial {truth.proxy_epochs}, confirmation trial "
        f"{truth.confirm_epochs}); {args.search_seeds} search seeds; confirmation k="
        f"{settings.k}, seeds {settings.seeds}..{settings.max_seeds}"
    )
    truth_runs = min(len(c[truth.source]) for c in truth.configs)
    print(
        f"ground truth: {truth_runs} {truth.source} seeds a configuration"
        + (
            ", apart from every seed a replayed trial reads"
            if truth.independent
            else ": the seeds the confirmation phase reads (no truth seeds in the table), "
            "which flatters the confirmation"
        )
    )
    print(
        f"separability at the confirmation schedule ({sep['runs']} runs): F = {sep['f']:.2f}, "
        f"permutation p = {sep['p']:.2f}; seed-to-seed SD {sep['seed_sd']:.2f} pt, estimated SD "
        f"of the configurations' true means {sep['config_sd']:.2f} pt"
        + (
            ": the table cannot tell its configurations apart, and the regrets below measure "
            "the ground truth's own noise more than the strategies"
            if sep["p"] > 0.05
            else ""
        )
    )
    random_pick = 100 * float(np.mean(gt.max() - gt))
    print(f"a configuration picked at random, no training: mean regret {random_pick:.2f} pt")
    if not truth.curves:
        print("no per-epoch curves in the table: the pruned strategies are left out")
    print(f"{'strategy':22} {'mean regret [95% CI]':>22} {'median':>7} {'worst':>6} {'top-2':>6} "
          f"{'epochs used':>12} {'proxies':>8} {'pruned':>7} {'cycled':>7} "
          f"{'ties':>5}")  # fmt: skip
    for name, r in results.items():
        lo, hi = r["mean_regret_interval"]
        print(
            f"{name:22} {r['mean_regret']:>6.2f} [{lo:5.2f}, {hi:5.2f}] pt "
            f"{r['median_regret']:>7.2f} {r['worst_regret']:>6.2f} "
            f"{r['top2_rate']:>6.0%} {r['mean_epochs_used']:>12.0f} {r['proxy_trials']:>8.1f} "
            f"{r['pruned_trials']:>7.1f} "
            f"{r['cycled_seeds']:>7} {r['tie_rate']:>5.0%}"
        )
    base = "tpe+confirm"
    for name in (n for n in results if n in PRUNED):
        pairs = zip(results[name]["regrets"], results[base]["regrets"], strict=True)
        d = mean_interval([a - b for a, b in pairs])
        print(
            f"{name} minus {base}, paired over {d.n} search seeds: {d.mean:+.2f} pt regret "
            f"[95% CI {d.low:+.2f}, {d.high:+.2f}]"
        )
    print(
        "intervals are over search seeds on this one table: the search's own randomness, not "
        "the training noise behind the table's numbers"
    )
    if any(r["cycled_seeds"] for r in results.values()):
        print(
            "cycled: trials that reused a cached seed because the table has fewer seeds than "
            "the search asked for"
        )
    summary = {
        "budget": budget,
        "separability": sep,
        "random_pick_regret": random_pick,
        "settings": settings.to_dict(),
        "truth": truth.source,
        "results": results,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
