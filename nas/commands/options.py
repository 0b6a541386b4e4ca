"""What the commands share: the console, JSON output, option types and list parsing."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

# nas.data imports no torch: its DATASETS refuses a typo before torch and the data load.
from nas.data import AUGMENTS, DATASETS, MIN_VAL_IMAGES, DataOptions
from nas.data.folder import MIXED_RESOLUTION
from nas.data.loader import SMALL_IMAGES
from nas.search.space import (
    BUDGET_TOLERANCE,
    SEARCH_BOTTLENECK_WIDTHS,
    SEARCH_CARDINALITIES,
    SEARCH_DEPTHS,
    SEARCH_FLOPS,
    SEARCH_TOLERANCE,
    SEARCH_WIDTHS,
)
from nas.text import literal, shell_word
from nas.training.config import DEFAULT_TRIAL, IMAGENET_TRIAL, TrialBudget, TrialSettings
from resnext.budget import DEFAULT_CARDINALITIES

# Bidirectional controls: after U+202E a terminal shows the rest of the line reversed.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def error_line(message: object) -> str:
    """``error: message`` as one terminal line, newline-terminated: :func:`literal`, with
    newlines and bidirectional controls escaped too (a study name may hold either, and an error
    may list the names in a storage)."""
    text = literal(f"error: {message}").replace("\n", "\\n")
    return _BIDI.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"


def command(*words: str) -> str:
    """A ``resnext-nas`` command line to suggest, each word quoted for the shell."""
    return " ".join(["resnext-nas", *(shell_word(w) for w in words)])


class LiteralConsole(Console):
    """A rich console that prints strings literally: no markup, no control characters.

    Markup would read ``[/x]`` in a study name as a closing tag (a crash for everyone listing
    the storage) and ``[link=...]`` as a terminal link; styles are given as rich Text objects.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Any:
        """Every string printed, table cells and titles included, passes through here."""
        kwargs["markup"] = False
        return super().render_str(literal(text), **kwargs)


# Rich lays a table out for 80 columns when stdout is no terminal (a file, a pipe, CI logs);
# the trials table needs more, and a file has no width to keep to.
out = LiteralConsole(
    highlight=False,
    width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160,
)


def print_json(obj: Any) -> None:
    """``obj`` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def stream_json(head: dict[str, Any], key: str, items: Iterable[Any], chunk: int = 1000) -> None:
    """``{**head, key: list(items)}`` as :func:`print_json` prints it, written item by item.

    The first lines go out before the items are all made, and memory holds ``chunk`` of them.
    """
    write = sys.stdout.write
    write("{\n")
    for k, v in head.items():
        write(f"  {json.dumps(k)}: {json.dumps(v, indent=2).replace(chr(10), chr(10) + '  ')},\n")
    write(f"  {json.dumps(key)}: [")
    sep, buffer = "\n    ", []
    for item in items:
        buffer.append(sep + json.dumps(item, indent=2).replace("\n", "\n    "))
        sep = ",\n    "
        if len(buffer) >= chunk:
            write("".join(buffer))
            buffer.clear()
    write("".join(buffer))
    write("]\n}\n" if sep == "\n    " else "\n  ]\n}\n")


def ints(text: str, option: str) -> tuple[int, ...]:
    """Parse ``3,4,6,3`` into positive ints, or fail with a line naming the option."""
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise ValueError(
            f"{option} takes comma-separated positive integers such as 3,4,6,3, got {text!r}"
        )
    return values


def int_lists(texts: list[str] | None, option: str) -> list[tuple[int, ...]] | None:
    """Each repeated option parsed by :func:`ints`; None when none is given."""
    return [ints(t, option) for t in texts] if texts else None


def flat_ints(texts: list[str] | None, option: str) -> tuple[int, ...] | None:
    """Every value of the repeated option in one tuple; None when none is given."""
    return tuple(v for t in texts for v in ints(t, option)) if texts else None


class Template(StrEnum):
    """The two templates of the paper."""

    imagenet = "imagenet"
    cifar = "cifar"


class Precision(StrEnum):
    """The arithmetic of training: the measured plan's choice, or one forced."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class Prefer(StrEnum):
    """The secondary criterion among configurations the accuracies cannot tell apart."""

    flops = "flops"
    params = "params"
    latency = "latency"
    throughput = "throughput"


PreferOpt = Annotated[
    Prefer,
    typer.Option(help="The tie-breaker among configurations the confirmation cannot tell apart."),
]

