"""Autoscalers the simulator can run: the operator's policy and the baselines it is judged by.

Every autoscaled policy (operator, hpa, kpa, oracle) gets the same decision interval, the same
metric delay (`ServiceConfig.metric_delay_s`: what it sees is that old), the same cold start,
the same bounds (minReplicas/maxReplicas) and the same start (see `scenario.START_RULES`);
`static:N` gets N replicas.

* `operator`: `autoscale.policy.decide`, fed an `Observation` built the way the operator's
  metrics reader builds it (see `observe`), every TRITONOP_AUTOSCALE_INTERVAL_SECONDS.
* `hpa`: the Kubernetes HorizontalPodAutoscaler (autoscaling/v2) on the Pods metrics of the
  shipped prometheus-adapter rules (`triton_queue_depth`, `triton_queue_time_ms` over a 60 s
  rate window), with the same targets, a 10% tolerance, its handling of pods that are not
  ready or have no metrics, and the spec's behavior with Kubernetes' defaults (300 s
  scale-down stabilization, the count it starts with recorded as its first recommendation). Kubernetes syncs every 15 s by default; here it runs on the
  common interval (the controller-manager's --horizontal-pod-autoscaler-sync-period).
* `kpa`: Knative's KPA on concurrency (requests in flight per pod): 60 s stable and 6 s
  panic windows, panic at 200%, scale down at most halving per tick, target utilisation
  70%; Knative ticks every 2 s, here on the common interval. Its per-pod concurrency target
  is derived from the spec: the queue depth target plus the requests the pod executes at once
  (`instances`), i.e. the in-flight count of a replica holding its queue target; with only
  `queueTimeMs`, instances times (1 + queueTimeMs / service time), the in-flight count
  Little's law gives at that wait.
* `static:N`: N replicas, always.
* `oracle`: knows every future arrival and service time. Window by window (30 s) it chooses
  the fewest replicas that serve every request arriving in the window within the SLO, or,
  where no count up to maxReplicas can, the fewest that miss no more than maxReplicas
  would. It tries each count on a fork of its own run, so the backlog carried into a window,
  the replicas still draining and the cold start are all accounted for, and it requests the
  replicas a window needs one cold start before the window begins. Its run is that plan.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

from tritonop.api.models import Autoscaling
from tritonop.autoscale import promql
from tritonop.autoscale.behavior import (
    KUBERNETES_SCALE_DOWN_WINDOW_SECONDS,
    history_horizon,
    normalize,
    resolve_behavior,
)
from tritonop.autoscale.coldstart import cold_start_seconds
from tritonop.autoscale.policy import PolicyState, decide
from tritonop.autoscale.types import Decision, Observation
from tritonop.sim.engine import PodSample, ServiceConfig, ServiceView, Simulation

OPERATOR_INTERVAL_S = 5.0
HPA_TOLERANCE = 0.1
KPA_STABLE_WINDOW_S = 60.0
KPA_PANIC_WINDOW_S = 6.0
KPA_PANIC_THRESHOLD = 2.0
KPA_TARGET_UTILIZATION = 0.7
KPA_MAX_SCALE_DOWN_RATE = 2.0
KPA_MAX_SCALE_UP_RATE = 1000.0
ORACLE_WINDOW_S = 30.0
WARM_START_S = 60.0


# --------------------------------------------------------------------------------------------
# operator
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Counters:
    time: float
    success: int
    queue_us: float
    compute_us: float = 0.0


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

    def observe(self, service: ServiceView) -> Observation:
        """Gauge at the scrape; rates and queue time from counter deltas since the last one.

        A replica seen for the first time contributes its queue depth only, as a pod scraped
        for the first time does; draining and starting replicas are not scraped.
        """
        now = service.time
        pending_total = 0.0
        rate_pods = 0
        queued_us = computed_us = successes = request_rate = 0.0
        current: dict[int, _Counters] = {}
        for pod in service.ready:
            pending_total += pod.pending
            counters = _Counters(
                now, pod.success_count, pod.queue_duration_us, pod.compute_infer_duration_us
            )
            current[pod.id] = counters
            before = self.previous.get(pod.id)
            if before is None or now <= before.time:
                continue
            rate_pods += 1
            delta = counters.success - before.success
            queued_us += counters.queue_us - before.queue_us
            computed_us += counters.compute_us - before.compute_us
            successes += delta
            request_rate += delta / (now - before.time)
        self.previous = current
        reporting = len(service.ready)
        return Observation(
            time=now,
            ready_replicas=reporting,
            starting_replicas=service.starting,
            reporting_replicas=reporting,
            queue_depth=pending_total / reporting if reporting else None,
            queue_time_ms=_queue_time_ms(queued_us, successes, pending_total)
            if rate_pods
            else None,
            request_rate=request_rate if rate_pods else None,
            compute_ms=computed_us / successes / 1000.0 if successes else None,
            cold_start_seconds=cold_start_seconds((p.created, p.ready_at) for p in service.ready),
        )

    def decide(self, now: float, service: ServiceView) -> int:
        if self.state is None:
            self.state = PolicyState.fresh(0.0, service.desired)
        observation = self.observe(service)
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
        interval: float,
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
        self.started = False

    def _queue_time(self, now: float, pod: PodSample) -> float | None:
        """rate(queue_us[w]) / rate(success[w]) / 1000 per pod, 0 when idle, None when unknown."""
        history = self.samples.setdefault(pod.id, deque())
        history.append(_Counters(now, pod.success_count, pod.queue_duration_us))
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
        if not self.started:
            # Kubernetes records the current count as a new HPA's first recommendation
            # (recordInitialRecommendation): the scale-down window holds it at first.
            self.recommendations.append((now, current))
            self.started = True
        targets = self.spec.targets
        ready = service.ready
        unready = service.starting
        live = {pod.id for pod in ready}
        proposals: list[int] = []
        invalid = 0
        queue_times = {pod.id: self._queue_time(service.time, pod) for pod in ready}
        for stale in set(self.samples) - live:
            del self.samples[stale]
        if targets.queue_depth is not None:
            depths = [float(pod.pending) for pod in ready]
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

    def __init__(self, spec: Autoscaling, target_concurrency: float, interval: float):
        self.spec = spec
        self.interval = interval
        self.target_value = target_concurrency * KPA_TARGET_UTILIZATION
        self.samples: deque[tuple[float, float]] = deque()
        self.previous_area: dict[int, float] = {}
        self.last_tick = 0.0
        self.panic_time: float | None = None
        self.max_panic_pods = 0

    def _concurrency(self, service: ServiceView) -> float:
        """Average requests in flight since the last scrape, summed over ready pods."""
        now = service.time
        elapsed = now - self.last_tick
        area_now = {pod.id: pod.concurrency_seconds for pod in service.ready}
        total = sum(area - self.previous_area.get(pid, 0.0) for pid, area in area_now.items())
        self.previous_area = area_now
        self.last_tick = now
        return total / elapsed if elapsed > 0 else 0.0

    def decide(self, now: float, service: ServiceView) -> int:
        observed = self._concurrency(service)
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


class PresentRateBound:
    """Not a policy but a bound: perfect knowledge of the present load, none of the future.

    It knows the true arrival rate at every moment (`rate`, the pattern's own function; no
    metric delay) and decides every `interval` (0.5 s by default, finer than any policy):
    while the rate is at its base (the rate at 0, the calm before the first rise) it holds
    `hold` replicas, and the moment the rate rises above it, it asks for every replica
    allowed (`most`), which serve one cold start later, and keeps them until the rate is
    back at its base and they have drained every queue. Run with the fewest `hold` that
    meets an attainment, it shows what any policy that cannot see a rise coming must hold
    through the calm to meet it (e2e/bench/autoscale.py, "without foresight").
    """

    def __init__(
        self,
        hold: int,
        most: int,
        rate: Callable[[float], float],
        interval: float = 0.5,
        first_rise_only: bool = False,
    ) -> None:
        """`first_rise_only`: after the first rise, hold `most` for good, so that every miss
        of the run is one of the first rise's."""
        self.hold, self.most, self.rate = hold, most, rate
        self.base = rate(0.0)
        self.first_rise_only = first_rise_only
        self.risen = False
        self.name = f"present-rate bound holding {hold}"
        self.interval = interval

    def rising(self, now: float) -> bool:
        """Whether the rate at `now` is above the base."""
        return self.rate(now) > self.base * (1 + 1e-9) + 1e-12

    def decide(self, now: float, service: ServiceView) -> int:
        # after a rise, every replica allowed until those asked for serve and the backlog is
        # gone: generous to the bound, whose cost is not what it is run for
        busy = service.starting > 0 or any(pod.pending for pod in service.ready)
        if self.rising(now) or (busy and service.desired == self.most):
            self.risen = True
            return self.most
        return self.most if self.first_rise_only and self.risen else self.hold


