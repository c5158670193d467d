"""Hand-run smoke test of the local e2e cluster: ``python -m e2e.cluster.smoke`` (repo root).

Starts a throwaway cluster in a temp state dir, checks what the e2e suite relies on, prints a
timing per step, and always tears down. Exit code 0 = all checks passed.

Checks: real /version; the five KWOK nodes Ready with their GPU resources; the scheduler
honours extended resources and taints (GPU pod -> H100 node, MIG pod -> A100 node, GPU pod
without toleration -> Pending/FailedScheduling, CPU pod -> CPU node); KWOK gives pods IPs in
127.64.0.0/16; Deployment -> ReplicaSet -> Pods and garbage collection work; what Endpoints
and EndpointSlices do with loopback pod IPs; TokenRequest (API and ``kubectl create token``)
and RBAC 403 for a ServiceAccount kubeconfig; audit log records the SA's write with its user;
restart_apiserver(); down() leaves no process behind.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from . import binaries
from .cluster import ApiError, LocalCluster, signals_raise, wait_for

NS = "smoke"
SA = "tritonop"
POD_NET = ipaddress.ip_network("127.64.0.0/16")
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

results: list[tuple[str, float, str]] = []


def step(name: str) -> Callable[[Callable[[], str | None]], None]:
    """Run the decorated function now, timing it; record and print the outcome."""

    def run(fn: Callable[[], str | None]) -> None:
        t0 = time.monotonic()
        print(f"--- {name}", flush=True)
        note = fn() or ""
        dt = time.monotonic() - t0
        results.append((name, dt, note))
        print(f"    ok ({dt:.2f}s) {note}", flush=True)

    return run


def pod(
    name: str,
    resources: dict[str, str] | None = None,
    tolerations: list[dict[str, str]] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "main", "image": "nvcr.io/nvidia/tritonserver:25.01-py3"}
    if resources:
        c["resources"] = {"limits": resources, "requests": resources}
    spec: dict[str, Any] = {"containers": [c]}
    if tolerations:
        spec["tolerations"] = tolerations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


def as_token(
    c: LocalCluster, token: str, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """Call the apiserver with a bearer token (no client cert): what the operator's SA sees."""
    ctx = ssl.create_default_context(cafile=str(c.pki_dir / "ca.crt"))
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(c.server + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def run_checks(c: LocalCluster, workdir: Path) -> None:
    api = c.api

    @step("version")
    def _() -> str:
        v = api("GET", "/version")
        assert v["gitVersion"] == binaries.KUBERNETES_VERSION, v
        assert v["major"] == "1" and v["minor"] == binaries.KUBERNETES_VERSION.split(".")[1], v
        return f"{v['gitVersion']} built {v['buildDate']} {v['goVersion']}"

    @step("nodes Ready with GPU resources")
    def _() -> str:
        nodes = {n["metadata"]["name"]: n for n in api("GET", "/api/v1/nodes")["items"]}
        assert set(nodes) == {"gpu-h100-a", "gpu-h100-b", "gpu-a100-mig", "cpu-a", "cpu-b"}, list(
            nodes
        )
        for n in nodes.values():
            assert any(
                x["type"] == "Ready" and x["status"] == "True" for x in n["status"]["conditions"]
            ), n["metadata"]["name"]
        assert nodes["gpu-h100-a"]["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        assert nodes["gpu-a100-mig"]["status"]["allocatable"]["nvidia.com/mig-1g.10gb"] == "7"
        assert (
            nodes["gpu-h100-b"]["metadata"]["labels"]["nvidia.com/gpu.product"]
            == "NVIDIA-H100-80GB-HBM3"
        )
        return ", ".join(f"{k}:{v['spec'].get('podCIDR')}" for k, v in sorted(nodes.items()))

    @step("namespace, ServiceAccount, Role")
    def _() -> None:
        api(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        )
        api(
            "POST",
            f"/api/v1/namespaces/{NS}/serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SA}},
        )
        api(
            "POST",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "smoke"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["pods", "configmaps"],
                        "verbs": ["get", "list", "create"],
                    }
                ],
            },
        )
        api(
            "POST",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "smoke"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "smoke",
                },
                "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": NS}],
            },
        )
        wait_for(
            lambda: c._exists(f"/api/v1/namespaces/{NS}/serviceaccounts/default"),
            30,
            "default SA in ns",
        )

    def wait_running(name: str, timeout: float = 30) -> dict[str, Any]:
        def ok() -> dict[str, Any] | None:
            p = api("GET", f"/api/v1/namespaces/{NS}/pods/{name}")
            ready = any(
                x["type"] == "Ready" and x["status"] == "True"
                for x in p["status"].get("conditions", [])
            )
            return (
                p
                if p["status"].get("phase") == "Running" and ready and p["status"].get("podIP")
                else None
            )

        return wait_for(ok, timeout, f"pod {name} Running+Ready")

    @step("GPU pod with toleration lands on an H100 node, Running, loopback pod IP")
    def _() -> str:
        api(
            "POST",
            f"/api/v1/namespaces/{NS}/pods",
            pod("gpu", {"nvidia.com/gpu": "1"}, [GPU_TOLERATION]),
        )
        p = wait_running("gpu")
        node, ip = p["spec"]["nodeName"], p["status"]["podIP"]
        assert node.startswith("gpu-h100-"), node
        assert ipaddress.ip_address(ip) in POD_NET, ip
        assert all(ipaddress.ip_address(x["ip"]) in POD_NET for x in p["status"]["podIPs"])
        return f"node={node} podIP={ip} hostIP={p['status'].get('hostIP')}"

    @step("MIG pod lands on the A100 node")
    def _() -> str:
        api(
            "POST",
            f"/api/v1/namespaces/{NS}/pods",
            pod("mig", {"nvidia.com/mig-1g.10gb": "1"}, [GPU_TOLERATION]),
        )
        p = wait_running("mig")
        assert p["spec"]["nodeName"] == "gpu-a100-mig", p["spec"]["nodeName"]
        return f"podIP={p['status']['podIP']}"

    @step("CPU pod lands on a CPU node (GPU nodes are tainted)")
    def _() -> str:
        api("POST", f"/api/v1/namespaces/{NS}/pods", pod("cpu", {"cpu": "1"}))
        p = wait_running("cpu")
        assert p["spec"]["nodeName"].startswith("cpu-"), p["spec"]["nodeName"]
        return f"node={p['spec']['nodeName']}"

    @step("GPU pod without toleration stays Pending with FailedScheduling")
    def _() -> str:
        api("POST", f"/api/v1/namespaces/{NS}/pods", pod("gpu-notol", {"nvidia.com/gpu": "1"}))

        def failed() -> str | None:
            evs = api(
                "GET", f"/api/v1/namespaces/{NS}/events?fieldSelector=involvedObject.name=gpu-notol"
            )["items"]
            for e in evs:
                if e["reason"] == "FailedScheduling":
                    return str(e["message"])
            return None

        msg = wait_for(failed, 30, "FailedScheduling event")
        p = api("GET", f"/api/v1/namespaces/{NS}/pods/gpu-notol")
        assert p["status"]["phase"] == "Pending" and not p["spec"].get("nodeName"), p["status"]
        return msg[:110]

    @step("too many GPUs: 9 > 8 per node stays Pending")
    def _() -> None:
        api(
            "POST",
            f"/api/v1/namespaces/{NS}/pods",
            pod("gpu-9", {"nvidia.com/gpu": "9"}, [GPU_TOLERATION]),
        )
        wait_for(
            lambda: any(
                x.get("reason") == "Unschedulable"
                for x in api("GET", f"/api/v1/namespaces/{NS}/pods/gpu-9")["status"].get(
                    "conditions", []
                )
            ),
            30,
            "PodScheduled=False/Unschedulable",
        )

    @step("Deployment -> ReplicaSet -> 2 Running pods; Service endpoints")
    def _() -> str:
        labels = {"app": "web"}
        api(
            "POST",
            f"/apis/apps/v1/namespaces/{NS}/deployments",
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "containers": [
                                {"name": "c", "image": "x", "ports": [{"containerPort": 8000}]}
                            ]
                        },
                    },
                },
            },
        )
        api(
            "POST",
            f"/api/v1/namespaces/{NS}/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {"selector": labels, "ports": [{"port": 8000}]},
            },
        )
        wait_for(
            lambda: (
                api("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/web")["status"].get(
                    "readyReplicas"
                )
                == 2
            ),
            60,
            "deployment web 2 ready replicas",
        )
        pods = api("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=app=web")["items"]
        ips = sorted(p["status"]["podIP"] for p in pods)
        # What the endpoint controllers make of loopback pod IPs (validation rejects 127/8).
        time.sleep(0)  # no fixed wait: give the controllers a bounded chance below

        def slice_state() -> str | None:
            sl = api(
                "GET",
                f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices?labelSelector=kubernetes.io/service-name=web",
            )["items"]
            evs = api(
                "GET", f"/api/v1/namespaces/{NS}/events?fieldSelector=involvedObject.name=web"
            )["items"]
            reasons = sorted({e["reason"] for e in evs if e["involvedObject"]["kind"] == "Service"})
            eps = sum(len(s.get("endpoints") or []) for s in sl)
            if eps or reasons:
                return f"endpointslice endpoints={eps} service events={reasons}"
            return None

        try:
            state = wait_for(slice_state, 15, "endpoint controller reaction")
        except Exception as e:
            state = f"no reaction: {e}"
        return f"pod IPs {ips}; {state}"

    @step("Endpoints/EndpointSlice with a 127.x address are rejected by validation")
    def _() -> str:
        notes = []
        try:
            api(
                "POST",
                f"/api/v1/namespaces/{NS}/endpoints",
                {
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": "manual"},
                    "subsets": [{"addresses": [{"ip": "127.64.0.5"}], "ports": [{"port": 8000}]}],
                },
            )
            notes.append("Endpoints ACCEPTED")
        except ApiError as e:
            assert e.status == 422, e
            notes.append("Endpoints 422")
        try:
            api(
                "POST",
                f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices",
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {"name": "manual"},
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": ["127.64.0.5"]}],
                    "ports": [{"port": 8000}],
                },
            )
            notes.append("EndpointSlice ACCEPTED")
        except ApiError as e:
            assert e.status == 422, e
            notes.append(f"EndpointSlice 422 ({str(e.body.get('message'))[:80]})")
        return "; ".join(notes)

    @step("garbage collection: delete Deployment -> ReplicaSet and pods go")
    def _() -> None:
        api("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/web")
        wait_for(
            lambda: (
                not api("GET", f"/apis/apps/v1/namespaces/{NS}/replicasets")["items"]
                and not api("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=app=web")["items"]
            ),
            60,
            "GC of web",
        )

    sa_kc = workdir / "sa.kubeconfig"

    @step("TokenRequest kubeconfig for the SA: allowed 200, forbidden 403")
    def _() -> str:
        c.service_account_kubeconfig(NS, SA, sa_kc, duration_seconds=3600)
        token = yaml.safe_load(sa_kc.read_text())["users"][0]["user"]["token"]
        code, _b = as_token(c, token, "GET", f"/api/v1/namespaces/{NS}/pods")
        assert code == 200, code
        code, body = as_token(c, token, "GET", "/api/v1/nodes")
        assert code == 403, (code, body)
        code, _b = as_token(
            c,
            token,
            "POST",
            f"/api/v1/namespaces/{NS}/configmaps",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "by-sa"}},
        )
        assert code == 201, code
        return str(body["message"])[:100]

    @step("kubectl create token + kubectl as the SA")
    def _() -> str:
        kubectl = shutil.which("kubectl")
        if not kubectl:
            return "SKIPPED: kubectl not on PATH"
        env = dict(os.environ, KUBECONFIG=str(c.kubeconfig))
        tok = subprocess.run(
            [kubectl, "create", "token", SA, "-n", NS, "--duration=10m"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert tok.count(".") == 2, tok
        r = subprocess.run(
            [kubectl, "--kubeconfig", str(sa_kc), "get", "nodes"], capture_output=True, text=True
        )
        assert r.returncode != 0 and "forbidden" in r.stderr.lower(), r.stderr
        r = subprocess.run(
            [kubectl, "--kubeconfig", str(sa_kc), "get", "pods", "-n", NS, "-o", "name"],
            capture_output=True,
            text=True,
            check=True,
        )
        return f"kubectl get nodes as SA: forbidden; get pods: {len(r.stdout.split())}"

    @step("audit log records the SA's write with its user")
    def _() -> str:
        user = f"system:serviceaccount:{NS}:{SA}"
        evs = c.audit_events(user=user, verbs=["create"])
        cm = [
            e
            for e in evs
            if e["objectRef"].get("resource") == "configmaps"
            and e["objectRef"].get("name") == "by-sa"
        ]
        assert len(cm) == 1, evs
        assert not c.audit_events(verbs=["get", "list", "watch"]), "reads should not be audited"
        total = len(c.audit_events())
        return (
            f"{len(evs)} create by {user}; {total} events total; {c.audit_log.stat().st_size} bytes"
        )

    @step("restart_apiserver(); SA kubeconfig still valid")
    def _() -> str:
        dt = c.restart_apiserver()
        token = yaml.safe_load(sa_kc.read_text())["users"][0]["user"]["token"]
        code, _b = as_token(c, token, "GET", f"/api/v1/namespaces/{NS}/pods")
        assert code == 200, code
        api("POST", f"/api/v1/namespaces/{NS}/pods", pod("after-restart", {"cpu": "1"}))
        wait_running("after-restart")
        return f"restart took {dt:.1f}s; scheduling + KWOK work afterwards"


def main() -> int:
    ap = argparse.ArgumentParser(
        prog="python -m e2e.cluster.smoke", description=__doc__.splitlines()[0]
    )
    ap.add_argument(
        "--keep", action="store_true", help="leave the cluster running (prints its state dir)"
    )
    a = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tritonop-smoke-"))
    c = LocalCluster(workdir / "cluster", die_with_parent=not a.keep)
    ok = False
    with signals_raise():
        try:
            t0 = time.monotonic()
            c.up()
            results.append(("up()", time.monotonic() - t0, ""))
            run_checks(c, workdir)
            ok = True
        except Exception:
            import traceback

            traceback.print_exc()
            if c.state_dir.exists():
                print(f"logs: {c.dump_logs(workdir / 'logs')}", file=sys.stderr)
        finally:
            if a.keep and ok:
                print(
                    f"cluster left running: export KUBECONFIG={c.kubeconfig}\n"
                    f"stop it with: e2e/cluster/down --state-dir {c.state_dir}"
                )
            else:
                t0 = time.monotonic()
                pids = [p["pid"] for p in c._state().get("pids", {}).values()]
                c.down()
                left = [p for p in pids if Path(f"/proc/{p}").exists()]
                results.append(
                    (
                        "down()",
                        time.monotonic() - t0,
                        f"leftover pids: {left}" if left else "no process left",
                    )
                )
                if left:
                    ok = False
    print("\n== timings ==")
    for name, dt, note in results:
        print(f"{dt:7.2f}s  {name}  {note}")
    if ok and not a.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not ok:
        print(f"kept for inspection: {workdir}")
    print("SMOKE " + ("PASSED" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
