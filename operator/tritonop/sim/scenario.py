"""One simulation scenario (spec, service, load) and running a named policy on it.

The entry point shared by `tritonop simulate` and the benchmark (e2e/bench/autoscale.py).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tritonop.api.models import Autoscaling, Targets
from tritonop.sim.controllers import (
    HPAController,
    KPAController,
    OperatorController,
    OracleController,
    StaticController,
    kpa_target_concurrency,
    oracle_plan,
)
from tritonop.sim.engine import Controller, ServiceConfig, SimulationResult, simulate
from tritonop.sim.traces import pattern, poisson_arrivals

POLICIES = ("operator", "hpa", "kpa", "oracle", "static:N")

#: Used when the simulated spec has no autoscaling block: targets a user would plausibly
#: write for a model of about 50 ms with a 500 ms objective (see e2e/bench/README).
DEFAULT_AUTOSCALING = Autoscaling(
    min_replicas=1, max_replicas=20, targets=Targets(queue_depth=2, queue_time_ms=100)
)


@dataclass(frozen=True)
class Scenario:
    """Everything a run needs except the policy."""

    autoscaling: Autoscaling
    service: ServiceConfig
    arrivals: Sequence[float]
    duration: float
    operator_interval: float = 5.0


def pattern_arrivals(name: str, seed: int) -> tuple[list[float], float]:
    """Poisson arrivals of the built-in pattern `name` and its duration, from `seed`."""
    rng = random.Random(seed)
    profile = pattern(name, rng)
    return poisson_arrivals(profile, rng), profile.duration


def trace_duration(arrivals: Sequence[float], interval: float) -> float:
    """A trace's duration: its last arrival rounded up to the decision interval."""
    if interval <= 0:
        raise ValueError(f"the decision interval must be > 0 s, got {interval}")
    last = arrivals[-1] if arrivals else 0.0
    return max(interval, math.ceil((last + 1e-9) / interval) * interval)


def make_controller(policy: str, scenario: Scenario) -> Controller:
    """The controller named `policy` (operator, hpa, kpa, oracle or static:N)."""
    spec = scenario.autoscaling
    replica = scenario.service.replica
    if policy == "operator":
        return OperatorController(spec, interval=scenario.operator_interval)
    if policy == "hpa":
        return HPAController(spec)
    if policy == "kpa":
        target = kpa_target_concurrency(spec, replica.instances, replica.service_time_ms)
        return KPAController(spec, target)
    if policy == "oracle":
        plan = oracle_plan(
            scenario.arrivals,
            scenario.service,
            min_replicas=spec.min_replicas,
            max_replicas=spec.max_replicas,
            duration=scenario.duration,
        )
        return OracleController(plan, scenario.service.cold_start_s)
    if policy.startswith("static:"):
        count = policy.removeprefix("static:")
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"static:N needs a replica count >= 1, got {policy!r}")
        return StaticController(int(count))
    raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")


def cut(arrivals: Sequence[float], duration: float) -> list[float]:
    """The arrivals before `duration` seconds."""
    return [t for t in arrivals if t < duration]


def run(policy: str, scenario: Scenario) -> SimulationResult:
    """Simulate `scenario` under `policy`.

    Autoscaled policies start at minReplicas, static:N at N (both ready at time 0).
    """
    controller = make_controller(policy, scenario)
    initial = (
        int(policy.removeprefix("static:"))
        if policy.startswith("static:")
        else max(1, scenario.autoscaling.min_replicas)
    )
    config = replace(scenario.service, initial_replicas=initial)
    return simulate(scenario.arrivals, controller, config, duration=scenario.duration)
