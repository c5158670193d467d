"""The repair loop: a failed reconcile is retried with bounded backoff, a healthy service is
resynced every interval and the resync writes nothing when nothing changed."""

from __future__ import annotations

from kubernetes.client.exceptions import ApiException

from fakes import FakeClock, FakeCluster, StopAfter
from tritonop.reconciler import reconcile
from tritonop.repair import next_run, run_repair
from tritonop.retries import Retries, backoff

KEY = ("ml", "svc")
SPEC = {"modelRepository": {"uri": "s3://m/t"}, "gpu": {"count": 0}}


def test_backoff_doubles_from_five_seconds_up_to_the_ceiling() -> None:
    assert [backoff(n, 60) for n in range(1, 8)] == [5, 10, 20, 40, 60, 60, 60]
    assert backoff(500, 300) == 300  # no overflow after a long outage


def test_the_next_run_is_the_earlier_of_the_retry_and_the_resync() -> None:
    assert next_run(100, 300, None) == 400
    assert next_run(100, 300, 105) == 105
    assert next_run(100, 300, 900) == 400


def test_a_recorded_failure_wakes_the_watcher() -> None:
    retries, woken = Retries(), []
    retries.watch(KEY, lambda: woken.append(True))
    failure = retries.failed(KEY, now=10, ceiling=300)
    assert (failure.attempts, failure.due, woken) == (1, 15, [True])
    assert retries.failed(KEY, now=15, ceiling=300).due == 25
    retries.succeeded(KEY)
    assert retries.pending(KEY) is None


async def test_a_failing_service_is_retried_when_due_and_never_more_often() -> None:
    clock, cluster = FakeClock(), FakeCluster()
    body = cluster.add_service("svc", SPEC)
    cluster.refuse["Deployment"] = ApiException(status=422, reason="Invalid")
    runtime, book = cluster.runtime(clock, resync_interval_seconds=30), cluster.book(clock)
    reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")
    start = clock.monotonic()
    stop = StopAfter(clock, rounds=6)
    await run_repair(runtime, book, cluster.retries, KEY, cluster.view(), stop)
    # Attempts at +0 (the event), then +5, +15, +35, +65, +95: backoff capped at 30 s.
    assert stop.waits == [5, 10, 20, 30, 30, 30]
    assert clock.monotonic() - start == 125
    attempts = [w for w in cluster.writes if w[0] == "refused"]
    assert len(attempts) == 6  # the event's reconcile and five retries over two minutes


async def test_a_healthy_service_is_resynced_every_interval_and_writes_nothing() -> None:
    clock, cluster = FakeClock(), FakeCluster()
    body = cluster.add_service("svc", SPEC)
    runtime, book = cluster.runtime(clock, resync_interval_seconds=300), cluster.book(clock)
    reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")
    written = len(cluster.writes)
    stop = StopAfter(clock, rounds=3)
    await run_repair(runtime, book, cluster.retries, KEY, cluster.view(), stop)
    assert stop.waits == [300, 300, 300]
    assert cluster.writes[written:] == []


async def test_the_resync_recreates_a_child_lost_while_nobody_watched() -> None:
    clock, cluster = FakeClock(), FakeCluster()
    body = cluster.add_service("svc", SPEC)
    runtime, book = cluster.runtime(clock, resync_interval_seconds=60), cluster.book(clock)
    reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")
    del cluster.deployments[KEY]  # deleted by hand; the event's reconcile was lost
    del cluster.children[("Deployment", "ml", "svc")]
    await run_repair(runtime, book, cluster.retries, KEY, cluster.view(), StopAfter(clock, 2))
    assert cluster.deployment(KEY) is not None
