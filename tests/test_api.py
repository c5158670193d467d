"""The API models: defaults, and one test per validation rule with the message a user sees."""

from __future__ import annotations

from typing import Any

import pytest

from tritonop.api import SpecError, parse_object, parse_spec
from tritonop.api.models import Autoscaling, InferenceServiceSpec


def isvc(spec: dict[str, Any], name: str = "demo") -> dict[str, Any]:
    return {
        "apiVersion": "tritonop.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": spec,
    }


MINIMAL = {"modelRepository": {"uri": "s3://bucket/models"}}


def test_defaults_of_a_minimal_spec() -> None:
    spec = parse_spec("demo", MINIMAL)
    assert spec.replicas == 1
    assert spec.gpu.count == 1
    assert spec.gpu.resource_name == "nvidia.com/gpu"
    assert spec.gpu.products == []
    assert spec.gpu.fallback is None  # the operator's default applies
    assert spec.image is None
    assert spec.autoscaling is None
    assert spec.autoscaling_mode == "None"
    assert spec.triton.shm_size == "1Gi"
    assert spec.triton.strict_readiness is True
    assert spec.service.type == "ClusterIP"
    assert spec.disruption.max_unavailable == 1


def test_autoscaling_defaults_when_the_block_is_given() -> None:
    spec = parse_spec("demo", {**MINIMAL, "autoscaling": {"targets": {"queueDepth": 4}}})
    assert spec.autoscaling is not None
    assert spec.autoscaling_mode == "Operator"
    assert (spec.autoscaling.min_replicas, spec.autoscaling.max_replicas) == (1, 8)
    assert spec.autoscaling.panic.threshold == 2.0


def test_camel_case_round_trip() -> None:
    spec = parse_spec(
        "demo", {**MINIMAL, "triton": {"shmSize": "2Gi", "startupTimeoutSeconds": 60}}
    )
    dumped = spec.model_dump(by_alias=True, exclude_defaults=True)
    assert dumped["triton"] == {"shmSize": "2Gi", "startupTimeoutSeconds": 60}
    assert InferenceServiceSpec.model_validate(dumped) == spec


