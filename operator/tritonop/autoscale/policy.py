"""The Operator-mode autoscaling policy: Triton's queue signals in, desired replicas out.

Pure: `decide` takes the spec, the current replica count, one `Observation` and the previous
`PolicyState`, and returns a `Decision` plus the next state. No clock, no I/O.

How a recommendation is formed, and why
---------------------------------------
Users state targets the HPA way: keep the average queue depth per replica at `queueDepth`
and the average queue time at `queueTimeMs`. Applying HPA's ratio rule to those numbers
directly does not work, because queueing grows non-linearly with load: an M/D/1 queue holds
Lq = rho^2 / (2 (1 - rho)) requests at utilisation rho, so a replica at 40% utilisation shows
almost no queue and the ratio rule would recommend minReplicas (and flap back up), while a
backlog that builds during a burst makes the ratio recommend far more replicas than the load
needs. The policy therefore applies the ratio rule to *utilisation*, which is proportional to
load, and keeps the queue targets as what defines the target utilisation:

* demand, in replicas busy 100% of the time, is estimated from the observation as the largest
  of (a) the utilisation that explains the observed queue depth (M/D/1 inversion, per
  replica, times ready replicas) and (b) the arrival rate (completions plus backlog growth)
  times the learned cost of a request in replica-seconds. The cost is learned whenever
  replicas queue enough for the inversion to be informative and remembered, so a service at
  low load is still sized by its request rate, which is linear in load;
* each target becomes a utilisation: `queueDepth` q maps to the rho at which M/D/1 holds q
  pending requests, `queueTimeMs` w to the rho whose M/D/1 wait is w for the learned cost.
  The smallest (strictest) wins: that is "the largest recommendation wins";
* desired = ceil(demand / target utilisation), unchanged while within the 10% tolerance of
  the current replicas: HPA's rule with HPA's tolerance, on a proportional metric.

Then HPA v2's `behavior` applies (stabilization windows over past recommendations, Pods and
Percent rate policies over periods, selectPolicy Max/Min/Disabled, HPA's defaults), and
Knative's panic mode on top: when one interval shows demand at `panic.threshold` times what
the ready replicas carry at target, the policy goes straight to the recommendation (no
scale-up stabilization or rate limit, only maxReplicas) and does not scale down until
`PANIC_STABLE_WINDOWS` panic windows (60 s by default, Knative's stable window) pass
without a new trigger.

Starting pods count as capacity: the recommendation is a total derived from the arrival
rate, compared with current replicas (ready plus starting), so pods still loading a model do
not make the policy add more unless the load grew beyond what they will carry.

Metrics that are missing, stale or incomplete never lower replicas: the policy holds the
current count and reports ScalingActive=False, but still scales up when the data it has
(unreported ready pods counted as idle, as HPA does on scale-up) already asks for more.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from tritonop.api.models import Autoscaling, Behavior, ScalingPolicy, ScalingRules
from tritonop.autoscale.types import ConditionFlag, Decision, Observation

#: HPA's default tolerance: no change while the usage ratio is within 10% of 1.
TOLERANCE = 0.1
#: HPA v2 defaults (kube-controller-manager) per direction.
DEFAULT_SCALE_UP_WINDOW_SECONDS = 0
DEFAULT_SCALE_DOWN_WINDOW_SECONDS = 300
DEFAULT_SCALE_UP_POLICIES = (
    ScalingPolicy(type="Percent", value=100, period_seconds=15),
    ScalingPolicy(type="Pods", value=4, period_seconds=15),
)
DEFAULT_SCALE_DOWN_POLICIES = (ScalingPolicy(type="Percent", value=100, period_seconds=15),)
#: Panic ends this many panic windows after the last trigger (6 s x 10 = Knative's 60 s).
PANIC_STABLE_WINDOWS = 10
#: After an operator restart the policy does not scale down for this long, whatever the
#: scale-down window: its history (learned request cost, recommendations) starts empty.
RESTART_HOLD_SECONDS = 60.0
#: Observations older than this many intervals are stale.
STALE_INTERVALS = 3.0
#: The request cost is learned only from intervals whose average queue is at least this
#: long: below it, the M/D/1 inversion is dominated by noise.
LEARN_MIN_QUEUE = 0.5
#: Weight of a new sample in the learned request cost (exponential moving average).
LEARN_WEIGHT = 0.5
#: Target utilisations are kept within these bounds so that a generous target never plans
#: replicas at the edge of saturation, and a tiny one never divides by zero.
MIN_TARGET_UTILIZATION = 0.05
MAX_TARGET_UTILIZATION = 0.95

Direction = Literal["up", "down"]


# --------------------------------------------------------------------------------------------
# queueing helpers
# --------------------------------------------------------------------------------------------


def md1_utilization(queue_length: float) -> float:
    """Utilisation of an M/D/1 queue whose mean queue length (waiting, not served) is given.

    Inverts Lq = rho^2 / (2 (1 - rho)): rho = sqrt(Lq^2 + 2 Lq) - Lq, in [0, 1).
    """
    if queue_length <= 0:
        return 0.0
    return math.sqrt(queue_length * queue_length + 2.0 * queue_length) - queue_length


def md1_utilization_for_wait(wait_seconds: float, service_seconds: float) -> float:
    """Utilisation at which an M/D/1 queue with this service time waits `wait_seconds` on average.

    From W = rho S / (2 (1 - rho)): rho = x / (1 + x) with x = 2 W / S.
    """
    ratio = 2.0 * wait_seconds / service_seconds
    return ratio / (1.0 + ratio)


def ratio_recommendation(replicas: int, usage_ratio: float, tolerance: float = TOLERANCE) -> int:
    """HPA's rule: ceil(replicas * ratio), or no change while |ratio - 1| <= tolerance."""
    if abs(usage_ratio - 1.0) <= tolerance:
        return replicas
    return math.ceil(replicas * usage_ratio - 1e-9)


