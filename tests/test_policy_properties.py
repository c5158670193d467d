"""Properties of the policy over generated specs, histories and observations (hypothesis)."""

from __future__ import annotations

import math
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tritonop.api.models import Autoscaling
from tritonop.autoscale.policy import PolicyState, decide
from tritonop.autoscale.queueing import mdc_queue_length
from tritonop.autoscale.types import Observation

INTERVAL = 5.0
PROPERTY_SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def autoscaling_specs(draw: st.DrawFn) -> Autoscaling:
    minimum = draw(st.integers(1, 4))
    maximum = draw(st.integers(minimum, 16))
    depth = draw(st.none() | st.floats(0.5, 10))
    queue_time = draw(st.floats(5, 500) if depth is None else st.none() | st.floats(5, 500))
    targets = {"queueDepth": depth, "queueTimeMs": queue_time}
    behavior: dict[str, Any] = {}
    for direction in ("scaleUp", "scaleDown"):
        if draw(st.booleans()):
            behavior[direction] = {
                "stabilizationWindowSeconds": draw(st.none() | st.integers(0, 300)),
                "selectPolicy": draw(st.none() | st.sampled_from(["Max", "Min", "Disabled"])),
                "policies": draw(
                    st.none()
                    | st.lists(
                        st.fixed_dictionaries(
                            {
                                "type": st.sampled_from(["Pods", "Percent"]),
                                "value": st.integers(1, 200),
                                "periodSeconds": st.integers(1, 120),
                            }
                        ),
                        min_size=1,
                        max_size=3,
                    )
                ),
            }
    return Autoscaling.model_validate(
        {
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "targets": targets,
            "behavior": behavior,
            "panic": {
                "threshold": draw(st.floats(1.1, 4)),
                "windowSeconds": draw(st.integers(1, 30)),
            },
        }
    )


@st.composite
def observations(draw: st.DrawFn, time: float) -> Observation | None:
    if draw(st.integers(0, 9)) == 0:
        return None
    ready = draw(st.integers(0, 16))
    reporting = draw(st.integers(0, ready)) if draw(st.integers(0, 4)) == 0 else ready
    return Observation(
        time=time,
        ready_replicas=ready,
        starting_replicas=draw(st.integers(0, 4)),
        reporting_replicas=reporting,
        queue_depth=draw(st.none() | st.floats(0, 400)),
        queue_time_ms=draw(st.none() | st.floats(0, 20_000)),
        request_rate=draw(st.none() | st.floats(0, 500)),
        problems=("pod-x: timeout",) if reporting < ready else (),
    )


@st.composite
def histories(draw: st.DrawFn) -> tuple[Autoscaling, PolicyState, int, float]:
    """A spec, and the state and replica count after a random run of intervals."""
    autoscaling = draw(autoscaling_specs())
    current = draw(st.integers(autoscaling.min_replicas, autoscaling.max_replicas))
    state = PolicyState.fresh(0.0, current) if draw(st.booleans()) else PolicyState()
    now = 0.0
    for _ in range(draw(st.integers(0, 12))):
        now += INTERVAL
        decision, state = decide(
            autoscaling, current, draw(observations(now)), state, now, INTERVAL
        )
        current = decision.desired_replicas
    return autoscaling, state, current, now + INTERVAL


@PROPERTY_SETTINGS
@given(history=histories(), data=st.data())
def test_desired_replicas_always_within_bounds(
    history: tuple[Autoscaling, PolicyState, int, float], data: st.DataObject
) -> None:
    autoscaling, state, current, now = history
    current = data.draw(st.integers(0, 30))  # even a count outside the bounds is brought in
    decision, _ = decide(autoscaling, current, data.draw(observations(now)), state, now, INTERVAL)
    assert autoscaling.min_replicas <= decision.desired_replicas <= autoscaling.max_replicas
    limited = next(c for c in decision.conditions if c.type == "ScalingLimited")
    clamped = decision.desired_replicas in (autoscaling.min_replicas, autoscaling.max_replicas)
    assert not limited.status or clamped or limited.reason in ("ScaleUpLimit", "ScaleDownLimit")


