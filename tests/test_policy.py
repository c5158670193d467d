"""The autoscaling policy: HPA's documented algorithm, the queueing model, and its safety rules."""

from __future__ import annotations

import math
import re
import time
from typing import Any, Literal

import pytest

from tritonop.api.models import Autoscaling, ScalingPolicy
from tritonop.autoscale.behavior import (
    DEFAULT_SCALE_DOWN_WINDOW_SECONDS,
    Rules,
    normalize,
    ratio_recommendation,
    resolve_behavior,
    scale_down_limit,
    scale_up_limit,
)
from tritonop.autoscale.policy import (
    LEARN_SETTLE_SECONDS,
    RESTART_HOLD_SECONDS,
    PolicyState,
    decide,
)
from tritonop.autoscale.queueing import (
    erlang_c,
    mdc_queue_length,
    mdc_utilization,
    mdc_utilization_for_wait,
    mdc_wait,
    size_for,
    target_utilization,
)
from tritonop.autoscale.types import ConditionFlag, Decision, Observation

INTERVAL = 5.0


def spec(**fields: Any) -> Autoscaling:
    base: dict[str, Any] = {"minReplicas": 1, "maxReplicas": 10, "targets": {"queueDepth": 2}}
    base.update(fields)
    return Autoscaling.model_validate(base)


def observation(
    time: float,
    ready: int,
    *,
    depth: float | None = 0.0,
    queue_time_ms: float | None = 0.0,
    rate: float | None = 0.0,
    starting: int = 0,
    reporting: int | None = None,
    problems: tuple[str, ...] = (),
) -> Observation:
    return Observation(
        time=time,
        ready_replicas=ready,
        starting_replicas=starting,
        reporting_replicas=ready if reporting is None else reporting,
        queue_depth=depth,
        queue_time_ms=queue_time_ms,
        request_rate=rate,
        problems=problems,
    )


def condition(decision: Decision, kind: str) -> ConditionFlag:
    (found,) = [c for c in decision.conditions if c.type == kind]
    return found


# ------------------------------------------------------------------------------------------
# HPA's documented algorithm
# ------------------------------------------------------------------------------------------


def test_ratio_rule_doubles_when_the_metric_is_twice_the_target() -> None:
    # HPA docs: current 200m, target 100m -> ratio 2 -> 1 replica becomes 2
    assert ratio_recommendation(1, 200 / 100) == 2
    # ... and 50m halves
    assert ratio_recommendation(4, 50 / 100) == 2
    assert ratio_recommendation(3, 1.5) == 5  # ceil(4.5)


def test_ratio_rule_tolerance_skips_changes_within_ten_percent() -> None:
    assert ratio_recommendation(10, 1.09) == 10
    assert ratio_recommendation(10, 0.91) == 10
    assert ratio_recommendation(10, 1.11) == 12
    assert ratio_recommendation(10, 0.85) == 9


def test_default_behavior_matches_hpa_except_the_scale_down_window() -> None:
    up, down = resolve_behavior(spec().behavior)
    assert up == Rules(
        0.0,
        "Max",
        (
            ScalingPolicy(type="Percent", value=100, period_seconds=15),
            ScalingPolicy(type="Pods", value=4, period_seconds=15),
        ),
    )
    assert down.policies == (ScalingPolicy(type="Percent", value=100, period_seconds=15),)
    assert down.stabilization_window_seconds == DEFAULT_SCALE_DOWN_WINDOW_SECONDS == 60
    _, kubernetes_down = resolve_behavior(spec().behavior, scale_down_window=300)
    assert kubernetes_down.stabilization_window_seconds == 300


def _rules(
    window: float, select: Literal["Max", "Min", "Disabled"], *policies: tuple[str, int, int]
) -> Rules:
    return Rules(
        window,
        select,
        tuple(
            ScalingPolicy.model_validate({"type": t, "value": v, "periodSeconds": p})
            for t, v, p in policies
        ),
    )


