"""The pod runner without a cluster: pod events are fed by hand (watch=False).

Pod IPs are drawn from 127.201.0.0/16, away from the e2e cluster's 127.64.0.0/16, so this file
can run while an e2e cluster serves pods on the same machine.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.tritonsim import EmulatorConfig, MetricsFault, ServiceSettings, podrunner
from e2e.tritonsim.cluster_smoke import unready_stages
from e2e.tritonsim.podrunner import PodRunner, PodSettings, Server, desired_emulator


def loopback_ip() -> str:
    return f"127.201.{random.randint(1, 254)}.{random.randint(1, 254)}"


def triton_pod(
    name: str, ip: str | None, service: str = "isvc", phase: str = "Running"
) -> dict[str, Any]:
    """A pod as the operator renders it, as KWOK reports it once it is Running."""
    status: dict[str, Any] = {"phase": phase}
    if ip:
        status["podIP"] = ip
    return {
        "metadata": {
            "namespace": "team",
            "name": name,
            "labels": {
                "app.kubernetes.io/instance": service,
                "app.kubernetes.io/managed-by": "tritonop",
            },
        },
        "spec": {
            "containers": [
                {"name": "sidecar", "args": ["--load-model=wrong"]},
                {
                    "name": "triton",
                    "command": ["tritonserver"],
                    "args": [
                        "--model-repository=s3://bucket/models",
                        "--http-port=8000",
                        "--grpc-port=8001",
                        "--metrics-port=8002",
                        "--strict-readiness=true",
                        "--model-control-mode=explicit",
                        "--load-model=resnet50",
                    ],
                },
            ]
        },
        "status": status,
    }


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def post_json(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def runner() -> Iterator[PodRunner]:
    defaults = EmulatorConfig(service=ServiceSettings(service_time_ms=10))
    with PodRunner(watch=False, defaults=defaults, control_port=0) as pod_runner:
        yield pod_runner


def test_desired_emulator_reads_the_triton_container() -> None:
    desired = desired_emulator(triton_pod("p", "127.201.0.9"))
    assert desired is not None
    assert desired.ip == "127.201.0.9" and desired.service == "isvc"
    assert desired.args[0] == "tritonserver" and "--load-model=resnet50" in desired.args
    assert desired_emulator(triton_pod("p", None, phase="Pending")) is None
    assert desired_emulator(triton_pod("p", "127.201.0.9", phase="Succeeded")) is None


def test_pod_lifecycle_and_loopback_refusal(runner: PodRunner) -> None:
    first_ip, second_ip = loopback_ip(), loopback_ip()
    while second_ip == first_ip:
        second_ip = loopback_ip()
    runner.apply_event("ADDED", triton_pod("isvc-a", None, phase="Pending"))
    runner.apply_event("MODIFIED", triton_pod("isvc-a", first_ip))
    runner.apply_event("ADDED", triton_pod("isvc-b", "10.244.0.5"))
    runner.sync()

    statuses = {status.name: status for status in runner.pods()}
    assert statuses["isvc-a"].state == "serving"
    assert statuses["isvc-a"].models == ("resnet50",)
    assert statuses["isvc-b"].state == "refused"
    assert "outside 127.0.0.0/8" in statuses["isvc-b"].error
    assert get(f"http://{first_ip}:8000/v2/health/ready")[0] == 200
    status, text = get(f"http://{first_ip}:8002/metrics")
    assert status == 200 and 'nv_inference_request_success{model="resnet50",version="1"} 0' in text

    runner.apply_event("MODIFIED", triton_pod("isvc-a", second_ip))  # IP changed: move
    runner.sync()
    assert get(f"http://{second_ip}:8000/v2/health/live")[0] == 200
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{first_ip}:8000/v2/health/live", timeout=2)

    runner.apply_event("DELETED", triton_pod("isvc-a", second_ip))
    runner.sync()
    assert [status.name for status in runner.pods()] == ["isvc-b"]
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{second_ip}:8000/v2/health/live", timeout=2)


def test_control_api_per_service_and_over_http(runner: PodRunner) -> None:
    ips = {"isvc-a": loopback_ip(), "other-a": loopback_ip()}
    runner.configure(PodSettings(load_delay_s=0.0, instances=2), namespace="team", service="isvc")
    runner.apply_event("ADDED", triton_pod("isvc-a", ips["isvc-a"], service="isvc"))
    runner.apply_event("ADDED", triton_pod("other-a", ips["other-a"], service="other"))
    runner.sync()
    statuses = {status.name: status for status in runner.pods()}
    assert statuses["isvc-a"].instances == 2  # service settings hold for pods started later
    assert statuses["other-a"].instances == 1

    changed = runner.configure(
        PodSettings(service_time_ms=25, metrics_fault=MetricsFault.ERROR),
        namespace="team",
        service="isvc",
    )
    assert changed == ["team/isvc-a"]
    assert get(f"http://{ips['isvc-a']}:8002/metrics")[0] == 500
    assert get(f"http://{ips['other-a']}:8002/metrics")[0] == 200
    config = json.loads(get(f"http://{ips['isvc-a']}:8000/v2/models/resnet50/config")[1])
    assert config["instance_group"][0]["count"] == 2

    url = runner.control_url
    assert url is not None and url.startswith("http://127.0.0.1:")
    status, body = post_json(
        f"{url}/configure", {"namespace": "team", "pod": "isvc-a", "metricsFault": "ok"}
    )
    assert (status, body) == (200, {"changed": ["team/isvc-a"]})
    assert get(f"http://{ips['isvc-a']}:8002/metrics")[0] == 200
    status, body = post_json(f"{url}/configure", {"serviceTimeMs": -1})
    assert status == 400 and "service_time_ms" in body["error"]
    status, body = post_json(f"{url}/configure", {"colour": "blue"})
    assert status == 400 and "unknown settings" in body["error"]
    pods = json.loads(get(f"{url}/pods")[1])
    by_name = {pod["name"]: pod for pod in pods}
    assert by_name["isvc-a"]["service_time_ms"] == 25
    assert by_name["isvc-a"]["metrics_fault"] == "ok"
    assert by_name["other-a"]["service_time_ms"] == 10


def test_runner_marks_pods_ready_once_the_model_loaded() -> None:
    """With set_pod_readiness the runner plays the kubelet's readiness probe."""
    patches: list[tuple[str, str, dict[str, Any]]] = []
    defaults = EmulatorConfig(load_delay_s=0.3, service=ServiceSettings(service_time_ms=10))
    with PodRunner(
        watch=False,
        defaults=defaults,
        set_pod_readiness=True,
        status_patcher=lambda namespace, name, body: patches.append((namespace, name, body)),
    ) as pod_runner:
        unready = triton_pod("isvc-a", loopback_ip())
        unready["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
        pod_runner.apply_event("ADDED", unready)
        already_ready = triton_pod("isvc-b", loopback_ip())
        already_ready["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
        pod_runner.apply_event("ADDED", already_ready)
        pod_runner.sync()
        assert patches == []  # still loading its model
        pod_runner.wait_until(lambda statuses: all(status.ready for status in statuses))
        pod_runner.wait_until(lambda _: bool(patches))
    assert [(namespace, name) for namespace, name, _ in patches] == [("team", "isvc-a")]
    conditions = patches[0][2]["status"]["conditions"]
    assert {(c["type"], c["status"]) for c in conditions} == {
        ("Ready", "True"),
        ("ContainersReady", "True"),
    }


def test_unready_stages_leave_only_tritonop_pods_unready() -> None:
    stage: dict[str, Any] = {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": "pod-ready"},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {
                "matchExpressions": [
                    {"key": ".status.phase", "operator": "In", "values": ["Pending"]}
                ]
            },
            "next": {
                "statusTemplate": 'conditions:\n- status: "True"\n  type: Ready\n- status: "True"\n'
                "  type: ContainersReady\ncontainerStatuses:\n- name: x\n  ready: true\nphase: Running\n"
            },
        },
    }
    other = {"kind": "Stage", "metadata": {"name": "pod-delete"}, "spec": {}}
    stages = list(yaml.safe_load_all(unready_stages(yaml.safe_dump_all([stage, other]))))
    assert [s["metadata"]["name"] for s in stages] == [
        "pod-ready",
        "pod-running-unready-tritonop",
        "pod-delete",
    ]
    managed_by = '.metadata.labels["app.kubernetes.io/managed-by"]'
    assert stages[0]["spec"]["selector"]["matchExpressions"][-1] == {
        "key": managed_by,
        "operator": "NotIn",
        "values": ["tritonop"],
    }
    assert stages[1]["spec"]["selector"]["matchExpressions"][-1]["operator"] == "In"
    template = stages[1]["spec"]["next"]["statusTemplate"]
    assert '"True"' not in template and "ready: true" not in template
    assert "phase: Running" in template
    assert stages[0]["spec"]["next"] == stage["spec"]["next"]  # other pods: unchanged


