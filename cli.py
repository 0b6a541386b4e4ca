"""The ``resnext-nas`` command line: the Typer app, its command groups, and the entry point.

Each command group lives in a module of :mod:`nas.commands`; a command declares its options, makes
one library call and prints. :func:`main` turns a user error into one line and exit code 2.
"""

from __future__ import annotations

import sys

import typer

from nas.commands import calibrate, dashboard, export, options, search, spec, study, train

app = typer.Typer(
    help="Explore the ResNeXt design space: budgets, searches and Pareto dashboards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Library errors a user can act on: bad budgets, unknown presets, missing data, dead storage.
USER_ERRORS = (ValueError, FileNotFoundError)


@app.callback()
def _root() -> None:
    """Explore the ResNeXt design space: budgets, searches and Pareto dashboards."""


for name, command in (
    ("budget", spec.budget),
    ("show", spec.show),
    ("presets", spec.presets),
    ("search", search.search),
    ("trials", search.trials),
    ("studies", search.studies),
    ("calibrate", calibrate.calibrate_command),
    ("train", train.train_command),
    ("export", export.export_command),
    ("dashboard", dashboard.dashboard),
):
    app.command(name)(command)
app.add_typer(study.app, name="study")


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
            options.out.print(e.ctx.get_help() if e.ctx else "")
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
