"""Benchmark of the study storage under load, and of TPE's cost as a study grows.

Two figures decide how many machines one study can feed:

1. sustained trials per minute of the storage: ``P`` processes each run the storage side of a
   trial as the objective does (ask, draw the spec, claim a seed with
   :func:`nas.search.objective.claim_seed`, write the attributes one by one, tell) with no
   training, so
   the figure is the storage's ceiling, on SQLite (WAL) and, given a URL, on PostgreSQL;
2. the sampler's seconds per trial (ask and draw the spec) with TPE as the workers use it
   (``constant_liar``), at 1,000 and 5,000 finished trials: TPE reads every trial at each suggest.

Both backends are measured in one run and printed side by side, with PostgreSQL's ratio to
SQLite; PostgreSQL is measured when ``--postgres`` or ``$RESNEXT_NAS_TEST_POSTGRES`` gives a URL.

    eval "$(scripts/start_postgres.sh)"
    PYTHONPATH=. python benchmarks/bench_storage.py            # the figures (several minutes)
    PYTHONPATH=. python benchmarks/bench_storage.py --quick    # a smoke run: seconds, not figures
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import time
import uuid
import warnings

import numpy as np
import optuna

from nas.search.objective import claim_seed, set_user_attrs
from nas.search.space import SearchSpace
from nas.search.storage import open_storage, quiet_optuna
from nas.search.study import make_sampler
from nas.search.suggest import OutOfBudget, suggest_spec
from resnext.budget import Budget

ATTRS = 12  # the attributes a trial writes after its seed (complexity, curve, status, speeds...)


def space() -> SearchSpace:
    """The default search space of `search` on CIFAR (8e6 FLOPs +-10%)."""
    return SearchSpace(
        budget=Budget(8e6, None, 0.1),
        template="cifar",
        depths=((1, 1, 1), (2, 2, 2)),
        widths=(32,),
        classes=10,
        resolution=32,
    )


def quiet() -> None:
    """Optuna's warnings off, "heartbeat is supposed to be used with optimize" included: the
    benchmark asks and tells by hand, as the objective's storage side does."""
    quiet_optuna()
    warnings.filterwarnings("ignore", message="Heartbeat of storage")


def _cycle(study: optuna.Study, sp: SearchSpace, i: int) -> None:
    """The storage side of one trial, without training."""
    trial = study.ask()
    try:
        spec = suggest_spec(trial, sp)
    except OutOfBudget:  # an empty cell: rejected before any write, as the objective does
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return
    claim_seed(trial, spec, {}, 0)
    set_user_attrs(trial, {f"metric_{k}": i + k * 0.5 for k in range(ATTRS)})
    study.tell(trial, 0.5)


def _worker(url: str, name: str, seconds: float, done: mp.Queue) -> None:
    quiet()
    study = optuna.load_study(
        study_name=name, storage=open_storage(url), sampler=optuna.samplers.RandomSampler()
    )
    sp, n, end = space(), 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        _cycle(study, sp, n)
        n += 1
    done.put(n)


def throughput(url: str, procs: int, seconds: float) -> float:
    """Trials per minute that ``procs`` processes push through the storage together."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=open_storage(url))
    ctx = mp.get_context("spawn")
    done = ctx.Queue()
    ps = [ctx.Process(target=_worker, args=(url, name, seconds, done)) for _ in range(procs)]
    try:
        for p in ps:
            p.start()
        total = sum(done.get(timeout=seconds + 300) for _ in ps)
    finally:
        for p in ps:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        optuna.delete_study(study_name=name, storage=open_storage(url))
    return total / seconds * 60


def sampler_seconds(url: str, finished: int, repeats: int) -> float:
    """Median seconds of TPE's ask and spec draw in a study of ``finished`` complete trials."""
    sp = space()
    # The finished trials are drawn at random in memory, then copied into the storage at once.
    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    rng = np.random.default_rng(0)
    made = 0  # counted here: `scratch.trials` deep-copies every trial, O(n^2) over the loop
    while made < finished:
        t = scratch.ask()
        made += 1
        try:
            suggest_spec(t, sp)
        except OutOfBudget:
            scratch.tell(t, state=optuna.trial.TrialState.PRUNED)
            continue
        scratch.tell(t, float(rng.uniform(0.2, 0.8)))
    name = f"tpe-{uuid.uuid4().hex[:8]}"
    storage = open_storage(url)
    optuna.create_study(study_name=name, storage=storage)
    try:
        study = optuna.load_study(
            study_name=name, storage=storage, sampler=make_sampler("tpe", 0, finished + repeats)
        )
        study.add_trials(scratch.trials)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            trial = study.ask()
            try:
                suggest_spec(trial, sp)
                value = 0.5
            except OutOfBudget:
                value = None
            times.append(time.perf_counter() - t0)
            study.tell(trial, value, state=None if value else optuna.trial.TrialState.PRUNED)
        return statistics.median(times)
    finally:
        optuna.delete_study(study_name=name, storage=storage)


