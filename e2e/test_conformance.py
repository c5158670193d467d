"""Conformance: the emulator against NVIDIA's real tritonserver, probe by probe.

The same probes run against `e2e/tritonsim` and against tritonserver 2.51 from the
`nvidia-pytriton` wheel (`e2e/realtriton`), both serving Triton's `simple` add/sub model with
the same `ServiceSettings`: health, server and model metadata (also for a model that does not
exist), model configuration, inference with JSON and with binary tensors through
tritonclient and as raw KServe v2 JSON, statistics, the repository index, load and unload
(also of an unknown model), metric families with their types, HELP texts and labels, and what
is counted as a failure (queue full, invalid input, a model that raises). Each probe reduces
an answer to plain data; a test fails when the two servers' data differ.

Where the emulator cannot or should not match, the probe leaves the field out and
`DIFFERENCES` says why; `test_documented_differences_are_real` checks that each of them still
holds against the real server, so the list (mirrored in e2e/tritonsim/README.md) cannot go
stale. Timings are never compared (the model's sleep is not the emulator's event clock), only
counts, codes, shapes and messages.

Servers bind 127.0.0.1 on free ports (no pod IPs: no data-plane lock needed). Start-up time
and resident memory of the real servers are printed (figures, not assertions).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from e2e.cluster.processes import free_ports
from e2e.realtriton import ModelSpec, TritonServer, TritonServerConfig, write_repository
from e2e.tritonsim import BackgroundLoop, EmulatorConfig, ServiceSettings, TritonEmulator
from e2e.tritonsim.metrics import TRITON_FAMILIES

HOST = "127.0.0.1"
MODEL = "simple"

#: The servers each side runs, by role: how the model serves there.
ROLES: dict[str, ServiceSettings] = {
    # Fast, two instances: metadata, inference, statistics, load/unload, metrics.
    "main": ServiceSettings(service_time_ms=5, instances=2),
    # Slow with a queue of one: the third concurrent request is rejected.
    "queue": ServiceSettings(service_time_ms=400, instances=1, max_queue_size=1),
    # Every execution raises.
    "failing": ServiceSettings(service_time_ms=5, error_rate=1.0),
    # Dynamic batching of up to 4 requests on one slow instance.
    "batch": ServiceSettings(service_time_ms=300, instances=1, max_batch_size=4),
}


@dataclass
class Side:
    """One data plane: the HTTP and metrics address of each role's server."""

    name: str
    http: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    grpc: dict[str, str] = field(default_factory=dict)

    def client(self, role: str = "main") -> httpclient.InferenceServerClient:
        return httpclient.InferenceServerClient(self.http[role], network_timeout=30)


@pytest.fixture(scope="module")
def emulator_side() -> Iterator[Side]:
    side = Side("emulator")
    with BackgroundLoop("conformance") as loop:
        emulators = []
        for role, service in ROLES.items():
            emulator = TritonEmulator(
                EmulatorConfig(
                    host=HOST, http_port=0, metrics_port=0, models=(MODEL,), service=service
                )
            )
            loop.run(emulator.start())
            emulators.append(emulator)
            side.http[role] = emulator.url
            side.metrics[role] = emulator.metrics_url
        try:
            yield side
        finally:
            for emulator in emulators:
                loop.run(emulator.stop())


@pytest.fixture(scope="module")
def real_side(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Side]:
    side = Side("tritonserver")
    root = tmp_path_factory.mktemp("realtriton")
    servers: list[TritonServer] = []
    try:
        for role, service in ROLES.items():
            repository = write_repository(root / role / "models", [ModelSpec(MODEL, service)])
            http_port, grpc_port, metrics_port = free_ports(3)
            server = TritonServer(
                TritonServerConfig(
                    host=HOST,
                    repository=repository,
                    http_port=http_port,
                    grpc_port=grpc_port,
                    metrics_port=metrics_port,
                    model_control_mode="explicit",
                    load_models=(MODEL,),
                ),
                die_with_parent=True,
            )
            server.start()
            servers.append(server)
        for role, server in zip(ROLES, servers, strict=True):
            started = server.wait_ready(60)
            resident, stubs = server.rss()
            print(
                f"\n[conformance] tritonserver {role}: ready {started:.2f}s after start, "
                f"RSS server {resident / 2**20:.0f} MiB, per instance "
                + ", ".join(f"{stub / 2**20:.0f} MiB" for stub in stubs)
            )
            side.http[role] = server.url
            side.grpc[role] = server.grpc_url
            side.metrics[role] = server.metrics_url
        yield side
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def sides(emulator_side: Side, real_side: Side) -> tuple[Side, Side]:
    return emulator_side, real_side


