"""The ``resnext-nas`` command line: thin commands over ``resnext`` and ``nas``.

Torch is imported only inside the commands that train or build models, and Optuna and plotly only
inside ``dashboard``, so that ``budget``, ``show`` and ``presets`` answer at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

import resnext

# nas.data imports no torch: its DATASETS refuses a typo before torch and the data load.
from nas.data import AUGMENTS, DATASETS, VAL_CAP_RULE, default_template
from resnext.budget import DEFAULT_CARDINALITIES, Budget, generate
from resnext.complexity import format_count
from resnext.registry import R29

app = typer.Typer(
    help="Explore the ResNeXt design space: budgets, searches and Pareto dashboards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Rich lays a table out for 80 columns when stdout is no terminal (a file, a pipe, CI logs);
# the trials table needs more, and a file has no width to keep to.
out = Console(
    highlight=False,
    width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160,
)

# Library errors a user can act on: bad budgets, unknown presets, missing data, dead storage.
USER_ERRORS = (ValueError, FileNotFoundError)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


@app.callback()
def _root() -> None:
    """Explore the ResNeXt design space: budgets, searches and Pareto dashboards."""


class Template(StrEnum):
    """The two templates of the paper."""

    imagenet = "imagenet"
    cifar = "cifar"


def _ints(text: str, option: str) -> tuple[int, ...]:
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


def _int_lists(texts: list[str] | None, option: str) -> list[tuple[int, ...]] | None:
    return [_ints(t, option) for t in texts] if texts else None


def _flat_ints(texts: list[str] | None, option: str) -> tuple[int, ...] | None:
    return tuple(v for t in texts for v in _ints(t, option)) if texts else None


TemplateOpt = Annotated[Template, typer.Option(help="Template: ImageNet (4 stages) or CIFAR (3).")]
ClassesOpt = Annotated[int, typer.Option(help="Classes of the fc layer (0: the template's).")]
ResolutionOpt = Annotated[int, typer.Option(help="Input side in pixels (0: the template's).")]
CardinalitiesOpt = Annotated[str, typer.Option(help="Cardinalities C to try.")]
ALL_CARDINALITIES = ",".join(map(str, DEFAULT_CARDINALITIES))
BottleneckWidthsOpt = Annotated[
    str | None, typer.Option(help="Bottleneck widths d to try (default: every integer).")
]


@app.command()
def budget(
    flops: Annotated[
        float | None, typer.Option(help="FLOP budget in multiply-adds, e.g. 4.1e9.")
    ] = None,
    params: Annotated[float | None, typer.Option(help="Parameter budget, e.g. 25e6.")] = None,
    tolerance: Annotated[float, typer.Option(help="Relative band around each budget.")] = 0.05,
    template: TemplateOpt = Template.imagenet,
    depths: Annotated[
        list[str] | None,
        typer.Option(help="Blocks per stage, e.g. 3,4,6,3; repeat to compare several."),
    ] = None,
    widths: Annotated[
        list[str] | None, typer.Option(help="First-stage output widths, e.g. 128,256.")
    ] = None,
    cardinalities: CardinalitiesOpt = ALL_CARDINALITIES,
    bottleneck_widths: BottleneckWidthsOpt = None,
    classes: ClassesOpt = 0,
    resolution: ResolutionOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """List every configuration whose FLOPs and/or params lie within the budget band."""
    bud = Budget(flops, params, tolerance)
    configs = generate(
        bud,
        template.value,
        _int_lists(depths, "--depths"),
        _flat_ints(widths, "--widths") or (256,),
        _ints(cardinalities, "--cardinalities"),
        _ints(bottleneck_widths, "--bottleneck-widths") if bottleneck_widths else None,
        classes,
        resolution,
    )
    if as_json:
        _print_json(
            {
                "budget": {**bud.to_dict(), "template": template.value},
                "configs": [c.to_dict() for c in configs],
            }
        )
        return
    table = Table(
        title=f"{len(configs)} {template.value} configurations within {bud.describe()}",
        caption="★ closest to the budget for its C and depths;  ◆ on the params/FLOPs "
        "Pareto front.  FLOPs are multiply-adds of conv and fc layers.",
    )
    for col in ("C x d", "C·d", "depths", "width", "params", "FLOPs", "off budget", ""):
        table.add_column(
            col, justify="left" if col in ("C x d", "depths", "") else "right", no_wrap=True
        )
    for c in configs:
        s, cx = c.spec, c.complexity
        table.add_row(
            s.notation,
            str(s.group_width),
            "-".join(map(str, s.depths)),
            str(s.width),
            format_count(cx.params),
            format_count(cx.flops),
            f"{c.deviation:.1%}",
            ("★" if c.closest else "") + ("◆" if c.pareto else ""),
            style="bold" if c.closest else None,
        )
    out.print(table)


def _spec_from_options(
    name: str | None,
    template: Template | None,
    depths: str | None,
    width: int | None,
    cardinality: int | None,
    bottleneck_width: int | None,
    classes: int | None,
    resolution: int | None,
) -> resnext.Spec:
    """A preset (if named) with the given options overriding its fields, else a spec from them."""
    fields: dict[str, Any] = {
        "template": template.value if template else None,
        "depths": _ints(depths, "--depths") if depths else None,
        "width": width,
        "cardinality": cardinality,
        "bottleneck_width": bottleneck_width,
        "classes": classes,
        "resolution": resolution,
    }
    given = {k: v for k, v in fields.items() if v is not None}
    if name is None:
        return resnext.Spec(**given)
    return replace(resnext.preset(name), **given)


NameArg = Annotated[
    str | None,
    typer.Argument(help="A preset name (see `resnext-nas presets`).", show_default=False),
]
SpecTemplateOpt = Annotated[Template | None, typer.Option(help="Template: imagenet or cifar.")]
DepthsOpt = Annotated[str | None, typer.Option(help="Blocks per stage, e.g. 3,4,23,3.")]
WidthOpt = Annotated[int | None, typer.Option(help="Output width of the first stage (paper: 256).")]
CardOpt = Annotated[int | None, typer.Option(help="Cardinality C.")]
DOpt = Annotated[int | None, typer.Option(help="Bottleneck width d of the first stage.")]
SpecClassesOpt = Annotated[int | None, typer.Option(help="Classes of the fc layer.")]
SpecResOpt = Annotated[int | None, typer.Option(help="Input side in pixels.")]


@app.command()
def show(
    name: NameArg = None,
    template: SpecTemplateOpt = None,
    depths: DepthsOpt = None,
    width: WidthOpt = None,
    cardinality: CardOpt = None,
    bottleneck_width: DOpt = None,
    classes: SpecClassesOpt = None,
    resolution: SpecResOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show an architecture as a Table 1-style stage table with its exact complexity."""
    spec = _spec_from_options(
        name, template, depths, width, cardinality, bottleneck_width, classes, resolution
    )
    total = resnext.complexity(spec)
    parts = dict(resnext.complexity_by_part(spec))
    if as_json:
        _print_json(
            {
                "spec": spec.to_dict(),
                "complexity": total.to_dict(),
                "stages": {k: v.to_dict() for k, v in parts.items()},
            }
        )
        return
    st = resnext.stem(spec)
    table = Table(
        title=f"{name or 'custom'}: {spec.describe()} ({spec.template}, "
        f"{spec.resolution}x{spec.resolution} input, {spec.classes} classes)",
        caption="FLOPs are multiply-adds of conv and fc layers (Table 1's convention).",
    )
    for col in ("stage", "output", "block", "blocks", "params", "FLOPs"):
        table.add_column(col, justify="right" if col in ("blocks", "params", "FLOPs") else "left")
    # Table 1 lists conv1 at the conv's output size and the max pool under conv2.
    table.add_row(
        "conv1",
        f"{st.conv_size}x{st.conv_size}",
        f"{st.kernel}x{st.kernel}, {st.width}, stride {st.stride}",
        "",
        format_count(parts["conv1"].params),
        format_count(parts["conv1"].flops),
        end_section=True,
    )
    for s in resnext.stages(spec):
        cx = parts[s.name]
        pool = "3x3 max pool, stride 2\n" if st.pool and s.name == "conv2" else ""
        shape = (
            f"{pool}1x1, {s.group_width}\n3x3, {s.group_width}, C={s.cardinality}"
            f"\n1x1, {s.out_width}"
        )
        table.add_row(
            s.name,
            f"{s.out_size}x{s.out_size}",
            shape,
            f"x{s.blocks}",
            format_count(cx.params),
            format_count(cx.flops),
            end_section=True,
        )
    table.add_row(
        "",
        "1x1",
        f"global average pool\n{spec.classes}-d fc, softmax",
        "",
        format_count(parts["fc"].params),
        format_count(parts["fc"].flops),
    )
    table.add_row("total", "", "", "", f"{total.params:,}", f"{total.flops:,}", style="bold")
    out.print(table)


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
            format_count(cx["params"]),
            format_count(cx["flops"]),
            r["source"],
        )
    out.print(table)


