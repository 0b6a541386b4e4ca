"""The ``resnext-nas`` command line: thin commands over ``resnext`` and ``nas``.

Torch is imported only inside the commands that train or build models, so that ``budget``,
``show`` and ``presets`` answer at once.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

import resnext
from resnext.registry import R29

app = typer.Typer(
    help="Explore the ResNeXt design space: budgets, searches and Pareto dashboards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False)

# Library errors a user can act on: bad budgets, unknown presets, missing data, dead storage.
USER_ERRORS = (ValueError, FileNotFoundError)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _fmt_count(n: float) -> str:
    """12.3M / 4.23G style, for tables."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


@app.callback()
def _root() -> None:
    """Explore the ResNeXt design space: budgets, searches and Pareto dashboards."""


@app.command()
def presets(as_json: JsonOpt = False) -> None:
    """List the named presets with their exact complexity."""
    rows = []
    for name in resnext.preset_names():
        spec = resnext.preset(name)
        rows.append(
            {
                "name": name,
                "source": resnext.preset_source(name),
                "spec": spec.to_dict(),
                "complexity": resnext.complexity(spec).to_dict(),
            }
        )
    if as_json:
        _print_json(rows)
        return
    table = Table(title="ResNeXt presets (FLOPs = multiply-adds of conv and fc layers)")
    for col in ("name", "template", "C x d", "depths", "params", "FLOPs", "source"):
        table.add_column(col, justify="right" if col in ("params", "FLOPs") else "left")
    for r in rows:
        s, cx = r["spec"], r["complexity"]
        table.add_row(
            r["name"],
            s["template"],
            f"{s['cardinality']}x{s['bottleneck_width']}d",
            "-".join(map(str, s["depths"])),
            _fmt_count(cx["params"]),
            _fmt_count(cx["flops"]),
            r["source"],
        )
    out.print(table)


# The names nas.data.load_dataset knows; checked here so that a typo is refused before the
# seconds it takes to import torch and load data.
DATASETS = ("synthetic", "cifar10", "cifar100", "imagenet")


def _spec_from_options(
    preset: str | None,
    template: str | None,
    depths: str | None,
    width: int | None,
    cardinality: int | None,
    bottleneck_width: int | None,
) -> resnext.Spec:
    """A preset with the options given overriding its fields, or a spec from the options alone."""
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
        return dataclasses.replace(resnext.preset(preset), **given)
    if "depths" not in given and given.get("template") == "cifar":
        given["depths"] = R29  # Sec. 5.3: the CIFAR network has 3 stages of 3 blocks
    return resnext.Spec(**given)


def _write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (a reader never sees half a file)."""
    from nas.train import write_atomic

    text = json.dumps(obj, indent=2) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))


@app.command("train")
def train_command(
    preset: Annotated[
        str | None, typer.Argument(help="A preset (see `presets`); spec options override it.")
    ] = None,
    template: Annotated[str | None, typer.Option(help="cifar or imagenet.")] = None,
    depths: Annotated[str | None, typer.Option(help="Blocks per stage, e.g. 3,4,6,3.")] = None,
    width: Annotated[int | None, typer.Option(help="Output width of the first stage.")] = None,
    cardinality: Annotated[int | None, typer.Option(help="C, paths per block.")] = None,
    bottleneck_width: Annotated[
        int | None, typer.Option(help="d, the width of one path in the first stage.")
    ] = None,
    classes: Annotated[
        int | None, typer.Option(help="Load only this many classes of the dataset.")
    ] = None,
    dataset: Annotated[str, typer.Option(help=f"One of {', '.join(DATASETS)}.")] = "synthetic",
    data_dir: Annotated[Path | None, typer.Option(help="Where datasets are kept.")] = None,
    train_images: Annotated[
        int | None, typer.Option(help="Train on this many images (default: all).")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs to train.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Images per SGD step.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 0.1,
    schedule: Annotated[str, typer.Option(help="cosine, onecycle or step.")] = "cosine",
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing, 0 for none.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the data split and the training.")] = 0,
    eval_test: Annotated[
        bool, typer.Option("--eval-test", help="Also score the final weights on the test split.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory (default runs/train-<time>); an existing one resumes."),
    ] = None,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Train one spec on a dataset: a short trial with the paper's augmentation and SGD."""
    from nas.train import TrainConfig

    # Every check that needs no data comes first, so that a typo fails at once.
    spec = _spec_from_options(preset, template, depths, width, cardinality, bottleneck_width)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        schedule=schedule,
        label_smoothing=label_smoothing,
        seed=seed,
    )
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")

    from nas.data import load_dataset
    from nas.train import train

    data = load_dataset(
        dataset,
        data_dir=data_dir,
        train_images=train_images,
        seed=seed,
        eval_test=eval_test,
        classes=classes,
    )
    # The data decides what the network must predict and at which size.
    spec = dataclasses.replace(spec, classes=data.classes, resolution=data.resolution)
    run_dir = out or Path("runs") / f"train-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
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
    _write_json(run_dir / "result.json", record)
    diverged = result.status == "diverged"
    if as_json:
        _print_json(record)
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
    table.add_row("status", status if status != "diverged" else "[red]diverged[/red]")
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
        " / ".join(_fmt_count(record["complexity"][k]) for k in ("params", "flops")),
    )
    table.add_row("wall time", f"{record['wall_seconds']:.1f} s")
    table.add_row("result", str(Path(record["run_dir"]) / "result.json"))
    out.print(table)
    if status == "diverged":
        out.print(
            f"[red]Training diverged:[/red] the loss became NaN or inf in epoch {epochs + 1}; "
            f"try a lower --lr than {record['config']['lr']:g}."
        )


def main() -> None:
    """Entry point: run the app, turning user errors into one line on stderr and exit code 2."""
    try:
        app()
    except USER_ERRORS as e:
        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