# --------------------------------------------------------------------------------------------
# behavior (HPA v2)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """ScalingRules of one direction with HPA's defaults filled in."""

    stabilization_window_seconds: float
    select_policy: Literal["Max", "Min", "Disabled"]
    policies: tuple[ScalingPolicy, ...]


def resolve_rules(rules: ScalingRules | None, direction: Direction) -> Rules:
    """Fill in HPA's defaults for whatever the user left unset."""
    window_default = (
        DEFAULT_SCALE_UP_WINDOW_SECONDS if direction == "up" else DEFAULT_SCALE_DOWN_WINDOW_SECONDS
    )
    policies_default = (
        DEFAULT_SCALE_UP_POLICIES if direction == "up" else DEFAULT_SCALE_DOWN_POLICIES
    )
    if rules is None:
        return Rules(float(window_default), "Max", policies_default)
    window = rules.stabilization_window_seconds
    return Rules(
        stabilization_window_seconds=float(window_default if window is None else window),
        select_policy=rules.select_policy or "Max",
        policies=tuple(rules.policies) if rules.policies else policies_default,
    )


def resolve_behavior(behavior: Behavior) -> tuple[Rules, Rules]:
    """(scale-up rules, scale-down rules) with defaults."""
    return resolve_rules(behavior.scale_up, "up"), resolve_rules(behavior.scale_down, "down")


def _change_in_period(
    events: Sequence[tuple[float, int]], now: float, period: float, sign: int
) -> int:
    """Replicas added (sign 1) or removed (sign -1) by scale events within the last `period`."""
    cutoff = now - period
    return sum(abs(change) for time, change in events if time > cutoff and change * sign > 0)