def fewest_replicas(misses: Callable[[int], int], low: int, high: int) -> int:
    """The fewest replicas in [low, high] that miss no more requests than `high` replicas.

    `misses(n)` counts the requests n replicas fail to serve within the SLO; it is assumed
    not to grow with n. Gallops up from `low` (the answer is usually close to it), and only
    when that finds no count without misses does it ask `high` what the best possible is.
    """
    if high <= low:
        return high
    known: dict[int, int] = {}

    def count(replicas: int) -> int:
        if replicas not in known:
            known[replicas] = misses(replicas)
        return known[replicas]

    best, trial, step = 0, low, 1
    while count(trial) > best and trial < high:
        trial = min(high, trial + step)
        step *= 2
    if count(trial) > best:  # not even `high` serves everything: settle for what it does
        best = count(high)
    passed = min(n for n, missed in known.items() if missed <= best)
    failed = max((n for n, missed in known.items() if n < passed), default=low - 1)
    while passed - failed > 1:  # binary search between the last failure and a pass
        middle = (failed + passed) // 2
        if count(middle) <= best:
            passed = middle
        else:
            failed = middle
    return passed


def _misses(latencies: Sequence[float], low: int, high: int, slo: float) -> int:
    """Requests low..high-1 that did not complete within `slo` seconds."""
    return sum(1 for latency in latencies[low:high] if not latency <= slo)


