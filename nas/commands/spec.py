"""Commands over the model family alone: ``budget``, ``show`` and ``presets`` (no torch)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Annotated, Any

import typer
from rich.table import Table

import resnext
from nas.commands.options import (
    ALL_CARDINALITIES,
    BottleneckWidthsOpt,
    CardinalitiesOpt,
    ClassesOpt,
    JsonOpt,
    ResolutionOpt,
    Template,
    TemplateOpt,
    flat_ints,
    int_lists,
    ints,
    out,
    print_json,
    stream_json,
)
from resnext.budget import Budget, Config, scan
from resnext.complexity import format_count, imagenet_side_flops

# The table shows the configurations closest to the budget, this many unless --limit says;
# rich lays a table out all at once (500 rows took 0.4 s, 134,249 rows 2 min), so a long one
# is printed in pages of PAGE_ROWS rows, each as soon as it is laid out.
DEFAULT_LIMIT = 100
PAGE_ROWS = 500


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
    limit: Annotated[
        int,
        typer.Option(
            min=1, help="Rows of the table: the configurations closest to the budget (--json: all)."
        ),
    ] = DEFAULT_LIMIT,
    as_json: JsonOpt = False,
) -> None:
    """List every configuration whose FLOPs and/or params lie within the budget band."""
    bud = Budget(flops, params, tolerance)
    band = scan(
        bud,
        template.value,
        int_lists(depths, "--depths"),
        flat_ints(widths, "--widths") or (256,),
        ints(cardinalities, "--cardinalities"),
        ints(bottleneck_widths, "--bottleneck-widths") if bottleneck_widths else None,
        classes,
        resolution,
    )
    if as_json:
        stream_json(
            {"budget": {**bud.to_dict(), "template": template.value}}, "configs", band.dicts()
        )
        return
    rows = band.nearest(limit)
    for start in range(0, len(rows), PAGE_ROWS):
        page = rows[start : start + PAGE_ROWS]
        title = (
            f"{len(band):,} {template.value} configurations within {bud.describe()}"
            if start == 0
            else f"rows {start + 1:,}-{start + len(page):,} of {len(rows):,}"
        )
        last = start + PAGE_ROWS >= len(rows)
        out.print(_budget_table(band.configs(page), bud, title, last=last))
    if len(rows) < len(band):
        out.print(
            f"showing {len(rows):,} of {len(band):,} configurations, the closest to the budget; "
            f"--limit {len(band)} or --json for all",
            soft_wrap=True,  # one line to read and copy, whatever the terminal's width
        )


def _budget_table(configs: Iterable[Config], bud: Budget, title: str, last: bool) -> Table:
    """One page of the ``budget`` table; the last carries the caption."""
    caption = (
        "★ closest to the budget for its C and depths;  ◆ on the params/FLOPs "
        "Pareto front.  FLOPs are multiply-adds of conv and fc layers.  off budget: "
        "over (+) or under (-) the target, of the budgeted metric furthest from it."
    )
    table = Table(title=title, caption=caption if last else None)
    configs = list(configs)
    # A small side (a CPU trial's 64 px) also shows the FLOPs at the template's own side.
    full = [imagenet_side_flops(c.spec) for c in configs]
    at = [f"FLOPs @{f[0]}" for f in full[:1] if f is not None]
    cols = ("C x d", "C·d", "depths", "width", "params", "FLOPs", *at, "off budget", "")
    for col in cols:
        table.add_column(
            col, justify="left" if col in ("C x d", "depths", "") else "right", no_wrap=True
        )
    for c, f in zip(configs, full, strict=True):
        s, cx = c.spec, c.complexity
        table.add_row(
            s.notation,
            str(s.group_width),
            "-".join(map(str, s.depths)),
            str(s.width),
            format_count(cx.params),
            format_count(cx.flops),
            *([format_count(f[1])] if at and f is not None else []),
            f"{float(bud.offset(c.complexity)):+.1%}",
            ("★" if c.closest else "") + ("◆" if c.pareto else ""),
            style="bold" if c.closest else None,
        )
    return table


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
        "depths": ints(depths, "--depths") if depths else None,
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


def spec_option(text: str, default: object) -> Any:
    """The option of a spec field: left out, it keeps the preset's value, else ``default``."""
    return typer.Option(help=f"{text}  [default: the preset's, else {default}]")


_SPEC = resnext.Spec  # the defaults a spec option falls back on
SpecTemplateOpt = Annotated[Template | None, spec_option("imagenet or cifar.", _SPEC.template)]
DepthsOpt = Annotated[str | None, spec_option("Blocks per stage, e.g. 3,4,23,3.", "the template's")]
WidthOpt = Annotated[int | None, spec_option("Output width of the first stage.", _SPEC.width)]
CardOpt = Annotated[int | None, spec_option("Cardinality C.", _SPEC.cardinality)]
DOpt = Annotated[int | None, spec_option("Bottleneck width d.", _SPEC.bottleneck_width)]
SpecClassesOpt = Annotated[int | None, spec_option("Classes of the fc layer.", "the template's")]
SpecResOpt = Annotated[int | None, spec_option("Input side in pixels.", "the template's")]


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
        print_json(
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
        print_json(rows)
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
