"""Benchmark of the search on the built-in synthetic dataset; prints ratios measured in one run.

1. Overhead: the share of the studies' wall time not spent inside ``train()`` (sampler,
   storage, heartbeats, bookkeeping), for trials of a few seconds (latency is not measured here).
2. TPE against random search: the best validation error after N trials, averaged over seeds.
3. Pruning: trial-epochs trained by TPE with Hyperband pruning against TPE without, and the best
   error each found.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_search.py
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_search.py --trials 20 --seeds 4

The default trial (3 epochs of batch 32 on 2,000 synthetic images at 16x16, about 190 SGD
steps: enough to leave chance, about 10 s on one core) gives the samplers something to learn;
with the learning rate searched too, a bad draw stays near chance. 3 seeds x 3 kinds x 12 trials
take about 15-25 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from nas.data import load_dataset
from nas.search.attrs import is_trained_proxy
from nas.search.space import SearchSpace
from nas.search.storage import load
from nas.search.study import SearchSettings
from nas.search.workers import run_search
from nas.training.config import TrainConfig
from resnext.budget import Budget

# The CLI's default space (cli.SEARCH_*): CIFAR template, depths 1-1-1 and 2-2-2, width 32,
# 8e6 FLOPs +-10% at 32x32 (scaled with the area at --resolution), with the learning rate
# searched too so that the samplers have something to learn beyond a few architectures.
DEPTHS = ((1, 1, 1), (2, 2, 2))


def space(data, tune_lr: bool) -> SearchSpace:
    return SearchSpace(
        Budget(8e6 * (data.resolution / 32) ** 2, None, 0.1), "cifar", DEPTHS, (32,),
        classes=data.classes,
        resolution=data.resolution, tune_lr=tune_lr,
    )  # fmt: skip


def study(data, tmp: Path, name: str, n: int, train: TrainConfig, **kw) -> dict:
    """Run one study; its best error, trial-epochs, and the worker's time split."""
    url = f"sqlite:///{tmp / 'bench.db'}"  # one file for every study, as a user would have
    settings = SearchSettings(space(data, True), name, latency=False, **kw)
    t0 = time.perf_counter()
    (rep,) = run_search(settings, data, train, n, storage=url)
    wall = time.perf_counter() - t0
    trials = [t for t in load(name, url).trials if is_trained_proxy(t)]
    errors = [1 - max(c["val_accuracy"] for c in t.user_attrs["curve"]) for t in trials]
    complete = [t.values[0] for t in trials if t.values]
    return {
        "best": min(complete) if complete else min(errors),
        "epochs": sum(len(t.user_attrs["curve"]) for t in trials),
        "wall": wall,
        "train": rep.train_seconds,
        "trials": len(trials),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12, help="trials per study")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per sampler")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--train-images", type=int, default=2000)
    ap.add_argument("--resolution", type=int, default=16, help="resize the 32x32 images")
    args = ap.parse_args()
    data = load_dataset(
        "synthetic",
        train_images=args.train_images,
        val_fraction=0.02,  # as `search` does: 1,000 of the 50,000 images
        seed=0,
        resolution=args.resolution,
    )
    train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, device="cpu", seed=0)
    print(
        f"synthetic: {len(data.train_x)} train / {len(data.val_x)} val images at "
        f"{data.resolution}px; {args.epochs} epochs per trial; {args.trials} trials per study; "
        f"{space(data, True).describe()}"
    )
    runs: dict[str, list[dict]] = {"random": [], "tpe": [], "tpe+hyperband": []}
    kinds = {
        "random": {"sampler": "random", "pruner": "none"},
        "tpe": {"sampler": "tpe", "pruner": "none"},
        "tpe+hyperband": {"sampler": "tpe", "pruner": "hyperband"},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for k, kw in kinds.items():
                name = f"{k.replace('+', '-')}-{seed}"
                config = dataclasses.replace(train, seed=seed)
                r = study(data, Path(tmp), name, args.trials, config, seed=seed, **kw)
                runs[k].append(r)
                print(f"  {name}: best error {r['best']:.3f}, {r['epochs']} trial-epochs, "
                      f"{r['wall']:.0f} s")  # fmt: skip
    every = [r for v in runs.values() for r in v]
    wall, trained = sum(r["wall"] for r in every), sum(r["train"] for r in every)
    n = sum(r["trials"] for r in every)
    print(
        f"\n1. overhead: {n} trials in {wall:.0f} s ({wall / n:.1f} s a trial); inside train() "
        f"{trained / wall:.1%}; search overhead (sampler, storage, heartbeats, bookkeeping) "
        f"{(wall - trained) / wall:.2%}, {(wall - trained) / n * 1e3:.0f} ms a trial"
    )
    best = {k: float(np.mean([r["best"] for r in v])) for k, v in runs.items()}
    epochs = {k: float(np.mean([r["epochs"] for r in v])) for k, v in runs.items()}
    print(f"\n2. best validation error after {args.trials} trials, mean of {args.seeds} seeds:")
    for k in ("random", "tpe"):
        per_seed = ", ".join(f"{r['best']:.3f}" for r in runs[k])
        print(f"   {k:14s} {best[k]:.3f}  ({per_seed})")
    print(f"   TPE / random error ratio: {best['tpe'] / best['random']:.3f}")
    print("\n3. pruning (TPE, same seeds):")
    for k in ("tpe", "tpe+hyperband"):
        print(f"   {k:14s} {epochs[k]:.1f} trial-epochs, best error {best[k]:.3f}")
    print(
        f"   Hyperband trains {epochs['tpe+hyperband'] / epochs['tpe']:.2f}x the trial-epochs "
        f"({1 - epochs['tpe+hyperband'] / epochs['tpe']:.0%} saved) at a best error "
        f"{best['tpe+hyperband'] - best['tpe']:+.3f} from no pruning"
    )


if __name__ == "__main__":
    main()
