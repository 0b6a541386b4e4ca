"""The search commands: ``search`` runs (or resumes) a study, ``trials`` and ``studies`` read."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.cells import cell_len
from rich.table import Table

from nas.commands.options import (
    SEARCH_VAL_HELP,
    AugmentOpt,
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
    SearchBottleneckWidthsOpt,
    SearchCardinalitiesOpt,
    SearchDepthsOpt,
    SearchFlopsOpt,
    SearchToleranceOpt,
    SearchWidthsOpt,
    StorageOpt,
    SubsetClassesOpt,
    ThreadsOpt,
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
from nas.commands.progress import SearchProgress, load_display
from nas.data import MIN_VAL_IMAGES, data_template, known_shape
from nas.data.folder import MIXED_RESOLUTION
from nas.search.space import SEARCH_DEFAULTS
from nas.training.config import IMAGENET_TRIAL, TRIALS
from resnext.complexity import format_count

StudyOpt = Annotated[str, typer.Option(help="Study name; re-running the same command resumes it.")]
TrialsStudyOpt = Annotated[str, typer.Option(help="Name of the study to list.")]


def search_space(
    flops: float | None,
    params: float | None,
    tolerance: float | None,
    template: str,
    depths: list[str] | None,
    widths: list[str] | None,
    cardinalities: str | None,
    bottleneck_widths: str | None,
    classes: int,
    resolution: int,
    tune_lr: bool,
    tune_wd: bool,
) -> Any:
    from nas.search.space import SearchSpace

    default = SEARCH_DEFAULTS[template]
    cs, ds = default.choices(
        flops is not None or params is not None,
        ints(cardinalities, "--cardinalities") if cardinalities else None,
        ints(bottleneck_widths, "--bottleneck-widths") if bottleneck_widths else None,
    )
    return SearchSpace(
        default.budget(flops, params, tolerance),
        template,
        tuple(int_lists(depths, "--depths") or default.depths),
        flat_ints(widths, "--widths") or default.widths,
        cs,
        ds,
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
    trials: Annotated[int, typer.Option(help="Proxy trials of the whole study.")] = 50,
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
    tolerance: SearchToleranceOpt = None,
    template: DataTemplateOpt = None,
    depths: SearchDepthsOpt = None,
    widths: SearchWidthsOpt = None,
    cardinalities: SearchCardinalitiesOpt = None,
    bottleneck_widths: SearchBottleneckWidthsOpt = None,
    tune_lr: Annotated[
        bool, typer.Option(help="Also search the learning rate (log-uniform).", show_default=False)
    ] = False,
    tune_wd: Annotated[
        bool, typer.Option(help="Also search the weight decay (log-uniform).", show_default=False)
    ] = False,
    objectives: Annotated[
        str,
        typer.Option(help="error, or error,X for X in flops, params, latency, activations."),
    ] = "error",
    sampler: Annotated[Sampler, typer.Option(help="Optuna sampler, seeded by --seed.")] = (
        Sampler.tpe
    ),
    pruner: Annotated[
        Pruner | None,
        typer.Option(
            help="Pruner.  [default: hyperband; none with several objectives]",
            show_default=False,
        ),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(
            help="Stop a trial after N epochs without progress.  [default: off; 2 with "
            "several objectives]",
            show_default=False,
        ),
    ] = None,
    enqueue: Annotated[
        list[str] | None,
        typer.Option(help="Train a preset's (C, d) first, or 'family' (repeatable)."),
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
            help="Resize images to this side.  [default: the images' own, else "
            f"{MIXED_RESOLUTION}; ImageNet template: {IMAGENET_TRIAL.resolution}]",
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
        typer.Option(help="Top configurations to confirm with longer training; 0: none."),
    ] = 3,
    confirm_epochs: Annotated[
        int | None,
        typer.Option(
            help="Epochs of a confirmation trial.  [default: 3x --epochs]", show_default=False
        ),
    ] = None,
    confirm_seeds: Annotated[
        int, typer.Option(help="Seeds each confirmed configuration starts with.")
    ] = 3,
    confirm_max_seeds: Annotated[
        int,
        typer.Option(help="Seeds racing may give the leader and its closest rival."),
    ] = 5,
    prefer: PreferOpt = Prefer.flops,
    heartbeat: Annotated[
        int, typer.Option(help="Seconds between heartbeats; 3 missed: the trial is retried.")
    ] = 10,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Search the design space under a budget with Optuna; re-running the command resumes it.

    Proxy trials rank configurations, the top ones are confirmed with longer training on
    several seeds, and the confirmed recommendation is the answer. The default space and every
    option in full: docs/reference.md.
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
    loading = load_display(quiet, as_json)
    tpl = (
        template.value if template else data_template(dataset.value, data_dir, resolution, loading)
    )
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
    data = trial.load(min_val=MIN_VAL_IMAGES, progress=loading)
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
    progress = None
    if not (quiet or as_json):
        progress = SearchProgress(study, storage, trials, train.epochs, confirming)
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
    from nas.search.confirm import confirmation_off, describe, store_recommendation
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
    out.print(answer_line(summary["answer"]), highlight=False)
    off = confirmation_off(loaded)
    for line in (
        describe(summary["recommendation"], not off) if summary["recommendation"] or off else ()
    ):
        out.print(line, highlight=False)


def _config_mean(r: dict[str, Any]) -> str:
    """A repeated config's mean accuracy, 95% interval (in %) and seeds: ``41.0% [37.0, 45.0] 3``;
    ``[no CI]`` where the phase's seed noise is not measured."""
    if r["spec_trials"] < 2:
        return ""
    if r["spec_ci95"] is None:
        return f"{r['spec_mean_accuracy']:.1%} [no CI] {r['spec_trials']}"
    lo, hi = r["spec_ci95"]
    return f"{r['spec_mean_accuracy']:.1%} [{100 * lo:.1f}, {100 * hi:.1f}] {r['spec_trials']}"