def test_namespace_filter_and_termination_grace() -> None:
    """Pods outside the accepted namespaces get no emulator; a deleted pod's emulator keeps
    answering for the grace period (in-flight requests finish), then stops."""
    ip, other_ip = loopback_ip(), loopback_ip()
    while other_ip == ip:
        other_ip = loopback_ip()
    elsewhere = triton_pod("elsewhere", other_ip)
    elsewhere["metadata"]["namespace"] = "not-served"
    with PodRunner(
        watch=False,
        namespace_filter=lambda namespace: namespace == "team",
        termination_grace_s=1.0,
    ) as runner:
        runner.apply_event("ADDED", triton_pod("served", ip))
        runner.apply_event("ADDED", elsewhere)
        runner.sync()
        assert [status.name for status in runner.pods()] == ["served"]

        runner.apply_event("DELETED", triton_pod("served", ip))
        runner.sync()
        assert runner.pods() == []
        assert get(f"http://{ip}:8000/v2/health/live")[0] == 200  # still finishing up
        deadline = time.monotonic() + 5
        while _port_open(ip):
            assert time.monotonic() < deadline, "the deleted pod's emulator never stopped"
            time.sleep(0.1)


def test_a_new_pod_on_a_terminating_pods_ip_gets_its_own_server() -> None:
    """KWOK frees a deleted pod's IP with the pod object and may give it to the next pod at
    once: the old server, still in its grace, is stopped then, so that the new pod's clients
    reach the new pod's server (its models), not the old one's."""
    ip = loopback_ip()
    old = triton_pod("old", ip, service="first")
    new = triton_pod("new", ip, service="second")
    new["spec"]["containers"][1]["args"][-1] = "--load-model=bert"
    with PodRunner(watch=False, termination_grace_s=30.0) as runner:
        runner.apply_event("ADDED", old)
        runner.sync()
        assert get(f"http://{ip}:8000/v2/models/resnet50/ready")[0] == 200
        runner.apply_event("DELETED", old)
        runner.apply_event("ADDED", new)
        runner.sync()
        (status,) = runner.pods()
        assert (status.name, status.state, status.models) == ("new", "serving", ("bert",))
        assert get(f"http://{ip}:8000/v2/models/bert/ready")[0] == 200
        assert get(f"http://{ip}:8000/v2/models/resnet50/ready")[0] != 200


