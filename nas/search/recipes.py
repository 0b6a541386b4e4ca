"""Which trial recipe ranks architectures best per CPU-second: candidates compared on one set of
configurations, seeds and a long schedule.

Every candidate (:data:`CANDIDATES`) trains each configuration with a few seeds; the long
schedule (:data:`LONG`, at least 6x a candidate's steps) trains each with seeds of its own. Each
run is scored on one held-out split in several ways at once, since scoring changes nothing that
is trained: the trained weights or their moving average (EMA), with or without mirror-image
test-time augmentation (TTA), on nested prefixes of the split (:data:`SCORING_SIZES`). Per
candidate and scoring, :func:`compare` gives

- the seed SD (within a configuration) and the SD of the configurations' means,
- their intraclass correlation ICC(1) with its F-based 95% interval: the share of a single
  trial's variance that is the configuration's, not the seed's,
- the Spearman and Kendall agreement of the configurations' mean with the long schedule's,
  95% bootstrap intervals over configurations,
- the binomial share: of the seed variance, how much the scoring sample alone explains,
  ``p(1 - p) / n`` averaged over runs,
- the CPU-seconds of one trial (process time: training plus its scoring).

Runs are written to one JSON file after each; several processes on one file share the runs out
(each claims the next missing one under a lock), and a run that stopped resumes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from nas.data import Dataset
from nas.data.splits import stratified_pick
from nas.fileio import claim, claim_alive, locked, write_json
from nas.search.attrs import notation
from nas.stats.rank import Estimate, bootstrap, kendall, separability, spearman
from nas.training.config import TrainConfig
from resnext.spec import Spec

FORMAT = 1
LONG_SEED0 = 1000  # the long schedule's seeds: apart from every candidate's
# The nested scoring samples, prefixes of one seeded order of the held-out split.
SCORING_SIZES = (1000, 2000, 5000, 10000)
SCORINGS = ("raw", "tta", "ema")


@dataclass(frozen=True)
class Candidate:
    """A trial recipe: what it trains on, for how long and how; how it is scored is separate."""

    name: str
    train_images: int
    epochs: int
    batch_size: int = 32
    lr: float = 0.05
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    ema: float = 0.98  # decay per step of the weights' average that the "ema" scorings use

    def train_config(self, seed: int, **run: Any) -> TrainConfig:
        """The run's :class:`TrainConfig`; ``run`` holds how it runs (device, precision...)."""
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            schedule=self.schedule,
            warmup_epochs=self.warmup_epochs,
            label_smoothing=self.label_smoothing,
            ema=self.ema,
            seed=seed,
            **run,
        )


# The search's trial before this comparison, then one change at a time: label smoothing, then a
# linear decay after a short warm-up (airbench's shape), then the same steps over three times
# the images for one epoch (EcoNAS: more samples, fewer epochs).
CANDIDATES = {
    c.name: c
    for c in (
        Candidate("base", 4000, 3),
        Candidate("smooth", 4000, 3, label_smoothing=0.1),
        Candidate("linear", 4000, 3, label_smoothing=0.1, schedule="linear", warmup_epochs=0.25),
        Candidate("wide", 12000, 1, label_smoothing=0.1, schedule="linear", warmup_epochs=0.25),
    )
}
# The long schedule every candidate is ranked against: 6x the base trial's steps, over three
# times its images.
LONG = Candidate("long", 12000, 6)


def check_candidates(names: Sequence[str]) -> list[Candidate]:
    """The named candidates; ValueError naming the known ones for any other."""
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise ValueError(
            f"unknown trial recipe {unknown[0]!r}; choose among {', '.join(CANDIDATES)}"
        )
    if len(names) < 1:
        raise ValueError("name at least one trial recipe to compare")
    return [CANDIDATES[n] for n in names]


def scoring_order(data: Dataset, seed: int = 0) -> np.ndarray:
    """One seeded order of the held-out split; its prefixes are the scoring samples of
    :data:`SCORING_SIZES`."""
    return np.random.default_rng([seed, 3]).permutation(len(data.val_y))


