"""The operator's metrics reader (tritonop.autoscale.metrics and .observe) against emulators.

What the reader concludes (queue depth, queue time per request, request rate, problems) must
match what the emulator actually did, and each fault mode must surface as a problem for its pod
only. This is the contract the e2e autoscaling loop relies on.
"""

from __future__ import annotations

import asyncio
import random
import socket
from dataclasses import replace

import numpy as np
import pytest
import tritonclient.http.aio as aioclient
from e2e.tritonsim import EmulatorConfig, MetricsFault, ServiceSettings, TritonEmulator

from tritonop.autoscale.metrics import scrape_pods
from tritonop.autoscale.observe import PodEndpoint, observe, remember


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = aioclient.InferInput(name, [1, 16], "INT32")
        tensor.set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
        inputs.append(tensor)
    loop = asyncio.get_running_loop()
    try:
        first = await scrape_pods(pods, timeout=1.0, concurrency=4, port=port)
        before = busy.metrics_snapshot().models[0]

        burst = [asyncio.create_task(client.infer("simple", inputs)) for _ in range(10)]
        for _ in range(2000):  # at most ~4 s
            if busy.metrics_snapshot().models[0].pending_request_count > 0:
                break
            await asyncio.sleep(0.002)
        during = await scrape_pods(pods, timeout=1.0, concurrency=4, port=port)
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

        second = await scrape_pods(pods, timeout=1.0, concurrency=4, port=port)
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
