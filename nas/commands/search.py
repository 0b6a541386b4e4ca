"""The search commands: ``search`` runs (or resumes) a study, ``trials`` and ``studies`` read."""

from __future__ import annotations

import dataclasses
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from nas.commands.options import (
    ALL_CARDINALITIES,
    SEARCH_VAL_HELP,
    AugmentOpt,
    BottleneckWidthsOpt,
    CardinalitiesOpt,
    ChannelsLastOpt,
    CreateOpt,
    DataDirOpt,
    DatasetName,
    DatasetOpt,
    DataTemplateOpt,
    DeviceOpt,
    ImagesPerClassOpt,
    JsonOpt,
    LatencyOpt,
    ParamsOpt,
    Precision,
    PrecisionOpt,
    Prefer,
    PreferOpt,
    QuietOpt,
    RunOptions,
    RunsDirOpt,
    SaveWeightsOpt,
    SearchDepthsOpt,
    SearchFlopsOpt,
    SearchWidthsOpt,
    StorageOpt,
    SubsetClassesOpt,
    ThreadsOpt,
    ToleranceOpt,
    TrialBatchSizeOpt,
    TrialsPerGpuOpt,
    WorkersOpt,
    by_template,
    command,
    flat_ints,
    int_lists,
    ints,
    out,
    parse_workers,
    plan_run,
    print_json,
    report_data,
    trial_settings,
)
from nas.data import MIN_VAL_IMAGES, data_template, known_shape
from nas.search.space import SEARCH_DEFAULTS
from nas.training.config import IMAGENET_TRIAL, TRIALS
from resnext.budget import Budget
from resnext.complexity import format_count

StudyOpt = Annotated[str, typer.Option(help="Study name; re-running the same command resumes it.")]
TrialsStudyOpt = Annotated[str, typer.Option(help="Name of the study to list.")]


class LiveProgress:
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

    def start(self) -> None:
        """Start drawing the lines on stderr."""
        self.live.start()

    def stop(self) -> None:
        """Draw the last lines, ending them with a newline also when stderr is no terminal.

        Rich ends the live block with a newline only on a terminal; without one, a summary on
        stdout sharing the file (``> log 2>&1``) would continue the last progress line.
        """
        self.live.stop()
        console = self.live.console
        if not console.is_terminal:
            console.line()