def _fmt_opt(v: Any, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def _trial_note(r: dict[str, Any], wide: bool) -> str:
    """The note of a row; without the state column, a trial that is not complete says its
    state first (``pruned``, ``failed: ...``)."""
    note = r["note"] or ""
    if wide or r["state"] == "COMPLETE":
        return note
    state = {"FAIL": "failed"}.get(r["state"], r["state"].lower())
    return f"{state}: {note}" if note else state


# The columns of `trials`: name, the row's cell, and whether only --wide shows it.
_TRIAL_COLUMNS: tuple[tuple[str, Callable[[dict[str, Any]], str], bool], ...] = (
    ("#", lambda r: str(r["number"]), False),
    ("state", lambda r: r["state"], True),
    ("phase", lambda r: r["phase"], False),
    ("config", lambda r: " ".join(filter(None, (r["spec"], _marks(r)))), False),
    ("params", lambda r: "" if r["params"] is None else format_count(r["params"]), True),
    ("FLOPs", lambda r: "" if r["flops"] is None else format_count(r["flops"]), False),
    ("latency", lambda r: "" if r["latency"] is None else f"{r['latency'] * 1e3:.2f} ms", True),
    ("accuracy", lambda r: _fmt_opt(r["val_accuracy"], ".1%"), False),
    ("mean [95%] n", _config_mean, False),
    ("epochs", lambda r: str(r["epochs"] or ""), True),
    ("train img/s", lambda r: _fmt_opt(r["train_images_per_second"], ".0f"), True),
    ("infer img/s", lambda r: _fmt_opt(r["inference_images_per_second"], ".0f"), True),
)
_LEFT = ("state", "phase", "config", "note")


def _marks(r: dict[str, Any]) -> str:
    return ("◆" if r["pareto"] else "") + ("★" if r["baseline"] else "")


def trials_table(rows: list[dict[str, Any]], study: str, front: str, wide: bool) -> Table:
    """The ``trials`` table: number, phase, config (with its marks), FLOPs, accuracy, the
    config's mean with its interval and seeds, and note; ``wide`` adds state, params, latency,
    FLOPs at 224 px, epochs and throughput. Only the note wraps; the rest fits 100 columns."""
    table = Table(
        title=f"study {study!r}: {len(rows)} trials",
        caption=f"◆ on the (error, {front}) Pareto front of complete trials; ★ a baseline from "
        "--enqueue. FLOPs are multiply-adds. accuracy: the trial's best validation accuracy. "
        "mean [95%] n: the mean accuracy of the n complete trials (seeds) of the same config and "
        "phase, with its 95% interval in % (seed noise pooled over the phase). phase: search "
        "(proxy trial) or confirm (the longer confirmation schedule).",
    )
    columns = [c for c in _TRIAL_COLUMNS if wide or not c[2]]
    cells = [[cell(r) for _, cell, _ in columns] for r in rows]
    if wide:  # ImageNet-template trials at a small side (64 px) also show FLOPs at 224 px.
        full = [_imagenet_flops(r["spec_dict"]) for r in rows]
        at = sorted({f"FLOPs @{f[0]}" for f in full if f is not None})
        if at:
            i = 1 + next(i for i, c in enumerate(columns) if c[0] == "FLOPs")
            columns.insert(i, (at[0], lambda r: "", True))
            for row, f in zip(cells, full, strict=True):
                row.insert(i, "" if f is None else format_count(f[1]))
    for i, (name, _, _) in enumerate(columns):
        # A column that does not wrap is as wide as its widest cell: never cut to "…".
        widest = max([cell_len(name), *(cell_len(row[i]) for row in cells)])
        table.add_column(
            name, justify="left" if name in _LEFT else "right", no_wrap=True, min_width=widest
        )
    table.add_column("note", justify="left", min_width=8, overflow="fold")
    for r, row in zip(rows, cells, strict=True):
        table.add_row(*row, _trial_note(r, wide), style="bold" if r["pareto"] else None)
    return table


def trials(
    study: TrialsStudyOpt = "resnext-search",
    storage: StorageOpt = None,
    front: Annotated[
        str | None,
        typer.Option(
            help="Mark the (error, X) Pareto front: flops, params, latency or activations.  "
            "[default: the study's second objective, else flops]",
            show_default=False,
        ),
    ] = None,
    csv: Annotated[
        str | None, typer.Option("--csv", help="Also write the rows to this CSV file.")
    ] = None,
    prefer: Annotated[
        Prefer | None,
        typer.Option(
            help="The tie-breaker of an 'equivalent' verdict.  [default: the study's]",
            show_default=False,
        ),
    ] = None,
    wide: Annotated[
        bool,
        typer.Option(
            "--wide",
            help="All columns: also state, params, latency, epochs and images per second.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List a study's trials (phase, config, FLOPs, accuracy) and its answer.

    ``--json`` prints ``{"trials": [...], "recommendation": {...} or null, "answer": {...}}``
    (the answer is null before any complete trial).
    """
    from nas.fileio import ensure_parent, write_csv
    from nas.search.answer import answer_line, answer_of
    from nas.search.confirm import confirmation_off, describe
    from nas.search.records import csv_table, objectives_of, trial_rows
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
    objectives = objectives_of(loaded)
    shown = front or (objectives[1] if len(objectives) > 1 else "FLOPs")
    out.print(trials_table(rows, study, shown, wide))
    out.print(answer_line(answer), highlight=False)
    off = confirmation_off(loaded)
    for line in describe(rec, not off) if rec or off else ():
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
