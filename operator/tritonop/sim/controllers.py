"""Autoscalers the simulator can run: the operator's policy and the baselines it is judged by.

* `operator`: `autoscale.policy.decide`, fed an `Observation` built the way the operator's
  metrics reader builds it (see `observe`), every TRITONOP_AUTOSCALE_INTERVAL_SECONDS.
* `hpa`: the Kubernetes HorizontalPodAutoscaler (autoscaling/v2) on the Pods metrics of the
  shipped prometheus-adapter rules (`triton_queue_depth`, `triton_queue_time_ms` over a 60 s
  rate window), with the same targets, HPA's 15 s sync period, 10% tolerance, its handling of
  pods that are not ready or have no metrics, and the spec's behavior with Kubernetes'
  defaults. Prometheus' scrape delay is not modelled (which favours the HPA).
* `kpa`: Knative's KPA on concurrency (requests in flight per pod): 2 s tick, 60 s stable
  and 6 s panic windows, panic at 200%, scale down at most halving per tick, target
  utilisation 70%. Its per-pod concurrency target is derived from the spec: the queue depth
  target plus the requests the pod executes at once (`instances`), i.e. the in-flight count
  of a replica holding its queue target; with only `queueTimeMs`, instances times
  (1 + queueTimeMs / service time), the in-flight count Little's law gives at that wait.
* `static:N`: N replicas, always.
* `oracle`: knows every future arrival. For each window (30 s) it finds, by simulating the
  window, the fewest replicas that serve every request of the window within the SLO, and
  starts them one cold start ahead. Its replica-seconds are the cost floor.

All get the same bounds (minReplicas/maxReplicas) except `static:N`, and the same cold start.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tritonop.api.models import Autoscaling
from tritonop.autoscale import promql
from tritonop.autoscale.behavior import (
    KUBERNETES_SCALE_DOWN_WINDOW_SECONDS,
    history_horizon,
    normalize,
    resolve_behavior,
)
from tritonop.autoscale.policy import PolicyState, decide
from tritonop.autoscale.types import Decision, Observation
from tritonop.sim.engine import Replica, ServiceConfig, ServiceView, simulate

OPERATOR_INTERVAL_S = 5.0
HPA_SYNC_PERIOD_S = 15.0
HPA_TOLERANCE = 0.1
KPA_TICK_S = 2.0
KPA_STABLE_WINDOW_S = 60.0
KPA_PANIC_WINDOW_S = 6.0
KPA_PANIC_THRESHOLD = 2.0
KPA_TARGET_UTILIZATION = 0.7
KPA_MAX_SCALE_DOWN_RATE = 2.0
KPA_MAX_SCALE_UP_RATE = 1000.0
ORACLE_WINDOW_S = 30.0
ORACLE_INTERVAL_S = 1.0


# --------------------------------------------------------------------------------------------
# operator
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Counters:
    time: float
    success: int
    queue_us: float


def _queue_time_ms(queued_us: float, successes: float, pending_total: float) -> float | None:
    """As the metrics reader: 0 at true idle, None when requests wait but none finished."""
    if successes > 0:
        return queued_us / successes / 1000.0
    return 0.0 if pending_total == 0 else None


class OperatorController:
    """The operator's policy, fed the Observation the operator's metrics reader would build."""

    name = "operator"

    def __init__(self, spec: Autoscaling, interval: float = OPERATOR_INTERVAL_S) -> None:
        self.spec = spec
        self.interval = interval
        self.state: PolicyState | None = None
        self.previous: dict[int, _Counters] = {}
        self.decisions: list[tuple[float, Observation, Decision]] = []

    def observe(self, now: float, service: ServiceView) -> Observation:
        """Gauge at the tick; rates and queue time from counter deltas since the last tick.

        A replica seen for the first time contributes its queue depth only, as a pod scraped
        for the first time does; draining and starting replicas are not scraped.
        """
        pending_total = 0.0
        rate_pods = 0
        queued_us = successes = request_rate = 0.0
        current: dict[int, _Counters] = {}
        for replica in service.ready:
            model = replica.model
            pending_total += model.pending_count
            counters = _Counters(now, model.success_count, model.queue_duration_us)
            current[replica.id] = counters
            before = self.previous.get(replica.id)
            if before is None or now <= before.time:
                continue
            rate_pods += 1
            delta = counters.success - before.success
            queued_us += counters.queue_us - before.queue_us
            successes += delta
            request_rate += delta / (now - before.time)
        self.previous = current
        reporting = len(service.ready)
        return Observation(
            time=now,
            ready_replicas=reporting,
            starting_replicas=len(service.starting),
            reporting_replicas=reporting,
            queue_depth=pending_total / reporting if reporting else None,
            queue_time_ms=_queue_time_ms(queued_us, successes, pending_total)
            if rate_pods
            else None,
            request_rate=request_rate if rate_pods else None,
        )

    def decide(self, now: float, service: ServiceView) -> int:
        if self.state is None:
            self.state = PolicyState.fresh(0.0, service.desired)
        observation = self.observe(now, service)
        decision, self.state = decide(
            self.spec, service.desired, observation, self.state, now, self.interval
        )
        self.decisions.append((now, observation, decision))
        return decision.desired_replicas


# --------------------------------------------------------------------------------------------
# Kubernetes HPA
# --------------------------------------------------------------------------------------------


def hpa_metric_replicas(
    values: Sequence[float],
    missing: int,
    unready: int,
    target: float,
    current: int,
    tolerance: float = HPA_TOLERANCE,
) -> int:
    """HPA's replica count for one Pods metric (calcPlainMetricReplicas).

    `values` come from ready pods with the metric, `missing` pods run without it, `unready`
    pods are not ready yet. On scale-up missing and unready pods count as 0; on scale-down
    missing pods count as the target; a change of direction or one within the tolerance
    keeps the current count.
    """
    if not values:
        raise ValueError("no pod reported the metric")
    ratio = sum(values) / len(values) / target
    rebalance_unready = unready > 0 and ratio > 1.0
    if not rebalance_unready and missing == 0:
        if abs(ratio - 1.0) <= tolerance:
            return current
        return math.ceil(ratio * len(values) - 1e-9)
    filled = list(values)
    if missing:
        if ratio < 1.0:
            filled += [target] * missing
        elif ratio > 1.0:
            filled += [0.0] * missing
    if rebalance_unready:
        filled += [0.0] * unready
    new_ratio = sum(filled) / len(filled) / target
    if (
        abs(new_ratio - 1.0) <= tolerance
        or (ratio < 1.0 and new_ratio > 1.0)
        or (ratio > 1.0 and new_ratio < 1.0)
    ):
        return current
    replicas = math.ceil(new_ratio * len(filled) - 1e-9)
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current
    return replicas


class HPAController:
    """Kubernetes' HPA on the prometheus-adapter Pods metrics of HPA mode."""

    name = "hpa"

    def __init__(
        self,
        spec: Autoscaling,
        interval: float = HPA_SYNC_PERIOD_S,
        rate_window: float = promql.DEFAULT_RATE_WINDOW_SECONDS,
    ) -> None:
        self.spec = spec
        self.interval = interval
        self.rate_window = rate_window
        self.up, self.down = resolve_behavior(
            spec.behavior, scale_down_window=KUBERNETES_SCALE_DOWN_WINDOW_SECONDS
        )
        self.samples: dict[int, deque[_Counters]] = {}
        self.recommendations: list[tuple[float, int]] = []
        self.events: list[tuple[float, int]] = []

    def _queue_time(self, now: float, replica: Replica) -> float | None:
        """rate(queue_us[w]) / rate(success[w]) / 1000 per pod, 0 when idle, None when unknown."""
        model = replica.model
        history = self.samples.setdefault(replica.id, deque())
        history.append(_Counters(now, model.success_count, model.queue_duration_us))
        while len(history) > 2 and history[1].time <= now - self.rate_window:
            history.popleft()
        if len(history) < 2:
            return None
        first, last = history[0], history[-1]
        successes = last.success - first.success
        if successes == 0:
            return 0.0
        return (last.queue_us - first.queue_us) / successes / 1000.0

    def decide(self, now: float, service: ServiceView) -> int:
        current = service.desired
        targets = self.spec.targets
        ready = list(service.ready)
        unready = len(service.starting)
        live = {replica.id for replica in ready}
        proposals: list[int] = []
        invalid = 0
        queue_times = {replica.id: self._queue_time(now, replica) for replica in ready}
        for stale in set(self.samples) - live:
            del self.samples[stale]
        if targets.queue_depth is not None:
            depths = [float(replica.model.pending_count) for replica in ready]
            if depths:
                proposals.append(
                    hpa_metric_replicas(depths, 0, unready, targets.queue_depth, current)
                )
            else:
                invalid += 1
        if targets.queue_time_ms is not None:
            times = [value for value in queue_times.values() if value is not None]
            missing = len(ready) - len(times)
            if times:
                proposals.append(
                    hpa_metric_replicas(times, missing, unready, targets.queue_time_ms, current)
                )
            else:
                invalid += 1
        metrics_count = (targets.queue_depth is not None) + (targets.queue_time_ms is not None)
        if not proposals or invalid >= metrics_count:
            return current
        recommendation = max(proposals)
        if invalid and recommendation < current:
            return current  # HPA does not scale down while a metric is unavailable
        normalized = normalize(
            recommendation=recommendation,
            current=current,
            recommendations=self.recommendations,
            events=self.events,
            up=self.up,
            down=self.down,
            min_replicas=self.spec.min_replicas,
            max_replicas=self.spec.max_replicas,
            now=now,
        )
        horizon = history_horizon(self.up, self.down)
        self.recommendations = [r for r in self.recommendations if r[0] > now - horizon]
        self.recommendations.append((now, recommendation))
        if normalized.replicas != current:
            self.events = [e for e in self.events if e[0] > now - horizon]
            self.events.append((now, normalized.replicas - current))
        return normalized.replicas


