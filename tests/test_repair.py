"""The repair loop: a failed reconcile is retried with bounded backoff, a healthy service is
resynced every interval and the resync writes nothing when nothing changed."""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException

from fakes import FakeClock, FakeCluster, StopAfter
from tritonop.drift import ChildVersions
from tritonop.reconciler import reconcile, resync
from tritonop.repair import next_run, run_repair
from tritonop.retries import Retries, backoff
from tritonop.runtime import Runtime
from tritonop.statusbook import StatusBook

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
    await run_repair(
        runtime, book, cluster.retries, cluster.child_versions(runtime), KEY, cluster.view(), stop
    )
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
    await run_repair(
        runtime, book, cluster.retries, cluster.child_versions(runtime), KEY, cluster.view(), stop
    )
    assert stop.waits == [300, 300, 300]
    assert cluster.writes[written:] == []


async def test_the_resync_recreates_a_child_lost_while_nobody_watched() -> None:
    clock, cluster = FakeClock(), FakeCluster()
    body = cluster.add_service("svc", SPEC)
    runtime, book = cluster.runtime(clock, resync_interval_seconds=60), cluster.book(clock)
    reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")
    del cluster.deployments[KEY]  # deleted by hand; the event's reconcile was lost
    del cluster.children[("Deployment", "ml", "svc")]
    await _resyncs(cluster, runtime, book, clock, 1)
    assert cluster.deployment(KEY) is not None


async def _resyncs(
    cluster: FakeCluster,
    runtime: Runtime,
    book: StatusBook,
    clock: FakeClock,
    rounds: int,
    children: ChildVersions | None = None,
) -> None:
    """`rounds` runs of the service's repair loop (the loop stops at the wait after them)."""
    versions = children if children is not None else cluster.child_versions(runtime)
    await run_repair(
        runtime, book, cluster.retries, versions, KEY, cluster.view(), StopAfter(clock, rounds + 1)
    )


def _digest(book: StatusBook, key: tuple[str, str] = KEY) -> str | None:
    """status.reconciledDigest as the operator last wrote it."""
    digest = book.get(key, None).get("reconciledDigest")
    return None if digest is None else str(digest)


def _child_reads(cluster: FakeCluster, since: int) -> list[tuple[str, ...]]:
    return [read for read in cluster.reads[since:] if read[0] == "get"]


def _edit(cluster: FakeCluster, kind: str, change: dict[str, Any]) -> None:
    """Someone else's write of a child: its spec changes, the API server counts it."""
    child = cluster.children[(kind, "ml", "svc")]
    child["spec"] = {**child["spec"], **change}
    cluster.last_version += 1
    child["metadata"]["resourceVersion"] = str(cluster.last_version)
    child["metadata"]["generation"] = child["metadata"].get("generation", 0) + 1


async def test_a_resync_that_finds_what_the_reconcile_left_reads_and_renders_no_child() -> None:
    """The create's reconcile leaves its digest in status; every resync after it compares (two
    Secret metadata reads and the shared lists) and stops there (drift.py)."""
    clock, cluster = FakeClock(), FakeCluster()
    spec = {**SPEC, "modelRepository": {"uri": "s3://m/t", "secretRef": {"name": "creds"}}}
    cluster.secrets[("ml", "creds")] = "7"
    body = cluster.add_service("svc", spec)
    runtime, book = cluster.runtime(clock, resync_interval_seconds=300), cluster.book(clock)
    reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")
    assert _digest(book) is not None
    assert cluster.service(KEY)["status"]["reconciledDigest"] == _digest(book)
    written, read = len(cluster.writes), len(cluster.reads)
    children = cluster.child_versions(runtime)
    stop = StopAfter(clock, 4)
    await run_repair(runtime, book, cluster.retries, children, KEY, cluster.view(), stop)
    assert stop.waits == [300, 300, 300, 300]
    assert _child_reads(cluster, read) == []
    assert {r[0] for r in cluster.reads[read:]} == {"get-metadata", "list"}
    assert cluster.writes[written:] == []


async def test_a_child_deleted_or_edited_by_hand_is_restored_at_the_next_resync() -> None:
    clock, cluster = FakeClock(), FakeCluster()
    body = cluster.add_service("svc", SPEC)
    runtime, book = cluster.runtime(clock, resync_interval_seconds=60), cluster.book(clock)
    reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")
    children = cluster.child_versions(runtime)
    del cluster.children[("Service", "ml", "svc")]
    _edit(cluster, "PodDisruptionBudget", {"maxUnavailable": 3})
    written = len(cluster.writes)
    await _resyncs(cluster, runtime, book, clock, 1, children)
    assert ("apply", "Service", "ml", "svc") in cluster.writes[written:]
    assert ("apply", "PodDisruptionBudget", "ml", "svc") in cluster.writes[written:]
    assert _digest(book) is not None  # and the next resync stops early
    read = len(cluster.reads)
    await _resyncs(cluster, runtime, book, clock, 1, children)
    assert _child_reads(cluster, read) == []