def test_pvc_repository_parts() -> None:
    repo = parse_spec(
        "demo", {"modelRepository": {"uri": "pvc://store/triton/v2"}}
    ).model_repository
    assert (repo.pvc_claim, repo.pvc_sub_path) == ("store", "triton/v2")
    root = parse_spec("demo", {"modelRepository": {"uri": "pvc://store"}}).model_repository
    assert (root.pvc_claim, root.pvc_sub_path) == ("store", "")
    assert parse_spec("demo", MINIMAL).model_repository.pvc_claim is None


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("missing repository", {}, "spec.modelRepository: required field is missing"),
    (
        "bad scheme",
        {"modelRepository": {"uri": "http://x/models"}},
        "spec.modelRepository.uri: must start with s3://",
    ),
    (
        "bad pvc claim",
        {"modelRepository": {"uri": "pvc://Bad_Claim"}},
        "PersistentVolumeClaim name",
    ),
    ("negative gpu", {**MINIMAL, "gpu": {"count": -1}}, "spec.gpu.count: must be 0 (CPU only)"),
    (
        "gpu wrong type",
        {**MINIMAL, "gpu": {"count": "two"}},
        "spec.gpu.count: Input should be a valid integer",
    ),
    (
        "products without gpu",
        {**MINIMAL, "gpu": {"count": 0, "products": ["X"]}},
        "products requires count > 0",
    ),
    ("bad fallback", {**MINIMAL, "gpu": {"fallback": "TPU"}}, "spec.gpu.fallback"),
    ("bad resource name", {**MINIMAL, "gpu": {"resourceName": "gpu"}}, "spec.gpu.resourceName"),
    ("unknown field", {**MINIMAL, "replicaz": 2}, "spec.replicaz: unknown field"),
    ("negative replicas", {**MINIMAL, "replicas": -1}, "spec.replicas"),
    (
        "min above max",
        {
            **MINIMAL,
            "autoscaling": {"minReplicas": 5, "maxReplicas": 2, "targets": {"queueDepth": 1}},
        },
        "minReplicas (5) must be <= maxReplicas (2)",
    ),
    (
        "no targets",
        {**MINIMAL, "autoscaling": {"mode": "Operator"}},
        "targets needs queueDepth or queueTimeMs",
    ),
    (
        "objective without latency",
        {**MINIMAL, "autoscaling": {"objective": {"latencyMs": 0, "attainment": 0.99}}},
        "spec.autoscaling.objective.latencyMs: must be greater than 0",
    ),
    (
        "attainment of one",
        {**MINIMAL, "autoscaling": {"objective": {"latencyMs": 500, "attainment": 1}}},
        "spec.autoscaling.objective.attainment: must be between 0 and 1 (exclusive)",
    ),
    (
        "attainment of zero",
        {**MINIMAL, "autoscaling": {"objective": {"latencyMs": 500, "attainment": 0}}},
        "spec.autoscaling.objective.attainment: must be between 0 and 1 (exclusive)",
    ),
    (
        "objective alone in hpa mode",
        {
            **MINIMAL,
            "autoscaling": {"mode": "HPA", "objective": {"latencyMs": 500, "attainment": 0.9}},
        },
        "only mode Operator can scale on an objective alone",
    ),
    (
        "zero target",
        {**MINIMAL, "autoscaling": {"targets": {"queueDepth": 0}}},
        "queueDepth: must be greater than 0",
    ),
    (
        "negative time target",
        {**MINIMAL, "autoscaling": {"targets": {"queueTimeMs": -5}}},
        "queueTimeMs: must be greater than 0",
    ),
    ("bad mode", {**MINIMAL, "autoscaling": {"mode": "Magic"}}, "spec.autoscaling.mode"),
    (
        "zero min without keda",
        {**MINIMAL, "autoscaling": {"minReplicas": 0, "targets": {"queueDepth": 2}}},
        "needs mode KEDA",
    ),
    (
        "bad policy type",
        {
            **MINIMAL,
            "autoscaling": {
                "targets": {"queueDepth": 2},
                "behavior": {
                    "scaleUp": {"policies": [{"type": "Nodes", "value": 1, "periodSeconds": 15}]}
                },
            },
        },
        "policies[0].type",
    ),
    (
        "bad quantity",
        {**MINIMAL, "resources": {"requests": {"memory": "8 GB"}}},
        "must be a Kubernetes quantity",
    ),
    (
        "bad shm",
        {**MINIMAL, "triton": {"shmSize": "lots"}},
        "shmSize must be a Kubernetes quantity",
    ),
    ("bad pdb", {**MINIMAL, "disruption": {"maxUnavailable": "half"}}, "percentage"),
    (
        "bad toleration",
        {**MINIMAL, "tolerations": [{"key": "a", "operator": "Maybe"}]},
        "spec.tolerations[0].operator",
    ),
    ("bad service type", {**MINIMAL, "service": {"type": "Ingress"}}, "spec.service.type"),
    (
        "startup too short",
        {**MINIMAL, "triton": {"startupTimeoutSeconds": 5}},
        "startupTimeoutSeconds",
    ),
    # What the API server would refuse when the operator applies the children: refused here.
    (
        "pvc sub path leaves the claim",
        {"modelRepository": {"uri": "pvc://claim/a/../b"}},
        "'..' is not allowed as a path element",
    ),
    (
        "pvc sub path is only ..",
        {"modelRepository": {"uri": "pvc://claim/.."}},
        "must stay inside the claim",
    ),
    (
        "nodeSelector key with a space",
        {**MINIMAL, "nodeSelector": {"bad key!": "x"}},
        "spec.nodeSelector: nodeSelector key 'bad key!' is not a valid key",
    ),
    (
        "nodeSelector key prefix too long",
        {**MINIMAL, "nodeSelector": {"a" * 254 + "/zone": "x"}},
        "is not a valid key",
    ),
    (
        "nodeSelector value not a label value",
        {**MINIMAL, "nodeSelector": {"zone": "eu west"}},
        "spec.nodeSelector.zone",
    ),
    (
        "toleration key not a label key",
        {**MINIMAL, "tolerations": [{"key": "no spaces please", "operator": "Exists"}]},
        "spec.tolerations[0].key",
    ),
    (
        "toleration value too long",
        {**MINIMAL, "tolerations": [{"key": "k", "value": "v" * 64}]},
        "spec.tolerations[0].value",
    ),
    (
        "annotation key not a qualified name",
        {**MINIMAL, "service": {"annotations": {"k: v": "x"}}},
        "annotation 'k: v' is not a valid key",
    ),
    (
        "resource name not a qualified name",
        {**MINIMAL, "resources": {"limits": {"gpu memory": "1"}}},
        "resource name 'gpu memory' is not a valid key",
    ),
    (
        "HPA model name is not a label value",
        {
            **MINIMAL,
            "autoscaling": {"mode": "HPA", "models": ["text/llm"], "targets": {"queueDepth": 2}},
        },
        "in mode HPA the models become label values",
    ),
    (
        "maxUnavailable 0 blocks drains",
        {**MINIMAL, "disruption": {"maxUnavailable": 0}},
        "must be at least 1",
    ),
    (
        "maxUnavailable 0%",
        {**MINIMAL, "disruption": {"maxUnavailable": "0%"}},
        "must be at least 1",
    ),
    (
        "maxUnavailable over 100%",
        {**MINIMAL, "disruption": {"maxUnavailable": "150%"}},
        "'1%' to '100%'",
    ),
    (
        "triton args set the restricted APIs",
        {**MINIMAL, "triton": {"args": ["--http-restricted-api=model-repository:k=v"]}},
        "set by the operator",
    ),
    (
        "unknown affinity field",
        {**MINIMAL, "affinity": {"nodeAfinity": {}}},
        "spec.affinity.nodeAfinity: unknown field",
    ),
    (
        "affinity operator",
        {
            **MINIMAL,
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "zone", "operator": "Equals"}]}
                        ]
                    }
                }
            },
        },
        "matchExpressions[0].operator",
    ),
    ("too many models", {**MINIMAL, "models": [f"m{i}" for i in range(65)]}, "spec.models"),
    (
        "control characters in a model name",
        {**MINIMAL, "models": ["m\nprivileged: true"]},
        "spec.models[0]: 'm\\nprivileged: true' must be printable ASCII",
    ),
    ("too long an argument", {**MINIMAL, "triton": {"args": ["x" * 513]}}, "spec.triton.args[0]"),
    (
        "too many annotations",
        {**MINIMAL, "service": {"annotations": {f"k{i}": "v" for i in range(17)}}},
        "spec.service.annotations",
    ),
]


