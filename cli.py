"""The ``resnext-nas`` command line: thin commands over ``resnext`` and ``nas``.

Torch is imported only inside the commands that train or build models, so that ``budget``,
``show`` and ``presets`` answer at once.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

import resnext

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
