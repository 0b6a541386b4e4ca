"""How often the confirmation names a winner, and how often rightly: P(best) on simulated seeds.

For k configurations with n seeds each, seed noise of SD 1 and the best configuration ``delta``
SDs above the others (which are equal), draws the accuracies many times, computes
:func:`nas.stats.recommend.p_best` as the confirmation phase does and counts the draws whose top
P(best) reaches the tie threshold (``nas.stats.recommend.TIE_BELOW``): a named winner. With
``delta``
0 every named winner is a false one; with ``delta`` > 0 the table also gives the share of named
winners that are the truly best configuration.

    PYTHONPATH=. python benchmarks/bench_p_best.py
    PYTHONPATH=. python benchmarks/bench_p_best.py --draws 1000 --configs 2,3,5 --seeds 3,5,10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.stats.recommend import TIE_BELOW, p_best  # noqa: E402


def named(k: int, n: int, delta: float, draws: int, seed: int = 0) -> tuple[float, float]:
    """Share of draws with a named winner, and of those, the share naming the true best."""
    rng = np.random.default_rng(seed)
    wins = right = 0
    for i in range(draws):
        acc = {
            f"c{j}": {s: float(rng.normal(delta if j == 0 else 0.0, 1.0)) for s in range(n)}
            for j in range(k)
        }
        probs = p_best(acc, n=1000, seed=i)
        top = max(probs, key=probs.__getitem__)
        if probs[top] >= TIE_BELOW:
            wins += 1
            right += top == "c0"
    return wins / draws, (right / wins if wins else float("nan"))


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    """Print the table; return its rows."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--draws", type=int, default=300)
    p.add_argument("--configs", default="2,3")
    p.add_argument("--seeds", default="3,5")
    p.add_argument("--deltas", default="0,0.5,1", help="the best one's lead, in seed SDs")
    args = p.parse_args(argv)
    rows = []
    print(f"P(best) >= {TIE_BELOW} names a winner; {args.draws} draws a cell, seed SD 1")
    print(f"{'configs':>7} {'seeds':>5} {'lead (SD)':>9} {'named a winner':>15} {'rightly':>8}")
    for k in map(int, args.configs.split(",")):
        for n in map(int, args.seeds.split(",")):
            for delta in map(float, args.deltas.split(",")):
                win, right = named(k, n, delta, args.draws)
                row = {"configs": k, "seeds": n, "delta": delta, "named": win, "right": right}
                rows.append(row)
                shown = "-" if delta == 0 else f"{right:.0%}"
                print(f"{k:>7} {n:>5} {delta:>9.1f} {win:>15.0%} {shown:>8}")
    return rows


if __name__ == "__main__":
    main()