DatasetName = StrEnum("DatasetName", {name: name for name in DATASETS})  # type: ignore[misc]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TemplateOpt = Annotated[Template, typer.Option(help="Template: ImageNet (4 stages) or CIFAR (3).")]
ClassesOpt = Annotated[int, typer.Option(help="Classes of the fc layer (0: the template's).")]
ResolutionOpt = Annotated[int, typer.Option(help="Input side in pixels (0: the template's).")]
CardinalitiesOpt = Annotated[str, typer.Option(help="Cardinalities C to try.")]
# The budget band and grid of `search` and `calibrate`.
SearchFlopsOpt = Annotated[
    float | None,
    typer.Option(
        help=f"FLOP budget in multiply-adds.  [default: {SEARCH_FLOPS:.0e}".replace("e+0", "e")
        + " without --params]",
        show_default=False,
    ),
]
SearchToleranceOpt = Annotated[
    float | None,
    typer.Option(
        help="Relative band around the budget.  [default: "
        f"{SEARCH_TOLERANCE:g} around the default budget, else {BUDGET_TOLERANCE:g}]",
        show_default=False,
    ),
]
SearchCardinalitiesOpt = Annotated[
    str | None,
    typer.Option(
        help="Cardinalities C to try.  [default: "
        f"{','.join(map(str, SEARCH_CARDINALITIES))} with the default budget, else all]",
        show_default=False,
    ),
]
SearchBottleneckWidthsOpt = Annotated[
    str | None,
    typer.Option(
        help="Bottleneck widths d to try.  [default: "
        f"{','.join(map(str, SEARCH_BOTTLENECK_WIDTHS))} with the default budget, else all]",
        show_default=False,
    ),
]
ParamsOpt = Annotated[float | None, typer.Option(help="Parameter budget.")]
ToleranceOpt = Annotated[float, typer.Option(help="Relative band around each budget.")]
SearchDepthsOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="Blocks per stage; repeat for several.  [default: "
        f"{' and '.join(','.join(map(str, d)) for d in SEARCH_DEPTHS)}]"
    ),
]
SearchWidthsOpt = Annotated[
    list[str] | None,
    typer.Option(
        help=f"First-stage output widths.  [default: {','.join(map(str, SEARCH_WIDTHS))}]"
    ),
]
BatchSizeOpt = Annotated[int, typer.Option(help="Mini-batch size.")]
ALL_CARDINALITIES = ",".join(map(str, DEFAULT_CARDINALITIES))
BottleneckWidthsOpt = Annotated[
    str | None, typer.Option(help="Bottleneck widths d to try.  [default: every integer]")
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        envvar="RESNEXT_NAS_STORAGE",
        help="Optuna storage URL.  [default: sqlite:///resnext-nas.db]",
        show_default=False,
    ),
]
CreateOpt = Annotated[
    bool,
    typer.Option(
        "--create",
        help="Add the study tables to another application's SQLite file.",
    ),
]
_DATASET_HELP = "The images: synthetic is built in; folder reads --data-dir."
DatasetOpt = Annotated[DatasetName, typer.Option(help=_DATASET_HELP)]
# train and calibrate take the name as text and refuse an unknown one with "unknown dataset";
# the metavar lists the choices as search's enum does.
DatasetNameOpt = Annotated[
    str,
    typer.Option(
        "--dataset",
        metavar=f"<{'|'.join(DATASETS)}>",
        help=_DATASET_HELP,
    ),
]


def check_dataset(name: str) -> None:
    """ValueError naming the choices unless ``name`` is a known dataset."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


Augment = StrEnum("Augment", {name: name for name in AUGMENTS})  # type: ignore[misc]
# The options that pick a dataset's subset, shared by every command that trains.
DataDirOpt = Annotated[
    str | None,
    typer.Option(
        help="Where datasets live; for folder, an image tree (train/<class>/ or <class>/) or "
        "a .tar/.zip of one.",
        show_default=False,
    ),
]
SubsetClassesOpt = Annotated[
    int | None, typer.Option(help="Keep the first N classes (sorted by name).")
]
ImagesPerClassOpt = Annotated[
    int | None,
    typer.Option(help="Keep the first M training images of each class."),
]
DataResolutionOpt = Annotated[
    int | None,
    typer.Option(
        help=f"Resize images to this side.  [default: the images' own, else {MIXED_RESOLUTION}]",
        show_default=False,
    ),
]
AugmentOpt = Annotated[
    Augment | None,
    typer.Option(
        help=f"Augmentation.  [default: cifar at {SMALL_IMAGES} px or less, else imagenet]",
        show_default=False,
    ),
]
# The rules of the split (nas.data.VAL_CAP_RULE, MIN_VAL_IMAGES) are in docs/reference.md.
VAL_HELP = "Share of the training images held out to score trials"
SEARCH_VAL_HELP = f"Share of training images held out to score trials (at least {MIN_VAL_IMAGES})"


def report_data(data: Any, quiet: bool) -> None:
    """The dataset's classes and split sizes, and the scoring sample's own noise, on stdout
    (unless ``quiet``), and on stderr a note when its validation split is larger than asked."""
    from nas.data import describe

    if not quiet:
        out.print(describe(data), highlight=False)
        n = len(data.val_y)
        out.print(
            f"scored on the {n:,} held-out images: the sample alone moves an accuracy near 50% "
            f"by a binomial SE of {50 / n**0.5:.1f} points",
            highlight=False,
        )
    if data.note:
        sys.stderr.write(literal(f"note: {data.note}") + "\n")


DataTemplateOpt = Annotated[
    Template | None,
    typer.Option(
        help=f"Template.  [default: cifar for images of {SMALL_IMAGES} px or less]",
        show_default=False,
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
WorkersOpt = Annotated[
    str,
    typer.Option(help="Worker processes; auto: the machine's measured plan (`plan`)."),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        help="CPU threads of each worker.  [default: the measured plan's]", show_default=False
    ),
]
PrecisionOpt = Annotated[
    Precision,
    typer.Option(help="fp32, or bf16 autocast; auto: the measured plan's."),
]
ChannelsLastOpt = Annotated[
    bool | None,
    typer.Option(
        "--channels-last/--no-channels-last",
        help="NHWC or NCHW memory format.  [default: the measured plan's]",
        show_default=False,
    ),
]
TrialsPerGpuOpt = Annotated[
    int, typer.Option(help="Workers that share one GPU, for trials too small to fill it.")
]
LatencyOpt = Annotated[bool, typer.Option(help="Measure batch-1 latency of every trial.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress display.")]
RunsDirOpt = Annotated[
    Path, typer.Option(help="Trials save their weights in RUNS_DIR/STUDY/trial-N.")
]
SaveWeightsOpt = Annotated[
    bool, typer.Option(help="Save every trained trial's final weights (for `export`).")
]


def by_template(field: str) -> str:
    """The defaults of a trial option, from each template's trial (nas.training.config.TRIALS)."""

    def shown(v: float | None) -> str:  # None: every training image (train_images)
        return "all" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:g}"

    cifar, imagenet = (shown(getattr(t, field)) for t in (DEFAULT_TRIAL, IMAGENET_TRIAL))
    if cifar == imagenet:
        return f".  [default: {cifar}]"
    return f".  [default: {cifar}; ImageNet template: {imagenet}]"


