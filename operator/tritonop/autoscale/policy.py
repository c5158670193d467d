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
from dataclasses import dataclass, replace

from tritonop.api.models import Autoscaling, Targets
from tritonop.autoscale.behavior import (
    TOLERANCE,
    Normalized,
    Rules,
    history_horizon,
    normalize,
    resolve_behavior,
)
from tritonop.autoscale.queueing import Sizing, mdc_utilization, size_for
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
        balanced=settled and not_draining,
    )


def _request_cost(
    signals: Signals, observation: Observation, state: PolicyState
) -> tuple[float | None, float | None]:
    """(the request cost this interval shows, the learned cost to remember).

    The cost is learned only from balanced, complete intervals whose queue (now and over the
    interval) is long enough to pin the utilisation down.
    """
    reporting, rate, queue_interval = signals.reporting, signals.rate, signals.queue_interval
    cost_now = None
    if queue_interval is not None and rate and signals.same_replicas:
        cost_now = mdc_utilization(reporting, queue_interval) * reporting / rate
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
    is learned: that utilisation and this interval's cost.
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
    else:
        cost = cost_now or state.recent_cost
        if from_queue is not None:
            estimates.append(from_queue)
        if arrivals is not None and cost_now:
            estimates.append(arrivals * cost_now)
    return (max(estimates) if estimates else None), cost


def _held_by_backlog(signals: Signals, targets: Targets) -> int:
    """Replicas a backlog above target that still grows holds (each replica has its own)."""
    queue_now, arrivals, rate = signals.queue_now, signals.arrivals, signals.rate
    growing = (
        queue_now is not None
        and queue_now > (targets.queue_depth or 1.0) * signals.reporting
        and arrivals is not None
        and rate is not None
        and arrivals > rate * (1.0 + TOLERANCE)
    )
    return signals.reporting if signals.same_replicas and growing else 0


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
    return Assessment(
        demand=demand,
        held=_held_by_backlog(signals, spec.targets),
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
    )


# --------------------------------------------------------------------------------------------
# the decision
# --------------------------------------------------------------------------------------------


def decide(
    spec: Autoscaling,
    current_replicas: int,
    observation: Observation | None,
    state: PolicyState,
    now: float,
    interval: float,
) -> tuple[Decision, PolicyState]:
    """Desired replicas for one interval, with the reason and the three scaling conditions."""
    up, down = resolve_behavior(spec.behavior)
    horizon = history_horizon(up, down)
    recommendations = tuple(r for r in state.recommendations if r[0] > now - horizon)
    events = tuple(e for e in state.scale_events if e[0] > now - horizon)
    assessment = assess(spec, observation, state, now, interval)
    ready = observation.ready_replicas if observation is not None else 0
    starting = observation.starting_replicas if observation is not None else 0
    reporting = observation.reporting_replicas if observation is not None else 0

    # The recommendation: the fewest replicas carrying the demand at target utilisation,
    # against current replicas (ready + starting: pods on their way count), HPA's tolerance.
    sizing = None
    recommendation = current_replicas
    if assessment.demand is not None:
        sizing = size_for(
            assessment.demand, assessment.held, spec.targets, assessment.cost, spec.max_replicas
        )
        # HPA's 10% tolerance guards scale-down only: near the target utilisation (often 90%)
        # 10% more load is saturation, and the sizing is a rate, not a noisy ratio.
        if sizing.replicas > current_replicas or sizing.needed < current_replicas * (
            1.0 - TOLERANCE
        ):
            recommendation = sizing.replicas
    if not assessment.trustworthy:
        recommendation = max(recommendation, current_replicas)  # never lower on doubtful data

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
            assessment, sizing, ready, starting, current_replicas, desired, panicking, normalized
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
    sizing: Sizing | None,
    ready: int,
    starting: int,
    current: int,
    desired: int,
    panicking: bool,
    normalized: Normalized,
) -> str:
    """One line naming the signals, the estimate and the change, e.g. for status.lastScale.

    e.g. "queueDepth 13.2 per replica (target 4), ... on 2 ready replicas: load needs 6.3
    replicas at 86% utilisation (queueDepth): 2 -> 7 (panic)".
    """
    replicas = f"{ready} ready" + (f" + {starting} starting" if starting else "")
    if sizing is None:
        return (
            f"{assessment.summary} on {replicas} replicas: holding {current} "
            f"({assessment.active_reason})"
        )
    held = f", {assessment.held} held by a growing backlog" if assessment.held else ""
    text = (
        f"{assessment.summary} on {replicas} replicas: load needs {sizing.needed:.1f} replicas "
        f"at {sizing.utilization:.0%} utilisation ({sizing.binding}{held}): {current} -> {desired}"
    )
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
