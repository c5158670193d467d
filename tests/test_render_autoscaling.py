"""HPA and KEDA ScaledObject rendering, and when the operator reports a condition instead."""

from __future__ import annotations

from typing import Any

import pytest

from tritonop.api.validation import ParsedService, parse_object
from tritonop.autoscale import promql
from tritonop.config import Settings
from tritonop.render.autoscaling import (
    autoscaler_problem,
    quantity,
    render_autoscaler,
    threshold,
)
from tritonop.render.labels import standard_labels

PROMETHEUS = "http://prometheus.monitoring:9090"


def service(autoscaling: dict[str, Any] | None, uid: str = "0f1e2d3c-uid") -> ParsedService:
    spec: dict[str, Any] = {"modelRepository": {"uri": "s3://models/resnet"}}
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    metadata = {"name": "resnet", "namespace": "ml", "uid": uid}
    return parse_object(
        {
            "apiVersion": "tritonop.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": metadata,
            "spec": spec,
        }
    )


BEHAVIOR = {
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 300,
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
    },
}


def hpa_service(**overrides: Any) -> ParsedService:
    autoscaling = {
        "mode": "HPA",
        "minReplicas": 2,
        "maxReplicas": 10,
        "targets": {"queueDepth": 4, "queueTimeMs": 2.5},
        "behavior": BEHAVIOR,
        **overrides,
    }
    return service(autoscaling)


def test_hpa_targets_the_deployment_with_both_pods_metrics() -> None:
    [hpa] = render_autoscaler(hpa_service(), Settings())
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["kind"] == "HorizontalPodAutoscaler"
    assert hpa["metadata"]["name"] == "resnet"
    assert hpa["metadata"]["namespace"] == "ml"
    assert hpa["metadata"]["labels"] == standard_labels("resnet")
    assert hpa["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "tritonop.io/v1alpha1",
            "kind": "InferenceService",
            "name": "resnet",
            "uid": "0f1e2d3c-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "resnet",
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 10)
    assert spec["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "triton_queue_depth"},
                "target": {"type": "AverageValue", "averageValue": "4"},
            },
        },
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "triton_queue_time_ms"},
                "target": {"type": "AverageValue", "averageValue": "2500m"},
            },
        },
    ]
    assert spec["behavior"] == BEHAVIOR


def test_hpa_with_one_target_no_behavior_and_offline_rendering() -> None:
    parsed = service({"mode": "HPA", "targets": {"queueTimeMs": 50}}, uid="")
    [hpa] = render_autoscaler(parsed, Settings())
    assert "ownerReferences" not in hpa["metadata"]
    assert [metric["pods"]["metric"]["name"] for metric in hpa["spec"]["metrics"]] == [
        "triton_queue_time_ms"
    ]
    assert hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "50"
    assert "behavior" not in hpa["spec"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 8)  # API defaults


def test_hpa_behavior_leaves_out_unset_fields_and_empty_directions() -> None:
    parsed = hpa_service(behavior={"scaleUp": {}, "scaleDown": {"selectPolicy": "Disabled"}})
    [hpa] = render_autoscaler(parsed, Settings())
    assert hpa["spec"]["behavior"] == {"scaleDown": {"selectPolicy": "Disabled"}}


def test_hpa_model_restriction_becomes_a_metric_selector() -> None:
    [hpa] = render_autoscaler(hpa_service(models=["resnet50", "bert"]), Settings())
    for metric in hpa["spec"]["metrics"]:
        assert metric["pods"]["metric"]["selector"] == {
            "matchExpressions": [{"key": "model", "operator": "In", "values": ["bert", "resnet50"]}]
        }


def keda_service(**overrides: Any) -> ParsedService:
    autoscaling = {
        "mode": "KEDA",
        "minReplicas": 0,
        "maxReplicas": 6,
        "targets": {"queueDepth": 8, "queueTimeMs": 120.5},
        "models": ["resnet50"],
        "behavior": BEHAVIOR,
        **overrides,
    }
    return service(autoscaling)


