"""``dashboard``: a study's Pareto dashboard as one HTML page, or served live."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from nas.commands.options import StorageOpt, out
from nas.fileio import ensure_parent
from nas.text import literal


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
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to serve on with --serve (0: any free).")
    ] = 8050,
    screenshot: Annotated[
        Path | None, typer.Option(help="Also save a PNG of the page (needs headless Chromium).")
    ] = None,
) -> None:
    """Write the study's interactive Pareto dashboard as one self-contained HTML page."""
    from nas import dashboard as dash

    if serve:
        if not dash.is_loopback(host):
            sys.stderr.write(
                literal(
                    f"warning: serving on {host}, beyond this machine: anyone who can reach it "
                    "reads the study (names, specs, hosts, paths); there is no login\n"
                )
            )
        dash.serve(study, storage, host, port, ready=lambda url: out.print(f"serving {url}"))
        return
    path = out_file or dash.default_out(study)
    if screenshot is not None:
        ensure_parent(screenshot, "--screenshot")
    out.print(str(dash.write_dashboard(study, storage, path)), soft_wrap=True)
    if screenshot is not None:
        out.print(str(dash.screenshot(path, screenshot)), soft_wrap=True)
