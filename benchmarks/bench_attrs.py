"""Benchmark of writing a trial's user attributes through Optuna's public API.

A search trial stores about fifteen user attributes (spec, complexity, latency, status, ...).
``Trial.set_user_attr`` commits one transaction each; this prints that cost next to one
transaction carrying all fifteen values (one attribute holding a dict: what a batched write
would cost at best), per trial and as a share of a 10 s trial, on SQLite (WAL, as
``nas.search.storage`` sets it up) and, given a URL, on PostgreSQL.

    PYTHONPATH=. python benchmarks/bench_attrs.py
    eval "$(scripts/start_postgres.sh)"
    PYTHONPATH=. python benchmarks/bench_attrs.py --postgres "$RESNEXT_NAS_TEST_POSTGRES"
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
import warnings

import optuna

from nas.search.storage import open_storage, quiet_optuna

N_ATTRS = 15
SHORT_TRIAL = 10.0  # seconds: the shortest trials of the 10-60 s range


def _attrs(i: int) -> dict[str, object]:
    """Fifteen values shaped like a trial's (numbers, a spec dict, a status)."""
    spec = {"template": "cifar", "depths": [1, 1, 1], "width": 32, "cardinality": 8}
    values: dict[str, object] = {"spec": spec, "status": "complete"}
    values.update({f"metric_{k}": i * 0.5 + k for k in range(N_ATTRS - len(values))})
    return values


def measure(url: str, repeats: int) -> tuple[float, float]:
    """Median seconds per trial: fifteen public calls, and one call holding all fifteen."""
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name=f"attrs-{uuid.uuid4().hex[:8]}")
    each, one = [], []
    for i in range(repeats):
        trial = study.ask()
        attrs = _attrs(i)
        t = time.perf_counter()
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        each.append(time.perf_counter() - t)
        trial = study.ask()
        t = time.perf_counter()
        trial.set_user_attr("all", attrs)
        one.append(time.perf_counter() - t)
    return statistics.median(each), statistics.median(one)


def report(name: str, url: str, repeats: int) -> None:
    """Print one backend's line."""
    each, one = measure(url, repeats)
    print(
        f"{name}: {N_ATTRS} attributes {1e3 * each:.1f} ms one call each, "
        f"{1e3 * one:.1f} ms in one transaction (x{each / one:.1f}); "
        f"extra {1e3 * (each - one):.1f} ms = {100 * (each - one) / SHORT_TRIAL:.2f}% "
        f"of a {SHORT_TRIAL:g} s trial"
    )


def main() -> None:
    """Run the benchmark on SQLite, and on PostgreSQL when given its URL."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--postgres", default=os.environ.get("RESNEXT_NAS_TEST_POSTGRES"))
    args = parser.parse_args()
    quiet_optuna()
    warnings.simplefilter("ignore")  # "heartbeat is supposed to be used with Study.optimize"
    with tempfile.TemporaryDirectory() as tmp:
        report("SQLite (WAL)", f"sqlite:///{tmp}/attrs.db", args.repeats)
    if args.postgres:
        report("PostgreSQL", args.postgres, args.repeats)


if __name__ == "__main__":
    main()