def train_subset(data: Dataset, images: int, seed: int = 0) -> Dataset:
    """``data`` with ``images`` of its training images (class-stratified, seeded)."""
    if images > len(data.train_y):
        raise ValueError(
            f"a recipe trains on {images:,} images; the dataset has {len(data.train_y):,}"
        )
    idx = np.sort(stratified_pick(data.train_y, images, np.random.default_rng([seed, 2])))
    return replace(data, train_x=data.train_x[idx], train_y=data.train_y[idx])


def train_and_score(
    spec: Spec,
    data: Dataset,
    cand: Candidate,
    seed: int,
    order: np.ndarray,
    scorings: Sequence[str] = SCORINGS,
    **run: Any,
) -> dict[str, Any]:
    """Train ``spec`` with ``cand`` on its subset of ``data``; score it each of ``scorings``.

    The accuracies are on the prefixes of ``order`` (indices into the held-out split) that
    :data:`SCORING_SIZES` allow; ``cpu_seconds`` are the process's (all its threads) for the
    training (without the per-epoch ``curve``'s scoring), ``score_cpu_seconds`` for one plain
    pass over the whole split.
    """
    import torch

    from nas.training.loop import Run

    subset = train_subset(data, cand.train_images)
    cfg = cand.train_config(seed, **run).resolved(data.kind)
    t0, c0 = time.perf_counter(), time.process_time()
    r = Run(spec, subset, cfg)
    xs, ys = r.val_x[torch.as_tensor(order)], r.val_y[torch.as_tensor(order)]
    early = min(SCORING_SIZES[0], len(order))
    curve, early_cpu = [], 0.0
    for epoch in range(cand.epochs):
        if r.train_epoch() is None:
            return {"status": "diverged", "cpu_seconds": time.process_time() - c0}
        if epoch + 1 < cand.epochs:  # what a pruner would see: the smallest sample, plainly
            c1 = time.process_time()
            curve.append(r.evaluate(xs[:early], ys[:early], model=r.model, tta=False)[1])
            early_cpu += time.process_time() - c1
    cpu = time.process_time() - c0 - early_cpu
    wall = time.perf_counter() - t0
    sizes = [n for n in SCORING_SIZES if n <= len(order)]
    scores: dict[str, dict[str, float]] = {}
    score_cpu = 0.0
    for name in scorings:
        model = r.ema.module if name.startswith("ema") else r.model
        c1 = time.process_time()
        hits, _, _ = r.predict(xs, ys, model=model, tta=name.endswith("tta"))
        if name == "raw":
            score_cpu = time.process_time() - c1
        cum = hits.numpy().cumsum()
        scores[name] = {str(n): float(cum[n - 1] / n) for n in sizes}
    curve.append(scores["raw"][str(early)])
    return {
        "status": "completed",
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "score_cpu_seconds": score_cpu,
        "scored_images": len(order),
        "accuracy": scores,
        "curve": curve,  # per epoch, plain scoring of the smallest sample
    }


# ------------------------------------------------------------------------------ the runs file


def _jobs(names: Sequence[str], configs: int, seeds: int, long_seeds: int) -> list[tuple]:
    """(recipe, seed, config) in the order they run: the first seed of every candidate on every
    configuration, then the long schedule's first; after that each configuration in turn (every
    other one first, so that a file stopped early still spans the band) gets its next seed of
    every candidate and of the long schedule. A partial file already compares everything."""
    jobs: list[tuple] = [(n, 0, i) for i in range(configs) for n in names if seeds]
    jobs += [(LONG.name, LONG_SEED0, i) for i in range(configs) if long_seeds]
    order = [*range(0, configs, 2), *range(1, configs, 2)]
    for j in range(1, max(seeds, long_seeds)):
        for i in order:
            jobs += [(n, j, i) for n in names if j < seeds]
            jobs += [(LONG.name, LONG_SEED0 + j, i)] if j < long_seeds else []
    return jobs


