"""Tenancy on the real control plane, with the operator as its own ServiceAccount (issue 13).

A tenant who may create an InferenceService gets Triton and nothing more: Triton's
administrative APIs behind a key nobody can read from the pod spec, no API token in its pods,
a NetworkPolicy the API server accepts and that selects exactly the service's pods, and an
administrator's policy the operator enforces. The acceptance criteria of issue 13, by test:

1. objects named like a new service: test_existing_objects_named_like_a_new_service_...
2. the silently failing specs: pvc:// with '..', a nodeSelector key that is no label key and an
   unknown affinity field are refused at admission (e2e/test_admission.py's INVALID cases); a
   same-named Deployment is (1); what admission cannot see: test_a_refused_child_is_apply_...
3. unrelated Secrets and a rotated one: test_unrelated_secrets_cost_the_operator_nothing_...
4. isolation and repair: test_a_failing_service_does_not_delay_others_and_a_lost_...
5. test_the_operator_may_not_list_or_watch_secrets
6. test_triton_is_locked_down_on_the_real_api_server
"""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config

from e2e.cluster.processes import free_ports
from e2e.harness import (
    OPERATOR_USER,
    WRITE_VERBS,
    OperatorProcess,
    PeakRss,
    Tools,
    peak_rss,
)
from e2e.polling import wait_until
from e2e.services import (
    UNRELATED_SECRET_BYTES,
    condition,
    create_service_with_credentials,
    create_unrelated_secrets,
    events,
    rotate_and_wait_for_the_roll,
    running_pods,
    secret_version,
    service,
    wait_condition,
)
from tritonop.k8s import Kube


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


# ---------------------------------------------------------------- acceptance of issue 13


def operator_writes_to(
    cluster: Any, namespace: str, resource: str | None = None
) -> list[dict[str, Any]]:
    """The operator's write requests (audit log) in a namespace, optionally of one resource."""
    return [
        event
        for event in cluster.audit_events(user=OPERATOR_USER, verbs=WRITE_VERBS)
        if event["objectRef"].get("namespace") == namespace
        and (resource is None or event["objectRef"].get("resource") == resource)
    ]


def warnings(tools: Tools, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    return [
        e
        for e in events(tools, namespace, name)
        if e["reason"] == reason and e["type"] == "Warning"
    ]


USER_OBJECTS: list[dict[str, Any]] = [
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "checkout", "labels": {"app": "checkout"}},
        "spec": {"selector": {"app": "checkout"}, "ports": [{"port": 443, "targetPort": 8443}]},
    },
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "checkout", "labels": {"app": "checkout"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": {
                "metadata": {"labels": {"app": "checkout"}},
                "spec": {"containers": [{"name": "web", "image": "registry.example/checkout:1"}]},
            },
        },
    },
    {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "checkout"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "checkout"}}},
    },
    {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "checkout"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout"},
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                }
            ],
        },
    },
]


def snapshot(tools: Tools, namespace: str) -> dict[str, tuple[Any, Any, Any, Any]]:
    """What must not change of the user's objects: spec, labels, annotations, owners. (Not the
    resourceVersion: their own controllers keep writing their status.)"""
    taken = {}
    for obj in USER_OBJECTS:
        live = tools.get(obj["kind"].lower(), "checkout", namespace)
        assert live is not None, f"{obj['kind']} checkout is gone"
        meta = live["metadata"]
        annotations = {
            key: value
            for key, value in (meta.get("annotations") or {}).items()
            if not key.startswith("deployment.kubernetes.io/")  # the Deployment controller's
        }
        taken[obj["kind"]] = (
            annotations,
            live["spec"],
            meta.get("labels"),
            meta.get("ownerReferences"),
        )
    return taken