@PROPERTY_SETTINGS
@given(history=histories(), data=st.data())
def test_missing_or_partial_data_never_lowers_replicas(
    history: tuple[Autoscaling, PolicyState, int, float], data: st.DataObject
) -> None:
    autoscaling, state, current, now = history
    observation = data.draw(observations(now))
    if observation is not None:
        kind = data.draw(st.sampled_from(["missing-signal", "incomplete", "stale"]))
        if kind == "missing-signal":
            signal = "queue_depth" if autoscaling.targets.queue_depth else "queue_time_ms"
            fields = {signal: None, "request_rate": None}
            observation = Observation(**{**observation.__dict__, **fields})
        elif kind == "incomplete":
            ready = max(1, observation.ready_replicas)
            observation = Observation(
                **{
                    **observation.__dict__,
                    "ready_replicas": ready,
                    "reporting_replicas": ready - 1,
                    "problems": ("pod-y: connection refused",),
                }
            )
        else:
            observation = Observation(**{**observation.__dict__, "time": now - 10 * INTERVAL})
    decision, _ = decide(autoscaling, current, observation, state, now, INTERVAL)
    assert decision.desired_replicas >= min(current, autoscaling.max_replicas)
    active = next(c for c in decision.conditions if c.type == "ScalingActive")
    assert active.status is False


@PROPERTY_SETTINGS
@given(
    history=histories(),
    data=st.data(),
    field=st.sampled_from(["queue_depth", "queue_time_ms"]),
)
def test_more_queue_never_gives_fewer_replicas(
    history: tuple[Autoscaling, PolicyState, int, float], data: st.DataObject, field: str
) -> None:
    autoscaling, state, current, now = history
    observation = data.draw(observations(now))
    if observation is None:
        return
    low = data.draw(st.floats(0, 300))
    high = low + data.draw(st.floats(0, 300))
    quieter = Observation(**{**observation.__dict__, field: low})
    busier = Observation(**{**observation.__dict__, field: high})
    fewer, _ = decide(autoscaling, current, quieter, state, now, INTERVAL)
    more, _ = decide(autoscaling, current, busier, state, now, INTERVAL)
    assert more.desired_replicas >= fewer.desired_replicas


def steady_observation(
    now: float, ready: int, starting: int, arrival_rate: float, cost: float, backlog: float
) -> tuple[Observation, float]:
    """What `ready` replicas of an M/D/c service show at steady load (the backlog grows when
    the load exceeds their capacity). Returns the observation and the new backlog."""
    capacity = ready / cost
    if arrival_rate < capacity and backlog == 0:
        utilization = arrival_rate * cost / ready
        queue = mdc_queue_length(ready, utilization)
        wait_ms = queue / arrival_rate * 1000 if arrival_rate else 0.0
        return Observation(now, ready, starting, ready, queue / ready, wait_ms, arrival_rate), 0.0
    backlog = max(0.0, backlog + (arrival_rate - capacity) * INTERVAL)
    served = capacity if backlog > 0 else arrival_rate
    wait_ms = backlog / capacity * 1000
    return Observation(now, ready, starting, ready, backlog / ready, wait_ms, served), backlog


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arrival_rate=st.floats(0.5, 150),
    cost=st.floats(0.01, 0.2),
    targets=st.sampled_from(
        [{"queueDepth": 2}, {"queueTimeMs": 100}, {"queueDepth": 1, "queueTimeMs": 50}]
    ),
    start=st.integers(1, 12),
)
def test_steady_load_converges_to_a_steady_replica_count(
    arrival_rate: float, cost: float, targets: dict[str, float], start: int
) -> None:
    autoscaling = Autoscaling.model_validate(
        {"minReplicas": 1, "maxReplicas": 30, "targets": targets}
    )
    cold_start_intervals = 4
    state = PolicyState()
    current = start
    ready_at: list[float] = [0.0] * start  # when each existing replica serves
    backlog = 0.0
    history = []
    for step in range(1, 241):
        now = step * INTERVAL
        ready = sum(1 for t in ready_at if t <= now)
        observation, backlog = steady_observation(
            now, ready, len(ready_at) - ready, arrival_rate, cost, backlog
        )
        decision, state = decide(autoscaling, current, observation, state, now, INTERVAL)
        desired = decision.desired_replicas
        if desired > current:
            ready_at += [now + cold_start_intervals * INTERVAL] * (desired - current)
        elif desired < current:
            ready_at = sorted(ready_at)[:desired]
            backlog = 0.0 if not ready_at else backlog
        current = desired
        history.append(current)
    settled = history[120:]
    assert len(set(settled)) == 1, f"still moving after 10 minutes: {settled}"