def run_file(
    path: str | Path,
    settings: dict[str, Any],
    specs: Sequence[Spec],
    data: Dataset,
    names: Sequence[str],
    seeds: int,
    long_seeds: int,
    *,
    on_run: Callable[[str, int, int, dict[str, Any]], None] | None = None,
    command: str | None = None,
    **run: Any,
) -> dict[str, Any]:
    """Train what the file at ``path`` lacks; return its content.

    The file keeps the ``command`` lines that filled it, when the first started and the last
    run ended, and the CPU-seconds of all runs.

    ``settings`` identify the file (another set cannot fill it); seed counts and candidates may
    grow between calls. ``run`` (device, precision, threads...) is passed to every run.
    """
    path = Path(path)
    settings = json.loads(json.dumps(settings))  # as the file will read back: lists, not tuples
    order = scoring_order(data)
    recipes = {**CANDIDATES, LONG.name: LONG}
    with locked(path):
        result = _load(path, settings)
        if not result["configs"]:
            result["configs"] = [
                {"spec": s.to_dict(), "notation": notation(s), "runs": {}} for s in specs
            ]
        result["candidates"] = {
            **result.get("candidates", {}),
            **{n: asdict(recipes[n]) for n in [*names, LONG.name]},
        }
        if command is not None:
            result.setdefault("command", []).append(command)
        result.setdefault("started", time.time())
        write_json(path, result)
    me = claim()
    for job in _jobs(names, len(specs), seeds, long_seeds):
        key = f"{job[0]}/{job[1]}"
        with locked(path):
            result = _load(path, settings)
            entry = result["configs"][job[2]]["runs"]
            held = result.setdefault("claims", {}).get(f"{key}/{job[2]}")
            if key in entry or (held is not None and claim_alive(held)):
                continue
            result["claims"][f"{key}/{job[2]}"] = me
            write_json(path, result)
        scorings = ("raw",) if job[0] == LONG.name else SCORINGS  # the truth is scored plainly
        out = train_and_score(specs[job[2]], data, recipes[job[0]], job[1], order, scorings, **run)
        with locked(path):
            result = _load(path, settings)
            result["configs"][job[2]]["runs"][key] = out
            result["claims"].pop(f"{key}/{job[2]}", None)
            result["cpu_seconds"] = result.get("cpu_seconds", 0.0) + out["cpu_seconds"]
            result["finished"] = time.time()
            write_json(path, result)
        if on_run is not None:
            on_run(job[0], job[1], job[2], out)
    return _load(path, settings)


def _load(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    if not path.exists():
        return {"format": FORMAT, "settings": settings, "configs": []}
    try:
        have = json.loads(path.read_text())
        same = have["settings"] == settings
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"--out {path} is not a trial-recipe file; use another --out") from None
    if not same:
        raise ValueError(
            f"--out {path} was made with other settings; use the same ones to resume it, "
            "or another --out"
        )
    return have


# ------------------------------------------------------------------------------ the comparison


def icc1(table: np.ndarray, level: float = 0.95) -> Estimate:
    """One-way random-effects ICC(1) of a configurations x seeds table, with the F-based
    interval (Shrout & Fleiss 1979): the share of one run's variance between configurations."""
    n, k = table.shape
    if n < 2 or k < 2:
        return Estimate(float("nan"), float("nan"), float("nan"))
    means = table.mean(axis=1)
    msb = k * ((means - table.mean()) ** 2).sum() / (n - 1)
    msw = ((table - means[:, None]) ** 2).sum() / (n * (k - 1))
    if msw == 0:
        return Estimate(1.0, 1.0, 1.0)
    f0 = msb / msw
    a = (1 - level) / 2
    fl = f0 / stats.f.ppf(1 - a, n - 1, n * (k - 1))
    fu = f0 * stats.f.ppf(1 - a, n * (k - 1), n - 1)
    value = (f0 - 1) / (f0 + k - 1)
    return Estimate(value, (fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1))


@dataclass(frozen=True)
class Row:
    """One candidate scored one way, over the configurations that have all its runs."""

    recipe: str
    scoring: str
    images: int  # scoring sample
    configs: int
    seeds: int
    mean_accuracy: float
    seed_sd: float  # pooled within-configuration SD
    between_sd: float  # SD of the configurations' means
    icc: Estimate
    spearman: Estimate
    kendall: Estimate
    binomial_share: float  # of the seed variance, the scoring sample's binomial variance
    cpu_seconds: float  # one trial: training plus this scoring, mean over runs

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        d = asdict(self)
        for k in ("icc", "spearman", "kendall"):
            d[k] = getattr(self, k).to_dict()
        return d