# ------------------------------------------------------------------------------------- search

StorageOpt = Annotated[
    str | None,
    typer.Option(
        envvar="RESNEXT_NAS_STORAGE",
        help="Optuna storage URL, e.g. postgresql://user:pw@host/db "
        "(default: sqlite:///resnext-nas.db in the working directory).",
        show_default=False,
    ),
]
StudyOpt = Annotated[str, typer.Option(help="Study name; re-running the same command resumes it.")]
# The default space, for 32x32 images: CIFAR template (Sec. 5.3) cut to 1 or 2 blocks a stage and
# width 32, 8 configurations on two skeletons (the `search` help says more). The default trial,
# 3 epochs of batch 32 on 4,000 images (375 SGD steps), leaves chance clearly on real CIFAR-10:
# 4x2d reached 38.3% validation accuracy where 2,000 images gave 31.5% (issue 11; the README
# has the commands and times), at about twice the compute of the 2,000-image trial (17 s on 2
# idle cores).
SEARCH_FLOPS = 8e6
KNOWN_CLASSES = {"synthetic": 10, "cifar10": 10, "cifar100": 100}  # all 32x32
SEARCH_DEPTHS = ["1,1,1", "2,2,2"]
SEARCH_WIDTHS = ["32"]
SearchFlopsOpt = Annotated[
    float | None,
    typer.Option(
        help=f"FLOP budget in multiply-adds (default {SEARCH_FLOPS:g} if no budget).",
        show_default=False,
    ),
]
SearchDepthsOpt = Annotated[
    list[str] | None,
    typer.Option(help="Blocks per stage; repeat for several (default 1,1,1 and 2,2,2)."),
]
SearchWidthsOpt = Annotated[
    list[str] | None, typer.Option(help="First-stage output widths (default 32).")
]