# ---------------------------------------------------------------------- plain HTTP


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def request(address: str, method: str, path: str, body: bytes | None = None) -> Reply:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return Reply(response.status, response.getheader("Content-Type", ""), response.read())
    finally:
        connection.close()


def simple_inputs(binary: bool, rows: int = 1) -> list[httpclient.InferInput]:
    first = np.arange(16 * rows, dtype=np.int32).reshape(rows, 16)
    second = np.full((rows, 16), 3, dtype=np.int32)
    inputs = []
    for name, value in (("INPUT0", first), ("INPUT1", second)):
        tensor = httpclient.InferInput(name, [rows, 16], "INT32")
        tensor.set_data_from_numpy(value, binary_data=binary)
        inputs.append(tensor)
    return inputs


def raw_infer_body(**changes: Any) -> bytes:
    body: dict[str, Any] = {
        "id": "req-1",
        "inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": list(range(16))},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16},
        ],
    }
    body.update(changes)
    return json.dumps(body).encode()


def compare(probe: Callable[[Side], Any], sides: tuple[Side, Side]) -> Any:
    """Run `probe` on both sides; fail with both observations when they differ."""
    emulator, real = sides
    expected = probe(real)
    observed = probe(emulator)
    assert observed == expected, (
        f"emulator differs from tritonserver\n  emulator:     {observed!r}\n"
        f"  tritonserver: {expected!r}"
    )
    return expected


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip()


def answer(reply: Reply) -> tuple[int, Any]:
    """Status and parsed body (JSON when it parses, else the raw bytes)."""
    try:
        return reply.status, reply.json()
    except ValueError:
        return reply.status, reply.body


# ---------------------------------------------------------------------- probes


def test_health(sides: tuple[Side, Side]) -> None:
    def probe(side: Side) -> Any:
        return [
            (reply.status, media_type(reply.content_type), reply.body)
            for reply in (
                request(side.http["main"], "GET", "/v2/health/live"),
                request(side.http["main"], "GET", "/v2/health/ready"),
            )
        ]

    compare(probe, sides)


def test_server_metadata(sides: tuple[Side, Side]) -> None:
    def probe(side: Side) -> Any:
        reply = request(side.http["main"], "GET", "/v2")
        body = reply.json()
        # extensions: see DIFFERENCES
        return (
            reply.status,
            media_type(reply.content_type),
            sorted(body),
            body["name"],
            body["version"],
        )

    compare(probe, sides)


def test_model_metadata(sides: tuple[Side, Side]) -> None:
    def probe(side: Side) -> Any:
        answers = []
        for path in (
            f"/v2/models/{MODEL}",
            f"/v2/models/{MODEL}/versions/1",
            "/v2/models/nope",
            f"/v2/models/{MODEL}/versions/7",
            f"/v2/models/{MODEL}/ready",
            "/v2/models/nope/ready",
        ):
            reply = request(side.http["main"], "GET", path)
            status, body = answer(reply)
            if isinstance(body, dict):
                body.pop("platform", None)  # see DIFFERENCES
            answers.append((path, status, media_type(reply.content_type), body))
        return answers

    compare(probe, sides)


def test_model_config(sides: tuple[Side, Side]) -> None:
    def probe(side: Side) -> Any:
        answers = {}
        for role in ("main", "queue", "batch"):
            config = side.client(role).get_model_config(MODEL)
            answers[role] = {
                "name": config["name"],
                "max_batch_size": config["max_batch_size"],
                "input": [(t["name"], t["data_type"], t["dims"]) for t in config["input"]],
                "output": [(t["name"], t["data_type"], t["dims"]) for t in config["output"]],
                "instances": [(g["kind"], g["count"]) for g in config["instance_group"]],
                "batching": {
                    key: config.get("dynamic_batching", {}).get(key)
                    for key in ("preferred_batch_size", "max_queue_delay_microseconds")
                },
                "max_queue_size": config.get("dynamic_batching", {})
                .get("default_queue_policy", {})
                .get("max_queue_size"),
            }
        return answers

    compare(probe, sides)