def _table(
    result: dict[str, Any], recipe: str, scoring: str, size: str, need: int = 1
) -> tuple[list[int], np.ndarray]:
    """The configurations with at least ``need`` completed runs of ``recipe`` (indices), and
    their accuracies scored ``scoring`` on ``size`` images, as many seeds each as the fewest of
    them has: a balanced configurations x seeds table (a file still filling is read as far as
    it goes)."""
    rows: dict[int, list[float]] = {}
    for i, c in enumerate(result["configs"]):
        runs = sorted(
            (int(k.split("/")[1]), v)
            for k, v in c["runs"].items()
            if k.split("/")[0] == recipe and v.get("status") == "completed"
        )
        accs = [v["accuracy"].get(scoring, {}).get(size) for _, v in runs]
        accs = [a for a in accs if a is not None]
        if len(accs) >= need:
            rows[i] = accs
    k = min((len(r) for r in rows.values()), default=0)
    return list(rows), np.array([r[:k] for r in rows.values()], dtype=float).reshape(len(rows), k)


def _cpu(result: dict[str, Any], recipe: str, scoring: str, size: int) -> float:
    """Mean CPU-seconds of one trial of ``recipe`` scored ``scoring`` on ``size`` images."""
    per = []
    for c in result["configs"]:
        for k, v in c["runs"].items():
            if k.split("/")[0] == recipe and v.get("status") == "completed":
                passes = (2 if scoring.endswith("tta") else 1) * size / v["scored_images"]
                per.append(v["cpu_seconds"] + passes * v["score_cpu_seconds"])
    return float(np.mean(per)) if per else float("nan")


def compare(
    result: dict[str, Any], *, truth_scoring: str = "raw", seed: int = 0, runs: int = 2
) -> list[Row]:
    """Every candidate of a runs file, scored every way, against the long schedule's means
    (scored ``truth_scoring`` on the whole split), over the configurations that have two runs
    of the candidate and one of the long schedule. With ``runs`` 1, every configuration with a
    run is ranked by its first seed alone: the agreement of one trial, without seed statistics."""
    sizes = sorted(
        {
            n
            for c in result["configs"]
            for r in c["runs"].values()
            for n in r.get("accuracy", {}).get("raw", {})
        },
        key=int,
    )
    if not sizes:
        return []
    have, truth = _table(result, LONG.name, truth_scoring, sizes[-1])
    long_means = dict(zip(have, truth.mean(axis=1), strict=True))
    rows = []
    for recipe in result.get("candidates", {}):
        if recipe == LONG.name:
            continue
        for scoring in SCORINGS:
            for size in sizes:
                ids, t = _table(result, recipe, scoring, size, need=runs)
                keep = [j for j, i in enumerate(ids) if i in long_means]
                if len(keep) < 3:  # too few configurations with two runs and a long one
                    continue
                t = t[keep][:, :runs] if runs == 1 else t[keep]
                truth_means = np.array([long_means[ids[j]] for j in keep])
                means = t.mean(axis=1)
                df = t.size - len(t)
                nan = float("nan")
                within = float(np.sqrt(((t - means[:, None]) ** 2).sum() / df)) if df else nan
                binomial = float(np.mean(t * (1 - t) / int(size)))
                rows.append(
                    Row(
                        recipe,
                        scoring,
                        int(size),
                        t.shape[0],
                        t.shape[1],
                        float(t.mean()),
                        within,
                        float(means.std(ddof=1)),
                        icc1(t) if df else Estimate(nan, nan, nan),
                        bootstrap(spearman, means, truth_means, seed=seed),
                        bootstrap(kendall, means, truth_means, seed=seed),
                        binomial / within**2 if within > 0 else nan,
                        _cpu(result, recipe, scoring, int(size)),
                    )
                )
    return rows


def truth_separability(result: dict[str, Any], seed: int = 0) -> dict[str, float]:
    """:func:`nas.stats.rank.separability` of the long schedule's runs (points, whole split)."""
    size = max(
        (
            n
            for c in result["configs"]
            for r in c["runs"].values()
            for n in r.get("accuracy", {}).get("raw", {})
        ),
        key=int,
    )
    groups = [
        np.array(
            [
                100 * r["accuracy"]["raw"][size]
                for k, r in c["runs"].items()
                if k.split("/")[0] == LONG.name and r.get("status") == "completed"
            ]
        )
        for c in result["configs"]
    ]
    return separability(groups, seed=seed)
