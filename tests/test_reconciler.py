"""The handler bodies, run directly on an in-memory cluster: what each event writes, and that an
event which changes nothing writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from fakes import FakeClock, FakeCluster, starting_pod
from tritonop import conditions as c
from tritonop.api.validation import SpecError
from tritonop.conditions import find_condition
from tritonop.k8s import KEDA_CRD
from tritonop.reconciler import (
    NodeCapacity,
    forget,
    keda_crd_changed,
    nodes_changed,
    reconcile,
    refresh_workload,
    workload_changed,
)

KEY = ("ml", "svc")
SECRET_VERSION = "tritonop.io/secret-version"
H100 = "NVIDIA-H100-80GB-HBM3"


def gpu_spec(**extra: Any) -> dict[str, Any]:
    return {
        "modelRepository": {"uri": "s3://m/t"},
        "gpu": {"count": 1, "products": [H100]},
        "replicas": 2,
        **extra,
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cluster() -> FakeCluster:
    cluster = FakeCluster()
    cluster.add_node("h100", gpus=8, product=H100)
    cluster.add_node("cpu")
    return cluster


def run(cluster: FakeCluster, clock: FakeClock, body: dict[str, Any], **settings: Any) -> Any:
    book = cluster.book(clock)
    reconcile(
        cluster.runtime(clock, **settings), book, cluster.retries, cluster.view(), body, "create"
    )
    return book


def test_first_reconcile_creates_children_scales_and_reports(
    cluster: FakeCluster, clock: FakeClock
) -> None:
    body = cluster.add_service("svc", gpu_spec())
    run(cluster, clock, body)
    writes = [w[:2] for w in cluster.writes if w[0] in ("create", "apply")]
    assert writes == [  # the admin Secret is created: a racing reconcile's key is kept
        ("create", "Secret"),
        *(("apply", kind) for kind in ("NetworkPolicy", "Deployment", "Service")),
        ("apply", "PodDisruptionBudget"),
    ]
    assert ("scale", "Deployment", "ml", "svc", "2") in cluster.writes
    status = cluster.service(KEY)["status"]
    assert status["placement"]["mode"] == "GPU"
    assert status["observedGeneration"] == 1
    assert find_condition(status, c.READY)["status"] == "False"
    assert [e.reason for e in cluster.events] == [c.PLACED_ON_GPU]


def test_a_reconcile_that_observes_nothing_new_writes_nothing(
    cluster: FakeCluster, clock: FakeClock
) -> None:
    body = cluster.add_service("svc", gpu_spec())
    book = cluster.book(clock)
    runtime = cluster.runtime(clock)
    reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")
    before = len(cluster.writes)
    clock.advance(300)
    reconcile(runtime, book, cluster.retries, cluster.view(), cluster.service(KEY), "resume")
    assert cluster.writes[before:] == []


def test_a_missing_secret_is_ready_false_with_how_to_fix(
    cluster: FakeCluster, clock: FakeClock
) -> None:
    spec = gpu_spec(modelRepository={"uri": "s3://m/t", "secretRef": {"name": "creds"}})
    body = cluster.add_service("svc", spec)
    run(cluster, clock, body)
    ready = find_condition(cluster.service(KEY)["status"], c.READY)
    assert (ready["status"], ready["reason"]) == ("False", c.SECRET_NOT_FOUND)
    assert "create it or fix the name" in ready["message"]
    assert c.SECRET_NOT_FOUND in [e.reason for e in cluster.events]


def test_an_invalid_spec_is_reported_once_and_raised(
    cluster: FakeCluster, clock: FakeClock
) -> None:
    body = cluster.add_service(
        "svc", {"modelRepository": {"uri": "s3://m/t"}, "gpu": {"count": -2}}
    )
    book = cluster.book(clock)
    runtime = cluster.runtime(clock)
    with pytest.raises(SpecError) as raised:
        reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")
    assert any("spec.gpu.count" in problem for problem in raised.value.problems)
    ready = find_condition(cluster.service(KEY)["status"], c.READY)
    assert (ready["status"], ready["reason"]) == ("False", c.INVALID_SPEC)
    with pytest.raises(SpecError):
        reconcile(runtime, book, cluster.retries, cluster.view(), cluster.service(KEY), "resume")
    assert [e.reason for e in cluster.events] == [c.INVALID_SPEC]
    assert [w[0] for w in cluster.writes] == ["status", "event"]


def test_a_namespace_being_deleted_stops_the_reconcile_quietly(
    cluster: FakeCluster, clock: FakeClock
) -> None:
    body = cluster.add_service("svc", gpu_spec())
    refused = ApiException(status=403, reason="Forbidden")
    refused.body = (
        'namespaces "ml" is forbidden: unable to create new content because it is being terminated'
    )
    cluster.fail_apply = refused
    run(cluster, clock, body)  # no exception
    assert [w for w in cluster.writes if w[0] != "refused"] == []
    assert cluster.retries.pending(KEY) is None  # nothing to retry: the namespace is going


def test_a_failing_api_server_is_retried_with_bounded_backoff_not_raised(
    cluster: FakeCluster, clock: FakeClock
) -> None:
    body = cluster.add_service("svc", gpu_spec())
    cluster.fail_apply = ApiException(status=500, reason="Internal")
    book, runtime = cluster.book(clock), cluster.runtime(clock, resync_interval_seconds=60)
    delays = []
    for _ in range(6):
        reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")  # no exception
        failure = cluster.retries.pending(KEY)
        assert failure is not None
        delays.append(failure.due - clock.monotonic())
    assert delays == [5, 10, 20, 40, 60, 60]  # doubling, bounded by the resync interval
    assert "status" not in [w[0] for w in cluster.writes]  # a 5xx says nothing about the spec
    cluster.fail_apply = None
    reconcile(runtime, book, cluster.retries, cluster.view(), body, "retry")
    assert cluster.retries.pending(KEY) is None
    assert find_condition(cluster.service(KEY)["status"], c.PLACED)["status"] == "True"


def test_node_events_reconcile_only_services_whose_placement_changes(clock: FakeClock) -> None:
    cluster = FakeCluster()
    cluster.add_node("cpu")
    body = cluster.add_service(
        "svc", gpu_spec(gpu={"count": 1, "products": [H100], "fallback": "CPU"})
    )
    book, runtime, capacity = cluster.book(clock), cluster.runtime(clock), NodeCapacity()
    reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")
    assert cluster.service(KEY)["status"]["placement"]["mode"] == "CPUFallback"
    before = len(cluster.writes)
    nodes_changed(
        runtime, book, cluster.retries, cluster.view(), capacity
    )  # first sight: same placement
    nodes_changed(
        runtime, book, cluster.retries, cluster.view(), capacity
    )  # unchanged capacity: skipped
    assert cluster.writes[before:] == []
    cluster.add_node("h100", gpus=8, product=H100)
    nodes_changed(runtime, book, cluster.retries, cluster.view(), capacity)
    assert cluster.service(KEY)["status"]["placement"]["mode"] == "GPU"
    assert ("apply", "Deployment", "ml", "svc") in cluster.writes[before:]


def test_a_rotated_secret_rolls_the_pods_on_its_resource_version(
    cluster: FakeCluster, clock: FakeClock
) -> None:
    uses = gpu_spec(modelRepository={"uri": "s3://m/t", "secretRef": {"name": "creds"}})
    body = cluster.add_service("svc", uses)
    cluster.secrets[("ml", "creds")] = "41"
    runtime, book = cluster.runtime(clock), cluster.book(clock)
    reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")

    def version() -> str:
        deployment = cluster.deployment(KEY)
        assert deployment is not None
        return str(deployment["spec"]["template"]["metadata"]["annotations"][SECRET_VERSION])

    assert version() == "41"
    cluster.secrets[("ml", "creds")] = "57"  # rotated: a new resourceVersion
    reconcile(runtime, book, cluster.retries, cluster.view(), cluster.service(KEY), "resync")
    assert version() == "57"


def test_keda_appearing_reconciles_keda_mode_services_only(
    cluster: FakeCluster, clock: FakeClock
) -> None:
    keda = gpu_spec(autoscaling={"mode": "KEDA", "targets": {"queueDepth": 4}})
    cluster.add_service("svc", keda)
    cluster.add_service("plain", gpu_spec())
    runtime = cluster.runtime(clock, prometheus_url="http://prom:9090")
    book = cluster.book(clock)
    keda_crd_changed(runtime, book, cluster.retries, cluster.view())
    assert find_condition(cluster.service(KEY)["status"], c.SCALING_ACTIVE)["reason"] == (
        c.KEDA_NOT_INSTALLED
    )
    cluster.crds.add(KEDA_CRD)
    keda_crd_changed(runtime, book, cluster.retries, cluster.view())
    assert ("apply", "ScaledObject", "ml", "svc") in cluster.writes
    assert not any(w[3] == "plain" for w in cluster.writes)


def test_the_deployment_watch_mirrors_state_and_recreates_a_deleted_deployment(
    cluster: FakeCluster, clock: FakeClock
) -> None:
    body = cluster.add_service("svc", gpu_spec())
    runtime, book = cluster.runtime(clock), cluster.book(clock)
    refresh_workload(book, cluster.view(), KEY)  # not reconciled yet: the reconcile writes first
    assert cluster.writes == []
    reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")
    cluster.roll_out(KEY)
    workload_changed(runtime, book, cluster.retries, cluster.view(), KEY, deleted=False)
    status = cluster.service(KEY)["status"]
    assert (status["readyReplicas"], status["replicaSummary"]) == (2, "2/2")
    assert find_condition(status, c.READY)["status"] == "True"

    cluster.set_pods(KEY, starting_pod("svc-1"))
    del cluster.deployments[KEY]
    del cluster.children[("Deployment", "ml", "svc")]
    before = len(cluster.writes)
    workload_changed(runtime, book, cluster.retries, cluster.view(), KEY, deleted=True)
    assert ("apply", "Deployment", "ml", "svc") in cluster.writes[before:]
    assert ("scale", "Deployment", "ml", "svc", "2") in cluster.writes[before:]


def test_a_deployment_removed_with_its_service_is_not_recreated(
    cluster: FakeCluster, clock: FakeClock
) -> None:
    body = cluster.add_service("svc", gpu_spec())
    runtime, book = cluster.runtime(clock), cluster.book(clock)
    reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    del cluster.deployments[KEY]
    before = len(cluster.writes)
    workload_changed(runtime, book, cluster.retries, cluster.view(), KEY, deleted=True)
    assert not any(w[0] in ("create", "apply") for w in cluster.writes[before:])


def test_forget_drops_the_remembered_status(cluster: FakeCluster, clock: FakeClock) -> None:
    body = cluster.add_service("svc", gpu_spec())
    book = run(cluster, clock, body)
    assert book.get(KEY, None)
    forget(book, cluster.retries, KEY)
    assert book.get(KEY, None) == {}


def test_a_new_service_that_wants_one_replica_is_not_scaled() -> None:
    """A Deployment created without spec.replicas runs one: writing 1 again is a wasted write
    per service (1,000 of them when 1,000 services are created)."""
    clock = FakeClock()
    cluster = FakeCluster()
    cluster.add_node("cpu")
    body = cluster.add_service("svc", {"modelRepository": {"uri": "s3://m/t"}, "gpu": {"count": 0}})
    reconcile(
        cluster.runtime(clock), cluster.book(clock), cluster.retries, cluster.view(), body, "create"
    )
    assert [w[0] for w in cluster.writes if w[0] == "scale"] == []
    assert ("apply", "Deployment", "ml", "svc") in cluster.writes


# ---------------------------------------------------------------- ownership and refusals


def foreign_service(namespace: str = "ml", name: str = "svc") -> dict[str, Any]:
    """A user's own Service that happens to have the InferenceService's name."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "uid": "user-uid"},
        "spec": {"selector": {"app": "checkout"}, "ports": [{"port": 443}]},
    }


