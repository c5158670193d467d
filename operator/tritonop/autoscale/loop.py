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
import contextlib
import logging
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import urllib3
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter, Gauge

from tritonop import conditions as c
from tritonop.api.validation import ParsedService, SpecError, parse_object
from tritonop.autoscale.coldstart import cold_start_seconds, pod_start
from tritonop.autoscale.deletioncost import deletion_costs
from tritonop.autoscale.metrics import MetricsSource
from tritonop.autoscale.observe import MetricsTarget, PodEndpoint
from tritonop.autoscale.policy import PolicyState, decide
from tritonop.autoscale.types import ConditionFlag, Decision, Observation
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


def pods_cold_start(pods: Iterable[Mapping[str, Any]]) -> float | None:
    """How long the service's latest pods took from creation to Ready (autoscale/coldstart.py).

    Measured here, on the pods the operator's own Deployment made, because the objective's
    headroom is sized for the cold start of this model on this cluster; the metrics source
    only sees pods that already serve.
    """
    starts = (
        pod_start(pod) for pod in pods if not (pod.get("metadata") or {}).get("deletionTimestamp")
    )
    return cold_start_seconds(start for start in starts if start is not None)


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
    last_interval: tuple[MetricsTarget, int, str, int] | None = None
    """The target, the replicas and the spec's version of the last interval that decided."""

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


MAX_BACKOFF_SECONDS = 60.0
"""Longest wait after the API server throttled the loop (429), Retry-After included."""

WRITE_ERRORS: tuple[type[BaseException], ...] = (
    ApiException,
    urllib3.exceptions.HTTPError,
    OSError,
)
"""What a refused or unanswered write raises: an API status, or the connection failing."""


@dataclass(frozen=True)
class WriteFailure:
    """A write of one interval that the API server refused or never answered."""

    write: str
    """Which write: "scale" or "status"."""
    status: int | None
    """The HTTP status (409, 429, 500, ...); None when there was no answer."""
    message: str
    retry_after: float | None = None
    """The server's Retry-After, in seconds, when it sent one."""

    @property
    def throttled(self) -> bool:
        return self.status == 429

    @classmethod
    def of(cls, write: str, error: BaseException) -> WriteFailure:
        if isinstance(error, ApiException):
            headers = error.headers or {}
            retry_after = None
            with contextlib.suppress(TypeError, ValueError):  # absent, or an HTTP date
                retry_after = max(0.0, float(str(headers.get("Retry-After"))))
            reason = f"HTTP {error.status} {error.reason or ''}".strip()
            return cls(write, int(error.status or 0) or None, reason, retry_after)
        return cls(write, None, f"{type(error).__name__}: {error}"[:200])


@dataclass(frozen=True)
class Outcome:
    """What one interval's writes did: whether the status was written, and a write that
    failed (retried at the next interval)."""

    status_written: bool = False
    failure: WriteFailure | None = None


def next_delay(interval: float, failure: WriteFailure | None, throttled: int) -> float:
    """Seconds from this interval's start to the next one's.

    A failed write is retried at the next interval (the decision is made again from fresh
    metrics, with the policy state kept). After `throttled` 429s in a row the loop backs off:
    one interval after the first, doubling after each further one, at least the server's
    Retry-After, at most MAX_BACKOFF_SECONDS (or the interval, if longer).
    """
    if failure is None or not failure.throttled:
        return interval
    backoff = interval * 2.0 ** max(0, throttled - 1)
    if failure.retry_after is not None:
        backoff = max(backoff, failure.retry_after)
    return min(backoff, max(MAX_BACKOFF_SECONDS, interval))


async def run_autoscaler(
    runtime: Runtime,
    book: StatusBook,
    key: ServiceKey,
    view: ClusterView,
    source: MetricsSource,
    stopped: StopFlag,
) -> None:
    """Autoscale one service every interval until `stopped`; the source forgets it afterwards.

    An interval whose writes fail does not end the loop: the policy state lives on (its
    stabilization windows are not reset) and the writes are made again next interval.
    """
    interval = runtime.settings.autoscale_interval_seconds
    state = LoopState(status_written=runtime.clock.monotonic())
    throttled = 0
    try:
        while not stopped:
            started = runtime.clock.monotonic()
            failure = (await autoscale_once(runtime, book, key, view, source, state)).failure
            throttled = throttled + 1 if failure is not None and failure.throttled else 0
            delay = next_delay(interval, failure, throttled)
            await stopped.wait(max(0.0, delay - (runtime.clock.monotonic() - started)))
    finally:
        source.forget(key)


