"""Trials per hour of the default search, end to end: the measured plan against the old default.

Runs ``resnext-nas search`` as a user would (a fresh process: start-up, data load, the plan,
storage, training, evaluation) for a fixed number of trials on real CIFAR-10, once with the old
default (one worker on every core, fp32, NHWC: ``--workers 1 --precision fp32
--channels-last --threads <cores>``) and once with the measured plan (``--workers auto``), and
prints trials per hour, trial-epochs per hour and their ratios from this one run. Where the
wall time goes: training steps (from every trial's epochs), validation, and the rest (start-up,
data, plan, sampler, storage, workers waiting for the last trials), as shares of the
worker-seconds (wall x workers).

    PYTHONPATH=. python benchmarks/bench_trials_per_hour.py \\
        --data-dir ../shared/data/cifar10-jpg.tar.gz --trials 12

Each search has its own study in a temporary SQLite file and no confirmation phase; the plan is
read from the cache (``resnext-nas plan`` measures it first if there is none). Pruning is left
as the search has it, so trial-epochs per hour (every epoch of a trial trains as many images),
which pruning does not change, is the figure that compares the two setups' speed; trials per
hour is what a user gets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def search(name: str, args: argparse.Namespace, tmp: Path, extra: list[str]) -> dict[str, Any]:
    """One search in a fresh process; its wall time, summary and trials' time split."""
    url = f"sqlite:///{tmp / (name + '.db')}"
    cmd = [
        sys.executable, "-m", "cli", "search", "--trials", str(args.trials), "--study", name,
        "--storage", url, "--dataset", "folder", "--data-dir", args.data_dir, "--confirm", "0",
        "--runs-dir", str(tmp / "runs"), "--seed", str(args.seed), "--json", *args.search, *extra,
    ]  # fmt: skip
    # The plan measured (or read from the cache) whatever RESNEXT_NAS_PLAN says outside.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RESNEXT_NAS_PLAN": "measure"}
    env.pop("OMP_NUM_THREADS", None)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"{name} failed: {proc.stderr.strip().splitlines()[-1:]}")
    summary = json.loads(proc.stdout)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from nas.search.attrs import is_trained_proxy

    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    trained = [t for t in trials if is_trained_proxy(t)]
    epochs = [c for t in trained for c in t.user_attrs.get("curve", [])]
    train_s = sum(c.get("train_seconds", 0.0) for c in epochs)
    val_s = sum(c["seconds"] - c.get("train_seconds", 0.0) for c in epochs)
    reports = summary["workers"]
    run = summary["run"]
    workers = run["workers"]
    return {
        "name": name,
        "wall": wall,
        "workers": workers,
        "label": f"{workers} x {run['threads']}, "
        f"{'NHWC' if run['channels_last'] else 'NCHW'}, {run['precision']}",
        "trials": len(trained),
        "epochs": len(epochs),
        "train_s": train_s,
        "val_s": val_s,
        # Inside train() but outside its epochs: building the model, the data on the device.
        "setup_s": sum(r["train_seconds"] for r in reports) - train_s - val_s,
        "latency_s": sum(r["latency_seconds"] for r in reports),
        # The workers' loops outside train(): sampler, storage, weights, heartbeats.
        "loop_s": sum(
            r["wall_seconds"] - r["train_seconds"] - r["latency_seconds"] - r["idle_seconds"]
            for r in reports
        ),
        # Workers waiting for the others' last trials once the study has enough.
        "idle_s": sum(r["idle_seconds"] for r in reports),
        # Start-up (interpreter, imports, data, plan, spawning the workers) and the summary.
        "edges_s": wall * workers - sum(r["wall_seconds"] for r in reports),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, help="real CIFAR-10: the JPEG tarball or tree")
    ap.add_argument("--trials", type=int, default=12, help="trials of each search")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("search", nargs="*", help="more options of both searches, after --")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    old = ["--workers", "1", "--threads", str(cores), "--precision", "fp32", "--channels-last"]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            search("old-default", args, Path(tmp), old),
            search("plan", args, Path(tmp), ["--workers", "auto"]),
        ]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    for r in rows:
        slots = r["wall"] * r["workers"]
        r["per_hour"] = r["trials"] / r["wall"] * 3600
        r["epochs_per_hour"] = r["epochs"] / r["wall"] * 3600
        kinds = ("train", "val", "setup", "latency", "loop", "idle", "edges")
        share = {k: r[f"{k}_s"] / slots for k in kinds}
        print(
            f"{r['name']:<12} {r['label']:<22} {r['trials']} trials ({r['epochs']} epochs) in "
            f"{r['wall']:.0f} s: {r['per_hour']:.0f} trials/h, {r['epochs_per_hour']:.0f} "
            f"epochs/h; of {r['workers']} worker(s) x wall: training {share['train']:.1%}, "
            f"validation {share['val']:.1%}, other {1 - share['train'] - share['val']:.1%} "
            f"(trial set-up {share['setup']:.1%}, latency {share['latency']:.1%}, sampler and "
            f"storage {share['loop']:.1%}, waiting for the last trials {share['idle']:.1%}, "
            f"start-up {share['edges']:.1%})"
        )
    a, b = rows
    print(
        f"plan / old default: {b['per_hour'] / a['per_hour']:.2f}x trials per hour, "
        f"{b['epochs_per_hour'] / a['epochs_per_hour']:.2f}x trial-epochs per hour"
    )


if __name__ == "__main__":
    main()
