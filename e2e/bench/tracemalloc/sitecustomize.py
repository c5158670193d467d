"""Loaded by the operator process when `python -m e2e.bench.scale --trace-memory` puts this
directory on its PYTHONPATH: traces allocations and, on SIGUSR2, appends the largest live
allocation sites (by traceback) to the file named by TRITONOP_BENCH_TRACEMALLOC.

Bench tooling only: it slows the operator several times, so a run with it measures where the
memory is, not how fast anything is.
"""

from __future__ import annotations

import os
import signal
import time
import tracemalloc
from types import FrameType

TARGET = os.environ.get("TRITONOP_BENCH_TRACEMALLOC")


def _dump(signum: int, frame: FrameType | None) -> None:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    stats = snapshot.statistics("traceback")
    total = sum(stat.size for stat in stats)
    with open(str(TARGET), "a") as out:
        out.write(f"=== {time.strftime('%H:%M:%S')} traced {total / 2**20:.1f} MiB\n")
        for stat in stats[:30]:
            out.write(f"--- {stat.size / 2**20:.2f} MiB in {stat.count} blocks\n")
            for line in stat.traceback.format()[-14:]:
                out.write(line + "\n")
        by_file = snapshot.statistics("filename")[:25]
        out.write("=== by file\n")
        for stat in by_file:
            out.write(f"{stat.size / 2**20:8.2f} MiB {stat.traceback}\n")


if TARGET:
    tracemalloc.start(16)
    signal.signal(signal.SIGUSR2, _dump)