def test_a_name_taken_by_someone_elses_object_writes_nothing_and_says_so_once(
    cluster: FakeCluster, clock: FakeClock
) -> None:
    user = foreign_service()
    cluster.children[("Service", "ml", "svc")] = user
    cluster.add_service("svc", gpu_spec())
    runtime, book = cluster.runtime(clock), cluster.book(clock)
    for trigger in ("create", "retry", "retry"):
        reconcile(runtime, book, cluster.retries, cluster.view(), cluster.service(KEY), trigger)
    assert [w[0] for w in cluster.writes] == ["status", "event", "event"]  # no child written
    assert cluster.children[("Service", "ml", "svc")] is user
    ready = find_condition(cluster.service(KEY)["status"], c.READY)
    assert (ready["status"], ready["reason"]) == ("False", c.RESOURCE_EXISTS)
    assert (
        "Service svc already exists and this InferenceService does not control it"
        in (ready["message"])
    )
    assert [e.reason for e in cluster.events] == [c.PLACED_ON_GPU, c.RESOURCE_EXISTS]
    assert cluster.retries.pending(KEY) is not None

    del cluster.children[("Service", "ml", "svc")]  # the conflict goes away: it heals
    reconcile(runtime, book, cluster.retries, cluster.view(), cluster.service(KEY), "retry")
    assert (
        cluster.children[("Service", "ml", "svc")]["spec"]["selector"]["app.kubernetes.io/instance"]
        == "svc"
    )
    assert cluster.retries.pending(KEY) is None
    assert find_condition(cluster.service(KEY)["status"], c.READY)["reason"] != c.RESOURCE_EXISTS