async def autoscale_once(
    runtime: Runtime,
    book: StatusBook,
    key: ServiceKey,
    view: ClusterView,
    source: MetricsSource,
    state: LoopState,
) -> Outcome:
    """One interval; updates `state` for the next and returns what its writes did.

    Nothing happens while the service has no valid autoscaling spec or no Deployment yet (the
    reconcile creates it): there is nothing to observe or to scale.
    """
    body = view.service(key)
    deployment = view.deployment(key)
    if body is None or deployment is None:
        return Outcome()
    try:
        service = state.service(body)
    except SpecError:
        return Outcome()
    autoscaling = service.spec.autoscaling
    if autoscaling is None:
        return Outcome()
    interval = runtime.settings.autoscale_interval_seconds
    current = int((deployment.get("spec") or {}).get("replicas", 1))
    pods = view.pods(key)
    ready, starting = split_pods(pods)
    target = MetricsTarget(
        namespace=service.namespace,
        name=service.name,
        pods=ready,
        starting=starting,
        models=tuple(autoscaling.models),
        window_s=rate_window(interval),
    )
    seen = (target, current, service.uid, service.generation)
    if seen == state.last_interval and not source.has_news(target):
        # The same pods, replicas and spec, and none of its failing pods is due a read yet:
        # the decision would be the last one again (the policy holds without metrics).
        return Outcome()
    state.last_interval = seen
    observation = replace(await source.observe(target), cold_start_seconds=pods_cold_start(pods))
    now = runtime.clock.monotonic()
    before = state.policy or PolicyState.fresh(now, current)
    decision, state.policy = decide(autoscaling, current, observation, before, now, interval)
    signals = state.signals(service)
    signals.observed(observation)
    quiet = now - state.status_written < STATUS_METRICS_PERIOD_SECONDS
    if decision.desired_replicas == current and not book.differs(
        key,
        body.get("status"),
        status_part(
            decision_fields(decision, observation), decision.conditions, decision, current, quiet
        ),
    ):
        signals.replicas(decision.desired_replicas, current)
        return Outcome()  # nothing to write (the numbers alone wait for the period): no thread
    # The API client blocks: off the event loop, which every service's loop shares.
    outcome = await asyncio.to_thread(
        carry_out, runtime, book, body, service, current, decision, observation, pods, quiet
    )
    failure = outcome.failure
    scale_failed = failure is not None and failure.write == "scale"
    if scale_failed:
        # The replicas did not change: no scale event for the rate limits to count. The
        # recommendations (the stabilization windows) stay, so the retry decides the same.
        state.policy = replace(state.policy, scale_events=before.scale_events)
    signals.replicas(
        decision.desired_replicas, current if scale_failed else decision.desired_replicas
    )
    if outcome.status_written:
        state.status_written = now
    return outcome


def news(live: Mapping[str, Any], flags: Sequence[ConditionFlag], desired: int) -> bool:
    """Whether a status with `flags` and `desired` replicas changes what the status `live`
    says beyond the numbers: the desired replicas, or a condition's status or reason (a
    message quoting new numbers is no news)."""
    if live.get("desiredReplicas") != desired:
        return True
    return any(
        (found.get("status"), found.get("reason"))
        != ("True" if flag.status else "False", flag.reason)
        for flag in flags
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
    pods: Sequence[Mapping[str, Any]],
    quiet: bool = False,
) -> Outcome:
    """Scale when the decision differs, then record the decision in status and /metrics.

    `quiet`: the service's status was written less than STATUS_METRICS_PERIOD_SECONDS ago, so
    it is written again only for news (see `news`), checked under the status book's lock; a
    scale, made or refused, is always news.

    Before a scale-down the service's pods get their pod-deletion-cost (`spare_busy_pods`),
    so the ReplicaSet removes idle pods rather than busy ones. A refused scale write leaves the
    replicas as they are and says so in status (AbleToScale=False, FailedUpdateScale); a refused status write is logged. Either is
    returned, for the loop to retry next interval. Events are best effort: one the API
    server refuses is logged and dropped.
    """
    key = (service.namespace, service.name)
    fields = decision_fields(decision, observation)
    flags: Sequence[ConditionFlag] = decision.conditions
    failure: WriteFailure | None = None
    replicas = current
    scaling = decision.desired_replicas != current
    if scaling:
        if decision.desired_replicas < current:
            spare_busy_pods(runtime, service, pods, observation)
        try:
            runtime.kube.scale_deployment(
                service.namespace, service.name, decision.desired_replicas
            )
        except WRITE_ERRORS as error:
            failure = WriteFailure.of("scale", error)
            flags = c.with_condition(flags, _unable(failure, current, decision))
            log.warning(
                "%s/%s: scaling %d -> %d failed (%s); retried next interval",
                *key,
                current,
                decision.desired_replicas,
                failure.message,
            )
        else:
            replicas = decision.desired_replicas
            fields.update(_scaled(runtime, body, service, current, decision))
    written = False
    try:
        written = book.update(
            key,
            body.get("status"),
            status_part(fields, flags, decision, replicas, quiet and not scaling),
        )
    except WRITE_ERRORS as error:
        failed = WriteFailure.of("status", error)
        log.warning("%s/%s: status write failed (%s); retried next interval", *key, failed.message)
        failure = failure or failed
    return Outcome(written, failure)


