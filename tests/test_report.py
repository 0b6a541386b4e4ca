"""scripts/make_report.py: verdicts, the seeds that would settle one, and the kept sections."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

from tests.helpers import ROOT


def _report():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("make_report", ROOT / "scripts/make_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_report"] = module
    spec.loader.exec_module(module)
    return module


def test_verdicts_and_the_seeds_that_would_settle_them() -> None:
    m = _report()
    assert m.verdict(-3.0, 1.0, 3, -1) == "agrees"
    assert m.verdict(3.0, 1.0, 3, -1) == "disagrees"
    assert m.verdict(-3.0, 1.0, 1, -1).startswith("inconclusive (one seed")
    assert m.verdict(0.0, 0.0, 2, -1).startswith("inconclusive (no spread")
    # Per-seed spread 0.8 * sqrt(3) = 1.386; 2 x 1.386 / sqrt(n) < 1 needs n > 7.68: 8 seeds.
    text = m.verdict(1.0, 0.8, 3, -1)
    assert text.startswith("inconclusive") and "about 8 seeds" in text
    spread = 0.8 * math.sqrt(3)
    assert 2 * spread / math.sqrt(8) < 1.0 < 2 * spread / math.sqrt(7)
    # +0.03 on a per-seed spread of 1.8 would need (2 x 1.8 / 0.03)^2 = 14,400 seeds
    tiny = m.verdict(0.03, 1.03, 3, -1)
    assert "more than 100 seeds at this spread: no effect to speak of" in tiny


def test_steps_and_kept_sections(tmp_path: Path) -> None:
    m = _report()
    log = tmp_path / "steps.log"
    log.write_text("+ resnext-nas study run x --seeds 2\n  (754 s)\n  rc=0\n+ resnext-nas y\n")
    assert m._steps(log) == [
        "- `resnext-nas study run x --seeds 2`: 754 s (12.6 min)",
        "- `resnext-nas y`: stopped or still running, no time logged",
    ]
    old = tmp_path / "old.md"
    old.write_text(
        "# Title\n\nGenerated earlier on synthetic data.\n\n## 1. Table 3: T\n\nrows\n\n"
        "## 4. Calibration\n\nmore\n\n## Discussion\n\nnotes\n"
    )
    kept = m.kept_sections(old)
    assert kept[0] == "## Built-in synthetic set" and "Generated earlier" in kept[2]
    assert "### Table 3: T" in kept and "### Calibration" in kept and "rows" in kept
    assert "## Discussion" not in kept and "notes" not in kept
    # A report made with kept sections keeps them again, verbatim.
    new = tmp_path / "new.md"
    new.write_text("\n".join(["# Title", "", "## Real CIFAR-10", "", "x", *kept, "## Discussion"]))
    assert m.kept_sections(new) == kept
