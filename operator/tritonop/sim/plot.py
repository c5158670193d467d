"""A picture of one simulation: load, replicas and latency over time (matplotlib, optional).

Builds the figure in memory; the caller (the CLI) decides where it goes. matplotlib is the
optional extra `plot` (`pip install 'tritonop[plot]'`) and is imported only here.
"""

from __future__ import annotations

import importlib
from typing import Any

from tritonop.sim.engine import SimulationResult, bucket_latency
from tritonop.sim.traces import rate_of

BUCKET_S = 10.0


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def figure(result: SimulationResult, title: str) -> Any:
    """Three stacked panels sharing the time axis (minutes): req/s, replicas, latency p99."""
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        pyplot = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib: pip install 'tritonop[plot]' (or pip install matplotlib)"
        ) from None
    fig, (load, replicas, latency) = pyplot.subplots(3, 1, sharex=True, figsize=(10, 8))
    rates = rate_of(result.arrivals, BUCKET_S)
    load.plot([(i + 0.5) * BUCKET_S / 60 for i in range(len(rates))], rates, lw=1)
    load.set_ylabel("requests/s")
    minutes = [t / 60 for t in result.timeline.times]
    replicas.step(minutes, result.timeline.replicas, where="post", label="existing")
    replicas.step(minutes, result.timeline.ready, where="post", label="ready")
    replicas.set_ylabel("replicas")
    replicas.legend(loc="upper right")
    times, p99 = bucket_latency(result.arrivals, result.latencies, BUCKET_S, 99.0)
    latency.plot([t / 60 for t in times], [value * 1000 for value in p99], lw=1, label="p99")
    latency.axhline(result.slo_ms, color="red", ls="--", lw=1, label=f"SLO {result.slo_ms:g} ms")
    latency.set_yscale("log")
    latency.set_ylabel("latency ms (by arrival)")
    latency.set_xlabel("minutes")
    latency.legend(loc="upper right")
    fig.suptitle(
        f"{title}: SLO met by {result.slo_attainment * 100:.2f}% of requests, "
        f"{result.replica_seconds:.0f} replica-seconds"
    )
    fig.tight_layout()
    return fig
