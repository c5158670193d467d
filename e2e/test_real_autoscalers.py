"""HPA and KEDA modes acted on by the real consumers (issue 15): the HPA controller of
kube-controller-manager reading prometheus-adapter's custom metrics, and KEDA reading
Prometheus, where Prometheus scrapes the emulated Triton pods of the data plane.

What the operator renders (the HPA, the ScaledObject, the chart's adapter rules and
PodMonitor) is used as is; the peers run on loopback beside this session's cluster
(`LocalCluster.start_peers()`, e2e/cluster/peers.py) for this module only, and are removed
again afterwards (APIServices, and KEDA's CRDs unless they were there before).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.cluster import LocalCluster
from e2e.cluster.peers import Peers
from e2e.dataplane import (
    AdjustableRate,
    BackgroundLoad,
    ClusterView,
    autoscaled_service,
    data_plane_turn,
)
from e2e.harness import OperatorProcess, Tools
from e2e.polling import WaitTimeout, wait_until
from e2e.tritonsim.podrunner import PodRunner, PodSettings, Server

#: The HPA controller's identity (kube-controller-manager, --use-service-account-credentials).
HPA_CONTROLLER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"

pytestmark = pytest.mark.kwok_only


@pytest.fixture(scope="module")
def turn(podrunner: PodRunner) -> Iterator[None]:
    """This machine's data-plane lock for the module (see `data_plane_turn`)."""
    with data_plane_turn("pytest e2e/test_real_autoscalers.py"):
        yield
        with contextlib.suppress(WaitTimeout):
            wait_until(lambda: not podrunner.pods(), 60, "the data-plane pods to go", interval=0.5)


@pytest.fixture(scope="module")
def peers(
    cluster: LocalCluster | None, installed: Tools, operator: OperatorProcess
) -> Iterator[Peers]:
    """Prometheus, prometheus-adapter and KEDA on loopback, and the operator pointed at this
    Prometheus (KEDA mode copies the address into the ScaledObject's triggers)."""
    if cluster is None:
        pytest.skip("the peers run beside the local KWOK cluster")
    started = cluster.start_peers()
    previous = dict(operator.env)
    operator.env["TRITONOP_PROMETHEUS_URL"] = started.prometheus_url
    operator.restart()
    try:
        yield started
    finally:
        operator.env.clear()
        operator.env.update(previous)
        started.stop()
        operator.restart()