async def test_a_rotated_credentials_secret_rolls_the_pods_at_the_next_resync() -> None:
    clock, cluster = FakeClock(), FakeCluster()
    spec = {**SPEC, "modelRepository": {"uri": "s3://m/t", "secretRef": {"name": "creds"}}}
    cluster.secrets[("ml", "creds")] = "7"
    body = cluster.add_service("svc", spec)
    runtime, book = cluster.runtime(clock, resync_interval_seconds=60), cluster.book(clock)
    reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")
    cluster.secrets[("ml", "creds")] = "8"
    await _resyncs(cluster, runtime, book, clock, 1)
    deployment = cluster.deployment(KEY)
    assert deployment is not None
    assert "8" in deployment["spec"]["template"]["metadata"]["annotations"].values()


def test_a_failed_or_scaling_reconcile_leaves_no_fingerprint() -> None:
    """The next resync after either is a full one: a failure may have left anything, and the
    scale subresource's answer says nothing of the Deployment's generation. The full resync
    after the scale leaves one in memory; the digest only rides on a status write, so that
    reconcile, which changes nothing, writes none for it."""
    clock, cluster = FakeClock(), FakeCluster()
    body = cluster.add_service("svc", SPEC)
    runtime, book = cluster.runtime(clock), cluster.book(clock)
    cluster.refuse["Service"] = ApiException(status=422, reason="Invalid")
    reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")
    assert cluster.retries.pending(KEY) is not None
    assert (cluster.retries.fingerprint(KEY), _digest(book)) == (None, None)

    cluster.refuse.clear()
    scaled = cluster.add_service("scaled", {**SPEC, "replicas": 3})
    reconcile(runtime, book, cluster.retries, cluster.view(), scaled, "create")
    assert ("scale", "Deployment", "ml", "scaled", "3") in cluster.writes
    assert cluster.retries.fingerprint(("ml", "scaled")) is None
    written = len(cluster.writes)
    reconcile(runtime, book, cluster.retries, cluster.view(), scaled, "resync")
    assert cluster.retries.fingerprint(("ml", "scaled")) is not None
    assert cluster.writes[written:] == []
    assert _digest(book, ("ml", "scaled")) is None


def test_a_failed_reconcile_after_a_healthy_one_takes_its_digest_away() -> None:
    clock, cluster = FakeClock(), FakeCluster()
    body = cluster.add_service("svc", SPEC)
    runtime, book = cluster.runtime(clock), cluster.book(clock)
    reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")
    assert _digest(book) is not None
    del cluster.children[("Service", "ml", "svc")]
    cluster.refuse["Service"] = ApiException(status=422, reason="Invalid")
    reconcile(runtime, book, cluster.retries, cluster.view(), cluster.service(KEY), "resync")
    assert "reconciledDigest" not in cluster.service(KEY)["status"]


def test_a_restarted_operator_resumes_a_service_its_digest_vouches_for_without_a_write() -> None:
    """After a restart nothing is in memory: the resume compares the digest the service
    carries in status, reads no child, renders nothing and writes nothing; a child changed
    while the operator was down makes the resume a full reconcile that restores it."""
    clock, cluster = FakeClock(), FakeCluster()
    body = cluster.add_service("svc", SPEC)
    runtime = cluster.runtime(clock)
    reconcile(runtime, cluster.book(clock), Retries(), cluster.view(), body, "create")
    before = cluster.service(KEY)["status"]["reconciledDigest"]

    restarted, retries = cluster.book(clock), Retries()  # a new process remembers nothing
    children = cluster.child_versions(runtime)
    written, read = len(cluster.writes), len(cluster.reads)
    resync(runtime, restarted, retries, cluster.view(), children, cluster.service(KEY), "resume")
    assert cluster.writes[written:] == []
    assert _child_reads(cluster, read) == []

    _edit(cluster, "PodDisruptionBudget", {"maxUnavailable": 3})
    restarted, retries = cluster.book(clock), Retries()
    children = cluster.child_versions(runtime)
    resync(runtime, restarted, retries, cluster.view(), children, cluster.service(KEY), "resume")
    assert ("apply", "PodDisruptionBudget", "ml", "svc") in cluster.writes[written:]
    assert retries.fingerprint(KEY) not in (None, before)
    # The repair changed no status, so no write carried the new digest: the one in status,
    # now stale, makes the next restart's resume a full reconcile again (never a wrong skip).
    assert cluster.service(KEY)["status"]["reconciledDigest"] == before
