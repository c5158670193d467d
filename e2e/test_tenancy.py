"""Tenancy on the real control plane, with the operator as its own ServiceAccount (issue 13).

A tenant who may create an InferenceService gets Triton and nothing more: Triton's
administrative APIs behind a key nobody can read from the pod spec, no API token in its pods,
a NetworkPolicy the API server accepts and that selects exactly the service's pods, and an
administrator's policy the operator enforces.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from e2e.harness import OperatorProcess, Tools
from e2e.polling import wait_until
from e2e.services import condition, events, running_pods, service, wait_condition


def controller_uid(obj: dict[str, Any] | None) -> str | None:
    owners = ((obj or {}).get("metadata") or {}).get("ownerReferences") or []
    return next((o["uid"] for o in owners if o.get("controller")), None)


def test_triton_is_locked_down_on_the_real_api_server(
    operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    """Acceptance 6: the rendered restricted-API arguments, the admin Secret and the
    NetworkPolicy as the API server stores them (a real Triton's refusal of a model load
    without the key is the data-plane test's)."""
    tools = installed
    tools.apply([service("locked", gpu={"count": 0}, replicas=2)], namespace)
    isvc = wait_condition(tools, namespace, "locked", "Ready", "True", timeout=90)
    uid = isvc["metadata"]["uid"]
    pods = running_pods(tools, namespace, "locked", 2)

    secret = tools.get("secret", "locked-triton-admin", namespace)
    assert secret is not None and controller_uid(secret) == uid
    key = base64.b64decode(secret["data"]["admin-key"]).decode()
    assert re.fullmatch(r"[0-9a-f]{64}", key), "a random hex key"

    deployment = tools.get("deployment", "locked", namespace)
    assert deployment is not None
    template = deployment["spec"]["template"]
    (container,) = template["spec"]["containers"]
    restriction = (
        "model-repository,model-config,shared-memory,logging,trace:admin-key=$(TRITONOP_ADMIN_KEY)"
    )
    assert f"--http-restricted-api={restriction}" in container["args"]
    assert f"--grpc-restricted-protocol={restriction}" in container["args"]
    assert container["env"] == [
        {
            "name": "TRITONOP_ADMIN_KEY",
            "valueFrom": {"secretKeyRef": {"name": "locked-triton-admin", "key": "admin-key"}},
        }
    ]
    assert template["spec"]["automountServiceAccountToken"] is False
    assert not [
        a for a in template["metadata"].get("annotations", {}) if a.startswith("prometheus.io/")
    ]
    for pod in pods:
        # The ServiceAccount admission plugin adds no token volume when automount is off.
        assert not [v for v in pod["spec"].get("volumes", []) if "projected" in v], pod["spec"]
        assert key not in json.dumps(pod)
    assert key not in json.dumps(deployment)
    assert key not in operator.log_path.read_text()

    policy = tools.get("networkpolicy", "locked", namespace)
    assert policy is not None and controller_uid(policy) == uid
    selector = ",".join(f"{k}={v}" for k, v in policy["spec"]["podSelector"]["matchLabels"].items())
    selected = {p["metadata"]["name"] for p in tools.items("pods", namespace, selector)}
    assert selected == {p["metadata"]["name"] for p in pods}
    named_ports = {port["name"] for port in container["ports"]}
    for rule in policy["spec"]["ingress"]:
        assert {port["port"] for port in rule["ports"]} <= named_ports
    inference, metrics = policy["spec"]["ingress"]
    assert {"podSelector": {}} in inference["from"]
    assert [p["port"] for p in metrics["ports"]] == ["metrics"]

    tools.kubectl("delete", "tis", "locked", "-n", namespace)
    wait_until(
        lambda: (
            tools.get("secret", "locked-triton-admin", namespace) is None
            and tools.get("networkpolicy", "locked", namespace) is None
        ),
        90,
        "the garbage collector to remove the admin Secret and the NetworkPolicy",
    )


def test_a_service_outside_the_policy_is_not_applied_and_heals_when_it_complies(
    operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    tools = installed
    body = service(
        "public",
        gpu={"count": 0},
        service={
            "type": "LoadBalancer",
            "annotations": {"external-dns.alpha.kubernetes.io/hostname": "x.example"},
        },
    )
    tools.apply([body], namespace)
    obj = wait_condition(
        tools, namespace, "public", "Ready", "False", "PolicyViolation", timeout=60
    )
    message = condition(obj, "Ready")["message"]
    assert "spec.service.type LoadBalancer is not allowed in this cluster" in message
    assert "external-dns.alpha.kubernetes.io/hostname not allowed" in message
    for kind in ("deployment", "service", "secret", "networkpolicy"):
        name = "public-triton-admin" if kind == "secret" else "public"
        assert tools.get(kind, name, namespace) is None, f"{kind} applied despite the policy"
    warnings = [e for e in events(tools, namespace, "public") if e["reason"] == "PolicyViolation"]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning"

    compliant = service("public", gpu={"count": 0})
    tools.apply([compliant], namespace)
    wait_condition(tools, namespace, "public", "Ready", "True", timeout=90)
    svc = tools.get("service", "public", namespace)
    assert svc is not None and svc["spec"]["type"] == "ClusterIP"
    assert not (svc["metadata"].get("annotations") or {})
