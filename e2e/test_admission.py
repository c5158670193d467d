"""Bad input is rejected at admission by the CRD's schema and CEL rules, naming the field.

No operator is needed: this is the API server's judgement of the generated CRD. Afterwards
nothing half-made exists in the namespace.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from e2e.harness import Tools
from e2e.services import service

GOOD = service("good")["spec"]


def spec_with(**changes: Any) -> dict[str, Any]:
    spec = {**GOOD}
    spec.update(changes)
    return spec


INVALID: list[tuple[str, str, dict[str, Any] | None, str]] = [
    # (case, name, spec or None for a raw body, text the API server's message must contain)
    ("wrong type for replicas", "bad-a", spec_with(replicas="three"), "spec.replicas"),
    ("negative replicas", "bad-b", spec_with(replicas=-1), "spec.replicas"),
    ("negative gpu count", "bad-c", spec_with(gpu={"count": -1}), "spec.gpu.count"),
    (
        "min above max",
        "bad-d",
        spec_with(autoscaling={"minReplicas": 5, "maxReplicas": 2, "targets": {"queueDepth": 4}}),
        "spec.autoscaling.minReplicas",
    ),
    (
        "bad uri scheme",
        "bad-e",
        spec_with(modelRepository={"uri": "http://models"}),
        "spec.modelRepository.uri",
    ),
    ("unknown field", "bad-f", spec_with(replicaCount=2), "replicaCount"),
    (
        "bad memory quantity",
        "bad-g",
        spec_with(resources={"requests": {"memory": "8 GB"}}),
        "spec.resources.requests",
    ),
    ("bad shm quantity", "bad-h", spec_with(triton={"shmSize": "lots"}), "spec.triton.shmSize"),
    (
        "zero queue depth target",
        "bad-i",
        spec_with(autoscaling={"targets": {"queueDepth": 0}}),
        "spec.autoscaling.targets.queueDepth",
    ),
    (
        "negative queue time target",
        "bad-j",
        spec_with(autoscaling={"targets": {"queueTimeMs": -1}}),
        "spec.autoscaling.targets.queueTimeMs",
    ),
    (
        "no targets",
        "bad-k",
        spec_with(autoscaling={"mode": "Operator"}),
        "spec.autoscaling.targets",
    ),
    (
        "objective latency of zero",
        "bad-t",
        spec_with(autoscaling={"objective": {"latencyMs": 0, "attainment": 0.99}}),
        "spec.autoscaling.objective.latencyMs",
    ),
    (
        "objective attainment of one",
        "bad-u",
        spec_with(autoscaling={"objective": {"latencyMs": 500, "attainment": 1}}),
        "spec.autoscaling.objective.attainment",
    ),
    (
        "objective alone in hpa mode",
        "bad-v",
        spec_with(autoscaling={"mode": "HPA", "objective": {"latencyMs": 500, "attainment": 0.9}}),
        "spec.autoscaling.targets",
    ),
    (
        "unknown autoscaling mode",
        "bad-l",
        spec_with(autoscaling={"mode": "Magic", "targets": {"queueDepth": 1}}),
        "spec.autoscaling.mode",
    ),
    (
        "unknown fallback",
        "bad-m",
        spec_with(gpu={"count": 1, "fallback": "TPU"}),
        "spec.gpu.fallback",
    ),
    (
        "products without gpus",
        "bad-n",
        spec_with(gpu={"count": 0, "products": ["NVIDIA-H100-80GB-HBM3"]}),
        "spec.gpu.products",
    ),
    (
        "missing repository",
        "bad-o",
        {k: v for k, v in GOOD.items() if k != "modelRepository"},
        "spec.modelRepository",
    ),
    (
        "bad scaling policy",
        "bad-p",
        spec_with(
            autoscaling={
                "targets": {"queueDepth": 1},
                "behavior": {
                    "scaleUp": {"policies": [{"type": "Nodes", "value": 1, "periodSeconds": 15}]}
                },
            }
        ),
        "spec.autoscaling.behavior.scaleUp.policies[0].type",
    ),
    (
        "bad resource name",
        "bad-q",
        spec_with(gpu={"count": 1, "resourceName": "gpu"}),
        "spec.gpu.resourceName",
    ),
    (
        "bad toleration operator",
        "bad-r",
        spec_with(tolerations=[{"key": "a", "operator": "Maybe"}]),
        "spec.tolerations[0].operator",
    ),
    # What the API server would refuse only when the operator applies the children.
    (
        "pvc sub path leaves the claim",
        "bad-t",
        spec_with(modelRepository={"uri": "pvc://claim/a/../b"}),
        "'..' is not allowed as a path element",
    ),
    (
        "nodeSelector key is not a label key",
        "bad-u",
        spec_with(nodeSelector={"bad key!": "x"}),
        "nodeSelector keys must be an optional DNS prefix",
    ),
    (
        "nodeSelector value is not a label value",
        "bad-v",
        spec_with(nodeSelector={"zone": "eu west"}),
        "spec.nodeSelector[zone]",
    ),
    (
        "unknown affinity field",
        "bad-w",
        spec_with(affinity={"nodeAfinity": {}}),
        "nodeAfinity",
    ),
    (
        "HPA model name is not a label value",
        "bad-x",
        spec_with(
            autoscaling={"mode": "HPA", "models": ["text/llm"], "targets": {"queueDepth": 2}}
        ),
        "in mode HPA the models become label values",
    ),
    (
        "maxUnavailable 0",
        "bad-y",
        spec_with(disruption={"maxUnavailable": 0}),
        "spec.disruption.maxUnavailable",
    ),
    (
        "maxUnavailable 0%",
        "bad-z",
        spec_with(disruption={"maxUnavailable": "0%"}),
        "spec.disruption.maxUnavailable",
    ),
    (
        "annotation key is not a qualified name",
        "bad-aa",
        spec_with(service={"annotations": {"k: v": "x"}}),
        "annotation keys must be",
    ),
    (
        "the operator's restricted-API flags",
        "bad-ab",
        spec_with(triton={"args": ["--http-restricted-api=model-repository:k=v"]}),
        "set by the operator",
    ),
    (
        "too many models",
        "bad-ac",
        spec_with(models=[f"m{i}" for i in range(65)]),
        "spec.models",
    ),
    (
        "control character in a model name",
        "bad-ad",
        spec_with(models=["m\nx"]),
        "printable ASCII",
    ),
    ("name too long", "n" * 60, GOOD, "metadata.name"),
    ("name with capitals", "BadName", GOOD, "metadata.name"),
    ("missing spec", "bad-s", None, "spec"),
]


@pytest.mark.parametrize(("case", "name", "spec", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_service_is_rejected_naming_the_field(
    installed: Tools, namespace: str, case: str, name: str, spec: dict[str, Any] | None, field: str
) -> None:
    body: dict[str, Any] = {
        "apiVersion": "tritonop.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name},
    }
    if spec is not None:
        body["spec"] = spec
    result = installed.kubectl(
        "apply",
        "--server-side",
        "-n",
        namespace,
        "-f",
        "-",
        input=yaml.safe_dump(body),
        check=False,
    )
    assert result.returncode != 0, f"{case}: accepted"
    assert "is invalid" in result.stderr or "Error from server" in result.stderr, result.stderr
    assert field in result.stderr, f"{case}: message does not name {field}:\n{result.stderr}"
    assert installed.items("inferenceservices", namespace) == []
    assert installed.items("deployments", namespace) == []


def test_at_least_fifteen_distinct_rejections() -> None:
    assert len({case for case, *_ in INVALID}) >= 15


def test_specs_at_the_edges_of_the_rules_are_accepted(installed: Tools, namespace: str) -> None:
    """What the new rules must not refuse: prefixed and empty label syntax, a full affinity,
    percentages, model names that are label values in HPA mode, free text in Operator mode."""
    spec = spec_with(
        modelRepository={"uri": "pvc://models/v1..2/triton"},
        models=[f"model-{i}" for i in range(64)],
        nodeSelector={"topology.kubernetes.io/zone": "eu-1a", "example.com/pool": ""},
        tolerations=[{"operator": "Exists"}, {"key": "example.com/dedicated", "value": "ml"}],
        disruption={"maxUnavailable": "100%"},
        service={"annotations": {"example.com/owner": "team ml {a: b}"}},
        autoscaling={"mode": "HPA", "models": ["resnet50"], "targets": {"queueDepth": 2}},
        affinity={
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "topology.kubernetes.io/zone",
                                    "operator": "In",
                                    "values": ["a"],
                                }
                            ],
                            "matchFields": [
                                {"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}
                            ],
                        }
                    ]
                }
            },
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "ok"}},
                            "namespaceSelector": {},
                            "topologyKey": "kubernetes.io/hostname",
                            "matchLabelKeys": ["pod-template-hash"],
                        },
                    }
                ]
            },
        },
    )
    body = {
        "apiVersion": "tritonop.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "edges"},
        "spec": spec,
    }
    result = installed.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "-n",
        namespace,
        "-o",
        "json",
        "-f",
        "-",
        input=yaml.safe_dump(body),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    stored = yaml.safe_load(result.stdout)["spec"]
    assert stored["affinity"] == spec["affinity"]
    assert stored["nodeSelector"] == spec["nodeSelector"]


def test_an_objective_alone_is_admitted_and_kept_as_written(
    installed: Tools, namespace: str
) -> None:
    autoscaling = {
        "maxReplicas": 4,
        "objective": {"latencyMs": 500, "attainment": 0.99},
        "coldStartSeconds": 45,
    }
    body = {
        "apiVersion": "tritonop.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "objective-only"},
        "spec": spec_with(autoscaling=autoscaling),
    }
    installed.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-", input=yaml.safe_dump(body)
    )
    (stored,) = installed.items("inferenceservices", namespace)
    kept = stored["spec"]["autoscaling"]
    assert kept["objective"] == {"latencyMs": 500, "attainment": 0.99}
    assert kept["coldStartSeconds"] == 45
    assert "queueDepth" not in kept["targets"] and "queueTimeMs" not in kept["targets"]