def test_scaled_object_has_prometheus_triggers_from_promql() -> None:
    settings = Settings(prometheus_url=PROMETHEUS, autoscale_interval_seconds=7.5)
    [scaled] = render_autoscaler(keda_service(), settings, keda_available=True)
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["kind"] == "ScaledObject"
    assert scaled["metadata"]["name"] == "resnet"
    assert scaled["metadata"]["labels"] == standard_labels("resnet")
    assert scaled["metadata"]["ownerReferences"][0]["uid"] == "0f1e2d3c-uid"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "resnet",
    }
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 6)
    assert spec["pollingInterval"] == 8
    assert spec["advanced"] == {"horizontalPodAutoscalerConfig": {"behavior": BEHAVIOR}}
    selector = promql.service_selector("ml", "resnet", ["resnet50"])
    assert spec["triggers"] == [
        {
            "type": "prometheus",
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": PROMETHEUS,
                "query": promql.queue_depth(selector),
                "threshold": "8",
                "ignoreNullValues": "false",
            },
        },
        {
            "type": "prometheus",
            "metricType": "Value",
            "metadata": {
                "serverAddress": PROMETHEUS,
                "query": promql.queue_time_ms(selector, "60s"),
                "threshold": "120.5",
                "ignoreNullValues": "false",
            },
        },
    ]


def test_scaled_object_without_behavior_has_no_advanced_block() -> None:
    parsed = keda_service(behavior={}, targets={"queueDepth": 2})
    [scaled] = render_autoscaler(parsed, Settings(prometheus_url=PROMETHEUS))
    assert "advanced" not in scaled["spec"]
    assert [trigger["metricType"] for trigger in scaled["spec"]["triggers"]] == ["AverageValue"]


def test_keda_problems_become_conditions_instead_of_objects() -> None:
    parsed = keda_service()
    configured = Settings(prometheus_url=PROMETHEUS)
    problem = autoscaler_problem(parsed, configured, keda_crd_present=False)
    assert problem is not None
    assert problem[0] == "KEDANotInstalled"
    assert "install KEDA" in problem[1]
    assert render_autoscaler(parsed, configured, keda_available=False) == []
    problem = autoscaler_problem(parsed, Settings(prometheus_url=""), keda_crd_present=True)
    assert problem is not None
    assert problem[0] == "PrometheusNotConfigured"
    assert "TRITONOP_PROMETHEUS_URL" in problem[1]
    assert render_autoscaler(parsed, Settings(prometheus_url="")) == []
    assert autoscaler_problem(parsed, configured, keda_crd_present=True) is None


@pytest.mark.parametrize(
    "autoscaling",
    [None, {"mode": "None"}, {"mode": "Operator", "targets": {"queueDepth": 4}}],
)
def test_other_modes_render_no_autoscaler_and_report_no_problem(
    autoscaling: dict[str, Any] | None,
) -> None:
    parsed = service(autoscaling)
    assert render_autoscaler(parsed, Settings(prometheus_url=PROMETHEUS)) == []
    assert autoscaler_problem(parsed, Settings(), keda_crd_present=False) is None


def test_hpa_needs_nothing_the_operator_can_check() -> None:
    assert autoscaler_problem(hpa_service(), Settings(), keda_crd_present=False) is None


def test_autoscaler_objects_never_carry_replicas() -> None:
    objects = render_autoscaler(hpa_service(), Settings()) + render_autoscaler(
        keda_service(), Settings(prometheus_url=PROMETHEUS)
    )
    assert [obj["kind"] for obj in objects] == ["HorizontalPodAutoscaler", "ScaledObject"]
    assert all("replicas" not in obj["spec"] for obj in objects)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (50, "50"),
        (4.0, "4"),
        (2.5, "2500m"),
        (0.25, "250m"),
        (0.0001, "1m"),
        (1.9999999, "2"),
        (1e6, "1000000"),
    ],
)
def test_quantity(value: float, text: str) -> None:
    assert quantity(value) == text


@pytest.mark.parametrize(("value", "text"), [(4, "4"), (4.0, "4"), (2.5, "2.5"), (0.1, "0.1")])
def test_threshold(value: float, text: str) -> None:
    assert threshold(value) == text


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_targets_must_be_positive_numbers(bad: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        quantity(bad)
    with pytest.raises(ValueError, match="positive"):
        threshold(bad)