def test_inference_json_and_binary(sides: tuple[Side, Side]) -> None:
    def probe(side: Side) -> Any:
        client = side.client()
        answers: list[Any] = []
        for binary_in, binary_out, rows in ((False, False, 1), (True, True, 3), (True, False, 2)):
            outputs = [
                httpclient.InferRequestedOutput(name, binary_data=binary_out)
                for name in ("OUTPUT0", "OUTPUT1")
            ]
            result = client.infer(
                MODEL, simple_inputs(binary_in, rows), outputs=outputs, request_id="r7"
            )
            response = result.get_response()
            answers.append(
                {
                    "response": {k: v for k, v in response.items() if k != "outputs"},
                    "outputs": [
                        (o["name"], o["datatype"], o["shape"], "data" in o, o.get("parameters"))
                        for o in response["outputs"]
                    ],
                    "values": [result.as_numpy(n).tolist() for n in ("OUTPUT0", "OUTPUT1")],
                }
            )
        # One requested output only, and the raw JSON body of the KServe v2 protocol.
        only = client.infer(
            MODEL,
            simple_inputs(True),
            outputs=[httpclient.InferRequestedOutput("OUTPUT1", binary_data=True)],
        )
        answers.append([o["name"] for o in only.get_response()["outputs"]])
        reply = request(side.http["main"], "POST", f"/v2/models/{MODEL}/infer", raw_infer_body())
        answers.append((reply.status, media_type(reply.content_type), reply.json()))
        return answers

    compare(probe, sides)


def rejected(call: Callable[[], object]) -> tuple[str | None, str]:
    """The status and message tritonclient raises for a refused call."""
    with pytest.raises(InferenceServerException) as error:
        call()
    return error.value.status(), error.value.message()


def test_invalid_requests(sides: tuple[Side, Side]) -> None:
    def probe(side: Side) -> Any:
        address = side.http["main"]
        path = f"/v2/models/{MODEL}/infer"
        wrong_shape = [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 8], "data": [0] * 8},
            raw_infer_body_inputs()[1],
        ]
        wrong_type = [
            {"name": "INPUT0", "datatype": "FP32", "shape": [1, 16], "data": [0.0] * 16},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [0] * 16},
        ]
        too_many_rows = [
            {"name": n, "datatype": "INT32", "shape": [9, 16], "data": [0] * 144}
            for n in ("INPUT0", "INPUT1")
        ]
        cases = {
            "no inputs": raw_infer_body(inputs=[]),
            "one input": raw_infer_body(inputs=raw_infer_body_inputs()[:1]),
            "unknown input": raw_infer_body(
                inputs=[raw_infer_body_inputs()[0], {**raw_infer_body_inputs()[1], "name": "X"}]
            ),
            "one more input": raw_infer_body(
                inputs=[*raw_infer_body_inputs(), {**raw_infer_body_inputs()[0], "name": "X"}]
            ),
            "wrong shape": raw_infer_body(inputs=wrong_shape),
            "wrong datatype": raw_infer_body(inputs=wrong_type),
            "batch too large": raw_infer_body(inputs=too_many_rows),
            "unknown output": raw_infer_body(outputs=[{"name": "NOPE"}]),
            "not json": b"garbage",
        }
        answers = {
            name: answer(request(address, "POST", path, body)) for name, body in cases.items()
        }
        without_id = json.loads(cases["one input"])
        del without_id["id"]
        answers["one input, no id"] = answer(
            request(address, "POST", path, json.dumps(without_id).encode())
        )
        # The JSON parser's own description differs (rapidjson's, Python's): see DIFFERENCES.
        status, body = answers["not json"]
        answers["not json"] = (status, body["error"].split(":")[0])
        return answers

    compare(probe, sides)


def raw_infer_body_inputs() -> list[dict[str, Any]]:
    return list(json.loads(raw_infer_body())["inputs"])


def statistics(side: Side, role: str) -> dict[str, Any]:
    """The model's statistics reduced to counts (durations are the model's timing)."""
    stats = side.client(role).get_inference_statistics(MODEL)["model_stats"]
    (entry,) = stats
    return {
        "keys": sorted(entry),
        "name": entry["name"],
        "version": entry["version"],
        "inference_count": entry["inference_count"],
        "execution_count": entry["execution_count"],
        "inference_stats": {
            key: value["count"] for key, value in sorted(entry["inference_stats"].items())
        },
        "batch_stats": sorted(
            (b["batch_size"], b["compute_infer"]["count"]) for b in entry["batch_stats"]
        ),
        "last_inference_set": entry["last_inference"] > 0,
    }


