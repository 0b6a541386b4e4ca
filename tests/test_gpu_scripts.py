"""The GPU check's scripts: the wheel list covers what the GPU machine lacks; the check runs.

scripts/gpu_wheels.sh names the wheels to carry (``--list``) and what the machine's image holds
(``--present``, from the device notes). Every requirement of the project and, transitively, of
each listed package must be one or the other. The requirements are read from the downloaded
wheels' METADATA where .whl/ exists, else from this environment's installed distributions.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_wheels.sh"
# The GPU machine: CPython 3.12 on x86-64 Linux (KINDS.md: Python 3.12.3).
GPU_ENV = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}


def _norm(name: str) -> str:
    """PEP 503 normalised name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _script(flag: str) -> list[str]:
    out = subprocess.run(["bash", str(SCRIPT), flag], capture_output=True, text=True, check=True)
    return out.stdout.split()


def listed() -> dict[str, str]:
    """Normalised name -> pinned version of every package the script downloads or builds."""
    pins = dict(p.split("==") for p in _script("--list"))
    return {_norm(k): v for k, v in pins.items()}


def present() -> set[str]:
    return {_norm(n) for n in _script("--present")}


def _needed(requirements: list[str]) -> set[str]:
    """Names of the requirements that apply on the GPU machine (no extras)."""
    out = set()
    for line in requirements:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(GPU_ENV):
            out.add(_norm(req.name))
    return out


def _wheel_requires(name: str) -> list[str] | None:
    """Requires-Dist of ``name``'s wheel in .whl/, or None without one."""
    for whl in (ROOT / ".whl").glob("*.whl"):
        if _norm(whl.name.split("-")[0]) == name:
            with zipfile.ZipFile(whl) as z:
                meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
                text = z.read(meta).decode()
            return [
                ln.split(":", 1)[1].strip()
                for ln in text.splitlines()
                if ln.startswith("Requires-Dist:")
            ]
    return None


def test_lists_are_disjoint_and_pinned() -> None:
    pins = listed()
    assert pins and all(re.fullmatch(r"[0-9][0-9a-z.]*", v) for v in pins.values())
    assert not set(pins) & present(), "a carried wheel the machine already has"
    assert {"optuna", "plotly", "fvcore"} <= set(pins)  # missing on the GPU machine


def test_list_covers_the_project_dependencies() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    missing = _needed(deps) - set(listed()) - present()
    assert not missing, f"pyproject dependencies neither carried nor present: {missing}"


def test_list_is_closed_under_requires_dist() -> None:
    pins, have = listed(), present()
    missing: dict[str, set[str]] = {}
    for name in pins:
        reqs = _wheel_requires(name)
        if reqs is None:
            try:
                reqs = metadata.requires(name) or []
            except metadata.PackageNotFoundError:
                pytest.fail(f"{name}: no wheel in .whl/ and not installed here to read its needs")
        if gap := _needed(reqs) - set(pins) - have:
            missing[name] = gap
    assert not missing, f"dependencies neither carried nor present on the GPU machine: {missing}"


def test_downloaded_wheels_match_the_list() -> None:
    wheels = sorted((ROOT / ".whl").glob("*.whl"))
    if not wheels:
        pytest.skip("no .whl/ here: run scripts/gpu_wheels.sh to download the wheels")
    got = {_norm(w.name.split("-")[0]): w.name.split("-")[1] for w in wheels}
    assert got == listed()  # one wheel a package, at the pinned version, and nothing else
    for w in wheels:  # CPython 3.12 on x86-64 Linux, or pure Python
        tags = w.name.removesuffix(".whl").split("-")[-3:]
        assert tags[0] in ("py3", "cp312") and ("x86_64" in tags[2] or tags[2] == "any"), w.name


def test_marker_evaluation_tells_the_gpu_machine_apart() -> None:
    """The closure test would pass vacuously if every marker were false."""
    assert _needed(['greenlet>=1; platform_machine == "x86_64"']) == {"greenlet"}
    assert _needed(['tomli; python_version < "3.11"', 'x; extra == "dev"']) == set()


@pytest.mark.slow
def test_cpu_fallback_of_the_check_runs_every_step(tmp_path: Path) -> None:
    """``GPU_CHECK_CPU=1 scripts/gpu_check.sh``: the five steps at tiny sizes, and a summary."""
    out = tmp_path / "check"
    env = {**os.environ, "GPU_CHECK_CPU": "1", "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = (out / "summary.txt").read_text()
    assert proc.returncode == 0, summary + proc.stderr[-2000:]
    for name in ("tests", "bench", "plan", "search", "export"):
        assert re.search(rf"^{name}\s+ok\s", summary, re.M), summary
    pick = re.search(r"trainer's pick on cpu .* pick/best ([\d.]+)", summary)
    assert pick and float(pick.group(1)) > 0, summary
    diff = re.search(r'"onnx_max_abs_diff": ([\deE.+-]+)', summary)
    assert diff and float(diff.group(1)) < 1e-3, summary
    assert re.search(r"^plan for .*: \d+ workers? x \d+ threads?, ", summary, re.M), summary
    assert "all steps passed" in summary
