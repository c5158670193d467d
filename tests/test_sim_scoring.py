"""Honest scoring: every policy starts from the same state, gets the same interval, metric
delay and cold start, pays for its tail of work, and the oracle is a floor."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

import pytest

from tritonop.api.models import Autoscaling
from tritonop.sim.controllers import (
    HPAController,
    KPAController,
    OperatorController,
    OracleController,
    StaticController,
    fewest_replicas,
    oracle_plan,
    warm_start_replicas,
)
from tritonop.sim.engine import Controller, ServiceConfig, ServiceView, Simulation, simulate
from tritonop.sim.scenario import Scenario, initial_replicas, make_controller, run
from tritonop.sim.traces import RateProfile, pattern, poisson_arrivals

SPEC = Autoscaling.model_validate(
    {"minReplicas": 1, "maxReplicas": 10, "targets": {"queueDepth": 2, "queueTimeMs": 100}}
)


def constant(rate: float, duration: float, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return poisson_arrivals(RateProfile("constant", duration, rate, lambda t: rate), rng)


def bursts(duration: float = 600.0, seed: int = 2) -> list[float]:
    """The heavy-burst pattern's first `duration` seconds: 2 req/s, 10 s bursts at 50."""
    rng = random.Random(seed)
    profile = pattern("heavy-burst", rng)
    return [t for t in poisson_arrivals(profile, rng) if t < duration]


@dataclass
class Recorder:
    """Asks for fixed counts at fixed times and records every view it was shown."""

    plan: dict[float, int] = field(default_factory=dict)
    interval: float = 5.0
    name: str = "recorder"
    views: list[tuple[float, ServiceView]] = field(default_factory=list)

    def decide(self, now: float, service: ServiceView) -> int:
        self.views.append((now, service))
        return self.plan.get(now, service.desired)


# ------------------------------------------------------------------------------ same start


def test_warm_start_gives_every_autoscaled_policy_what_the_first_minute_needs() -> None:
    # 50 req/s of 50 ms requests from the first second: 2.5 replicas busy, 3 serve it
    arrivals = constant(50.0, 300.0)
    scenario = Scenario(SPEC, ServiceConfig(), arrivals, 300.0)
    needed = warm_start_replicas(
        arrivals, ServiceConfig(), min_replicas=1, max_replicas=10, interval=5.0
    )
    assert needed == 3
    for policy in ("operator", "hpa", "kpa", "oracle"):
        assert initial_replicas(policy, scenario) == 3
        result = run(policy, scenario)
        assert result.timeline.ready[0] == 3, policy
        if policy in ("operator", "hpa", "oracle"):  # kpa's own target wants 2 at once
            first_minute = [
                latency
                for arrival, latency in zip(result.arrivals, result.latencies, strict=True)
                if arrival < 60
            ]
            assert all(latency <= 0.5 for latency in first_minute), policy
    assert initial_replicas("static:5", scenario) == 5
    assert run("static:5", scenario).timeline.ready[0] == 5


def test_warm_start_stays_within_the_bounds() -> None:
    arrivals = constant(50.0, 120.0)
    bounded = SPEC.model_copy(update={"max_replicas": 2})
    assert initial_replicas("operator", Scenario(bounded, ServiceConfig(), arrivals, 120.0)) == 2
    quiet = SPEC.model_copy(update={"min_replicas": 4})
    assert initial_replicas("hpa", Scenario(quiet, ServiceConfig(), constant(1, 120), 120.0)) == 4


def test_cold_start_starts_everyone_at_min_replicas_and_scores_after_the_first_cold_start() -> None:
    arrivals = constant(50.0, 300.0)
    scenario = Scenario(SPEC, ServiceConfig(cold_start_s=20.0), arrivals, 300.0, start="cold")
    assert scenario.scored_from == 25.0  # one interval plus one cold start
    for policy in ("operator", "hpa", "kpa", "oracle", "static:4"):
        result = run(policy, scenario)
        assert result.timeline.ready[0] == 1, policy
        assert result.scored_from == 25.0
        # one replica cannot carry 50 req/s: what arrived before 25 s is excluded, not hidden
        assert result.slo_attainment_all < result.slo_attainment, policy
    static = run("static:4", scenario)
    assert static.timeline.ready[static.timeline.times.index(25.0)] == 4
    assert static.summary()["scored_from_s"] == 25.0


def test_every_policy_gets_the_scenario_interval() -> None:
    scenario = Scenario(SPEC, ServiceConfig(), constant(5.0, 60.0), 60.0, interval=3.0)
    for policy in ("operator", "hpa", "kpa", "oracle", "static:2"):
        assert make_controller(policy, scenario).interval == 3.0, policy
    with pytest.raises(ValueError, match="interval"):
        Scenario(SPEC, ServiceConfig(), [], 10.0, interval=0)