def scrape(address: str) -> dict[str, Any]:
    """Families of a metrics endpoint: type, HELP and label names, and samples by labels."""
    host, port = address.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    reply = request(f"{host}:{port}", "GET", "/metrics")
    families = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        families[family.name] = {
            "type": family.type,
            "help": family.documentation,
            "labels": sorted({name for sample in family.samples for name in sample.labels}),
            "samples": {
                tuple(sorted(sample.labels.items())): sample.value for sample in family.samples
            },
        }
    return {"content_type": reply.content_type, "families": families}


def model_counters(side: Side, role: str) -> dict[str, float]:
    """The model's counter samples that count requests (not durations)."""
    families = scrape(side.metrics[role])["families"]
    counters = {}
    for name in (
        "nv_inference_request_success",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_pending_request_count",
    ):
        for labels, value in families[name]["samples"].items():
            if dict(labels).get("model") == MODEL:
                counters[name] = value
    for labels, value in families["nv_inference_request_failure"]["samples"].items():
        label = dict(labels)
        if label.get("model") == MODEL:
            counters[f"failure/{label['reason']}"] = value
    return counters


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before.get(key, 0.0) for key in after}


def test_statistics_count_what_ran(sides: tuple[Side, Side]) -> None:
    def probe(side: Side) -> Any:
        before = statistics(side, "main")
        client = side.client()
        for rows in (1, 2, 3):
            client.infer(MODEL, simple_inputs(True, rows))
        after = statistics(side, "main")
        everything = side.client().get_inference_statistics()["model_stats"]
        return {
            "keys": after["keys"],
            "inference_count": after["inference_count"] - before["inference_count"],
            "execution_count": after["execution_count"] - before["execution_count"],
            "success": after["inference_stats"]["success"] - before["inference_stats"]["success"],
            "stat_kinds": sorted(after["inference_stats"]),
            "all_models": [(m["name"], m["version"]) for m in everything],
            "unknown": answer(request(side.http["main"], "GET", "/v2/models/nope/stats")),
        }

    compare(probe, sides)


def test_metric_families(sides: tuple[Side, Side]) -> None:
    """Every family the emulator prints exists in Triton with its type, HELP and labels."""
    emulator, real = (scrape(side.metrics["main"]) for side in sides)
    for name in TRITON_FAMILIES:
        assert name in real["families"], f"{name}: tritonserver has no such family"
        for key in ("type", "help", "labels"):
            assert emulator["families"][name][key] == real["families"][name][key], (name, key)
    assert set(emulator["families"]) == set(TRITON_FAMILIES) == set(real["families"])
    assert emulator["content_type"] == real["content_type"]
    # Triton prints one failure sample per reason for every loaded model.
    assert failure_reasons(emulator) == failure_reasons(real)


def failure_reasons(scraped: dict[str, Any]) -> list[str]:
    samples = scraped["families"]["nv_inference_request_failure"]["samples"]
    return sorted(dict(labels)["reason"] for labels in samples)


def test_repository_index(sides: tuple[Side, Side]) -> None:
    def probe(side: Side) -> Any:
        return [
            answer(request(side.http["main"], "POST", "/v2/repository/index", body))
            for body in (b"", b"{}", b'{"ready": true}')
        ]

    compare(probe, sides)


def test_model_errors_count_backend(sides: tuple[Side, Side]) -> None:
    def probe(side: Side) -> Any:
        before = model_counters(side, "failing")
        client = side.client("failing")
        errors = []
        for _ in range(2):
            status, message = rejected(lambda: client.infer(MODEL, simple_inputs(True)))
            # The python backend appends the model's Python traceback: see DIFFERENCES.
            errors.append((status, message.split("\n\nAt:\n", 1)[0]))
        stats = statistics(side, "failing")
        return {
            "errors": errors,
            "counted": delta(before, model_counters(side, "failing")),
            "statistics": {
                k: stats[k] for k in ("inference_count", "execution_count", "inference_stats")
            },
        }

    compare(probe, sides)


