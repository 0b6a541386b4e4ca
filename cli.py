"""The ``resnext-nas`` command line: the Typer app, its command groups, and the entry point.

Each command group lives in a module of :mod:`nas.commands`; a command declares its options, makes
one library call and prints. :func:`main` turns a user error into one line and exit code 2.
"""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from nas.commands import calibrate, dashboard, export, options, plan, search, spec, study, train

# Help as click lays it out: an option and its help in two columns, the help wrapped in what
# the terminal leaves (rich's boxed table gave the help 25 of 100 columns, and a `<bool>`
# to every flag); up to 120 columns wide.
app = typer.Typer(
    help="Explore the ResNeXt design space: budgets, searches and Pareto dashboards.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
)

# Library errors a user can act on: bad budgets, unknown presets, missing data, dead storage.
USER_ERRORS = (ValueError, FileNotFoundError)
# What a command stopped by a signal says, by its exit code: 128 + SIGINT, SIGHUP or SIGTERM.
STOPPED = {130: "interrupted", 129: "hung up", 143: "terminated"}


def version() -> str:
    """The installed package's version (the source tree's, when run from a checkout)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("resnext-nas")
    except PackageNotFoundError:
        import tomllib
        from pathlib import Path

        with open(Path(__file__).with_name("pyproject.toml"), "rb") as f:
            return tomllib.load(f)["project"]["version"]


def _print_version(given: bool) -> None:
    if given:
        options.out.print(f"resnext-nas {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Explore the ResNeXt design space: budgets, searches and Pareto dashboards."""


def _signal_exit(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command``, ending with exit code 128 + N where signal N stopped it.

    SIGTERM and SIGHUP arrive as :class:`nas.search.workers.Terminated`, a KeyboardInterrupt, which
    Typer would report as Ctrl-C's 130.
    """

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt as e:
            if not hasattr(e, "signum"):
                raise
            raise typer.Exit(128 + e.signum) from None

    return run


for name, command in (
    ("budget", spec.budget),
    ("show", spec.show),
    ("presets", spec.presets),
    ("search", search.search),
    ("trials", search.trials),
    ("studies", search.studies),
    ("calibrate", calibrate.calibrate_command),
    ("train", train.train_command),
    ("plan", plan.plan_command),
    ("export", export.export_command),
    ("dashboard", dashboard.dashboard),
):
    app.command(name)(_signal_exit(command))
for info in study.app.registered_commands:
    info.callback = _signal_exit(info.callback)
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
        sys.stderr.write(options.error_line(f"{e.format_message().rstrip('.')}{where}"))
        raise SystemExit(2) from None
    except USER_ERRORS as e:
        sys.stderr.write(options.error_line(e))
        raise SystemExit(2) from None
    except (KeyboardInterrupt, typer.Abort) as e:
        rc = 128 + getattr(e, "signum", signal.SIGINT)
    except ClickException as e:  # a bad file argument and the like
        sys.stderr.write(options.error_line(e.format_message()))
        raise SystemExit(e.exit_code) from None
    except Exception as e:
        from nas.search.storage import storage_error

        gone = storage_error(e)  # the database server stopped mid-command: one line
        if gone is None:
            raise
        sys.stderr.write(options.error_line(gone))
        raise SystemExit(2) from None
    if isinstance(rc, int) and rc:
        if rc in STOPPED:
            sys.stderr.write(STOPPED[rc] + "\n")
        raise SystemExit(rc)


if __name__ == "__main__":
    main()