def test_default_scale_up_allows_four_pods_or_double_per_fifteen_seconds() -> None:
    up, _ = resolve_behavior(spec().behavior)
    assert scale_up_limit(1, (), up, now=100.0) == 5  # 4 pods beats 100%
    assert scale_up_limit(10, (), up, now=100.0) == 20  # 100% beats 4 pods
    # after 1 -> 5 at t=100, the period started at 1 replica: nothing more until t=115
    assert scale_up_limit(5, ((100.0, 4),), up, now=110.0) == 5
    assert scale_up_limit(5, ((100.0, 4),), up, now=115.0) == 10


def test_pods_and_percent_policies_with_select_max_and_min() -> None:
    # HPA docs: scaleDown policies 4 Pods/60s and 10 Percent/60s
    policies = (("Pods", 4, 60), ("Percent", 10, 60))
    most = _rules(300, "Max", *policies)
    least = _rules(300, "Min", *policies)
    assert scale_down_limit(80, (), most, 0.0) == 72  # 10% of 80 = 8 > 4 pods
    assert scale_down_limit(80, (), least, 0.0) == 76
    assert scale_down_limit(30, (), most, 0.0) == 26  # 4 pods > 10% of 30 = 3
    assert scale_down_limit(30, (), least, 0.0) == 27
    assert scale_down_limit(30, (), _rules(300, "Disabled", *policies), 0.0) == 30


def test_scale_down_at_most_ten_percent_per_minute() -> None:
    rules = _rules(0, "Max", ("Percent", 10, 60))
    up, _ = resolve_behavior(spec().behavior)
    current = 100
    events: list[tuple[float, int]] = []
    seen: list[int] = []
    for step in range(9):  # every 15 s for two minutes, the metric asks for 10 replicas
        now = step * 15.0
        result = normalize(
            recommendation=10,
            current=current,
            recommendations=(),
            events=events,
            up=up,
            down=rules,
            min_replicas=1,
            max_replicas=100,
            now=now,
        )
        if result.replicas != current:
            events.append((now, result.replicas - current))
        current = result.replicas
        seen.append(current)
    assert seen == [90, 90, 90, 90, 81, 81, 81, 81, 72]  # HPA truncates 72.9
    assert result.limited_reason == "ScaleDownLimit"


def test_scale_down_stabilization_applies_the_highest_recent_recommendation() -> None:
    _, down = resolve_behavior(
        spec(behavior={"scaleDown": {"stabilizationWindowSeconds": 300}}).behavior
    )
    up, _ = resolve_behavior(spec().behavior)
    history = ((0.0, 8), (100.0, 6), (200.0, 4))
    result = normalize(
        recommendation=2, current=8, recommendations=history, events=(), up=up, down=down,
        min_replicas=1, max_replicas=10, now=250.0,
    )  # fmt: skip
    assert result.replicas == 8 and result.able_reason == "ScaleDownStabilized"
    later = normalize(
        recommendation=2, current=8, recommendations=history, events=(), up=up, down=down,
        min_replicas=1, max_replicas=10, now=350.0,
    )  # fmt: skip
    assert later.replicas == 6  # (0, 8) left the window


def test_scale_up_stabilization_applies_the_lowest_recent_recommendation() -> None:
    up, down = resolve_behavior(
        spec(behavior={"scaleUp": {"stabilizationWindowSeconds": 60}}).behavior
    )
    result = normalize(
        recommendation=9, current=2, recommendations=((30.0, 4), (50.0, 7)), events=(),
        up=up, down=down, min_replicas=1, max_replicas=10, now=60.0,
    )  # fmt: skip
    assert result.replicas == 4 and result.able_reason == "ScaleUpStabilized"


# ------------------------------------------------------------------------------------------
# the queueing model
# ------------------------------------------------------------------------------------------


def test_single_replica_model_is_md1() -> None:
    for rho in (0.1, 0.5, 0.8, 0.95):
        assert mdc_queue_length(1, rho) == pytest.approx(rho * rho / (2 * (1 - rho)))
        assert mdc_wait(1, rho, 0.05) == pytest.approx(rho * 0.05 / (2 * (1 - rho)))
    assert mdc_queue_length(1, 1.0) == math.inf


def test_erlang_c_known_values() -> None:
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 0.5) == pytest.approx(1 / 3)  # two servers, one Erlang offered