def test_a_child_of_another_inference_service_is_not_taken_over(
    cluster: FakeCluster, clock: FakeClock
) -> None:
    earlier = foreign_service()
    earlier["metadata"]["ownerReferences"] = [
        {
            "kind": "InferenceService",
            "name": "svc",
            "uid": "uid-of-an-earlier-svc",
            "controller": True,
        }
    ]
    cluster.children[("Service", "ml", "svc")] = earlier
    run(cluster, clock, cluster.add_service("svc", gpu_spec()))
    ready = find_condition(cluster.service(KEY)["status"], c.READY)
    assert ready["reason"] == c.RESOURCE_EXISTS
    assert "controlled by InferenceService svc (uid uid-of-an-earlier-svc)" in ready["message"]
    assert not [w for w in cluster.writes if w[0] in ("create", "apply")]


def test_a_refused_child_is_apply_failed_with_the_servers_message_once(
    cluster: FakeCluster, clock: FakeClock
) -> None:
    invalid = ApiException(status=422, reason="Unprocessable Entity")
    invalid.body = '{"kind": "Status", "message": "Deployment.apps \\"svc\\" is invalid: spec.template.spec.nodeSelector: Invalid value"}'
    cluster.refuse["Deployment"] = invalid
    cluster.add_service("svc", gpu_spec())
    runtime, book = cluster.runtime(clock), cluster.book(clock)
    for trigger in ("create", "retry", "retry"):
        reconcile(runtime, book, cluster.retries, cluster.view(), cluster.service(KEY), trigger)
    ready = find_condition(cluster.service(KEY)["status"], c.READY)
    assert (ready["status"], ready["reason"]) == ("False", c.APPLY_FAILED)
    assert 'Deployment svc: Deployment.apps "svc" is invalid' in ready["message"]
    assert [e.reason for e in cluster.events].count(c.APPLY_FAILED) == 1
    applied = {w[1] for w in cluster.writes if w[0] in ("create", "apply")}
    assert {"Service", "PodDisruptionBudget", "Secret"} <= applied  # the others still go in
    assert not [w for w in cluster.writes if w[0] == "scale"]  # no Deployment to scale
    assert [w[0] for w in cluster.writes].count("refused") == 3  # one per attempt

    del cluster.refuse["Deployment"]  # the cause is fixed: it heals
    reconcile(runtime, book, cluster.retries, cluster.view(), cluster.service(KEY), "retry")
    assert find_condition(cluster.service(KEY)["status"], c.READY)["reason"] != c.APPLY_FAILED
    assert cluster.retries.pending(KEY) is None


