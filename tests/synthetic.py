"""Optuna studies of made-up but plausible ResNeXt trials, without training (tests, benchmarks).

FLOPs, params and activations are the exact counts of each spec; accuracy, latency and the
learning curves come from a seeded toy model in which accuracy grows with log-FLOPs and with
cardinality, as in the paper.
"""

from __future__ import annotations

import math
import random
from functools import cache
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

import resnext

# Table 2's complexity-preserving pairs, Fig. 7's cardinality series (d=64) and width series
# (C=1), on the CIFAR template (ResNeXt-29), then random (C, d) around them.
TABLE2 = [(1, 64), (2, 40), (4, 24), (8, 14), (32, 4)]
FIG7 = [(c, 64) for c in (1, 2, 4, 8, 16)] + [(1, d) for d in (128, 256, 512, 1024)]
CARDS = [1, 2, 4, 8, 16, 32]
DISTRIBUTIONS = {
    "cardinality": CategoricalDistribution(CARDS),
    "bottleneck_width": IntDistribution(1, 1024, log=True),
    "lr": FloatDistribution(1e-3, 1.0, log=True),
    "optimizer": CategoricalDistribution(["sgd", "adamw"]),
}


@cache
def _counts(c: int, d: int) -> tuple[dict[str, Any], dict[str, int]]:
    spec = resnext.Spec("cifar", (3, 3, 3), 256, c, d)
    return spec.to_dict(), resnext.complexity(spec).to_dict()


def _accuracy(c: int, flops: int, lr: float, optimizer: str, rng: random.Random) -> float:
    """Toy model: more FLOPs and more C help, an lr far from 0.1 hurts."""
    acc = 0.62 + 0.035 * math.log2(flops / 1e8) + 0.012 * math.log2(c)
    acc -= 0.03 * abs(math.log10(lr) + 1) + (0.01 if optimizer == "adamw" else 0.0)
    return min(0.97, max(0.1, acc + rng.gauss(0, 0.01)))


def synthetic_trials(
    n: int, seed: int = 0, seeds_per_spec: int = 1, epochs: int = 8, odd: bool = True
) -> list[optuna.trial.FrozenTrial]:
    """``n`` finished trials; with ``odd``, every 7th is pruned and every 11th failed."""
    rng = random.Random(seed)
    pairs = TABLE2 + FIG7
    trials = []
    for i in range(n):
        if i < len(pairs) * seeds_per_spec:
            c, d = pairs[i // seeds_per_spec]
        else:
            c = rng.choice(CARDS)
            d = max(1, round(2 ** rng.uniform(1, 7) / math.sqrt(c)) * 2)
        lr = 0.1 if i < len(pairs) * seeds_per_spec else 10 ** rng.uniform(-3, 0)
        optimizer = "sgd" if i % 3 else "adamw"
        spec, cx = _counts(c, d)
        acc = _accuracy(c, cx["flops"], lr, optimizer, rng)
        state = TrialState.COMPLETE
        if odd and i % 11 == 10:
            state = TrialState.FAIL
        elif odd and i % 7 == 6:
            state = TrialState.PRUNED
        run = epochs if state == TrialState.COMPLETE else (0 if state == TrialState.FAIL else 3)
        history = []
        for e in range(1, run + 1):
            a = acc * (1 - 0.6 * math.exp(-e / 2)) + rng.gauss(0, 0.003)
            history.append(
                {
                    "epoch": e,
                    "val_accuracy": round(a, 4),
                    "val_loss": round(2.5 * (1 - a), 4),
                    "train_loss": round(2.3 * (1 - a) * 0.9, 4),
                }
            )
        best = max((h["val_accuracy"] for h in history), default=None)
        attrs = {
            "spec": spec,
            **cx,
            "latency": cx["flops"] / 4e11 * (1 + 0.08 * math.log2(c)),
            "history": history,
            "train_images_per_second": 1e13 / cx["flops"],
            "inference_images_per_second": 3e13 / cx["flops"],
            "wall_seconds": run * cx["flops"] / 1e8,
            "seed": i % seeds_per_spec if i < len(pairs) * seeds_per_spec else 0,
        }
        if best is not None and state == TrialState.COMPLETE:
            attrs["val_accuracy"] = best
        trials.append(
            optuna.trial.create_trial(
                state=state,
                value=1 - best if state == TrialState.COMPLETE else None,
                params={"cardinality": c, "bottleneck_width": d, "lr": lr, "optimizer": optimizer},
                distributions=DISTRIBUTIONS,
                user_attrs=attrs,
            )
        )
    return trials


def synthetic_study(
    storage: str, name: str = "synthetic", n: int = 40, **kwargs: Any
) -> optuna.Study:
    """A study in ``storage`` holding :func:`synthetic_trials` (error minimised)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    study.add_trials(synthetic_trials(n, **kwargs))
    return study