def test_inversions_round_trip() -> None:
    for servers in (1, 3, 12):
        for rho in (0.2, 0.6, 0.9):
            assert mdc_utilization(servers, mdc_queue_length(servers, rho)) == pytest.approx(
                rho, abs=1e-6
            )
            wait = mdc_wait(servers, rho, 0.05)
            assert mdc_utilization_for_wait(servers, wait, 0.05) == pytest.approx(rho, abs=1e-6)


def test_more_replicas_run_hotter_at_the_same_per_replica_queue_target() -> None:
    # pooling: the same average queue per replica allows higher utilisation with more replicas
    targets = spec().targets
    utilizations = [target_utilization(targets, n, 0.05)[0] for n in (1, 2, 4, 8)]
    assert utilizations == sorted(utilizations)
    assert utilizations[0] == pytest.approx(mdc_utilization(1, 2.0))


def test_strictest_target_binds() -> None:
    both = spec(targets={"queueDepth": 4, "queueTimeMs": 20}).targets
    utilization, binding = target_utilization(both, 3, 0.05)
    assert binding == "queueTimeMs"
    assert utilization == pytest.approx(mdc_utilization_for_wait(3, 0.02, 0.05), abs=1e-9)


def test_sizing_is_the_fewest_replicas_within_target() -> None:
    targets = spec(targets={"queueTimeMs": 100}).targets
    sizing = size_for(2.0, 0, targets, 0.05, limit=20)  # 40 req/s of 50 ms
    assert sizing.replicas == 3
    assert target_utilization(targets, 2, 0.05)[0] * 2 < 2.0  # two would not do
    assert size_for(2.0, 1, targets, 0.05, limit=20).replicas == 4  # one held by a backlog


# ------------------------------------------------------------------------------------------
# decisions
# ------------------------------------------------------------------------------------------


def run(
    autoscaling: Autoscaling,
    observations: list[Observation],
    current: int,
    state: PolicyState | None = None,
) -> tuple[list[Decision], PolicyState]:
    """Feed observations in order, carrying out each decision at once."""
    state = state or PolicyState()
    decisions = []
    for item in observations:
        decision, state = decide(autoscaling, current, item, state, item.time, INTERVAL)
        decisions.append(decision)
        current = decision.desired_replicas
    return decisions, state


def test_burst_on_one_replica_scales_up_at_once_in_panic_and_names_the_numbers() -> None:
    autoscaling = spec(targets={"queueDepth": 2, "queueTimeMs": 100})
    calm = [
        observation(t, 1, depth=0, queue_time_ms=2, rate=5) for t in (5, 10, 15, 20, 25, 30, 35)
    ]
    # 40 req/s arrive at a replica that completes 20 req/s: 100 waiting after 5 s
    burst = observation(40, 1, depth=100, queue_time_ms=1200, rate=20)
    decisions, state = run(autoscaling, [*calm, burst], current=1)
    last = decisions[-1]
    assert [d.desired_replicas for d in decisions[:-1]] == [1] * 7
    assert last.panicking
    assert last.desired_replicas == 4  # 3 carry 40 req/s within target, 1 holds the backlog
    assert "queueDepth 100 per replica (target 2)" in last.reason
    assert "1 -> 4" in last.reason
    assert state.request_cost == pytest.approx(0.05, rel=0.05)
    assert condition(last, "ScalingActive").status is True


def test_pods_still_starting_count_as_capacity_no_cascade() -> None:
    autoscaling = spec(targets={"queueDepth": 2, "queueTimeMs": 100})
    history = [
        observation(t, 1, depth=0, queue_time_ms=2, rate=5) for t in (5, 10, 15, 20, 25, 30, 35)
    ]
    growing = [
        observation(40, 1, depth=100, queue_time_ms=1200, rate=20),
        # the backlog keeps growing on the one ready replica while three pods start
        observation(45, 1, depth=200, queue_time_ms=3500, rate=20, starting=3),
        observation(50, 1, depth=300, queue_time_ms=6000, rate=20, starting=3),
        observation(55, 1, depth=400, queue_time_ms=8500, rate=20, starting=3),
    ]
    decisions, _ = run(autoscaling, [*history, *growing], current=1)
    assert [d.desired_replicas for d in decisions[-4:]] == [4, 4, 4, 4]