def scale_up_limit(
    current: int, events: Sequence[tuple[float, int]], rules: Rules, now: float
) -> int:
    """Highest replica count the scale-up policies allow now (HPA's algorithm).

    Each policy allows a change relative to the replica count at the start of its period, so
    several small steps within a period cannot add up to more than one policy allows.
    """
    if rules.select_policy == "Disabled":
        return current
    limits = []
    for policy in rules.policies:
        added = _change_in_period(events, now, policy.period_seconds, 1)
        removed = _change_in_period(events, now, policy.period_seconds, -1)
        period_start = current - added + removed
        if policy.type == "Pods":
            limits.append(period_start + policy.value)
        else:
            limits.append(math.ceil(period_start * (1 + policy.value / 100.0) - 1e-9))
    limit = min(limits) if rules.select_policy == "Min" else max(limits)
    return max(limit, current)


def scale_down_limit(
    current: int, events: Sequence[tuple[float, int]], rules: Rules, now: float
) -> int:
    """Lowest replica count the scale-down policies allow now (HPA's algorithm)."""
    if rules.select_policy == "Disabled":
        return current
    limits = []
    for policy in rules.policies:
        added = _change_in_period(events, now, policy.period_seconds, 1)
        removed = _change_in_period(events, now, policy.period_seconds, -1)
        period_start = current - added + removed
        if policy.type == "Pods":
            limits.append(period_start - policy.value)
        else:
            limits.append(math.floor(period_start * (1 - policy.value / 100.0) + 1e-9))
    limit = max(limits) if rules.select_policy == "Min" else min(limits)
    return min(limit, current)


@dataclass(frozen=True)
class Normalized:
    """A recommendation after stabilization, rate limits and bounds, with HPA's condition reasons."""

    replicas: int
    stabilized: int
    able_reason: str
    able_message: str
    limited_reason: str
    limited_message: str


def normalize(
    *,
    recommendation: int,
    current: int,
    recommendations: Sequence[tuple[float, int]],
    events: Sequence[tuple[float, int]],
    up: Rules,
    down: Rules,
    min_replicas: int,
    max_replicas: int,
    now: float,
    skip_up_stabilization: bool = False,
    skip_up_policies: bool = False,
) -> Normalized:
    """HPA v2's normalizeDesiredReplicasWithBehaviors on one recommendation.

    `recommendations` are the earlier (time, unstabilized recommendation) pairs; the
    current one is considered too. Scale-up uses the lowest recommendation of its window,
    scale-down the highest of its window, then the rate policies and the bounds apply.
    """
    up_floor = recommendation
    down_ceiling = recommendation
    up_cutoff = now - up.stabilization_window_seconds
    down_cutoff = now - down.stabilization_window_seconds
    for time, past in recommendations:
        if time > up_cutoff and not skip_up_stabilization:
            up_floor = min(up_floor, past)
        if time > down_cutoff:
            down_ceiling = max(down_ceiling, past)
    stabilized = current
    if stabilized < up_floor:
        stabilized = up_floor
    if stabilized > down_ceiling:
        stabilized = down_ceiling

    if stabilized != recommendation:
        if recommendation >= current:
            able_reason = "ScaleUpStabilized"
            able_message = (
                "recent recommendations were lower than the current one, applying the lowest "
                f"of the last {up.stabilization_window_seconds:g}s"
            )
        else:
            able_reason = "ScaleDownStabilized"
            able_message = (
                "recent recommendations were higher than the current one, applying the highest "
                f"of the last {down.stabilization_window_seconds:g}s"
            )
    else:
        able_reason, able_message = (
            "ReadyForNewScale",
            "recommended size matches the stabilized size",
        )

    replicas = stabilized
    limited_reason, limited_message = (
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    )
    if stabilized > current:
        limit = max_replicas if skip_up_policies else scale_up_limit(current, events, up, now)
        if limit < max_replicas:
            allowed, reason = limit, "ScaleUpLimit"
            message = "the desired replica count is increasing faster than the maximum scale rate"
        else:
            allowed, reason = max_replicas, "TooManyReplicas"
            message = (
                f"the desired replica count is more than the maximum replica count {max_replicas}"
            )
        if stabilized > allowed:
            replicas, limited_reason, limited_message = allowed, reason, message
    elif stabilized < current:
        limit = scale_down_limit(current, events, down, now)
        if limit > min_replicas:
            allowed, reason = limit, "ScaleDownLimit"
            message = "the desired replica count is decreasing faster than the maximum scale rate"
        else:
            allowed, reason = min_replicas, "TooFewReplicas"
            message = (
                f"the desired replica count is less than the minimum replica count {min_replicas}"
            )
        if stabilized < allowed:
            replicas, limited_reason, limited_message = allowed, reason, message
    # bounds hold even when nothing moved (e.g. a spec whose bounds changed under the service)
    if replicas > max_replicas:
        replicas, limited_reason = max_replicas, "TooManyReplicas"
        limited_message = (
            f"the desired replica count is more than the maximum replica count {max_replicas}"
        )
    elif replicas < min_replicas:
        replicas, limited_reason = min_replicas, "TooFewReplicas"
        limited_message = (
            f"the desired replica count is less than the minimum replica count {min_replicas}"
        )
    return Normalized(
        replicas, stabilized, able_reason, able_message, limited_reason, limited_message
    )


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
    target_utilization: float
    """Utilisation per replica that keeps every configured target."""
    binding_target: str
    """Which target set the utilisation (queueDepth or queueTimeMs)."""
    trustworthy: bool
    """Complete, fresh and every configured signal present: may lower replicas."""
    active_reason: str
    active_message: str
    summary: str
    """The observed signals in words, for the decision's reason."""
    request_cost: float | None
    backlog: tuple[float, float] | None


