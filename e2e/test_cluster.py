"""The local control plane does what the rest of the suite relies on (e2e/README.md, "The
simulated cluster"): what the other tests take for granted, checked on its own, so that a
broken cluster fails here with a plain message rather than somewhere inside an operator test.

- It is the pinned Kubernetes release, and its nodes are exactly `default_nodes()`: GPU,
  MIG and CPU resources, the GPU taint, pod CIDRs inside 127.64.0.0/16.
- The scheduler counts extended resources and honours the GPU taint, and KWOK gives pods
  loopback IPs from their node's CIDR (the network rule: tests dial nothing else).
- Endpoints and EndpointSlices refuse loopback addresses, which is why nothing here may
  discover pods through Services.
- RBAC is enforced for ServiceAccount tokens (the operator runs as its own ServiceAccount, so
  a cluster that allowed everything would make the suite's RBAC claims meaningless), for
  `kubectl` too, and the audit log records each write once, with its user, and no reads but
  those of Secrets (the suite counts the operator's writes there, and the Secrets it reads).

That `down()` leaves no process behind is checked by the `cluster` fixture's teardown.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.cluster import ApiError, LocalCluster, default_nodes
from e2e.cluster.binaries import KUBERNETES_VERSION
from e2e.cluster.nodes import NODE_IP_PREFIX
from e2e.harness import Tools
from e2e.polling import wait_until

pytestmark = pytest.mark.kwok_only

LOOPBACK_PODS = ipaddress.IPv4Network("127.64.0.0/16")
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def pod(
    name: str, resources: dict[str, str], tolerations: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """A bare pod requesting `resources` (never run: KWOK only marks it Running)."""
    container = {
        "name": "main",
        "image": "nvcr.io/nvidia/tritonserver:25.01-py3",
        "resources": {"limits": resources, "requests": resources},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [container], "tolerations": tolerations or []},
    }


def running(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    """Wait until the pod is Running and Ready with a pod IP; return it."""

    def probe() -> dict[str, Any] | None:
        found: dict[str, Any] = cluster.api("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        status = found["status"]
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
        )
        return found if status.get("phase") == "Running" and ready and status.get("podIP") else None

    return wait_until(probe, 30, f"pod {namespace}/{name} Running and Ready with an IP")


def as_token(
    cluster: LocalCluster, token: str, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """Call the API server with a bearer token and no client certificate: what the
    operator's ServiceAccount sees. Returns (HTTP status, decoded body)."""
    context = ssl.create_default_context(cafile=str(cluster.pki_dir / "ca.crt"))
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(cluster.server + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read() or b"{}")


def test_the_pinned_release_with_the_default_nodes(cluster: LocalCluster) -> None:
    version = cluster.api("GET", "/version")
    assert version["gitVersion"] == KUBERNETES_VERSION, version
    assert version["major"] == "1" and version["minor"] == KUBERNETES_VERSION.split(".")[1]

    nodes = {n["metadata"]["name"]: n for n in cluster.api("GET", "/api/v1/nodes")["items"]}
    for spec in default_nodes():
        node = nodes.get(spec.name)
        assert node is not None, f"node {spec.name} missing: {sorted(nodes)}"
        status = node["status"]
        assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
        assert spec.labels.items() <= node["metadata"]["labels"].items(), spec.name
        assert spec.allocatable.items() <= status["allocatable"].items(), spec.name
        assert (node["spec"].get("taints") or []) == spec.taints, spec.name
        cidr = ipaddress.IPv4Network(node["spec"]["podCIDR"])
        assert cidr.subnet_of(LOOPBACK_PODS), f"{spec.name}: pod CIDR {cidr} off loopback"
        internal = [a["address"] for a in status["addresses"] if a["type"] == "InternalIP"]
        assert len(internal) == 1 and internal[0].startswith(f"{NODE_IP_PREFIX}.")