@pytest.mark.parametrize(("case", "spec", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_specs_name_the_field_and_the_fix(
    case: str, spec: dict[str, Any], expected: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_object(isvc(spec))
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


@pytest.mark.parametrize("name", ["Demo", "9lives", "a" * 53, "has_underscore"])
def test_names_that_cannot_name_a_service_are_rejected(name: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_object(isvc(MINIMAL, name=name))
    assert caught.value.problems[0].startswith("metadata.name:")


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as caught:
        parse_object(
            isvc(
                {"modelRepository": {"uri": "ftp://x"}, "gpu": {"count": -2}, "bogus": 1},
                name="Bad",
            )
        )
    assert len(caught.value.problems) == 4


def test_wrong_kind_is_rejected() -> None:
    with pytest.raises(SpecError, match="apiVersion/kind"):
        parse_object({**isvc(MINIMAL), "kind": "Deployment"})


def test_parsed_service_identity() -> None:
    body = isvc(MINIMAL)
    body["metadata"].update(uid="u-1", generation=3, labels={"team": "ml"})
    service = parse_object(body)
    assert (service.name, service.namespace, service.uid, service.generation) == (
        "demo",
        "ml",
        "u-1",
        3,
    )
    assert service.labels == {"team": "ml"}


VALID_LABEL_SYNTAX: list[tuple[str, dict[str, Any]]] = [
    ("prefixed nodeSelector key", {"nodeSelector": {"topology.kubernetes.io/zone": "eu-1a"}}),
    ("empty nodeSelector value", {"nodeSelector": {"example.com/pool": ""}}),
    ("pvc sub path with dots in names", {"modelRepository": {"uri": "pvc://c/v1..2/.models"}}),
    ("percent maxUnavailable", {"disruption": {"maxUnavailable": "100%"}}),
    ("toleration of every taint", {"tolerations": [{"operator": "Exists"}]}),
    (
        "model names outside HPA mode are not labels",
        {"autoscaling": {"mode": "Operator", "models": ["text/llm"], "targets": {"queueDepth": 2}}},
    ),
]


@pytest.mark.parametrize(
    ("case", "extra"), VALID_LABEL_SYNTAX, ids=[c[0] for c in VALID_LABEL_SYNTAX]
)
def test_valid_label_syntax_is_accepted(case: str, extra: dict[str, Any]) -> None:
    parse_object(isvc({**MINIMAL, **extra}))


def test_typed_affinity_round_trips_as_the_pod_spec_carries_it() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 5,
                    "preference": {
                        "matchFields": [
                            {"key": "metadata.name", "operator": "In", "values": ["n1"]}
                        ]
                    },
                }
            ],
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "x"}},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        },
    }
    spec = parse_spec("demo", {**MINIMAL, "affinity": affinity})
    assert spec.affinity.manifest() == affinity
    assert parse_spec("demo", MINIMAL).affinity.manifest() == {}


def test_an_objective_alone_is_enough_in_operator_mode() -> None:
    autoscaling = Autoscaling.model_validate(
        {"objective": {"latencyMs": 500, "attainment": 0.99}, "coldStartSeconds": 45}
    )
    assert autoscaling.objective is not None
    assert (autoscaling.objective.latency_ms, autoscaling.objective.attainment) == (500, 0.99)
    assert autoscaling.cold_start_seconds == 45
    assert autoscaling.targets.queue_depth is None and autoscaling.targets.queue_time_ms is None
