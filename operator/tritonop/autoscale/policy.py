"""The Operator-mode autoscaling policy: Triton's queue signals in, desired replicas out.

Pure: `decide` takes the spec, the current replica count, one `Observation` and the previous
`PolicyState`, and returns a `Decision` plus the next state. No clock, no I/O.

Why not HPA's ratio on the queue numbers themselves
---------------------------------------------------
Users state targets the HPA way: keep the average queue depth per replica at `queueDepth` and
the average queue time at `queueTimeMs`. Applying HPA's ratio rule to those numbers directly
does not work, because queueing grows non-linearly with load: a replica at 40% utilisation
shows almost no queue, so the ratio would recommend minReplicas and flap back up, while the
backlog that builds during a burst makes it recommend far more replicas than the load needs
(and keeps growing while new pods start, cascading to maxReplicas).

What the policy does instead
----------------------------
It models the service as one M/D/c queue: `c` ready replicas behind a balancer that sends
work to free replicas, each request occupying a replica for a near-constant time (Triton on a
GPU). Queue length and wait of M/D/c follow from Erlang's C formula (halved for constant
service times, the usual M/D/c approximation; exact for c = 1). With it:

* the targets become a utilisation per replica count: `queueDepth` q is the utilisation at
  which c replicas hold c*q pending requests, `queueTimeMs` w the one at which requests wait
  w on average. The strictest target wins ("the largest recommendation wins");
* demand, in replicas busy 100% of the time, is the arrival rate (completions plus backlog
  growth) times the request cost: the replica-seconds one request takes. The cost is learned
  from intervals where replicas queue enough for the model to pin utilisation down, and
  remembered, so a service at low load is sized by its request rate, which is linear in load
  (until a cost is known, demand is the utilisation that explains the observed queue);
* desired replicas are the fewest that carry the demand within the target utilisation. More
  replicas are asked for as soon as the sizing says so; fewer only when the demand is below
  current by more than HPA's 10% tolerance (near a 90% target utilisation, a 10% band upwards
  would be saturation);
* whenever the queue is spread over the replicas, the utilisation that explains it is a floor
  of the demand: feedback that holds the targets even where the model or the cost is off;
* a backlog above target that is still growing holds the replicas that have it (each replica
  has its own queue), so during a burst the recommendation carries the arrivals without them.

Then HPA v2's `behavior` applies (stabilization windows over past recommendations, Pods and
Percent rate policies over periods, selectPolicy Max/Min/Disabled), and Knative's panic mode
on top: when one interval shows demand at `panic.threshold` times what the ready replicas
carry at target, the policy scales up without scale-up stabilization (rate policies and
maxReplicas still apply) and does not scale down until `PANIC_STABLE_WINDOWS` panic windows
(60 s by default, Knative's stable window) pass without a new trigger.

Defaults differ from HPA's in one place: an unset `scaleDown.stabilizationWindowSeconds` is
60 s, not 300 s, in Operator mode. GPU replicas are expensive, and the policy's demand signal
is a rate rather than a noisy utilisation, so it needs less smoothing; e2e/bench/RESULTS.md
shows the cost of 300 s (spike and bursty loads keep every replica a burst asked for).

Starting pods count as capacity: the recommendation is a total derived from the arrival rate,
compared with current replicas (ready plus starting), so pods still loading a model do not
make the policy add more unless the load grew beyond what they will carry.

Metrics that are missing, stale or incomplete never lower replicas: the policy holds the
current count and reports ScalingActive=False, but still scales up when the data it has
(unreported ready pods counted as idle, as HPA does on scale-up) already asks for more.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from tritonop.api.models import Autoscaling, Behavior, ScalingPolicy, ScalingRules, Targets
from tritonop.autoscale.types import ConditionFlag, Decision, Observation

#: HPA's default tolerance: no change while the usage ratio is within 10% of 1.
TOLERANCE = 0.1
#: Behavior defaults: HPA v2's, except the scale-down window (see the module docstring).
DEFAULT_SCALE_UP_WINDOW_SECONDS = 0
DEFAULT_SCALE_DOWN_WINDOW_SECONDS = 60
#: Kubernetes' own default, for modelling the HPA itself.
KUBERNETES_SCALE_DOWN_WINDOW_SECONDS = 300
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
#: The request cost is learned only from intervals whose queue (per replica, at the tick and
#: averaged over the interval) is at least this long: below it the queue says little.
LEARN_MIN_QUEUE = 0.5
#: Weight of a new sample in the learned request cost (exponential moving average).
LEARN_WEIGHT = 0.5
#: ... and only when the reporting replicas have not changed for this long (right after a
#: scale-up the old replicas still hold the backlog while the new ones idle).
LEARN_SETTLE_SECONDS = 30.0
#: Target utilisations stay within these bounds, so that a generous target never plans
#: replicas at the edge of saturation and a tiny one never divides by zero.
MIN_TARGET_UTILIZATION = 0.05
MAX_TARGET_UTILIZATION = 0.95
#: Target utilisation when only queueTimeMs is set and no request cost is known yet.
FALLBACK_TARGET_UTILIZATION = 0.8

Direction = Literal["up", "down"]


# --------------------------------------------------------------------------------------------
# the queueing model (M/D/c)
# --------------------------------------------------------------------------------------------


def erlang_c(servers: int, utilization: float) -> float:
    """Probability that a request waits in an M/M/c queue (Erlang's C formula)."""
    if utilization <= 0:
        return 0.0
    if utilization >= 1:
        return 1.0
    offered = servers * utilization
    blocking = 1.0  # Erlang B, computed with the stable recurrence
    for k in range(1, servers + 1):
        blocking = offered * blocking / (k + offered * blocking)
    return blocking / (1.0 - utilization * (1.0 - blocking))


def mdc_queue_length(servers: int, utilization: float) -> float:
    """Mean requests waiting (all replicas together) in M/D/c at this utilisation."""
    if utilization <= 0:
        return 0.0
    if utilization >= 1:
        return math.inf
    return 0.5 * erlang_c(servers, utilization) * utilization / (1.0 - utilization)


def mdc_wait(servers: int, utilization: float, service_seconds: float) -> float:
    """Mean seconds a request waits in M/D/c (Little's law on the queue length)."""
    if utilization <= 0:
        return 0.0
    arrival_rate = servers * utilization / service_seconds
    return mdc_queue_length(servers, utilization) / arrival_rate


def _invert(function: Callable[[float], float], value: float) -> float:
    """The utilisation in [0, 1) where an increasing `function` reaches `value` (bisection)."""
    if value <= 0:
        return 0.0
    low, high = 0.0, 1.0
    for _ in range(40):
        middle = (low + high) / 2
        if function(middle) < value:
            low = middle
        else:
            high = middle
    return low


def mdc_utilization(servers: int, queue_length: float) -> float:
    """Utilisation at which M/D/c holds `queue_length` waiting requests in total."""
    return _invert(lambda rho: mdc_queue_length(servers, rho), queue_length)


def mdc_utilization_for_wait(servers: int, wait_seconds: float, service_seconds: float) -> float:
    """Utilisation at which M/D/c requests wait `wait_seconds` on average."""
    return _invert(lambda rho: mdc_wait(servers, rho, service_seconds), wait_seconds)


def target_utilization(
    targets: Targets, replicas: int, request_cost: float | None
) -> tuple[float, str]:
    """Utilisation per replica that keeps every configured target with `replicas` replicas.

    Returns (utilisation, the target that binds). Without a known request cost the queue
    time target cannot be converted, and FALLBACK_TARGET_UTILIZATION stands in for it.
    """
    candidates: list[tuple[float, str]] = []
    if targets.queue_depth is not None:
        candidates.append((mdc_utilization(replicas, replicas * targets.queue_depth), "queueDepth"))
    if targets.queue_time_ms is not None:
        if request_cost:
            wait = targets.queue_time_ms / 1000.0
            candidates.append(
                (mdc_utilization_for_wait(replicas, wait, request_cost), "queueTimeMs")
            )
        elif not candidates:
            candidates.append((FALLBACK_TARGET_UTILIZATION, "queueTimeMs"))
    utilization, binding = min(candidates)
    return min(MAX_TARGET_UTILIZATION, max(MIN_TARGET_UTILIZATION, utilization)), binding


@dataclass(frozen=True)
class Sizing:
    """How many replicas carry a demand within target, and the float behind it."""

    replicas: int
    needed: float
    """Demand / target utilisation (plus replicas held by a backlog): the ratio numerator."""
    utilization: float
    binding: str


def size_for(
    demand: float, held: int, targets: Targets, request_cost: float | None, limit: int
) -> Sizing:
    """The fewest replicas whose utilisation stays within target while carrying `demand`.

    `held` replicas are busy with a backlog and carry nothing new; they come on top. The
    search stops at `limit` (maxReplicas): beyond it, the float estimate is extrapolated.
    """
    replicas = max(1, math.floor(demand))
    while True:
        utilization, binding = target_utilization(targets, replicas, request_cost)
        if demand <= utilization * replicas + 1e-12 or replicas >= limit:
            break
        replicas += 1
    needed = demand / utilization
    if demand > utilization * replicas:
        replicas = math.ceil(needed - 1e-9)
    return Sizing(replicas + held, needed + held, utilization, binding)


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


def resolve_rules(
    rules: ScalingRules | None,
    direction: Direction,
    scale_down_window: float = DEFAULT_SCALE_DOWN_WINDOW_SECONDS,
) -> Rules:
    """Fill in the defaults for whatever the user left unset (HPA's, but see the module doc)."""
    window_default = DEFAULT_SCALE_UP_WINDOW_SECONDS if direction == "up" else scale_down_window
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


def resolve_behavior(
    behavior: Behavior, scale_down_window: float = DEFAULT_SCALE_DOWN_WINDOW_SECONDS
) -> tuple[Rules, Rules]:
    """(scale-up rules, scale-down rules) with defaults; pass Kubernetes' window for an HPA."""
    return (
        resolve_rules(behavior.scale_up, "up"),
        resolve_rules(behavior.scale_down, "down", scale_down_window),
    )


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
        period_start = _replicas_at_period_start(current, events, now, policy.period_seconds)
        if policy.type == "Pods":
            limits.append(period_start + policy.value)
        else:
            limits.append(math.ceil(period_start * (1 + policy.value / 100.0) - 1e-9))
    limit = min(limits) if rules.select_policy == "Min" else max(limits)
    return max(limit, current)


def _replicas_at_period_start(
    current: int, events: Sequence[tuple[float, int]], now: float, period: float
) -> int:
    """The replica count a policy's period started from: current, less this period's changes."""
    added = _change_in_period(events, now, period, 1)
    removed = _change_in_period(events, now, period, -1)
    return current - added + removed


def scale_down_limit(
    current: int, events: Sequence[tuple[float, int]], rules: Rules, now: float
) -> int:
    """Lowest replica count the scale-down policies allow now (HPA's algorithm)."""
    if rules.select_policy == "Disabled":
        return current
    limits = []
    for policy in rules.policies:
        period_start = _replicas_at_period_start(current, events, now, policy.period_seconds)
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
        limit = scale_up_limit(current, events, up, now)
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


def _format(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _unusable(reason: str, message: str, summary: str, state: PolicyState) -> Assessment:
    return Assessment(
        None, 0, state.request_cost, False, reason, message, summary, state.request_cost,
        state.recent_cost, state.backlog,
    )  # fmt: skip


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
    targets = spec.targets
    if observation is None:
        return _unusable(
            "MissingMetrics",
            "no Triton metrics could be read this interval; holding the current replicas",
            "no metrics",
            state,
        )
    age = now - observation.time
    if age > STALE_INTERVALS * interval:
        return _unusable(
            "StaleMetrics",
            f"the newest metrics are {age:.0f}s old; holding the current replicas",
            "stale metrics",
            state,
        )
    reporting = observation.reporting_replicas
    if observation.ready_replicas == 0:
        message = f"no ready replica to measure ({observation.starting_replicas} starting)"
        return _unusable("NoReadyReplicas", message + "; holding", "no ready replica", state)
    if reporting == 0:
        message = _with_problems("no ready replica reported metrics; holding", observation)
        return _unusable("MissingMetrics", message, "no replica reported", state)

    rate = observation.request_rate
    depth = observation.queue_depth
    queue_time_ms = observation.queue_time_ms
    if queue_time_ms is None and rate == 0.0 and not depth:
        queue_time_ms = 0.0  # nothing finished and nothing waits: the queue time is zero
    missing = []
    if targets.queue_depth is not None and depth is None:
        missing.append("queueDepth")
    if targets.queue_time_ms is not None and queue_time_ms is None:
        missing.append("queueTimeMs")

    # total waiting requests: at the tick (gauge) and averaged over the interval (Little's law)
    queue_now = depth * reporting if depth is not None else None
    queue_interval = (
        queue_time_ms / 1000.0 * rate if queue_time_ms is not None and rate is not None else None
    )
    arrivals = _arrival_rate(observation, state, interval)

    # The queue describes every replica only when the replicas are the ones it built up on
    # (new pods have no counter deltas and idle next to a backlog) and it is not draining (a
    # draining backlog sits on the replicas that built it): "balanced".
    same_replicas = reporting == state.reporting
    settled = same_replicas and observation.time - state.reporting_since >= LEARN_SETTLE_SECONDS
    not_draining = arrivals is not None and rate is not None and arrivals >= rate * (1 - TOLERANCE)
    balanced = settled and not_draining

    # The request cost this interval shows, and the one learned from balanced intervals whose
    # queue is long (now and over the interval) enough to pin the utilisation down.
    cost_now = None
    if queue_interval is not None and rate and same_replicas:
        cost_now = mdc_utilization(reporting, queue_interval) * reporting / rate
    learned = state.request_cost
    if (
        cost_now is not None
        and observation.complete
        and balanced
        and queue_interval is not None
        and queue_interval >= LEARN_MIN_QUEUE * reporting
        and queue_now is not None
        and queue_now >= LEARN_MIN_QUEUE * reporting
    ):
        learned = (
            cost_now if learned is None else (1 - LEARN_WEIGHT) * learned + LEARN_WEIGHT * cost_now
        )

    # Demand: arrivals times the cost; this interval sizes with the larger of the remembered
    # and the updated cost, so more queue never means fewer replicas. The utilisation that
    # explains the queue (interval average when there is one: one gauge sample is noisy) is a
    # floor whenever the queue is balanced: the feedback that keeps the targets when the
    # learned cost is off. Until a cost is learned, that utilisation and this interval's cost.
    queue = queue_interval if queue_interval is not None else queue_now
    from_queue = reporting * mdc_utilization(reporting, queue) if queue is not None else None
    cost: float | None
    estimates = []
    if learned is not None:
        cost = max(learned, state.request_cost or 0.0)
        if arrivals is not None:
            estimates.append(arrivals * cost)
        if balanced and from_queue is not None:
            estimates.append(from_queue)
    else:
        cost = cost_now or state.recent_cost
        if from_queue is not None:
            estimates.append(from_queue)
        if arrivals is not None and cost_now:
            estimates.append(arrivals * cost_now)
    demand = max(estimates) if estimates else None

    # A backlog above target that still grows holds the replicas that have it.
    held = 0
    if (
        same_replicas
        and queue_now is not None
        and queue_now > (targets.queue_depth or 1.0) * reporting
        and arrivals is not None
        and rate is not None
        and arrivals > rate * (1.0 + TOLERANCE)
    ):
        held = reporting

    recent = cost_now if cost_now else state.recent_cost
    summary = _summary(observation, targets, queue_time_ms)
    backlog = (observation.time, queue_now) if queue_now is not None else state.backlog
    if missing:
        reason = "MissingMetrics"
        message = f"{' and '.join(missing)} missing this interval; holding, scaling up only"
    elif not observation.complete:
        reason = "IncompleteMetrics"
        message = (
            f"{reporting} of {observation.ready_replicas} ready replicas reported metrics; "
            "holding, scaling up only"
        )
    else:
        message = f"the targets are computed from Triton metrics of {reporting} ready replicas"
        return Assessment(
            demand, held, cost, True, "ValidMetrics", message, summary, learned, recent, backlog
        )
    message = _with_problems(message, observation)
    return Assessment(demand, held, cost, False, reason, message, summary, learned, recent, backlog)


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
