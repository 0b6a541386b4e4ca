"""Where datasets are kept by default: each platform's cache folder (as platformdirs has it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas.data import default_data_dir
from nas.data.cache import user_cache_dir


def test_cache_folder_follows_each_platform(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert user_cache_dir("darwin") == Path.home() / "Library" / "Caches"
    assert user_cache_dir("win32") == tmp_path / "local"
    assert user_cache_dir("linux") == tmp_path / "xdg"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv("LOCALAPPDATA")
    assert user_cache_dir("linux") == Path.home() / ".cache"
    assert user_cache_dir("win32") == Path.home() / "AppData" / "Local"


def test_default_data_dir_is_in_the_cache_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESNEXT_NAS_DATA", raising=False)
    assert default_data_dir() == user_cache_dir() / "resnext-nas"
