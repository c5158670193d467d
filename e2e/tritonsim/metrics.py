"""Triton's Prometheus metrics (`:8002/metrics`) as the emulator exposes them.

Names, types, HELP strings and labels are Triton's own (triton-inference-server/core,
`src/metrics.cc`, and its documented sample output), so code that parses real Triton text
parses this text the same way.

The metric families are prometheus-client `Metric` objects produced by a custom Collector on a
private `CollectorRegistry`. The text is written by `render_exposition` rather than by
`prometheus_client.generate_latest`, on purpose: `generate_latest` renames every counter
family to `<name>_total` in its `# HELP`/`# TYPE` lines (the OpenMetrics-to-Prometheus
munging of prometheus-client >= 0.4), while Triton (prometheus-cpp) prints counters without
`_total` — `# TYPE nv_inference_count counter` followed by `nv_inference_count{...} 3`.
prometheus-client's own parser reads those two shapes differently (Triton's as a counter
family; generate_latest's with explicit sample names as an `unknown` family with the counter
family left empty), so an emulator that printed generate_latest's shape would let a metrics
reader pass here and fail against a real Triton. `render_exposition` therefore prints the
registry's families in the Prometheus text format 0.0.4 exactly the way prometheus-cpp
does: HELP and TYPE under the family name, labels sorted by name, integral values without a
decimal point.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry

#: The metrics endpoint's content type, as tritonserver sends it (without the format version).
CONTENT_TYPE = "text/plain; charset=utf-8"

#: The failure reasons Triton labels nv_inference_request_failure with.
FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")

#: family name -> (type, HELP text), in Triton's order of exposition.
TRITON_FAMILIES: dict[str, tuple[str, str]] = {
    "nv_inference_request_success": (
        "counter",
        "Number of successful inference requests, all batch sizes",
    ),
    "nv_inference_request_failure": (
        "counter",
        "Number of failed inference requests, all batch sizes",
    ),
    "nv_inference_count": (
        "counter",
        "Number of inferences performed (does not include cached requests)",
    ),
    "nv_inference_exec_count": (
        "counter",
        "Number of model executions performed (does not include cached requests)",
    ),
    "nv_inference_request_duration_us": (
        "counter",
        "Cumulative inference request duration in microseconds (includes cached requests)",
    ),
    "nv_inference_queue_duration_us": (
        "counter",
        "Cumulative inference queuing duration in microseconds (includes cached requests)",
    ),
    "nv_inference_compute_input_duration_us": (
        "counter",
        "Cumulative compute input duration in microseconds (does not include cached requests)",
    ),
    "nv_inference_compute_infer_duration_us": (
        "counter",
        "Cumulative compute inference duration in microseconds (does not include cached requests)",
    ),
    "nv_inference_compute_output_duration_us": (
        "counter",
        "Cumulative inference compute output duration in microseconds (does not include "
        "cached requests)",
    ),
    "nv_inference_pending_request_count": (
        "gauge",
        "Instantaneous number of pending requests awaiting execution per-model.",
    ),
    "nv_pinned_memory_pool_total_bytes": (
        "gauge",
        "Pinned memory pool total memory size, in bytes",
    ),
    "nv_pinned_memory_pool_used_bytes": ("gauge", "Pinned memory pool used memory size, in bytes"),
    "nv_cpu_utilization": ("gauge", "CPU utilization rate [0.0 - 1.0]"),
    "nv_cpu_memory_total_bytes": ("gauge", "CPU total memory (RAM), in bytes"),
    "nv_cpu_memory_used_bytes": ("gauge", "CPU used memory (RAM), in bytes"),
}


@dataclass(frozen=True)
class ModelMetrics:
    """The per-model, per-version values behind one scrape."""

    model: str
    version: str
    success: int
    failures: dict[str, int] = field(default_factory=dict)
    """Failed requests by Triton's reason label (REJECTED, CANCELED, BACKEND, OTHER)."""
    inference_count: int = 0
    exec_count: int = 0
    request_duration_us: float = 0.0
    queue_duration_us: float = 0.0
    compute_input_duration_us: float = 0.0
    compute_infer_duration_us: float = 0.0
    compute_output_duration_us: float = 0.0
    pending_request_count: int = 0


@dataclass(frozen=True)
class ServerMetrics:
    """Everything one scrape shows: per-model values and the server-wide CPU gauges."""

    models: Sequence[ModelMetrics]
    cpu_utilization: float
    cpu_memory_total_bytes: int
    cpu_memory_used_bytes: int


def _family(name: str) -> Metric:
    kind, help_text = TRITON_FAMILIES[name]
    return Metric(name, help_text, kind)


