"""The operator's own Prometheus metrics (prometheus-client), defined once and imported where counted.

Scraped at TRITONOP_METRICS_PORT/metrics. Names follow Prometheus conventions: a `tritonop_`
prefix, base units, `_total` for counters. Per-service series carry `namespace` and `name`
labels and are removed when the InferenceService is deleted, so the series count stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "tritonop_reconciles_total",
    "Reconciles of InferenceServices, by trigger (create, update, resume, node, keda, "
    "child-deleted, retry, resync) and result (ok; refused: status says why, e.g. ResourceExists, "
    "ApplyFailed, SecretNotFound; error: retried; invalid; skipped; unchanged: a resync whose "
    "inputs had not changed since the last, see drift.py).",
    ["trigger", "result"],
)
RECONCILE_ERRORS = Counter(
    "tritonop_reconcile_errors_total",
    "Reconciles that raised an error and will be retried, by exception type.",
    ["error"],
)
RECONCILE_DURATION = Histogram(
    "tritonop_reconcile_duration_seconds",
    "Time spent in one reconcile of an InferenceService.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_WRITES = Counter(
    "tritonop_api_writes_total",
    "Write requests the operator sent to the API server, by kind and verb "
    "(apply, scale, status, delete, create).",
    ["kind", "verb"],
)
API_THROTTLED = Counter(
    "tritonop_api_client_throttled_seconds_total",
    "Time requests waited for the client-side rate limit (TRITONOP_KUBE_API_QPS/BURST); "
    "growing steadily means the operator wants more than its limit.",
)
SERVICES_TRACKED = Gauge(
    "tritonop_services_tracked",
    "InferenceServices whose status the operator remembers (0 once every service is deleted).",
)
DESIRED_REPLICAS = Gauge(
    "tritonop_autoscaler_desired_replicas",
    "Replicas the autoscaler wants for an InferenceService.",
    ["namespace", "name"],
)
CURRENT_REPLICAS = Gauge(
    "tritonop_autoscaler_current_replicas",
    "Replicas the Deployment of an InferenceService currently asks for.",
    ["namespace", "name"],
)
READY_REPLICAS = Gauge(
    "tritonop_autoscaler_ready_replicas",
    "Ready Triton pods of an InferenceService.",
    ["namespace", "name"],
)
SIGNAL = Gauge(
    "tritonop_autoscaler_signal",
    "Last observed autoscaling signal of an InferenceService "
    "(queue_depth per replica, queue_time_ms per request, request_rate per second).",
    ["namespace", "name", "signal"],
)
SCALE_EVENTS = Counter(
    "tritonop_autoscaler_scale_events_total",
    "Replica changes carried out by the autoscaler, by direction.",
    ["namespace", "name", "direction"],
)
METRICS_PROBLEMS = Counter(
    "tritonop_autoscaler_metric_problems_total",
    "Pods whose Triton metrics were missing, unreachable or unparsable in an interval.",
    ["namespace", "name"],
)

EVENT_LOOP_LAG = Gauge(
    "tritonop_event_loop_lag_seconds",
    "Largest delay of the operator's event loop over the last window: how late a timer due "
    "every tick ran. Every watch, handler, autoscaling loop and /healthz shares this loop; "
    "lag above a second means something blocks it.",
)

PER_SERVICE = (DESIRED_REPLICAS, CURRENT_REPLICAS, READY_REPLICAS, SCALE_EVENTS, METRICS_PROBLEMS)
SIGNALS = ("queue_depth", "queue_time_ms", "request_rate")


def forget_service(namespace: str, name: str) -> None:
    """Drop the per-service series of a deleted InferenceService."""
    for metric in PER_SERVICE:
        for labels in list(metric._metrics):  # prometheus-client keeps children keyed by labels
            if labels[:2] == (namespace, name):
                metric.remove(*labels)
    for signal in SIGNALS:
        with contextlib.suppress(KeyError):
            SIGNAL.remove(namespace, name, signal)


class LoopLagMonitor:
    """Measures the event loop's lag into EVENT_LOOP_LAG: started at operator startup.

    A timer due every `tick` seconds notes how late it runs; each `window` the largest delay
    is published (a maximum, so one stall between two Prometheus scrapes still shows).
    """

    def __init__(self, tick: float = 0.1, window: float = 5.0) -> None:
        self.tick = tick
        self.window = window
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start measuring on the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._measure())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        worst = 0.0
        window_end = loop.time() + self.window
        while True:
            due = loop.time() + self.tick
            await asyncio.sleep(self.tick)
            now = loop.time()
            worst = max(worst, now - due)
            if now >= window_end:
                EVENT_LOOP_LAG.set(worst)
                worst = 0.0
                window_end = now + self.window