def test_invalid_input_is_not_counted(sides: tuple[Side, Side]) -> None:
    def probe(side: Side) -> Any:
        before = model_counters(side, "main")
        stats_before = statistics(side, "main")["inference_stats"]["fail"]
        bad = raw_infer_body(inputs=raw_infer_body_inputs()[:1])
        status = request(side.http["main"], "POST", f"/v2/models/{MODEL}/infer", bad).status
        return {
            "status": status,
            "counted": delta(before, model_counters(side, "main")),
            "failed in statistics": statistics(side, "main")["inference_stats"]["fail"]
            - stats_before,
        }

    compare(probe, sides)


def concurrently(calls: list[Callable[[], object]], spacing_s: float) -> list[object]:
    """Start each call in its own thread `spacing_s` after the previous; their results (or
    the exception each raised), in order."""
    results: list[object] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except Exception as error:  # the outcome under test
            results[index] = error

    threads = []
    for index in range(len(calls)):
        thread = threading.Thread(target=run, args=(index,))
        thread.start()
        threads.append(thread)
        time.sleep(spacing_s)
    for thread in threads:
        thread.join(30)
    return results


def outcome(result: object) -> object:
    if isinstance(result, InferenceServerException):
        return ("error", result.status(), result.message())
    if isinstance(result, Exception):
        return ("exception", type(result).__name__, str(result))
    return "ok"


def test_queue_full(sides: tuple[Side, Side]) -> None:
    """One executing, one queued (max_queue_size 1): the third arrival is refused."""

    def probe(side: Side) -> Any:
        before = model_counters(side, "queue")

        def call() -> object:
            return side.client("queue").infer(MODEL, simple_inputs(True))

        results = concurrently([call, call, call], spacing_s=0.1)
        stats = statistics(side, "queue")
        return {
            "outcomes": [outcome(result) for result in results],
            "counted": delta(before, model_counters(side, "queue")),
            "statistics fail": stats["inference_stats"]["fail"],
        }

    compare(probe, sides)


def test_dynamic_batching(sides: tuple[Side, Side]) -> None:
    """One request executes alone; six more queue behind it and run as 4 + 2."""

    def probe(side: Side) -> Any:
        before = statistics(side, "batch")

        def call() -> object:
            return side.client("batch").infer(MODEL, simple_inputs(True))

        results = concurrently([call] * 7, spacing_s=0.02)
        after = statistics(side, "batch")
        return {
            "outcomes": [outcome(result) for result in results],
            "execution_count": after["execution_count"] - before["execution_count"],
            "batch_stats": after["batch_stats"],
        }

    compare(probe, sides)


def test_grpc_is_served_by_tritonserver_only(real_side: Side) -> None:
    """Inference over gRPC on the real server (the emulator has no gRPC endpoint)."""
    client = grpcclient.InferenceServerClient(real_side.grpc["main"])
    inputs = []
    for name, value in (
        ("INPUT0", np.arange(16, dtype=np.int32)),
        ("INPUT1", np.ones(16, np.int32)),
    ):
        tensor = grpcclient.InferInput(name, [1, 16], "INT32")
        tensor.set_data_from_numpy(value.reshape(1, 16))
        inputs.append(tensor)
    result = client.infer(MODEL, inputs)
    assert result.as_numpy("OUTPUT0").tolist() == [list(range(1, 17))]
    assert client.is_server_ready()


#: Where the emulator differs from tritonserver 2.51, and why (mirrored in
#: e2e/tritonsim/README.md). The probes above leave these fields out;
#: `test_documented_differences_are_real` checks each still holds.
DIFFERENCES: dict[str, str] = {
    "extensions": "server metadata lists only the extensions the emulator implements; "
    "tritonserver also lists classification, sequence, schedule_policy, shared memory, "
    "trace, logging",
    "traceback": "a model that raises: the python backend appends the model's Python "
    "traceback to the error message (file paths of the repository); the emulator has none",
    "json parser": "an unparsable body: 500 in both, but the parser's own description after "
    "'failed to parse the request JSON buffer:' is rapidjson's vs Python's",
    "unload transient": "after an unload tritonserver is unready for about a second while the "
    "model's stub process stops (strict readiness); the emulator unloads at once",
    "host memory": "nv_cpu_memory_*_bytes and nv_cpu_utilization are the host's in "
    "tritonserver (sampled each metrics interval); the emulator's are synthetic (16 GiB, a "
    "baseline plus in-flight requests), so per-pod values differ with load",
    "grpc": "only tritonserver serves gRPC (test_grpc_is_served_by_tritonserver_only)",
}


