"""The benchmarks run as the README writes them, `python e2e/bench/NAME.py`: Python then puts
e2e/bench first on sys.path, so a module there named like a standard-library one (a
`secrets.py`) would be imported in its place by every library that needs it."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "e2e" / "bench"


def test_no_benchmark_module_shadows_the_standard_library() -> None:
    names = {path.stem for path in BENCH.glob("*.py")} | {
        path.name for path in BENCH.iterdir() if (path / "__init__.py").exists()
    }
    assert not names & sys.stdlib_module_names
