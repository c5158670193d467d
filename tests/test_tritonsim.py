"""Fidelity of the Triton emulator: tritonclient works with its defaults, metrics mean what
Triton documents, and the fault modes misbehave as promised.

Emulators bind 127.0.0.1 on ports chosen by the kernel; service times are 10-20 ms so the
whole file runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace

import aiohttp
import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from e2e.tritonsim import (
    BackgroundLoop,
    EmulatorConfig,
    MetricsFault,
    ServiceSettings,
    TritonEmulator,
)
from e2e.tritonsim.metrics import TRITON_FAMILIES, triton_registry
from e2e.tritonsim.options import config_from_args
from e2e.tritonsim.tensors import Array
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from pages import ones_inputs

BASE = EmulatorConfig(http_port=0, metrics_port=0, service=ServiceSettings(service_time_ms=10))

StartEmulator = Callable[..., TritonEmulator]


@pytest.fixture(scope="module")
def background() -> Iterator[BackgroundLoop]:
    with BackgroundLoop() as loop:
        yield loop


@pytest.fixture
def start_emulator(background: BackgroundLoop) -> Iterator[StartEmulator]:
    """Start emulators in the background loop (for the blocking tritonclient.http client)."""
    started: list[TritonEmulator] = []

    def start(**changes: object) -> TritonEmulator:
        emulator = TritonEmulator(replace(BASE, **changes))  # type: ignore[arg-type]
        background.run(emulator.start())
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        background.run(emulator.stop())


def simple_inputs(
    first: Array, second: Array, *, binary: bool = True
) -> list[httpclient.InferInput]:
    inputs = []
    for name, value in (("INPUT0", first), ("INPUT1", second)):
        tensor = httpclient.InferInput(name, list(value.shape), "INT32")
        tensor.set_data_from_numpy(value, binary_data=binary)
        inputs.append(tensor)
    return inputs


def scrape(emulator: TritonEmulator) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the metrics endpoint, keyed by family name and sorted labels."""
    with urllib.request.urlopen(emulator.metrics_url, timeout=5) as response:
        text = response.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(family.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


SIMPLE = (("model", "simple"), ("version", "1"))


def test_sync_client_with_defaults(start_emulator: StartEmulator) -> None:
    emulator = start_emulator()
    client = httpclient.InferenceServerClient(emulator.url)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("simple")
        assert not client.is_model_ready("resnet50")
        metadata = client.get_server_metadata()
        assert {"binary_tensor_data", "statistics"} <= set(metadata["extensions"])
        model = client.get_model_metadata("simple")
        assert [(t["name"], t["datatype"], t["shape"]) for t in model["inputs"]] == [
            ("INPUT0", "INT32", [-1, 16]),
            ("INPUT1", "INT32", [-1, 16]),
        ]
        config = client.get_model_config("simple")
        assert config["max_batch_size"] == 8
        assert [output["name"] for output in config["output"]] == ["OUTPUT0", "OUTPUT1"]

        first = np.arange(32, dtype=np.int32).reshape(2, 16)
        second = np.full((2, 16), 3, dtype=np.int32)
        result = client.infer("simple", simple_inputs(first, second))  # binary both ways
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), first + second)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), first - second)

        json_result = client.infer(
            "simple",
            simple_inputs(first[:1], second[:1], binary=False),
            outputs=[httpclient.InferRequestedOutput("OUTPUT1", binary_data=False)],
            request_id="r-1",
        )
        response = json_result.get_response()
        assert response["id"] == "r-1"
        assert [output["name"] for output in response["outputs"]] == ["OUTPUT1"]
        assert response["outputs"][0]["data"] == (first[0] - second[0]).tolist()

        stats = client.get_inference_statistics("simple")["model_stats"][0]
        assert stats["inference_stats"]["success"]["count"] == 2
        assert stats["inference_count"] == 3  # rows: a batch of 2, then 1
        assert stats["execution_count"] == 2
        assert stats["inference_stats"]["compute_infer"]["ns"] == 2 * 10_000_000
    finally:
        client.close()


