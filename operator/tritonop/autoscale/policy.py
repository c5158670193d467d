"""The Operator-mode autoscaling policy: Triton's queue signals in, desired replicas out.

Pure: `decide` takes the spec, the current replica count, one `Observation` and the previous
`PolicyState`, and returns a `Decision` plus the next state. No clock, no I/O. `assess` turns
the observation into a demand estimate (queueing model in `queueing.py`), `decide` sizes for
it and applies HPA v2's behavior (`behavior.py`) and a Knative-style panic mode. Why it works
this way and not as HPA's ratio on the queue numbers: docs/design/autoscaling.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from tritonop.api.models import Autoscaling, Targets
from tritonop.autoscale.behavior import (
    DEFAULT_SCALE_DOWN_WINDOW_SECONDS,
    TOLERANCE,
    Normalized,
    Rules,
    history_horizon,
    normalize,
    resolve_behavior,
)
from tritonop.autoscale.headroom import (
    DEFAULT_COLD_START_SECONDS,
    BurstMemory,
    HeldRise,
    LoadSample,
    headroom_capacity,
    headroom_replicas,
)
from tritonop.autoscale.queueing import Sizing, mdc_utilization, objective_wait, size_for
from tritonop.autoscale.types import ConditionFlag, Decision, Observation

#: Panic ends this many panic windows after the last trigger (6 s x 10 = Knative's 60 s).
PANIC_STABLE_WINDOWS = 10
#: After an operator restart the policy does not scale down for this long, whatever the
#: scale-down window: its history (learned request cost, recommendations) starts empty.
RESTART_HOLD_SECONDS = 60.0
#: Observations older than this many intervals are stale.
STALE_INTERVALS = 3.0
#: The request cost is learned only from intervals whose queue (per replica, at the tick and
#: averaged over the interval) is at least this long: below it the queue says little.
LEARN_MIN_QUEUE = 0.5
#: Weight of a new sample in the learned request cost (exponential moving average).
LEARN_WEIGHT = 0.5
#: ... and only when the reporting replicas have not changed for this long (right after a
#: scale-up the old replicas still hold the backlog while the new ones idle).
LEARN_SETTLE_SECONDS = 30.0
#: Demand beyond this multiple of the replicas the service may have (maxReplicas, or more
#: when more are ready) is no traffic's: an implausible observation (see `_implausible`).
ABSURD_DEMAND_FACTOR = 100.0
#: Queue per replica that counts as "at target" for a backlog when no target or request cost
#: says otherwise (an objective whose request cost is not known yet).
FALLBACK_QUEUE_TARGET = 1.0
#: The share of the objective's allowed wait a burst may be spread over (see _remember_load).
BURST_SLACK_SHARE = 0.5


# --------------------------------------------------------------------------------------------
# state
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyState:
    """Everything the policy remembers about one service between intervals (immutable)."""

    recommendations: tuple[tuple[float, int], ...] = ()
    """(time, unstabilized recommendation), for the stabilization windows."""
    scale_events: tuple[tuple[float, int], ...] = ()
    """(time, replica change), for the rate policies."""
    request_cost: float | None = None
    """Learned replica-seconds one request occupies (service time / instances), or unknown."""
    backlog: tuple[float, float] | None = None
    """(time, total pending requests) of the last observation, to see the backlog grow."""
    recent_cost: float | None = None
    """The last request cost one interval showed, for intervals that cannot show one (right
    after the replicas changed) while nothing is learned yet."""
    reporting: int = 0
    """Replicas that reported last interval (a pod reporting for the first time has no
    counter deltas yet, so its first intervals say nothing about the cost)."""
    reporting_since: float = -math.inf
    """When the count of reporting replicas last changed."""
    last_panic_trigger: float | None = None
    """When panic was last triggered; None when not panicking."""
    panic_replicas: int = 0
    """Highest replica count reached during the current panic (never undercut while it lasts)."""
    hold_scale_down_until: float = -math.inf
    """No scale-down before this time (set after a restart)."""
    cold_start: float | None = None
    """The cold start the service's new pods were last seen to take (seconds), if any."""
    bursts: BurstMemory = field(default_factory=BurstMemory)
    """How fast load rose within one cold start (kept with an objective only)."""

    @classmethod
    def fresh(cls, now: float, replicas: int) -> PolicyState:
        """State for a service the policy has not seen (or an operator that just restarted).

        The current replica count is recorded as a recommendation, so the scale-down window
        holds it, and scale-down is held for at least RESTART_HOLD_SECONDS, so a restart
        never shrinks a service before fresh evidence accumulates.
        """
        return cls(
            recommendations=((now, replicas),), hold_scale_down_until=now + RESTART_HOLD_SECONDS
        )

    def panicking(self, now: float, panic_window: float) -> bool:
        """Whether a panic triggered recently enough to still be in force at `now`."""
        return (
            self.last_panic_trigger is not None
            and now - self.last_panic_trigger < panic_window * PANIC_STABLE_WINDOWS
        )


