"""The administrator's policy (tritonop.admission): Service types, annotations, images."""

from __future__ import annotations

from typing import Any

import pytest

from tritonop.admission import policy_violations
from tritonop.api import parse_spec
from tritonop.config import Settings


def spec(**extra: Any) -> Any:
    return parse_spec("svc", {"modelRepository": {"uri": "s3://b/m"}, **extra})


def test_the_default_policy_allows_a_plain_service_and_nothing_more() -> None:
    defaults = Settings()
    assert policy_violations(spec(), defaults) == []
    assert policy_violations(spec(image="nvcr.io/nvidia/tritonserver:24.12-py3"), defaults) == []
    assert (
        policy_violations(spec(image=f"nvcr.io/nvidia/tritonserver@sha256:{'a' * 64}"), defaults)
        == []
    )
    assert policy_violations(spec(image=defaults.default_image), defaults) == []
    (problem,) = policy_violations(spec(service={"type": "NodePort"}), defaults)
    assert problem.startswith(
        "spec.service.type NodePort is not allowed in this cluster (allowed: ClusterIP)"
    )
    (problem,) = policy_violations(
        spec(service={"annotations": {"external-dns.alpha.kubernetes.io/hostname": "x.example"}}),
        defaults,
    )
    assert "external-dns.alpha.kubernetes.io/hostname not allowed" in problem
    assert "allowed prefixes: none" in problem
    (problem,) = policy_violations(spec(image="nvcr.io/nvidia/tritonserver-evil:1"), defaults)
    assert problem.startswith("spec.image nvcr.io/nvidia/tritonserver-evil:1 is not allowed")
    assert "remove spec.image to use the default" in problem


@pytest.mark.parametrize(
    ("settings", "extra", "allowed"),
    [
        (
            Settings(allowed_service_types="ClusterIP,LoadBalancer"),
            {"service": {"type": "LoadBalancer"}},
            True,
        ),
        (Settings(allowed_service_types="*"), {"service": {"type": "NodePort"}}, True),
        (
            Settings(allowed_service_annotation_prefixes="service.beta.kubernetes.io/"),
            {
                "service": {
                    "annotations": {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}
                }
            },
            True,
        ),
        (
            Settings(allowed_service_annotation_prefixes="service.beta.kubernetes.io/"),
            {"service": {"annotations": {"example.com/x": "1"}}},
            False,
        ),
        (
            Settings(allowed_service_annotation_prefixes="*"),
            {"service": {"annotations": {"a": "b"}}},
            True,
        ),
        (
            Settings(allowed_image_prefixes="registry.internal/"),
            {"image": "registry.internal/triton:1"},
            True,
        ),
        (
            Settings(allowed_image_prefixes="registry.internal/"),
            {"image": "docker.io/triton:1"},
            False,
        ),
        (Settings(allowed_image_prefixes="*"), {"image": "anything:1"}, True),
    ],
)
def test_administrators_widen_the_policy_with_prefixes(
    settings: Settings, extra: dict[str, Any], allowed: bool
) -> None:
    assert (policy_violations(spec(**extra), settings) == []) is allowed


def test_every_violation_is_named_at_once() -> None:
    problems = policy_violations(
        spec(image="x:1", service={"type": "LoadBalancer", "annotations": {"b": "1", "a": "2"}}),
        Settings(),
    )
    assert len(problems) == 3
    assert "spec.service.annotations a, b not allowed" in problems[1]


def test_prometheus_url_with_credentials_is_refused_at_start() -> None:
    for url in ("http://user:secret@prometheus:9090", "http://prometheus:9090/?token=x"):
        with pytest.raises(ValueError, match="may not carry credentials"):
            Settings(prometheus_url=url)
    assert Settings(prometheus_url="http://prometheus.monitoring:9090").prometheus_url
