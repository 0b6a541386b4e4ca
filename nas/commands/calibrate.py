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
    BatchSizeOpt,
    CardinalitiesOpt,
    DataDirOpt,
    DataResolutionOpt,
    DatasetNameOpt,
    DataTemplateOpt,
    DeviceOpt,
    ImagesPerClassOpt,
    JsonOpt,
    ParamsOpt,
    SearchDepthsOpt,
    SearchFlopsOpt,
    SearchWidthsOpt,
    SubsetClassesOpt,
    ToleranceOpt,
    check_dataset,
    flat_ints,
    int_lists,
    ints,
    out,
    print_json,
    trial_settings,
)
from nas.data import known_shape
from nas.search.space import SEARCH_DEPTHS, SEARCH_FLOPS, SEARCH_WIDTHS
from nas.training.config import DEFAULT_TRIAL
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
        int, typer.Option(help="Epochs of the short schedule.")
    ] = DEFAULT_TRIAL.epochs,
    batch_size: BatchSizeOpt = DEFAULT_TRIAL.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = DEFAULT_TRIAL.lr,
    train_images: Annotated[
        int, typer.Option(help="Training images of both schedules.")
    ] = DEFAULT_TRIAL.train_images,
    val_fraction: Annotated[float, typer.Option(help=VAL_HELP)] = DEFAULT_TRIAL.val_fraction,
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
    out_file: Annotated[
        Path,
        typer.Option(
            "--out",
            help="JSON file written after every trained schedule; run again with the same "
            "--out and options to resume.",
        ),
    ] = Path("calibration.json"),
    as_json: JsonOpt = False,
) -> None:
    """How far to trust a short trial: rank agreement of short and R-times longer training.

    Trains --k configurations of the budget band with the short schedule and with --factor
    times its epochs, and prints the Spearman and Kendall correlations of the two rankings
    (95% bootstrap intervals) next to plain params and FLOPs ranked against the long result.
    The defaults (all 8 configurations of the `search` default band, 3 and 18 epochs on 4,000
    images) take about twice the 17 minutes that 2,000 images took on 2 idle CPU cores.
    """
    from nas.search.calibrate import REFERENCE, CalibrationFile, calibrate, long_schedule, pick

    # Every check that needs no data comes first: options, --out, the band's size.
    check_dataset(dataset)
    trial = trial_settings(
        DEFAULT_TRIAL,
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
    if flops is None and params is None:
        flops = SEARCH_FLOPS
    bud = Budget(flops, params, tolerance)
    # The template is the data's default unless given; known datasets are 32 px unless resized.
    known = known_shape(dataset, classes, resolution)
    tpl = template.value if template else known.template if known else None
    grid = (
        tpl,
        int_lists(depths, "--depths") or list(SEARCH_DEPTHS),
        flat_ints(widths, "--widths") or SEARCH_WIDTHS,
        ints(cardinalities, "--cardinalities"),
    )
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
    data = trial.load()
    grid = (grid[0] or data.template, *grid[1:])
    chosen = pick(generate(bud, *grid, None, data.classes, data.resolution), k, seed)
    if not as_json:
        out.print(
            f"calibrating {k} configurations within {bud.describe()}: {epochs} and "
            f"{epochs * factor} epochs on {len(data.train_y)} images ({file.left(k)} to train, "
            f"results in {out_file})",
            highlight=False,
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
    corr = Table(title="Rank agreement with the long schedule (95% bootstrap intervals)")
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
