"""The ``resnext-nas`` command line: thin commands over ``resnext`` and ``nas``.

Torch is imported only inside the commands that train or build models, and Optuna and plotly only
inside ``dashboard``, so that ``budget``, ``show`` and ``presets`` answer at once.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

import resnext
from resnext.budget import DEFAULT_CARDINALITIES, Budget, generate

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
    cardinalities: Annotated[str, typer.Option(help="Cardinalities C to try.")] = ",".join(
        map(str, DEFAULT_CARDINALITIES)
    ),
    bottleneck_widths: Annotated[
        str | None, typer.Option(help="Bottleneck widths d to try (default: every integer).")
    ] = None,
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
            _fmt_count(cx.params),
            _fmt_count(cx.flops),
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
        _fmt_count(parts["conv1"].params),
        _fmt_count(parts["conv1"].flops),
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
            _fmt_count(cx.params),
            _fmt_count(cx.flops),
            end_section=True,
        )
    table.add_row(
        "",
        "1x1",
        f"global average pool\n{spec.classes}-d fc, softmax",
        "",
        _fmt_count(parts["fc"].params),
        _fmt_count(parts["fc"].flops),
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
            _fmt_count(cx["params"]),
            _fmt_count(cx["flops"]),
            r["source"],
        )
    out.print(table)


@app.command()
def dashboard(
    study: Annotated[str, typer.Option(help="Name of the Optuna study.", show_default=False)],
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL (default: $RESNEXT_NAS_STORAGE, else "
            "sqlite:///resnext-nas.db in the working directory).",
            show_default=False,
        ),
    ] = None,
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
