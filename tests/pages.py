"""Serving and reading metrics pages on loopback, for the tests of the operator's reader.

`started_reader` is a `MetricsReader` (the operator's, with its parser process) already
started, so that what a test times is the reads, not the parser process's start; `read_once`
reads pods through one, exactly as one interval of a ScrapeSource would; `free_port` finds a
port for a local server; `ones_inputs` are a request to the emulator's `simple` model.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Sequence

import numpy as np
import tritonclient.http.aio as aioclient

from tritonop.autoscale.metrics import MetricsReader, metrics_url
from tritonop.autoscale.observe import PodEndpoint, PodScrape

DEFAULT_MAX_BYTES = 2 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def started_reader(
    *, timeout: float = 1.0, concurrency: int = 4, max_bytes: int = DEFAULT_MAX_BYTES
) -> AsyncIterator[MetricsReader]:
    reader = MetricsReader(timeout=timeout, max_bytes=max_bytes, concurrency=concurrency)
    try:
        await reader.start()
        yield reader
    finally:
        await reader.close()


async def read(
    reader: MetricsReader, pods: Sequence[PodEndpoint], port: int
) -> dict[str, PodScrape]:
    """One interval's scrapes of `pods` on `port`."""
    return await reader.scrape([(pod, metrics_url(pod.ip, port)) for pod in pods])


async def read_once(
    pods: Sequence[PodEndpoint],
    *,
    port: int,
    timeout: float = 1.0,
    concurrency: int = 4,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[str, PodScrape]:
    """One interval's scrapes of `pods` on `port`, through a reader closed afterwards."""
    async with started_reader(
        timeout=timeout, concurrency=concurrency, max_bytes=max_bytes
    ) as reader:
        return await read(reader, pods, port)


def ones_inputs() -> list[aioclient.InferInput]:
    """The two INT32 [1, 16] inputs of the emulator's `simple` (add/sub) model, all ones."""
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = aioclient.InferInput(name, [1, 16], "INT32")
        tensor.set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
        inputs.append(tensor)
    return inputs
