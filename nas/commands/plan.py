"""``resnext-nas plan``: how trials run fastest on this machine, and every option measured."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from nas.commands.options import DataTemplateOpt, DeviceOpt, JsonOpt, out, print_json


def plan_command(
    template: DataTemplateOpt = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Mini-batch size (default: the template's trial's).", show_default=False),
    ] = None,
    device: DeviceOpt = "auto",
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Measure again, replacing the cached plan.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Measure (once a machine, then cached) how the default search's trials run fastest:
    workers x threads, NCHW or NHWC, fp32 or bf16; `search`, `study run`, `calibrate` and
    `train` follow it unless --workers, --threads, --precision or --channels-last say otherwise.
    """
    from nas.search.space import SEARCH_DEFAULTS, SearchSpace
    from nas.training.config import TRIALS
    from nas.training.device import resolve_device
    from nas.training.machine import machine_plan, representative

    tpl = template.value if template else "cifar"
    trial = TRIALS[tpl]
    batch = trial.batch_size if batch_size is None else batch_size
    if batch < 1:
        raise ValueError(f"--batch-size takes a positive integer, got {batch}")
    dev = resolve_device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"plans are measured on cpu and cuda, not {dev.type}")
    d = SEARCH_DEFAULTS[tpl]
    side = trial.resolution or 32
    cs, ds = d.choices(False, None, None)
    space = SearchSpace(
        d.budget(None, None, None), tpl, d.depths, d.widths, cs, ds, resolution=side
    )
    spec = representative(space.trainable())
    kind = "cifar" if tpl == "cifar" else "imagenet"
    plan = machine_plan(spec, batch, kind, dev.type, refresh=refresh)
    if as_json:
        print_json({**plan.to_dict(), "speedup": plan.speedup, "cached": plan.cached})
        return
    table = Table(title=f"Training images per second, {plan.model}")
    for col in ("workers x threads", "format", "precision", "images/s", "vs default"):
        table.add_column(col, justify="right" if col in ("images/s", "vs default") else "left")
    for o in sorted(plan.options, key=lambda o: -o.rate):
        mark = " (plan)" if o.same_run(plan.chosen) else ""
        mark += " (default)" if o.same_run(plan.baseline) else ""
        table.add_row(
            f"{o.workers} x {o.threads}{mark}",
            "NHWC" if o.channels_last else "NCHW",
            "bf16" if o.bf16 else "fp32",
            f"{o.rate:,.0f}",
            f"{o.rate / plan.baseline.rate:.2f}x",
        )
    out.print(table)
    out.print(plan.describe(), highlight=False, soft_wrap=True)
