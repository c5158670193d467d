"""HPA v2's `behavior` on a recommendation: stabilization windows, rate policies, bounds.

Pure. The defaults are HPA's except the scale-down window in Operator mode (60 s rather than
300 s; why: docs/design/autoscaling.md). The simulator's HPA model uses the same code with
Kubernetes' own window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tritonop.api.models import Behavior, ScalingPolicy, ScalingRules

#: HPA's default tolerance: no change while the usage ratio is within 10% of 1.
TOLERANCE = 0.1
#: Behavior defaults: HPA v2's, except the scale-down window (see docs/design/autoscaling.md).
DEFAULT_SCALE_UP_WINDOW_SECONDS = 0
DEFAULT_SCALE_DOWN_WINDOW_SECONDS = 60
#: Kubernetes' own default, for modelling the HPA itself.
KUBERNETES_SCALE_DOWN_WINDOW_SECONDS = 300
DEFAULT_SCALE_UP_POLICIES = (
    ScalingPolicy(type="Percent", value=100, period_seconds=15),
    ScalingPolicy(type="Pods", value=4, period_seconds=15),
)
DEFAULT_SCALE_DOWN_POLICIES = (ScalingPolicy(type="Percent", value=100, period_seconds=15),)

Direction = Literal["up", "down"]


def ratio_recommendation(replicas: int, usage_ratio: float, tolerance: float = TOLERANCE) -> int:
    """HPA's rule: ceil(replicas * ratio), or no change while |ratio - 1| <= tolerance."""
    if abs(usage_ratio - 1.0) <= tolerance:
        return replicas
    return math.ceil(replicas * usage_ratio - 1e-9)


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
    """Fill in the defaults for whatever the user left unset (HPA's, except one window)."""
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
    stabilized = _stabilize(
        recommendation, current, recommendations, up, down, now, skip_up_stabilization
    )
    able_reason, able_message = _stabilization_reason(stabilized, recommendation, current, up, down)
    replicas, limited_reason, limited_message = _rate_limit(
        stabilized, current, events, up, down, min_replicas, max_replicas, now
    )
    # bounds hold even when nothing moved (e.g. a spec whose bounds changed under the service)
    if replicas > max_replicas:
        replicas, limited_reason, limited_message = max_replicas, *_too_many(max_replicas)
    elif replicas < min_replicas:
        replicas, limited_reason, limited_message = min_replicas, *_too_few(min_replicas)
    return Normalized(
        replicas, stabilized, able_reason, able_message, limited_reason, limited_message
    )


def _stabilize(
    recommendation: int,
    current: int,
    recommendations: Sequence[tuple[float, int]],
    up: Rules,
    down: Rules,
    now: float,
    skip_up_stabilization: bool,
) -> int:
    """The lowest recommendation of the scale-up window, the highest of the scale-down one."""
    up_floor = recommendation
    down_ceiling = recommendation
    up_cutoff = now - up.stabilization_window_seconds
    down_cutoff = now - down.stabilization_window_seconds
    for time, past in recommendations:
        if time > up_cutoff and not skip_up_stabilization:
            up_floor = min(up_floor, past)
        if time > down_cutoff:
            down_ceiling = max(down_ceiling, past)
    return min(max(current, up_floor), down_ceiling)


def _stabilization_reason(
    stabilized: int, recommendation: int, current: int, up: Rules, down: Rules
) -> tuple[str, str]:
    """HPA's AbleToScale (reason, message) for what stabilization did."""
    if stabilized == recommendation:
        return "ReadyForNewScale", "recommended size matches the stabilized size"
    if recommendation >= current:
        return "ScaleUpStabilized", (
            "recent recommendations were lower than the current one, applying the lowest "
            f"of the last {up.stabilization_window_seconds:g}s"
        )
    return "ScaleDownStabilized", (
        "recent recommendations were higher than the current one, applying the highest "
        f"of the last {down.stabilization_window_seconds:g}s"
    )


def _too_many(max_replicas: int) -> tuple[str, str]:
    return "TooManyReplicas", (
        f"the desired replica count is more than the maximum replica count {max_replicas}"
    )


def _too_few(min_replicas: int) -> tuple[str, str]:
    return "TooFewReplicas", (
        f"the desired replica count is less than the minimum replica count {min_replicas}"
    )


def _rate_limit(
    stabilized: int,
    current: int,
    events: Sequence[tuple[float, int]],
    up: Rules,
    down: Rules,
    min_replicas: int,
    max_replicas: int,
    now: float,
) -> tuple[int, str, str]:
    """(replicas, ScalingLimited reason, message) after the rate policies and the bounds."""
    if stabilized > current:
        limit = scale_up_limit(current, events, up, now)
        if limit < max_replicas:
            allowed, reason, message = (
                limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        else:
            allowed, (reason, message) = max_replicas, _too_many(max_replicas)
        if stabilized > allowed:
            return allowed, reason, message
    elif stabilized < current:
        limit = scale_down_limit(current, events, down, now)
        if limit > min_replicas:
            allowed, reason, message = (
                limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        else:
            allowed, (reason, message) = min_replicas, _too_few(min_replicas)
        if stabilized < allowed:
            return allowed, reason, message
    return stabilized, "DesiredWithinRange", "the desired count is within the acceptable range"


def history_horizon(up: Rules, down: Rules) -> float:
    """Seconds of recommendations and scale events that the windows and periods can look at."""
    return max(
        up.stabilization_window_seconds,
        down.stabilization_window_seconds,
        *(p.period_seconds for p in (*up.policies, *down.policies)),
    )