@pytest.mark.kwok_only
def test_existing_objects_named_like_a_new_service_are_left_alone_and_survive_it(
    cluster: Any, operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    """Acceptance 1, and the same-named Deployment of acceptance 2."""
    tools = installed
    tools.apply(USER_OBJECTS, namespace)
    before = snapshot(tools, namespace)
    body = service(
        "checkout",
        gpu={"count": 0},
        autoscaling={
            "mode": "HPA",
            "minReplicas": 1,
            "maxReplicas": 2,
            "targets": {"queueDepth": 4},
        },
    )
    tools.apply([body], namespace)
    obj = wait_condition(
        tools, namespace, "checkout", "Ready", "False", "ResourceExists", timeout=60
    )
    message = condition(obj, "Ready")["message"]
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        assert (
            f"{kind} checkout already exists and this InferenceService does not control it"
            in message
        )
    time.sleep(2)  # kopf's own bookkeeping patch after the handler returned
    reported = len(operator_writes_to(cluster, namespace))
    watched = 20.0
    time.sleep(watched)  # several retries (5 s, 10 s, ...) and a resync (15 s in the suite)
    assert snapshot(tools, namespace) == before
    writes = operator_writes_to(cluster, namespace)
    children = [
        w
        for w in writes
        if w["objectRef"]["resource"] != "inferenceservices"
        and w["objectRef"]["resource"] != "events"
    ]
    assert children == [], f"the operator wrote children: {children}"
    assert len(warnings(tools, namespace, "checkout", "ResourceExists")) == 1
    print(
        f"\nResourceExists: {len(writes)} operator writes in the namespace in all "
        f"({reported} until it was reported), {len(writes) - reported} in the {watched:.0f} s "
        "of retries and resyncs after; 0 to the user's objects"
    )
    assert writes[reported:] == [], "the retries wrote while nothing changed"

    tools.kubectl("delete", "tis", "checkout", "-n", namespace)
    wait_until(lambda: tools.get("tis", "checkout", namespace) is None, 60, "the service to go")
    time.sleep(5)  # the garbage collector's turn, had the objects been hung on the service
    assert snapshot(tools, namespace) == before


@pytest.mark.kwok_only
def test_a_refused_child_is_apply_failed_once_retried_without_a_storm_and_heals(
    cluster: Any, operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    """Acceptance 2 for what admission cannot see: a ResourceQuota refuses the NetworkPolicy
    (403): ApplyFailed with the server's words and one Warning Event within one reconcile, a
    bounded number of attempts while it lasts, and the service heals when the quota goes."""
    tools = installed
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-network-policies"},
        "spec": {"hard": {"count/networkpolicies.networking.k8s.io": "0"}},
    }
    tools.apply([quota], namespace)
    created = time.monotonic()
    tools.apply([service("quota", gpu={"count": 0})], namespace)
    obj = wait_condition(tools, namespace, "quota", "Ready", "False", "ApplyFailed", timeout=30)
    reported = time.monotonic() - created
    message = condition(obj, "Ready")["message"]
    assert "NetworkPolicy quota" in message and "exceeded quota" in message
    watched = 45.0
    time.sleep(watched)
    attempts = operator_writes_to(cluster, namespace, "networkpolicies")
    codes = {a["responseStatus"]["code"] for a in attempts}
    statuses = operator_writes_to(cluster, namespace, "inferenceservices")
    print(
        f"\nNetworkPolicy attempts in {watched:.0f} s of refusal: {len(attempts)} (codes {codes}); "
        f"InferenceService writes: {len(statuses)}; "
        f"ApplyFailed reported {reported:.1f} s after the create"
    )
    assert codes == {403}
    # 5 s, then doubling up to the resync interval (15 s in the suite): at most one attempt per
    # 5 s even at the start, and fewer later.
    assert 2 <= len(attempts) <= 1 + watched / 5
    assert len(warnings(tools, namespace, "quota", "ApplyFailed")) == 1
    tools.kubectl("delete", "resourcequota", "no-network-policies", "-n", namespace)
    wait_condition(tools, namespace, "quota", "Ready", "True", timeout=60)
    assert tools.get("networkpolicy", "quota", namespace) is not None


@pytest.mark.kwok_only
def test_a_failing_service_does_not_delay_others_and_a_lost_deployment_is_repaired(
    cluster: Any, operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    """Acceptance 4: an always-failing service (its NetworkPolicy refused by a quota) does not
    keep another from moving back to GPU when a fitting node appears; a Deployment deleted by
    hand while the API server fails every Deployment create (a validating webhook nobody
    serves, failurePolicy Fail: HTTP 500) is recreated once the errors stop."""
    tools = installed
    fallback = {"count": 1, "products": ["NVIDIA-L4"], "fallback": "CPU"}
    policy_name = f"refuse-broken-{namespace}"
    refuse_broken: list[dict[str, Any]] = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy_name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["apps"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["deployments"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "object.metadata.name != 'aaa-broken'",
                        "message": "deployments named aaa-broken are refused here",
                    }
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": policy_name},
            "spec": {
                "policyName": policy_name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        },
    ]
    tools.apply(refuse_broken)
    try:
        wait_until(
            lambda: (
                installed.kubectl(
                    "create",
                    "deployment",
                    "aaa-broken",
                    "--image=x",
                    "-n",
                    namespace,
                    "--dry-run=server",
                    check=False,
                ).returncode
                != 0
            ),
            30,
            "the admission policy to be in force",
        )
        # created first, so that every loop over the services meets it before the other
        tools.apply([service("aaa-broken", gpu=fallback)], namespace)
        wait_condition(tools, namespace, "aaa-broken", "Ready", "False", "ApplyFailed", timeout=60)
        tools.apply([service("mover", gpu=fallback)], namespace)
        wait_condition(tools, namespace, "mover", "Ready", "True", timeout=90)
        _moves_next_to_a_failing_service(cluster, tools, namespace)
    finally:
        for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
            tools.kubectl("delete", kind, policy_name, check=False)
    _lost_deployment_is_recreated(cluster, tools, namespace)


def _moves_next_to_a_failing_service(cluster: Any, tools: Tools, namespace: str) -> None:
    cluster.add_node(
        "gpu-l4-new",
        labels={"nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.count": "8"},
        taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
        allocatable={"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": "8"},
    )
    try:
        added = time.monotonic()

        def mover_on_gpu() -> bool:
            current = tools.get("tis", "mover", namespace) or {}
            return bool((current.get("status") or {}).get("placement", {}).get("mode") == "GPU")

        wait_until(mover_on_gpu, 30, "the healthy service to move to the new GPU node")
        print(
            f"\nre-placed {time.monotonic() - added:.1f} s after the node appeared, "
            "next to an always-failing service"
        )
        assert (
            condition(tools.get("tis", "aaa-broken", namespace), "Ready")["reason"] == "ApplyFailed"
        )
    finally:
        cluster.delete_node("gpu-l4-new")


def _lost_deployment_is_recreated(cluster: Any, tools: Tools, namespace: str) -> None:
    (port,) = free_ports(1)
    webhook_name = f"fail-deployments-{namespace}"
    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": webhook_name},
        "webhooks": [
            {
                "name": "fail.deployments.e2e.tritonop.io",
                "clientConfig": {"url": f"https://127.0.0.1:{port}/validate"},
                "rules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["deployments"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 2,
            }
        ],
    }
    tools.apply([webhook])
    try:
        tools.kubectl("delete", "deployment", "mover", "-n", namespace)

        def failed_recreates() -> list[dict[str, Any]] | None:
            found = [
                w
                for w in operator_writes_to(cluster, namespace, "deployments")
                if w["objectRef"].get("name") == "mover" and w["responseStatus"]["code"] >= 500
            ]
            return found or None

        failures = wait_until(failed_recreates, 30, "the operator's recreate to hit the 500")
        assert tools.get("deployment", "mover", namespace) is None
    finally:
        tools.kubectl("delete", "validatingwebhookconfiguration", webhook_name)
    stopped = time.monotonic()
    wait_until(
        lambda: tools.get("deployment", "mover", namespace), 45, "the Deployment to be recreated"
    )
    print(
        f"recreated {time.monotonic() - stopped:.1f} s after the errors stopped "
        f"({len(failures)}+ failed attempts during them)"
    )
    wait_condition(tools, namespace, "mover", "Ready", "True", timeout=60)


def test_a_racing_second_admin_key_never_overwrites_the_first(
    operator_kubeconfig: Path, installed: Tools, namespace: str
) -> None:
    """Two reconciles of a new service that both saw no admin Secret (kopf can run a create
    handler twice): as the operator's ServiceAccount on the real API server, the first
    create wins, the second is refused (409) and keeps nothing of its own key."""
    api = config.new_client_from_config(config_file=str(operator_kubeconfig))  # type: ignore[no-untyped-call]
    kube = Kube(api)

    def admin_secret(key: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "race-triton-admin", "namespace": namespace},
            "data": {"admin-key": base64.b64encode(key.encode()).decode()},
        }

    try:
        assert kube.create(admin_secret("first")) is not None
        assert kube.create(admin_secret("second")) is None
    finally:
        api.close()
    stored = installed.get("secret", "race-triton-admin", namespace)
    assert stored is not None
    assert base64.b64decode(stored["data"]["admin-key"]).decode() == "first"


