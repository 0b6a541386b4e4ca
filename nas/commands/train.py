"""``train``: one spec on a dataset, with the paper's augmentation and SGD
(:mod:`nas.training`)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

import resnext
from nas.commands.options import (
    VAL_HELP,
    AugmentOpt,
    ChannelsLastOpt,
    DataDirOpt,
    DataResolutionOpt,
    DatasetNameOpt,
    ImagesPerClassOpt,
    JsonOpt,
    LiteralConsole,
    Precision,
    PrecisionOpt,
    RunOptions,
    SubsetClassesOpt,
    ThreadsOpt,
    check_dataset,
    out,
    plan_run,
    print_json,
    report_data,
)
from nas.commands.spec import CardOpt, DOpt, WidthOpt, spec_option
from nas.data import known_shape
from nas.training.config import RECIPES, TrainConfig, recipe_config
from resnext.complexity import format_count
from resnext.registry import R29
from resnext.spec import DEFAULT_DEPTHS


def _depths(depths: tuple[int, ...]) -> str:
    return ",".join(map(str, depths))


def _train_spec_from_options(
    preset: str | None,
    template: str | None,
    depths: str | None,
    width: int | None,
    cardinality: int | None,
    bottleneck_width: int | None,
    base: resnext.Spec | None = None,
) -> resnext.Spec:
    """A preset (or ``base``) with the options given overriding its fields, or a spec from the
    options alone."""
    fields: dict[str, Any] = {
        "template": template,
        "width": width,
        "cardinality": cardinality,
        "bottleneck_width": bottleneck_width,
    }
    if depths is not None:
        try:
            fields["depths"] = tuple(int(d) for d in depths.split(","))
        except ValueError:
            raise ValueError(
                f"depths must be integers separated by commas, got {depths!r}"
            ) from None
    given = {k: v for k, v in fields.items() if v is not None}
    if preset is not None:
        base = resnext.preset(preset)
    if base is not None:
        return dataclasses.replace(base, **given)
    if "depths" not in given and given.get("template") == "cifar":
        given["depths"] = R29  # Sec. 5.3: the CIFAR network has 3 stages of 3 blocks
    return resnext.Spec(**given)


def train_command(
    ctx: typer.Context,
    preset: Annotated[
        str | None, typer.Argument(help="A preset (see `presets`); spec options override it.")
    ] = None,
    template: Annotated[str | None, spec_option("cifar or imagenet.", "the images'")] = None,
    depths: Annotated[
        str | None,
        spec_option(
            "Blocks per stage, e.g. 3,4,6,3.",
            f"{_depths(R29)} (cifar) or {_depths(DEFAULT_DEPTHS['imagenet'])}",
        ),
    ] = None,
    width: WidthOpt = None,
    cardinality: CardOpt = None,
    bottleneck_width: DOpt = None,
    spec_file: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            help="A JSON spec (an export's spec.json); spec options override it.",
            show_default=False,
        ),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(
            help="paper: Sec. 5.3's CIFAR schedule; options given override it.",
            show_default=False,
        ),
    ] = None,
    classes: SubsetClassesOpt = None,
    dataset: DatasetNameOpt = "synthetic",
    data_dir: DataDirOpt = None,
    images_per_class: ImagesPerClassOpt = None,
    train_images: Annotated[
        int | None, typer.Option(help="Train on this many images.  [default: all]")
    ] = None,
    val_fraction: Annotated[float, typer.Option(help=f"{VAL_HELP}.")] = 0.1,
    resolution: DataResolutionOpt = None,
    augment: AugmentOpt = None,
    epochs: Annotated[int, typer.Option(help="Epochs to train.")] = TrainConfig.epochs,
    batch_size: Annotated[int, typer.Option(help="Images per SGD step.")] = TrainConfig.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = TrainConfig.lr,
    schedule: Annotated[str, typer.Option(help="cosine, onecycle or step.")] = TrainConfig.schedule,
    warmup_epochs: Annotated[
        float, typer.Option(help="Linear warm-up (cosine and step schedules).")
    ] = TrainConfig.warmup_epochs,
    weight_decay: Annotated[
        float | None,
        typer.Option(help="Weight decay.  [default: the paper's for the images' kind]"),
    ] = TrainConfig.weight_decay,
    label_smoothing: Annotated[
        float, typer.Option(help="Label smoothing, 0 for none.")
    ] = TrainConfig.label_smoothing,
    seed: Annotated[
        int, typer.Option(help="Seed of the data split and the training.")
    ] = TrainConfig.seed,
    eval_test: Annotated[
        bool, typer.Option("--eval-test", help="Also score the final weights on the test split.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Run folder; an existing one resumes.  [default: runs/train-TIME]"),
    ] = None,
    threads: ThreadsOpt = None,
    precision: PrecisionOpt = Precision.auto,
    channels_last: ChannelsLastOpt = None,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display.")] = False,
) -> None:
    """Train one spec on a dataset: a short trial with the paper's augmentation and SGD."""
    from nas.data import image_side
    from nas.training.device import check_memory

    # Every check that needs no data comes first, so that a typo fails at once.
    base = None
    if spec_file is not None:
        from nas.export import load_spec

        if preset is not None:
            raise ValueError("give a preset or --spec, not both")
        base = load_spec(spec_file)
    # Without a template, preset or spec file the data picks the template; the built-in and
    # CIFAR sets are 32 px unless resized, so their spec is checked before they load.
    from_data = template is None and preset is None and base is None
    known = known_shape(dataset, classes, resolution)
    spec = None
    if not from_data or known:
        guess = known.template if from_data and known else template
        spec = _train_spec_from_options(
            preset, guess, depths, width, cardinality, bottleneck_width, base
        )
    options = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "schedule": schedule,
        "warmup_epochs": warmup_epochs,
        "weight_decay": weight_decay,
        "label_smoothing": label_smoothing,
        "seed": seed,
    }
    if recipe is not None and recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    # A recipe takes the options the command line does not give. (typer vendors click, so its
    # ParameterSource enum is compared by name.)
    given = {
        k: v
        for k, v in options.items()
        if recipe is None or ctx.get_parameter_source(k).name != "DEFAULT"
    }
    cfg = TrainConfig(**given)  # refuses a bad value before the data loads
    check_dataset(dataset)
    # A spec too large for memory is refused before the data loads too; an image
    # folder's size is known only once it loads, and train() checks again then.
    if spec is not None:
        check_memory(dataclasses.replace(spec, resolution=image_side(dataset, resolution)), cfg)
    from nas.fileio import ensure_folder

    run_dir = ensure_folder(out or Path("runs") / f"train-{time.strftime('%Y%m%d-%H%M%S')}")

    from nas.commands.progress import load_display
    from nas.data import DataOptions
    from nas.fileio import write_json
    from nas.training.loop import train

    try:
        data = DataOptions(
            dataset, data_dir, classes, images_per_class, resolution, augment and augment.value
        ).load(
            train_images=train_images,
            val_fraction=val_fraction,
            seed=seed,
            eval_test=eval_test,
            progress=load_display(quiet, as_json),
        )
    except BaseException:
        if out is None and not any(run_dir.iterdir()):
            run_dir.rmdir()  # the folder named for this run holds nothing: leave no clutter
        raise
    report_data(data, as_json)
    if spec is None:
        spec = _train_spec_from_options(
            None, data.template, depths, width, cardinality, bottleneck_width
        )
    cfg = recipe_config(recipe, data.kind, given)
    # The data decides what the network must predict and at which size.
    if base is not None and (spec.classes, spec.resolution) != (data.classes, data.resolution):
        LiteralConsole(stderr=True, highlight=False).print(
            f"note: {spec_file} has {spec.classes} classes at {spec.resolution}x"
            f"{spec.resolution}; training with the dataset's {data.classes} at "
            f"{data.resolution}x{data.resolution}",
            soft_wrap=True,
        )
    spec = dataclasses.replace(spec, classes=data.classes, resolution=data.resolution)
    _, cfg = plan_run(
        [spec],
        cfg,
        data.kind,
        RunOptions(None, threads, precision, channels_last),
        single=True,
        quiet=as_json,
    )
    result = train(
        spec,
        data,
        cfg,
        checkpoint_dir=run_dir,
        progress=not (as_json or quiet),
        eval_test=eval_test,
    )
    record = {
        "spec": spec.to_dict(),
        "complexity": resnext.complexity(spec).to_dict(),
        "config": dataclasses.asdict(cfg.resolved(data.kind)),
        "dataset": {
            "name": data.name,
            "kind": data.kind,
            "classes": data.classes,
            "resolution": data.resolution,
            "train_images": len(data.train_y),
            "val_images": len(data.val_y),
        },
        "run_dir": str(run_dir),
        **result.to_dict(),
    }
    write_json(run_dir / "result.json", record, "--out")
    diverged = result.status == "diverged"
    if as_json:
        print_json(record)
    else:
        _print_train_summary(spec, record)
    if diverged:
        raise typer.Exit(1)