# --batch-size of the commands whose trial follows the data's template (search, calibrate).
TrialBatchSizeOpt = Annotated[
    int | None,
    typer.Option(help=f"Mini-batch size{by_template('batch_size')}", show_default=False),
]


def trial_settings(
    base: TrialBudget,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    train_images: int | None = None,
    val_fraction: float | None = None,
    dataset: str,
    data_dir: str | None,
    classes: int | None,
    images_per_class: int | None,
    resolution: int | None,
    augment: Augment | None,
    device: str,
    seed: int = 0,
    patience: int | None = None,
) -> TrialSettings:
    """The trial that a training command's options describe: ``base`` with the options given
    (not None) in its place, and its training config checked, before any data loads."""
    given = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "train_images": train_images,
        "val_fraction": val_fraction,
    }
    budget = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
    side = resolution or budget.resolution
    data = DataOptions(
        dataset, data_dir, classes, images_per_class, side, augment and augment.value
    )
    return TrialSettings(budget, budget.train_config(device, seed, patience), data)


def parse_workers(workers: str) -> int | None:
    """``--workers``: None for "auto" (the measured plan), else a positive integer."""
    if workers == "auto":
        return None
    try:
        n = int(workers)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"--workers takes auto or a positive integer, got {workers!r}")
    return n


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How trials run, as a command line gave it: None (and auto) leave it to the plan."""

    workers: int | None = None
    threads: int | None = None
    precision: Precision = Precision.auto
    channels_last: bool | None = None


def plan_run(
    specs: list[Any],
    train: Any,
    kind: str,
    given: RunOptions,
    *,
    trials_per_gpu: int = 1,
    single: bool = False,
    quiet: bool = False,
) -> tuple[Any, Any]:
    """The run's :class:`nas.training.machine.RunChoice` for trials of ``specs`` with config
    ``train`` (measured once a machine, then cached), and ``train`` with its threads, format and
    precision; the plan is said in one line on stderr unless ``quiet``."""
    from nas.search.workers import gpu_count
    from nas.training.device import resolve_device
    from nas.training.machine import choose

    dev = resolve_device(train.device)
    if given.threads is not None and given.threads < 1:
        raise ValueError(f"--threads takes a positive integer, got {given.threads}")

    def announce() -> None:
        if not quiet:
            sys.stderr.write("measuring how trials run fastest here, once a machine...\n")

    choice = choose(
        specs,
        train.batch_size,
        kind,
        dev.type,
        workers=given.workers,
        threads=given.threads,
        precision=given.precision.value,
        channels_last=given.channels_last,
        gpu_workers=max(1, gpu_count()) * trials_per_gpu,
        single=single,
        announce=announce,
    )
    if not quiet:
        for line in choice.lines():
            sys.stderr.write(literal(line) + "\n")
    run = dataclasses.replace(
        train,
        threads=choice.threads if dev.type == "cpu" else None,
        channels_last=choice.channels_last,
        precision=choice.precision,
    )
    return choice, run
