"""The objective's headroom (pure): the cold start of the service's own pods, the burst memory,
and the replicas held for a remembered rise, alone and through `decide`."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tritonop.api.models import Autoscaling
from tritonop.autoscale.coldstart import RECENT_PODS, cold_start_seconds, pod_start
from tritonop.autoscale.headroom import (
    BURST_MEMORY_SECONDS,
    BurstMemory,
    LoadSample,
    headroom_capacity,
    headroom_replicas,
)
from tritonop.autoscale.policy import Assessment, PolicyState, decide, recommend
from tritonop.autoscale.types import Decision, Observation

INTERVAL = 5.0


def memory_of(rates: list[float], cold_start: float, slack: float = 0.0) -> BurstMemory:
    """The memory after one interval per rate (requests per second), INTERVAL apart."""
    memory = BurstMemory()
    for index, rate in enumerate(rates, 1):
        sample = LoadSample(index * INTERVAL, INTERVAL, rate * INTERVAL)
        memory = memory.observe(sample, cold_start, slack)
    return memory


# ---------------------------------------------------------------------------- cold start


def pod(created: str, ready: str | None, name: str = "p") -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True", "lastTransitionTime": ready}] if ready else []
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {"conditions": [{"type": "PodScheduled", "status": "True"}, *conditions]},
    }


def test_a_pods_cold_start_is_creation_to_ready() -> None:
    start = pod_start(pod("2026-12-03T10:00:00Z", "2026-12-03T10:00:42Z"))
    assert start is not None and start[1] - start[0] == 42.0
    assert pod_start(pod("2026-12-03T10:00:00Z", None)) is None  # not Ready yet
    assert pod_start(pod("not a time", "2026-12-03T10:00:42Z")) is None
    assert pod_start({}) is None


def test_the_cold_start_is_the_median_of_the_latest_pods() -> None:
    # one pod that waited long for a node does not set the estimate; older pods do not count
    starts = [(0.0, 500.0)] + [(1000.0 + i, 1030.0 + i) for i in range(RECENT_PODS - 1)]
    starts.append((2000.0, 2400.0))
    assert cold_start_seconds(starts) == 30.0
    # pods Ready at creation or with times out of order say nothing
    assert cold_start_seconds([(5.0, 5.0), (9.0, 3.0)]) is None
    assert cold_start_seconds([]) is None


# ----------------------------------------------------------------------------- the memory


@settings(max_examples=200, deadline=None)
@given(
    wanted=st.lists(st.floats(min_value=0.0, max_value=200.0), min_size=1, max_size=80),
    cost=st.floats(min_value=0.01, max_value=2.0),
    cold_intervals=st.integers(min_value=1, max_value=12),
    slack=st.floats(min_value=0.0, max_value=10.0),
    steady=st.integers(min_value=0, max_value=50),
)
def test_no_headroom_when_load_never_rises_more_than_one_replicas_worth_within_a_cold_start(
    wanted: list[float], cost: float, cold_intervals: int, slack: float, steady: int
) -> None:
    """Acceptance 1: headroom is zero when the load never rises faster than one replica's
    worth (1 / cost req/s) within a cold start (plus the interval in which a rise is seen)."""
    cold_start = cold_intervals * INTERVAL
    worth = 1.0 / cost
    rates: list[float] = []
    for rate in wanted:  # clamp every rise over the window to one replica's worth
        window = rates[-cold_intervals:]
        rates.append(min(rate, min(window) + worth) if window else rate)
    memory = memory_of(rates, cold_start, slack)
    now = len(rates) * INTERVAL
    for attainment in (0.9, 0.99, 0.999):
        held = memory.rise(attainment, now)
        assert held is not None and held.rise <= worth * (1 + 1e-9)
        assert headroom_replicas(held, rates[-1], cost, steady) == 0


def test_a_burst_within_a_cold_start_is_held_for() -> None:
    # calm 2 req/s, then 20 req/s for 10 s: a rise of 18 req/s within a 30 s cold start
    memory = memory_of([2.0] * 20 + [20.0, 20.0] + [2.0] * 30, cold_start=30.0)
    held = memory.rise(0.99, now=52 * INTERVAL)
    assert held is not None and held.rise == 18.0 and held.peak == 20.0
    assert held.span == 51 * INTERVAL
    # 1 s requests: the steady sizing carries today's 2 req/s on 3 replicas; the rise asks
    # for 20 at full use (the peak: no headroom beyond what was seen)
    assert headroom_replicas(held, 2.0, 1.0, 3) == 17
    # with 50 ms requests the same rise is less than one replica's worth: nothing
    assert headroom_replicas(held, 2.0, 0.05, 1) == 0


def test_a_burst_in_the_memorys_first_cold_start_is_remembered() -> None:
    """A service whose first burst comes before the memory holds an interval one cold start
    old (the benchmark's heavy-burst, 25 s in) still remembers it: the rise is from the
    lowest rate seen before it. Without that the burst left no rise, the replicas it had
    been served with were given up, and the next one, minutes later, was missed."""
    memory = memory_of([2.0, 2.0, 20.0, 20.0, 2.0, 2.0], cold_start=30.0)
    held = memory.rise(0.99, 6 * INTERVAL)
    assert held is not None and held.rise >= 17.0
    # a fall is no rise, whatever came before it
    falling = memory_of([20.0, 20.0, 2.0, 2.0], cold_start=30.0).rise(0.99, 4 * INTERVAL)
    assert falling is not None and falling.rise == 0.0


def test_slack_absorbs_a_burst_shorter_than_the_wait_the_objective_allows() -> None:
    burst = [2.0] * 20 + [20.0] + [2.0] * 10
    without = memory_of(burst, 30.0).rise(0.99, 31 * INTERVAL)
    with_slack = memory_of(burst, 30.0, slack=20.0).rise(0.99, 31 * INTERVAL)
    assert without is not None and with_slack is not None
    assert with_slack.rise < without.rise


def test_rare_rises_within_the_miss_budget_are_not_held_for() -> None:
    # one interval's burst among an hour of calm: its requests are within the budget
    # (1 - attainment) x BURST_MISS_SHARE of all requests at attainment 0.9
    rates = [10.0] * 300 + [30.0] + [10.0] * 200
    memory = memory_of(rates, 30.0)
    now = len(rates) * INTERVAL
    assert memory.rise(0.9, now).rise == 0.0  # type: ignore[union-attr]
    assert memory.rise(0.9999, now).rise == 20.0  # type: ignore[union-attr]


def test_the_memory_forgets_a_rise_after_its_window() -> None:
    # the burst shows in the runs of the cold start after it too: gone a window after that
    rates = [2.0] * 10 + [20.0] + [2.0] * int((BURST_MEMORY_SECONDS + 30.0) / INTERVAL)
    memory = memory_of(rates, 30.0)
    now = len(rates) * INTERVAL
    assert memory.rise(0.999, now).rise == 0.0  # type: ignore[union-attr]
    assert memory.rise(0.999, now).span < BURST_MEMORY_SECONDS  # type: ignore[union-attr]


# ----------------------------------------------------------------------- through decide


def objective_spec(**fields: Any) -> Autoscaling:
    base: dict[str, Any] = {
        "minReplicas": 1,
        "maxReplicas": 40,
        "objective": {"latencyMs": 5000, "attainment": 0.99},
    }
    return Autoscaling.model_validate({**base, **fields})


def trusted(
    now: float, bursts: BurstMemory, arrivals: float, held: int = 0, queue: float = 0.0
) -> Assessment:
    """An assessment of valid metrics at 1 s per request and a 30 s cold start: `arrivals`
    req/s, `queue` requests waiting, `held` replicas the backlog keeps busy."""
    return Assessment(
        demand=arrivals,
        held=held,
        cost=1.0,
        trustworthy=True,
        active_reason="ValidMetrics",
        active_message="",
        summary="",
        learned_cost=1.0,
        recent_cost=1.0,
        backlog=(now, queue),
        bursts=bursts,
        cold_start=30.0,
        arrivals=arrivals,
        queue_total=queue,
    )


def _one_second_requests(
    now: float,
    replicas: int,
    rate: float,
    queue: float = 0.0,
    cold_start_seen: float | None = None,
) -> Observation:
    """What one interval shows of 1 s requests on `replicas` ready pods, `queue` waiting per
    pod (a second each)."""
    return Observation(
        time=now,
        ready_replicas=replicas,
        starting_replicas=0,
        reporting_replicas=replicas,
        queue_depth=queue,
        queue_time_ms=queue * 1000.0,
        request_rate=rate,
        compute_ms=1000.0,
        cold_start_seconds=cold_start_seen,
    )


def calm_burst_calm(
    spec: Autoscaling, cold_start_seen: float | None, calm_after: int = 30
) -> list[Decision]:
    """Calm at 2 req/s, a 10 s burst at 20 req/s, calm again: 1 s requests on one model
    instance, as Triton's compute time says; the policy is the one the loop runs."""
    rates = [2.0] * 30 + [20.0, 20.0] + [2.0] * calm_after
    state = PolicyState.fresh(0.0, 1)
    current, decisions = 1, []
    for index, rate in enumerate(rates, 1):
        now = index * INTERVAL
        seen = _one_second_requests(now, current, rate, cold_start_seen=cold_start_seen)
        decision, state = decide(spec, current, seen, state, now, INTERVAL)
        decisions.append(decision)
        current = decision.desired_replicas
    return decisions


HEADROOM = re.compile(
    r"\+(\d+) headroom for a rise of ([\d.]+) req/s within the (\d+) s cold start seen in "
    r"the last (\d+ (?:s|min))"
)


def test_the_decision_holds_headroom_for_a_remembered_burst_and_says_why() -> None:
    decisions = calm_burst_calm(objective_spec(), cold_start_seen=42.0)
    last = decisions[-1]
    found = HEADROOM.search(last.reason)
    assert found is not None, last.reason
    headroom, rise, cold, _ = found.groups()
    assert int(headroom) >= 2 and float(rise) > 10 and cold == "42"
    # the calm load alone (2 req/s of 1 s requests) needs 3 replicas at most: the rest is
    # the headroom the reason names
    assert last.desired_replicas >= 3 + int(headroom) - 1


def test_the_specs_cold_start_overrides_the_one_the_pods_showed() -> None:
    decisions = calm_burst_calm(objective_spec(coldStartSeconds=90), cold_start_seen=42.0)
    found = HEADROOM.search(decisions[-1].reason)
    assert found is not None and found.group(3) == "90"


def test_without_an_objective_no_headroom_is_held() -> None:
    spec = Autoscaling.model_validate(
        {"minReplicas": 1, "maxReplicas": 40, "targets": {"queueDepth": 2}}
    )
    decisions = calm_burst_calm(spec, cold_start_seen=42.0)
    assert not any("headroom" in d.reason for d in decisions)
    assert (
        decisions[-1].desired_replicas
        < calm_burst_calm(objective_spec(), 42.0)[-1].desired_replicas
    )


def first_scale_down(spec: Autoscaling) -> float:
    """When ten replicas left from a past load first shrink under a steady 1 req/s of 1 s
    requests (the recommendation of ten recorded at 0 s, no restart hold)."""
    state = PolicyState(recommendations=((0.0, 10),))
    current = 10
    for index in range(1, 40):
        now = index * INTERVAL
        seen = _one_second_requests(now, current, 1.0)
        decision, state = decide(spec, current, seen, state, now, INTERVAL)
        if decision.desired_replicas < current:
            return now
        current = decision.desired_replicas
    raise AssertionError("never scaled down")


def test_with_an_objective_the_default_scale_down_window_is_one_cold_start() -> None:
    """The headroom holds what rises within a cold start need, so replicas above it are kept
    one cold start and three intervals (not 60 s) when the spec leaves the window unset; a
    set window wins and a targets-only spec keeps 60 s."""
    assert first_scale_down(objective_spec(coldStartSeconds=20)) == 20.0 + 3 * INTERVAL
    assert first_scale_down(objective_spec(coldStartSeconds=10)) == 10.0 + 3 * INTERVAL
    assert first_scale_down(objective_spec(coldStartSeconds=120)) == 60.0  # capped at 60 s
    set_window = {"scaleDown": {"stabilizationWindowSeconds": 45}}
    assert first_scale_down(objective_spec(coldStartSeconds=20, behavior=set_window)) == 45.0
    targets = Autoscaling.model_validate(
        {"minReplicas": 1, "maxReplicas": 40, "targets": {"queueDepth": 2}}
    )
    assert first_scale_down(targets) == 60.0


# ------------------------------------------------------------- loads that outlive a cold start


def test_the_memory_says_what_followed_a_load_one_cold_start_later() -> None:
    spikes = memory_of(([2.0] * 10 + [20.0, 20.0]) * 4, cold_start=30.0)
    now = 48 * INTERVAL
    # every interval at least half as busy as 20 req/s was followed by the calm 2 req/s
    assert spikes.rate_after(20.0, now, 30.0) == 2.0
    assert spikes.rate_after(30.0, now, 30.0) is None  # nothing that busy seen
    step = memory_of([2.0] * 10 + [20.0] * 12, cold_start=30.0)
    assert step.rate_after(20.0, 22 * INTERVAL, 30.0) == 20.0  # the step outlived it
    # the step's own intervals say nothing until one cold start has passed since them
    young = memory_of([2.0] * 10 + [20.0] * 6, cold_start=30.0)
    assert young.rate_after(20.0, 16 * INTERVAL, 30.0) is None


def bursts(spec: Autoscaling, rates: list[float]) -> list[tuple[int, Decision]]:
    """(replicas before, decision) per interval: 1 s requests on replicas that are there at
    once (the cold start is the policy's to reckon with), the backlog the excess of the load
    over them builds carried from interval to interval."""
    state = PolicyState.fresh(0.0, 1)
    current, decisions, backlog = 1, [], 0.0
    for index, rate in enumerate(rates, 1):
        now = index * INTERVAL
        served = min(rate + backlog / INTERVAL, float(current))
        backlog = max(0.0, backlog + (rate - served) * INTERVAL)
        queue = backlog / current
        seen = _one_second_requests(now, current, served, queue, cold_start_seen=30.0)
        decision, state = decide(spec, current, seen, state, now, INTERVAL)
        decisions.append((current, decision))
        current = decision.desired_replicas
    return decisions


def test_no_scale_up_for_a_burst_like_those_that_were_gone_within_a_cold_start() -> None:
    """With an objective, replicas asked for during a burst serve one cold start later: when
    every load as high in the memory was gone by then, the headroom held is what serves it
    and the policy does not ask for more (it says why); a burst that outlives a cold start,
    or one higher than any seen, is scaled for."""
    calm, burst = [2.0] * 24, [20.0, 20.0]
    decisions = bursts(objective_spec(), calm + (burst + calm) * 4)
    before, during = decisions[-len(calm) - 1]  # the last burst's second interval
    assert during.desired_replicas <= before, during.reason
    assert "were gone within the 30 s cold start new replicas take" in during.reason
    # the first burst: nothing seen before, scaled for at once
    first_before, first = decisions[len(calm)]
    assert first.desired_replicas > first_before
    # a burst twice as high as any seen is scaled for too
    higher = bursts(objective_spec(), calm + (burst + calm) * 4 + [40.0, 40.0])
    assert higher[-2][1].desired_replicas > higher[-2][0]
    # a load that stayed: once the memory has seen it outlive a cold start, scaled for
    stays = bursts(objective_spec(), calm + (burst + calm) * 4 + [20.0] * 10)
    assert stays[-1][1].desired_replicas > 20


def test_a_load_like_those_gone_within_a_cold_start_still_keeps_what_its_backlog_holds() -> None:
    """Not scaling up for a burst like those that were gone within a cold start never drops
    the replicas a backlog keeps busy: a draining backlog is demand."""
    memory = memory_of(([2.0] * 10 + [20.0, 20.0]) * 4, cold_start=30.0)
    now = 48 * INTERVAL
    assert memory.rate_after(20.0, now, 30.0) == 2.0

    def recommended(held: int) -> int:
        assessment = trusted(now, memory, 20.0, held=held, queue=60.0)
        return recommend(objective_spec(), assessment, 3, now, 30.0).replicas

    assert recommended(0) < 23  # the burst is not scaled for beyond the headroom
    assert recommended(20) >= 23  # the 20 replicas its backlog holds come on top


def test_a_scale_up_for_headroom_alone_waits_for_more_than_the_tolerance() -> None:
    """The headroom is capacity for a rise to come, estimated from noisy counts of past ones:
    when only it asks for more, and for no more than HPA's 10% tolerance above the replicas
    there, they stay; beyond the tolerance, or when the present load asks, replicas come."""
    memory = memory_of([2.0] * 10 + [20.0, 20.0] + [2.0] * 30, cold_start=30.0)
    now = 42 * INTERVAL
    held = memory.rise(0.99, now)
    assert held is not None and headroom_capacity(held, 2.0, 1.0) == 20.0

    def recommended(current: int, arrivals: float = 2.0, bursts: BurstMemory = memory) -> int:
        assessment = trusted(now, bursts, arrivals)
        return recommend(objective_spec(), assessment, current, now, 30.0).replicas

    assert recommended(19) == 19  # 20 busy replicas' worth is within 10% of 19
    assert recommended(18) == 20  # 11% more than 18: the headroom is held
    assert recommended(5) == 20
    # the present load is scaled for at once, whatever the tolerance (a load like one the
    # memory saw stay: a step to 20 req/s, held for a minute)
    stayed = memory_of([2.0] * 10 + [20.0] * 12, cold_start=30.0)
    assert stayed.rate_after(19.5, now, 30.0) == 20.0
    assert recommended(19, arrivals=19.5, bursts=stayed) > 19


def test_the_headroom_for_the_load_after_a_burst_waits_for_more_than_the_tolerance_too() -> None:
    """During a burst like those the memory saw gone within a cold start, what replicas asked
    for now would serve is the load after it plus the headroom: when that is within the
    tolerance of the replicas there, they stay, as for headroom alone."""
    memory = memory_of(([2.0] * 10 + [20.0, 20.0]) * 4, cold_start=30.0)
    now = 48 * INTERVAL
    assert memory.rate_after(20.0, now, 30.0) == 2.0
    held = memory.rise(0.99, now)
    assert held is not None and headroom_capacity(held, 2.0, 1.0) == 20.0

    def recommended(current: int) -> int:
        assessment = trusted(now, memory, 20.0)
        return recommend(objective_spec(), assessment, current, now, 30.0).replicas

    assert recommended(19) == 19  # the 20 busy replicas' worth after it: within 10% of 19
    assert recommended(18) == 20  # beyond the tolerance: the headroom for what follows