# ------------------------------------------------------------------------------ metric delay


def test_controllers_see_the_service_as_it_was_metric_delay_ago() -> None:
    arrivals = constant(30.0, 60.0)
    config = ServiceConfig(cold_start_s=10.0, metric_delay_s=3.0)
    recorder = Recorder({5.0: 2})
    simulate(arrivals, recorder, config, 60.0)
    for now, view in recorder.views:
        assert view.time == now - 3.0
    by_time = dict(recorder.views)
    # the second replica is ready at 15 s: the decision at 15 s saw the pods of 12 s
    assert len(by_time[15.0].ready) == 1 and by_time[15.0].starting == 1
    assert len(by_time[20.0].ready) == 2 and by_time[20.0].starting == 0
    # the desired count is the controller's own last write, not delayed
    assert by_time[10.0].desired == 2
    counts = [view.ready[0].success_count for _, view in recorder.views]
    assert counts == sorted(counts) and counts[0] > 0


def test_a_metric_delay_longer_than_the_interval_keeps_every_snapshot_in_order() -> None:
    recorder = Recorder(interval=2.0)
    simulate(constant(10.0, 30.0), recorder, ServiceConfig(metric_delay_s=5.0), 30.0)
    assert [view.time for _, view in recorder.views] == [
        max(0.0, now - 5.0) for now, _ in recorder.views
    ]


def fresh(policy: str) -> Controller:
    """A new operator, hpa or kpa controller on SPEC, deciding every 5 s."""
    if policy == "operator":
        return OperatorController(SPEC)
    if policy == "hpa":
        return HPAController(SPEC, interval=5.0)
    return KPAController(SPEC, 3.0, interval=5.0)


def test_every_baseline_reacts_later_with_a_metric_delay() -> None:
    # one request at 0.5 s, then 60 req/s from 60 s: each policy scales up once it sees it
    arrivals = [0.5, *(t for t in constant(60.0, 240.0) if t >= 60)]
    for policy in ("operator", "hpa", "kpa"):
        first_up = {}
        for delay in (0.0, 10.0):
            result = simulate(arrivals, fresh(policy), ServiceConfig(metric_delay_s=delay), 240.0)
            timeline = result.timeline
            first_up[delay] = next(
                t for t, d in zip(timeline.times, timeline.desired, strict=True) if d > 1
            )
        assert first_up[10.0] >= first_up[0.0] + 10.0, policy


def test_a_negative_metric_delay_is_rejected() -> None:
    with pytest.raises(ValueError, match="metric delay"):
        ServiceConfig(metric_delay_s=-1)


# ------------------------------------------------------------------------------ tail cost


def test_requests_in_flight_at_the_end_cost_replica_time_until_they_finish() -> None:
    # 100 requests of 50 ms arrive at 9.9 s on one replica: it works until 14.9 s
    arrivals = [9.9] * 100
    result = simulate(arrivals, StaticController(1), ServiceConfig(), 10.0)
    assert max(result.latencies) == pytest.approx(5.0)
    assert result.replica_seconds == pytest.approx(9.9 + 5.0)


def test_idle_and_starting_replicas_stop_costing_at_the_end() -> None:
    # one idle ready replica, two starting (never ready before the end)
    result = simulate([1.0], Recorder({5.0: 3}), ServiceConfig(cold_start_s=20.0), duration=10.0)
    assert result.replica_seconds == pytest.approx(10.0 + 2 * 5.0)


def test_a_draining_replica_at_the_end_costs_until_its_queue_is_served() -> None:
    arrivals = [9.0 + i * 0.001 for i in range(100)]
    recorder = Recorder({9.5: 1}, interval=0.5)
    result = simulate(arrivals, recorder, ServiceConfig(initial_replicas=2), 10.0)
    # 50 requests each; at 9.5 s one replica drains the ~40 it holds, the other serves its own
    assert not any(math.isnan(latency) for latency in result.latencies)
    assert result.replica_seconds == pytest.approx(9.0 + 2.5 + 9.0 + 2.5, abs=0.2)


def test_requests_held_at_the_end_are_served_by_replicas_still_starting() -> None:
    # no replica at all until one requested at 5 s is ready at 25 s, after the end (10 s)
    config = ServiceConfig(initial_replicas=0, cold_start_s=20.0)
    result = simulate([8.0, 9.0], Recorder({5.0: 1}), config, 10.0)
    assert result.latencies == pytest.approx([17.05, 16.1])  # one replica, in order
    assert result.replica_seconds == pytest.approx(25.1 - 5.0)


# ------------------------------------------------------------------------------ the oracle


