"""The M/D/c queueing model the Operator-mode policy sizes replicas with.

Pure maths: Erlang's C formula, M/D/c queue length and wait, their inverses, the utilisation
at which a replica count keeps the spec's targets, and the fewest replicas carrying a demand
within that utilisation. Why M/D/c: docs/design/autoscaling.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from tritonop.api.models import Objective, Targets

#: Target utilisations stay within these bounds, so that a generous target never plans
#: replicas at the edge of saturation and a tiny one never divides by zero.
MIN_TARGET_UTILIZATION = 0.05
MAX_TARGET_UTILIZATION = 0.95
#: Target utilisation when only queueTimeMs is set and no request cost is known yet.
FALLBACK_TARGET_UTILIZATION = 0.8
#: Erlang's C formula costs time linear in the servers. Beyond this many replicas the service
#: is modelled as independent pools of this size with equal queues per replica: bounded work
#: for any replica count, and conservative (a larger pool carries more at the same queue per
#: replica; at this size the targets' utilisations are already near MAX_TARGET_UTILIZATION).
MAX_POOL_SERVERS = 200
#: With an objective, the share of its miss budget (1 - attainment) the steady-state queue may
#: use; the rest is left to the rises the headroom does not cover (see `headroom.py`).
STEADY_MISS_SHARE = 0.5


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
    """Mean requests waiting (all replicas together) in M/D/c at this utilisation.

    More than MAX_POOL_SERVERS servers count as pools of that size (see MAX_POOL_SERVERS).
    """
    if utilization <= 0:
        return 0.0
    if utilization >= 1:
        return math.inf
    pool = min(servers, MAX_POOL_SERVERS)
    per_pool = 0.5 * erlang_c(pool, utilization) * utilization / (1.0 - utilization)
    return per_pool * servers / pool


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


def mdc_late_fraction(
    servers: int, utilization: float, service_seconds: float, wait_seconds: float
) -> float:
    """Fraction of requests that wait longer than `wait_seconds` in M/D/c (approximation).

    The heavy-traffic form of the wait's tail: requests wait with Erlang's C probability,
    and a waiting request's wait is about exponential with rate 2c(1 - rho)/service time
    (twice M/M/c's, as constant service times halve the mean wait; exact in heavy traffic
    for c = 1, Kingman's formula).
    """
    if utilization <= 0:
        return 0.0
    if utilization >= 1:
        return 1.0
    pool = min(servers, MAX_POOL_SERVERS)
    decay = 2.0 * pool * (1.0 - utilization) / service_seconds
    return erlang_c(pool, utilization) * math.exp(-decay * max(0.0, wait_seconds))


def objective_wait(objective: Objective, request_cost: float) -> tuple[float, float]:
    """(seconds a request may wait, fraction of requests that may wait longer) in steady state.

    The latency objective less one request's own service time (the request cost: one model
    instance per replica is assumed), and the steady-state share of the miss budget.
    """
    wait = max(0.0, objective.latency_ms / 1000.0 - request_cost)
    return wait, (1.0 - objective.attainment) * STEADY_MISS_SHARE


def mdc_utilization_for_objective(servers: int, objective: Objective, request_cost: float) -> float:
    """Utilisation at which no more than the steady share of requests miss the objective."""
    wait, late = objective_wait(objective, request_cost)
    return _invert(lambda rho: mdc_late_fraction(servers, rho, request_cost, wait), late)


def target_utilization(
    targets: Targets,
    replicas: int,
    request_cost: float | None,
    objective: Objective | None = None,
) -> tuple[float, str]:
    """Utilisation per replica that keeps every configured target with `replicas` replicas.

    Returns (utilisation, the target that binds). Without a known request cost the queue
    time target and the objective cannot be converted, and FALLBACK_TARGET_UTILIZATION
    stands in for them.
    """
    candidates: list[tuple[float, str]] = []
    if objective is not None:
        if request_cost:
            candidates.append(
                (mdc_utilization_for_objective(replicas, objective, request_cost), "objective")
            )
        elif targets.queue_depth is None and targets.queue_time_ms is None:
            candidates.append((FALLBACK_TARGET_UTILIZATION, "objective"))
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


def _carries(
    demand: float,
    replicas: int,
    targets: Targets,
    request_cost: float | None,
    objective: Objective | None,
) -> bool:
    """Whether `replicas` carry `demand` within target: target_utilization without inverting.

    Each target's function of the utilisation increases, so the utilisation demand/replicas
    is within a target exactly when that target's value there is within it.
    """
    utilization = demand / replicas
    if utilization > MAX_TARGET_UTILIZATION:
        return False
    if utilization <= MIN_TARGET_UTILIZATION:
        return True
    no_targets = targets.queue_depth is None and targets.queue_time_ms is None
    if objective is not None:
        if request_cost:
            wait, late = objective_wait(objective, request_cost)
            if mdc_late_fraction(replicas, utilization, request_cost, wait) > late:
                return False
        elif no_targets and utilization > FALLBACK_TARGET_UTILIZATION:
            return False
    depth = targets.queue_depth
    if depth is not None and mdc_queue_length(replicas, utilization) > replicas * depth:
        return False
    if targets.queue_time_ms is not None:
        if request_cost:
            wait = targets.queue_time_ms / 1000.0
            if mdc_wait(replicas, utilization, request_cost) > wait:
                return False
        elif targets.queue_depth is None and utilization > FALLBACK_TARGET_UTILIZATION:
            return False
    return True


def size_for(
    demand: float,
    held: int,
    targets: Targets,
    request_cost: float | None,
    limit: int,
    objective: Objective | None = None,
) -> Sizing:
    """The fewest replicas whose utilisation stays within target while carrying `demand`.

    `held` replicas are busy with a backlog and carry nothing new; they come on top. The
    search is a bisection between the counts the utilisation bounds imply, never beyond
    `limit` (maxReplicas): beyond it, the float estimate is extrapolated. Bounded work for
    any finite demand >= 0 and any limit (the caller rejects non-finite demand).
    """
    low = max(1, min(limit, math.ceil(demand / MAX_TARGET_UTILIZATION - 1e-9)))
    high = max(low, min(limit, math.ceil(demand / MIN_TARGET_UTILIZATION + 1e-9)))
    if not _carries(demand, high, targets, request_cost, objective):
        low = high  # not even `limit` replicas carry it: extrapolate below
    while low < high:
        middle = (low + high) // 2
        if _carries(demand, middle, targets, request_cost, objective):
            high = middle
        else:
            low = middle + 1
    replicas = low
    utilization, binding = target_utilization(targets, replicas, request_cost, objective)
    needed = demand / utilization
    if demand > utilization * replicas:
        replicas = max(replicas, math.ceil(needed - 1e-9))
    return Sizing(replicas + held, needed + held, utilization, binding)
