"""PromQL for Triton's autoscaling signals, shared by every path that asks Prometheus.

Three consumers need the same numbers and must not drift apart: `PrometheusSource` (Operator
mode with a Prometheus server), the triggers of the KEDA ScaledObject, and the
prometheus-adapter rules behind HPA mode's Pods metrics. All of them are built here, as plain
strings from plain arguments (no I/O).

How pods are selected. Triton's series carry the `namespace` and `pod` labels that a
PodMonitor / ServiceMonitor (such as the chart's) attaches to every scraped series. The pods of
an InferenceService are its Deployment's pods, named `<name>-<pod-template-hash>-<suffix>`, so
they are matched by `namespace="<ns>"` and `pod=~"<name>-[a-z0-9]+-[a-z0-9]+"`. Both suffixes
are free of '-', and PromQL regexes are fully anchored, so the pods of a service called
`<name>-canary` (`<name>-canary-<hash>-<suffix>`: three segments) never match `<name>`'s
pattern. When the caller knows the exact pods (the operator does: the ready ones), it selects
them by name instead.

Counter names. Triton exposes its counters without the `_total` suffix
(`nv_inference_request_success`), and Prometheus stores them under exactly that name, so the
queries use the names as Triton prints them.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

import yaml

PENDING_REQUESTS = "nv_inference_pending_request_count"
"""Gauge: requests waiting in the scheduler queue, per model and version."""
QUEUE_DURATION_US = "nv_inference_queue_duration_us"
"""Counter: cumulative microseconds requests spent queued (added when a request completes)."""
REQUEST_SUCCESS = "nv_inference_request_success"
"""Counter: successful requests (a batch-8 request counts once)."""

QUEUE_DEPTH_METRIC = "triton_queue_depth"
"""Pods metric served by prometheus-adapter: pending requests of one pod (all its models)."""
QUEUE_TIME_METRIC = "triton_queue_time_ms"
"""Pods metric served by prometheus-adapter: average queue time per request of one pod, ms."""

DEFAULT_RATE_WINDOW_SECONDS = 60.0
"""Rate window: four scrapes at Prometheus' common 15 s interval, so rate() has enough points
and a single late scrape does not blank the signal."""

_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")

# prometheus-adapter's Go-template placeholders, filled in per request by the adapter.
_ADAPTER_MATCHERS = "<<.LabelMatchers>>"
_ADAPTER_GROUP_BY = "<<.GroupBy>>"


def quote(value: str) -> str:
    """A PromQL double-quoted string literal holding `value` verbatim."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def regex_literal(value: str) -> str:
    """An RE2 pattern matching exactly `value`: metacharacters are backslash-escaped.

    Names are DNS labels today, but model names are free text in Triton (dots are common),
    and a '.' left unescaped would silently match other models.
    """
    return "".join(f"\\{char}" if char in _RE2_SPECIAL else char for char in value)


def deployment_pod_pattern(name: str) -> str:
    """RE2 pattern of the pod names of Deployment `name` (`<name>-<hash>-<suffix>`)."""
    return f"{regex_literal(name)}-[a-z0-9]+-[a-z0-9]+"


def _model_matcher(models: Collection[str]) -> list[str]:
    """The `model=~"a|b"` matcher restricting series to `models`; none when empty (all)."""
    if not models:
        return []
    alternatives = "|".join(regex_literal(model) for model in sorted(set(models)))
    return [f"model=~{quote(alternatives)}"]


def service_selector(namespace: str, name: str, models: Collection[str] = ()) -> str:
    """Label matchers (without braces) for the series of every pod of InferenceService `name`."""
    matchers = [
        f"namespace={quote(namespace)}",
        f"pod=~{quote(deployment_pod_pattern(name))}",
        *_model_matcher(models),
    ]
    return ",".join(matchers)


def pods_selector(namespace: str, pod_names: Sequence[str], models: Collection[str] = ()) -> str:
    """Label matchers (without braces) for the series of exactly `pod_names`.

    The operator uses this with the pods it knows to be Ready, so series of terminating pods,
    which Prometheus keeps for minutes after they vanish, do not pollute the average.
    """
    if not pod_names:
        raise ValueError("pods_selector needs at least one pod name")
    alternatives = "|".join(regex_literal(pod) for pod in sorted(set(pod_names)))
    return ",".join(
        [f"namespace={quote(namespace)}", f"pod=~{quote(alternatives)}", *_model_matcher(models)]
    )