#: Floats a hostile or broken page can make the reader produce, besides arbitrary ones.
NASTY_FLOATS = st.sampled_from(
    [math.nan, math.inf, -math.inf, 5e-324, 2.2e-308, 1e-300, 1e300, 1.7e308, -0.0, -1.0]
)


def any_float() -> st.SearchStrategy[float | None]:
    return st.none() | NASTY_FLOATS | st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def hostile_observations(draw: st.DrawFn, time: float) -> Observation:
    ready = draw(st.integers(0, 64))
    return Observation(
        time=draw(st.just(time) | NASTY_FLOATS | st.floats()),
        ready_replicas=ready,
        starting_replicas=draw(st.integers(0, 8)),
        reporting_replicas=draw(st.integers(0, ready)),
        queue_depth=draw(any_float()),
        queue_time_ms=draw(any_float()),
        request_rate=draw(any_float()),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    autoscaling=autoscaling_specs(),
    big_max=st.booleans(),
    data=st.data(),
)
def test_policy_is_total_and_bounded_on_arbitrary_floats(
    autoscaling: Autoscaling, big_max: bool, data: st.DataObject
) -> None:
    """Whatever the floats (NaN, inf, denormals, 1e300), decide() returns at once (bounded
    work: a few ms of CPU) with a count within the bounds, and never raises."""
    if big_max:  # sizing work must not grow with maxReplicas either
        autoscaling = autoscaling.model_copy(update={"max_replicas": 100_000})
    state = PolicyState()
    current = data.draw(st.integers(0, 40))
    slowest = 0.0
    for step in range(1, data.draw(st.integers(1, 4)) + 1):
        now = step * INTERVAL
        observation = data.draw(hostile_observations(now))
        started = time.process_time()
        decision, state = decide(autoscaling, current, observation, state, now, INTERVAL)
        slowest = max(slowest, time.process_time() - started)
        assert autoscaling.min_replicas <= decision.desired_replicas <= autoscaling.max_replicas
        assert [c.type for c in decision.conditions] == [
            "AbleToScale",
            "ScalingActive",
            "ScalingLimited",
        ]
        current = decision.desired_replicas
    assert slowest < 0.05, f"decide() took {slowest * 1000:.1f} ms of CPU"


def test_a_huge_backlog_over_a_tiny_cold_start_holds_every_replica_without_raising() -> None:
    """Found by the property above: a backlog of 1e300 over a cold start of 5e-324 s made the
    replicas held by the backlog infinite, and math.floor raised OverflowError."""
    spec = Autoscaling.model_validate(
        {"minReplicas": 1, "maxReplicas": 40, "targets": {"queueDepth": 2}}
    )
    state, current = PolicyState(), 2
    for step in range(1, 4):
        now = step * INTERVAL
        observation = Observation(
            time=now,
            ready_replicas=2,
            starting_replicas=0,
            reporting_replicas=2,
            queue_depth=1e300,
            queue_time_ms=1.0,
            request_rate=1.0,
            compute_ms=1000.0,
            cold_start_seconds=5e-324,
        )
        decision, state = decide(spec, current, observation, state, now, INTERVAL)
        assert spec.min_replicas <= decision.desired_replicas <= spec.max_replicas
        current = decision.desired_replicas
