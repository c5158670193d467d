"""The Operator-mode autoscaling loop of one InferenceService: observe, decide, carry out.

Every interval: split the service's pods into ready metrics targets and starting capacity,
take one Observation from the metrics source, let the policy (autoscale/policy.py) decide, and
carry the decision out: scale the Deployment when the replicas change (with an Event), and
record the decision in status and /metrics. The loop holds the policy's state between
intervals; everything else it reads fresh from the cluster view each time, so a spec edit or a
new pod counts from the next interval.

kopf runs one loop per Operator-mode service as a daemon (handlers.py); nothing here needs
kopf, so a unit test drives it with a fake clock, an in-memory API, a metrics source that
returns chosen Observations and a stop flag.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, Protocol

from tritonop import conditions as c
from tritonop.api.validation import ParsedService, SpecError, parse_object
from tritonop.autoscale.metrics import MetricsSource
from tritonop.autoscale.observe import MetricsTarget, PodEndpoint
from tritonop.autoscale.policy import PolicyState, decide
from tritonop.autoscale.types import Decision, Observation
from tritonop.observability import (
    CURRENT_REPLICAS,
    DESIRED_REPLICAS,
    METRICS_PROBLEMS,
    SCALE_EVENTS,
    SIGNAL,
)
from tritonop.runtime import Runtime
from tritonop.status import MetricsFields, ServiceKey, StatusFields
from tritonop.statusbook import StatusBook, StatusChange
from tritonop.view import ClusterView

log = logging.getLogger(__name__)

MIN_RATE_WINDOW_SECONDS = 30.0
"""Prometheus' rate() needs at least two samples in its window; 30 s spans two at a 15 s scrape."""


class StopFlag(Protocol):
    """When to stop: kopf's DaemonStopped (true once the service is deleted or leaves Operator
    mode, or the operator exits), whose `wait` returns early when it becomes true."""

    def __bool__(self) -> bool: ...

    def wait(self, timeout: float) -> Awaitable[object]: ...


def operator_mode(body: Mapping[str, Any]) -> bool:
    """Whether the service autoscales in Operator mode: the loop runs for these only.

    An invalid spec has no loop (there is nothing it could act on); fixing the spec starts one.
    """
    try:
        return parse_object(dict(body)).spec.autoscaling_mode == "Operator"
    except SpecError:
        return False


def split_pods(pods: Iterable[Mapping[str, Any]]) -> tuple[tuple[PodEndpoint, ...], int]:
    """Ready pods with an IP (metrics targets) and the count of pods still starting.

    Terminating and finished pods are neither: they are leaving, and counting them as capacity
    on its way would hold back a scale-up.
    """
    ready: list[PodEndpoint] = []
    starting = 0
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            continue
        if c.find_condition(status, c.POD_READY).get("status") == "True" and status.get("podIP"):
            ready.append(PodEndpoint(name=str(meta.get("name")), ip=str(status["podIP"])))
        else:
            starting += 1
    return tuple(ready), starting


def rate_window(interval: float) -> float:
    """Prometheus' rate window: six intervals, so one late scrape does not blank a signal."""
    return max(interval * 6, MIN_RATE_WINDOW_SECONDS)


async def run_autoscaler(
    runtime: Runtime,
    book: StatusBook,
    key: ServiceKey,
    view: ClusterView,
    source: MetricsSource,
    stopped: StopFlag,
) -> None:
    """Autoscale one service every interval until `stopped`; the source forgets it afterwards."""
    interval = runtime.settings.autoscale_interval_seconds
    state: PolicyState | None = None
    try:
        while not stopped:
            started = runtime.clock.monotonic()
            state = await autoscale_once(runtime, book, key, view, source, state)
            await stopped.wait(max(0.0, interval - (runtime.clock.monotonic() - started)))
    finally:
        source.forget(key)


