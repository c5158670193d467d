"""The kind end-to-end kit (e2e/kind/), checked without Docker.

run.sh itself cannot run on these machines; what can be checked is that it parses, is strict
and cleans up, that its model builder makes a valid ONNX model computing sum and difference,
that the InferenceService it applies renders to a CPU-fallback Deployment that mounts the PVC
and loads that model, and that its data-plane check passes against the Triton emulator.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import yaml

from tritonop.cli import main as tritonop_main

ROOT = Path(__file__).resolve().parents[1]
KIND = ROOT / "e2e" / "kind"
RUN = KIND / "run.sh"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"kind_{name}", KIND / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_script_parses() -> None:
    result = subprocess.run(["bash", "-n", str(RUN)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_run_script_is_strict_honest_and_cleans_up() -> None:
    text = RUN.read_text()
    head = "\n".join(text.splitlines()[:10])
    assert "cannot run on the machines" in head, "the script says up front where it cannot run"
    assert "set -euo pipefail" in text
    assert re.search(r"^trap cleanup EXIT$", text, re.MULTILINE)
    assert "kind delete cluster" in text
    # The steps the kit promises, in order.
    steps = re.findall(r'^step "(\d)/8', text, re.MULTILINE)
    assert steps == [str(number) for number in range(1, 9)]
    for needed in (
        'docker build -f "$ROOT/operator/Dockerfile"',
        "kind load docker-image",
        "--set gpuFallback=CPU",
        "make_model.py",
        "port-forward --address 127.0.0.1",
        "TRITONOP_E2E_KUBECONFIG=",
    ):
        assert needed in text, needed


def test_kind_cluster_binds_the_api_server_to_loopback() -> None:
    config = yaml.safe_load((KIND / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster"
    assert config["networking"]["apiServerAddress"] == "127.0.0.1"


def test_make_model_writes_a_valid_add_sub_model(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx", reason="onnx is needed for the kind kit: pip install onnx")
    from onnx.reference import ReferenceEvaluator

    make_model = load("make_model")
    assert make_model.main([str(tmp_path)]) == 0
    model_dir = tmp_path / "simple"
    model = onnx.load(str(model_dir / "1" / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == make_model.IR_VERSION
    evaluator = ReferenceEvaluator(model)
    rng = np.random.default_rng(3)
    first = rng.integers(-1000, 1000, size=(3, 16), dtype=np.int32)
    second = rng.integers(-1000, 1000, size=(3, 16), dtype=np.int32)
    outputs = evaluator.run(None, {"INPUT0": first, "INPUT1": second})
    assert isinstance(outputs, list)  # a list of arrays, in the graph's output order
    total, difference = outputs
    assert total.dtype == np.int32 and np.array_equal(total, first + second)
    assert np.array_equal(difference, first - second)

    config = (model_dir / "config.pbtxt").read_text()
    assert 'name: "simple"' in config
    assert 'backend: "onnxruntime"' in config
    assert "max_batch_size: 8" in config
    assert "kind: KIND_CPU" in config
    tensors = re.findall(r'name: "(\w+)" data_type: TYPE_INT32 dims: \[ 16 \]', config)
    assert tensors == ["INPUT0", "INPUT1", "OUTPUT0", "OUTPUT1"]


def test_inferenceservice_renders_to_cpu_fallback_on_the_pvc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the operator would create on kind's single CPU node."""
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "tritonop-e2e-control-plane"},
                "status": {"allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"}},
            }
        )
    )
    status = tritonop_main(
        [
            "render",
            "-f",
            str(KIND / "inferenceservice.yaml"),
            "--nodes",
            str(nodes),
            "--fallback",
            "CPU",
        ]
    )
    assert status == 0
    objects = [obj for obj in yaml.safe_load_all(capsys.readouterr().out) if obj]
    deployment = next(obj for obj in objects if obj["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert (
        deployment["spec"]["template"]["metadata"]["annotations"]["tritonop.io/placement"]
        == "CPUFallback"
    )
    (container,) = [c for c in pod["containers"] if c["name"] == "triton"]
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["model-store"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/models")
    assert mount["subPath"] == "repo" and mount["readOnly"] is True
    assert "--load-model=simple" in container["args"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def emulator() -> Iterator[tuple[str, str]]:
    """The e2e Triton emulator on loopback, serving `simple` (stopped after the test)."""
    http_port, metrics_port = _free_port(), _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "e2e.tritonsim",
            "--host",
            "127.0.0.1",
            "--http-port",
            str(http_port),
            "--metrics-port",
            str(metrics_port),
            "--service-time-ms",
            "2",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", http_port), 0.2),
            ):
                break
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            time.sleep(0.1)
        yield f"127.0.0.1:{http_port}", f"127.0.0.1:{metrics_port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_check_triton_passes_against_the_emulator(emulator: tuple[str, str]) -> None:
    check_triton = load("check_triton")
    http, metrics = emulator
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = check_triton.main(
            ["--http", http, "--metrics", metrics, "--requests", "20", "--ready-timeout", "20"]
        )
    assert status == 0
    assert "20 inferences correct" in out.getvalue()
    assert "nv_inference_request_success +20" in out.getvalue()


def test_check_triton_rejects_wrong_answers(
    monkeypatch: pytest.MonkeyPatch, emulator: tuple[str, str]
) -> None:
    """The check is not a formality: a server that answers wrong makes it fail."""
    check_triton = load("check_triton")
    original = check_triton.triton_http.InferResult.as_numpy

    def off_by_one(self: Any, name: str) -> Any:
        return original(self, name) + (1 if name == "OUTPUT1" else 0)

    monkeypatch.setattr(check_triton.triton_http.InferResult, "as_numpy", off_by_one)
    http, metrics = emulator
    with pytest.raises(SystemExit, match="OUTPUT1 is not INPUT0 - INPUT1"):
        check_triton.main(
            ["--http", http, "--metrics", metrics, "--requests", "1", "--ready-timeout", "20"]
        )
