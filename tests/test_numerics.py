"""The helpers of kernel comparisons (tests/numerics.py) and the report header that names the
machine their rounding depends on."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

import torch

from tests import conftest, numerics


def _model_name() -> str:
    """The processor's name as /proc/cpuinfo gives it, else as the platform module does."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def test_report_header_names_the_cpu_and_torch() -> None:
    line = conftest.pytest_report_header(None)
    assert "\n" not in line and line.startswith("cpu: ")
    assert _model_name() in line
    assert f"torch {torch.__version__}" in line
    assert f"torch kernels {torch.backends.cpu.get_cpu_capability()}" in line
    assert f"{torch.get_num_threads()} threads" in line


def test_cpu_name_without_cpuinfo(tmp_path: Path) -> None:
    """macOS has no /proc/cpuinfo: the name comes from the platform module, without flags."""
    name = numerics.cpu_name(str(tmp_path / "cpuinfo"))
    assert name.startswith(platform.processor() or platform.machine())
    assert "no AVX flags read" in name


def test_cpu_name_reads_the_flags_of_interest(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Some CPU 9000\nflags\t\t: fpu sse2 avx2 amx_tile avx512f\n")
    assert numerics.cpu_name(str(cpuinfo)).startswith("Some CPU 9000 (avx2, avx512f, amx_tile; ")


def test_same_kinks_takes_the_first_pass_side_of_each_relu() -> None:
    """Two paths that round a pre-activation to opposite sides of 0 differ by a whole gradient
    term; replaying the first path's mask gives both the same gradient."""

    def gradients(kinks: numerics.SameKinks | None) -> list[torch.Tensor]:
        out = []
        for side in (1e-9, -1e-9):
            x = torch.tensor([side, 2.0], requires_grad=True)
            with kinks or contextlib.nullcontext():
                (3 * torch.relu(x)).sum().backward()
            out.append(x.grad)
        return out

    free = gradients(None)
    assert free[0].tolist() == [3, 3] and free[1].tolist() == [0, 3]  # one side of the kink each
    kinks = numerics.SameKinks()
    assert [g.tolist() for g in gradients(kinks)] == [[3, 3], [3, 3]]
    assert len(kinks.masks) == 1