def _model_error_message(side: Side) -> str:
    return rejected(lambda: side.client("failing").infer(MODEL, simple_inputs(True)))[1]


def _unparsable_body_message(side: Side) -> str:
    reply = request(side.http["main"], "POST", f"/v2/models/{MODEL}/infer", b"garbage")
    return str(reply.json()["error"])


def _memory_total(side: Side) -> float:
    families = scrape(side.metrics["main"])["families"]
    return float(families["nv_cpu_memory_total_bytes"]["samples"][()])


def _host_memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_documented_differences_are_real(sides: tuple[Side, Side]) -> None:
    emulator, real = sides
    extensions = [set(request(s.http["main"], "GET", "/v2").json()["extensions"]) for s in sides]
    assert extensions[0] < extensions[1], DIFFERENCES["extensions"]

    assert "\n\nAt:\n" in _model_error_message(real), DIFFERENCES["traceback"]
    assert "\n\nAt:\n" not in _model_error_message(emulator), DIFFERENCES["traceback"]

    messages = [_unparsable_body_message(side) for side in sides]
    assert messages[0] != messages[1], DIFFERENCES["json parser"]

    deadline = time.monotonic() + 10  # tritonserver samples host memory every 2 s
    while _memory_total(real) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _memory_total(real) == _host_memory_bytes(), DIFFERENCES["host memory"]
    assert _memory_total(emulator) != _host_memory_bytes(), DIFFERENCES["host memory"]

    assert not emulator.grpc and real.grpc, DIFFERENCES["grpc"]


def readiness_after_unload(side: Side) -> list[int]:
    """Server readiness sampled every 0.1 s for 2 s after an unload, and on until it is ready
    again (at most 10 s); the model is loaded again afterwards."""
    address = side.http["main"]
    assert request(address, "POST", f"/v2/repository/models/{MODEL}/unload", b"{}").status == 200
    samples: list[int] = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline or (samples[-1] != 200 and time.monotonic() < deadline + 8):
        samples.append(request(address, "GET", "/v2/health/ready").status)
        time.sleep(0.1)
    assert request(address, "POST", f"/v2/repository/models/{MODEL}/load", b"{}").status == 200
    return samples


def test_unload_transient_is_documented(sides: tuple[Side, Side]) -> None:
    emulator, real = (readiness_after_unload(side) for side in sides)
    assert 400 in real and real[-1] == 200, (DIFFERENCES["unload transient"], real)
    assert set(emulator) == {200}, (DIFFERENCES["unload transient"], emulator)


def test_unload_and_load(sides: tuple[Side, Side]) -> None:
    """Unload the model, watch readiness, load it again; also load/unload unknown models."""

    def probe(side: Side) -> Any:
        address = side.http["main"]

        def post(path: str) -> tuple[int, Any]:
            return answer(request(address, "POST", path, b"{}"))

        def get(path: str) -> int:
            return request(address, "GET", path).status

        steps: dict[str, Any] = {"unload": post(f"/v2/repository/models/{MODEL}/unload")}
        # Readiness right after the unload, and what it settles to.
        steps["model ready"] = get(f"/v2/models/{MODEL}/ready")
        deadline = time.monotonic() + 5
        while get("/v2/health/ready") != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        steps["server ready after unload (settled)"] = get("/v2/health/ready")
        steps["index"] = post("/v2/repository/index")
        steps["metadata"] = answer(request(address, "GET", f"/v2/models/{MODEL}"))
        steps["infer"] = answer(
            request(address, "POST", f"/v2/models/{MODEL}/infer", raw_infer_body())
        )[0]
        steps["load"] = post(f"/v2/repository/models/{MODEL}/load")
        steps["model ready after load"] = get(f"/v2/models/{MODEL}/ready")
        steps["server ready after load"] = get("/v2/health/ready")
        steps["index after load"] = post("/v2/repository/index")
        steps["load unknown"] = post("/v2/repository/models/nope/load")
        steps["unload unknown"] = post("/v2/repository/models/nope/unload")
        steps["server ready at the end"] = get("/v2/health/ready")
        return steps

    compare(probe, sides)