# --------------------------------------------------------------------------------------------
# Knative KPA
# --------------------------------------------------------------------------------------------


def kpa_target_concurrency(spec: Autoscaling, instances: int, service_time_ms: float) -> float:
    """In-flight requests per pod at the spec's targets (see the module docstring)."""
    if spec.targets.queue_depth is not None:
        return spec.targets.queue_depth + instances
    queue_time_ms = spec.targets.queue_time_ms or 0.0
    return instances * (1.0 + queue_time_ms / service_time_ms)


class KPAController:
    """Knative's pod autoscaler on average concurrency, with its panic mode."""

    name = "kpa"

    def __init__(self, spec: Autoscaling, target_concurrency: float, interval: float = KPA_TICK_S):
        self.spec = spec
        self.interval = interval
        self.target_value = target_concurrency * KPA_TARGET_UTILIZATION
        self.samples: deque[tuple[float, float]] = deque()
        self.previous_area: dict[int, float] = {}
        self.last_tick = 0.0
        self.panic_time: float | None = None
        self.max_panic_pods = 0

    def _concurrency(self, now: float, service: ServiceView) -> float:
        """Average requests in flight over the last tick, summed over ready pods."""
        elapsed = now - self.last_tick
        area_now = {r.id: r.model.concurrency_seconds(now) for r in service.ready}
        total = sum(area - self.previous_area.get(rid, 0.0) for rid, area in area_now.items())
        self.previous_area = area_now
        self.last_tick = now
        return total / elapsed if elapsed > 0 else 0.0

    def decide(self, now: float, service: ServiceView) -> int:
        observed = self._concurrency(now, service)
        self.samples.append((now, observed))
        while self.samples and self.samples[0][0] <= now - KPA_STABLE_WINDOW_S:
            self.samples.popleft()
        stable = sum(v for _, v in self.samples) / len(self.samples)
        panic_samples = [v for t, v in self.samples if t > now - KPA_PANIC_WINDOW_S]
        panic = sum(panic_samples) / len(panic_samples)
        ready = max(1, len(service.ready))
        max_up = math.ceil(KPA_MAX_SCALE_UP_RATE * ready)
        max_down = math.floor(ready / KPA_MAX_SCALE_DOWN_RATE)
        stable_pods = math.ceil(stable / self.target_value)
        panic_pods = math.ceil(panic / self.target_value)
        desired_stable = int(min(max(stable_pods, max_down), max_up))
        desired_panic = int(min(max(panic_pods, max_down), max_up))
        over_threshold = panic_pods / ready >= KPA_PANIC_THRESHOLD
        if over_threshold:
            self.panic_time = now
        elif self.panic_time is not None and self.panic_time + KPA_STABLE_WINDOW_S <= now:
            self.panic_time = None
            self.max_panic_pods = 0
        desired = desired_stable
        if self.panic_time is not None:
            desired = max(desired, desired_panic)
            if desired > self.max_panic_pods:
                self.max_panic_pods = desired
            else:
                desired = self.max_panic_pods
        return min(self.spec.max_replicas, max(self.spec.min_replicas, desired))