# --------------------------------------------------------------------------------------------
# assessing an observation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assessment:
    """What one observation says about demand, and how far it can be trusted."""

    demand: float | None
    """Estimated load in replicas busy 100% of the time; None when nothing usable was seen."""
    held: int
    """Ready replicas tied up by a growing backlog, needed on top of the demand."""
    cost: float | None
    """Request cost used for this interval's sizing (replica-seconds per request)."""
    trustworthy: bool
    """Complete, fresh and every configured signal present: may lower replicas."""
    active_reason: str
    active_message: str
    summary: str
    """The observed signals in words, for the decision's reason."""
    learned_cost: float | None
    """The request cost to remember."""
    recent_cost: float | None
    backlog: tuple[float, float] | None
    bursts: BurstMemory
    """The burst memory to keep."""
    cold_start: float | None
    """The cold start to remember."""
    arrivals: float | None = None
    """Requests per second arriving (completions plus the backlog's growth)."""
    queue_total: float | None = None
    """Pending requests over all reporting replicas, at the tick."""
    queue_target: float = FALLBACK_QUEUE_TARGET
    """Pending requests per replica that the targets (or the objective) allow."""


@dataclass(frozen=True)
class Signals:
    """One usable observation's numbers, combined with what the state remembers."""

    reporting: int
    rate: float | None
    """Completions per second."""
    depth: float | None
    """Pending requests per reporting replica, at the tick."""
    queue_time_ms: float | None
    queue_now: float | None
    """Pending requests over all reporting replicas, at the tick (the gauge)."""
    queue_interval: float | None
    """Pending requests over all reporting replicas, averaged over the interval (Little)."""
    arrivals: float | None
    """Requests per second arriving: completions plus the backlog's growth."""
    same_replicas: bool
    """The same replicas reported last interval, so counter deltas compare like with like."""
    compute: float | None
    """Compute seconds per request: an upper bound of the request cost."""
    balanced: bool
    """The queue describes every replica: they are the ones it built up on (settled for
    LEARN_SETTLE_SECONDS: new pods have no counter deltas and idle next to a backlog) and it
    is not draining (a draining backlog sits on the replicas that built it)."""