# --quick: every step runs, on sizes too small for the figures to mean anything.
FULL = {"seconds": 20.0, "procs": [1, 4], "sizes": [1000, 5000], "repeats": 5}
QUICK = {"seconds": 2.0, "procs": [1, 2], "sizes": [50, 200], "repeats": 2}


def measure(url: str, args: argparse.Namespace) -> tuple[dict[int, float], dict[int, float]]:
    """Trials per minute by process count, and TPE's seconds per trial by finished trials."""
    rates = {p: throughput(url, p, args.seconds) for p in args.procs}
    tpe = {n: sampler_seconds(url, n, args.repeats) for n in args.sizes}
    return rates, tpe


def table(results: dict[str, tuple[dict[int, float], dict[int, float]]]) -> list[str]:
    """The figures with one column a backend, and PostgreSQL over SQLite when both ran."""
    labels = list(results)
    both = labels == ["SQLite", "PostgreSQL"]
    head = f"{'':42}" + "".join(f"{lab:>12}" for lab in labels)
    lines = [head + (f"{'PostgreSQL/SQLite':>19}" if both else "")]

    def row(name: str, values: list[float], fmt: str) -> None:
        ratio = f"{values[1] / values[0]:>18.2f}x" if both and values[0] else ""
        lines.append(f"{name:42}" + "".join(f"{v:>12{fmt}}" for v in values) + ratio)

    rates, tpe = next(iter(results.values()))  # every backend ran the same sizes
    for p in rates:
        name = f"trials/min, {p} process{'es' * (p > 1)} (storage side)"
        row(name, [results[lab][0][p] for lab in labels], ",.0f")
    for n in tpe:
        row(
            f"TPE ask + spec draw at {n:,} finished, s",
            [results[lab][1][n] for lab in labels],
            ".3f",
        )
    return lines


def meaning(label: str, rates: dict[int, float], tpe: dict[int, float]) -> str:
    """What the figures mean for a study fed by many machines."""
    best, big, small = max(rates.values()), max(tpe), min(tpe)
    # A trial of 30 s costs the storage 1/best minute; machines each finishing a trial every
    # 30 s saturate it at best / 2 machines; TPE adds its seconds to every trial.
    return (
        f"{label}: with 30 s trials, the storage alone would feed about {best / 2:,.0f} "
        f"machines; at {big:,} trials TPE adds {tpe[big]:.2f} s ({tpe[big] / 30:.0%} of a 30 s "
        f"trial) to each, on the worker that asks, {tpe[big] / tpe[small]:.1f}x its cost at "
        f"{small:,}"
    )


def main() -> None:
    """Print each backend's figures side by side and what they mean for a many-machine study."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--postgres",
        default=os.environ.get("RESNEXT_NAS_TEST_POSTGRES"),
        help="PostgreSQL URL (default: $RESNEXT_NAS_TEST_POSTGRES; unset: SQLite only).",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="A smoke run: 2 s per throughput run, 1 and 2 processes, TPE at 50 and 200 trials.",
    )
    ap.add_argument(
        "--seconds", type=float, help=f"Length of a throughput run ({FULL['seconds']})."
    )
    ap.add_argument("--procs", type=int, nargs="+", help=f"Process counts ({FULL['procs']}).")
    ap.add_argument("--sizes", type=int, nargs="+", help=f"Finished trials ({FULL['sizes']}).")
    ap.add_argument("--repeats", type=int, help=f"TPE asks timed a size ({FULL['repeats']}).")
    args = ap.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    quiet()
    with tempfile.TemporaryDirectory() as tmp:
        backends = {"SQLite": f"sqlite:///{tmp}/bench.db"}
        if args.postgres:
            backends["PostgreSQL"] = args.postgres
        print(f"cpu cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
        if args.quick:
            print("--quick: a smoke run on tiny sizes; its figures are not to be quoted")
        if not args.postgres:
            print("PostgreSQL: not measured (give --postgres URL or $RESNEXT_NAS_TEST_POSTGRES)")
        results = {label: measure(url, args) for label, url in backends.items()}
    print("\n".join(table(results)))
    for label, (rates, tpe) in results.items():
        print(meaning(label, rates, tpe))


if __name__ == "__main__":
    main()