def _search_space(
    flops: float | None,
    params: float | None,
    tolerance: float,
    template: str,
    depths: list[str] | None,
    widths: list[str] | None,
    cardinalities: str,
    bottleneck_widths: str | None,
    classes: int,
    resolution: int,
    tune_lr: bool,
    tune_wd: bool,
) -> Any:
    from nas.space import SearchSpace

    if flops is None and params is None:
        flops = SEARCH_FLOPS
    return SearchSpace(
        Budget(flops, params, tolerance),
        template,
        tuple(_int_lists(depths or SEARCH_DEPTHS, "--depths") or ()),
        _flat_ints(widths or SEARCH_WIDTHS, "--widths") or (),
        _ints(cardinalities, "--cardinalities"),
        _ints(bottleneck_widths, "--bottleneck-widths") if bottleneck_widths else None,
        classes,
        resolution,
        tune_lr,
        tune_wd,
    )


RunsDirOpt = Annotated[
    Path, typer.Option(help="Each trial saves its final weights in RUNS_DIR/STUDY/trial-N.")
]
SaveWeightsOpt = Annotated[
    bool, typer.Option(help="Save every trained trial's final weights (for `export`).")
]


class Sampler(StrEnum):
    """Optuna samplers of ``search``."""

    tpe = "tpe"
    nsga2 = "nsga2"
    random = "random"


class Pruner(StrEnum):
    """Optuna pruners of a single-objective ``search``."""

    hyperband = "hyperband"
    median = "median"
    none = "none"


DatasetName = StrEnum("DatasetName", {name: name for name in DATASETS})  # type: ignore[misc]
DatasetOpt = Annotated[
    DatasetName,
    typer.Option(
        help="synthetic is built in; folder is any ImageFolder tree or archive (--data-dir); "
        "the others are read from disk."
    ),
]
Augment = StrEnum("Augment", {name: name for name in AUGMENTS})  # type: ignore[misc]
# The options that pick a dataset's subset, shared by every command that trains.
DataDirOpt = Annotated[
    str | None,
    typer.Option(
        help="Where datasets live; for --dataset folder an ImageFolder tree (train/<class>/..., "
        "optional test/ or val/) or a .tar, .tar.gz or .zip of one, extracted once.",
        show_default=False,
    ),
]
SubsetClassesOpt = Annotated[
    int | None, typer.Option(help="Keep the first N classes (sorted folder names).")
]
ImagesPerClassOpt = Annotated[
    int | None,
    typer.Option(help="Keep the first M training images of each class (sorted file names)."),
]
DataResolutionOpt = Annotated[
    int | None,
    typer.Option(
        help="Resize images to this side (default: the images' own when they share one, else 64).",
        show_default=False,
    ),
]
AugmentOpt = Annotated[
    Augment | None,
    typer.Option(
        help="cifar (Sec. 5.3 pad-crop-flip) or imagenet (random-resized crop); default: "
        "cifar at 64 px or less, else imagenet.",
        show_default=False,
    ),
]
VAL_HELP = f"Share of the training set held out to score trials; {VAL_CAP_RULE}."
DataTemplateOpt = Annotated[
    Template | None,
    typer.Option(
        help="Template (default: cifar for images of 64 px or less, else imagenet).",
        show_default=False,
    ),
]


class _Progress:
    """One live line per worker: trial, spec, epoch, validation accuracy, best error so far."""

    def __init__(self, workers: int) -> None:
        from rich.live import Live

        self.lines = {w: f"worker {w}: starting" for w in range(workers)}
        self.live = Live(self._render(), console=Console(stderr=True), refresh_per_second=4)

    def _render(self) -> Any:
        from rich.text import Text

        return Text("\n".join(self.lines.values()))

    def __call__(self, worker: int, ev: dict[str, Any]) -> None:
        best = "-" if ev["best_error"] == float("inf") else f"{ev['best_error']:.1%}"
        self.lines[worker] = (
            f"worker {worker}: trial {ev['trial']} {ev['spec']}  epoch {ev['epoch']}/"
            f"{ev['epochs']}  val acc {ev['val_accuracy']:.1%}  best error {best}"
        )
        self.live.update(self._render())


