"""``calibrate``: how far to trust a short trial (the work and the file:
:mod:`nas.search.calibrate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nas.commands.options import (
    ALL_CARDINALITIES,
    VAL_HELP,
    AugmentOpt,
    CardinalitiesOpt,
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
    SearchDepthsOpt,
    SearchFlopsOpt,
    SearchWidthsOpt,
    SubsetClassesOpt,
    ThreadsOpt,
    ToleranceOpt,
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
from nas.search.space import SEARCH_DEFAULTS
from nas.training.config import TRIALS
from resnext.budget import Budget, generate
from resnext.complexity import format_count


def calibrate_command(
    flops: SearchFlopsOpt = None,
    params: ParamsOpt = None,
    tolerance: ToleranceOpt = 0.1,
    template: DataTemplateOpt = None,
    depths: SearchDepthsOpt = None,
    widths: SearchWidthsOpt = None,
    cardinalities: CardinalitiesOpt = ALL_CARDINALITIES,
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
    long_schedule(cfg, factor)
    space = SEARCH_DEFAULTS[tpl]
    if flops is None and params is None:
        flops = space.flops
    bud = Budget(flops, params, tolerance)
    known = known_shape(dataset, classes, resolution)
    grid = (
        tpl,
        int_lists(depths, "--depths") or list(space.depths),
        flat_ints(widths, "--widths") or space.widths,
        ints(cardinalities, "--cardinalities"),
    )
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
    }
    options.update({key: v for key, v in subset.items() if v is not None})
    file = CalibrationFile(out_file, options)
    if known:  # refuse a band with fewer than k configs before the data
        pick(generate(bud, *grid, None, *known), k, seed)
    data = trial.load(progress=loading)
    grid = (grid[0] or data.template, *grid[1:])
    chosen = pick(generate(bud, *grid, None, data.classes, data.resolution), k, seed)
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
