"""What a policy without foresight can do: the present-rate bound (sim.controllers) and the
benchmark's figures from it (e2e/bench/autoscale.py), beside the FAILs they explain."""

from __future__ import annotations

import random
from dataclasses import replace

from e2e.bench import autoscale as bench

from tritonop.api.models import Autoscaling, Targets
from tritonop.sim.controllers import PresentRateBound
from tritonop.sim.engine import ServiceConfig, ServiceView, simulate
from tritonop.sim.replica import ReplicaConfig
from tritonop.sim.scenario import Scenario
from tritonop.sim.traces import RateProfile, base_seconds, first_rise, pattern, poisson_arrivals


def step_profile() -> RateProfile:
    """5 req/s, 40 req/s from 100 s to 200 s, 5 req/s again, for 300 s."""
    return RateProfile("test-step", 300.0, 40.0, lambda t: 40.0 if 100.0 <= t < 200.0 else 5.0)


def view(starting: int = 0, desired: int = 1) -> ServiceView:
    return ServiceView(time=0.0, desired=desired, ready=(), starting=starting)


def test_the_first_rise_and_the_calm_of_a_pattern() -> None:
    assert first_rise(step_profile()) == 100.0
    assert abs(base_seconds(step_profile()) - 200.0) < 0.1
    step = pattern("step", random.Random(1))
    assert first_rise(step) == 600.0 and abs(base_seconds(step) - 2400.0) < 0.1
    assert first_rise(pattern("spike", random.Random(1), 0.2)) == 300.0
    flat = RateProfile("flat", 60.0, 1.0, lambda t: 1.0)
    assert first_rise(flat) is None and abs(base_seconds(flat) - 60.0) < 0.1


def test_the_bound_asks_for_everything_the_moment_the_rate_rises() -> None:
    bound = PresentRateBound(2, 20, step_profile().rate)
    assert bound.interval == 0.5  # finer than any policy decides
    assert bound.decide(99.5, view()) == 2
    assert bound.decide(100.0, view()) == 20
    # after the rise, everything until the replicas asked for serve and the queues are empty
    assert bound.decide(200.0, view(starting=3, desired=20)) == 20
    assert bound.decide(200.5, view(desired=20)) == 2
    first_only = PresentRateBound(2, 20, step_profile().rate, first_rise_only=True)
    first_only.decide(100.0, view())
    assert first_only.decide(250.0, view(desired=20)) == 20  # every later miss is the first's


def scenario() -> Scenario:
    profile = step_profile()
    arrivals = poisson_arrivals(profile, random.Random(3))
    service = ServiceConfig(replica=ReplicaConfig(service_time_ms=50.0), cold_start_s=20.0)
    spec = Autoscaling(min_replicas=1, max_replicas=6, targets=Targets(queue_depth=2))
    return Scenario(spec, service, arrivals, profile.duration)


def test_holding_what_the_calm_needs_misses_the_first_rise_however_fast_the_reaction() -> None:
    """The 5 req/s calm needs one 50 ms replica; the rise to 40 needs two: whoever holds one
    and reacts at once still waits a 20 s cold start with 40 req/s on 20 req/s of capacity."""
    run = scenario()
    measured = bench.measure_foresight(run, step_profile())
    assert measured is not None
    assert (measured.first_rise, measured.warm, measured.most) == (100.0, 1, 6)
    assert measured.first_misses > 200  # most of 20 s at 40 req/s onto one replica
    assert measured.allowed == len(run.arrivals) // 100
    assert measured.hold == 2 and measured.below_attainment is not None
    assert measured.below_attainment < bench.OBJECTIVE <= measured.hold_attainment
    assert abs(measured.calm_cost - 2 * 200.0) < 0.5
    # the same run, the bound's first-rise misses replayed: none before the rise
    replay = simulate(
        run.arrivals,
        PresentRateBound(1, 6, step_profile().rate, first_rise_only=True),
        replace(run.service, initial_replicas=1),
        duration=run.duration,
    )
    missed = [t for t, wait in zip(replay.arrivals, replay.latencies, strict=True) if wait > 0.5]
    assert missed and min(missed) >= 100.0


def test_the_figures_stand_beside_a_failed_verdict_never_instead() -> None:
    foresight = bench.Foresight(
        first_rise=600.0,
        warm=1,
        most=20,
        first_misses=750,
        allowed=600,
        hold=2,
        hold_attainment=0.999,
        below_attainment=0.9875,
        calm_seconds=2400.0,
    )
    ours = bench.Outcome("operator (objective)", 0.98, 0.98, 50.0, 100.0, 9000.0, 3, 0, 0.0)
    statics = [
        bench.Outcome(f"static:{n}", a, a, 50.0, 100.0, 3600.0 * n, n, 0, 0.0)
        for n, a in ((1, 0.5), (2, 1.0))
    ]
    cell = bench.Cell(
        "step",
        "50ms",
        seed=1,
        operator={"objective": ours},
        baselines={
            "oracle": bench.Outcome("oracle", 1.0, 1.0, 50.0, 100.0, 6000.0, 3, 0, 0.0),
            "hpa": bench.Outcome("hpa", 0.9, 0.9, 50.0, 100.0, 26000.0, 3, 0, 0.0),
            "kpa": bench.Outcome("kpa", 0.9, 0.9, 50.0, 100.0, 17000.0, 3, 0, 0.0),
        },
        statics=statics,
        foresight=foresight,
    )
    checks = bench.check_cell(cell)
    attainment = next(c for c in checks if "SLO attainment" in c.text)
    assert attainment.status == bench.FAIL
    assert "still misses 750 requests there, where 99% allows 600" in attainment.text
    cheapest = next(c for c in checks if "cheapest static" in c.text)
    assert cheapest.status == bench.FAIL
    assert "must hold 2 replicas through the calm to meet 99% (1: 98.75%)" in cheapest.text
    assert "4800 replica-s for the calm alone, 0.80x the oracle" in cheapest.text
    ratio = next(c for c in checks if "x oracle <=" in c.text and "objective" in c.text)
    assert ratio.status == bench.FAIL and "must hold 2 replicas" in ratio.text
