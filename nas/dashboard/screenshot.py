"""A PNG of a dashboard page as headless Chromium renders it (for the README)."""

from __future__ import annotations

from pathlib import Path

# ---------------------------------------------------------------------------------------------
# Screenshot


CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/install_chromium.sh)
# As root in a container: no sandbox, no GPU, no QUIC, no background traffic (updates, sync...).
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def screenshot(
    page: Path,
    png: Path,
    width: int = 1400,
    height: int = 2600,
    chromium: str = CHROMIUM,
    wait_ms: int = 8000,
) -> Path:
    """Save a PNG of an HTML file as headless Chromium renders it (for the README)."""
    import subprocess
    import tempfile

    if not Path(chromium).exists():
        raise ValueError(f"no Chromium at {chromium}; run scripts/install_chromium.sh")
    png = png.resolve()
    with tempfile.TemporaryDirectory() as profile:
        res = subprocess.run(
            [
                chromium,
                "--headless",
                *CHROMIUM_FLAGS,
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--virtual-time-budget={wait_ms}",
                f"--screenshot={png}",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    if res.returncode != 0 or not png.is_file():
        first = (res.stderr.strip().splitlines() or ["no output"])[0]
        raise ValueError(f"Chromium could not take the screenshot: {first}")
    return png
