"""The operator against a real API server, controller-manager and scheduler (KWOK nodes).

Each test asserts what the API server and the scheduler actually did: objects, owner references,
the nodes pods were bound to, conditions, events and what `kubectl get tis` prints.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from e2e.harness import OperatorProcess, Tools
from e2e.polling import wait_until
from e2e.services import (
    condition,
    event_reasons,
    example,
    pods,
    rotate_and_wait_for_the_roll,
    running_pods,
    service,
    wait_condition,
)

H100_NODES = {"gpu-h100-a", "gpu-h100-b"}
CPU_NODES = {"cpu-a", "cpu-b"}


def owned_children(tools: Tools, namespace: str, name: str, uid: str) -> dict[str, dict[str, Any]]:
    children = {}
    for kind in ("deployment", "service", "poddisruptionbudget"):
        obj = tools.get(kind, name, namespace)
        assert obj is not None, f"{kind} {name} missing"
        owners = obj["metadata"].get("ownerReferences") or []
        assert [(o["kind"], o["uid"], o.get("controller")) for o in owners] == [
            ("InferenceService", uid, True)
        ]
        children[kind] = obj
    return children


def test_gpu_service_runs_on_h100_nodes(
    operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    tools = installed
    tools.kubectl(
        "create",
        "secret",
        "generic",
        "s3-credentials",
        "-n",
        namespace,
        "--from-literal=AWS_ACCESS_KEY_ID=x",
        "--from-literal=AWS_SECRET_ACCESS_KEY=y",
    )
    tools.apply([example("gpu-h100.yaml", "llm")], namespace)
    obj = wait_condition(tools, namespace, "llm", "Ready", "True", timeout=90)

    children = owned_children(tools, namespace, "llm", obj["metadata"]["uid"])
    container = children["deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")
    placed = running_pods(tools, namespace, "llm", 2)
    assert {p["spec"]["nodeName"] for p in placed} <= H100_NODES
    assert all(p["status"]["podIP"].startswith("127.") for p in placed)

    status = obj["status"]
    assert status["placement"]["mode"] == "GPU"
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["url"] == f"http://llm.{namespace}.svc.cluster.local:8000"
    assert status["readyReplicas"] == 2
    for kind in ("Ready", "Available", "Placed"):
        found = condition(obj, kind)
        assert (
            found["status"] == "True"
            and found["observedGeneration"] == obj["metadata"]["generation"]
        )
        assert found["lastTransitionTime"] and found["reason"].isalnum()

    table = tools.kubectl("get", "tis", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "REPLICAS", "PLACEMENT", "QUEUE", "AGE"]
    assert table[1].split()[:4] == ["llm", "True", "2/2", "GPU"]
    assert "PlacedOnGPU" in event_reasons(tools, namespace, "llm")


def test_unknown_gpu_product_is_reported_with_the_schedulers_reason(
    operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    tools = installed
    tools.apply(
        [service("b200", gpu={"count": 1, "products": ["NVIDIA-B200"], "fallback": "None"})],
        namespace,
    )

    def unschedulable() -> list[dict[str, Any]] | None:
        found = pods(tools, namespace, "b200")
        return [
            p
            for p in found
            if any(c.get("reason") == "Unschedulable" for c in p["status"].get("conditions") or [])
        ] or None

    pending = wait_until(unschedulable, 60, "a pod the scheduler rejects")
    assert pending[0]["status"]["phase"] == "Pending"

    def placed_says_why() -> dict[str, Any] | None:
        obj = tools.get("tis", "b200", namespace)
        placed = condition(obj, "Placed")
        return (
            obj
            if placed.get("status") == "False" and "Scheduler:" in placed.get("message", "")
            else None
        )

    obj = wait_until(placed_says_why, 60, "Placed=False with the scheduler's message")
    placed = condition(obj, "Placed")
    assert placed["reason"] == "NoMatchingGPUNode"
    assert "NVIDIA-B200" in placed["message"] and "fallback" in placed["message"]
    assert "nodes are available" in placed["message"]
    assert condition(obj, "Ready")["status"] == "False"
    assert obj["status"]["placement"]["mode"] == "Unplaceable"
    assert "Unplaceable" in event_reasons(tools, namespace, "b200")


@pytest.mark.kwok_only
def test_cpu_fallback_then_back_to_gpu_when_a_node_appears(
    cluster: Any, operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    tools = installed
    tools.apply(
        [service("fb", gpu={"count": 2, "products": ["NVIDIA-B200"], "fallback": "CPU"})], namespace
    )
    obj = wait_condition(tools, namespace, "fb", "Ready", "True", timeout=90)
    assert obj["status"]["placement"]["mode"] == "CPUFallback"
    on_cpu = running_pods(tools, namespace, "fb", 1)
    assert on_cpu[0]["spec"]["nodeName"] in CPU_NODES
    pod_spec = on_cpu[0]["spec"]
    assert "nvidia.com/gpu" not in (pod_spec["containers"][0].get("resources") or {}).get(
        "limits", {}
    )
    assert not any(t.get("key") == "nvidia.com/gpu" for t in pod_spec.get("tolerations") or [])

    cluster.add_node(
        "gpu-b200-new",
        labels={"nvidia.com/gpu.product": "NVIDIA-B200", "nvidia.com/gpu.count": "8"},
        taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
        allocatable={"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": "8"},
    )
    try:

        def on_gpu() -> dict[str, Any] | None:
            current = tools.get("tis", "fb", namespace)
            mode = ((current or {}).get("status") or {}).get("placement", {}).get("mode")
            return current if mode == "GPU" else None

        wait_until(on_gpu, 60, "placement GPU after the B200 node appeared")
        wait_until(
            lambda: [
                p
                for p in running_pods(tools, namespace, "fb", 1, timeout=5)
                if p["spec"]["nodeName"] == "gpu-b200-new"
            ],
            90,
            "the pod to move to the new GPU node",
        )
        wait_condition(tools, namespace, "fb", "Ready", "True", timeout=60)
        assert {"FellBackToCPU", "PlacedOnGPU"} <= event_reasons(tools, namespace, "fb")
    finally:
        cluster.delete_node("gpu-b200-new")


def test_mig_service_lands_on_the_mig_node(
    operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    tools = installed
    tools.apply([example("mig.yaml", "mig")], namespace)
    wait_condition(tools, namespace, "mig", "Ready", "True", timeout=90)
    spec = tools.get("tis", "mig", namespace)["spec"]  # type: ignore[index]
    placed = running_pods(tools, namespace, "mig", int(spec.get("replicas", 1)))
    assert {p["spec"]["nodeName"] for p in placed} == {"gpu-a100-mig"}
    limits = placed[0]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/mig-1g.10gb" in limits and "nvidia.com/gpu" not in limits


def test_update_rolls_scale_scales_and_delete_collects(
    operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    tools = installed
    tools.apply([service("roll", gpu={"count": 0})], namespace)
    obj = wait_condition(tools, namespace, "roll", "Ready", "True", timeout=90)
    before = running_pods(tools, namespace, "roll", 1)[0]
    assert obj["status"]["placement"]["mode"] == "CPU"

    tools.apply(
        [service("roll", gpu={"count": 0}, triton={"args": ["--log-verbose=1"]})], namespace
    )

    def rolled() -> list[dict[str, Any]] | None:
        current = running_pods(tools, namespace, "roll", 1, timeout=5)
        args = current[0]["spec"]["containers"][0]["args"]
        return (
            current
            if current[0]["metadata"]["name"] != before["metadata"]["name"]
            and args[-1] == "--log-verbose=1"
            else None
        )

    wait_until(rolled, 90, "the Deployment to roll to the new args")
    obj = wait_condition(tools, namespace, "roll", "Ready", "True")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"] == 2

    tools.kubectl("scale", "tis/roll", "--replicas", "3", "-n", namespace)
    running_pods(tools, namespace, "roll", 3, timeout=90)
    deployment = tools.get("deployment", "roll", namespace)
    assert deployment["spec"]["replicas"] == 3  # type: ignore[index]
    obj = wait_until(
        lambda: (
            (o := tools.get("tis", "roll", namespace))
            and o["status"].get("replicaSummary") == "3/3"
            and o
        ),
        60,
        "status 3/3",
    )
    scale = json.loads(
        tools.kubectl(
            "get",
            "--raw",
            f"/apis/tritonop.io/v1alpha1/namespaces/{namespace}/inferenceservices/roll/scale",
        ).stdout
    )
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert "app.kubernetes.io/instance=roll" in scale["status"]["selector"]

    tools.kubectl("delete", "tis", "roll", "-n", namespace)
    wait_until(
        lambda: (
            all(
                tools.get(kind, "roll", namespace) is None
                for kind in ("deployment", "service", "poddisruptionbudget")
            )
            and not pods(tools, namespace, "roll")
        ),
        90,
        "the garbage collector to remove every child",
    )


def test_secret_change_rolls_the_pods_and_a_missing_secret_is_reported(
    operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    tools = installed
    body = service(
        "creds",
        gpu={"count": 0},
        modelRepository={"uri": "s3://models/triton", "secretRef": {"name": "s3"}},
    )
    tools.apply([body], namespace)
    obj = wait_condition(tools, namespace, "creds", "Ready", "False", "SecretNotFound", timeout=60)
    assert "Secret 's3'" in condition(obj, "Ready")["message"]
    assert "SecretNotFound" in event_reasons(tools, namespace, "creds")

    tools.kubectl(
        "create", "secret", "generic", "s3", "-n", namespace, "--from-literal=AWS_ACCESS_KEY_ID=a"
    )
    wait_condition(tools, namespace, "creds", "Ready", "True", timeout=90)

    rotate_and_wait_for_the_roll(tools, namespace, "creds", "s3")


def resyncs_found_unchanged(operator: OperatorProcess) -> float:
    """The operator's count of resyncs that compared a fingerprint and stopped (drift.py)."""
    total = 0.0
    for line in operator.metrics().splitlines():
        if line.startswith('tritonop_reconciles_total{result="unchanged",trigger="resync"}'):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_quiet_resync_stops_at_its_fingerprint_and_a_child_deleted_by_hand_comes_back(
    operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    """The resync lists the operator's children as metadata with the chart's RBAC and, for a
    service nothing changed, stops there; a Service deleted by hand (nothing watches Services)
    is recreated by the next resync that lists it (15 s resyncs in the suite)."""
    tools = installed
    tools.apply([service("drift", gpu={"count": 0})], namespace)
    wait_condition(tools, namespace, "drift", "Ready", "True", timeout=90)
    before = resyncs_found_unchanged(operator)
    wait_until(
        lambda: resyncs_found_unchanged(operator) > before,
        60,
        "a resync to find a service unchanged",
    )
    original = tools.get("service", "drift", namespace)
    assert original is not None
    tools.kubectl("delete", "service", "drift", "-n", namespace)
    deleted = time.monotonic()
    recreated = wait_until(
        lambda: tools.get("service", "drift", namespace), 45, "the resync to recreate the Service"
    )
    assert recreated["metadata"]["uid"] != original["metadata"]["uid"]
    print(f"\nService deleted by hand recreated {time.monotonic() - deleted:.1f} s later")