class TritonCollector:
    """A prometheus-client Collector turning a `ServerMetrics` snapshot into families."""

    def __init__(self, snapshot: Callable[[], ServerMetrics]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        """Build every family from one consistent snapshot (counters never move mid-scrape)."""
        current = self._snapshot()
        per_model: list[tuple[str, Callable[[ModelMetrics], float]]] = [
            ("nv_inference_request_success", lambda m: m.success),
            ("nv_inference_count", lambda m: m.inference_count),
            ("nv_inference_exec_count", lambda m: m.exec_count),
            ("nv_inference_request_duration_us", lambda m: m.request_duration_us),
            ("nv_inference_queue_duration_us", lambda m: m.queue_duration_us),
            ("nv_inference_compute_input_duration_us", lambda m: m.compute_input_duration_us),
            ("nv_inference_compute_infer_duration_us", lambda m: m.compute_infer_duration_us),
            ("nv_inference_compute_output_duration_us", lambda m: m.compute_output_duration_us),
            ("nv_inference_pending_request_count", lambda m: m.pending_request_count),
        ]
        families: dict[str, Metric] = {}
        for name, value_of in per_model:
            family = _family(name)
            for model in current.models:
                labels = {"model": model.model, "version": model.version}
                family.add_sample(name, labels, float(value_of(model)))
            families[name] = family
        failure = _family("nv_inference_request_failure")
        for model in current.models:
            for reason in FAILURE_REASONS:
                labels = {"model": model.model, "reason": reason, "version": model.version}
                failure.add_sample(failure.name, labels, float(model.failures.get(reason, 0)))
        families[failure.name] = failure
        server_values = {
            # No CUDA here, so no pinned memory pool: tritonserver prints both gauges as 0.
            "nv_pinned_memory_pool_total_bytes": 0.0,
            "nv_pinned_memory_pool_used_bytes": 0.0,
            "nv_cpu_utilization": current.cpu_utilization,
            "nv_cpu_memory_total_bytes": float(current.cpu_memory_total_bytes),
            "nv_cpu_memory_used_bytes": float(current.cpu_memory_used_bytes),
        }
        for name, value in server_values.items():
            family = _family(name)
            family.add_sample(name, {}, value)
            families[name] = family
        return [families[name] for name in TRITON_FAMILIES]


def triton_registry(snapshot: Callable[[], ServerMetrics]) -> CollectorRegistry:
    """A private registry holding only Triton's families (no process/python collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TritonCollector(snapshot))
    return registry


def format_value(value: float) -> str:
    """A sample value as prometheus-cpp prints it: integers bare, other floats in full."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def render_exposition(registry: CollectorRegistry) -> bytes:
    """The registry's families in Prometheus text format 0.0.4, shaped like Triton's output."""
    lines: list[str] = []
    for family in registry.collect():
        help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        lines.append(f"# HELP {family.name} {help_text}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            if sample.labels:
                labels = ",".join(
                    f'{key}="{_escape_label_value(value)}"'
                    for key, value in sorted(sample.labels.items())
                )
                lines.append(f"{sample.name}{{{labels}}} {format_value(sample.value)}")
            else:
                lines.append(f"{sample.name} {format_value(sample.value)}")
    return ("\n".join(lines) + "\n").encode()


#: What the `garbage` fault mode serves: starts like Triton's text, then breaks the format
#: (an unterminated label set and a non-numeric value), so every Prometheus parser rejects it.
GARBAGE_EXPOSITION = (
    b"# HELP nv_inference_request_success Number of successful inference requests, all batch "
    b"sizes\n# TYPE nv_inference_request_success counter\n"
    b'nv_inference_request_success{model="simple",version="1" twelve\n'
    b"\x00\xff<html>upstream connect error</html>\n"
)


def absurd_exposition(models: Sequence[str], reads: int) -> bytes:
    """The `absurd` fault mode's page after `reads` earlier reads (issue 11's hostile pair).

    The first read shows 7,000 pending requests; every later one 8,000, the success counter
    5e-9 higher and the queue-duration counter 5 µs higher than the read before: a demand of
    about a billion replicas if taken at face value, from a counter that no Triton could have
    incremented by a fraction.
    """
    success = 1000 + reads * 5e-9
    queued = 1_000_000 + reads * 5
    pending = 7000 if reads == 0 else 8000
    lines = []
    for family, value in (
        ("nv_inference_request_success", repr(success)),
        ("nv_inference_queue_duration_us", str(queued)),
        ("nv_inference_pending_request_count", str(pending)),
    ):
        kind, help_text = TRITON_FAMILIES[family]
        lines += [f"# HELP {family} {help_text}", f"# TYPE {family} {kind}"]
        lines += [f'{family}{{model="{model}",version="1"}} {value}' for model in models]
    return ("\n".join(lines) + "\n").encode()
