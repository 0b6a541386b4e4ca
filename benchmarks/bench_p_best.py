"""Is the answer calibrated? The verdicts and P(best) of the confirmation on simulated studies.

Three tables, each from simulated confirmation phases judged by the real code
(:func:`nas.stats.recommend.race` and :func:`nas.stats.recommend.recommend`), seed noise of SD 1:

1. **Verdicts** for ``k`` configurations starting on ``n`` seeds, racing up to ``--max-seeds``:
   the true best is ``delta`` noise SDs above the others (which are equal). Columns: how often
   the answer is ``best`` / ``equivalent`` / ``no-signal``, how often a ``best`` names the truly
   best one (with delta 0 every ``best`` is a false one), and the seeds racing spent a
   configuration. Targets: ``best`` on equal means in at most 10% of draws; right when ``best``
   at least 90% at a lead of 1 SD.
2. **Reliability** of P(best): studies of 2-8 configurations and 2-5 seeds whose true
   accuracies are drawn around a common mean with a spread tau ~ U(0, 1.5) SD (the model's own
   prior shape); of the answers whose top P(best) falls in each bin, how often that
   configuration is truly the best. Calibrated when the share lies inside the bin.
3. **Replay** on a ground-truth table (``scripts/ground_truth.py``; by default the flat real
   CIFAR-10 band in ``benchmarks/data/ground-truth-cifar10.json``): ``--replay-k`` configurations
   drawn at random, judged on their measured confirmation seeds (chance 1 / classes); the share of
   each verdict, and the regret of the pick (ground-truth mean of the best of the drawn
   configurations minus the pick's, on the table's independent truth seeds), next to the
   leader's and a random pick's; how often the pick's stated 95% bound held, by the truth seeds
   and on the same band simulated with a known truth.

    PYTHONPATH=. python benchmarks/bench_p_best.py
    PYTHONPATH=. python benchmarks/bench_p_best.py --draws 1000 --configs 2,3,5,8 --seeds 2,3,5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.stats.recommend import VERDICTS, Criterion, race, recommend  # noqa: E402

TRUTH = ROOT / "benchmarks" / "data" / "ground-truth-cifar10.json"
# Accuracies are simulated in fractions around 0.5 with a seed SD of SD, far from 0 and 1, and
# with chance at 0.1 out of the way: the tables measure the statistics, not the edges.
SD = 0.02
CENTRE = 0.5
CHANCE = 0.1
DRAWS = 1000  # posterior draws a fit (the product uses 4000; 1000 keeps the tables quick)


def simulate(
    truth: np.ndarray, n: int, max_seeds: int, rng: np.random.Generator
) -> tuple[Any, int]:
    """One confirmation phase on true means ``truth``: ``n`` seeds, racing, then the answer."""
    names = [f"c{j}" for j in range(len(truth))]
    acc = {k: {s: float(rng.normal(truth[j], SD)) for s in range(n)} for j, k in enumerate(names)}
    while True:
        more = race(acc, max_seeds, CHANCE, draws=DRAWS)
        if not more:
            break
        for k in more:
            acc[k][len(acc[k])] = float(rng.normal(truth[names.index(k)], SD))
    rec = recommend(acc, chance=CHANCE, draws=DRAWS, seed=int(rng.integers(1 << 30)))
    return rec, sum(len(v) for v in acc.values())


def verdict_table(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Table 1: verdict shares, right-when-best and seeds spent, per cell."""
    rows = []
    print(f"1. verdicts; {args.draws} draws a cell, seed SD 1, racing up to {args.max_seeds} seeds")
    head = f"{'configs':>7} {'seeds':>5} {'lead':>5} {'best':>6} {'equiv':>6} {'no-sig':>6}"
    print(f"{head} {'rightly':>8} {'seeds/config':>12}")
    for k in map(int, args.configs.split(",")):
        for n in map(int, args.seeds.split(",")):
            for delta in map(float, args.deltas.split(",")):
                rng = np.random.default_rng([k, n, int(delta * 100)])
                truth = np.full(k, CENTRE)
                truth[0] += delta * SD
                count = dict.fromkeys(VERDICTS, 0)
                right = spent = 0
                for _ in range(args.draws):
                    rec, used = simulate(truth, n, max(n, args.max_seeds), rng)
                    count[rec.verdict.kind] += 1
                    right += rec.verdict.kind == "best" and rec.name == "c0"
                    spent += used
                share = {v: count[v] / args.draws for v in VERDICTS}
                rightly = right / count["best"] if count["best"] else float("nan")
                row = {"configs": k, "seeds": n, "delta": delta, **share, "right": rightly}
                row["seeds_per_config"] = spent / args.draws / k
                rows.append(row)
                shown = "-" if delta == 0 or not count["best"] else f"{rightly:.0%}"
                print(
                    f"{k:>7} {n:>5} {delta:>5.1f} {share['best']:>6.0%} {share['equivalent']:>6.0%}"
                    f" {share['no-signal']:>6.0%} {shown:>8} {row['seeds_per_config']:>12.1f}"
                )
    return rows