async def autoscale_once(
    runtime: Runtime,
    book: StatusBook,
    key: ServiceKey,
    view: ClusterView,
    source: MetricsSource,
    state: PolicyState | None,
) -> PolicyState | None:
    """One interval; returns the policy state for the next.

    Nothing happens while the service has no valid autoscaling spec or no Deployment yet (the
    reconcile creates it): there is nothing to observe or to scale.
    """
    body = view.service(key)
    deployment = view.deployment(key)
    if body is None or deployment is None:
        return state
    try:
        service = parse_object(body)
    except SpecError:
        return state
    autoscaling = service.spec.autoscaling
    if autoscaling is None:
        return state
    interval = runtime.settings.autoscale_interval_seconds
    current = int((deployment.get("spec") or {}).get("replicas", 1))
    ready, starting = split_pods(view.pods(key))
    target = MetricsTarget(
        namespace=service.namespace,
        name=service.name,
        pods=ready,
        starting=starting,
        models=tuple(autoscaling.models),
        window_s=rate_window(interval),
    )
    observation = await source.observe(target)
    now = runtime.clock.monotonic()
    if state is None:
        state = PolicyState.fresh(now, current)
    decision, state = decide(autoscaling, current, observation, state, now, interval)
    # The API client blocks: off the event loop, which every service's loop shares.
    await asyncio.to_thread(carry_out, runtime, book, body, service, current, decision, observation)
    return state


def carry_out(
    runtime: Runtime,
    book: StatusBook,
    body: Mapping[str, Any],
    service: ParsedService,
    current: int,
    decision: Decision,
    observation: Observation,
) -> None:
    """Scale when the decision differs, then record the decision in status and /metrics."""
    labels = {"namespace": service.namespace, "name": service.name}
    fields: StatusFields = {
        "desiredReplicas": decision.desired_replicas,
        "metrics": metrics_fields(observation),
    }
    record_signals(observation, labels)
    if decision.desired_replicas != current:
        runtime.kube.scale_deployment(service.namespace, service.name, decision.desired_replicas)
        up = decision.desired_replicas > current
        SCALE_EVENTS.labels(direction="up" if up else "down", **labels).inc()
        fields["lastScaleTime"] = runtime.clock.wall()
        fields["lastScale"] = {
            "from": current,
            "to": decision.desired_replicas,
            "reason": decision.reason,
        }
        runtime.kube.event(
            body,
            warning=False,
            reason=c.SCALED_UP if up else c.SCALED_DOWN,
            message=decision.reason,
        )
        log.info(
            "%s/%s scaled %s: %s",
            service.namespace,
            service.name,
            "up" if up else "down",
            decision.reason,
        )

    def status(live: Mapping[str, Any]) -> StatusChange:
        ready = int(live.get("readyReplicas") or 0)
        summary: StatusFields = {
            **fields,
            "replicaSummary": f"{ready}/{decision.desired_replicas}",
        }
        return StatusChange(summary, decision.conditions, int(live.get("observedGeneration") or 0))

    book.update((service.namespace, service.name), body.get("status"), status)
    DESIRED_REPLICAS.labels(**labels).set(decision.desired_replicas)
    CURRENT_REPLICAS.labels(**labels).set(decision.desired_replicas)


def metrics_fields(observation: Observation) -> MetricsFields | None:
    """status.metrics: the signals observed this interval, rounded; None when none was."""
    fields: MetricsFields = {}
    if observation.queue_depth is not None:
        fields["queueDepth"] = round(observation.queue_depth, 3)
    if observation.queue_time_ms is not None:
        fields["queueTimeMs"] = round(observation.queue_time_ms, 3)
    if observation.request_rate is not None:
        fields["requestRate"] = round(observation.request_rate, 3)
    return fields or None


def record_signals(observation: Observation, labels: Mapping[str, str]) -> None:
    """The observed signals and the count of metric problems, on the operator's /metrics."""
    for signal, value in (
        ("queue_depth", observation.queue_depth),
        ("queue_time_ms", observation.queue_time_ms),
        ("request_rate", observation.request_rate),
    ):
        if value is not None:
            SIGNAL.labels(signal=signal, **labels).set(value)
    if observation.problems:
        METRICS_PROBLEMS.labels(**labels).inc(len(observation.problems))
