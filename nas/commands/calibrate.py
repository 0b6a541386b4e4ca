"""``calibrate``: how far to trust a short trial (the work and the file:
:mod:`nas.search.calibrate`)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nas.commands.options import (
    VAL_HELP,
    AugmentOpt,
    ChannelsLastOpt,
    DataDirOpt,
    DataResolutionOpt,
    DatasetNameOpt,
    DataTemplateOpt,
    DeviceOpt,
    ImagesPerClassOpt,
    JsonOpt,
    ParamsOpt,
    Precision,
    PrecisionOpt,
    RunOptions,
    SearchBottleneckWidthsOpt,
    SearchCardinalitiesOpt,
    SearchDepthsOpt,
    SearchFlopsOpt,
    SearchToleranceOpt,
    SearchWidthsOpt,
    SubsetClassesOpt,
    ThreadsOpt,
    TrialBatchSizeOpt,
    by_template,
    check_dataset,
    flat_ints,
    int_lists,
    ints,
    out,
    plan_run,
    print_json,
    trial_settings,
)
from nas.commands.progress import load_display
from nas.data import data_template, known_shape
from nas.search.attrs import notation
from nas.search.space import SEARCH_DEFAULTS
from nas.training.config import TRIALS
from resnext.budget import Budget, generate
from resnext.complexity import format_count


def calibrate_command(
    flops: SearchFlopsOpt = None,
    params: ParamsOpt = None,
    tolerance: SearchToleranceOpt = None,
    template: DataTemplateOpt = None,
    depths: SearchDepthsOpt = None,
    widths: SearchWidthsOpt = None,
    cardinalities: SearchCardinalitiesOpt = None,
    bottleneck_widths: SearchBottleneckWidthsOpt = None,
    k: Annotated[int, typer.Option("--k", help="Configurations to train (at least 3).")] = 8,
    factor: Annotated[
        int, typer.Option(help="R: the long schedule has R times the short one's epochs.")
    ] = 6,
    epochs: Annotated[
        int | None,
        typer.Option(
            help=f"Epochs of the short schedule{by_template('epochs')}", show_default=False
        ),
    ] = None,
    batch_size: TrialBatchSizeOpt = None,
    lr: Annotated[
        float | None,
        typer.Option(help=f"Peak learning rate{by_template('lr')}", show_default=False),
    ] = None,
    train_images: Annotated[
        int | None,
        typer.Option(
            help=f"Training images of both schedules{by_template('train_images')}",
            show_default=False,
        ),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(help=f"{VAL_HELP}{by_template('val_fraction')}", show_default=False),
    ] = None,
    dataset: DatasetNameOpt = "synthetic",
    data_dir: DataDirOpt = None,
    classes: SubsetClassesOpt = None,
    images_per_class: ImagesPerClassOpt = None,
    resolution: DataResolutionOpt = None,
    augment: AugmentOpt = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the config draw, the data, training and bootstrap.")
    ] = 0,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    precision: PrecisionOpt = Precision.auto,
    channels_last: ChannelsLastOpt = None,
    out_file: Annotated[
        Path,
        typer.Option(
            "--out",
            help="JSON results, written as each schedule ends; run again to resume.",
        ),
    ] = Path("calibration.json"),
    compare: Annotated[
        str | None,
        typer.Option(
            help="Compare trial recipes instead (comma list of base, smooth, linear, wide): "
            "seed noise, ICC, rank agreement with a long schedule and CPU-seconds of each.",
            show_default=False,
        ),
    ] = None,
    seeds: Annotated[
        int, typer.Option(help="With --compare: runs of each recipe per configuration.")
    ] = 2,
    long_seeds: Annotated[
        int, typer.Option(help="With --compare: runs of the long schedule per configuration.")
    ] = 2,
    as_json: JsonOpt = False,
) -> None:
    """How far to trust a short trial: rank agreement of short and R-times longer training.

    Trains --k configurations of the budget band with both schedules and prints the Spearman
    and Kendall correlations of the two rankings (95% bootstrap intervals), next to params and
    FLOPs ranked against the long result. Run times: docs/reference.md.
    """
    from nas.search.calibrate import REFERENCE, CalibrationFile, calibrate, long_schedule, pick

    # Every check that needs no data comes first: options, --out, the band's size.
    check_dataset(dataset)
    # The template picks the trial's and the band's defaults; a folder's is judged from its
    # first image, as `search` does.
    loading = load_display(False, as_json)
    tpl = template.value if template else data_template(dataset, data_dir, resolution, loading)
    trial = trial_settings(
        TRIALS[tpl],
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        train_images=train_images,
        val_fraction=val_fraction,
        dataset=dataset,
        data_dir=data_dir,
        classes=classes,
        images_per_class=images_per_class,
        resolution=resolution,
        augment=augment,
        device=device,
        seed=seed,
    )
    cfg = trial.train
    space = SEARCH_DEFAULTS[tpl]
    bud = space.budget(flops, params, tolerance)
    cs, d_choices = space.choices(
        flops is not None or params is not None,
        ints(cardinalities, "--cardinalities") if cardinalities else None,
        ints(bottleneck_widths, "--bottleneck-widths") if bottleneck_widths else None,
    )
    grid = (
        tpl,
        int_lists(depths, "--depths") or list(space.depths),
        flat_ints(widths, "--widths") or space.widths,
        cs,
    )
    if compare is not None:
        _compare(
            compare,
            trial,
            bud,
            grid,
            d_choices,
            k,
            seeds,
            long_seeds,
            0.2 if val_fraction is None else val_fraction,
            seed,
            RunOptions(None, threads, precision, channels_last),
            out_file,
            as_json,
        )
        return
    long_schedule(cfg, factor)
    known = known_shape(dataset, classes, resolution)
    budget = trial.budget
    epochs, batch_size, lr = budget.epochs, budget.batch_size, budget.lr
    train_images, val_fraction = budget.train_images, budget.val_fraction
    options = {
        "budget": bud.to_dict(),
        "template": tpl,
        "depths": [list(d) for d in grid[1]],
        "widths": list(grid[2]),
        "cardinalities": list(grid[3]),
        "k": k,
        "factor": factor,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "train_images": train_images,
        "val_fraction": val_fraction,
        "dataset": dataset,
        "resolution": resolution,
        "seed": seed,
    }
    # Options added with image folders join only when given, so older files still resume.
    subset = {
        "data_dir": data_dir,
        "classes": classes,
        "images_per_class": images_per_class,
        "augment": augment and augment.value,
        "bottleneck_widths": d_choices,
    }
    options.update({key: v for key, v in subset.items() if v is not None})
    file = CalibrationFile(out_file, options)
    if known:  # refuse a band with fewer than k configs before the data
        pick(generate(bud, *grid, d_choices, *known), k, seed)
    data = trial.load(progress=loading)
    grid = (grid[0] or data.template, *grid[1:])
    chosen = pick(generate(bud, *grid, d_choices, data.classes, data.resolution), k, seed)
    if not as_json:
        out.print(
            f"calibrating {k} configurations within {bud.describe()}: {epochs} and "
            f"{epochs * factor} epochs on {len(data.train_y)} images ({file.left(k)} to train, "
            f"results in {out_file})",
            highlight=False,
        )
    _, cfg = plan_run(
        [c.spec for c in chosen],
        cfg,
        data.kind,
        RunOptions(None, threads, precision, channels_last),
        single=True,
        quiet=as_json,
    )
    cal = calibrate(chosen, data, cfg, factor, seed=seed, on_progress=file.save, done=file.done)
    result = file.finish(cal)
    if as_json:
        print_json(result)
        return
    table = Table(
        title=f"{k} configurations, short {cal.short_epochs} vs long {cal.long_epochs} epochs"
    )
    for col in ("config", "FLOPs", "params", "short acc", "long acc"):
        table.add_column(col, justify="left" if col == "config" else "right")
    for r in cal.rows:
        table.add_row(
            r["notation"],
            format_count(r["flops"]),
            format_count(r["params"]),
            f"{r['short_val_accuracy']:.1%}",
            f"{r['long_val_accuracy']:.1%}",
        )
    out.print(table)
    corr = Table(
        title=f"Rank agreement with the long schedule, n={len(cal.rows)} configurations "
        "(95% bootstrap intervals)"
    )
    for col in ("ranked by", "Spearman", "Kendall"):
        corr.add_column(col, justify="left" if col == "ranked by" else "right")
    for label, sp, kt in (
        (f"short training ({cal.short_epochs} epochs)", cal.spearman, cal.kendall),
        ("params (baseline)", cal.params_spearman, cal.params_kendall),
        ("FLOPs (baseline)", cal.flops_spearman, cal.flops_kendall),
    ):
        corr.add_row(label, _fmt_estimate(sp), _fmt_estimate(kt))
    out.print(corr)
    out.print(f"For scale: {REFERENCE}. Results: {out_file}", soft_wrap=True)


def _fmt_estimate(e: Any) -> str:
    return f"{e.value:+.2f} [{e.low:+.2f}, {e.high:+.2f}]"


def _compare(
    names: str,
    trial: Any,
    bud: Budget,
    grid: tuple[Any, ...],
    d_choices: tuple[int, ...] | None,
    k: int,
    seeds: int,
    long_seeds: int,
    val_fraction: float,
    seed: int,
    run: RunOptions,
    out_file: Path,
    as_json: bool,
) -> None:
    """``calibrate --compare``: train every named recipe and the long schedule on --k
    configurations spread over the band, then print the comparison."""
    from nas.search.calibrate import spread
    from nas.search.recipes import (
        LONG,
        check_candidates,
        compare,
        run_file,
        truth_separability,
    )

    recipes = check_candidates([n.strip() for n in names.split(",") if n.strip()])
    for name, value in (("--seeds", seeds), ("--long-seeds", long_seeds)):
        if value < 2:
            raise ValueError(f"{name} must be at least 2 (a seed SD needs two runs), got {value}")
    settings = {
        "budget": bud.to_dict(),
        "grid": [grid[0], [list(d) for d in grid[1]], list(grid[2]), list(grid[3]), d_choices],
        "k": k,
        "data": dataclasses.asdict(trial.data),
        "val_fraction": val_fraction,
        "seed": seed,
    }
    known = known_shape(trial.data.dataset, trial.data.classes, trial.data.resolution)
    if known:
        spread(generate(bud, *grid, d_choices, *known), k)
    data = trial.data.load(train_images=None, val_fraction=val_fraction, seed=seed)
    chosen = spread(generate(bud, *grid, d_choices, data.classes, data.resolution), k)
    specs = [
        dataclasses.replace(c.spec, classes=data.classes, resolution=data.resolution)
        for c in chosen
    ]
    _, cfg = plan_run(specs, trial.train, data.kind, run, single=True, quiet=as_json)
    how = {
        "device": cfg.device,
        "precision": cfg.precision,
        "threads": cfg.threads,
        "channels_last": cfg.channels_last,
    }
    if not as_json:
        out.print(
            f"comparing {', '.join(r.name for r in recipes)} against {LONG.name} "
            f"({LONG.train_images:,} images x {LONG.epochs} epochs) on {k} configurations "
            f"within {bud.describe()}, {seeds} and {long_seeds} seeds, scored on "
            f"{len(data.val_y):,} held-out images; runs in {out_file} (start the same command "
            "again beside this one to share the runs out)",
            highlight=False,
        )

    def progress(recipe: str, s: int, i: int, r: dict[str, Any]) -> None:
        if not as_json:
            acc = r.get("accuracy", {}).get("raw", {})
            last = acc[max(acc, key=int)] if acc else float("nan")
            out.print(
                f"{recipe} seed {s} {notation(specs[i])}: {last:.1%} in "
                f"{r['cpu_seconds']:.0f} CPU-s",
                highlight=False,
            )

    result = run_file(
        out_file,
        settings,
        specs,
        data,
        [r.name for r in recipes],
        seeds,
        long_seeds,
        on_run=progress,
        command=" ".join(["resnext-nas", *sys.argv[1:]]),
        **how,
    )
    rows = compare(result, seed=seed)
    sep = truth_separability(result, seed)
    if as_json:
        print_json({**result, "comparison": [r.to_dict() for r in rows], "separability": sep})
        return
    print_comparison(rows)
    out.print(
        f"the long schedule tells its {sep['configs']} configurations apart: one-way F "
        f"{sep['f']:.2f}, permutation p {sep['p']:.3f} ({sep['runs']} runs; seed SD "
        f"{sep['seed_sd']:.2f} points, SD of the configurations' means {sep['config_sd']:.2f})"
        if sep["p"] < 0.05
        else f"the long schedule cannot tell its configurations apart: one-way F "
        f"{sep['f']:.2f}, permutation p {sep['p']:.2f} ({sep['runs']} runs)",
        highlight=False,
    )


def print_comparison(rows: list[Any]) -> None:
    """The recipes scored plainly on the whole split, then every scoring of each recipe."""
    full = max(r.images for r in rows)
    table = Table(
        title=f"Trial recipes against the long schedule, scored on {full:,} images (95% intervals)"
    )
    for col in (
        "recipe",
        "scoring",
        "acc",
        "seed SD",
        "config SD",
        "ICC",
        "Spearman",
        "Kendall",
        "binomial",
        "CPU-s",
    ):
        table.add_column(col, justify="left" if col in ("recipe", "scoring") else "right")
    for r in rows:
        if r.images != full:
            continue
        table.add_row(
            r.recipe,
            r.scoring,
            f"{r.mean_accuracy:.1%}",
            f"{100 * r.seed_sd:.2f}",
            f"{100 * r.between_sd:.2f}",
            _fmt_estimate(r.icc),
            _fmt_estimate(r.spearman),
            _fmt_estimate(r.kendall),
            f"{r.binomial_share:.0%}",
            f"{r.cpu_seconds:.0f}",
        )
    out.print(table)
    sizes = Table(title="Scoring sample size (plain scoring): seed SD, binomial share, agreement")
    for col in ("recipe", "images", "seed SD", "binomial", "ICC", "Spearman"):
        sizes.add_column(col, justify="left" if col == "recipe" else "right")
    for r in rows:
        if r.scoring == "raw":
            sizes.add_row(
                r.recipe,
                f"{r.images:,}",
                f"{100 * r.seed_sd:.2f}",
                f"{r.binomial_share:.0%}",
                _fmt_estimate(r.icc),
                _fmt_estimate(r.spearman),
            )
    out.print(sizes)
    out.print(
        f"{rows[0].configs} configurations, {rows[0].seeds} seeds each; SDs in points; "
        "binomial: share of the seed variance the scoring sample alone explains",
        highlight=False,
    )
