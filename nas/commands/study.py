"""``study list`` and ``study run``: the paper's experiments as ready-made studies."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from nas.commands.options import (
    VAL_HELP,
    AugmentOpt,
    ChannelsLastOpt,
    CreateOpt,
    DataDirOpt,
    DataResolutionOpt,
    DatasetName,
    DatasetOpt,
    DeviceOpt,
    ImagesPerClassOpt,
    JsonOpt,
    LatencyOpt,
    Precision,
    PrecisionOpt,
    QuietOpt,
    RunOptions,
    RunsDirOpt,
    SaveWeightsOpt,
    StorageOpt,
    SubsetClassesOpt,
    ThreadsOpt,
    TrialsPerGpuOpt,
    WorkersOpt,
    command,
    out,
    parse_workers,
    plan_run,
    print_json,
    report_data,
    trial_settings,
)
from nas.commands.progress import SearchProgress, load_display
from nas.commands.search import confirm_left, search_summary
from nas.data import MIN_VAL_IMAGES, known_shape
from nas.search.attrs import CONFIRM, SEARCH

if TYPE_CHECKING:
    from nas.stats.designspace import AxisFit

app = typer.Typer(
    help="The paper's experiments as ready-made studies: list them, run one.",
    no_args_is_help=True,
    rich_markup_mode=None,  # help laid out as the root app's (cli.py)
)


@app.command("list")
def study_list(as_json: JsonOpt = False) -> None:
    """List the study definitions: name, citation, trials and what each measures."""
    import studies

    rows = [d.to_dict() for d in studies.definitions()]
    if as_json:
        print_json(rows)
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


def _axis_effects(study: str, storage: str | None) -> AxisFit:
    """The pooled axis effects over the study's search-phase trials."""
    from nas.search.records import trial_records
    from nas.search.storage import load
    from nas.stats.designspace import axis_effects

    return axis_effects(trial_records(load(study, storage, read_only=True)))


def _summary(
    study: str,
    storage: str | None,
    reports: list[Any],
    wall: float,
    as_json: bool,
    extra: dict[str, Any],
    grid: bool = False,
) -> None:
    """search_summary, with the pooled axis effects: under ``axis_effects`` in the JSON, as
    lines after the summary for people. A grid study trains every spec on every seed and has no
    confirmation phase: its answer is its search phase's verdict."""
    from nas.stats.designspace import axis_effect_lines

    fit = _axis_effects(study, storage)
    if as_json:
        extra = {**extra, "axis_effects": fit.to_dict()}
    phase = SEARCH if grid else CONFIRM
    search_summary(study, storage, reports, wall, as_json, extra, answer_phase=phase)
    if not as_json:
        for line in axis_effect_lines(fit):
            out.print(line, markup=False, highlight=False, soft_wrap=True)


def _storage_hint(storage: str | None) -> tuple[str, ...]:
    from nas.search.storage import redact

    return ("--storage", redact(storage)) if storage else ()