def hpa_condition(hpa: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for item in ((hpa or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return {}


def delegated(name: str, mode: str) -> dict[str, Any]:
    """The data plane's autoscaled service with `mode` instead of Operator (no panic window:
    it is the operator's own policy's)."""
    body = autoscaled_service(name, min_replicas=1, max_replicas=4, scale_down_window_s=30)
    autoscaling = body["spec"]["autoscaling"]
    autoscaling["mode"] = mode
    autoscaling.pop("panic")
    return body


def deploy_delegated(
    tools: Tools, podrunner: PodRunner, namespace: str, name: str, mode: str
) -> None:
    """Apply `delegated(name, mode)` with its pods served by 50 ms emulators."""
    podrunner.configure(
        PodSettings(server=Server.EMULATOR, service_time_ms=50.0), namespace=namespace, service=name
    )
    tools.apply([delegated(name, mode)], namespace)


def scale_writes_by(cluster: LocalCluster, user: str, namespace: str, name: str) -> list[Any]:
    """`user`'s writes to the Deployment's scale subresource, from the audit log."""
    return [
        e
        for e in cluster.audit_events(user=user, verbs=("update", "patch"))
        if e["objectRef"].get("resource") == "deployments"
        and e["objectRef"].get("subresource") == "scale"
        and e["objectRef"].get("namespace") == namespace
        and e["objectRef"].get("name") == name
    ]


def load_until_scaled(
    cluster: LocalCluster,
    tools: Tools,
    namespace: str,
    name: str,
    hpa_name: str,
) -> tuple[dict[str, Any], int]:
    """Offer 35 requests/s (one pod serves about 20) until the HPA has scaled the Deployment
    up; returns the HPA and the Deployment's replicas then. Bounded: 150 s, 6000 requests."""
    rate = AdjustableRate(35.0, 35.0)
    load = BackgroundLoad(
        cluster.kubeconfig, namespace, name, rate, duration_s=150, max_requests=6000
    )
    load.start()
    try:

        def scaled() -> tuple[dict[str, Any], int] | None:
            deployment = tools.get("deployment", name, namespace) or {}
            replicas = int((deployment.get("spec") or {}).get("replicas") or 0)
            hpa = tools.get("hpa", hpa_name, namespace)
            return (hpa or {}, replicas) if replicas > 1 else None

        return wait_until(scaled, 140, f"the HPA {hpa_name} to scale {name} up", interval=1.0)
    finally:
        result = load.wait(timeout=60)
        assert result.records, "the load sent no request"


def test_hpa_mode_is_driven_by_the_real_hpa_controller_through_prometheus_adapter(
    cluster: LocalCluster,
    peers: Peers,
    installed: Tools,
    podrunner: PodRunner,
    turn: None,
    dataplane_namespace: str,
) -> None:
    tools, namespace, name = installed, dataplane_namespace, "ranker"
    deploy_delegated(tools, podrunner, namespace, name, "HPA")

    # Prometheus scrapes the pod through the chart's PodMonitor relabelling ...
    series = wait_until(
        lambda: peers.query(
            f'nv_inference_pending_request_count{{namespace="{namespace}",pod=~"{name}-.+"}}'
        ),
        90,
        "Prometheus to scrape the service's pod",
        interval=1.0,
    )
    assert {s["metric"]["inferenceservice"] for s in series} == {name}, series
    # ... the adapter serves the chart's rules as custom metrics (once it has re-listed the
    # series, every ADAPTER_RELIST_INTERVAL) ...
    path = f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/*/triton_queue_depth"
    listed = wait_until(
        lambda: (
            json.loads(r.stdout)
            if (r := tools.kubectl("get", "--raw", path, check=False)).returncode == 0
            else None
        ),
        60,
        "prometheus-adapter to serve triton_queue_depth",
        interval=1.0,
    )
    assert [item["describedObject"]["kind"] for item in listed["items"]] == ["Pod"], listed
    # ... and the real HPA controller finds them valid.
    hpa = wait_until(
        lambda: (
            h
            if hpa_condition(h := tools.get("hpa", name, namespace), "ScalingActive").get("status")
            == "True"
            else None
        ),
        120,
        "the HPA's ScalingActive=True",
        interval=1.0,
    )
    assert hpa_condition(hpa, "ScalingActive")["reason"] == "ValidMetricFound", hpa["status"]
    metrics = hpa["status"].get("currentMetrics") or []
    assert [m["pods"]["metric"]["name"] for m in metrics] == ["triton_queue_depth"], metrics

    hpa, replicas = load_until_scaled(cluster, tools, namespace, name, name)
    assert 1 < replicas <= 4
    assert hpa["status"]["desiredReplicas"] > 1, hpa["status"]
    writes = scale_writes_by(cluster, HPA_CONTROLLER, namespace, name)
    assert writes, "no scale write by the HPA controller in the audit log"
    view = ClusterView(cluster.kubeconfig, cluster.audit_log)
    assert view.scale_events(namespace, name) == [], "the operator announced a scale of its own"


def test_keda_mode_is_driven_by_real_keda_through_prometheus(
    cluster: LocalCluster,
    peers: Peers,
    installed: Tools,
    podrunner: PodRunner,
    turn: None,
    dataplane_namespace: str,
) -> None:
    tools, namespace, name = installed, dataplane_namespace, "batch"
    deploy_delegated(tools, podrunner, namespace, name, "KEDA")

    def ready() -> dict[str, Any] | None:
        scaled = tools.get("scaledobject", name, namespace)
        return scaled if hpa_condition(scaled, "Ready").get("status") == "True" else None

    scaled = wait_until(ready, 120, "the ScaledObject's Ready=True", interval=1.0)
    triggers = scaled["spec"]["triggers"]
    assert {t["metadata"]["serverAddress"] for t in triggers} == {peers.prometheus_url}
    hpa_name = f"keda-hpa-{name}"
    hpa = wait_until(
        lambda: (
            h
            if hpa_condition(h := tools.get("hpa", hpa_name, namespace), "ScalingActive").get(
                "status"
            )
            == "True"
            else None
        ),
        120,
        "KEDA's HPA ScalingActive=True",
        interval=1.0,
    )
    assert hpa["spec"]["scaleTargetRef"]["name"] == name
    assert {m["type"] for m in hpa["spec"]["metrics"]} == {"External"}, hpa["spec"]["metrics"]

    hpa, replicas = load_until_scaled(cluster, tools, namespace, name, hpa_name)
    assert 1 < replicas <= 4
    assert hpa["status"]["desiredReplicas"] > 1, hpa["status"]
    assert scale_writes_by(cluster, HPA_CONTROLLER, namespace, name), (
        "no scale write by the HPA controller in the audit log"
    )
