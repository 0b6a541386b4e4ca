"""Ground truth of one budget band: every configuration trained at both schedules, several seeds.

Trains each configuration of the band (``--max-configs`` of them, in the band's order) with
``--proxy-seeds`` seeds of the search's default trial (:data:`DEFAULT_TRIAL`: its recipe and
scoring, ``--epochs`` long), ``--confirm-seeds`` seeds at the confirmation schedule
(``--confirm-epochs``, default ``ConfirmSettings.factor`` times ``--epochs``) and
``--truth-seeds`` more at the confirmation schedule with seeds of their own (from 1000, which
no replayed search draws), on the dataset ``search`` would load from the same ``--dataset``,
``--data-dir``, ``--train-images``, ``--val-fraction``, ``--val-cap`` and ``--resolution``.
``--truth-from`` takes the truth instead from the long schedule of a ``calibrate --compare``
file on the same configurations (its independent seeds, scored on its held-out images): a
truth at several times a trial's compute, trained apart from every run the search reads.
Writes one JSON (``--out``) after every run: per configuration, schedule and seed the
validation accuracy (the last epoch's, as a trial's), the per-epoch curve, the wall time and
the CPU-seconds, plus the commands, the host and the total wall time. An interrupted run resumes
where it stopped, and several processes on one ``--out`` share the runs out (each claims the next
missing one under a lock). Seed counts may grow between runs; other settings may not. A proxy
run of an older file without a curve is trained again, its old accuracy kept beside the new one
(``previous_val_accuracy``: a check that training is deterministic).
``benchmarks/bench_search_quality.py`` replays searches from it.

    python scripts/ground_truth.py --dataset cifar10 --data-dir DIR --out gt.json
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.fileio import claim, claim_alive, locked, write_json  # noqa: E402
from nas.search.attrs import notation  # noqa: E402
from nas.search.confirm import ConfirmSettings  # noqa: E402
from nas.search.space import (  # noqa: E402
    SEARCH_BOTTLENECK_WIDTHS,
    SEARCH_CARDINALITIES,
    SEARCH_DEPTHS,
    SEARCH_FLOPS,
    SEARCH_TOLERANCE,
    SEARCH_WIDTHS,
    SearchSpace,
    spec_params,
)
from nas.training.config import DEFAULT_TRIAL  # noqa: E402
from resnext.budget import Budget  # noqa: E402

FORMAT = 2  # 2: per-epoch curves, the "truth" schedule, seed counts outside the identity
SCHEDULES = ("proxy", "confirm", "truth")
TRUTH_SEED0 = 1000  # the truth schedule's first seed: apart from every seed a replay draws
SEED_COUNTS = ("proxy_seeds", "confirm_seeds", "truth_seeds")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.replace(" ", "").split(",") if v)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="JSON to write (resumed if present)")
    p.add_argument("--dataset", default="synthetic", help="as `search --dataset`")
    p.add_argument("--data-dir", default=None, help="as `search --data-dir`")
    p.add_argument("--train-images", type=int, default=DEFAULT_TRIAL.train_images)
    p.add_argument("--val-fraction", type=float, default=DEFAULT_TRIAL.val_fraction)
    p.add_argument("--val-cap", type=float, default=DEFAULT_TRIAL.val_cap)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--seed", type=int, default=0, help="seed of the data split (as search's)")
    p.add_argument("--flops", type=float, default=SEARCH_FLOPS)
    p.add_argument("--tolerance", type=float, default=SEARCH_TOLERANCE)
    p.add_argument(
        "--depths",
        action="append",
        default=None,
        help="blocks per stage, repeatable (default: search's)",
    )
    p.add_argument("--widths", default=",".join(map(str, SEARCH_WIDTHS)))
    p.add_argument(
        "--cardinalities",
        default=",".join(map(str, SEARCH_CARDINALITIES)),
        help="default: search's; empty: every C",
    )
    p.add_argument(
        "--bottleneck-widths",
        default=",".join(map(str, SEARCH_BOTTLENECK_WIDTHS)),
        help="default: search's; empty: every integer d",
    )
    p.add_argument("--max-configs", type=int, default=None, help="default: the whole band")
    p.add_argument("--epochs", type=int, default=DEFAULT_TRIAL.epochs)
    p.add_argument("--confirm-epochs", type=int, default=None)
    p.add_argument("--proxy-seeds", type=int, default=3)
    p.add_argument("--confirm-seeds", type=int, default=3)
    p.add_argument(
        "--truth-seeds",
        type=int,
        default=0,
        help="confirmation-schedule runs on seeds of their own: a ground truth independent of "
        "the seeds a replayed confirmation phase reads",
    )
    p.add_argument(
        "--truth-from",
        default=None,
        help="a `calibrate --compare` JSON: its long-schedule runs of the same configurations "
        "are the truth (then no truth runs are trained here)",
    )
    p.add_argument("--batch-size", type=int, default=DEFAULT_TRIAL.batch_size)
    p.add_argument("--lr", type=float, default=DEFAULT_TRIAL.lr)
    p.add_argument("--precision", default="auto", help="as `search --precision`")
    p.add_argument("--channels-last", action="store_true", help="as `search --channels-last`")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads a run (default: all)")
    args = p.parse_args(argv)
    # The file states its skeletons: the search's default may change.
    args.depths = args.depths or [",".join(map(str, d)) for d in SEARCH_DEPTHS]
    return args


def band(args: argparse.Namespace, classes: int, resolution: int) -> SearchSpace:
    """The band's search space, as ``search`` builds it from the same options."""
    kw: dict[str, Any] = {}
    if args.cardinalities:
        kw["cardinalities"] = _ints(args.cardinalities)
    if getattr(args, "bottleneck_widths", None):
        kw["bottleneck_widths"] = _ints(args.bottleneck_widths)
    depths = tuple(_ints(d) for d in args.depths) if args.depths else SEARCH_DEPTHS
    return SearchSpace(
        Budget(args.flops, None, args.tolerance),
        "cifar",
        depths,
        _ints(args.widths),
        classes=classes,
        resolution=resolution,
        **kw,
    )


