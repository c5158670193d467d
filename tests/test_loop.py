"""The Operator-mode autoscaling loop without kopf: a fake clock, chosen Observations, an in-memory
cluster and a stop flag. What it scales, the Events and status it writes, and that an interval
in which nothing changes writes nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client import REGISTRY

from fakes import (
    FakeClock,
    FakeCluster,
    FakeSource,
    StopAfter,
    api_error,
    owned_pod,
    ready_pod,
    starting_pod,
)
from tritonop import conditions as c
from tritonop.autoscale.loop import (
    LoopState,
    WriteFailure,
    autoscale_once,
    next_delay,
    operator_mode,
    pods_cold_start,
    rate_window,
    run_autoscaler,
    split_pods,
)
from tritonop.autoscale.observe import MetricsTarget
from tritonop.autoscale.types import Observation
from tritonop.conditions import find_condition
from tritonop.reconciler import reconcile, refresh_workload

KEY = ("ml", "svc")
AUTOSCALING = {"minReplicas": 1, "maxReplicas": 5, "targets": {"queueDepth": 4}}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def operator_service(clock: FakeClock, **autoscaling: Any) -> FakeCluster:
    """A reconciled Operator-mode service with one ready pod."""
    cluster = FakeCluster()
    cluster.add_node("cpu")
    body = cluster.add_service(
        "svc",
        {
            "modelRepository": {"uri": "s3://m/t"},
            "gpu": {"count": 0},
            "autoscaling": {**AUTOSCALING, **autoscaling},
        },
    )
    book = cluster.book(clock)
    reconcile(cluster.runtime(clock), book, cluster.retries, cluster.view(), body, "create")
    cluster.roll_out(KEY)
    cluster.set_pods(KEY, ready_pod("svc-a", "10.0.0.1"))
    refresh_workload(book, cluster.view(), KEY)
    cluster.writes.clear()
    cluster.events.clear()
    return cluster


async def autoscale(
    cluster: FakeCluster, clock: FakeClock, source: FakeSource, rounds: int
) -> StopAfter:
    stopped = StopAfter(clock, rounds)
    runtime = cluster.runtime(clock, autoscale_interval_seconds=5.0)
    await run_autoscaler(runtime, cluster.book(clock), KEY, cluster.view(), source, stopped)
    return stopped


async def test_a_deep_queue_scales_up_with_an_event_and_records_it(clock: FakeClock) -> None:
    cluster = operator_service(clock)
    source = FakeSource(clock, queue_depth=16.0, queue_time_ms=400.0, request_rate=50.0)
    decided_at = clock.wall()
    stopped = await autoscale(cluster, clock, source, rounds=1)
    scales = [w for w in cluster.writes if w[0] == "scale"]
    assert len(scales) == 1 and int(scales[0][-1]) > 1
    wanted = int(scales[0][-1])
    assert [(e.reason, e.warning) for e in cluster.events] == [(c.SCALED_UP, False)]
    status = cluster.service(KEY)["status"]
    assert status["desiredReplicas"] == wanted
    assert status["lastScale"] == {"from": 1, "to": wanted, "reason": cluster.events[0].message}
    assert status["lastScaleTime"] == decided_at
    assert status["metrics"] == {"queueDepth": 16.0, "queueTimeMs": 400.0, "requestRate": 50.0}
    assert status["replicaSummary"] == f"1/{wanted}"
    assert find_condition(status, c.SCALING_ACTIVE)["reason"] == c.VALID_METRICS
    assert find_condition(status, c.ABLE_TO_SCALE) and find_condition(status, c.SCALING_LIMITED)
    target = source.targets[0]
    assert (target.namespace, target.name, target.starting) == ("ml", "svc", 0)
    assert [p.name for p in target.pods] == ["svc-a"]
    assert target.window_s == rate_window(5.0) == 30.0
    assert stopped.waits == [5.0]  # the interval, less the (zero) time the interval took
    assert source.forgotten == [KEY]  # the source drops the service when the loop ends


async def test_steady_load_writes_nothing_after_the_first_interval(clock: FakeClock) -> None:
    cluster = operator_service(clock)
    source = FakeSource(clock, queue_depth=2.0, queue_time_ms=10.0, request_rate=20.0)
    await autoscale(cluster, clock, source, rounds=5)
    assert len(source.targets) == 5
    # the first interval records metrics and the scaling conditions; the other four: nothing
    assert cluster.writes == [("status", "InferenceService", "ml", "svc")]
    assert cluster.events == []


async def test_missing_metrics_hold_the_replicas(clock: FakeClock) -> None:
    cluster = operator_service(clock)
    source = FakeSource(clock, queue_depth=None, queue_time_ms=None, request_rate=None)
    await autoscale(cluster, clock, source, rounds=2)
    assert not any(w[0] == "scale" for w in cluster.writes)
    status = cluster.service(KEY)["status"]
    assert "metrics" not in status
    active = find_condition(status, c.SCALING_ACTIVE)
    assert (active["status"], active["reason"]) == ("False", c.MISSING_METRICS)


class Silent(FakeSource):
    """Never news (every pod's scrapes failing, none due again yet); at the `change_at`-th
    question a second pod becomes ready."""

    def __init__(self, clock: FakeClock, cluster: FakeCluster, change_at: int) -> None:
        super().__init__(clock, queue_depth=None, queue_time_ms=None, request_rate=None)
        self.cluster, self.asked, self.change_at = cluster, 0, change_at

    def has_news(self, target: MetricsTarget) -> bool:
        self.asked += 1
        if self.asked == self.change_at:
            pods = (ready_pod("svc-a", "10.0.0.1"), ready_pod("svc-b", "10.0.0.2"))
            self.cluster.set_pods(KEY, *pods)
        return False


async def test_an_interval_with_nothing_new_to_observe_decides_and_writes_nothing(
    clock: FakeClock,
) -> None:
    """While the source has no news and the pods, replicas and spec are those of the last
    interval, the loop neither observes nor decides; a new pod is observed at once."""
    cluster = operator_service(clock)
    source = Silent(clock, cluster, change_at=2)
    stopped = await autoscale(cluster, clock, source, rounds=5)
    assert [[p.name for p in t.pods] for t in source.targets] == [["svc-a"], ["svc-a", "svc-b"]]
    assert source.asked == 3  # intervals 2, 3 and 5: the 4th had a new target
    assert stopped.waits == [5.0] * 5  # the loop keeps its interval
    assert len(status_writes(cluster)) == 1  # the first interval's MissingMetrics


async def test_without_a_deployment_nothing_is_observed_or_written(clock: FakeClock) -> None:
    cluster = operator_service(clock)
    del cluster.deployments[KEY]
    source = FakeSource(clock, queue_depth=16.0, queue_time_ms=1.0, request_rate=1.0)
    await autoscale(cluster, clock, source, rounds=3)
    assert source.targets == [] and cluster.writes == []


def test_pods_split_into_metrics_targets_and_starting_capacity() -> None:
    terminating = ready_pod("old", "10.0.0.9")
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    finished = ready_pod("done", "10.0.0.8")
    finished["status"]["phase"] = "Succeeded"
    no_ip = ready_pod("fresh", "")
    pods = [ready_pod("a", "10.0.0.1"), starting_pod("b"), terminating, finished, no_ip]
    ready, starting = split_pods(pods)
    assert [(p.name, p.ip) for p in ready] == [("a", "10.0.0.1")]
    assert starting == 2


def timed_pod(name: str, ip: str, created: str, ready: str) -> dict[str, Any]:
    """A ready pod with the times the API server writes: creation and the Ready transition."""
    pod = ready_pod(name, ip)
    pod["metadata"]["creationTimestamp"] = created
    pod["status"]["conditions"][0]["lastTransitionTime"] = ready
    return pod


def test_the_cold_start_is_measured_on_the_services_pods() -> None:
    pods = [
        timed_pod("a", "10.0.0.1", "2026-12-03T10:00:00Z", "2026-12-03T10:00:40Z"),
        timed_pod("b", "10.0.0.2", "2026-12-03T10:05:00Z", "2026-12-03T10:05:44Z"),
        starting_pod("c"),  # not Ready: no cold start yet
    ]
    assert pods_cold_start(pods) == 42.0
    leaving = timed_pod("old", "10.0.0.9", "2026-12-03T09:00:00Z", "2026-12-03T09:09:00Z")
    leaving["metadata"]["deletionTimestamp"] = "2026-12-03T10:06:00Z"
    assert pods_cold_start([*pods, leaving]) == 42.0  # a pod on its way out does not count
    assert pods_cold_start([ready_pod("untimed", "10.0.0.3")]) is None


class Scripted(FakeSource):
    """A FakeSource whose request rate follows a script, one entry per interval."""

    def __init__(self, clock: FakeClock, rates: list[float], **signals: Any) -> None:
        super().__init__(clock, **signals)
        self.rates = rates

    async def observe(self, target: Any) -> Observation:
        self.signals["request_rate"] = self.rates[min(len(self.targets), len(self.rates) - 1)]
        return await super().observe(target)


async def test_the_objectives_headroom_names_the_cold_start_the_pods_showed(
    clock: FakeClock,
) -> None:
    cluster = operator_service(
        clock, maxReplicas=40, targets={}, objective={"latencyMs": 5000, "attainment": 0.99}
    )
    cluster.set_pods(
        KEY, timed_pod("svc-a", "10.0.0.1", "2026-12-03T10:00:00Z", "2026-12-03T10:00:42Z")
    )
    # calm, a 10 s burst at ten times the rate, calm: the loop feeds the pods' cold start
    source = Scripted(
        clock,
        [2.0] * 30 + [20.0, 20.0] + [2.0] * 6,
        queue_depth=0.0,
        queue_time_ms=0.0,
        compute_ms=1000.0,
    )
    await autoscale(cluster, clock, source, rounds=38)
    reason = cluster.service(KEY)["status"]["lastScale"]["reason"]
    assert re.search(
        r"\+\d+ headroom for a rise of [\d.]+ req/s within the 42 s cold start", reason
    )
    assert reason == cluster.events[-1].message


async def test_before_a_scale_down_busy_pods_get_a_higher_deletion_cost(clock: FakeClock) -> None:
    cluster = operator_service(clock)
    deployment = cluster.deployment(KEY)
    assert deployment is not None
    deployment["spec"]["replicas"] = 3
    cluster.set_pods(
        KEY,
        owned_pod("svc", "svc-a", "10.0.0.1", cost="0"),  # already says what it should
        owned_pod("svc", "svc-b", "10.0.0.2"),
        owned_pod("svc", "svc-c", "10.0.0.3"),
        ready_pod("stray", "10.0.0.4"),  # not the operator's: never annotated
    )
    work = {"svc-a": 0.0, "svc-b": 3.0, "svc-c": 0.2, "stray": 0.0}
    source = FakeSource(
        clock, queue_depth=0.0, queue_time_ms=0.0, request_rate=1.0, pod_work=tuple(work.items())
    )
    await autoscale(cluster, clock, source, rounds=30)  # past the restart hold and window
    writes = [w for w in cluster.writes if w[0] in ("annotate", "scale")]
    assert writes[0] == ("annotate", "Pod", "ml", "svc-b", "3")
    assert writes[1] == ("annotate", "Pod", "ml", "svc-c", "1")
    assert writes[2][0] == "scale" and int(writes[2][-1]) < 3
    assert not [w for w in writes[3:] if w[0] == "annotate"]  # nothing changed since
    assert [e.reason for e in cluster.events] == [c.SCALED_DOWN]


async def test_a_scale_up_writes_no_deletion_cost(clock: FakeClock) -> None:
    cluster = operator_service(clock)
    cluster.set_pods(KEY, owned_pod("svc", "svc-a", "10.0.0.1"))
    source = FakeSource(
        clock, queue_depth=16.0, queue_time_ms=400.0, request_rate=50.0, pod_work=(("svc-a", 17.0),)
    )
    await autoscale(cluster, clock, source, rounds=1)
    assert [w[0] for w in cluster.writes if w[0] in ("annotate", "scale")] == ["scale"]


def test_the_loop_runs_for_valid_operator_mode_services_only() -> None:
    base = {"apiVersion": "tritonop.io/v1alpha1", "kind": "InferenceService"}
    meta = {"metadata": {"name": "svc", "namespace": "ml"}}
    repo = {"modelRepository": {"uri": "s3://m/t"}, "gpu": {"count": 0}}
    operator = {**base, **meta, "spec": {**repo, "autoscaling": AUTOSCALING}}
    hpa = {**base, **meta, "spec": {**repo, "autoscaling": {**AUTOSCALING, "mode": "HPA"}}}
    fixed = {**base, **meta, "spec": repo}
    invalid = {**base, **meta, "spec": {"autoscaling": AUTOSCALING}}
    assert [operator_mode(b) for b in (operator, hpa, fixed, invalid)] == [
        True,
        False,
        False,
        False,
    ]


class MovingSource(FakeSource):
    """Load whose numbers move every interval (queue 1.0, 1.5, 1.0, ...: below the target, so
    no scaling), and that notes when each interval observed and how many status writes the
    cluster had received by then."""

    def __init__(self, clock: FakeClock, cluster: FakeCluster, missing_from: int = 10**6) -> None:
        super().__init__(clock)
        self.cluster = cluster
        self.missing_from = missing_from
        self.seen: list[tuple[float, int]] = []

    async def observe(self, target: MetricsTarget) -> Observation:
        count = len(self.targets)
        self.seen.append((self.clock.monotonic(), len(status_writes(self.cluster))))
        moving = count < self.missing_from
        self.signals = {
            "queue_depth": 1.0 + 0.5 * (count % 2) if moving else None,
            "queue_time_ms": 10.0 + count if moving else None,
            "request_rate": 20.0 + count if moving else None,
        }
        return await super().observe(target)


def status_writes(cluster: FakeCluster) -> list[tuple[str, ...]]:
    return [w for w in cluster.writes if w[0] == "status"]


def write_times(source: MovingSource, cluster: FakeCluster) -> list[float]:
    """When (the clock at the interval's start) each status write was made."""
    counts = [*(n for _, n in source.seen[1:]), len(status_writes(cluster))]
    return [t for (t, before), after in zip(source.seen, counts, strict=True) if after > before]


async def test_moving_numbers_reach_status_at_most_every_30_seconds(clock: FakeClock) -> None:
    cluster = operator_service(clock)
    source = MovingSource(clock, cluster)
    start = clock.monotonic()
    await autoscale(cluster, clock, source, rounds=24)  # 24 intervals of 5 s: two minutes
    times = [t - start for t in write_times(source, cluster)]
    # the first interval has news (desiredReplicas, the scaling conditions); then the numbers
    # alone are written once per 30 s although they changed every interval
    assert times == [0.0, 30.0, 60.0, 90.0]
    assert not any(w[0] == "scale" for w in cluster.writes)
    last = cluster.service(KEY)["status"]["metrics"]
    assert last == {"queueDepth": 1.0, "queueTimeMs": 28.0, "requestRate": 38.0}  # interval 19
    # /metrics is current every interval: the last interval's numbers, not the last written
    assert (
        REGISTRY.get_sample_value(
            "tritonop_autoscaler_signal",
            {"namespace": "ml", "name": "svc", "signal": "request_rate"},
        )
        == 20.0 + 23
    )


async def test_a_condition_change_is_written_at_once(clock: FakeClock) -> None:
    cluster = operator_service(clock)
    source = MovingSource(clock, cluster, missing_from=3)  # metrics vanish at the 4th interval
    start = clock.monotonic()
    await autoscale(cluster, clock, source, rounds=6)
    assert [t - start for t in write_times(source, cluster)] == [0.0, 15.0]
    active = find_condition(cluster.service(KEY)["status"], c.SCALING_ACTIVE)
    assert (active["status"], active["reason"]) == ("False", c.MISSING_METRICS)


async def test_a_restarted_loop_leaves_written_numbers_for_30_seconds(clock: FakeClock) -> None:
    cluster = operator_service(clock)
    await autoscale(cluster, clock, MovingSource(clock, cluster), rounds=1)
    before = len(status_writes(cluster))
    restarted = MovingSource(clock, cluster)  # other numbers than the status holds
    start = clock.monotonic()
    await autoscale(cluster, clock, restarted, rounds=12)
    assert [t - start for t in write_times(restarted, cluster)] == [30.0]
    assert len(status_writes(cluster)) == before + 1


# ------------------------------------------------------------------ API errors in an interval


def scale_writes(cluster: FakeCluster) -> list[tuple[str, ...]]:
    return [w for w in cluster.writes if w[0] in ("scale", "scale-refused")]


async def test_a_429_then_a_500_on_the_scale_write_scale_at_the_next_interval(
    clock: FakeClock,
) -> None:
    cluster = operator_service(clock)
    cluster.fail_scale = [
        api_error(429, "Too Many Requests"),
        api_error(500, "Internal Server Error"),
    ]
    source = FakeSource(clock, queue_depth=16.0, queue_time_ms=400.0, request_rate=50.0)
    runtime = cluster.runtime(clock, autoscale_interval_seconds=5.0)
    book = cluster.book(clock)
    view = cluster.view()
    state = LoopState(status_written=clock.monotonic())

    first = await autoscale_once(runtime, book, KEY, view, source, state)
    assert first.failure is not None and first.failure.status == 429
    assert cluster.deployment(KEY)["spec"]["replicas"] == 1  # type: ignore[index]
    able = find_condition(cluster.service(KEY)["status"], c.ABLE_TO_SCALE)
    assert (able["status"], able["reason"]) == ("False", c.FAILED_UPDATE_SCALE)
    assert "HTTP 429 Too Many Requests; retried after backing off" in able["message"]
    assert cluster.events == []  # nothing happened: no ScaledUp
    assert state.policy is not None and not state.policy.scale_events  # nor for the rate limits

    clock.advance(next_delay(5.0, first.failure, throttled=1))
    second = await autoscale_once(runtime, book, KEY, view, source, state)
    assert second.failure is not None and second.failure.status == 500
    able = find_condition(cluster.service(KEY)["status"], c.ABLE_TO_SCALE)
    assert "HTTP 500 Internal Server Error; retried at the next interval" in able["message"]

    clock.advance(next_delay(5.0, second.failure, throttled=0))
    third = await autoscale_once(runtime, book, KEY, view, source, state)
    assert third.failure is None
    wanted = int(scale_writes(cluster)[-1][-1])
    assert [w[0] for w in scale_writes(cluster)] == ["scale-refused", "scale-refused", "scale"]
    assert cluster.deployment(KEY)["spec"]["replicas"] == wanted > 1  # type: ignore[index]
    assert clock.now == 1010.0  # two intervals after the first attempt
    status = cluster.service(KEY)["status"]
    assert find_condition(status, c.ABLE_TO_SCALE)["status"] == "True"
    assert status["lastScale"]["to"] == wanted
    assert [e.reason for e in cluster.events] == [c.SCALED_UP]
    # The policy's history ran on through the failures: the window holds all three intervals
    # (and the restart's starting point), it did not start over.
    assert state.policy is not None
    assert [when for when, _ in state.policy.recommendations] == [1000.0, 1000.0, 1005.0, 1010.0]
    assert state.policy.scale_events == ((1010.0, wanted - 1),)


async def test_the_loop_backs_off_on_429_honours_retry_after_and_recovers(
    clock: FakeClock,
) -> None:
    cluster = operator_service(clock)
    cluster.fail_scale = [
        api_error(429, "Too Many Requests", Retry_After="12"),
        api_error(429, "Too Many Requests"),
        api_error(429, "Too Many Requests"),
    ]
    source = FakeSource(clock, queue_depth=16.0, queue_time_ms=400.0, request_rate=50.0)
    stopped = await autoscale(cluster, clock, source, rounds=5)
    assert stopped.waits == [12.0, 10.0, 20.0, 5.0, 5.0]
    assert [w[0] for w in scale_writes(cluster)] == ["scale-refused"] * 3 + ["scale"]


def test_next_delay_is_bounded() -> None:
    throttled = WriteFailure("scale", 429, "HTTP 429", retry_after=3600.0)
    assert next_delay(5.0, throttled, throttled=1) == 60.0
    assert next_delay(5.0, throttled, throttled=9) == 60.0
    assert next_delay(120.0, throttled, throttled=1) == 120.0  # never less than the interval
    assert next_delay(5.0, WriteFailure("status", 409, "HTTP 409"), throttled=0) == 5.0
    assert next_delay(5.0, None, throttled=0) == 5.0


async def test_a_refused_status_write_is_retried_and_the_loop_lives_on(clock: FakeClock) -> None:
    cluster = operator_service(clock)
    cluster.fail_status = [api_error(409, "Conflict")]
    source = FakeSource(clock, queue_depth=2.0, queue_time_ms=10.0, request_rate=20.0)
    stopped = await autoscale(cluster, clock, source, rounds=2)
    statuses = [w[0] for w in cluster.writes if w[0].startswith("status")]
    assert statuses == ["status-refused", "status"]
    assert stopped.waits == [5.0, 5.0]
    assert cluster.service(KEY)["status"]["metrics"]["queueDepth"] == 2.0


async def test_an_unreachable_api_server_is_a_failed_interval_not_a_dead_loop(
    clock: FakeClock,
) -> None:
    cluster = operator_service(clock)
    cluster.fail_scale = [ConnectionRefusedError(111, "Connection refused")]
    cluster.fail_status = [ConnectionRefusedError(111, "Connection refused")]
    source = FakeSource(clock, queue_depth=16.0, queue_time_ms=400.0, request_rate=50.0)
    await autoscale(cluster, clock, source, rounds=2)
    assert [w[0] for w in scale_writes(cluster)] == ["scale-refused", "scale"]


async def test_a_refused_event_does_not_undo_the_scale(clock: FakeClock) -> None:
    cluster = operator_service(clock)
    source = FakeSource(clock, queue_depth=16.0, queue_time_ms=400.0, request_rate=50.0)

    def refuse(*_: Any, **__: Any) -> None:
        raise api_error(500, "Internal Server Error")

    cluster.event = refuse  # type: ignore[method-assign]
    await autoscale(cluster, clock, source, rounds=1)
    status = cluster.service(KEY)["status"]
    assert status["lastScale"]["to"] > 1
    assert find_condition(status, c.ABLE_TO_SCALE)["status"] == "True"


async def test_the_resync_and_the_loop_agree_while_the_scale_write_fails(clock: FakeClock) -> None:
    """The repair loop's resync of a service whose scale writes keep failing neither clears the
    loop's AbleToScale=False nor disagrees with it about the replicas: the status is written
    once, when the failure starts, not back and forth at every resync."""
    cluster = operator_service(clock)
    cluster.fail_scale = [api_error(500, "Internal Server Error")] * 2
    source = FakeSource(clock, queue_depth=16.0, queue_time_ms=400.0, request_rate=50.0)
    runtime = cluster.runtime(clock, autoscale_interval_seconds=5.0)
    book = cluster.book(clock)
    view = cluster.view()

    def status_writes() -> list[tuple[str, ...]]:
        return [w for w in cluster.writes if w[0].startswith("status")]

    state = LoopState(status_written=clock.monotonic())
    first = await autoscale_once(runtime, book, KEY, view, source, state)
    assert first.failure is not None and len(status_writes()) == 1
    clock.advance(5.0)
    reconcile(runtime, book, cluster.retries, view, cluster.service(KEY), "resync")
    clock.advance(5.0)
    second = await autoscale_once(runtime, book, KEY, view, source, state)
    assert second.failure is not None
    assert len(status_writes()) == 1
    status = cluster.service(KEY)["status"]
    able = find_condition(status, c.ABLE_TO_SCALE)
    assert (able["status"], able["reason"]) == ("False", c.FAILED_UPDATE_SCALE)
    assert status["replicaSummary"] == "1/1"  # what the Deployment has, as the reconcile says
    assert status["desiredReplicas"] > 1  # what the loop wants