def test_load_beyond_what_starting_pods_carry_scales_further() -> None:
    autoscaling = spec(targets={"queueDepth": 2, "queueTimeMs": 100})
    history = [
        observation(t, 1, depth=0, queue_time_ms=2, rate=5) for t in (5, 10, 15, 20, 25, 30, 35)
    ]
    growing = [
        observation(40, 1, depth=100, queue_time_ms=1200, rate=20),
        # now 120 req/s arrive: far beyond what 4 replicas carry
        observation(45, 1, depth=600, queue_time_ms=3500, rate=20, starting=3),
    ]
    decisions, _ = run(autoscaling, [*history, *growing], current=1)
    assert decisions[-1].desired_replicas > 4


def test_idle_service_with_complete_metrics_scales_down_after_the_window() -> None:
    # zero queue with complete metrics is a real signal: scale down, once the window passed
    state = PolicyState(recommendations=((0.0, 4),))
    idle = [observation(t, 4, depth=0, queue_time_ms=0, rate=0) for t in range(5, 100, 5)]
    decisions, _ = run(spec(), idle, current=4, state=state)
    by_time = {obs.time: d.desired_replicas for obs, d in zip(idle, decisions, strict=True)}
    assert {by_time[t] for t in range(5, int(DEFAULT_SCALE_DOWN_WINDOW_SECONDS), 5)} == {4}
    assert by_time[DEFAULT_SCALE_DOWN_WINDOW_SECONDS] == 1
    stabilized = decisions[0]
    assert condition(stabilized, "AbleToScale").reason == "ScaleDownStabilized"


def test_idle_without_queue_time_counts_as_zero_not_missing() -> None:
    autoscaling = spec(targets={"queueTimeMs": 100})
    idle = [observation(t, 2, depth=0, queue_time_ms=None, rate=0) for t in range(5, 200, 5)]
    decisions, _ = run(autoscaling, idle, current=2)
    assert decisions[-1].desired_replicas == 1
    assert condition(decisions[-1], "ScalingActive").status is True


def test_missing_metrics_hold_and_say_so() -> None:
    autoscaling = spec()
    decision, _ = decide(autoscaling, 5, None, PolicyState(), 100.0, INTERVAL)
    assert decision.desired_replicas == 5
    active = condition(decision, "ScalingActive")
    assert (active.status, active.reason) == (False, "MissingMetrics")


def test_stale_metrics_hold() -> None:
    decision, _ = decide(spec(), 5, observation(10.0, 5), PolicyState(), 100.0, INTERVAL)
    assert decision.desired_replicas == 5
    assert condition(decision, "ScalingActive").reason == "StaleMetrics"


def test_incomplete_metrics_never_scale_down_but_name_the_pods() -> None:
    problems = ("triton-abc: connection refused",)
    partial = [
        observation(t, 4, depth=0, queue_time_ms=0, rate=0, reporting=3, problems=problems)
        for t in range(5, 400, 5)
    ]
    decisions, _ = run(spec(), partial, current=4)
    assert {d.desired_replicas for d in decisions} == {4}
    active = condition(decisions[-1], "ScalingActive")
    assert active.reason == "IncompleteMetrics" and "triton-abc" in active.message


def test_incomplete_metrics_still_scale_up_when_the_reporting_pods_demand_it() -> None:
    autoscaling = spec(targets={"queueDepth": 2})
    before = observation(5, 3, depth=0, queue_time_ms=0, rate=30, reporting=2)
    swamped = observation(10, 3, depth=80, queue_time_ms=2000, rate=40, reporting=2)
    decisions, _ = run(autoscaling, [before, swamped], current=3)
    assert decisions[-1].desired_replicas > 3
    assert condition(decisions[-1], "ScalingActive").status is False


def test_missing_configured_signal_holds() -> None:
    autoscaling = spec(targets={"queueDepth": 2, "queueTimeMs": 100})
    # requests wait but none finished: queue time unknown, never read as zero
    odd = [observation(t, 3, depth=0, queue_time_ms=None, rate=None) for t in range(5, 400, 5)]
    decisions, _ = run(autoscaling, odd, current=3)
    assert {d.desired_replicas for d in decisions} == {3}
    assert condition(decisions[-1], "ScalingActive").reason == "MissingMetrics"