def test_node_events_leave_services_not_reconciled_yet_to_their_create_handler(
    clock: FakeClock,
) -> None:
    cluster = FakeCluster()
    cluster.add_node("cpu")
    cluster.add_service("svc", gpu_spec(gpu={"count": 1, "products": [H100], "fallback": "CPU"}))
    book, runtime, capacity = cluster.book(clock), cluster.runtime(clock), NodeCapacity()
    cluster.add_node("h100", gpus=8, product=H100)
    nodes_changed(runtime, book, cluster.retries, cluster.view(), capacity)
    assert cluster.writes == []  # kopf's queued create handler places it: no second reconcile


def test_one_failing_service_does_not_keep_others_from_moving(clock: FakeClock) -> None:
    cluster = FakeCluster()
    cluster.add_node("cpu")
    fallback = gpu_spec(gpu={"count": 1, "products": [H100], "fallback": "CPU"})
    broken = cluster.add_service("broken", fallback)
    healthy = cluster.add_service("healthy", fallback)
    runtime, book, capacity = cluster.runtime(clock), cluster.book(clock), NodeCapacity()
    for body in (broken, healthy):
        reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")
    nodes_changed(runtime, book, cluster.retries, cluster.view(), capacity)
    cluster.fail_apply = None
    failing = ApiException(status=500, reason="Internal")

    original_apply = cluster.apply

    def apply(desired: dict[str, Any], live: Any) -> dict[str, Any] | None:
        if desired["metadata"]["name"].startswith("broken"):
            raise failing
        return original_apply(desired, live)

    cluster.apply = apply  # type: ignore[method-assign]
    cluster.add_node("h100", gpus=8, product=H100)
    nodes_changed(runtime, book, cluster.retries, cluster.view(), capacity)
    assert cluster.service(("ml", "healthy"))["status"]["placement"]["mode"] == "GPU"
    assert cluster.retries.pending(("ml", "broken")) is not None
    assert cluster.retries.pending(("ml", "healthy")) is None