def _print_train_summary(spec: resnext.Spec, record: dict[str, Any]) -> None:
    """A rich table of a training result, and what to do if it diverged."""
    table = Table(title=f"{spec.describe()} on {record['dataset']['name']}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    status = record["status"]
    epochs = len(record["history"])
    table.add_row("status", Text(status, style="red" if status == "diverged" else ""))
    table.add_row("epochs", str(epochs))
    if epochs:
        table.add_row(
            "val accuracy (best)", f"{record['val_accuracy']:.2%} @ epoch {record['best_epoch']}"
        )
        table.add_row("val accuracy (final)", f"{record['final_val_accuracy']:.2%}")
    if record["test_accuracy"] is not None:
        table.add_row("test accuracy (final)", f"{record['test_accuracy']:.2%}")
    table.add_row("train images/s", f"{record['images_per_second']:,.0f}")
    table.add_row("inference images/s", f"{record['inference_images_per_second']:,.0f}")
    table.add_row(
        "params / FLOPs",
        " / ".join(format_count(record["complexity"][k]) for k in ("params", "flops")),
    )
    table.add_row("wall time", f"{record['wall_seconds']:.1f} s")
    table.add_row("result", str(Path(record["run_dir"]) / "result.json"))
    out.print(table)
    if status == "diverged":
        out.print(
            Text("Training diverged:", style="red"),
            f"the loss became NaN or inf in epoch {epochs + 1}; "
            f"try a lower --lr than {record['config']['lr']:g}.",
        )
