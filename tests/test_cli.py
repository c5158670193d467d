"""`tritonop render` and `tritonop crd` as a reviewer or a GitOps pipeline runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tritonop.cli import main

ROOT = Path(__file__).resolve().parents[1]
GPU_EXAMPLE = ROOT / "manifests" / "examples" / "gpu-h100.yaml"


def node(
    name: str, labels: dict[str, str] | None = None, allocatable: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110", **(allocatable or {})}
        },
    }


def render(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["render", *args])
    out, err = capsys.readouterr()
    return code, out, err


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_gpu_example_shows_every_gpu_field(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = render(capsys, "-f", str(GPU_EXAMPLE))
    assert code == 0
    deployment = next(d for d in documents(out) if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert {
        "key": "nvidia.com/gpu.product",
        "operator": "In",
        "values": ["NVIDIA-H100-80GB-HBM3"],
    } in terms[0]["matchExpressions"]
    assert any(t.get("key") == "nvidia.com/gpu" for t in pod["tolerations"])
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("http", 8000),
        ("grpc", 8001),
        ("metrics", 8002),
    ]
    for probe, path in (
        ("livenessProbe", "/v2/health/live"),
        ("readinessProbe", "/v2/health/ready"),
        ("startupProbe", "/v2/health/ready"),
    ):
        assert container[probe]["httpGet"]["path"] == path
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert [d["kind"] for d in documents(out)] == [
        "NetworkPolicy",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    ]
    assert "also creates the Secret llm-h100-triton-admin" in out
    assert "placement GPU" in out.splitlines()[0] and "placement GPU" in err


def test_cpu_only_nodes_with_fallback_cpu_drop_every_gpu_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(
        yaml.safe_dump(
            {"apiVersion": "v1", "kind": "List", "items": [node("cpu-a"), node("cpu-b")]}
        )
    )
    code, out, err = render(
        capsys, "-f", str(GPU_EXAMPLE), "--nodes", str(nodes), "--fallback", "CPU"
    )
    assert code == 0
    assert "nvidia.com/gpu" not in out.split("---", 1)[1]
    assert "# InferenceService default/llm-h100: placement CPUFallback (NoMatchingGPUNode)" in out
    assert "CPUFallback" in err


def test_nodes_as_several_documents_and_stdin(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(
        yaml.safe_dump_all(
            [
                node(
                    "h100",
                    {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                    {"nvidia.com/gpu": "8"},
                ),
                node("cpu"),
            ]
        )
    )
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(GPU_EXAMPLE.read_text()))
    code, out, _ = render(capsys, "-f", "-", "--nodes", str(nodes))
    assert code == 0 and "placement GPU (GPUNodesAvailable)" in out


BAD = """
apiVersion: tritonop.io/v1alpha1
kind: InferenceService
metadata: {name: bad}
spec:
  modelRepository: {uri: "ftp://models"}
  gpu: {count: -1}
  autoscaling: {minReplicas: 3, maxReplicas: 1, targets: {queueDepth: 2}}
"""


def test_invalid_input_exits_2_names_the_fields_and_prints_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GPU_EXAMPLE.read_text() + "\n---\n" + BAD)
    code, out, err = render(capsys, "-f", str(bad))
    assert code == 2
    assert out == ""
    assert "spec.modelRepository.uri: must start with s3://" in err
    assert "spec.gpu.count: must be 0 (CPU only)" in err


@pytest.mark.parametrize(
    "content", ["{", "- just\n- a list\n", "apiVersion: v1\nkind: ConfigMap\n"]
)
def test_unreadable_or_empty_input_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str
) -> None:
    path = tmp_path / "in.yaml"
    path.write_text(content)
    code, out, err = render(capsys, "-f", str(path))
    assert (code, out) == (2, "") and err.startswith("tritonop render:")


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = render(capsys, "-f", str(tmp_path / "absent.yaml"))
    assert (code, out) == (2, "") and "absent.yaml" in err


def test_console_script_prints_the_crd() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tritonop.cli", "crd"], capture_output=True, text=True, check=True
    )
    assert yaml.safe_load(result.stdout)["metadata"]["name"] == "inferenceservices.tritonop.io"


def test_metrics_behind_a_bearer_token(tmp_path: Path) -> None:
    """/metrics names every tenant's services: with a token file, only its holder reads it."""
    import urllib.error
    import urllib.request

    from tritonop.cli import serve_metrics

    token = tmp_path / "token"
    token.write_text("s3cret\n")
    server = serve_metrics("127.0.0.1", 0, str(token))
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        for header in (None, "Bearer wrong", "s3cret"):
            request = urllib.request.Request(
                url, headers={"Authorization": header} if header else {}
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert b"process_max_fds" in response.read()
        token.write_text("rotated")  # a rotated Secret takes effect without a restart
        request = urllib.request.Request(url, headers={"Authorization": "Bearer rotated"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
    finally:
        server.shutdown()
    open_server = serve_metrics("127.0.0.1", 0, "")
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{open_server.server_port}/metrics", timeout=5
        ) as response:
            assert response.status == 200
    finally:
        open_server.shutdown()