def duration(seconds: float) -> str:
    """A PromQL duration for a rate window: whole seconds as "60s", fractions as "1500ms"."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a rate window must be a positive number of seconds, got {seconds!r}")
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def _aggregate(expression: str, by: str | None) -> str:
    """`sum(expression)`, grouped `by` the given labels when set."""
    return f"sum by ({by}) ({expression})" if by else f"sum({expression})"


def queue_depth(selector: str, *, by: str | None = None) -> str:
    """Pending requests summed over the selected series (per `by` group, e.g. "pod").

    Without `by` this is the service's total backlog: what KEDA's AverageValue target divides
    by the replica count.
    """
    return _aggregate(f"{PENDING_REQUESTS}{{{selector}}}", by)


def queue_depth_average(selector: str) -> str:
    """Average over pods of each pod's pending requests (all selected models of the pod)."""
    return f"avg({queue_depth(selector, by='pod')})"


def queue_duration_rate(selector: str, window: str, *, by: str | None = None) -> str:
    """Microseconds of queueing per second, summed over the selected series."""
    return _aggregate(f"rate({QUEUE_DURATION_US}{{{selector}}}[{window}])", by)


def request_rate(selector: str, window: str, *, by: str | None = None) -> str:
    """Successful requests per second, summed over the selected series."""
    return _aggregate(f"rate({REQUEST_SUCCESS}{{{selector}}}[{window}])", by)


def queue_time_ms(selector: str, window: str, *, by: str | None = None) -> str:
    """Average queue time per successful request in milliseconds (per `by` group).

    The plain ratio is NaN (0/0) when a group had no requests in the window. NaN is useless to
    HPA and KEDA, but "absent" would read as missing metrics, and an idle service must still be
    able to scale down. So a group whose success rate is exactly 0 reports 0 ms, but only if
    its queue-duration series exists too: a group missing either series stays absent, which
    the consumers treat as missing data (KEDA with ignoreNullValues "false", HPA by not
    scaling down), never as zero.
    """
    queued = queue_duration_rate(selector, window, by=by)
    succeeded = request_rate(selector, window, by=by)
    ratio = f"{queued} / ({succeeded} > 0) / 1000"
    idle = f"({queued} * 0) and ({succeeded} == 0)"
    return f"({ratio}) or ({idle})"


def adapter_rules(window_seconds: float = DEFAULT_RATE_WINDOW_SECONDS) -> dict[str, Any]:
    """prometheus-adapter custom-metrics rules exposing the two HPA-mode Pods metrics.

    `triton_queue_depth` is a pod's pending requests and `triton_queue_time_ms` its average
    queue time per request; the HPA averages them over the target's pods. The adapter fills
    <<.LabelMatchers>> with the namespace, the pod names and any metric selector of the HPA
    (tritonop sets one on `model` when spec.autoscaling.models is set), and <<.GroupBy>> with
    `pod`.
    """
    window = duration(window_seconds)

    def resources() -> dict[str, Any]:
        # A fresh mapping per rule: a shared one would be dumped as a YAML anchor and alias.
        return {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}}

    return {
        "rules": [
            {
                "seriesQuery": f'{PENDING_REQUESTS}{{namespace!="",pod!=""}}',
                "resources": resources(),
                "name": {"matches": f"^{PENDING_REQUESTS}$", "as": QUEUE_DEPTH_METRIC},
                "metricsQuery": queue_depth(_ADAPTER_MATCHERS, by=_ADAPTER_GROUP_BY),
            },
            {
                "seriesQuery": f'{QUEUE_DURATION_US}{{namespace!="",pod!=""}}',
                "resources": resources(),
                "name": {"matches": f"^{QUEUE_DURATION_US}$", "as": QUEUE_TIME_METRIC},
                "metricsQuery": queue_time_ms(_ADAPTER_MATCHERS, window, by=_ADAPTER_GROUP_BY),
            },
        ]
    }


ADAPTER_RULES_HEADER = """\
# prometheus-adapter custom-metrics rules for tritonop's HPA mode (autoscaling.mode: HPA).
# They expose Triton's queue signals as Pods metrics:
#   triton_queue_depth    pending requests of a pod (nv_inference_pending_request_count)
#   triton_queue_time_ms  average queue time per request of a pod, in milliseconds
#                         (rate of nv_inference_queue_duration_us / rate of
#                         nv_inference_request_success; 0 when the pod had no requests)
# Add these entries to prometheus-adapter's `rules.custom` (Helm chart value) or to the
# `rules:` list of its config file. They need Triton's series labelled with `namespace` and
# `pod`, as the tritonop chart's PodMonitor does.
#
# GENERATED by tritonop.autoscale.promql.adapter_rules_yaml(); do not edit by hand.
# Regenerate with:
#   python -c "import tritonop.autoscale.promql as p; print(p.adapter_rules_yaml(), end='')" \\
#     > charts/tritonop/files/prometheus-adapter-rules.yaml
"""


def adapter_rules_yaml(window_seconds: float = DEFAULT_RATE_WINDOW_SECONDS) -> str:
    """The text of charts/tritonop/files/prometheus-adapter-rules.yaml."""
    body = yaml.safe_dump(adapter_rules(window_seconds), sort_keys=False, width=1000)
    return ADAPTER_RULES_HEADER + body
