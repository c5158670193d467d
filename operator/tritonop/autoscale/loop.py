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
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

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
    SIGNALS,
)
from tritonop.runtime import Runtime
from tritonop.status import MetricsFields, ServiceKey, StatusFields
from tritonop.statusbook import Compute, StatusBook, StatusChange
from tritonop.view import ClusterView

log = logging.getLogger(__name__)

STATUS_METRICS_PERIOD_SECONDS = 30.0
"""At most one status write per service per this period for moving numbers alone (metrics,
condition messages that quote them); a new condition status or reason or a replica change is
written at once. HPA writes its status on a 15 s cadence; a busy service's numbers change
every interval, and 1,000 of them at a 5 s interval would be 200 status writes per second."""
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


@dataclass
class LoopState:
    """What one service's loop carries from one interval to the next."""

    status_written: float
    """When this loop last wrote the service's status (monotonic); the loop's start before its
    first write, so a restarted operator does not rewrite every service's metrics at once."""
    policy: PolicyState | None = None
    parsed: tuple[tuple[str, int], ParsedService] | None = None
    """The spec parsed at ((uid, generation)): a status write changes the object every few
    intervals, its spec only with the generation, and parsing is most of an idle interval."""

    series: Signals | None = None

    def signals(self, service: ParsedService) -> Signals:
        """The service's /metrics series (looked up on the first interval)."""
        if self.series is None:
            self.series = Signals.of(service.namespace, service.name)
        return self.series

    def service(self, body: Mapping[str, Any]) -> ParsedService:
        """The parsed service, parsed again only when its generation changed."""
        meta = body.get("metadata") or {}
        version = (str(meta.get("uid")), int(meta.get("generation") or 0))
        if self.parsed is None or self.parsed[0] != version:
            self.parsed = (version, parse_object(dict(body)))
        return self.parsed[1]


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
    state = LoopState(status_written=runtime.clock.monotonic())
    try:
        while not stopped:
            started = runtime.clock.monotonic()
            await autoscale_once(runtime, book, key, view, source, state)
            await stopped.wait(max(0.0, interval - (runtime.clock.monotonic() - started)))
    finally:
        source.forget(key)


async def autoscale_once(
    runtime: Runtime,
    book: StatusBook,
    key: ServiceKey,
    view: ClusterView,
    source: MetricsSource,
    state: LoopState,
) -> None:
    """One interval; updates `state` for the next.

    Nothing happens while the service has no valid autoscaling spec or no Deployment yet (the
    reconcile creates it): there is nothing to observe or to scale.
    """
    body = view.service(key)
    deployment = view.deployment(key)
    if body is None or deployment is None:
        return
    try:
        service = state.service(body)
    except SpecError:
        return
    autoscaling = service.spec.autoscaling
    if autoscaling is None:
        return
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
    if state.policy is None:
        state.policy = PolicyState.fresh(now, current)
    decision, state.policy = decide(autoscaling, current, observation, state.policy, now, interval)
    state.signals(service).record(observation, decision)
    quiet = now - state.status_written < STATUS_METRICS_PERIOD_SECONDS
    if decision.desired_replicas == current and not book.differs(
        key,
        body.get("status"),
        status_part(decision_fields(decision, observation), decision, quiet),
    ):
        return  # nothing to write (the numbers alone wait for the period): no thread needed
    # The API client blocks: off the event loop, which every service's loop shares.
    written = await asyncio.to_thread(
        carry_out, runtime, book, body, service, current, decision, observation, quiet
    )
    if written:
        state.status_written = now


def news(live: Mapping[str, Any], decision: Decision) -> bool:
    """Whether the decision changes what the status `live` says beyond the numbers: the desired
    replicas, or a condition's status or reason (a message quoting new numbers is no news)."""
    if live.get("desiredReplicas") != decision.desired_replicas:
        return True
    return any(
        (found.get("status"), found.get("reason"))
        != ("True" if flag.status else "False", flag.reason)
        for flag in decision.conditions
        for found in [c.find_condition(live, flag.type)]
    )


def carry_out(
    runtime: Runtime,
    book: StatusBook,
    body: Mapping[str, Any],
    service: ParsedService,
    current: int,
    decision: Decision,
    observation: Observation,
    quiet: bool = False,
) -> bool:
    """Scale when the decision differs, then record the decision in status and /metrics;
    True when the status was written.

    `quiet`: the service's status was written less than STATUS_METRICS_PERIOD_SECONDS ago, so
    it is written again only for news (see `news`), checked under the status book's lock.
    """
    labels = {"namespace": service.namespace, "name": service.name}
    fields = decision_fields(decision, observation)
    scaled = decision.desired_replicas != current
    if scaled:
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
    key = (service.namespace, service.name)
    return book.update(key, body.get("status"), status_part(fields, decision, quiet and not scaled))


def decision_fields(decision: Decision, observation: Observation) -> StatusFields:
    """The status fields one interval sets (a scale adds lastScale and lastScaleTime)."""
    return {
        "desiredReplicas": decision.desired_replicas,
        "metrics": metrics_fields(observation),
    }


def status_part(fields: StatusFields, decision: Decision, quiet: bool) -> Compute:
    """The loop's part of the status, computed from the status as it is then; while `quiet`,
    nothing unless the decision is news."""

    def compute(live: Mapping[str, Any]) -> StatusChange | None:
        if quiet and not news(live, decision):
            return None
        ready = int(live.get("readyReplicas") or 0)
        summary: StatusFields = {
            **fields,
            "replicaSummary": f"{ready}/{decision.desired_replicas}",
        }
        return StatusChange(summary, decision.conditions, int(live.get("observedGeneration") or 0))

    return compute


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


@dataclass
class Signals:
    """One service's series on the operator's /metrics, looked up once per loop: the loop
    records them every interval (status carries them at most every 30 s)."""

    desired: Gauge
    current: Gauge
    problems: Counter
    signal: dict[str, Gauge]

    @classmethod
    def of(cls, namespace: str, name: str) -> Signals:
        labels = {"namespace": namespace, "name": name}
        return cls(
            desired=DESIRED_REPLICAS.labels(**labels),
            current=CURRENT_REPLICAS.labels(**labels),
            problems=METRICS_PROBLEMS.labels(**labels),
            signal={s: SIGNAL.labels(signal=s, **labels) for s in SIGNALS},
        )

    def record(self, observation: Observation, decision: Decision) -> None:
        """The observed signals, the count of metric problems and the replicas decided."""
        self.desired.set(decision.desired_replicas)
        self.current.set(decision.desired_replicas)
        for signal, value in (
            ("queue_depth", observation.queue_depth),
            ("queue_time_ms", observation.queue_time_ms),
            ("request_rate", observation.request_rate),
        ):
            if value is not None:
                self.signal[signal].set(value)
        if observation.problems:
            self.problems.inc(len(observation.problems))