def _format(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _holding(
    reason: str, message: str, summary: str, state: PolicyState, forget_cost: bool = False
) -> Assessment:
    """An assessment with no demand: the policy holds (scaling up on nothing).

    Nothing of the observation is remembered; `forget_cost` also drops the learned request
    cost (when it is what made the demand absurd, keeping it would hold forever).
    """
    cost = None if forget_cost else state.request_cost
    return Assessment(
        demand=None,
        held=0,
        cost=cost,
        trustworthy=False,
        active_reason=reason,
        active_message=message,
        summary=summary,
        learned_cost=cost,
        recent_cost=None if forget_cost else state.recent_cost,
        backlog=state.backlog,
        bursts=state.bursts,
        cold_start=state.cold_start,
    )


def _implausible(observation: Observation) -> list[str]:
    """What in the observation itself no Triton page can produce (with the reader's findings).

    Non-finite or negative numbers, and counts that contradict each other. The demand they
    imply is checked later (`_absurd_demand`), once it is known.
    """
    found = list(observation.implausible)
    if not math.isfinite(observation.time):
        found.append(f"observation time {observation.time!r}")
    if min(observation.ready_replicas, observation.starting_replicas) < 0 or not (
        0 <= observation.reporting_replicas <= observation.ready_replicas
    ):
        found.append(
            f"replica counts ready {observation.ready_replicas}, starting "
            f"{observation.starting_replicas}, reporting {observation.reporting_replicas}"
        )
    for name, value in (
        ("queueDepth", observation.queue_depth),
        ("queueTimeMs", observation.queue_time_ms),
        ("request rate", observation.request_rate),
        ("compute time", observation.compute_ms),
    ):
        if value is not None and not 0.0 <= value < math.inf:
            found.append(f"{name} {value!r}")
    return found


def _absurd_demand(
    spec: Autoscaling, observation: Observation, values: dict[str, float | None]
) -> list[str]:
    """Derived numbers that are non-finite, or a demand beyond any sane multiple of the bounds.

    A page pair whose counters grow by a sliver while its queue grows by thousands implies a
    demand of billions of replicas; no traffic does that, and sizing for it would only ever
    give maxReplicas to whoever can write such a page.
    """
    found = [
        f"{name} {value!r}"
        for name, value in values.items()
        if value is not None and not math.isfinite(value)
    ]
    demand = values.get("demand")
    bound = ABSURD_DEMAND_FACTOR * max(spec.max_replicas, observation.ready_replicas, 1)
    if not found and demand is not None and demand > bound:
        found.append(
            f"a demand of {demand:.3g} busy replicas, more than {ABSURD_DEMAND_FACTOR:g}x "
            f"maxReplicas ({spec.max_replicas})"
        )
    return found


def _invalid_message(found: Sequence[str]) -> str:
    shown = "; ".join(found[:5])
    more = f" (+{len(found) - 5} more)" if len(found) > 5 else ""
    return f"implausible metrics, holding the current replicas: {shown}{more}"


def _unusable(observation: Observation, now: float, interval: float) -> tuple[str, str, str] | None:
    """(reason, message, summary) when the observation shows nothing to size with, else None."""
    age = now - observation.time
    if age > STALE_INTERVALS * interval:
        return (
            "StaleMetrics",
            f"the newest metrics are {age:.0f}s old; holding the current replicas",
            "stale metrics",
        )
    if observation.ready_replicas == 0:
        message = f"no ready replica to measure ({observation.starting_replicas} starting)"
        return ("NoReadyReplicas", message + "; holding", "no ready replica")
    if observation.reporting_replicas == 0:
        message = _with_problems("no ready replica reported metrics; holding", observation)
        return ("MissingMetrics", message, "no replica reported")
    return None


def _arrival_rate(observation: Observation, state: PolicyState, interval: float) -> float | None:
    """Requests per second arriving: completions plus the backlog's growth since last time."""
    rate, depth = observation.request_rate, observation.queue_depth
    if rate is None or depth is None or state.backlog is None:
        return rate
    then, backlog_then = state.backlog
    elapsed = observation.time - then
    if not 0 < elapsed <= STALE_INTERVALS * interval:
        return rate
    backlog_now = depth * observation.reporting_replicas
    return max(0.0, rate + (backlog_now - backlog_then) / elapsed)


def _signals(observation: Observation, state: PolicyState, interval: float) -> Signals:
    """The observation's queue, seen at the tick and over the interval, and the arrivals."""
    reporting = observation.reporting_replicas
    rate = observation.request_rate
    depth = observation.queue_depth
    queue_time_ms = observation.queue_time_ms
    if queue_time_ms is None and rate == 0.0 and not depth:
        queue_time_ms = 0.0  # nothing finished and nothing waits: the queue time is zero
    arrivals = _arrival_rate(observation, state, interval)
    same_replicas = reporting == state.reporting
    settled = same_replicas and observation.time - state.reporting_since >= LEARN_SETTLE_SECONDS
    not_draining = arrivals is not None and rate is not None and arrivals >= rate * (1 - TOLERANCE)
    return Signals(
        reporting=reporting,
        rate=rate,
        depth=depth,
        queue_time_ms=queue_time_ms,
        queue_now=depth * reporting if depth is not None else None,
        queue_interval=(
            queue_time_ms / 1000.0 * rate
            if queue_time_ms is not None and rate is not None
            else None
        ),
        arrivals=arrivals,
        same_replicas=same_replicas,
        compute=(
            observation.compute_ms / 1000.0
            if observation.compute_ms is not None and observation.compute_ms > 0
            else None
        ),
        balanced=settled and not_draining,
    )


def _request_cost(
    signals: Signals, observation: Observation, state: PolicyState
) -> tuple[float | None, float | None]:
    """(the request cost this interval shows, the learned cost to remember).

    The cost is learned only from balanced, complete intervals whose queue (now and over the
    interval) is long enough to pin the utilisation down. It is never more than the compute
    time per request, when Triton reports one.
    """
    reporting, rate, queue_interval = signals.reporting, signals.rate, signals.queue_interval
    cost_now = None
    if queue_interval is not None and rate and signals.same_replicas:
        cost_now = mdc_utilization(reporting, queue_interval) * reporting / rate
        if signals.compute is not None:
            cost_now = min(cost_now, signals.compute)
    learned = state.request_cost
    long_queue = (
        queue_interval is not None
        and queue_interval >= LEARN_MIN_QUEUE * reporting
        and signals.queue_now is not None
        and signals.queue_now >= LEARN_MIN_QUEUE * reporting
    )
    if cost_now is not None and observation.complete and signals.balanced and long_queue:
        learned = (
            cost_now if learned is None else (1 - LEARN_WEIGHT) * learned + LEARN_WEIGHT * cost_now
        )
    return cost_now, learned


def _demand(
    signals: Signals, state: PolicyState, cost_now: float | None, learned: float | None
) -> tuple[float | None, float | None]:
    """(demand in busy replicas, the request cost this interval sizes with).

    Arrivals times the cost, sized with the larger of the remembered and the updated cost, so
    more queue never means fewer replicas. The utilisation that explains the queue (interval
    average when there is one: one gauge sample is noisy) is a floor whenever the queue is
    balanced: the feedback that keeps the targets when the learned cost is off. Until a cost
    is learned: the arrivals times Triton's compute time per request, an upper bound of the
    cost (one model instance per replica assumed), so no feedback is needed against a cost
    too low (and the queue's utilisation, read through M/D/c, overstates the load of
    replicas that each queue their own requests); without compute time, that utilisation
    and this interval's cost.
    """
    reporting, arrivals = signals.reporting, signals.arrivals
    queue = signals.queue_interval if signals.queue_interval is not None else signals.queue_now
    from_queue = reporting * mdc_utilization(reporting, queue) if queue is not None else None
    cost: float | None
    estimates = []
    if learned is not None:
        cost = max(learned, state.request_cost or 0.0)
        if arrivals is not None:
            estimates.append(arrivals * cost)
        if signals.balanced and from_queue is not None:
            estimates.append(from_queue)
    elif signals.compute is not None and arrivals is not None:
        cost = signals.compute
        estimates.append(arrivals * cost)
    else:
        cost = cost_now or state.recent_cost
        if from_queue is not None:
            estimates.append(from_queue)
        if arrivals is not None and cost_now:
            estimates.append(arrivals * cost_now)
    return (max(estimates) if estimates else None), cost


def _held_by_backlog(
    signals: Signals, queue_target: float, cost: float | None, cold_start: float
) -> int:
    """Replicas a backlog above target keeps busy when replicas asked for now arrive.

    Each replica has its own queue and new requests go to the least busy ones, so replicas
    with a backlog carry no new arrivals until it is gone (and pods still starting take new
    arrivals, not the backlog): replicas asked for now must carry the arrivals without them.
    The backlog the reporting replicas still hold one cold start from now (at today's
    arrival rate), above the target per replica, is work for as many replicas as it takes
    to clear within a further cold start; at most the replicas that hold it. Nothing when it
    clears in time, nothing without a request cost.
    """
    queue_now, arrivals = signals.queue_now, signals.arrivals
    if not signals.same_replicas or queue_now is None or arrivals is None or not cost:
        return 0
    left = queue_now + (arrivals - signals.reporting / cost) * cold_start
    excess = left - queue_target * signals.reporting
    if excess <= 0:
        return 0
    held = excess * cost / cold_start  # inf for a huge backlog over a tiny cold start
    return signals.reporting if not held < signals.reporting else math.floor(held)


def _queue_target(spec: Autoscaling, cost: float | None) -> float:
    """Pending requests per replica within every target: the queue a backlog is judged by.

    queueDepth as it is; queueTimeMs and the objective through the request cost (a request
    waits about the cost per request queued ahead of it on its replica; with an objective,
    half the requests that still fit in its latency, to leave room for the tail).
    """
    targets, objective = spec.targets, spec.objective
    candidates = []
    if targets.queue_depth is not None:
        candidates.append(targets.queue_depth)
    if cost:
        if targets.queue_time_ms is not None:
            candidates.append(targets.queue_time_ms / 1000.0 / cost)
        if objective is not None:
            candidates.append(objective_wait(objective, cost)[0] / cost / 2.0)
    return max(0.05, min(candidates)) if candidates else FALLBACK_QUEUE_TARGET


def _cold_start(spec: Autoscaling, observation: Observation, state: PolicyState) -> float:
    """The spec's cold start, else the one the pods showed (now or before), else a default."""
    if spec.cold_start_seconds is not None:
        return float(spec.cold_start_seconds)
    return _seen_cold_start(observation, state) or DEFAULT_COLD_START_SECONDS


def _seen_cold_start(observation: Observation, state: PolicyState) -> float | None:
    """The pods' cold start this observation shows (when it is a duration), else the last."""
    seen = observation.cold_start_seconds
    if seen is not None and 0 < seen < math.inf:
        return seen
    return state.cold_start


def _remember_load(
    spec: Autoscaling,
    observation: Observation,
    state: PolicyState,
    arrivals: float | None,
    cost: float | None,
    cold_start: float,
) -> BurstMemory:
    """The burst memory with this interval's arrivals (kept with an objective only).

    The slack a burst is spread over is half the wait the objective allows: the last requests
    of a burst absorbed by queueing wait the whole slack, and with per-replica queues and
    Poisson arrivals some wait longer (with the full wait, the benchmark's 1 s profile missed
    2-6% of the requests of bursts it had seen before; with half, 0-0.3%).
    """
    if spec.objective is None or arrivals is None or state.backlog is None:
        return state.bursts
    seconds = observation.time - state.backlog[0]
    if not 0 < seconds <= STALE_INTERVALS * cold_start:
        return state.bursts
    slack = objective_wait(spec.objective, cost)[0] * BURST_SLACK_SHARE if cost else 0.0
    sample = LoadSample(observation.time, seconds, arrivals * seconds)
    return state.bursts.observe(sample, cold_start, slack)


def _verdict(observation: Observation, targets: Targets, signals: Signals) -> tuple[bool, str, str]:
    """(trustworthy, ScalingActive reason, message): may this interval lower replicas?"""
    missing = []
    if targets.queue_depth is not None and signals.depth is None:
        missing.append("queueDepth")
    if targets.queue_time_ms is not None and signals.queue_time_ms is None:
        missing.append("queueTimeMs")
    if missing:
        reason = "MissingMetrics"
        message = f"{' and '.join(missing)} missing this interval; holding, scaling up only"
    elif not observation.complete:
        reason = "IncompleteMetrics"
        message = (
            f"{signals.reporting} of {observation.ready_replicas} ready replicas reported "
            "metrics; holding, scaling up only"
        )
    else:
        message = (
            f"the targets are computed from Triton metrics of {signals.reporting} ready replicas"
        )
        return True, "ValidMetrics", message
    return False, reason, _with_problems(message, observation)


def _with_problems(message: str, observation: Observation) -> str:
    if not observation.problems:
        return message
    shown = "; ".join(observation.problems[:5])
    more = f" (+{len(observation.problems) - 5} more)" if len(observation.problems) > 5 else ""
    return f"{message}: {shown}{more}"


def _summary(observation: Observation, targets: Targets, queue_time_ms: float | None) -> str:
    parts = []
    if observation.queue_depth is not None:
        target = f" (target {_format(targets.queue_depth)})" if targets.queue_depth else ""
        parts.append(f"queueDepth {_format(observation.queue_depth)} per replica{target}")
    if queue_time_ms is not None:
        target = f" (target {_format(targets.queue_time_ms)})" if targets.queue_time_ms else ""
        parts.append(f"queueTimeMs {_format(queue_time_ms)}{target}")
    if observation.request_rate is not None:
        parts.append(f"{_format(observation.request_rate)} req/s")
    return ", ".join(parts) or "no signals"


def assess(
    spec: Autoscaling,
    observation: Observation | None,
    state: PolicyState,
    now: float,
    interval: float,
) -> Assessment:
    """Turn one observation into a demand estimate and a verdict on its quality."""
    if observation is None:
        message = "no Triton metrics could be read this interval; holding the current replicas"
        return _holding("MissingMetrics", message, "no metrics", state)
    implausible = _implausible(observation)
    if implausible:
        return _holding("InvalidMetrics", _invalid_message(implausible), "invalid metrics", state)
    unusable = _unusable(observation, now, interval)
    if unusable is not None:
        return _holding(*unusable, state)
    signals = _signals(observation, state, interval)
    cost_now, learned = _request_cost(signals, observation, state)
    demand, cost = _demand(signals, state, cost_now, learned)
    absurd = _absurd_demand(
        spec,
        observation,
        {"arrival rate": signals.arrivals, "request cost": cost, "demand": demand},
    )
    if absurd:
        message = _invalid_message(absurd)
        return _holding("InvalidMetrics", message, "invalid metrics", state, forget_cost=True)
    trustworthy, reason, message = _verdict(observation, spec.targets, signals)
    cold_start = _cold_start(spec, observation, state)
    queue_target = _queue_target(spec, cost)
    return Assessment(
        demand=demand,
        held=_held_by_backlog(signals, queue_target, cost, cold_start),
        cost=cost,
        trustworthy=trustworthy,
        active_reason=reason,
        active_message=message,
        summary=_summary(observation, spec.targets, signals.queue_time_ms),
        learned_cost=learned,
        recent_cost=cost_now if cost_now else state.recent_cost,
        backlog=(
            (observation.time, signals.queue_now)
            if signals.queue_now is not None
            else state.backlog
        ),
        bursts=_remember_load(spec, observation, state, signals.arrivals, cost, cold_start),
        cold_start=_seen_cold_start(observation, state),
        arrivals=signals.arrivals,
        queue_total=signals.queue_now,
        queue_target=queue_target,
    )


# --------------------------------------------------------------------------------------------
# the decision
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recommendation:
    """The replicas one assessment asks for, before panic, behavior and bounds."""

    replicas: int
    sizing: Sizing | None
    headroom: int = 0
    """Replicas held beyond the sizing for a remembered rise (objective only)."""
    rise: HeldRise | None = None
    cold_start: float = DEFAULT_COLD_START_SECONDS
    drain_floor: int = 0
    """Replicas kept (when above the sizing) so that the backlog still drains in time."""
    outlived: int | None = None
    """Replicas the present load asks for that were not asked for, because every load as
    high in the burst memory was gone one cold start later (objective only)."""


def recommend(
    spec: Autoscaling, assessment: Assessment, current: int, now: float, cold_start: float
) -> Recommendation:
    """The fewest replicas carrying the demand at target utilisation, plus the objective's
    headroom, against current replicas (ready + starting: pods on their way count), never
    below what the backlog needs to drain in time, never lower on doubtful data.

    With an objective, a scale-up is sized for the load one cold start ahead when the burst
    memory saw every load as high as this one gone by then (`BurstMemory.rate_after`): the
    replicas would arrive after it, and the headroom held is what serves it (benchmark, 1 s
    profile: spike 61101 -> 59561 replica-s, heavy-burst 33480 -> 32395, same attainment).
    A load that outlives a cold start is scaled for as soon as the memory has seen it do so.
    """
    if assessment.demand is None:
        return Recommendation(current, None, cold_start=cold_start)
    sizing = size_for(
        assessment.demand,
        assessment.held,
        spec.targets,
        assessment.cost,
        spec.max_replicas,
        spec.objective,
    )
    headroom, rise, cap, headroom_only = 0, None, None, False
    if spec.objective is not None and assessment.cost and assessment.arrivals is not None:
        rise = assessment.bursts.rise(spec.objective.attainment, now)
        headroom = headroom_replicas(rise, assessment.arrivals, assessment.cost, sizing.replicas)
        headroom_only = _headroom_within_tolerance(
            rise, assessment.arrivals, assessment.cost, sizing.replicas, current
        )
        later = assessment.bursts.rate_after(assessment.arrivals, now, cold_start)
        if later is not None and later < assessment.arrivals:
            # replicas asked for now arrive when the loads like this one seen were gone:
            # ask for what the load one cold start later needs (never fewer than now), with
            # the replicas the backlog keeps busy (a draining backlog is demand)
            short = size_for(
                later * assessment.cost,
                assessment.held,
                spec.targets,
                assessment.cost,
                spec.max_replicas,
                spec.objective,
            )
            short_headroom = headroom_replicas(rise, later, assessment.cost, short.replicas)
            cap = max(current, short.replicas + short_headroom)
            if _headroom_within_tolerance(rise, later, assessment.cost, short.replicas, current):
                cap = current
    wanted = sizing.replicas + headroom
    outlived = None
    if cap is not None and wanted > cap:
        wanted, outlived = cap, sizing.replicas + headroom
    # HPA's 10% tolerance guards scale-down, and a scale-up for headroom alone: near the
    # target utilisation (often 90%) 10% more load is saturation, and the sizing is a rate,
    # not a noisy ratio, so the present load is scaled for at once; but the headroom is
    # capacity for a rise to come, estimated from a few noisy counts of past ones (100
    # requests are +-10%): within the tolerance above the replicas there, a replica more
    # would mostly cold-start and leave again with the next quiet count.
    replicas = current
    if (wanted > current and not headroom_only) or (
        sizing.needed + headroom < current * (1.0 - TOLERANCE)
    ):
        replicas = wanted
    floor = _drain_floor(assessment, current)
    if not assessment.trustworthy:
        replicas = max(replicas, current)  # never lower on doubtful data
    return Recommendation(
        replicas=max(replicas, floor),
        sizing=sizing,
        headroom=headroom if rise is not None and headroom else 0,
        rise=rise,
        cold_start=cold_start,
        drain_floor=floor if floor > replicas else 0,
        outlived=outlived if outlived is not None and replicas < outlived else None,
    )


def _headroom_within_tolerance(
    rise: HeldRise | None, load: float, cost: float, replicas: int, current: int
) -> bool:
    """Whether only the headroom asks for more than `current` (the `replicas` that `load`
    needs fit in it), and for at most TOLERANCE more capacity than it (see `recommend`)."""
    carried = headroom_capacity(rise, load, cost)
    return replicas <= current and 0.0 < carried <= current * (1.0 + TOLERANCE)


def _drain_floor(assessment: Assessment, current: int) -> int:
    """Fewest replicas (at most `current`) that keep the backlog within target per replica.

    A draining backlog is demand, not spare capacity: scale-down removes the least busy
    replicas, so the backlog stays and new requests queue behind it on fewer replicas. While
    the queue per replica is above its target nothing is given up; below it, no fewer
    replicas than hold the backlog at target, so that every remaining queue still drains
    within the time its target allows.
    """
    queue = assessment.queue_total
    if queue is None or queue <= 0 or assessment.demand is None:
        return 0
    needed = queue / assessment.queue_target
    if needed >= current:
        return current
    return math.ceil(needed - 1e-9)


#: With an objective, the default scale-down window is one cold start plus this many
#: decision intervals (see `scale_down_window`).
SCALE_DOWN_CONFIRM_INTERVALS = 3


def scale_down_window(spec: Autoscaling, cold_start: float, interval: float) -> float:
    """The scale-down stabilization window when the spec leaves it unset.

    Targets only: DEFAULT_SCALE_DOWN_WINDOW_SECONDS (60 s). With an objective: one cold start
    plus SCALE_DOWN_CONFIRM_INTERVALS intervals, capped at that default. The window guards
    against giving up replicas that the load needs again before new ones could be back; with
    an objective the headroom already holds the capacity that the rises seen within one cold
    start need, so replicas kept much beyond one cold start guard nothing it does not and
    only cost (benchmark, 1 s profile: bursty 25670 -> 24285 replica-s, under static:7).
    The intervals on top make a drop last a few noisy 5 s counts before replicas go: with a
    window of one cold start alone, the objective's sizing near 95% utilisation gave up
    replicas on dips of the diurnal pattern's peak (1 s profile, seed 2: 100% -> 98.5%).
    """
    if spec.objective is None:
        return float(DEFAULT_SCALE_DOWN_WINDOW_SECONDS)
    window = max(0.0, cold_start) + SCALE_DOWN_CONFIRM_INTERVALS * max(0.0, interval)
    return min(float(DEFAULT_SCALE_DOWN_WINDOW_SECONDS), window)


def decide(
    spec: Autoscaling,
    current_replicas: int,
    observation: Observation | None,
    state: PolicyState,
    now: float,
    interval: float,
) -> tuple[Decision, PolicyState]:
    """Desired replicas for one interval, with the reason and the three scaling conditions."""
    cold_start = (
        _cold_start(spec, observation, state)
        if observation is not None
        else float(spec.cold_start_seconds or state.cold_start or DEFAULT_COLD_START_SECONDS)
    )
    up, down = resolve_behavior(spec.behavior, scale_down_window(spec, cold_start, interval))
    horizon = history_horizon(up, down)
    recommendations = tuple(r for r in state.recommendations if r[0] > now - horizon)
    events = tuple(e for e in state.scale_events if e[0] > now - horizon)
    assessment = assess(spec, observation, state, now, interval)
    ready = observation.ready_replicas if observation is not None else 0
    starting = observation.starting_replicas if observation is not None else 0
    reporting = observation.reporting_replicas if observation is not None else 0
    recommended = recommend(spec, assessment, current_replicas, now, cold_start)
    sizing = recommended.sizing
    recommendation = recommended.replicas

    # Panic: one interval showing `threshold` times what the ready replicas carry at target.
    panic_window = float(spec.panic.window_seconds)
    trigger = (
        sizing is not None
        and ready > 0
        and sizing.needed >= spec.panic.threshold * ready
        and recommendation > current_replicas
    )
    last_trigger = now if trigger else state.last_panic_trigger
    panicking = replace(state, last_panic_trigger=last_trigger).panicking(now, panic_window)
    if not panicking:
        last_trigger = None
    if now < state.hold_scale_down_until or panicking:
        recommendation = max(recommendation, current_replicas)
    if panicking:
        recommendation = max(recommendation, state.panic_replicas)

    normalized = normalize(
        recommendation=recommendation,
        current=current_replicas,
        recommendations=recommendations,
        events=events,
        up=up,
        down=down,
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        now=now,
        skip_up_stabilization=panicking,
    )
    desired = normalized.replicas
    if desired != current_replicas:
        events = (*events, (now, desired - current_replicas))

    decision = Decision(
        desired_replicas=desired,
        reason=_reason(
            assessment,
            recommended,
            ready,
            starting,
            current_replicas,
            desired,
            panicking,
            normalized,
        ),
        conditions=_conditions(assessment, normalized, recommendation, current_replicas, up, down),
        panicking=panicking,
    )
    next_state = PolicyState(
        recommendations=(*recommendations, (now, recommendation)),
        scale_events=events,
        request_cost=assessment.learned_cost,
        backlog=assessment.backlog,
        recent_cost=assessment.recent_cost,
        reporting=reporting,
        reporting_since=state.reporting_since if reporting == state.reporting else now,
        last_panic_trigger=last_trigger,
        panic_replicas=max(desired, state.panic_replicas) if panicking else 0,
        hold_scale_down_until=state.hold_scale_down_until,
        cold_start=assessment.cold_start,
        bursts=assessment.bursts,
    )
    return decision, next_state


def _conditions(
    assessment: Assessment,
    normalized: Normalized,
    recommendation: int,
    current: int,
    up: Rules,
    down: Rules,
) -> tuple[ConditionFlag, ConditionFlag, ConditionFlag]:
    """AbleToScale, ScalingActive and ScalingLimited, with HPA's reasons where HPA has one."""
    able = ConditionFlag("AbleToScale", True, normalized.able_reason, normalized.able_message)
    if recommendation != current and normalized.replicas == current:
        direction = "Up" if recommendation > current else "Down"
        rules = up if recommendation > current else down
        if rules.select_policy == "Disabled":
            message = f"behavior.scale{direction}.selectPolicy is Disabled"
            able = ConditionFlag("AbleToScale", False, "ScalingDisabled", message)
    active = ConditionFlag(
        "ScalingActive", assessment.trustworthy, assessment.active_reason, assessment.active_message
    )
    limited = ConditionFlag(
        "ScalingLimited",
        normalized.limited_reason != "DesiredWithinRange",
        normalized.limited_reason,
        normalized.limited_message,
    )
    return able, active, limited


def _reason(
    assessment: Assessment,
    recommended: Recommendation,
    ready: int,
    starting: int,
    current: int,
    desired: int,
    panicking: bool,
    normalized: Normalized,
) -> str:
    """One line naming the signals, the estimate and the change, e.g. for status.lastScale.

    e.g. "queueDepth 13.2 per replica (target 4), ... on 2 ready replicas: load needs 6.3
    replicas at 86% utilisation (queueDepth): 2 -> 7 (panic)", or with an objective "...
    load needs 3.1 replicas at 91% utilisation (objective) +2 headroom for a rise of 18 req/s
    within the 30 s cold start seen in the last 45 min: 3 -> 6".
    """
    replicas = f"{ready} ready" + (f" + {starting} starting" if starting else "")
    sizing = recommended.sizing
    if sizing is None:
        return (
            f"{assessment.summary} on {replicas} replicas: holding {current} "
            f"({assessment.active_reason})"
        )
    held = f", {assessment.held} held by a backlog" if assessment.held else ""
    text = (
        f"{assessment.summary} on {replicas} replicas: load needs {sizing.needed:.1f} replicas "
        f"at {sizing.utilization:.0%} utilisation ({sizing.binding}{held})"
    )
    if recommended.headroom and recommended.rise is not None:
        text += (
            f" +{recommended.headroom} headroom for a rise of "
            f"{_format(recommended.rise.rise)} req/s within the "
            f"{recommended.cold_start:.0f} s cold start seen in the last "
            f"{_duration(recommended.rise.span)}"
        )
    if recommended.outlived is not None:
        text += (
            f", not {recommended.outlived}: the loads as high seen in the last "
            f"{_duration(recommended.rise.span) if recommended.rise else 'minutes'} were gone "
            f"within the {recommended.cold_start:.0f} s cold start new replicas take"
        )
    if recommended.drain_floor:
        text += (
            f", keeping {recommended.drain_floor} to drain "
            f"{_format(assessment.queue_total or 0.0)} queued requests"
        )
    text += f": {current} -> {desired}"
    notes = []
    if panicking:
        notes.append("panic")
    if normalized.able_reason != "ReadyForNewScale":
        notes.append(normalized.able_reason)
    if normalized.limited_reason != "DesiredWithinRange":
        notes.append(normalized.limited_reason)
    if not assessment.trustworthy:
        notes.append(assessment.active_reason)
    return text + (f" ({', '.join(notes)})" if notes else "")


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