def _port_open(ip: str) -> bool:
    try:
        urllib.request.urlopen(f"http://{ip}:8000/v2/health/live", timeout=0.5)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_real_tritonserver_per_pod(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With server=tritonserver a pod gets NVIDIA's real server on its IP, from its own
    arguments: the pod is marked Ready when /v2/health/ready says so, the queue is read from
    its metrics, a killed server is started again after the restart delay, metrics faults
    are refused, and a deleted pod's server stops within the grace plus its exit timeout."""
    monkeypatch.setattr(podrunner, "RESTART_DELAY_S", 0.5)
    patches: list[tuple[str, str, dict[str, Any]]] = []
    ip = loopback_ip()
    pod = triton_pod("real", ip)
    pod["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    with PodRunner(
        watch=False,
        defaults=EmulatorConfig(service=ServiceSettings(service_time_ms=10)),
        set_pod_readiness=True,
        status_patcher=lambda namespace, name, body: patches.append((namespace, name, body)),
        termination_grace_s=0.5,
        work_dir=tmp_path,
    ) as runner:
        runner.configure(PodSettings(server=Server.TRITONSERVER), namespace="team", pod="real")
        runner.apply_event("ADDED", pod)
        runner.sync()
        (status,) = runner.wait_until(lambda s: bool(s) and s[0].ready, timeout=60)
        assert (status.server, status.models) == ("tritonserver", ("resnet50",))
        assert status.pid is not None and _process_alive(status.pid)
        assert "tritonserver" in Path(f"/proc/{status.pid}/cmdline").read_text()
        runner.wait_until(lambda _: bool(patches), timeout=10)
        assert [(namespace, name) for namespace, name, _ in patches] == [("team", "real")]
        assert get(f"http://{ip}:8000/v2/models/resnet50/ready")[0] == 200
        assert (tmp_path / "team" / "real" / "tritonserver.log").exists()

        with pytest.raises(ValueError, match="run tritonserver"):
            runner.configure(PodSettings(metrics_fault=MetricsFault.ERROR), namespace="team")

        killed = runner.kill_server("team", "real")
        (restarted,) = runner.wait_until(
            lambda s: bool(s) and s[0].ready and s[0].pid not in (None, killed), timeout=60
        )
        assert not _process_alive(killed)

        runner.apply_event("DELETED", pod)
        runner.sync()
        assert runner.pods() == []
        assert restarted.pid is not None
        began = time.monotonic()
        while _process_alive(restarted.pid):
            assert time.monotonic() - began < 0.5 + 2 + 3 + 1, "the server outlived its bound"
            time.sleep(0.1)


def test_the_runner_expands_arguments_from_the_pods_secrets_like_the_kubelet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`$(NAME)` in the container's args comes from its env (a secretKeyRef here); while the
    Secret is missing the server does not start (CreateContainerConfigError) and is retried."""
    monkeypatch.setattr(podrunner, "RETRY_INTERVAL_S", 0.2)
    secrets: dict[str, dict[str, str]] = {}
    reads: list[tuple[str, str]] = []

    def read_secret(namespace: str, name: str) -> dict[str, str] | None:
        reads.append((namespace, name))
        return secrets.get(name)

    ip = loopback_ip()
    pod = triton_pod("keyed", ip)
    container = pod["spec"]["containers"][1]
    container["args"] = [*container["args"][:-1], "--load-model=$(MODEL)", "--load-model=$$(X)"]
    container["env"] = [
        {"name": "MODEL", "valueFrom": {"secretKeyRef": {"name": "names", "key": "model"}}}
    ]
    defaults = EmulatorConfig(service=ServiceSettings(service_time_ms=10))
    with PodRunner(watch=False, defaults=defaults, secret_reader=read_secret) as runner:
        runner.apply_event("ADDED", pod)
        runner.sync()
        (waiting,) = runner.pods()
        assert waiting.state == "failed" and 'secret "names" not found' in waiting.error
        secrets["names"] = {"model": "densenet"}
        (serving,) = runner.wait_until(lambda s: bool(s) and s[0].state == "serving", timeout=10)
    assert serving.models == ("densenet", "$(X)")
    assert set(reads) == {("team", "names")} and len(reads) >= 2