async def test_aio_client_with_defaults() -> None:
    emulator = TritonEmulator(replace(BASE, models=("simple", "densenet")))
    await emulator.start()
    client = aioclient.InferenceServerClient(emulator.url)
    try:
        assert await client.is_server_ready()
        assert await client.is_model_ready("densenet")
        first = np.ones((1, 16), dtype=np.int32)
        second = np.arange(16, dtype=np.int32).reshape(1, 16)
        inputs = []
        for name, value in (("INPUT0", first), ("INPUT1", second)):
            tensor = aioclient.InferInput(name, [1, 16], "INT32")
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        results = await asyncio.gather(*(client.infer("densenet", inputs) for _ in range(3)))
        for result in results:
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), first + second)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), first - second)
        stats = await client.get_inference_statistics()
        by_name = {entry["name"]: entry for entry in stats["model_stats"]}
        assert by_name["densenet"]["inference_stats"]["success"]["count"] == 3
        assert by_name["simple"]["inference_stats"]["success"]["count"] == 0
        index = await client.get_model_repository_index()
        assert {(entry["name"], entry["state"]) for entry in index} == {
            ("simple", "READY"),
            ("densenet", "READY"),
        }
    finally:
        await client.close()
        await emulator.stop()


def test_errors_use_triton_shape_and_only_failed_executions_count(
    start_emulator: StartEmulator,
) -> None:
    """As in tritonserver 2.51 (e2e/test_conformance.py): an unknown model is 404, requests
    refused before execution are not counted, a failing execution counts reason BACKEND."""
    emulator = start_emulator()
    client = httpclient.InferenceServerClient(emulator.url)
    good = np.zeros((1, 16), dtype=np.int32)
    try:
        with pytest.raises(InferenceServerException) as unknown:
            client.infer("nosuchmodel", simple_inputs(good, good))
        assert unknown.value.status() == "404"
        assert "unknown model: 'nosuchmodel'" in unknown.value.message()

        wrong_shape = np.zeros((1, 15), dtype=np.int32)
        with pytest.raises(InferenceServerException) as invalid:
            client.infer("simple", simple_inputs(wrong_shape, wrong_shape))
        # Both inputs are wrong; Triton names the one its map of the inputs yields first.
        assert "unexpected shape for input 'INPUT1'" in invalid.value.message()
        too_big = np.zeros((9, 16), dtype=np.int32)
        with pytest.raises(InferenceServerException, match="batch-size must be <= 8"):
            client.infer("simple", simple_inputs(too_big, too_big))
    finally:
        client.close()

    request = urllib.request.Request(
        f"http://{emulator.url}/v2/models/simple/infer", data=b"{not json", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as garbled:
        urllib.request.urlopen(request, timeout=5)
    assert garbled.value.code == 500
    assert "failed to parse the request JSON buffer" in garbled.value.read().decode()

    metrics = scrape(emulator)
    failures = {
        dict(labels)["reason"]: value
        for (name, labels), value in metrics.items()
        if name == "nv_inference_request_failure"
    }
    # Neither the invalid requests nor the unparsable body became an execution; the unknown
    # model has no counters at all.
    assert failures == {"OTHER": 0, "REJECTED": 0, "CANCELED": 0, "BACKEND": 0}
    assert metrics[("nv_inference_request_success", SIMPLE)] == 0

    emulator.set_service(replace(BASE.service, error_rate=1.0))
    with (
        httpclient.InferenceServerClient(emulator.url) as failing,
        pytest.raises(InferenceServerException) as raised,
    ):
        failing.infer("simple", simple_inputs(good, good))
    assert raised.value.status() == "500"
    assert "Failed to process the request(s) for model 'simple_0_0'" in raised.value.message()
    metrics = scrape(emulator)
    backend = (("model", "simple"), ("reason", "BACKEND"), ("version", "1"))
    assert metrics[("nv_inference_request_failure", backend)] == 1
    assert metrics[("nv_inference_exec_count", SIMPLE)] == 1
    assert metrics[("nv_inference_count", SIMPLE)] == 0


def test_readiness_follows_the_load_delay(start_emulator: StartEmulator) -> None:
    emulator = start_emulator(load_delay_s=0.4)
    client = httpclient.InferenceServerClient(emulator.url)
    try:
        assert client.is_server_live()
        assert not client.is_server_ready()
        assert not client.is_model_ready("simple")
        assert client.get_model_repository_index() == [
            {"name": "simple", "version": "1", "state": "LOADING"}
        ]
        assert ("nv_inference_request_success", SIMPLE) not in scrape(emulator)
        time.sleep(0.45)
        assert client.is_server_ready()
        assert client.is_model_ready("simple")
        assert scrape(emulator)[("nv_inference_request_success", SIMPLE)] == 0
    finally:
        client.close()


def test_metrics_text_is_shaped_like_tritons(start_emulator: StartEmulator) -> None:
    emulator = start_emulator()
    text = emulator.metrics_text().decode()
    assert re.search(r"_total[ {]", text) is None  # counters without `_total`, like Triton
    assert (
        "# HELP nv_inference_request_success Number of successful inference requests, all "
        "batch sizes\n"
        "# TYPE nv_inference_request_success counter\n"
        'nv_inference_request_success{model="simple",version="1"} 0\n'
    ) in text
    assert (
        "# TYPE nv_inference_pending_request_count gauge\n"
        'nv_inference_pending_request_count{model="simple",version="1"} 0\n'
    ) in text
    assert 'nv_inference_request_failure{model="simple",reason="REJECTED",version="1"} 0\n' in text

    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert set(families) == set(TRITON_FAMILIES)
    for name, (kind, help_text) in TRITON_FAMILIES.items():
        assert families[name].type == kind
        assert families[name].documentation == help_text
    # Why the emulator renders the text itself: prometheus-client's generate_latest names
    # counter families `<name>_total`, which its own parser then no longer reads as counters.
    munged = generate_latest(triton_registry(emulator.metrics_snapshot)).decode()
    assert "# TYPE nv_inference_count_total counter" in munged


async def test_queue_metrics_follow_a_burst() -> None:
    """A burst against one instance queues: pending > 0 while it waits, queue time as expected."""
    service_ms, burst = 20.0, 8
    settings = ServiceSettings(service_time_ms=service_ms)
    emulator = TritonEmulator(replace(BASE, service=settings))
    await emulator.start()
    client = aioclient.InferenceServerClient(emulator.url)
    inputs = ones_inputs()
    try:
        for _ in range(3):  # one at a time: nothing ever waits
            await client.infer("simple", inputs)
        quiet = emulator.metrics_snapshot().models[0]
        assert quiet.queue_duration_us == 0 and quiet.success == 3

        requests = [asyncio.create_task(client.infer("simple", inputs)) for _ in range(burst)]
        while emulator.metrics_snapshot().models[0].success == 3 and not all(
            task.done() for task in requests
        ):
            pending = emulator.metrics_snapshot().models[0].pending_request_count
            if pending > 0:
                break
            await asyncio.sleep(0.002)
        async with (
            aiohttp.ClientSession() as session,
            session.get(emulator.metrics_url) as response,
        ):
            during = response.status, await response.text()
        assert during[0] == 200
        pending_line = 'nv_inference_pending_request_count{model="simple",version="1"} '
        pending_during = int(during[1].split(pending_line)[1].split("\n")[0])
        assert pending_during > 0
        await asyncio.gather(*requests)

        after = emulator.metrics_snapshot().models[0]
        assert after.pending_request_count == 0
        assert after.success == 3 + burst
        assert after.exec_count == 3 + burst  # no dynamic batching: one execution per request
        assert after.inference_count == 3 + burst
        compute_us = (3 + burst) * service_ms * 1000
        assert after.compute_infer_duration_us == pytest.approx(compute_us, abs=5)
        assert after.request_duration_us == pytest.approx(
            after.queue_duration_us + after.compute_infer_duration_us, abs=5
        )
        # The k-th request of a simultaneous burst waits k service times: 0+1+...+7 = 28.
        # Requests leave the client a little apart, which can only shorten their waits.
        expected_queue_us = burst * (burst - 1) / 2 * service_ms * 1000
        assert 0.6 * expected_queue_us <= after.queue_duration_us <= expected_queue_us + 1000
    finally:
        await client.close()
        await emulator.stop()


async def test_dynamic_batching_and_queue_limit() -> None:
    batching = ServiceSettings(service_time_ms=10, max_batch_size=4, max_queue_delay_ms=150)
    emulator = TritonEmulator(replace(BASE, service=batching))
    await emulator.start()
    client = aioclient.InferenceServerClient(emulator.url)
    inputs = ones_inputs()
    try:
        config = await client.get_model_config("simple")
        assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 150_000
        await asyncio.gather(*(client.infer("simple", inputs) for _ in range(8)))
        stats = (await client.get_inference_statistics("simple"))["model_stats"][0]
        assert stats["inference_count"] == 8
        assert 2 <= stats["execution_count"] <= 4  # batches of up to 4 requests
        executions = sum(entry["compute_infer"]["count"] for entry in stats["batch_stats"])
        assert executions == stats["execution_count"]

        emulator.set_service(ServiceSettings(service_time_ms=30, max_queue_size=1))
        outcomes = await asyncio.gather(
            *(client.infer("simple", inputs) for _ in range(5)), return_exceptions=True
        )
        rejected = [o for o in outcomes if isinstance(o, InferenceServerException)]
        assert rejected and all(error.status() == "503" for error in rejected)
        assert all("Exceeds maximum queue size" in error.message() for error in rejected)
        # tritonserver 2.51 counts no failure for a full queue (e2e/test_conformance.py).
        assert sum(emulator.metrics_snapshot().models[0].failures.values()) == 0
        batching_config = (await client.get_model_config("simple"))["dynamic_batching"]
        assert batching_config["preferred_batch_size"] == [1]
        assert batching_config["default_queue_policy"]["max_queue_size"] == 1
    finally:
        await client.close()
        await emulator.stop()


async def test_metrics_fault_modes() -> None:
    emulator = TritonEmulator(BASE)
    await emulator.start()
    timeout = aiohttp.ClientTimeout(total=0.3)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        emulator.set_metrics_fault(MetricsFault.ERROR)
        async with session.get(emulator.metrics_url) as response:
            assert response.status == 500
        emulator.set_metrics_fault("garbage")
        async with session.get(emulator.metrics_url) as response:
            assert response.status == 200
            garbage = await response.text(errors="replace")
        with pytest.raises(ValueError):
            list(text_string_to_metric_families(garbage))

        emulator.set_metrics_fault(MetricsFault.HANG)
        with pytest.raises(asyncio.TimeoutError):
            async with session.get(emulator.metrics_url) as response:
                await response.read()
        hanging = asyncio.create_task(session.get(emulator.metrics_url))
        await asyncio.sleep(0.05)
        emulator.set_metrics_fault(MetricsFault.OK)  # releases the hanging scrape
        async with await hanging as response:
            assert response.status == 200
            assert "nv_inference_count" in await response.text()

        emulator.set_metrics_fault(MetricsFault.HANG)
        hanging = asyncio.create_task(session.get(emulator.metrics_url))
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        stop_began = loop.time()
        await emulator.stop()  # must not wait for the hanging scrape
        assert loop.time() - stop_began < 0.9
        async with await hanging as response:
            assert response.status == 503


def test_options_accept_a_triton_pods_arguments() -> None:
    container_args = [
        "tritonserver",
        "--model-repository=s3://bucket/models",
        "--model-control-mode=explicit",
        "--load-model=resnet50",
        "--load-model=bert",
        "--strict-readiness=false",
        "--log-verbose=1",
        "--http-port=8000",
    ]
    config, ignored = config_from_args(container_args, base=replace(BASE, host="127.64.0.7"))
    assert config.host == "127.64.0.7"
    assert config.models == ("resnet50", "bert")
    assert config.strict_readiness is False
    assert config.http_port == 8000 and config.metrics_port == 0
    assert config.model_repository == "s3://bucket/models"
    assert ignored == ["tritonserver", "--log-verbose=1"]

    explicit_without_models, _ = config_from_args(["--model-control-mode=explicit"])
    assert explicit_without_models.models == ()
    tuned, _ = config_from_args(["--service-time-ms", "5", "--instances", "3", "--load-delay=2"])
    assert (tuned.service.service_time_ms, tuned.service.instances) == (5, 3)
    assert tuned.load_delay_s == 2
    with pytest.raises(ValueError, match="instances"):
        config_from_args(["--instances", "0"])
    with pytest.raises(ValueError, match=r"outside 127\.0\.0\.0/8"):
        TritonEmulator(replace(BASE, host="10.0.0.1"))
