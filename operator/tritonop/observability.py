"""The operator's own Prometheus metrics (prometheus-client), defined once and imported where counted.

Scraped at TRITONOP_METRICS_PORT/metrics. Names follow Prometheus conventions: a `tritonop_`
prefix, base units, `_total` for counters. Per-service series carry `namespace` and `name`
labels and are removed when the InferenceService is deleted, so the series count stays bounded.
"""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "tritonop_reconciles_total",
    "Reconciles of InferenceServices, by trigger (create, update, resume, node, keda, "
    "child-deleted, retry, resync) and result (ok; refused: status says why, e.g. ResourceExists, "
    "ApplyFailed, SecretNotFound; error: retried; invalid; skipped).",
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