def test_the_oracle_carries_the_backlog_into_the_next_window() -> None:
    # 60 requests at 29.8 s need 6 replicas (10 each: 500 ms); at 30 s each still holds about
    # 6. The next window's 12 requests alone fit one replica (done 325 ms after the last
    # one arrives), but behind that backlog one replica would take 625 ms: it needs two.
    burst = [29.8 + i * 1e-5 for i in range(60)]
    after = [30.0 + i * 0.025 for i in range(12)]
    config = ServiceConfig(cold_start_s=5.0, slo_ms=550.0)
    plan = oracle_plan(
        burst + after, config, min_replicas=1, max_replicas=10, duration=60.0, interval=1.0
    )
    assert plan == [6, 2]
    alone = simulate([t - 30.0 for t in after], StaticController(1), config, 30.0)
    assert alone.slo_attainment == 1.0
    replay = simulate(burst + after, OracleController(plan, 5.0, 1.0), config, 60.0)
    assert replay.slo_attainment == 1.0
    fewer = simulate(burst + after, OracleController([6, 1], 5.0, 1.0), config, 60.0)
    assert fewer.slo_attainment < 1.0


def test_the_oracle_settles_for_the_fewest_replicas_that_miss_no_more_than_max() -> None:
    # 1 s requests with a 0.5 s objective: nothing can meet it, so the oracle keeps minimum
    config = ServiceConfig(replica=replace(ServiceConfig().replica, service_time_ms=1000.0))
    arrivals = constant(2.0, 120.0)
    plan = oracle_plan(
        arrivals, config, min_replicas=1, max_replicas=8, duration=120.0, interval=5.0
    )
    assert max(plan) <= 3  # the capacity bound (2 req/s of 1 s), not maxReplicas


def test_the_oracle_is_a_floor_against_every_static_count() -> None:
    arrivals = bursts()
    scenario = Scenario(SPEC, ServiceConfig(cold_start_s=20.0), arrivals, 600.0)
    oracle = run("oracle", scenario)
    assert oracle.slo_attainment == 1.0
    statics = [run(f"static:{n}", scenario) for n in range(1, 7)]
    meeting = [s for s in statics if s.slo_attainment >= 0.99]
    assert meeting, "some static count must meet the objective on this trace"
    for static in statics:
        assert oracle.slo_attainment >= static.slo_attainment
        if static.slo_attainment >= 0.99:
            assert oracle.replica_seconds < static.replica_seconds
        assert not (
            static.slo_attainment > oracle.slo_attainment
            and static.replica_seconds < oracle.replica_seconds
        )


def test_the_oracle_plan_and_its_replay_are_the_same_run() -> None:
    arrivals = bursts(300.0)
    config = ServiceConfig(initial_replicas=1, cold_start_s=20.0)
    plan = oracle_plan(
        arrivals, config, min_replicas=1, max_replicas=10, duration=300.0, interval=5.0
    )
    replay = simulate(arrivals, OracleController(plan, 20.0, 5.0), config, 300.0)
    assert replay.slo_attainment == 1.0
    # one replica fewer in any window that had more than the minimum misses requests
    for window, count in enumerate(plan):
        if count > 1 and any(30 * window <= t < 30 * (window + 1) for t in arrivals):
            fewer = [*plan]
            fewer[window] -= 1
            result = simulate(arrivals, OracleController(fewer, 20.0, 5.0), config, 300.0)
            assert result.slo_attainment < 1.0, window


def test_fewest_replicas_gallops_and_bisects() -> None:
    def needs(threshold: int, floor: int = 0):  # type: ignore[no-untyped-def]
        return lambda n: max(floor, threshold - n)

    assert fewest_replicas(needs(3), 1, 20) == 3
    assert fewest_replicas(needs(1), 1, 20) == 1
    assert fewest_replicas(needs(17), 1, 20) == 17
    assert fewest_replicas(needs(30, floor=0), 1, 20) == 20  # nothing serves all: the max
    assert fewest_replicas(needs(12, floor=4), 1, 20) == 8  # no fewer misses past 8
    assert fewest_replicas(needs(5), 4, 4) == 4


# ------------------------------------------------------------------------------ forks


def test_a_fork_runs_on_its_own_and_the_original_is_unchanged() -> None:
    arrivals = bursts(300.0)
    config = ServiceConfig(initial_replicas=1)
    whole = Simulation(arrivals, Recorder({100.0: 3}), config, 300.0).result()
    paused = Simulation(arrivals, Recorder({100.0: 3}), config, 300.0)
    paused.run_until(150.0)
    other = paused.fork(Recorder({150.0: 1}))
    other.run_until(300.0, inclusive=True)
    resumed = paused.result()
    assert resumed.latencies == whole.latencies
    assert resumed.replica_seconds == pytest.approx(whole.replica_seconds)
    forked = other.settle()
    assert forked != whole.latencies  # the fork scaled down at 150 s: later requests differ