def search_space(
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
    from nas.search.space import SearchSpace

    default = SEARCH_DEFAULTS[template]
    if flops is None and params is None:
        flops = default.flops
    return SearchSpace(
        Budget(flops, params, tolerance),
        template,
        tuple(int_lists(depths, "--depths") or default.depths),
        flat_ints(widths, "--widths") or default.widths,
        ints(cardinalities, "--cardinalities"),
        ints(bottleneck_widths, "--bottleneck-widths") if bottleneck_widths else None,
        classes,
        resolution,
        tune_lr,
        tune_wd,
    )


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


def search(
    trials: Annotated[int, typer.Option(help="Trained trials of the whole study.")] = 50,
    study: StudyOpt = "resnext-search",
    storage: StorageOpt = None,
    create: CreateOpt = False,
    workers: WorkersOpt = "auto",
    threads: ThreadsOpt = None,
    precision: PrecisionOpt = Precision.auto,
    channels_last: ChannelsLastOpt = None,
    trials_per_gpu: TrialsPerGpuOpt = 1,
    flops: SearchFlopsOpt = None,
    params: ParamsOpt = None,
    tolerance: ToleranceOpt = 0.1,
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
    epochs: Annotated[
        int | None, typer.Option(help=f"Epochs per trial{by_template('epochs')}")
    ] = None,
    dataset: DatasetOpt = DatasetName.synthetic,
    data_dir: DataDirOpt = None,
    classes: SubsetClassesOpt = None,
    images_per_class: ImagesPerClassOpt = None,
    train_images: Annotated[
        int | None,
        typer.Option(
            help=f"Training images per trial{by_template('train_images')}",
            show_default=False,
        ),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(help=f"{SEARCH_VAL_HELP}{by_template('val_fraction')}", show_default=False),
    ] = None,
    resolution: Annotated[
        int | None,
        typer.Option(
            help="Resize images to this side (default: the images' own, else 64; "
            f"{IMAGENET_TRIAL.resolution} for the ImageNet template).",
            show_default=False,
        ),
    ] = None,
    augment: AugmentOpt = None,
    batch_size: TrialBatchSizeOpt = None,
    lr: Annotated[
        float | None,
        typer.Option(
            help=f"Peak learning rate (unless --tune-lr){by_template('lr')}", show_default=False
        ),
    ] = None,
    device: DeviceOpt = "auto",
    latency: LatencyOpt = True,
    runs_dir: RunsDirOpt = Path("runs"),
    save_weights: SaveWeightsOpt = True,
    confirm: Annotated[
        int,
        typer.Option(
            help="Confirm the top K configurations by mean proxy accuracy with a longer "
            "schedule and several seeds after the trials (0: no confirmation phase)."
        ),
    ] = 3,
    confirm_epochs: Annotated[
        int | None,
        typer.Option(
            help="Epochs of a confirmation trial (default 3x --epochs).", show_default=False
        ),
    ] = None,
    confirm_seeds: Annotated[
        int, typer.Option(help="Seeds every confirmed configuration is trained with.")
    ] = 3,
    confirm_max_seeds: Annotated[
        int,
        typer.Option(
            help="Racing gives the leader and its closest rival more seeds while the verdict "
            "is open and their gap can be resolved, up to this many."
        ),
    ] = 5,
    prefer: PreferOpt = Prefer.flops,
    heartbeat: Annotated[
        int, typer.Option(help="Seconds between heartbeats; a trial silent 3 beats is retried.")
    ] = 10,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Search the design space under a budget with Optuna; re-running the command resumes it.

    Default space: CIFAR template, depths 1-1-1 and 2-2-2, width 32, 8e6 FLOPs ±10%, every C
    and d: 8 configurations (two cells, 2-2-2 with C=4 or 8, are empty and rejected if
    proposed), sized for 3-epoch trials of batch 32 on 4,000 32x32 images (1,000 held out),
    about a minute or less each on 2 CPU cores, that reached 35-38% on real CIFAR-10.

    Larger images (an ImageNet subset: --dataset folder of 224-px photos, or imagenet) take the
    ImageNet template, its augmentation and its CPU defaults: 64-px trials of 8 epochs on every
    training image, depths 1-1-1-1, width 64, 1.8e7 FLOPs ±10% (docs/imagenet.md).
    """
    from nas.search import study as nstudy
    from nas.search.confirm import ConfirmSettings
    from nas.search.storage import check_heartbeat
    from nas.search.workers import cap_workers, on_cpu, run_search
    from nas.training.device import check_device

    objs = tuple(o for o in objectives.replace(" ", "").split(",") if o)

    def settings_for(n_classes: int, res: int, tpl: str) -> Any:
        space = search_space(
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
            confirming,
        )

    n_workers = parse_workers(workers)
    if min(trials, trials_per_gpu) < 1:
        raise ValueError("--trials and --trials-per-gpu take positive integers")
    nstudy.check_trials(trials)
    check_heartbeat(heartbeat)
    if n_workers is not None:
        n_workers = cap_workers(n_workers, trials_per_gpu, on_cpu(device))
    confirming = ConfirmSettings(
        k=confirm,
        epochs=confirm_epochs,
        seeds=confirm_seeds,
        max_seeds=confirm_max_seeds,
        prefer=prefer.value,
    )
    if patience is None and len(objs) > 1:
        patience = 2
    # The template picks the trial's defaults; a folder's is judged from its first image.
    tpl = template.value if template else data_template(dataset.value, data_dir, resolution)
    # The training settings are checked here, before any data loads.
    trial = trial_settings(
        TRIALS[tpl],
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        train_images=train_images,
        val_fraction=val_fraction,
        dataset=dataset.value,
        data_dir=data_dir,
        classes=classes,
        images_per_class=images_per_class,
        resolution=resolution,
        augment=augment,
        device=device,
        seed=seed,
        patience=patience,
    )
    resolution = trial.data.resolution
    # A device that is not here is refused before the storage is opened: the study must not
    # hold a failed trial for every attempt to run on it.
    check_device(device)
    # Refuse bad budgets, presets, storage URLs and objectives before the seconds a dataset
    # takes, where its classes and resolution are known beforehand.
    known = known_shape(dataset.value, classes, resolution)
    if known:
        early = settings_for(*known, known.template)
        nstudy.enqueue_specs(early.space, early.enqueue)
        if nstudy.check_study(early, storage, create=create) >= trials and not confirm_left(
            study, storage, confirming
        ):
            search_summary(study, storage, [], 0.0, as_json)  # done: no data, no training
            return
    data = trial.load(min_val=MIN_VAL_IMAGES)
    report_data(data, quiet or as_json)
    # The budget counts FLOPs at the dataset's resolution and the fc of its classes.
    settings = settings_for(data.classes, data.resolution, data.template)
    nstudy.enqueue_specs(settings.space, settings.enqueue)
    if create:  # a dataset of unknown classes: the study is checked, and created, only here
        nstudy.check_study(settings, storage, create=True)
    if not quiet and not as_json:
        out.print(f"study {study!r}: {settings.space.describe()}", highlight=False)
    choice, train = plan_run(
        settings.space.trainable(),
        trial.train,
        data.kind,
        RunOptions(n_workers, threads, precision, channels_last),
        trials_per_gpu=trials_per_gpu,
        quiet=quiet or as_json,
    )
    progress = None if quiet or as_json else LiveProgress(choice.workers)
    t0 = time.perf_counter()
    if progress:
        progress.start()
    try:
        reports = run_search(
            settings,
            data,
            train,
            trials,
            storage=storage,
            workers=choice.workers,
            heartbeat=heartbeat,
            trials_per_gpu=trials_per_gpu,
            progress=progress,
        )
    finally:
        if progress:
            progress.stop()
    wall = time.perf_counter() - t0
    search_summary(study, storage, reports, wall, as_json, {"run": choice.to_dict()})


def confirm_left(study: str, storage: str | None, settings: Any) -> bool:
    """Whether the existing study's confirmation phase has work left."""
    from nas.search.confirm import remaining
    from nas.search.storage import load

    return remaining(load(study, storage).get_trials(deepcopy=False), settings)


def search_summary(
    study: str,
    storage: str | None,
    reports: list[Any],
    wall: float,
    as_json: bool,
    extra: dict[str, Any] | None = None,
    answer_phase: str = "confirm",
) -> None:
    """The study's trials by state and its answer, after a search (``extra`` joins the JSON):
    the confirmed recommendation, or the search phase's for a grid study (``answer_phase``). The
    best single trial is a maximum over seeds and never the answer."""
    from nas.search.answer import answer_line
    from nas.search.attrs import phase
    from nas.search.confirm import describe, store_recommendation
    from nas.search.records import best_config, study_rows, trial_rows
    from nas.search.storage import load

    loaded = load(study, storage)
    summary = next(r for r in study_rows(storage) if r["name"] == study)
    summary["wall_seconds"] = wall
    summary["workers"] = [dataclasses.asdict(r) for r in reports]
    summary["best_config"] = best_config(trial_rows(loaded))
    by_phase: dict[str, int] = {}
    for t in loaded.get_trials(deepcopy=False):
        by_phase[phase(t)] = by_phase.get(phase(t), 0) + 1
    summary["phases"] = by_phase
    summary["recommendation"] = store_recommendation(loaded, ph=answer_phase)
    summary.update(extra or {})
    if as_json:
        print_json(summary)
        return
    states = ", ".join(f"{k} {v}" for k, v in sorted(summary["trials"].items()))
    phases = ", ".join(f"{k} {v}" for k, v in sorted(by_phase.items()))
    out.print(
        f"study {study!r}: {states} ({phases} by phase); "
        f"see `{command('trials', '--study', study)}`"
    )
    out.print(answer_line(summary["answer"]), highlight=False, soft_wrap=True)
    for line in describe(summary["recommendation"]) if summary["recommendation"] else ():
        out.print(line, highlight=False)


def _config_mean(r: dict[str, Any]) -> str:
    """A repeated config's mean accuracy, 95% interval and seeds: ``41.0% [37.0%, 45.0%] (3)``."""
    if r["spec_trials"] < 2:
        return ""
    lo, hi = r["spec_ci95"]
    return f"{r['spec_mean_accuracy']:.1%} [{lo:.1%}, {hi:.1%}] ({r['spec_trials']})"


def _fmt_opt(v: Any, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def trials(
    study: TrialsStudyOpt = "resnext-search",
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
    prefer: Annotated[
        Prefer | None,
        typer.Option(
            help="The secondary criterion of an 'equivalent' verdict (default: the study's, "
            "from search --prefer).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List a study's trials (phase, spec, complexity, accuracy, throughput) and its answer.

    ``--json`` prints ``{"trials": [...], "recommendation": {...} or null, "answer": {...}}``
    (the answer is null before any complete trial).
    """
    from nas.fileio import ensure_parent, write_csv
    from nas.search.answer import answer_line, answer_of
    from nas.search.confirm import describe
    from nas.search.records import csv_table, trial_rows
    from nas.search.storage import load

    if csv:
        ensure_parent(csv, "--csv")
    loaded = load(study, storage, read_only=True)
    rows = trial_rows(loaded, front)
    answer = answer_of(loaded, prefer.value if prefer else None)
    rec = answer and answer["recommendation"]
    if csv:
        write_csv(csv, *csv_table(rows), "--csv")
    if as_json:
        print_json({"trials": rows, "recommendation": rec, "answer": answer})
        return
    table = Table(
        title=f"study {study!r}: {len(rows)} trials",
        caption="◆ on the (error, " + (front or "FLOPs") + ") Pareto front of complete trials; "
        "★ a baseline from --enqueue. FLOPs are multiply-adds. mean (n): the mean accuracy of "
        "the n complete trials of the same config and phase (seeds), [its 95% interval, seed "
        "noise pooled over the phase]. "
        "phase: search (proxy trial) or confirm (the longer confirmation schedule).",
    )
    # ImageNet-template trials at a small side (64 px on a CPU) also show FLOPs at 224 px.
    full = [_imagenet_flops(r["spec_dict"]) for r in rows]
    at = sorted({f"FLOPs @{f[0]}" for f in full if f is not None})
    for col in (
        "#",
        "state",
        "phase",
        "spec",
        "params",
        "FLOPs",
        *at,
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
            justify="left" if col in ("state", "phase", "spec", "", "note") else "right",
            no_wrap=col != "note",
        )
    for r, f in zip(rows, full, strict=True):
        table.add_row(
            str(r["number"]),
            r["state"],
            r["phase"],
            r["spec"] or "",
            format_count(r["params"]) if r["params"] is not None else "",
            format_count(r["flops"]) if r["flops"] is not None else "",
            *(["" if f is None else format_count(f[1])] if at else []),
            "" if r["latency"] is None else f"{r['latency'] * 1e3:.2f} ms",
            _fmt_opt(r["val_accuracy"], ".1%"),
            _config_mean(r),
            str(r["epochs"] or ""),
            _fmt_opt(r["train_images_per_second"], ".0f"),
            _fmt_opt(r["inference_images_per_second"], ".0f"),
            ("◆" if r["pareto"] else "") + ("★" if r["baseline"] else ""),
            r["note"] or "",
            style="bold" if r["pareto"] else None,
        )
    out.print(table)
    out.print(answer_line(answer), highlight=False, soft_wrap=True)
    for line in describe(rec) if rec else ():
        out.print(line, highlight=False)


def _imagenet_flops(spec: dict[str, Any] | None) -> tuple[int, float] | None:
    """:func:`resnext.complexity.imagenet_side_flops` of a trial's stored spec, if it has one."""
    from resnext.complexity import imagenet_side_flops
    from resnext.spec import Spec

    return None if spec is None else imagenet_side_flops(Spec.from_dict(spec))


def studies(storage: StorageOpt = None, as_json: JsonOpt = False) -> None:
    """List the studies of a storage: objectives, trials by state, and each one's answer."""
    from nas.search.answer import accuracy_text, basis_text
    from nas.search.records import study_rows

    rows = study_rows(storage)
    if as_json:
        print_json(rows)
        return
    table = Table(
        title=f"{len(rows)} studies",
        caption="answer: the recommended configuration (mean over its seeds, 95% interval), "
        "or, before one, the best single proxy trial; `trials --study NAME` has the details.",
    )
    for col in ("study", "objectives", "trials", "answer", "val acc", "as"):
        table.add_column(col, overflow="fold")
    for r in rows:
        a = r["answer"]
        table.add_row(
            r["name"],
            ",".join(r["objectives"] or []),
            ", ".join(f"{k} {v}" for k, v in sorted(r["trials"].items())),
            a["notation"] if a else "",
            accuracy_text(a) if a else "",
            basis_text(a) if a else "no complete trial",
        )
    out.print(table)
