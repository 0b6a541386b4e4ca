"""Does a CPU trial in bf16 autocast reach the accuracy of the same trial in fp32? Paired seeds.

Each (configuration, seed) trains twice, in fp32 and under ``torch.autocast("cpu", bfloat16)``,
with the same initialisation, batches and augmentation; only the arithmetic differs. The
difference bf16 - fp32 of each pair is averaged over the pairs with a Student t interval
(scipy), and set against the seed-to-seed SD of fp32 (pooled over the configurations): bf16 is
"as good" when the interval lies inside +-1 seed SD. Accuracy is read on the trial's validation
split and on the 10,000 test images, whose larger sample measures the difference more finely.

    PYTHONPATH=. python benchmarks/bench_bf16_accuracy.py \\
        --data-dir ../shared/data/cifar10-jpg.tar.gz --seeds 5 --jobs 2 --out runs/bf16.json

The default trial of a search (3 epochs of batch 32 on 4,000 images, lr 0.05) on three
configurations of the default space; ``--out`` keeps every finished run, and a rerun with the
same file skips them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from nas.training.config import DEFAULT_TRIAL

CONFIGS = ("8x1d 1-1-1", "1x6d 1-1-1", "2x2d 2-2-2")  # of the default 8e6-FLOP space, width 32


def _spec(config: str, classes: int, resolution: int) -> Any:
    import resnext

    cd, depths = config.split()
    c, d = cd.rstrip("d").split("x")
    return resnext.Spec(
        cardinality=int(c),
        bottleneck_width=int(d),
        depths=tuple(int(n) for n in depths.split("-")),
        width=32,
        template="cifar",
        classes=classes,
        resolution=resolution,
    )


def _run(job: tuple[str, str, int, str, int, int]) -> dict[str, Any]:
    """Train one (config, precision, seed) on one thread; its accuracies and seconds."""
    config, precision, seed, data_dir, train_images, epochs = job
    import torch

    torch.set_num_threads(1)
    from nas.data import DataOptions
    from nas.training.config import DEFAULT_TRIAL
    from nas.training.loop import train

    data = DataOptions("folder", data_dir=data_dir).load(
        train_images=train_images,
        val_fraction=DEFAULT_TRIAL.val_fraction,
        eval_test=True,
    )
    cfg = DEFAULT_TRIAL.train_config(device="cpu", seed=seed)
    cfg = dataclasses.replace(cfg, precision=precision, threads=1, epochs=epochs)
    spec = _spec(config, data.classes, data.resolution)
    t0 = time.perf_counter()
    result = train(spec, data, cfg, eval_test=True)
    return {
        "config": config,
        "precision": precision,
        "seed": seed,
        "val_accuracy": result.final_val_accuracy,
        "test_accuracy": result.test_accuracy,
        "seconds": time.perf_counter() - t0,
        "images_per_second": result.images_per_second,
        "val_images": len(data.val_y),
    }


def summarise(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Paired bf16 - fp32 difference of ``key`` with its 95% t interval, and the fp32 seed SD."""
    by = {(r["config"], r["seed"], r["precision"]): r[key] for r in runs}
    pairs = [
        by[c, s, "bf16"] - by[c, s, "fp32"]
        for (c, s, p) in by
        if p == "fp32" and (c, s, "bf16") in by
    ]
    diffs = np.array(pairs)
    n = len(diffs)
    mean = float(diffs.mean()) if n else float("nan")
    half = float(stats.t.ppf(0.975, n - 1) * diffs.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
    groups = {}
    for (c, _, p), v in by.items():
        if p == "fp32":
            groups.setdefault(c, []).append(v)
    dof = sum(len(g) - 1 for g in groups.values())
    ss = sum(((np.array(g) - np.mean(g)) ** 2).sum() for g in groups.values())
    seed_sd = float(np.sqrt(ss / dof)) if dof else float("nan")
    return {
        "pairs": n,
        "difference": mean,
        "low": mean - half,
        "high": mean + half,
        "seed_sd": seed_sd,
        "equivalent": bool(n > 1 and -seed_sd < mean - half and mean + half < seed_sd),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, help="real CIFAR-10: the JPEG tarball or tree")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS))
    ap.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--out", type=Path, default=Path("runs/bf16-accuracy.json"))
    ap.add_argument("--train-images", type=int, default=DEFAULT_TRIAL.train_images)
    ap.add_argument("--epochs", type=int, default=DEFAULT_TRIAL.epochs)
    args = ap.parse_args()
    runs: list[dict[str, Any]] = json.loads(args.out.read_text()) if args.out.exists() else []
    done = {(r["config"], r["precision"], r["seed"]) for r in runs}
    jobs = [
        (c, p, s, args.data_dir, args.train_images, args.epochs)
        for s in range(args.seeds)
        for c in args.configs
        for p in ("fp32", "bf16")
        if (c, p, s) not in done
    ]
    t0 = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for r in pool.imap_unordered(_run, jobs):
            runs.append(r)
            args.out.write_text(json.dumps(runs, indent=1))
            print(
                f"{r['config']:<11} seed {r['seed']} {r['precision']}: val {r['val_accuracy']:.2%}"
                f" test {r['test_accuracy']:.2%} in {r['seconds']:.0f} s"
                f" ({r['images_per_second']:.0f} img/s)",
                flush=True,
            )
    print(f"{len(jobs)} runs in {time.perf_counter() - t0:.0f} s, {args.jobs} at a time")
    for key in ("val_accuracy", "test_accuracy"):
        s = summarise(runs, key)
        verdict = "within" if s["equivalent"] else "NOT within"
        print(
            f"{key}: bf16 - fp32 {s['difference'] * 100:+.2f} points, 95% CI "
            f"[{s['low'] * 100:+.2f}, {s['high'] * 100:+.2f}] over {s['pairs']} pairs; fp32 seed "
            f"SD {s['seed_sd'] * 100:.2f} points: {verdict} +-1 seed SD"
        )
    speed = {
        p: np.median([r["images_per_second"] for r in runs if r["precision"] == p])
        for p in ("fp32", "bf16")
    }
    print(f"training speed, one thread: bf16 {speed['bf16'] / speed['fp32']:.2f}x fp32 (medians)")


if __name__ == "__main__":
    main()
