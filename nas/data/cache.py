"""Where datasets live unless told: ``$RESNEXT_NAS_DATA``, else the user's cache folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def default_data_dir() -> Path:
    """Where datasets live unless told: ``$RESNEXT_NAS_DATA``, else the user's cache folder."""
    if env := os.environ.get("RESNEXT_NAS_DATA"):
        return Path(env).expanduser()
    return user_cache_dir() / "resnext-nas"


def user_cache_dir(platform: str = sys.platform) -> Path:
    """The user's cache folder by the platform's convention (platformdirs' ``user_cache_path``
    roots): ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows, else
    ``$XDG_CACHE_HOME`` or ``~/.cache`` (the XDG base directory specification)."""
    if platform == "darwin":
        return Path.home() / "Library" / "Caches"
    if platform.startswith("win"):
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
