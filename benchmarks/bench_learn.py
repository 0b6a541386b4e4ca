"""Does a slightly larger trial model or batch learn more per second on real CIFAR-10 (CPU)?

The search's default trial (8x1d, width 32, depths 1-1-1, batch 32, 3 epochs on 2,000 images)
is far from the CPU's matrix peak (benchmarks/bench_mfu.py). Each alternative here trains for
about the default trial's wall time: a one-epoch probe measures its images/s, and the epochs
are set so that it sees what that rate allows in the default's time. Printed: validation
accuracy (on 1,000 held-out training images) and wall seconds of each, in one run.

The data is an ImageFolder tree of CIFAR-10 JPEGs (train/<class>/*.jpg), read with the
``imagenet`` folder loader at 32x32 and then given CIFAR's augmentation (pad-4 crop, flip):

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_learn.py --data /work/cache/cifar10-jpg
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_learn.py --same-epochs --first-seed 1
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

import resnext
from nas.data import load_dataset
from nas.training.config import TrainConfig
from nas.training.loop import train

# name, spec, batch, lr: the default, then a larger batch, a larger model, and both.
DEFAULT = resnext.Spec("cifar", (1, 1, 1), 32, 8, 1)
WIDE = resnext.Spec("cifar", (1, 1, 1), 64, 8, 2)  # twice the FLOPs, 3x the parameters
CONFIGS = [
    ("default 8x1d w32 b32", DEFAULT, 32, 0.05),
    ("8x1d w32 b128", DEFAULT, 128, 0.1),
    ("8x2d w64 b32", WIDE, 32, 0.05),
    ("8x2d w64 b128", WIDE, 128, 0.1),
]


def main() -> None:
    """Train each config for the default trial's time and print accuracy against seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/cache/cifar10-jpg", help="CIFAR-10 JPEG tree")
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3, help="of the default trial")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument(
        "--same-epochs", action="store_true", help="every config trains --epochs (no probe)"
    )
    args = parser.parse_args()
    data = load_dataset(
        "imagenet",
        data_dir=args.data,
        resolution=32,
        images_per_class=1000,  # 10,000 decoded; 1,000 held out, --train-images trained on
        val_fraction=0.1,
        train_images=args.train_images,
    )
    data = dataclasses.replace(data, kind="cifar")
    print(
        f"{len(data.train_y)} train / {len(data.val_y)} val images, {torch.get_num_threads()} "
        f"threads (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    budget = None
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name, spec, batch, lr in CONFIGS:
            cfg = TrainConfig(epochs=1, batch_size=batch, lr=lr, seed=seed, device="cpu")
            epochs = args.epochs
            if not args.same_epochs:
                probe = train(spec, data, cfg)  # images/s of this config now
                rate = probe.history[0].images_per_second
                if budget is None:  # the default trial's training time, at its own rate
                    budget = args.epochs * len(data.train_y) / rate
                epochs = max(1, round(budget * rate / len(data.train_y)))
            t0 = time.perf_counter()
            result = train(spec, data, dataclasses.replace(cfg, epochs=epochs))
            wall = time.perf_counter() - t0
            mflops = resnext.complexity(spec).flops / 1e6
            print(
                f"seed {seed} {name:<22} {mflops:5.1f} MFLOPs  {epochs:2d} epochs  "
                f"{result.images_per_second:6.0f} img/s  {wall:6.1f} s  val acc "
                f"{result.final_val_accuracy:.1%} (best {result.val_accuracy:.1%})",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