def test_the_operator_may_not_list_or_watch_secrets(installed: Tools) -> None:
    """Acceptance 5 (as the operator's ServiceAccount, through impersonation)."""

    def can(verb: str, *scope: str) -> str:
        result = installed.kubectl(
            "auth", "can-i", verb, "secrets", *scope, "--as", OPERATOR_USER, check=False
        )
        return result.stdout.strip()

    assert can("list", "--all-namespaces") == "no"
    assert can("watch", "--all-namespaces") == "no"
    assert can("list", "-n", "default") == "no"
    assert can("get", "-n", "default") == "yes"  # by name: the Secret a service names


#: Unrelated Secrets for acceptance 3: 500 of 1 MB in 5 namespaces: 500 MB in etcd and in
#: the API server's watch cache.
BULK_NAMESPACES = 5
SECRETS_PER_NAMESPACE = 100
RSS_ALLOWANCE_KIB = 30 * 1024


def secret_reads(cluster: Any) -> list[dict[str, Any]]:
    """The operator's requests for Secrets (get, list, watch), from the audit log."""
    return [
        event
        for event in cluster.audit_events(user=OPERATOR_USER, verbs=("get", "list", "watch"))
        if event["objectRef"].get("resource") == "secrets"
    ]


@pytest.mark.kwok_only
def test_unrelated_secrets_cost_the_operator_nothing_and_a_rotated_secret_still_rolls(
    cluster: Any, operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    """Acceptance 3: 500 MB of Secrets in other namespaces leave the operator's memory where it
    was (it cannot list or watch them: acceptance 5), and the Secret a service names, rotated,
    still rolls its pods (at the next resync: pods roll on its resourceVersion)."""
    tools = installed
    create_service_with_credentials(tools, namespace)
    idle = peak_rss(operator, 20).process  # one resync of every service (15 s here) included

    bulk = [f"{namespace[:40]}-bulk-{i}" for i in range(BULK_NAMESPACES)]
    for name in bulk:
        tools.kubectl("create", "namespace", name)
    try:
        with PeakRss(operator) as sampler:
            took = sum(
                create_unrelated_secrets(cluster, name, SECRETS_PER_NAMESPACE) for name in bulk
            )
            time.sleep(20)  # a resync of every service included
        after = sampler.peak.process
        total_mb = BULK_NAMESPACES * SECRETS_PER_NAMESPACE * UNRELATED_SECRET_BYTES * 4 / 3 / 1e6
        print(
            f"\n{BULK_NAMESPACES * SECRETS_PER_NAMESPACE} unrelated Secrets ({total_mb:.0f} MB) "
            f"created in {took:.0f} s; operator RSS idle {idle / 1024:.1f} MiB, peak after "
            f"{after / 1024:.1f} MiB (allowance +{RSS_ALLOWANCE_KIB // 1024} MiB)"
        )
        assert after <= idle + RSS_ALLOWANCE_KIB
        # What it received of Secrets, all session long: the audit log records every Secret
        # request (e2e/cluster/components.py's policy), and the operator's are gets by name.
        reads = secret_reads(cluster)
        assert reads, "the audit log records the operator's Secret reads"
        assert {e["verb"] for e in reads} == {"get"}, "it listed or watched Secrets"
        assert not [e for e in reads if e["objectRef"].get("namespace") in bulk]
        here = {
            e["objectRef"].get("name") for e in reads if e["objectRef"]["namespace"] == namespace
        }
        assert here == {"s3", "creds-triton-admin"}
        print(
            f"operator's Secret requests: {len(reads)}, all gets by name in services' "
            f"namespaces; in the bulk namespaces: 0"
        )

        secret = tools.get("secret", "s3", namespace)
        assert (
            secret_version(tools, namespace, "creds")
            == (secret or {})["metadata"]["resourceVersion"]
        )
        rotated = time.monotonic()
        rotate_and_wait_for_the_roll(tools, namespace, "creds", "s3", timeout=45)
        print(f"rotated Secret rolled the pods {time.monotonic() - rotated:.1f} s after the patch")
    finally:
        for name in bulk:
            tools.kubectl("delete", "namespace", name, "--wait=false", check=False)