def warm_start_replicas(
    arrivals: Sequence[float],
    config: ServiceConfig,
    *,
    min_replicas: int,
    max_replicas: int,
    interval: float,
    horizon: float = WARM_START_S,
) -> int:
    """The replicas the first `horizon` seconds need: fewest that serve them within the SLO.

    What every autoscaled policy starts with (scenario.START_RULES "warm"): a service that
    has been running before the trace starts, sized for the load it starts with.
    """
    slo = config.slo_ms / 1000.0 + 1e-9
    stop = bisect_left(arrivals, horizon)
    capacity = config.replica.peak_capacity_rps

    def misses(replicas: int) -> int:
        run = Simulation(
            arrivals,
            StaticController(replicas, interval),
            _with_initial(config, replicas),
            duration=horizon,
            record_timeline=False,
        )
        run.run_until(horizon)
        return _misses(run.settle(), 0, stop, slo)

    low = max(min_replicas, 1, math.ceil(stop / horizon / capacity - 1e-9))
    return fewest_replicas(misses, min(low, max_replicas), max_replicas)


def _with_initial(config: ServiceConfig, replicas: int) -> ServiceConfig:
    return replace(config, initial_replicas=replicas)


class OracleController:
    """Follows a plan of replicas per window, requesting each window's one cold start ahead.

    At a decision at `now` the replicas asked for are the most any window from the current
    one up to the one containing `now + cold start + interval` needs: replicas arrive in time
    for the window that needs them, and leave once no window within reach does. Windows past
    the end of the plan (while it is being built) hold its last known count.
    """

    name = "oracle"

    def __init__(
        self,
        plan: Sequence[int],
        cold_start_s: float,
        interval: float,
        window: float = ORACLE_WINDOW_S,
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


def oracle_plan(
    arrivals: Sequence[float],
    config: ServiceConfig,
    *,
    min_replicas: int,
    max_replicas: int,
    duration: float,
    interval: float,
    window: float = ORACLE_WINDOW_S,
) -> list[int]:
    """Replicas per window for `OracleController`, chosen on forks of the oracle's own run.

    `config.initial_replicas` are ready at 0 (the start every policy gets). For window k the
    run is advanced to the first decision that can act on it (a cold start and an interval
    before the window); each candidate count is tried on a fork that runs to the window's end
    and lets its requests complete; the fewest that serve the window's arrivals within the
    SLO (see `fewest_replicas`) is kept. Since each replica serves its queue in order, a
    request's latency never depends on a later window's count, so the window's verdict holds
    in the final run (exactly without dynamic batching).
    """
    slo = config.slo_ms / 1000.0 + 1e-9
    capacity = config.replica.peak_capacity_rps
    cold = config.cold_start_s
    controller = OracleController([], cold, interval, window)
    plan = controller.plan  # the run's own controller follows the plan as it grows
    run = Simulation(arrivals, controller, config, duration, record_timeline=False)
    for number in range(math.ceil(duration / window - 1e-9)):
        start, end = number * window, min(duration, (number + 1) * window)
        run.run_until(max(0.0, start - cold - interval))
        low_index, high_index = bisect_left(arrivals, start), bisect_left(arrivals, end)

        misses = partial(
            _window_misses, run, plan, (cold, interval, window), end, low_index, high_index, slo
        )
        needed = (high_index - low_index) / (end - start) / capacity
        low = min(max_replicas, max(min_replicas, math.ceil(needed - 1e-9)))
        plan.append(fewest_replicas(misses, low, max_replicas) if high_index > low_index else low)
    return plan


def _window_misses(
    run: Simulation,
    plan: Sequence[int],
    timing: tuple[float, float, float],
    end: float,
    low_index: int,
    high_index: int,
    slo: float,
    replicas: int,
) -> int:
    """Requests of one window (indexes low..high-1) missed if it gets `replicas`."""
    trial = run.fork(OracleController([*plan, replicas], *timing))
    trial.run_until(end)
    return _misses(trial.settle(), low_index, high_index, slo)