BINS = ((0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0001))


def reliability_table(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Table 2: of answers with top P(best) in a bin, the share naming the truly best one."""
    rng = np.random.default_rng(7)
    hits = {b: [0, 0] for b in BINS}
    for _ in range(args.reliability_draws):
        k, n = int(rng.integers(2, 9)), int(rng.integers(2, 6))
        truth = CENTRE + rng.uniform(0, 1.5) * SD * rng.standard_normal(k)
        acc = {f"c{j}": {s: float(rng.normal(truth[j], SD)) for s in range(n)} for j in range(k)}
        rec = recommend(acc, chance=CHANCE, draws=DRAWS, seed=int(rng.integers(1 << 30)))
        probs = rec.probabilities
        top = max(probs, key=probs.__getitem__)
        for b in BINS:
            if b[0] <= probs[top] < b[1]:
                hits[b][0] += 1
                hits[b][1] += top == f"c{int(np.argmax(truth))}"
    print(
        f"\n2. reliability of P(best); {args.reliability_draws} studies of 2-8 configs, 2-5 seeds"
    )
    print(f"{'P(best) of the top':>18} {'answers':>8} {'truly best':>10}")
    rows = []
    for b in BINS:
        n, right = hits[b]
        share = right / n if n else float("nan")
        rows.append({"low": b[0], "high": min(b[1], 1.0), "answers": n, "truly_best": share})
        label = f"[{b[0]:.1f}, {min(b[1], 1.0):.1f}{']' if b[1] > 1 else ')'}"
        print(f"{label:>18} {n:>8} {'-' if not n else f'{share:.0%}':>10}")
    return rows


def replay_table(args: argparse.Namespace) -> dict[str, Any] | None:
    """Table 3: verdicts and the pick's regret on a measured ground-truth band."""
    path = Path(args.truth)
    if not path.is_file():
        print(f"\n3. replay: no ground-truth table at {path}")
        return None
    table = json.loads(path.read_text())
    configs = table["configs"]
    truth = np.array([np.mean([r["val_accuracy"] for r in c["truth"].values()]) for c in configs])
    chance = 1 / configs[0]["spec"]["classes"]
    rng = np.random.default_rng(11)
    count = dict.fromkeys(VERDICTS, 0)
    regret, leader_regret, random_regret, covered = [], [], [], []
    for _ in range(args.replay_draws):
        drawn = rng.choice(len(configs), size=args.replay_k, replace=False)
        acc = {
            f"c{i}": {int(s): r["val_accuracy"] for s, r in configs[i]["confirm"].items()}
            for i in drawn
        }
        flops = {f"c{i}": float(configs[i]["flops"]) for i in drawn}
        rec = recommend(acc, chance=chance, criterion=Criterion("flops", {}, flops), draws=DRAWS)
        count[rec.verdict.kind] += 1
        best = truth[drawn].max()
        regret.append(best - truth[int(rec.name[1:])])
        leader_regret.append(best - truth[int(rec.verdict.leader[1:])])
        if rec.verdict.shortfall_high is not None:
            covered.append(regret[-1] <= rec.verdict.shortfall_high)
        random_regret.append(best - truth[rng.choice(drawn)])
    n = args.replay_draws
    print(
        f"\n3. replay on {path.name}: {args.replay_k} of {len(configs)} configurations, their "
        f"{len(configs[0]['confirm'])} confirmation seeds, {n} draws"
    )
    print("   " + ", ".join(f"{v} {count[v] / n:.0%}" for v in VERDICTS))
    r, rl, rr = (100 * np.mean(x) for x in (regret, leader_regret, random_regret))
    print(
        f"   mean regret by the truth seeds: the pick {r:.2f} points, the leader {rl:.2f}, "
        f"a random pick {rr:.2f}"
    )
    seeds = [[r["val_accuracy"] for r in c["truth"].values()] for c in configs]
    within = np.mean([np.var(x, ddof=1) for x in seeds])
    truth_sd = 100 * float(np.sqrt(within / np.mean([len(x) for x in seeds])))
    print(f"   (a truth mean carries {truth_sd:.2f} points of seed noise of its own)")
    cover = float(np.mean(covered)) if covered else float("nan")
    print(
        f"   the pick's shortfall by the truth seeds within its stated 95% bound: {cover:.0%} "
        f"of {len(covered)}"
    )
    simulated = band_coverage(configs, args, chance)
    return {
        **{v: count[v] / n for v in VERDICTS},
        "regret": r / 100,
        "leader_regret": rl / 100,
        "random_regret": rr / 100,
        "bound_covered": cover,
        "simulated_bound_covered": simulated,
    }


def band_coverage(configs: list[dict[str, Any]], args: argparse.Namespace, chance: float) -> float:
    """The band with a known truth: each configuration's true accuracy is the mean of all its
    measured confirmation and truth seeds, and new seeds are drawn around it with the band's
    pooled seed SD; the share of answers whose pick trails the best contender by no more than
    the stated 95% bound (a check the truth seeds' own noise cannot blur)."""
    runs = [
        [r["val_accuracy"] for part in ("confirm", "truth") for r in c[part].values()]
        for c in configs
    ]
    truth = np.array([np.mean(x) for x in runs])
    sd = float(np.sqrt(np.mean([np.var(x, ddof=1) for x in runs])))
    seeds = len(configs[0]["confirm"])
    rng = np.random.default_rng(13)
    covered = []
    for _ in range(args.replay_draws):
        drawn = rng.choice(len(configs), size=args.replay_k, replace=False)
        acc = {f"c{i}": {s: float(rng.normal(truth[i], sd)) for s in range(seeds)} for i in drawn}
        flops = {f"c{i}": float(configs[i]["flops"]) for i in drawn}
        v = recommend(acc, chance=chance, criterion=Criterion("flops", {}, flops), draws=DRAWS)
        v = v.verdict
        if v.shortfall_high is not None:
            best = max(truth[int(k[1:])] for k in v.contenders)
            covered.append(best - truth[int(v.pick[1:])] <= v.shortfall_high)
    share = float(np.mean(covered)) if covered else float("nan")
    print(
        f"   the same band with a known truth (means of all {len(runs[0])} seeds, seed SD "
        f"{100 * sd:.2f} points): the stated 95% bound held in {share:.0%} of {len(covered)}"
    )
    return share


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Print the three tables; return their rows."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--draws", type=int, default=500, help="simulated studies a cell of table 1")
    p.add_argument("--configs", default="2,3,5,8")
    p.add_argument("--seeds", default="2,3,5")
    p.add_argument("--deltas", default="0,1", help="the best one's lead, in seed SDs")
    p.add_argument("--max-seeds", type=int, default=5, help="racing's seed budget a config")
    p.add_argument("--reliability-draws", type=int, default=3000)
    p.add_argument("--truth", default=str(TRUTH))
    p.add_argument("--replay-k", type=int, default=3)
    p.add_argument("--replay-draws", type=int, default=500)
    args = p.parse_args(argv)
    return {
        "verdicts": verdict_table(args),
        "reliability": reliability_table(args),
        "replay": replay_table(args),
    }


if __name__ == "__main__":
    main()