@app.command()
def search(
    trials: Annotated[int, typer.Option(help="Trained trials of the whole study.")] = 50,
    study: StudyOpt = "resnext-search",
    storage: StorageOpt = None,
    workers: Annotated[
        int, typer.Option(help="Local worker processes (one GPU each, or a share of the cores).")
    ] = 1,
    flops: SearchFlopsOpt = None,
    params: Annotated[float | None, typer.Option(help="Parameter budget.")] = None,
    tolerance: Annotated[float, typer.Option(help="Relative band around each budget.")] = 0.1,
    template: DataTemplateOpt = None,
    depths: SearchDepthsOpt = None,
    widths: SearchWidthsOpt = None,
    cardinalities: CardinalitiesOpt = ALL_CARDINALITIES,
    bottleneck_widths: BottleneckWidthsOpt = None,
    tune_lr: Annotated[
        bool, typer.Option(help="Also search the learning rate (log-uniform).")
    ] = False,
    tune_wd: Annotated[
        bool, typer.Option(help="Also search the weight decay (log-uniform).")
    ] = False,
    objectives: Annotated[
        str,
        typer.Option(
            help="error, or error plus flops/params/latency/activations (multi-objective)."
        ),
    ] = "error",
    sampler: Annotated[Sampler, typer.Option(help="Optuna sampler, seeded by --seed.")] = (
        Sampler.tpe
    ),
    pruner: Annotated[
        Pruner | None,
        typer.Option(
            help="hyperband, median or none (default hyperband; none with several objectives).",
            show_default=False,
        ),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(
            help="Trainer early stopping after N epochs without progress "
            "(default 2 with several objectives, else off).",
            show_default=False,
        ),
    ] = None,
    enqueue: Annotated[
        list[str] | None,
        typer.Option(
            help="Measure a preset first (repeatable): its (C, d) on the study's skeleton, "
            "refused if out of band; or 'family': the closest config per skeleton and C."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the samplers, the data and the training.")] = 0,
    epochs: Annotated[int, typer.Option(help="Epochs per trial.")] = 3,
    dataset: DatasetOpt = DatasetName.synthetic,
    data_dir: DataDirOpt = None,
    classes: SubsetClassesOpt = None,
    images_per_class: ImagesPerClassOpt = None,
    train_images: Annotated[int | None, typer.Option(help="Training images per trial.")] = 4000,
    val_fraction: Annotated[float, typer.Option(help=VAL_HELP)] = 0.02,
    resolution: DataResolutionOpt = None,
    augment: AugmentOpt = None,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate (unless --tune-lr).")] = 0.05,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    latency: Annotated[bool, typer.Option(help="Measure batch-1 latency of every trial.")] = True,
    runs_dir: RunsDirOpt = Path("runs"),
    save_weights: SaveWeightsOpt = True,
    heartbeat: Annotated[
        int, typer.Option(help="Seconds between heartbeats; a trial silent 3 beats is retried.")
    ] = 10,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Search the design space under a budget with Optuna; re-running the command resumes it.

    Default space: CIFAR template, depths 1-1-1 and 2-2-2, width 32, 8e6 FLOPs ±10%, every C
    and d: 8 configurations (two cells, 2-2-2 with C=4 or 8, are empty and rejected if
    proposed), sized for 3-epoch trials of batch 32 on 4,000 32x32 images (1,000 held out),
    about a minute or less each on 2 CPU cores, that reached 35-38% on real CIFAR-10.
    """
    from nas import study as nstudy

    objs = tuple(o for o in objectives.replace(" ", "").split(",") if o)

    def settings_for(n_classes: int, res: int, tpl: str) -> Any:
        space = _search_space(
            flops, params, tolerance, template.value if template else tpl, depths, widths,
            cardinalities, bottleneck_widths, n_classes, res, tune_lr, tune_wd,
        )  # fmt: skip
        return nstudy.SearchSettings(
            space,
            study,
            objs,
            sampler.value,
            pruner and pruner.value,
            seed,
            tuple(enqueue or ()),
            latency,
            runs_dir.resolve() if save_weights else None,
        )

    if trials < 1 or workers < 1 or heartbeat < 1:
        raise ValueError("--trials, --workers and --heartbeat take positive integers")
    # Refuse bad budgets, presets, storage URLs and objectives before the seconds a dataset
    # takes, where its classes and resolution are known beforehand.
    dataset_name = dataset.value
    if dataset_name in KNOWN_CLASSES:
        res = resolution or 32
        early = settings_for(classes or KNOWN_CLASSES[dataset_name], res, default_template(res))
        nstudy.enqueue_specs(early.space, early.enqueue)
        if nstudy.check_study(early, storage) >= trials:
            _search_summary(study, storage, [], 0.0, as_json)  # done: no data, no training
            return
    from nas.data import load_dataset

    data = load_dataset(
        dataset_name,
        data_dir=data_dir,
        train_images=train_images,
        val_fraction=val_fraction,
        seed=seed,
        classes=classes,
        images_per_class=images_per_class,
        resolution=resolution,
        augment=augment and augment.value,
    )
    # The budget counts FLOPs at the dataset's resolution and the fc of its classes.
    settings = settings_for(data.classes, data.resolution, data.template)
    nstudy.enqueue_specs(settings.space, settings.enqueue)
    if patience is None and len(objs) > 1:
        patience = 2
    train_kwargs = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "device": device,
        "early_stop_patience": patience,
    }
    if not quiet and not as_json:
        out.print(f"study {study!r}: {settings.space.describe()}", highlight=False)
    progress = None if quiet or as_json else _Progress(workers)
    t0 = time.perf_counter()
    if progress:
        progress.live.start()
    try:
        reports = nstudy.run_search(
            settings,
            data,
            train_kwargs,
            trials,
            storage=storage,
            workers=workers,
            heartbeat=heartbeat,
            progress=progress,
        )
    finally:
        if progress:
            progress.live.stop()
    _search_summary(study, storage, reports, time.perf_counter() - t0, as_json)


def _search_summary(
    study: str,
    storage: str | None,
    reports: list[Any],
    wall: float,
    as_json: bool,
    extra: dict[str, Any] | None = None,
) -> None:
    """The study's trials by state and best trial, after a search (``extra`` joins the JSON)."""
    from nas import study as nstudy

    summary = next(r for r in nstudy.study_rows(storage) if r["name"] == study)
    summary["wall_seconds"] = wall
    summary["workers"] = [dataclasses.asdict(r) for r in reports]
    summary["best_config"] = nstudy.best_config(nstudy.trial_rows(nstudy.load(study, storage)))
    summary.update(extra or {})
    if as_json:
        _print_json(summary)
        return
    best = summary["best"]
    states = ", ".join(f"{k} {v}" for k, v in sorted(summary["trials"].items()))
    out.print(
        f"study {study!r}: {states}; best error "
        + (f"{best['error']:.2%} (trial {best['number']}, {best['spec']})" if best else "-")
        + f"; see `resnext-nas trials --study {study}`"
    )
    if cfg := summary["best_config"]:
        out.print(
            f"best config by mean over its trials: {cfg['spec']}, val acc "
            f"{cfg['mean_accuracy']:.1%} ± {cfg['std_accuracy']:.1%} over "
            f"{len(cfg['trials'])} trial{'s' * (len(cfg['trials']) != 1)} (the best single "
            "trial is a maximum over seeds)"
        )


def _fmt_opt(v: Any, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


@app.command()
def trials(
    study: StudyOpt = "resnext-search",
    storage: StorageOpt = None,
    front: Annotated[
        str | None,
        typer.Option(
            help="Mark the (error, X) Pareto front, X = flops, params, latency or "
            "activations (default: the study's second objective, or flops).",
            show_default=False,
        ),
    ] = None,
    csv: Annotated[
        str | None, typer.Option("--csv", help="Also write the rows to this CSV file.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List a study's trials with their spec, complexity, accuracy and throughput."""
    from nas import study as nstudy

    rows = nstudy.trial_rows(nstudy.load(study, storage), front)
    if csv:
        import csv as csvmod

        cols = [k for k in rows[0] if k not in ("spec_dict", "values", "hparams")] if rows else []
        with open(csv, "w", newline="") as f:
            w = csvmod.DictWriter(f, cols, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    if as_json:
        _print_json(rows)
        return
    table = Table(
        title=f"study {study!r}: {len(rows)} trials",
        caption="◆ on the (error, " + (front or "FLOPs") + ") Pareto front of complete trials; "
        "★ a baseline from --enqueue. FLOPs are multiply-adds. mean (n): the mean accuracy of "
        "the n complete trials of the same config (seeds).",
    )
    for col in (
        "#",
        "state",
        "spec",
        "params",
        "FLOPs",
        "latency",
        "val acc",
        "mean (n)",
        "epochs",
        "train img/s",
        "infer img/s",
        "",
        "note",
    ):
        table.add_column(
            col,
            justify="left" if col in ("state", "spec", "", "note") else "right",
            no_wrap=col != "note",
        )
    for r in rows:
        table.add_row(
            str(r["number"]),
            r["state"],
            r["spec"] or "",
            format_count(r["params"]) if r["params"] is not None else "",
            format_count(r["flops"]) if r["flops"] is not None else "",
            "" if r["latency"] is None else f"{r['latency'] * 1e3:.2f} ms",
            _fmt_opt(r["val_accuracy"], ".1%"),
            f"{r['spec_mean_accuracy']:.1%} ({r['spec_trials']})" if r["spec_trials"] > 1 else "",
            str(r["epochs"] or ""),
            _fmt_opt(r["images_per_second"], ".0f"),
            _fmt_opt(r["inference_images_per_second"], ".0f"),
            ("◆" if r["pareto"] else "") + ("★" if r["baseline"] else ""),
            r["note"] or "",
            style="bold" if r["pareto"] else None,
        )
    out.print(table)


@app.command()
def studies(storage: StorageOpt = None, as_json: JsonOpt = False) -> None:
    """List the studies of a storage: objectives, trials by state, best trial."""
    from nas import study as nstudy

    rows = nstudy.study_rows(storage)
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"{len(rows)} studies")
    for col in ("study", "objectives", "directions", "trials", "best error", "best spec"):
        table.add_column(col)
    for r in rows:
        b = r["best"]
        table.add_row(
            r["name"],
            ",".join(r["objectives"] or []),
            ",".join(r["directions"]),
            ", ".join(f"{k} {v}" for k, v in sorted(r["trials"].items())),
            f"{b['error']:.2%} (#{b['number']})" if b else "",
            (b["spec"] or "") if b else "",
        )
    out.print(table)


# -------------------------------------------------------------------------------- study list/run

study_app = typer.Typer(
    help="The paper's experiments as ready-made studies: list them, run one.",
    no_args_is_help=True,
)
app.add_typer(study_app, name="study")


@study_app.command("list")
def study_list(as_json: JsonOpt = False) -> None:
    """List the study definitions: name, citation, trials and what each measures."""
    import studies

    rows = [d.to_dict() for d in studies.definitions()]
    if as_json:
        _print_json(rows)
        return
    table = Table(
        title=f"{len(rows)} study definitions (`resnext-nas study run NAME`)",
        caption="trials: (spec, seed) points of a grid, or trained trials of a search, at the "
        "default --seeds on the built-in dataset.",
    )
    for col in ("name", "citation", "trials", "measures"):
        table.add_column(col, justify="right" if col == "trials" else "left", no_wrap=col == "name")
    for r in rows:
        seeds = f" ({r['seeds']} seeds)" if r["seeds"] else ""
        table.add_row(r["name"], r["citation"], f"{r['trials']}{seeds}", r["measures"])
    out.print(table)


def _unset_option(text: str) -> Any:
    """An option whose default (None) means "the study definition's value"."""
    return typer.Option(help=text, show_default=False)


def _storage_hint(storage: str | None) -> str:
    return f" --storage {storage}" if storage else ""


@study_app.command("run")
def study_run(
    name: Annotated[str, typer.Argument(help="A study (see `resnext-nas study list`).")],
    dataset: DatasetOpt = DatasetName.synthetic,
    data_dir: DataDirOpt = None,
    classes: SubsetClassesOpt = None,
    images_per_class: ImagesPerClassOpt = None,
    augment: AugmentOpt = None,
    storage: StorageOpt = None,
    study_name: Annotated[
        str | None, _unset_option("Optuna study name (default: the definition's name).")
    ] = None,
    seeds: Annotated[
        int | None, _unset_option("Seeds per spec of a grid study (default: the definition's).")
    ] = None,
    epochs: Annotated[
        int | None, _unset_option("Epochs per trial (default: the definition's).")
    ] = None,
    train_images: Annotated[
        int | None, _unset_option("Training images per trial (default: the definition's).")
    ] = None,
    val_fraction: Annotated[
        float | None, _unset_option(f"{VAL_HELP} (default: the definition's)")
    ] = None,
    resolution: DataResolutionOpt = None,
    workers: Annotated[
        int, typer.Option(help="Local worker processes (one GPU each, or a share of the cores).")
    ] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    latency: Annotated[bool, typer.Option(help="Measure batch-1 latency of every trial.")] = True,
    runs_dir: RunsDirOpt = Path("runs"),
    save_weights: SaveWeightsOpt = True,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run (or resume) a study definition; re-running trains only what is missing."""
    import studies
    from nas import study as nstudy
    from studies.run import with_overrides

    definition = studies.get(name)
    schedule = with_overrides(definition.schedule, epochs, train_images)
    if val_fraction is not None:
        schedule = dataclasses.replace(schedule, val_fraction=val_fraction)
    dataset = dataset.value
    if workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {workers}")
    definition.n_trials(seeds)  # refuses --seeds < 1, or --seeds for a search
    study = study_name or definition.name
    hint = f"see `resnext-nas dashboard --study {study}{_storage_hint(storage)}`"
    # As `search`: refuse a bad storage or a finished study before the data load.
    if dataset in KNOWN_CLASSES:
        n_classes = classes or KNOWN_CLASSES[dataset]
        early = definition.settings(study, n_classes, resolution or 32)
        n = definition.n_trials(seeds, n_classes, resolution or 32)
        if nstudy.check_study(early, storage) >= n:
            _search_summary(study, storage, [], 0.0, as_json, {"missing": [], "dashboard": hint})
            if not as_json:
                out.print(f"nothing left to train; {hint}", soft_wrap=True)
            return
    from nas.data import load_dataset

    data = load_dataset(
        dataset,
        data_dir=data_dir,
        train_images=schedule.train_images,
        val_fraction=schedule.val_fraction,
        classes=classes,
        images_per_class=images_per_class,
        resolution=resolution,
        augment=augment and augment.value,
    )
    settings = definition.settings(study, data.classes, data.resolution)
    if not quiet and not as_json:
        out.print(
            f"study {study!r} ({definition.citation}): {settings.space.describe()}; "
            f"{definition.n_trials(seeds, data.classes, data.resolution)} trials of "
            f"{schedule.epochs} epochs on {len(data.train_y)} images",
            highlight=False,
        )
    progress = None if quiet or as_json else _Progress(workers)
    if progress:
        progress.live.start()
    try:
        run = studies.run_study(
            definition,
            data,
            study=study,
            storage=storage,
            seeds=seeds,
            schedule=schedule,
            workers=workers,
            device=device,
            latency=latency,
            progress=progress,
            runs_dir=runs_dir.resolve() if save_weights else None,
        )
    finally:
        if progress:
            progress.live.stop()
    extra = {"missing": run.missing, "queued": run.queued, "dashboard": hint}
    _search_summary(study, storage, run.reports, run.wall_seconds, as_json, extra)
    if not as_json:
        out.print(hint, soft_wrap=True)
    if run.missing:
        sys.stderr.write(
            f"{len(run.missing)} grid points failed ({', '.join(run.missing)}); run the same "
            "command again to train them\n"
        )
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------- calibrate

# Default calibration: all 8 configurations of the `search` default band, trained with the
# search's trial (3 epochs of batch 32, about 17 s on 2 idle cores on 2,000 images, twice that on
# the 4,000 of today's default) and 6 times longer: 1,026 s in all with 2,000 images, as
# measured by scripts/report_runs.sh on 2 idle cores.
CALIBRATE_REFERENCE = (
    "reduced-training proxies reach Spearman 0.61 on NAS-Bench-201 (Abdelfattah et al., ICLR 2021)"
)


@app.command("calibrate")
def calibrate_command(
    flops: SearchFlopsOpt = None,
    params: Annotated[float | None, typer.Option(help="Parameter budget.")] = None,
    tolerance: Annotated[float, typer.Option(help="Relative band around each budget.")] = 0.1,
    template: DataTemplateOpt = None,
    depths: SearchDepthsOpt = None,
    widths: SearchWidthsOpt = None,
    cardinalities: CardinalitiesOpt = ALL_CARDINALITIES,
    k: Annotated[int, typer.Option("--k", help="Configurations to train (at least 3).")] = 8,
    factor: Annotated[
        int, typer.Option(help="R: the long schedule has R times the short one's epochs.")
    ] = 6,
    epochs: Annotated[int, typer.Option(help="Epochs of the short schedule.")] = 3,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 0.05,
    train_images: Annotated[int, typer.Option(help="Training images of both schedules.")] = 4000,
    val_fraction: Annotated[float, typer.Option(help=VAL_HELP)] = 0.02,
    dataset: Annotated[str, typer.Option(help=f"One of {', '.join(DATASETS)}.")] = "synthetic",
    data_dir: DataDirOpt = None,
    classes: SubsetClassesOpt = None,
    images_per_class: ImagesPerClassOpt = None,
    resolution: DataResolutionOpt = None,
    augment: AugmentOpt = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the config draw, the data, training and bootstrap.")
    ] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
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
    from nas.calibrate import calibrate, long_schedule, pick
    from nas.train import TrainConfig

    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device)
    long_schedule(cfg, factor)
    if flops is None and params is None:
        flops = SEARCH_FLOPS
    bud = Budget(flops, params, tolerance)
    # The template is the data's default unless given; known datasets are 32 px unless resized.
    known = dataset in KNOWN_CLASSES
    tpl = template.value if template else default_template(resolution or 32) if known else None
    grid = (
        tpl,
        _int_lists(depths or SEARCH_DEPTHS, "--depths"),
        _flat_ints(widths or SEARCH_WIDTHS, "--widths") or (),
        _ints(cardinalities, "--cardinalities"),
    )
    options = {
        "budget": bud.to_dict(),
        "template": tpl,
        "depths": [list(d) for d in grid[1] or []],
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
    done: list[dict[str, Any]] = []
    if out_file.exists():
        try:
            previous = json.loads(out_file.read_text())
            had = previous["options"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{out_file} is not a calibration file; use another --out") from None
        if had != options:
            diff = ", ".join(o for o in options if had.get(o) != options[o])
            raise ValueError(
                f"{out_file} was made with other options (they differ in {diff}); "
                "use the same options to resume it, or another --out"
            )
        done = previous.get("configs", [])
    if known:  # refuse a band with fewer than k configs before the data
        n_classes = classes or KNOWN_CLASSES[dataset]
        pick(generate(bud, *grid, None, n_classes, resolution or 32), k, seed)
    from nas.data import load_dataset

    data = load_dataset(
        dataset,
        data_dir=data_dir,
        train_images=train_images,
        val_fraction=val_fraction,
        seed=seed,
        classes=classes,
        images_per_class=images_per_class,
        resolution=resolution,
        augment=augment and augment.value,
    )
    grid = (grid[0] or data.template, *grid[1:])
    chosen = pick(generate(bud, *grid, None, data.classes, data.resolution), k, seed)
    rows: dict[str, dict[str, Any]] = {}

    def save(row: dict[str, Any]) -> None:
        from nas.calibrate import spec_key

        rows[spec_key(row["spec"])] = dict(row)
        merged = {spec_key(r["spec"]): r for r in done} | rows
        _write_json(out_file, {"options": options, "configs": list(merged.values())})

    if not as_json:
        left = k - sum(r.get("long_val_accuracy") is not None for r in done)
        out.print(
            f"calibrating {k} configurations within {bud.describe()}: {epochs} and "
            f"{epochs * factor} epochs on {len(data.train_y)} images ({left} to train, "
            f"results in {out_file})",
            highlight=False,
        )
    cal = calibrate(chosen, data, cfg, factor, seed=seed, on_progress=save, done=done)
    result = {"options": options, **cal.to_dict(), "reference": CALIBRATE_REFERENCE}
    _write_json(out_file, result)
    if as_json:
        _print_json(result)
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
    out.print(f"For scale: {CALIBRATE_REFERENCE}. Results: {out_file}", soft_wrap=True)


def _fmt_estimate(e: Any) -> str:
    return f"{e.value:+.2f} [{e.low:+.2f}, {e.high:+.2f}]"


# -------------------------------------------------------------------------------------- train


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


def _write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (a reader never sees half a file)."""
    from nas.train import write_json

    write_json(path, obj)


@app.command("train")
def train_command(
    ctx: typer.Context,
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
    spec_file: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            help="A JSON spec: an export's spec.json, `show --json` output or a bare spec; "
            "spec options override it.",
            show_default=False,
        ),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(
            help="paper: Sec. 5.3's CIFAR recipe (300 epochs, batch 128, lr 0.1 / 10 at "
            "epochs 150 and 225, weight decay 5e-4, no warm-up); options given override it.",
            show_default=False,
        ),
    ] = None,
    classes: SubsetClassesOpt = None,
    dataset: Annotated[str, typer.Option(help=f"One of {', '.join(DATASETS)}.")] = "synthetic",
    data_dir: DataDirOpt = None,
    images_per_class: ImagesPerClassOpt = None,
    train_images: Annotated[
        int | None, typer.Option(help="Train on this many images (default: all).")
    ] = None,
    val_fraction: Annotated[float, typer.Option(help=VAL_HELP)] = 0.1,
    resolution: DataResolutionOpt = None,
    augment: AugmentOpt = None,
    epochs: Annotated[int, typer.Option(help="Epochs to train.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Images per SGD step.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 0.1,
    schedule: Annotated[str, typer.Option(help="cosine, onecycle or step.")] = "cosine",
    warmup_epochs: Annotated[
        float, typer.Option(help="Linear warm-up (cosine and step schedules).")
    ] = 1.0,
    weight_decay: Annotated[
        float | None,
        typer.Option(help="Weight decay (default: the paper's for the dataset's kind)."),
    ] = None,
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
    from nas.train import RECIPES, TrainConfig, recipe_config

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
    guess = default_template(resolution or 32) if from_data else template
    if not from_data or dataset in KNOWN_CLASSES:
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
    TrainConfig(**given)  # refuses a bad value before the data loads
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")

    from nas.data import load_dataset
    from nas.train import train

    data = load_dataset(
        dataset,
        data_dir=data_dir,
        train_images=train_images,
        val_fraction=val_fraction,
        seed=seed,
        eval_test=eval_test,
        classes=classes,
        images_per_class=images_per_class,
        resolution=resolution,
        augment=augment and augment.value,
    )
    if from_data:
        spec = _train_spec_from_options(
            None, data.template, depths, width, cardinality, bottleneck_width
        )
    cfg = recipe_config(recipe, data.kind, given)
    # The data decides what the network must predict and at which size.
    if base is not None and (spec.classes, spec.resolution) != (data.classes, data.resolution):
        Console(stderr=True, highlight=False).print(
            f"note: {spec_file} has {spec.classes} classes at {spec.resolution}x"
            f"{spec.resolution}; training with the dataset's {data.classes} at "
            f"{data.resolution}x{data.resolution}",
            soft_wrap=True,
        )
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
        " / ".join(format_count(record["complexity"][k]) for k in ("params", "flops")),
    )
    table.add_row("wall time", f"{record['wall_seconds']:.1f} s")
    table.add_row("result", str(Path(record["run_dir"]) / "result.json"))
    out.print(table)
    if status == "diverged":
        out.print(
            f"[red]Training diverged:[/red] the loss became NaN or inf in epoch {epochs + 1}; "
            f"try a lower --lr than {record['config']['lr']:g}."
        )


@app.command("export")
def export_command(
    study: Annotated[str, typer.Option(help="Name of the study.", show_default=False)],
    trial: Annotated[
        int | None, typer.Option(help="Export this trial (a complete one).", show_default=False)
    ] = None,
    best: Annotated[
        bool, typer.Option("--best", help="Export the complete trial of lowest error.")
    ] = False,
    storage: StorageOpt = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder to write (default runs/export-STUDY-trial-N).", show_default=False
        ),
    ] = None,
    onnx: Annotated[
        bool, typer.Option(help="Also write model.onnx, checked against PyTorch with onnxruntime.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Export a trial: spec.json (spec, complexity, accuracy), weights.pt and model.onnx."""
    if best == (trial is not None):
        raise ValueError("give exactly one of --trial N and --best")
    from nas.export import OnnxMismatch, export_trial

    try:
        done = export_trial(study, storage, trial, out_dir, onnx=onnx)
    except OnnxMismatch as e:
        sys.stderr.write(f"error: {e}\n")
        raise typer.Exit(1) from None
    r = done.record
    summary = {
        "folder": str(done.folder),
        "files": [str(f) for f in done.files],
        "study": r["study"],
        "trial": r["trial"],
        "onnx_max_abs_diff": done.max_abs_diff,
        "onnx_tolerance": done.tolerance,
    }
    if as_json:
        _print_json(summary)
        return
    spec = resnext.Spec.from_dict(r["spec"])
    acc = r["final_val_accuracy"]
    out.print(
        f"trial {r['trial']} of study {r['study']!r}: {spec.describe()}"
        + ("" if acc is None else f", val accuracy {acc:.2%} (final weights)")
    )
    for f in done.files:
        out.print(f"  {f}", soft_wrap=True)
    if done.max_abs_diff is not None:
        out.print(
            f"ONNX vs PyTorch: max abs difference {done.max_abs_diff:.3g} "
            f"(tolerance {done.tolerance:.3g})"
        )


@app.command()
def dashboard(
    study: Annotated[str, typer.Option(help="Name of the Optuna study.", show_default=False)],
    storage: StorageOpt = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="HTML file to write (default: dashboard-STUDY.html)."),
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="Serve the page live, refreshing as trials finish.")
    ] = False,
    host: Annotated[str, typer.Option(help="Address to serve on with --serve.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on with --serve (0: any free).")] = 8050,
    screenshot: Annotated[
        Path | None, typer.Option(help="Also save a PNG of the page (needs headless Chromium).")
    ] = None,
) -> None:
    """Write the study's interactive Pareto dashboard as one self-contained HTML page."""
    from nas import dashboard as dash

    if serve:
        dash.serve(study, storage, host, port, ready=lambda url: out.print(f"serving {url}"))
        return
    path = out_file or Path(f"dashboard-{re.sub(r'[^A-Za-z0-9_.-]', '_', study)}.html")
    out.print(str(dash.write_dashboard(study, storage, path)), soft_wrap=True)
    if screenshot is not None:
        out.print(str(dash.screenshot(path, screenshot)), soft_wrap=True)


def main(args: list[str] | None = None) -> None:
    """Entry point: run the app, turning user errors into one line on stderr and exit code 2.

    Usage errors too (an unknown option, a bad choice, a missing value) are one line naming the
    command's ``--help``, instead of click's multi-line box.
    """
    try:  # typer 0.2x carries its own copy of click
        from typer._click.exceptions import ClickException, UsageError
    except ImportError:
        from click.exceptions import ClickException, UsageError

    try:
        rc = app(args=args, prog_name="resnext-nas", standalone_mode=False)
    except UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `resnext-nas`: the help
            out.print(e.ctx.get_help() if e.ctx else "")
            raise SystemExit(e.exit_code) from None
        where = f"; see `{e.ctx.command_path} --help`" if e.ctx else ""
        sys.stderr.write(f"error: {e.format_message().rstrip('.')}{where}\n")
        raise SystemExit(2) from None
    except USER_ERRORS as e:
        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(2) from None
    except (KeyboardInterrupt, typer.Abort):
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    except ClickException as e:  # a bad file argument and the like
        sys.stderr.write(f"error: {e.format_message()}\n")
        raise SystemExit(e.exit_code) from None
    if isinstance(rc, int) and rc:
        if rc == 130:
            sys.stderr.write("interrupted\n")
        raise SystemExit(rc)


if __name__ == "__main__":
    main()
