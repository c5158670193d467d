"""Real tritonserver for a pod (e2e/realtriton): the pod's rendered arguments rewritten to run
here, the repository written from the emulator's settings, and one real server started from an
InferenceService's arguments with Triton's restricted model-control API.

The server binds 127.0.0.1 on free ports (no pod IP, so no data-plane lock); one server start
costs 2-4 s.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from e2e.cluster.processes import free_ports
from e2e.realtriton import ModelSpec, model_config
from e2e.realtriton.pod import RealTritonPod, flags, pending_requests, pod_server_config
from e2e.tritonsim import BackgroundLoop, EmulatorConfig, ServiceSettings
from e2e.tritonsim.options import config_from_args
from tritonclient.utils import InferenceServerException

from tritonop.api import parse_object
from tritonop.render.lockdown import ADMIN_KEY_HEADER, ADMIN_KEY_VARIABLE
from tritonop.render.workload import triton_args

EXAMPLES = Path(__file__).resolve().parent.parent / "manifests" / "examples"
#: The operator renders every admin API behind one key header (tritonop.render.lockdown); the
#: kubelet expands `$(TRITONOP_ADMIN_KEY)` from the service's Secret, as `rendered_args` does.
KEY_HEADER = ADMIN_KEY_HEADER
KEY = "s3cret"
RESTRICTED_FLAGS = ("--http-restricted-api", "--grpc-restricted-protocol")


def rendered_args(example: str = "autoscaled") -> list[str]:
    """The `tritonserver` arguments the operator renders for an example (GPU placement), with
    the admin key expanded as the kubelet would."""
    document = yaml.safe_load((EXAMPLES / f"{example}.yaml").read_text())
    document["metadata"].update({"namespace": "models", "uid": "u-1"})
    args = triton_args(parse_object(document).spec, gpu=True)
    return ["tritonserver", *(arg.replace(f"$({ADMIN_KEY_VARIABLE})", KEY) for arg in args)]


def restricted_args(args: list[str]) -> tuple[str, ...]:
    """The restricted-API flags among `args`: what the operator locks down."""
    return tuple(arg for arg in args if arg.startswith(RESTRICTED_FLAGS))


def test_flags_accept_both_spellings() -> None:
    assert list(flags(["tritonserver", "--a=1", "--b", "2", "--c", "--d=x=y"])) == [
        ("tritonserver", None, ["tritonserver"]),
        ("--a", "1", ["--a=1"]),
        ("--b", "2", ["--b", "2"]),
        ("--c", None, ["--c"]),
        ("--d", "x=y", ["--d=x=y"]),
    ]


def test_pod_arguments_are_rewritten_only_where_this_machine_differs() -> None:
    args = [*rendered_args(), "--log-verbose", "1", "--service-time-ms=5"]
    restricted = restricted_args(args)
    assert len(restricted) == 2, args
    config, dropped = pod_server_config(args, host="127.64.0.7", repository=Path("/repo"))
    assert (config.http_port, config.grpc_port, config.metrics_port) == (8000, 8001, 8002)
    assert (config.model_control_mode, config.load_models) == ("explicit", ("simple",))
    assert config.strict_readiness
    assert config.extra_args == (*restricted, "--log-verbose", "1")
    assert dropped == [
        "--model-repository=s3://example-models/simple",
        "--allow-metrics=true",
        "--allow-gpu-metrics=true",
        "--service-time-ms=5",
    ]
    argv = config.argv(Path("/bin/tritonserver"), Path("/backends"))
    assert "--model-repository=/repo" in argv
    assert "--allow-gpu-metrics=false" in argv
    for endpoint in ("http", "grpc", "metrics"):
        assert f"--{endpoint}-address=127.64.0.7" in argv
    assert argv[-len(restricted) - 2 :] == [*restricted, "--log-verbose", "1"]


def test_repository_config_follows_the_emulator_settings() -> None:
    service = ServiceSettings(
        service_time_ms=80,
        service_time_cv=0.5,
        instances=3,
        max_batch_size=4,
        max_queue_delay_ms=2.5,
        max_queue_size=16,
        error_rate=0.1,
    )
    text = model_config(ModelSpec("resnet", service, load_delay_s=1.5, seed=7))
    assert 'name: "resnet"' in text and 'backend: "python"' in text
    assert "instance_group [ { count: 3 kind: KIND_CPU } ]" in text
    assert "preferred_batch_size: [ 4 ]" in text
    assert "max_queue_delay_microseconds: 2500" in text
    assert "default_queue_policy { max_queue_size: 16 }" in text
    for key, value in {
        "service_time_ms": "80",
        "service_time_cv": "0.5",
        "error_rate": "0.1",
        "load_delay_s": "1.5",
        "seed": "7",
    }.items():
        assert f'key: "{key}" value {{ string_value: "{value}' in text


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_batch_size": 9}, "max_batch_size must be between 1 and 8"),
        ({"error_rate": 2.0}, "error_rate must be between 0 and 1"),
        ({"max_queue_size": -1}, "max_queue_size must be >= 0"),
    ],
)
def test_repository_refuses_settings_triton_cannot_serve(
    changes: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ModelSpec("m", ServiceSettings(**changes))  # type: ignore[arg-type]


def test_pending_requests_sum_the_queue_gauge_over_models() -> None:
    page = (
        "# HELP nv_inference_pending_request_count Instantaneous number of pending requests\n"
        "# TYPE nv_inference_pending_request_count gauge\n"
        'nv_inference_pending_request_count{model="a",version="1"} 3\n'
        'nv_inference_pending_request_count{model="b",version="1"} 4\n'
        "# TYPE nv_inference_request_success counter\n"
        'nv_inference_request_success{model="a",version="1"} 12\n'
    )
    assert pending_requests(page) == 7


@pytest.fixture
def loop() -> Iterator[BackgroundLoop]:
    with BackgroundLoop("test-realtriton") as background:
        yield background


def post(address: str, path: str, headers: dict[str, str] | None = None) -> int:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", path, body=b"{}", headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_a_pod_runs_real_triton_with_the_restricted_model_control_api(
    loop: BackgroundLoop, tmp_path: Path
) -> None:
    """From an InferenceService's rendered args (the restricted-API flags among them): readiness
    follows /v2/health/ready, a model load without the key is refused over HTTP and gRPC and
    accepted with it, inference works on the gRPC port, and the server stops within its bound."""
    http_port, grpc_port, metrics_port = free_ports(3)
    args = [
        *[
            arg
            for arg in rendered_args()
            if not arg.startswith(("--http-port", "--grpc-port", "--metrics-port"))
        ],
        f"--http-port={http_port}",
        f"--grpc-port={grpc_port}",
        f"--metrics-port={metrics_port}",
    ]
    base = EmulatorConfig(service=ServiceSettings(service_time_ms=5), repository_models=("extra",))
    config, _ = config_from_args(args, base=base)
    config = replace(config, host="127.0.0.1")
    pod = RealTritonPod(config, args, tmp_path)
    pod.models.append(ModelSpec("extra", config.service))  # in the repository, not loaded
    loop.run(pod.start())
    try:
        deadline = time.monotonic() + 60
        while not pod.is_ready():
            assert pod.running() and time.monotonic() < deadline, pod.server.log_tail()
            time.sleep(0.1)
        address = pod.url
        assert post(address, "/v2/repository/models/extra/load") == 403
        assert post(address, "/v2/repository/models/extra/load", {KEY_HEADER: "wrong"}) == 403
        assert post(address, "/v2/repository/models/extra/load", {KEY_HEADER.title(): KEY}) == 200

        client = grpcclient.InferenceServerClient(pod.server.grpc_url)
        with pytest.raises(InferenceServerException, match="restricted"):
            client.unload_model("extra")
        client.unload_model("extra", headers={f"triton-grpc-protocol-{KEY_HEADER}": KEY})
        inputs = []
        for name in ("INPUT0", "INPUT1"):
            tensor = grpcclient.InferInput(name, [1, 16], "INT32")
            tensor.set_data_from_numpy(np.full((1, 16), 4, dtype=np.int32))
            inputs.append(tensor)
        assert client.infer("simple", inputs).as_numpy("OUTPUT0").tolist() == [[8] * 16]
        client.close()
    finally:
        seconds = loop.run(pod.stop())
    assert not pod.running()
    assert seconds <= pod.server.config.exit_timeout_s + 3.0