def _format(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def assess(
    spec: Autoscaling,
    observation: Observation | None,
    state: PolicyState,
    now: float,
    interval: float,
) -> Assessment:
    """Turn one observation into a demand estimate and a verdict on its quality."""
    targets = spec.targets
    default_utilization = md1_utilization(targets.queue_depth) if targets.queue_depth else 0.8
    if observation is None:
        return Assessment(
            None,
            default_utilization,
            "",
            False,
            "MissingMetrics",
            "no Triton metrics could be read this interval; holding the current replicas",
            "no metrics",
            state.request_cost,
            state.backlog,
        )
    age = now - observation.time
    if age > STALE_INTERVALS * interval:
        return Assessment(
            None,
            default_utilization,
            "",
            False,
            "StaleMetrics",
            f"the newest metrics are {age:.0f}s old; holding the current replicas",
            "stale metrics",
            state.request_cost,
            state.backlog,
        )
    reporting = observation.reporting_replicas
    if observation.ready_replicas == 0 or reporting == 0:
        reason = "NoReadyReplicas" if observation.ready_replicas == 0 else "MissingMetrics"
        message = (
            f"no ready replica to measure ({observation.starting_replicas} starting); holding"
            if observation.ready_replicas == 0
            else "no ready replica reported metrics; holding the current replicas"
        )
        return Assessment(
            None,
            default_utilization,
            "",
            False,
            reason,
            _with_problems(message, observation),
            "no replica reported",
            state.request_cost,
            state.backlog,
        )

    rate = observation.request_rate
    depth = observation.queue_depth
    queue_time_ms = observation.queue_time_ms
    idle = rate == 0.0 and not depth
    if queue_time_ms is None and idle:
        queue_time_ms = 0.0  # no request finished and none is waiting: the queue time is zero
    missing = []
    if targets.queue_depth is not None and depth is None:
        missing.append("queueDepth")
    if targets.queue_time_ms is not None and queue_time_ms is None:
        missing.append("queueTimeMs")

    # per-replica mean queue over the interval (Little's law) and at the tick (gauge)
    interval_queue = (
        queue_time_ms / 1000.0 * rate / reporting
        if queue_time_ms is not None and rate is not None
        else None
    )
    queue_samples = [q for q in (depth, interval_queue) if q is not None]
    demand_from_queue = reporting * md1_utilization(max(queue_samples)) if queue_samples else None

    # request cost: learned while the queue is long enough for the inversion to mean something
    cost_now = None
    if interval_queue is not None and rate is not None and rate > 0:
        cost_now = md1_utilization(interval_queue) * reporting / rate
    learned = state.request_cost
    complete = observation.complete
    if (
        cost_now is not None
        and complete
        and interval_queue is not None
        and interval_queue >= LEARN_MIN_QUEUE
    ):
        learned = (
            cost_now if learned is None else (1 - LEARN_WEIGHT) * learned + LEARN_WEIGHT * cost_now
        )

    # arrival rate: completions plus backlog growth since the previous observation
    backlog_now = depth * reporting if depth is not None else None
    arrivals = rate
    if rate is not None and backlog_now is not None and state.backlog is not None:
        then, backlog_then = state.backlog
        elapsed = observation.time - then
        if 0 < elapsed <= STALE_INTERVALS * interval:
            arrivals = max(0.0, rate + (backlog_now - backlog_then) / elapsed)
    cost = max(c for c in (learned, cost_now, 0.0) if c is not None)
    demand_from_rate = arrivals * cost if arrivals is not None and cost > 0 else None

    estimates = [d for d in (demand_from_queue, demand_from_rate) if d is not None]
    demand = max(estimates) if estimates else None

    utilizations: list[tuple[float, str]] = []
    if targets.queue_depth is not None:
        utilizations.append((md1_utilization(targets.queue_depth), "queueDepth"))
    if targets.queue_time_ms is not None:
        if cost > 0:
            utilizations.append(
                (md1_utilization_for_wait(targets.queue_time_ms / 1000.0, cost), "queueTimeMs")
            )
        elif not utilizations:
            utilizations.append((default_utilization, "queueTimeMs"))
    target_utilization, binding = min(utilizations)
    target_utilization = min(
        MAX_TARGET_UTILIZATION, max(MIN_TARGET_UTILIZATION, target_utilization)
    )

    parts = []
    if depth is not None:
        parts.append(
            f"queueDepth {_format(depth)} per replica"
            + (
                f" (target {_format(targets.queue_depth)})"
                if targets.queue_depth is not None
                else ""
            )
        )
    if queue_time_ms is not None:
        parts.append(
            f"queueTimeMs {_format(queue_time_ms)}"
            + (
                f" (target {_format(targets.queue_time_ms)})"
                if targets.queue_time_ms is not None
                else ""
            )
        )
    if rate is not None:
        parts.append(f"{_format(rate)} req/s")
    summary = ", ".join(parts) or "no signals"

    backlog = (observation.time, backlog_now) if backlog_now is not None else state.backlog
    if missing:
        message = f"{' and '.join(missing)} missing this interval; holding, scaling up only"
        return Assessment(
            demand,
            target_utilization,
            binding,
            False,
            "MissingMetrics",
            _with_problems(message, observation),
            summary,
            learned,
            backlog,
        )
    if not complete:
        message = (
            f"{reporting} of {observation.ready_replicas} ready replicas reported metrics; "
            "holding, scaling up only"
        )
        return Assessment(
            demand,
            target_utilization,
            binding,
            False,
            "IncompleteMetrics",
            _with_problems(message, observation),
            summary,
            learned,
            backlog,
        )
    return Assessment(
        demand,
        target_utilization,
        binding,
        True,
        "ValidMetrics",
        f"the targets are computed from Triton metrics of {reporting} ready replicas",
        summary,
        learned,
        backlog,
    )


def _with_problems(message: str, observation: Observation) -> str:
    if not observation.problems:
        return message
    shown = "; ".join(observation.problems[:5])
    more = f" (+{len(observation.problems) - 5} more)" if len(observation.problems) > 5 else ""
    return f"{message}: {shown}{more}"


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
    horizon = max(
        up.stabilization_window_seconds,
        down.stabilization_window_seconds,
        *(p.period_seconds for p in (*up.policies, *down.policies)),
    )
    recommendations = tuple(r for r in state.recommendations if r[0] > now - horizon)
    events = tuple(e for e in state.scale_events if e[0] > now - horizon)
    assessment = assess(spec, observation, state, now, interval)
    ready = observation.ready_replicas if observation is not None else 0
    starting = observation.starting_replicas if observation is not None else 0

    # the raw recommendation: HPA's ratio on utilisation, against ready + starting replicas
    if assessment.demand is None:
        recommendation = current_replicas
        needed = None
    else:
        needed = assessment.demand / assessment.target_utilization
        base = max(current_replicas, 1)
        recommendation = ratio_recommendation(base, needed / base)
        if current_replicas == 0:
            recommendation = math.ceil(needed - 1e-9)
    if not assessment.trustworthy:
        recommendation = max(recommendation, current_replicas)  # never lower on doubtful data

    # panic: one interval showing threshold x what the ready replicas carry at target
    panic_window = float(spec.panic.window_seconds)
    trigger = (
        needed is not None
        and ready > 0
        and needed >= spec.panic.threshold * ready
        and recommendation > current_replicas
    )
    last_trigger = now if trigger else state.last_panic_trigger
    panic_state = replace(state, last_panic_trigger=last_trigger)
    panicking = panic_state.panicking(now, panic_window)
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
        skip_up_policies=panicking,
    )
    desired = normalized.replicas

    if desired != current_replicas:
        events = (*events, (now, desired - current_replicas))
    panic_replicas = max(desired, state.panic_replicas) if panicking else 0

    able = ConditionFlag("AbleToScale", True, normalized.able_reason, normalized.able_message)
    wanted_direction: Direction | None = (
        "up"
        if recommendation > current_replicas
        else "down"
        if recommendation < current_replicas
        else None
    )
    if wanted_direction is not None:
        rules = up if wanted_direction == "up" else down
        if rules.select_policy == "Disabled" and desired == current_replicas:
            able = ConditionFlag(
                "AbleToScale",
                False,
                "ScalingDisabled",
                f"scale{'Up' if wanted_direction == 'up' else 'Down'}.selectPolicy is Disabled",
            )
    active = ConditionFlag(
        "ScalingActive", assessment.trustworthy, assessment.active_reason, assessment.active_message
    )
    limited = ConditionFlag(
        "ScalingLimited",
        normalized.limited_reason != "DesiredWithinRange",
        normalized.limited_reason,
        normalized.limited_message,
    )

    reason = _reason(
        assessment, needed, ready, starting, current_replicas, desired, panicking, normalized
    )
    decision = Decision(
        desired_replicas=desired,
        reason=reason,
        conditions=(able, active, limited),
        panicking=panicking,
    )
    next_state = PolicyState(
        recommendations=(*recommendations, (now, recommendation)),
        scale_events=events,
        request_cost=assessment.request_cost,
        backlog=assessment.backlog,
        last_panic_trigger=last_trigger,
        panic_replicas=panic_replicas,
        hold_scale_down_until=state.hold_scale_down_until,
    )
    return decision, next_state


def _reason(
    assessment: Assessment,
    needed: float | None,
    ready: int,
    starting: int,
    current: int,
    desired: int,
    panicking: bool,
    normalized: Normalized,
) -> str:
    """One line naming the signals, the estimate and the change, e.g. for status.lastScale."""
    replicas = f"{ready} ready" + (f" + {starting} starting" if starting else "")
    if needed is None:
        return f"{assessment.summary} on {replicas} replicas: holding {current} ({assessment.active_reason})"
    text = (
        f"{assessment.summary} on {replicas} replicas: load needs {needed:.1f} replicas at "
        f"{assessment.target_utilization:.0%} utilisation ({assessment.binding_target}): "
        f"{current} -> {desired}"
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
