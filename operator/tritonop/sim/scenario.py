"""One simulation scenario (spec, service, load) and running a named policy on it.

The entry point shared by `tritonop simulate` and the benchmark (e2e/bench/autoscale.py).

Every policy is scored from the same start. The rule is the scenario's `start`:

* `warm` (default): the service has been running before the trace begins. Every autoscaled
  policy (operator, hpa, kpa, oracle) starts with the replicas the first minute's load needs
  (`controllers.warm_start_replicas`: the fewest that serve it within the objective, within
  minReplicas..maxReplicas), ready at time 0; `static:N` starts with its N. Every request is
  scored.
* `cold`: the service is created when the trace begins. Every policy, `static:N` included,
  starts with minReplicas ready; requests arriving before the first moment any policy's new
  replicas can serve (one interval plus one cold start) are not scored, as no policy could
  have served them differently. Replica-seconds count in full; the attainment over every
  request is reported beside (`SimulationResult.slo_attainment_all`).

Every policy also gets the scenario's decision interval, the service's metric delay and cold
start, and the spec's bounds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from tritonop.api.models import Autoscaling, Targets
from tritonop.sim.controllers import (
    HPAController,
    KPAController,
    OperatorController,
    OracleController,
    StaticController,
    kpa_target_concurrency,
    oracle_plan,
    warm_start_replicas,
)
from tritonop.sim.engine import Controller, ServiceConfig, SimulationResult, simulate
from tritonop.sim.traces import pattern, poisson_arrivals

POLICIES = ("operator", "hpa", "kpa", "oracle", "static:N")
StartRule = Literal["warm", "cold"]
START_RULES: tuple[StartRule, ...] = ("warm", "cold")

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
    interval: float = 5.0
    """Decision interval of every policy (the operator's TRITONOP_AUTOSCALE_INTERVAL_SECONDS)."""
    start: StartRule = "warm"

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError(f"the decision interval must be > 0 s, got {self.interval}")
        if self.start not in START_RULES:
            raise ValueError(
                f"unknown start {self.start!r}; choose one of {', '.join(START_RULES)}"
            )

    @property
    def scored_from(self) -> float:
        """Requests arriving before this are not scored (see the module docstring)."""
        return self.interval + self.service.cold_start_s if self.start == "cold" else 0.0


def pattern_arrivals(name: str, seed: int, scale: float = 1.0) -> tuple[list[float], float]:
    """Poisson arrivals of the built-in pattern `name` at `scale` times its rate, and its
    duration, from `seed`."""
    rng = random.Random(seed)
    profile = pattern(name, rng, scale)
    return poisson_arrivals(profile, rng), profile.duration


def trace_duration(arrivals: Sequence[float], interval: float) -> float:
    """A trace's duration: its last arrival rounded up to the decision interval."""
    if interval <= 0:
        raise ValueError(f"the decision interval must be > 0 s, got {interval}")
    last = arrivals[-1] if arrivals else 0.0
    return max(interval, math.ceil((last + 1e-9) / interval) * interval)


def static_count(policy: str) -> int | None:
    """N of `static:N`, None for another policy; ValueError for a malformed static."""
    if not policy.startswith("static:"):
        return None
    count = policy.removeprefix("static:")
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"static:N needs a replica count >= 1, got {policy!r}")
    return int(count)


def initial_replicas(policy: str, scenario: Scenario) -> int:
    """Replicas ready at time 0 under the scenario's start rule (module docstring)."""
    spec = scenario.autoscaling
    if scenario.start == "cold":
        return max(1, spec.min_replicas)
    fixed = static_count(policy)
    if fixed is not None:
        return fixed
    return warm_start_replicas(
        scenario.arrivals,
        scenario.service,
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        interval=scenario.interval,
    )


def make_controller(policy: str, scenario: Scenario) -> Controller:
    """The controller named `policy` (operator, hpa, kpa, oracle or static:N).

    The oracle plans from the start `scenario.service.initial_replicas` describes.
    """
    spec = scenario.autoscaling
    replica = scenario.service.replica
    interval = scenario.interval
    if policy == "operator":
        return OperatorController(spec, interval=interval)
    if policy == "hpa":
        return HPAController(spec, interval=interval)
    if policy == "kpa":
        target = kpa_target_concurrency(spec, replica.instances, replica.service_time_ms)
        return KPAController(spec, target, interval=interval)
    if policy == "oracle":
        plan = oracle_plan(
            scenario.arrivals,
            scenario.service,
            min_replicas=spec.min_replicas,
            max_replicas=spec.max_replicas,
            duration=scenario.duration,
            interval=interval,
        )
        return OracleController(plan, scenario.service.cold_start_s, interval)
    fixed = static_count(policy)
    if fixed is not None:
        return StaticController(fixed, interval=interval)
    raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")


def cut(arrivals: Sequence[float], duration: float) -> list[float]:
    """The arrivals before `duration` seconds."""
    return [t for t in arrivals if t < duration]


def run(policy: str, scenario: Scenario) -> SimulationResult:
    """Simulate `scenario` under `policy`, from the scenario's start rule."""
    start = replace(scenario.service, initial_replicas=initial_replicas(policy, scenario))
    scenario = replace(scenario, service=start)
    controller = make_controller(policy, scenario)
    result = simulate(scenario.arrivals, controller, start, duration=scenario.duration)
    result.scored_from = scenario.scored_from
    return result