# --------------------------------------------------------------------------------------------
# static and oracle
# --------------------------------------------------------------------------------------------


class StaticController:
    """A fixed replica count."""

    def __init__(self, replicas: int, interval: float = 60.0) -> None:
        self.replicas = replicas
        self.name = f"static:{replicas}"
        self.interval = interval

    def decide(self, now: float, service: ServiceView) -> int:
        del now, service
        return self.replicas


def oracle_plan(
    arrivals: Sequence[float],
    config: ServiceConfig,
    *,
    min_replicas: int,
    max_replicas: int,
    duration: float,
    window: float = ORACLE_WINDOW_S,
) -> list[int]:
    """Fewest replicas per window that serve every request of the window within the SLO.

    Each window is simulated on its own, starting idle, from a lower bound (the replicas
    that are busy 100% of the time with full batches) upwards, with the service's own
    balancer. It knows the arrivals, not the service times: with variable service times
    (service_time_cv > 0) the real run draws other ones and may miss a few requests.
    """
    slo = config.slo_ms / 1000.0 + 1e-9
    capacity_rps = config.replica.peak_capacity_rps
    plan = []
    start_index = 0
    windows = math.ceil(duration / window)
    for number in range(windows):
        start, end = number * window, (number + 1) * window
        stop_index = start_index
        while stop_index < len(arrivals) and arrivals[stop_index] < end:
            stop_index += 1
        chunk = [t - start for t in arrivals[start_index:stop_index]]
        start_index = stop_index
        replicas = max(min_replicas, math.ceil(len(chunk) / window / capacity_rps - 1e-9))
        while replicas < max_replicas and chunk:
            trial = simulate(
                chunk,
                StaticController(replicas, interval=window),
                replace(config, initial_replicas=replicas),
                duration=window,
            )
            if all(latency <= slo for latency in trial.latencies):
                break
            replicas += 1
        plan.append(min(replicas, max_replicas))
    return plan


class OracleController:
    """Follows `oracle_plan`, starting each window's replicas one cold start ahead."""

    name = "oracle"

    def __init__(
        self,
        plan: Sequence[int],
        cold_start_s: float,
        window: float = ORACLE_WINDOW_S,
        interval: float = ORACLE_INTERVAL_S,
    ) -> None:
        self.plan = list(plan)
        self.cold_start_s = cold_start_s
        self.window = window
        self.interval = interval

    def decide(self, now: float, service: ServiceView) -> int:
        del service
        first = int(now // self.window)
        last = int((now + self.cold_start_s + self.interval) // self.window)
        upcoming = self.plan[first : last + 1] or self.plan[-1:]
        return max(upcoming)
