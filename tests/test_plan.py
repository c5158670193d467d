"""The pure reconcile plan: children, replicas, status fields, conditions and events."""

from __future__ import annotations

from typing import Any

import pytest

from tritonop.api import parse_object
from tritonop.config import Settings
from tritonop.placement import node_info
from tritonop.reconcile import ClusterFacts, initial_replicas, plan, workload_refresh
from tritonop.status import workload_state

SETTINGS = Settings(gpu_fallback="None")
H100 = node_info(
    {
        "metadata": {"name": "h100", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        "status": {"allocatable": {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "8"}},
    }
)
CPU = node_info(
    {
        "metadata": {"name": "cpu"},
        "spec": {},
        "status": {"allocatable": {"cpu": "32", "memory": "128Gi"}},
    }
)


def service(**spec: Any) -> Any:
    body = {
        "modelRepository": {"uri": "s3://m/t"},
        "gpu": {"count": 1, "products": ["NVIDIA-H100-80GB-HBM3"]},
    }
    body.update(spec)
    return parse_object(
        {
            "apiVersion": "tritonop.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "svc", "namespace": "ml", "uid": "u1", "generation": 4},
            "spec": body,
        }
    )


def facts(
    nodes: list[Any] | None = None,
    live: dict[str, Any] | None = None,
    deployment: dict[str, Any] | None = None,
    secret_missing: bool = False,
    keda: bool = True,
) -> ClusterFacts:
    return ClusterFacts(
        nodes=[H100, CPU] if nodes is None else nodes,
        secret_version=None if secret_missing else "abc",
        secret_missing=secret_missing,
        keda_available=keda,
        live_status=live or {},
        workload=workload_state(deployment, []),
        admin_key="k3y",
    )


def deployment(desired: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {"generation": 1},
        "spec": {"replicas": desired},
        "status": {
            "observedGeneration": 1,
            "replicas": desired,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "updatedReplicas": desired,
        },
    }


def flags(result: Any) -> dict[str, Any]:
    return {f.type: f for f in result.flags}


def test_first_reconcile_of_a_gpu_service() -> None:
    result = plan(service(replicas=2), facts(), SETTINGS)
    assert [c["kind"] for c in result.children] == [
        "Secret",
        "NetworkPolicy",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    ]
    assert "replicas" not in result.children[2]["spec"]  # replicas go through the scale subresource
    assert result.replicas == 2
    assert result.placement.mode == "GPU"
    assert result.status_fields["observedGeneration"] == 4
    assert result.status_fields["url"] == "http://svc.ml.svc.cluster.local:8000"
    assert (
        result.status_fields["selector"]
        == "app.kubernetes.io/instance=svc,app.kubernetes.io/name=triton"
    )
    assert result.status_fields["replicaSummary"] == "0/2"
    assert [(e.reason, e.warning) for e in result.events] == [("PlacedOnGPU", False)]
    assert sorted(result.stale_children) == ["HorizontalPodAutoscaler", "ScaledObject"]
    assert flags(result)["ScalingActive"].reason == "AutoscalingDisabled"


def test_unchanged_placement_posts_no_event() -> None:
    live = {"placement": {"mode": "GPU", "reason": "GPUNodesAvailable"}}
    assert plan(service(), facts(live=live), SETTINGS).events == []


def test_fallback_and_unplaceable_are_warnings_with_a_fix() -> None:
    fallback = plan(
        service(gpu={"count": 1, "products": ["NVIDIA-B200"], "fallback": "CPU"}), facts(), SETTINGS
    )
    assert fallback.placement.mode == "CPUFallback"
    assert [(e.reason, e.warning) for e in fallback.events] == [("FellBackToCPU", True)]
    stuck = plan(service(gpu={"count": 1, "products": ["NVIDIA-B200"]}), facts(), SETTINGS)
    assert stuck.placement.mode == "Unplaceable"
    placed = flags(stuck)["Placed"]
    assert not placed.status and "fallback" in placed.message
    assert flags(stuck)["Ready"].reason == "NoMatchingGPUNode"


def test_missing_secret_makes_ready_false_and_says_how_to_fix() -> None:
    result = plan(
        service(modelRepository={"uri": "s3://m/t", "secretRef": {"name": "creds"}}),
        facts(secret_missing=True),
        SETTINGS,
    )
    ready = flags(result)["Ready"]
    assert (ready.status, ready.reason) == (False, "SecretNotFound")
    assert "create it or fix the name" in ready.message
    assert "SecretNotFound" in [e.reason for e in result.events]


def test_operator_mode_keeps_the_autoscalers_replicas_within_bounds() -> None:
    spec = {"autoscaling": {"minReplicas": 2, "maxReplicas": 5, "targets": {"queueDepth": 4}}}
    assert initial_replicas(service(**spec), workload_state(None, [])) == 2
    assert initial_replicas(service(**spec), workload_state(deployment(4, 4), [])) == 4
    assert initial_replicas(service(**spec), workload_state(deployment(9, 9), [])) == 5
    result = plan(service(**spec), facts(deployment=deployment(4, 4)), SETTINGS)
    assert "desiredReplicas" not in result.status_fields  # the autoscaling loop owns it


def test_hpa_and_keda_modes_leave_replicas_alone() -> None:
    hpa = plan(
        service(autoscaling={"mode": "HPA", "targets": {"queueDepth": 4}}), facts(), SETTINGS
    )
    assert hpa.replicas is None
    assert [c["kind"] for c in hpa.children][-1] == "HorizontalPodAutoscaler"
    assert hpa.stale_children == ["ScaledObject"]
    assert flags(hpa)["ScalingActive"].reason == "DelegatedToHPA"


@pytest.mark.parametrize(("mode", "owner"), [("HPA", "HorizontalPodAutoscaler"), ("KEDA", "KEDA")])
def test_an_objective_in_hpa_and_keda_modes_is_ignored_with_a_condition_and_an_event(
    mode: str, owner: str
) -> None:
    autoscaling = {
        "mode": mode,
        "targets": {"queueDepth": 4},
        "objective": {"latencyMs": 500, "attainment": 0.99},
    }
    settings = Settings(prometheus_url="http://prom:9090")
    result = plan(service(autoscaling=autoscaling), facts(), settings)
    active = flags(result)["ScalingActive"]
    assert (active.status, active.reason) == (True, "ObjectiveIgnored")
    assert owner in active.message and "remove the objective" in active.message
    assert [(e.warning, e.reason) for e in result.events if e.reason == active.reason] == [
        (True, "ObjectiveIgnored")
    ]
    # the autoscaler is still rendered, on the targets; the Event is posted once
    assert result.children[-1]["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
    live = {
        "conditions": [{"type": "ScalingActive", "reason": "ObjectiveIgnored"}],
        "placement": {"mode": "GPU"},
    }
    again = plan(service(autoscaling=autoscaling), facts(live=live), settings)
    assert again.events == []


def test_keda_without_its_crd_is_a_condition_and_applies_no_scaled_object() -> None:
    spec = {"autoscaling": {"mode": "KEDA", "targets": {"queueDepth": 4}}}
    result = plan(service(**spec), facts(keda=False), Settings(prometheus_url="http://prom:9090"))
    assert all(c["kind"] != "ScaledObject" for c in result.children)
    active = flags(result)["ScalingActive"]
    assert (active.status, active.reason) == (False, "KEDANotInstalled")
    assert "KEDANotInstalled" in [e.reason for e in result.events]
    live = {
        "conditions": [{"type": "ScalingActive", "reason": "KEDANotInstalled"}],
        "placement": {"mode": "GPU"},
    }
    assert (
        plan(service(**spec), facts(keda=False, live=live), Settings(prometheus_url="x")).events
        == []
    )


def test_workload_refresh_keeps_the_reconciles_verdict() -> None:
    live = {
        "placement": {"mode": "GPU", "reason": "GPUNodesAvailable", "message": "ok"},
        "conditions": [{"type": "Ready", "status": "False", "reason": "SecretNotFound"}],
    }
    fields, refreshed = workload_refresh(live, workload_state(deployment(1, 1), []), "None")
    assert fields == {
        "replicas": 1,
        "readyReplicas": 1,
        "replicaSummary": "1/1",
        "desiredReplicas": 1,
    }
    assert "Ready" not in {f.type for f in refreshed}


def test_network_policy_turned_off_is_a_stale_child() -> None:
    result = plan(service(), facts(), Settings(network_policy=False))
    assert "NetworkPolicy" not in [c["kind"] for c in result.children]
    assert "NetworkPolicy" in result.stale_children


def test_a_service_outside_the_policy_applies_nothing_and_says_why_once() -> None:
    strict = Settings(allowed_service_types="ClusterIP")
    result = plan(service(service={"type": "LoadBalancer"}), facts(), strict)
    assert (result.children, result.stale_children, result.replicas) == ([], [], None)
    (ready,) = result.flags
    assert (ready.type, ready.status, ready.reason) == ("Ready", False, "PolicyViolation")
    assert "spec.service.type LoadBalancer is not allowed" in ready.message
    assert [(e.warning, e.reason, e.message) for e in result.events] == [
        (True, "PolicyViolation", ready.message)
    ]
    live = {
        "conditions": [{"type": "Ready", "reason": "PolicyViolation", "message": ready.message}]
    }
    assert plan(service(service={"type": "LoadBalancer"}), facts(live=live), strict).events == []
    _fields, refreshed = workload_refresh(
        {"placement": {"mode": "GPU"}, **live}, workload_state(deployment(1, 1), []), "None"
    )
    assert "Ready" not in {f.type for f in refreshed}  # the Deployment does not heal the verdict
