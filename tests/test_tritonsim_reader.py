"""The operator's metrics reader (tritonop.autoscale.metrics and .observe) against emulators.

What the reader concludes (queue depth, queue time per request, request rate, problems) must
match what the emulator actually did, and each fault mode must surface as a problem for its pod
only. This is the contract the e2e autoscaling loop relies on.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest
import tritonclient.http.aio as aioclient
from e2e.tritonsim import EmulatorConfig, MetricsFault, ServiceSettings, TritonEmulator

from pages import free_port, ones_inputs, read, started_reader
from tritonop.api.validation import parse_object
from tritonop.autoscale.observe import PodEndpoint, observe, remember
from tritonop.autoscale.policy import PolicyState, decide


async def test_reader_sees_what_the_emulator_did() -> None:
    block = random.randint(1, 254)
    ips = {
        name: f"127.202.{block}.{index}"
        for index, name in enumerate(("busy", "garbled", "gone"), 1)
    }
    port = free_port()
    base = EmulatorConfig(
        http_port=0, metrics_port=port, service=ServiceSettings(service_time_ms=15)
    )
    busy = TritonEmulator(replace(base, host=ips["busy"]))
    garbled = TritonEmulator(replace(base, host=ips["garbled"]))
    await busy.start()
    await garbled.start()
    garbled.set_metrics_fault(MetricsFault.GARBAGE)
    pods = [PodEndpoint(name, ip) for name, ip in ips.items()]
    client = aioclient.InferenceServerClient(busy.url)
    inputs = ones_inputs()
    loop = asyncio.get_running_loop()
    reading = started_reader(timeout=1.0, concurrency=4)
    reader = await reading.__aenter__()
    try:
        first = await read(reader, pods, port)
        before = busy.metrics_snapshot().models[0]

        burst = [asyncio.create_task(client.infer("simple", inputs)) for _ in range(10)]
        for _ in range(2000):  # at most ~4 s
            if busy.metrics_snapshot().models[0].pending_request_count > 0:
                break
            await asyncio.sleep(0.002)
        during = await read(reader, pods, port)
        queued = observe(
            remember({}, first),
            during,
            ready_replicas=3,
            starting_replicas=0,
            models=["simple"],
            now=loop.time(),
        )
        assert queued.queue_depth is not None and queued.queue_depth > 0
        await asyncio.gather(*burst)

        second = await read(reader, pods, port)
        after = busy.metrics_snapshot().models[0]
        seen = observe(
            remember({}, first),
            second,
            ready_replicas=3,
            starting_replicas=0,
            models=["simple"],
            now=loop.time(),
        )
    finally:
        await reading.__aexit__(None, None, None)
        await client.close()
        await busy.stop()
        await garbled.stop()

    assert seen.reporting_replicas == 1
    assert seen.queue_depth == 0
    problems = " | ".join(seen.problems)
    assert "garbled: parse error" in problems
    assert "gone: unreachable" in problems
    assert "busy" not in problems
    served = after.success - before.success
    assert served == 10
    waited_ms = (after.queue_duration_us - before.queue_duration_us) / served / 1000
    assert seen.queue_time_ms == pytest.approx(waited_ms, rel=1e-6)
    assert waited_ms > 15  # a burst of 10 on one instance: the average request waited
    elapsed = second["busy"].time - first["busy"].time
    assert seen.request_rate == pytest.approx(served / elapsed, rel=1e-6)


async def test_absurd_pages_hold_the_service_with_invalid_metrics() -> None:
    """The issue's hostile pair, from the emulator's `absurd` fault through the operator's
    reader, observation and policy: pending 7,000 -> 8,000, successes +5e-9, queue +5 µs."""
    block = random.randint(1, 254)
    port = free_port()
    base = EmulatorConfig(http_port=0, metrics_port=port)
    emulators = [TritonEmulator(replace(base, host=f"127.204.{block}.{i}")) for i in (1, 2)]
    pods = [PodEndpoint(f"absurd-{i}", e.config.host) for i, e in enumerate(emulators)]
    for emulator in emulators:
        await emulator.start()
        emulator.set_metrics_fault(MetricsFault.ABSURD)
    try:
        async with started_reader() as reader:
            first = await read(reader, pods, port)
            second = await read(reader, pods, port)
    finally:
        for emulator in emulators:
            await emulator.stop()
    assert all(scrape.sample is not None for scrape in first.values())
    seen = observe(
        remember({}, first),
        second,
        ready_replicas=2,
        starting_replicas=0,
        models=[],
        now=second["absurd-0"].time,
    )
    assert seen.reporting_replicas == 0
    assert len(seen.implausible) == 2 and "not a whole number" in seen.implausible[0]
    spec = parse_object(
        {
            "apiVersion": "tritonop.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "absurd", "namespace": "ml"},
            "spec": {
                "modelRepository": {"uri": "s3://m/t"},
                "autoscaling": {"minReplicas": 1, "maxReplicas": 8, "targets": {"queueDepth": 4}},
            },
        }
    ).spec.autoscaling
    assert spec is not None
    decision, _ = decide(spec, 2, seen, PolicyState(), seen.time, 5.0)
    assert decision.desired_replicas == 2  # held, within maxReplicas
    active = next(flag for flag in decision.conditions if flag.type == "ScalingActive")
    assert (active.status, active.reason) == (False, "InvalidMetrics")
