"""HPA and KEDA modes on the real API server: the objects are accepted, the Deployment's replicas
are left to them, and a missing KEDA is a condition, not a crash."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from e2e.harness import OPERATOR_USER, WRITE_VERBS, OperatorProcess, Tools, wait_established
from e2e.polling import wait_until
from e2e.services import condition, example, wait_condition

KEDA_VERSION = "v2.21.0"


def keda_crd() -> Path:
    """KEDA's ScaledObject CRD as KEDA ships it in its Go module (fetched from the module proxy)."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/kedacore/keda/v2@{KEDA_VERSION}"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    return (
        Path(json.loads(out.stdout)["Dir"])
        / "config"
        / "crd"
        / "bases"
        / "keda.sh_scaledobjects.yaml"
    )


def replicas_managers(deployment: dict[str, Any]) -> set[str]:
    """Field managers that own the Deployment's spec.replicas."""
    owners = set()
    for entry in deployment["metadata"].get("managedFields") or []:
        if '"f:replicas"' in json.dumps((entry.get("fieldsV1") or {}).get("f:spec") or {}):
            owners.add(f"{entry['manager']}/{entry['operation']}/{entry.get('subresource', '')}")
    return owners


def test_hpa_mode_renders_an_hpa_and_leaves_replicas_alone(
    cluster: Any, operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    tools = installed
    tools.apply([example("hpa.yaml", "ranker")], namespace)
    obj = wait_condition(
        tools, namespace, "ranker", "ScalingActive", "True", "DelegatedToHPA", timeout=60
    )
    hpa = wait_until(lambda: tools.get("hpa", "ranker", namespace), 30, "the HPA")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "ranker",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]] == ["triton_queue_depth"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]

    deployment = tools.get("deployment", "ranker", namespace)
    assert deployment is not None and deployment["metadata"]["managedFields"]
    assert not any(m.startswith("tritonop/") for m in replicas_managers(deployment)), (
        replicas_managers(deployment)
    )
    if cluster is not None:
        scale_writes = [
            e
            for e in cluster.audit_events(user=OPERATOR_USER, verbs=WRITE_VERBS)
            if e["objectRef"].get("resource") == "deployments"
            and e["objectRef"].get("name") == "ranker"
            and e["objectRef"].get("namespace") == namespace
            and e["objectRef"].get("subresource") == "scale"
        ]
        assert scale_writes == []

    # An objective is the operator's own policy's: in HPA mode it is ignored, and says so.
    body = example("hpa.yaml", "ranker")
    body["spec"]["autoscaling"]["objective"] = {"latencyMs": 500, "attainment": 0.99}
    tools.apply([body], namespace)
    obj = wait_condition(
        tools, namespace, "ranker", "ScalingActive", "True", "ObjectiveIgnored", timeout=60
    )
    assert "remove the objective" in condition(obj, "ScalingActive")["message"]
    ignored = wait_until(
        lambda: [e for e in tools.items("events", namespace) if e["reason"] == "ObjectiveIgnored"],
        30,
        "the ObjectiveIgnored Event",
    )
    assert len(ignored) == 1 and ignored[0]["type"] == "Warning", ignored
    assert tools.get("hpa", "ranker", namespace) is not None  # still scaling, on the targets

    # Leaving HPA mode removes the HPA the operator created.
    body = example("hpa.yaml", "ranker")
    body["spec"]["autoscaling"] = {"mode": "None"}
    tools.apply([body], namespace)
    wait_until(lambda: tools.get("hpa", "ranker", namespace) is None, 60, "the HPA to be removed")


@pytest.mark.kwok_only
def test_keda_mode_without_and_with_kedas_crd(
    operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    tools = installed
    previous = dict(operator.env)
    operator.env["TRITONOP_PROMETHEUS_URL"] = "http://127.0.0.1:9"  # never dialed in KEDA mode
    operator.restart()
    try:
        tools.kubectl(
            "create",
            "secret",
            "generic",
            "azure-credentials",
            "-n",
            namespace,
            "--from-literal=AZURE_STORAGE_KEY=x",
        )
        tools.apply([example("keda.yaml", "batch")], namespace)
        obj = wait_condition(
            tools, namespace, "batch", "ScalingActive", "False", "KEDANotInstalled", timeout=60
        )
        assert "install KEDA" in condition(obj, "ScalingActive")["message"]
        assert (
            tools.get("deployment", "batch", namespace) is not None
        )  # the service itself still runs

        tools.kubectl("apply", "--server-side", "-f", str(keda_crd()))
        wait_established(tools, "scaledobjects.keda.sh")
        scaled = wait_until(
            lambda: tools.get("scaledobject", "batch", namespace), 60, "the ScaledObject"
        )
        assert scaled["spec"]["scaleTargetRef"]["name"] == "batch"
        assert scaled["spec"]["minReplicaCount"] == 0 and scaled["spec"]["maxReplicaCount"] == 4
        triggers = scaled["spec"]["triggers"]
        assert {t["type"] for t in triggers} == {"prometheus"}
        assert all(t["metadata"]["serverAddress"] == "http://127.0.0.1:9" for t in triggers)
        assert any("nv_inference_pending_request_count" in t["metadata"]["query"] for t in triggers)
        wait_condition(
            tools, namespace, "batch", "ScalingActive", "True", "DelegatedToKEDA", timeout=60
        )
    finally:
        operator.env.clear()
        operator.env.update(previous)
        operator.restart()