def test_a_deployment_with_our_labels_but_another_controller_is_not_ours(
    cluster: FakeCluster, clock: FakeClock
) -> None:
    """The Deployment index selects by the operator's labels, which anyone can set: only the
    controller's uid makes a Deployment the service's (its replicas are read and scaled)."""
    impostor = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "svc",
            "namespace": "ml",
            "labels": {"app.kubernetes.io/managed-by": "tritonop"},
        },
        "spec": {"replicas": 7},
    }
    cluster.deployments[KEY] = [impostor]
    cluster.children[("Deployment", "ml", "svc")] = impostor
    body = cluster.add_service("svc", gpu_spec())
    assert cluster.view().deployment(KEY) is None
    assert not cluster.view().workload(KEY).exists
    run(cluster, clock, body)
    ready = find_condition(cluster.service(KEY)["status"], c.READY)
    assert ready["reason"] == c.RESOURCE_EXISTS and "it has no controller" in ready["message"]
    assert impostor["spec"] == {"replicas": 7}
    assert not [w for w in cluster.writes if w[0] in ("apply", "scale")]


def test_a_mode_change_deletes_the_old_autoscaler_and_a_new_service_reads_none(
    cluster: FakeCluster, clock: FakeClock
) -> None:
    """A new service cannot own an autoscaler of another mode, so its reconcile reads none
    (two reads saved per new service); after a spec change the one it owned is deleted."""
    hpa = {"mode": "HPA", "minReplicas": 1, "maxReplicas": 3, "targets": {"queueDepth": 4}}
    body = cluster.add_service("svc", gpu_spec(autoscaling=hpa))
    book = run(cluster, clock, body)
    stale_reads = [r for r in cluster.reads if r[1] in ("ScaledObject", "HorizontalPodAutoscaler")]
    assert stale_reads == [("get", "HorizontalPodAutoscaler", "ml", "svc")]  # its own, to apply
    assert ("apply", "HorizontalPodAutoscaler", "ml", "svc") in cluster.writes

    body["spec"].pop("autoscaling")
    body["metadata"]["generation"] = 2
    reconcile(cluster.runtime(clock), book, cluster.retries, cluster.view(), body, "update")
    assert ("delete", "HorizontalPodAutoscaler", "ml", "svc") in cluster.writes
    assert ("HorizontalPodAutoscaler", "ml", "svc") not in cluster.children
