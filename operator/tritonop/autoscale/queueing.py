"""The M/D/c queueing model the Operator-mode policy sizes replicas with.

Pure maths: Erlang's C formula, M/D/c queue length and wait, their inverses, the utilisation
at which a replica count keeps the spec's targets, and the fewest replicas carrying a demand
within that utilisation. Why M/D/c: docs/design/autoscaling.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from tritonop.api.models import Targets

#: Target utilisations stay within these bounds, so that a generous target never plans
#: replicas at the edge of saturation and a tiny one never divides by zero.
MIN_TARGET_UTILIZATION = 0.05
MAX_TARGET_UTILIZATION = 0.95
#: Target utilisation when only queueTimeMs is set and no request cost is known yet.
FALLBACK_TARGET_UTILIZATION = 0.8


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
