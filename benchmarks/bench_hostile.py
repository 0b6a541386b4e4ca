"""Time to the first line of every hostile invocation, each run as a real process.

Runs the table of tests/hostile.py (bad numbers, huge grids, hostile names, corrupt files, wrong
storage URLs, across every command) as ``python cli.py ...`` in a fresh folder, and prints for
each: seconds to its first line on stdout or stderr (interpreter start and imports included),
seconds in all, exit code, and the first line. A first line later than FIRST_LINE_SECONDS, an
exit code other than the case's, or a traceback is marked ``!!``; the last line counts them.
Run from the root:

    PYTHONPATH=. python benchmarks/bench_hostile.py [--only budget]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from tests.hostile import CASES, FIRST_LINE_SECONDS, make_files, run_process


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="run the cases whose name holds this text")
    args = ap.parse_args()
    cases = [c for c in CASES if args.only in c.name]
    if not cases:
        raise SystemExit(f"no case name holds {args.only!r}")
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp) / "files")
        env = {**os.environ, "PYTHONPATH": str(root), "RESNEXT_NAS_DATA": f"{tmp}/cache"}
        env.pop("RESNEXT_NAS_STORAGE", None)
        width = max(len(c.name) for c in cases)
        print(f"{'command':<{width}}  first line  total s  exit  first line printed")
        bad = 0
        for case in cases:
            t = run_process(case.argv(files), Path(tmp), env)
            late = t.first_line is None or t.first_line > FIRST_LINE_SECONDS
            wrong = t.code != case.code or "Traceback" in t.stderr
            bad += late or wrong
            first = "-" if t.first_line is None else f"{t.first_line:.2f} s"
            line = t.first.encode("unicode_escape").decode()[:70]
            print(
                f"{case.name:<{width}}  {first:>10}  {t.total:7.2f}  {t.code!s:>4}  {line}"
                + ("  !!" if late or wrong else ""),
                flush=True,
            )
    print(
        f"{len(cases)} invocations, {bad} late (first line past {FIRST_LINE_SECONDS:g} s), "
        "wrong exit code or traceback"
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