def decision_fields(decision: Decision, observation: Observation) -> StatusFields:
    """The status fields one interval sets (a scale adds lastScale and lastScaleTime)."""
    return {
        "desiredReplicas": decision.desired_replicas,
        "metrics": metrics_fields(observation),
    }


def status_part(
    fields: StatusFields,
    flags: Sequence[ConditionFlag],
    decision: Decision,
    replicas: int,
    quiet: bool,
) -> Compute:
    """The loop's part of the status, computed from the status as it is then; while `quiet`,
    nothing unless it is news. The summary counts Ready of the `replicas` the Deployment has
    (the decision, unless its write failed): the reconcile's resync writes the same summary,
    so the two never undo each other."""

    def compute(live: Mapping[str, Any]) -> StatusChange | None:
        if quiet and not news(live, flags, decision.desired_replicas):
            return None
        ready = int(live.get("readyReplicas") or 0)
        summary: StatusFields = {**fields, "replicaSummary": f"{ready}/{replicas}"}
        return StatusChange(summary, flags, int(live.get("observedGeneration") or 0))

    return compute


def spare_busy_pods(
    runtime: Runtime,
    service: ParsedService,
    pods: Sequence[Mapping[str, Any]],
    observation: Observation,
) -> None:
    """Write pod-deletion-cost on the owned pods whose unfinished work changed its value.

    Best effort: a refused write is logged and the scale-down goes ahead (the ReplicaSet then
    picks by its own ranking, as it would without the annotation).
    """
    changes = deletion_costs(service.name, pods, dict(observation.pod_work))
    for pod, cost in sorted(changes.items()):
        try:
            runtime.kube.set_pod_deletion_cost(service.namespace, pod, cost)
        except WRITE_ERRORS as error:
            log.warning(
                "%s/%s: pod-deletion-cost of %s not written: %s",
                service.namespace,
                service.name,
                pod,
                error,
            )


def _unable(failure: WriteFailure, current: int, decision: Decision) -> ConditionFlag:
    """AbleToScale=False while the scale write fails, saying why and when it is tried again."""
    retry = "retried at the next interval"
    if failure.throttled:
        retry = "retried after backing off" + (
            f" (Retry-After {failure.retry_after:g}s)" if failure.retry_after is not None else ""
        )
    return ConditionFlag(
        c.ABLE_TO_SCALE,
        False,
        c.FAILED_UPDATE_SCALE,
        f"scaling from {current} to {decision.desired_replicas} replicas failed: "
        f"{failure.message}; {retry}",
    )


def _scaled(
    runtime: Runtime,
    body: Mapping[str, Any],
    service: ParsedService,
    current: int,
    decision: Decision,
) -> StatusFields:
    """Count, announce and log a scale that happened; the status fields that record it."""
    up = decision.desired_replicas > current
    direction = "up" if up else "down"
    SCALE_EVENTS.labels(direction=direction, namespace=service.namespace, name=service.name).inc()
    try:
        runtime.kube.event(
            body,
            warning=False,
            reason=c.SCALED_UP if up else c.SCALED_DOWN,
            message=decision.reason,
        )
    except WRITE_ERRORS as error:
        log.warning("%s/%s: event not posted: %s", service.namespace, service.name, error)
    log.info("%s/%s scaled %s: %s", service.namespace, service.name, direction, decision.reason)
    return {
        "lastScaleTime": runtime.clock.wall(),
        "lastScale": {"from": current, "to": decision.desired_replicas, "reason": decision.reason},
    }


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

    def observed(self, observation: Observation) -> None:
        """The observed signals and the count of metric problems."""
        for signal, value in (
            ("queue_depth", observation.queue_depth),
            ("queue_time_ms", observation.queue_time_ms),
            ("request_rate", observation.request_rate),
        ):
            if value is not None:
                self.signal[signal].set(value)
        if observation.problems:
            self.problems.inc(len(observation.problems))

    def replicas(self, desired: int, current: int) -> None:
        """The replicas decided, and those the Deployment has now (fewer when a scale failed)."""
        self.desired.set(desired)
        self.current.set(current)