@app.command("run")
def study_run(
    name: Annotated[str, typer.Argument(help="A study (see `resnext-nas study list`).")],
    dataset: DatasetOpt = DatasetName.synthetic,
    data_dir: DataDirOpt = None,
    storage: StorageOpt = None,
    create: CreateOpt = False,
    study_name: Annotated[
        str | None, _unset_option("Optuna study name.  [default: the definition's name]")
    ] = None,
    seeds: Annotated[
        int | None, _unset_option("Seeds per spec of a grid study.  [default: the definition's]")
    ] = None,
    epochs: Annotated[
        int | None, _unset_option("Epochs per trial.  [default: the definition's]")
    ] = None,
    train_images: Annotated[
        int | None, _unset_option("Training images per trial.  [default: the definition's]")
    ] = None,
    val_fraction: Annotated[
        float | None, _unset_option(f"{VAL_HELP}.  [default: the definition's]")
    ] = None,
    resolution: DataResolutionOpt = None,
    classes: SubsetClassesOpt = None,
    images_per_class: ImagesPerClassOpt = None,
    augment: AugmentOpt = None,
    workers: WorkersOpt = "auto",
    threads: ThreadsOpt = None,
    precision: PrecisionOpt = Precision.auto,
    channels_last: ChannelsLastOpt = None,
    trials_per_gpu: TrialsPerGpuOpt = 1,
    device: DeviceOpt = "auto",
    latency: LatencyOpt = True,
    runs_dir: RunsDirOpt = Path("runs"),
    save_weights: SaveWeightsOpt = True,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run (or resume) a study definition; re-running trains only what is missing."""
    import studies
    from nas.search.study import check_study
    from nas.training.device import check_device

    definition = studies.get(name)
    n_workers = parse_workers(workers)
    if trials_per_gpu < 1:
        raise ValueError("--trials-per-gpu takes a positive integer")
    from nas.search.workers import cap_workers, on_cpu

    if n_workers is not None:
        n_workers = cap_workers(n_workers, trials_per_gpu, on_cpu(device))
    definition.n_trials(seeds)  # refuses --seeds < 1, or --seeds for a search
    # Refuses a bad --epochs or --device before the data loads.
    trial = trial_settings(
        definition.trial_budget,
        epochs=epochs,
        train_images=train_images,
        val_fraction=val_fraction,
        dataset=dataset.value,
        data_dir=data_dir,
        classes=classes,
        images_per_class=images_per_class,
        resolution=resolution,
        augment=augment,
        device=device,
    )
    check_device(device)  # and a device that is not here, before the storage opens
    study = study_name or definition.name
    hint = f"see `{command('dashboard', '--study', study, *_storage_hint(storage))}`"
    # As `search`: refuse a bad storage or a finished study before the data load.
    known = known_shape(dataset.value, classes, resolution)
    if known:
        early = definition.settings(study, *known)
        n = definition.n_trials(seeds, *known)
        done = check_study(early, storage, create=create)
        if done >= n and not confirm_left(study, storage, early.confirm):
            extra = {"missing": [], "dashboard": hint}
            _summary(study, storage, [], 0.0, as_json, extra, definition.is_grid)
            if not as_json:
                out.print(f"nothing left to train; {hint}", soft_wrap=True)
            return
    data = trial.load(min_val=MIN_VAL_IMAGES, progress=load_display(quiet, as_json))
    report_data(data, quiet or as_json)
    settings = definition.settings(study, data.classes, data.resolution)
    if create:  # a dataset of unknown classes: the study is checked, and created, only here
        check_study(settings, storage, create=True)
    if not quiet and not as_json:
        out.print(
            f"study {study!r} ({definition.citation}): {settings.space.describe()}; "
            f"{definition.n_trials(seeds, data.classes, data.resolution)} trials of "
            f"{trial.train.epochs} epochs on {len(data.train_y)} images",
            highlight=False,
        )
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
        n = definition.n_trials(seeds, data.classes, data.resolution)
        progress = SearchProgress(study, storage, n, train.epochs, settings.confirm)
    if progress:
        progress.start()
    try:
        run = studies.run_study(
            definition,
            data,
            study=study,
            storage=storage,
            seeds=seeds,
            train=train,
            workers=choice.workers,
            trials_per_gpu=trials_per_gpu,
            latency=latency,
            progress=progress,
            runs_dir=runs_dir.resolve() if save_weights else None,
        )
    finally:
        if progress:
            progress.stop()
    extra = {"missing": run.missing, "queued": run.queued, "dashboard": hint}
    extra["run"] = choice.to_dict()
    _summary(study, storage, run.reports, run.wall_seconds, as_json, extra, definition.is_grid)
    if not as_json:
        out.print(hint, soft_wrap=True)
    if run.missing:
        sys.stderr.write(
            f"{len(run.missing)} grid points failed ({', '.join(run.missing)}); run the same "
            "command again to train them\n"
        )
        raise typer.Exit(1)


@app.command("drop")
def study_drop(
    name: Annotated[str, typer.Argument(help="The Optuna study (see `resnext-nas studies`).")],
    storage: StorageOpt = None,
    queue_only: Annotated[
        bool,
        typer.Option(
            "--queue-only", help="Only withdraw its queued (waiting) trials; trained ones stay."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm deleting the whole study.")] = False,
) -> None:
    """Delete a study and its trials, or (--queue-only) withdraw the trials an interrupted run
    left queued."""
    from nas.search.storage import load
    from nas.search.study import drop_study

    load(name, storage, read_only=True)  # a study that is not there is named as such first
    if not queue_only and not yes:
        raise ValueError(
            f"`study drop {name}` deletes the study and every trial of it: add --yes, or "
            "--queue-only to withdraw only its queued trials"
        )
    out.print(drop_study(name, storage, queue_only=queue_only), highlight=False)