def _identity(settings: dict[str, Any]) -> dict[str, Any]:
    """What two runs must share to fill one file: every setting but the seed counts."""
    return {k: v for k, v in settings.items() if k not in SEED_COUNTS}


def _load(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    if not path.exists():
        return {"format": FORMAT, "settings": settings, "configs": []}
    have = json.loads(path.read_text())
    if _identity(have.get("settings", {})) != _identity(settings):
        raise ValueError(f"{path} was made with other settings; use another --out")
    for c in have["configs"]:
        for sched in SCHEDULES:
            c.setdefault(sched, {})
    have["format"], have["settings"] = FORMAT, settings
    return have


def _recipes(path: str) -> dict[str, Any]:
    try:
        raw = json.loads(Path(path).read_text())
        raw["candidates"]["long"], raw["configs"]  # noqa: B018
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(
            f"--truth-from {path} is not a `calibrate --compare` file with a long schedule"
        ) from None
    return raw


def import_truth(result: dict[str, Any], recipes: dict[str, Any], path: str) -> None:
    """Make the long-schedule runs of a ``calibrate --compare`` file the truth of ``result``'s
    configurations (each must be in it), scored on the file's largest held-out sample; the
    schedule is recorded under ``truth_schedule``. ValueError for a configuration it lacks."""
    runs = {json.dumps(c["spec"], sort_keys=True): c["runs"] for c in recipes["configs"]}
    long = recipes["candidates"]["long"]
    for c in result["configs"]:
        have = runs.get(json.dumps(c["spec"], sort_keys=True))
        if have is None:
            raise ValueError(f"--truth-from {path} has no runs of {c['notation']}")
        c["truth"] = {
            key.split("/")[1]: {
                "val_accuracy": max(r["accuracy"]["raw"].items(), key=lambda kv: int(kv[0]))[1],
                "seconds": r["wall_seconds"],
                "cpu_seconds": r["cpu_seconds"],
                "curve": r["curve"],
                "scored_images": r["scored_images"],
            }
            for key, r in have.items()
            if key.startswith("long/") and r["status"] == "completed"
        }
    result["truth_schedule"] = {
        "from": path,
        "train_images": long["train_images"],
        "epochs": long["epochs"],
        "seeds": "from 1000, apart from every seed a replayed search reads",
    }


def seed_of(sched: str, j: int) -> int:
    """The training seed of a schedule's ``j``-th run."""
    return TRUTH_SEED0 + j if sched == "truth" else j


def _open(job: tuple[str, int, int], result: dict[str, Any], claims: dict[str, Any]) -> bool:
    """Whether run ``job`` (schedule, seed, configuration) is neither done nor held by a live
    process."""
    sched, seed, i = job
    held = claims.get(f"{sched}/{seed}/{i}")
    entry = result["configs"][i][sched].get(str(seed))
    # The pruner replay needs the proxy runs' curves; an older file's are trained again.
    done = entry is not None and ("curve" in entry or sched != "proxy")
    return not done and (held is None or not claim_alive(held))


def _save(path: Path, result: dict[str, Any]) -> None:
    if not result.get("claims"):
        result.pop("claims", None)
    write_json(path, result)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Train what the JSON lacks and return it.

    Several processes may run on one ``--out`` at once (one a core, say): each claims the next
    missing run in the file under a lock, so no run is trained twice; a claim of a process that
    died is taken over.
    """
    from nas.data import MIN_VAL_IMAGES, load_dataset
    from nas.training.loop import train

    args = parse(argv)
    confirm_epochs = args.confirm_epochs or ConfirmSettings().confirm_epochs(args.epochs)
    trial = replace(
        DEFAULT_TRIAL,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        train_images=args.train_images,
        val_fraction=args.val_fraction,
        val_cap=args.val_cap,
        resolution=args.resolution,
    )
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "device", "threads")} | {
        "confirm_epochs": confirm_epochs,
        "trial": asdict(trial),
    }
    _load(args.out, settings)  # refuse other settings before the data loads
    recipes = _recipes(args.truth_from) if args.truth_from else None
    data = load_dataset(
        args.dataset,
        data_dir=args.data_dir,
        train_images=args.train_images,
        val_fraction=args.val_fraction,
        seed=args.seed,
        resolution=args.resolution,
        val_cap=args.val_cap,
        min_val=MIN_VAL_IMAGES,
    )
    space = band(args, data.classes, data.resolution)
    configs = list(space.configs)[: args.max_configs]
    given = sys.argv[1:] if argv is None else argv
    with locked(args.out):
        result = _load(args.out, settings)
        if len(result["configs"]) == 0:
            result["configs"] = [
                {
                    "spec": c.spec.to_dict(),
                    "params": spec_params(c.spec),
                    "notation": notation(c.spec),
                    "flops": c.complexity.flops,
                    "n_params": c.complexity.params,
                    **{sched: {} for sched in SCHEDULES},
                }
                for c in configs
            ]
        if recipes is not None:
            import_truth(result, recipes, args.truth_from)
        result.setdefault("command", []).append(
            " ".join(["python", "scripts/ground_truth.py", *given])
        )
        result["host"] = socket.gethostname()
        result["dataset"] = data.name
        _save(args.out, result)
    epochs = {"proxy": args.epochs, "confirm": confirm_epochs, "truth": confirm_epochs}
    runs = {
        "proxy": args.proxy_seeds,
        "confirm": args.confirm_seeds,
        "truth": 0 if recipes is not None else args.truth_seeds,
    }
    # Seed by seed, every schedule's j-th run before any (j+1)-th: a file stopped early holds
    # both schedules on every configuration.
    jobs = [
        (sched, seed_of(sched, j), i)
        for j in range(max(runs.values()))
        for sched in SCHEDULES
        for i in range(len(configs))
        if j < runs[sched]
    ]
    me = claim()
    while True:
        with locked(args.out):
            result = _load(args.out, settings)
            claims = result.setdefault("claims", {})
            job = next((j for j in jobs if _open(j, result, claims)), None)
            if job is None:
                break
            sched, seed, i = job
            claims[f"{sched}/{seed}/{i}"] = me
            _save(args.out, result)
        cfg = replace(
            trial.train_config(args.device, seed),
            epochs=epochs[sched],
            precision=args.precision,
            channels_last=True if args.channels_last else None,
            threads=args.threads,
        )
        t0, c0 = time.perf_counter(), time.process_time()
        res = train(configs[i].spec, data, cfg)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        with locked(args.out):
            result = _load(args.out, settings)
            entry = result["configs"][i]
            run = {
                "val_accuracy": res.val_accuracy,
                "seconds": wall,
                "cpu_seconds": cpu,
                "curve": [e.val_accuracy for e in res.history],
            }
            if (old := entry[sched].get(str(seed))) is not None:
                run["previous_val_accuracy"] = old["val_accuracy"]
            entry[sched][str(seed)] = run
            result.get("claims", {}).pop(f"{sched}/{seed}/{i}", None)
            result["wall_seconds"] = result.get("wall_seconds", 0.0) + wall
            _save(args.out, result)
        print(
            f"{sched} seed {seed} {entry['notation']}: {res.val_accuracy:.2%} in {wall:.0f} s",
            flush=True,
        )
    return result


def main() -> None:
    """Run, turning a user error into one line on stderr and exit code 2."""
    try:
        run()
    except (ValueError, FileNotFoundError) as e:
        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
