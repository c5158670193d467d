"""The simulated service, its controllers and scenarios, on short traces."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import pytest

from tritonop.api.models import Autoscaling
from tritonop.autoscale import observe as metrics
from tritonop.sim.controllers import (
    HPAController,
    KPAController,
    OperatorController,
    StaticController,
    hpa_metric_replicas,
    kpa_target_concurrency,
    oracle_plan,
)
from tritonop.sim.engine import Service, ServiceConfig, ServiceView, simulate
from tritonop.sim.replica import ReplicaConfig
from tritonop.sim.scenario import DEFAULT_AUTOSCALING, Scenario, run
from tritonop.sim.traces import RateProfile, poisson_arrivals


def constant(rate: float, duration: float, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return poisson_arrivals(RateProfile("constant", duration, rate, lambda t: rate), rng)


def step_trace(seed: int = 1) -> list[float]:
    """5 req/s for a minute, then 40 req/s for three minutes."""
    rng = random.Random(seed)
    profile = RateProfile("short-step", 240.0, 40.0, lambda t: 40.0 if t >= 60 else 5.0)
    return poisson_arrivals(profile, rng)


@dataclass
class Scripted:
    """A controller that asks for fixed counts at fixed times (to test the service itself)."""

    plan: dict[float, int]
    interval: float = 5.0
    name: str = "scripted"

    def decide(self, now: float, service: ServiceView) -> int:
        return self.plan.get(now, service.desired)


def test_static_service_serves_every_request_and_costs_n_times_duration() -> None:
    arrivals = constant(10.0, 600.0)
    result = simulate(arrivals, StaticController(2), ServiceConfig(initial_replicas=2), 600.0)
    assert not any(math.isnan(latency) for latency in result.latencies)
    assert min(result.latencies) >= 0.05 - 1e-9
    # two replicas for the whole run, plus the tail of the last request past the end
    tail = max(0.0, arrivals[-1] + result.latencies[-1] - 600.0)
    assert result.replica_seconds == pytest.approx(1200.0 + tail)
    assert result.scale_events == 0 and result.max_replicas == 2
    summary = result.summary()
    assert summary["requests"] == len(arrivals)
    assert set(summary) >= {
        "policy", "requests", "slo_attainment", "latency_ms", "replica_seconds",
        "scale_events", "max_replicas",
    }  # fmt: skip


def test_one_replica_matches_md1_mean_latency() -> None:
    # M/D/1 at utilisation 0.5: 50 ms service + 25 ms mean wait
    arrivals = constant(10.0, 1800.0, seed=4)
    result = simulate(arrivals, StaticController(1), ServiceConfig(), 1800.0)
    mean_ms = sum(result.latencies) / len(result.latencies) * 1000
    assert mean_ms == pytest.approx(75.0, rel=0.1)


def test_new_replicas_serve_only_after_the_cold_start() -> None:
    arrivals = constant(30.0, 120.0)
    config = ServiceConfig(cold_start_s=20.0)
    result = simulate(arrivals, Scripted({10.0: 3}), config, 120.0)
    timeline = dict(zip(result.timeline.times, result.timeline.ready, strict=True))
    assert timeline[25.0] == 1 and timeline[30.0] == 3
    existing = dict(zip(result.timeline.times, result.timeline.replicas, strict=True))
    assert existing[15.0] == 3 and timeline[15.0] == 1  # they cost from the moment requested
    assert result.replica_seconds == pytest.approx(120.0 + 2 * 110.0, abs=0.05)  # + the tail


def test_scale_down_lets_in_flight_requests_finish() -> None:
    # a burst queues on both replicas; one is removed mid-burst and still serves its queue
    arrivals = [1.0 + i * 0.001 for i in range(200)]
    result = simulate(
        arrivals, Scripted({2.0: 1}, interval=1.0), ServiceConfig(initial_replicas=2), 10.0
    )
    assert not any(math.isnan(latency) for latency in result.latencies)
    # the removed replica drained ~100 requests of 50 ms: it lived until about t=6
    assert result.replica_seconds == pytest.approx(10.0 + 6.0, abs=0.3)


def test_requests_wait_at_the_balancer_until_a_first_replica_is_ready() -> None:
    arrivals = [0.5, 1.0, 1.5]
    result = simulate(
        arrivals,
        Scripted({1.0: 1}, interval=1.0),
        ServiceConfig(initial_replicas=0, cold_start_s=2.0),
        10.0,
    )
    # the replica requested at t=1 serves from t=3; the first request waited 2.5 s
    assert result.latencies[0] == pytest.approx(2.5 + 0.05)


def test_least_request_balancing_beats_random_at_high_load() -> None:
    arrivals = constant(70.0, 300.0)
    tails = {}
    for balancer in ("least-request", "random"):
        config = ServiceConfig(initial_replicas=4, balancer=balancer)
        result = simulate(arrivals, StaticController(4), config, 300.0)
        tails[balancer] = result.latency_percentile_ms(99)
    assert tails["least-request"] < tails["random"]


def test_operator_observation_matches_the_metrics_reader() -> None:
    """The simulator builds Observations exactly as autoscale.observe.observe does."""
    service = Service(ServiceConfig(initial_replicas=3), constant(50.0, 20.0))
    controller = OperatorController(DEFAULT_AUTOSCALING)
    previous: dict[str, metrics.PodScrape] = {}
    for index, arrival in enumerate(service.arrivals):
        service.route(arrival, index)
        if index % 300 == 299:
            now = arrival
            service.advance(now)
            ours = controller.observe(service.sample(now))
            scrapes = {
                f"pod-{replica.id}": metrics.PodScrape(
                    pod=f"pod-{replica.id}", ip="10.0.0.1", time=now, sample=_sample(replica)
                )
                for replica in service.ready
            }
            theirs = metrics.observe(
                previous, scrapes, ready_replicas=3, starting_replicas=0, models=(), now=now
            )
            previous = metrics.remember(previous, scrapes)
            # all but the per-pod work, which only the operator's scale-down reads (the
            # simulated ReplicaSet removes the replicas with the fewest requests in flight)
            assert ours == replace(theirs, pod_work=())


def _sample(replica: object) -> metrics.TritonSample:
    model = replica.model  # type: ignore[attr-defined]
    stats = metrics.ModelStats(
        model="simple",
        version="1",
        pending=float(model.pending_count),
        queue_duration_us=model.queue_duration_us,
        request_success=float(model.success_count),
        request_duration_us=model.request_duration_us,
        compute_infer_duration_us=model.compute_infer_duration_us,
        inference_count=float(model.inference_count),
        exec_count=float(model.exec_count),
    )
    families = frozenset(metrics.REQUIRED_FAMILIES) | {
        metrics.REQUEST_DURATION, metrics.COMPUTE_INFER_DURATION, metrics.INFERENCE_COUNT,
        metrics.EXEC_COUNT, metrics.FAILURE,
    }  # fmt: skip
    return metrics.TritonSample(models={("simple", "1"): stats}, families=families)


def test_hpa_metric_replicas_follows_kubernetes() -> None:
    assert hpa_metric_replicas([4.0, 4.0], 0, 0, target=2.0, current=2) == 4
    assert hpa_metric_replicas([2.1, 2.0], 0, 0, target=2.0, current=2) == 2  # tolerance
    # on scale-up, pods not ready yet count as zero: ceil(sum / target) stays the answer
    assert hpa_metric_replicas([10.0], 0, 1, target=2.0, current=2) == 5
    # on scale-down a pod without the metric counts as at target, damping the change
    assert hpa_metric_replicas([0.0, 0.0], 2, 0, target=2.0, current=4) == 2
    # when filling in missing pods flips the direction, nothing changes
    assert hpa_metric_replicas([2.5], 3, 0, target=2.0, current=4) == 4


def test_kpa_target_concurrency_derivation() -> None:
    depth = Autoscaling.model_validate({"targets": {"queueDepth": 2}})
    wait = Autoscaling.model_validate({"targets": {"queueTimeMs": 100}})
    assert kpa_target_concurrency(depth, instances=1, service_time_ms=50) == 3
    assert kpa_target_concurrency(wait, instances=2, service_time_ms=50) == 6


def test_kpa_panics_on_a_burst() -> None:
    controller = KPAController(DEFAULT_AUTOSCALING, target_concurrency=3.0, interval=2.0)
    result = simulate(step_trace(), controller, ServiceConfig(), 240.0)
    assert result.max_replicas >= 3
    assert controller.panic_time is not None or controller.max_panic_pods == 0


def test_hpa_scales_up_on_a_step() -> None:
    controller = HPAController(DEFAULT_AUTOSCALING, interval=15.0)
    result = simulate(step_trace(), controller, ServiceConfig(), 240.0)
    assert result.max_replicas > 1


def test_operator_reacts_to_a_step_within_one_interval_and_without_cascade() -> None:
    controller = OperatorController(DEFAULT_AUTOSCALING)
    result = simulate(step_trace(), controller, ServiceConfig(), 240.0)
    first_up = next(t for t, _, d in controller.decisions if d.desired_replicas > 1)
    assert first_up == 65.0
    assert 3 <= result.max_replicas <= 4
    late = [a for a, latency in zip(result.arrivals, result.latencies, strict=True) if a > 120]
    assert all(
        latency <= 0.5
        for a, latency in zip(result.arrivals, result.latencies, strict=True)
        if a > 120
    )
    assert late


def test_oracle_meets_the_slo_cheaper_than_the_cheapest_adequate_static() -> None:
    arrivals = step_trace()
    scenario = Scenario(DEFAULT_AUTOSCALING, ServiceConfig(), arrivals, 240.0)
    oracle = run("oracle", scenario)
    static = run("static:3", scenario)
    assert static.slo_attainment == 1.0
    assert oracle.slo_attainment == 1.0
    assert oracle.replica_seconds < static.replica_seconds
    plan = oracle_plan(
        arrivals, ServiceConfig(), min_replicas=1, max_replicas=20, duration=240.0, interval=5.0
    )
    assert plan[0] == 1 and max(plan) == 3


def test_scenario_rejects_unknown_policies() -> None:
    scenario = Scenario(DEFAULT_AUTOSCALING, ServiceConfig(), [1.0], 10.0)
    with pytest.raises(ValueError, match="unknown policy"):
        run("magic", scenario)
    with pytest.raises(ValueError, match="static:N"):
        run("static:zero", scenario)


def test_batching_raises_capacity_in_the_service() -> None:
    arrivals = constant(35.0, 300.0)
    plain = simulate(arrivals, StaticController(1), ServiceConfig(), 300.0)
    batched = simulate(
        arrivals,
        StaticController(1),
        ServiceConfig(replica=ReplicaConfig(max_batch_size=8, batch_overhead=0.1)),
        300.0,
    )
    # 35 req/s overloads one 50 ms replica without batching; batches of a few keep up
    assert plain.slo_attainment < 0.5 < batched.slo_attainment
