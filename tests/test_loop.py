"""The Operator-mode autoscaling loop without kopf: a fake clock, chosen Observations, an in-memory
cluster and a stop flag. What it scales, the Events and status it writes, and that an interval
in which nothing changes writes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from fakes import FakeClock, FakeCluster, FakeSource, StopAfter, ready_pod, starting_pod
from tritonop import conditions as c
from tritonop.autoscale.loop import operator_mode, rate_window, run_autoscaler, split_pods
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