def test_bounds_clamp_and_say_why() -> None:
    autoscaling = spec(maxReplicas=3, targets={"queueDepth": 2, "queueTimeMs": 100})
    calm = [
        observation(t, 1, depth=0, queue_time_ms=2, rate=5) for t in (5, 10, 15, 20, 25, 30, 35)
    ]
    huge = observation(40, 1, depth=500, queue_time_ms=9000, rate=20)
    decisions, _ = run(autoscaling, [*calm, huge], current=1)
    assert decisions[-1].desired_replicas == 3
    limited = condition(decisions[-1], "ScalingLimited")
    assert (limited.status, limited.reason) == (True, "TooManyReplicas")
    # a spec whose bounds moved below the current count is brought within them
    decision, _ = decide(autoscaling, 7, None, PolicyState(), 100.0, INTERVAL)
    assert decision.desired_replicas == 3
    assert condition(decision, "ScalingLimited").reason == "TooManyReplicas"
    raised = spec(minReplicas=4, maxReplicas=6)
    decision, _ = decide(raised, 2, observation(100.0, 2), PolicyState(), 100.0, INTERVAL)
    assert decision.desired_replicas == 4
    assert condition(decision, "ScalingLimited").reason == "TooFewReplicas"


def test_disabled_scale_down_reports_not_able_to_scale() -> None:
    autoscaling = spec(behavior={"scaleDown": {"selectPolicy": "Disabled"}})
    idle = [observation(t, 4, depth=0, queue_time_ms=0, rate=0) for t in range(5, 400, 5)]
    decisions, _ = run(autoscaling, idle, current=4)
    assert decisions[-1].desired_replicas == 4
    able = condition(decisions[-1], "AbleToScale")
    assert (able.status, able.reason) == (False, "ScalingDisabled")


def test_panic_holds_replicas_for_its_stable_window_then_releases() -> None:
    autoscaling = spec(
        targets={"queueDepth": 2, "queueTimeMs": 100},
        behavior={"scaleDown": {"stabilizationWindowSeconds": 0}},
    )
    calm = [
        observation(t, 1, depth=0, queue_time_ms=2, rate=5) for t in (5, 10, 15, 20, 25, 30, 35)
    ]
    burst = observation(40, 1, depth=100, queue_time_ms=1200, rate=20)
    after = [observation(t, 4, depth=0, queue_time_ms=0, rate=5) for t in range(65, 140, 5)]
    decisions, _ = run(autoscaling, [*calm, burst, *after], current=1)
    by_time = {obs.time: d for obs, d in zip([*calm, burst, *after], decisions, strict=True)}
    assert all(by_time[t].desired_replicas == 4 and by_time[t].panicking for t in range(65, 100, 5))
    assert by_time[100].panicking is False  # 60 s after the last trigger at 40
    assert by_time[135].desired_replicas == 1


def test_restart_never_scales_down_at_once() -> None:
    state = PolicyState.fresh(1000.0, 6)
    idle = [observation(1000.0 + t, 6, depth=0, queue_time_ms=0, rate=0) for t in range(5, 200, 5)]
    decisions, _ = run(
        spec(behavior={"scaleDown": {"stabilizationWindowSeconds": 0}}), idle, 6, state
    )
    held = [
        d.desired_replicas
        for obs, d in zip(idle, decisions, strict=True)
        if obs.time < 1000 + RESTART_HOLD_SECONDS
    ]
    assert set(held) == {6}
    assert decisions[-1].desired_replicas == 1


def test_learned_cost_sizes_a_quiet_service_by_its_request_rate() -> None:
    # after a saturated interval taught the cost (50 ms), 30 req/s on 4 replicas with no queue
    # needs 2 replicas, although the queue alone (zero) would say 1
    autoscaling = spec(targets={"queueDepth": 2, "queueTimeMs": 100})
    saturated = [
        observation(t, 1, depth=60.0 * (t / 5), queue_time_ms=1000.0 * t / 5, rate=20.0)
        for t in range(5, 5 + int(LEARN_SETTLE_SECONDS) + 15, 5)
    ]
    _, state = run(autoscaling, saturated, current=1)
    assert state.request_cost == pytest.approx(0.05, rel=0.1)
    quiet = [observation(200.0 + t, 4, depth=0, queue_time_ms=0, rate=30) for t in range(5, 300, 5)]
    state = PolicyState(request_cost=state.request_cost)
    decisions, _ = run(autoscaling, quiet, current=4, state=state)
    assert decisions[-1].desired_replicas == 2