def test_scheduler_counts_gpus_honours_the_taint_and_pods_get_loopback_ips(
    cluster: LocalCluster, namespace: str
) -> None:
    pods = f"/api/v1/namespaces/{namespace}/pods"
    cluster.api("POST", pods, pod("gpu", {"nvidia.com/gpu": "1"}, [GPU_TOLERATION]))
    cluster.api("POST", pods, pod("cpu", {"cpu": "1"}))
    cluster.api("POST", pods, pod("untolerated", {"nvidia.com/gpu": "1"}))
    cluster.api("POST", pods, pod("nine-gpus", {"nvidia.com/gpu": "9"}, [GPU_TOLERATION]))

    gpu = running(cluster, namespace, "gpu")
    node = cluster.api("GET", f"/api/v1/nodes/{gpu['spec']['nodeName']}")
    assert node["metadata"]["name"].startswith("gpu-h100-")
    assert ipaddress.ip_address(gpu["status"]["podIP"]) in ipaddress.ip_network(
        node["spec"]["podCIDR"]
    )
    assert all(ipaddress.ip_address(i["ip"]) in LOOPBACK_PODS for i in gpu["status"]["podIPs"])
    internal = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
    assert gpu["status"]["hostIP"] == internal[0]
    assert running(cluster, namespace, "cpu")["spec"]["nodeName"].startswith("cpu-")

    def unschedulable(name: str) -> dict[str, Any] | None:
        """The pod once the scheduler has given up on it (PodScheduled=False/Unschedulable)."""
        found: dict[str, Any] = cluster.api("GET", f"{pods}/{name}")
        conditions = found["status"].get("conditions", [])
        rejected = any(
            c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions
        )
        return found if rejected else None

    for name, why in (
        ("untolerated", "untolerated taint"),
        ("nine-gpus", "Insufficient nvidia.com/gpu"),
    ):
        rejected = wait_until(partial(unschedulable, name), 30, f"pod {name} Unschedulable")
        assert rejected["status"]["phase"] == "Pending" and not rejected["spec"].get("nodeName")
        scheduled = next(c for c in rejected["status"]["conditions"] if c["type"] == "PodScheduled")
        assert why in scheduled["message"], scheduled["message"]
    events = cluster.api(
        "GET",
        f"/api/v1/namespaces/{namespace}/events?fieldSelector=involvedObject.name=untolerated",
    )["items"]
    assert "FailedScheduling" in {e["reason"] for e in events}


def test_endpoints_refuse_loopback_addresses(cluster: LocalCluster, namespace: str) -> None:
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "manual"},
        "subsets": [{"addresses": [{"ip": "127.64.0.5"}], "ports": [{"port": 8000}]}],
    }
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "manual"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.64.0.5"]}],
        "ports": [{"port": 8000}],
    }
    for path, body in (
        (f"/api/v1/namespaces/{namespace}/endpoints", endpoints),
        (f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices", endpoint_slice),
    ):
        with pytest.raises(ApiError) as refused:
            cluster.api("POST", path, body)
        assert refused.value.status == 422, refused.value
        assert "loopback" in str(refused.value), refused.value


def test_rbac_binds_service_account_tokens_and_the_audit_log_names_the_writer(
    cluster: LocalCluster, tools: Tools, namespace: str, tmp_path: Path
) -> None:
    account, rbac = "smoke", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    cluster.api(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
    )
    cluster.api(
        "POST",
        f"{rbac}/roles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": account},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "configmaps"],
                    "verbs": ["get", "list", "create"],
                }
            ],
        },
    )
    cluster.api(
        "POST",
        f"{rbac}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": account},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    )
    kubeconfig = cluster.service_account_kubeconfig(namespace, account, tmp_path / "sa.yaml")
    token = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]

    # The RBAC authorizer sees the new RoleBinding through its informer: a moment later.
    wait_until(
        lambda: as_token(cluster, token, "GET", f"/api/v1/namespaces/{namespace}/pods")[0] == 200,
        10,
        "the RoleBinding to allow listing pods",
    )
    status, body = as_token(cluster, token, "GET", "/api/v1/nodes")
    assert status == 403, (status, body)
    assert f"system:serviceaccount:{namespace}:{account}" in body["message"]
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "by-sa"}}
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    assert as_token(cluster, token, "POST", path, configmap)[0] == 201

    # kubectl reads the written kubeconfig the same way; and `kubectl create token` works.
    denied = tools.kubectl("--kubeconfig", str(kubeconfig), "get", "nodes", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr
    listed = tools.kubectl("--kubeconfig", str(kubeconfig), "get", "pods", "-n", namespace)
    assert listed.returncode == 0
    created = tools.kubectl("create", "token", account, "-n", namespace, "--duration=10m")
    assert created.stdout.strip().count(".") == 2, "not a JWT"

    user = f"system:serviceaccount:{namespace}:{account}"
    writes = [
        e for e in cluster.audit_events(user=user) if e["objectRef"].get("resource") == "configmaps"
    ]
    assert [(e["verb"], e["objectRef"].get("name")) for e in writes] == [("create", "by-sa")]
    assert writes[0]["responseStatus"]["code"] == 201
    reads = cluster.audit_events(verbs=["get", "list", "watch"])
    assert {e["objectRef"].get("resource") for e in reads} <= {"secrets"}, "reads are audited"