# ------------------------------------------------------------------------------------------
# implausible and hostile observations (issue 11)
# ------------------------------------------------------------------------------------------


def _hostile_pair(autoscaling: Autoscaling) -> tuple[PolicyState, Observation, float]:
    """Two scrapes of 4 pods: successes grow by 5e-9 and queue time by 5 us per pod in 5 s
    while pending grows from 7,000 to 8,000 per pod: a demand beyond 1e9 replicas."""
    first = observation(100.0, 4, depth=7000.0, queue_time_ms=None, rate=None)
    _, state = decide(autoscaling, 4, first, PolicyState(), 100.0, INTERVAL)
    successes, queued_us = 4 * 5e-9, 4 * 5.0
    second = observation(
        105.0,
        4,
        depth=8000.0,
        queue_time_ms=queued_us / successes / 1000.0,
        rate=successes / INTERVAL,
    )
    return state, second, 105.0


def test_absurd_demand_returns_at_once_within_bounds_and_holds_with_invalid_metrics() -> None:
    autoscaling = spec(maxReplicas=10)
    state, hostile, now = _hostile_pair(autoscaling)
    started = time.process_time()
    decision, after = decide(autoscaling, 4, hostile, state, now, INTERVAL)
    elapsed = time.process_time() - started
    assert elapsed < 0.05, f"decide() took {elapsed * 1000:.1f} ms of CPU"
    assert decision.desired_replicas == 4  # held: no scale-up bought by an absurd page
    active = condition(decision, "ScalingActive")
    assert (active.status, active.reason) == (False, "InvalidMetrics")
    implied = re.search(r"a demand of (\S+) busy replicas", active.message)
    assert implied is not None and float(implied.group(1)) >= 1e9, active.message
    assert after.request_cost is None and after.backlog == state.backlog  # nothing learned


def test_an_absurd_learned_cost_is_forgotten_so_a_poisoned_state_heals() -> None:
    autoscaling = spec(maxReplicas=10)
    poisoned = PolicyState(request_cost=1e12, reporting=2, reporting_since=0.0)
    busy = observation(100.0, 2, depth=8.0, queue_time_ms=400.0, rate=20.0)
    decision, healed = decide(autoscaling, 2, busy, poisoned, 100.0, INTERVAL)
    assert condition(decision, "ScalingActive").reason == "InvalidMetrics"
    assert healed.request_cost is None
    again = observation(105.0, 2, depth=8.0, queue_time_ms=400.0, rate=20.0)
    decision, _ = decide(autoscaling, 2, again, healed, 105.0, INTERVAL)
    assert condition(decision, "ScalingActive").reason == "ValidMetrics"
    assert decision.desired_replicas > 2  # the queue above target scales up again


@pytest.mark.parametrize(
    "fields",
    [
        {"queue_depth": math.nan},
        {"queue_time_ms": math.inf},
        {"request_rate": -1.0},
        {"time": math.nan},
        {"reporting_replicas": 5},
        {"implausible": ("pod-a: nv_inference_request_success 2.5 is not a whole number",)},
    ],
)
def test_implausible_observations_hold_with_invalid_metrics(fields: dict[str, Any]) -> None:
    autoscaling = spec()
    base = observation(100.0, 3, depth=40.0, queue_time_ms=900.0, rate=30.0)
    bad = Observation(**{**base.__dict__, **fields})
    decision, after = decide(autoscaling, 3, bad, PolicyState(), 100.0, INTERVAL)
    assert decision.desired_replicas == 3
    active = condition(decision, "ScalingActive")
    assert (active.status, active.reason) == (False, "InvalidMetrics")
    assert after.backlog is None


def test_sizing_is_bounded_work_for_any_demand_and_limit() -> None:
    targets = spec().targets
    assert size_for(5e9, 0, targets, None, 10).replicas > 10  # extrapolated, not searched
    assert size_for(1e6, 0, targets, 0.05, 100_000).replicas == math.ceil(1e6 / 0.95)
    assert size_for(0.0, 0, targets, None, 10).replicas == 1
