"""The scrape source at scale: one connection pool reused across intervals (not a new TCP
connection per pod per interval). Real local HTTP servers on 127.0.1.x; the bound on requests
in flight across services is test_reader.py's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from pages import free_port, started_reader
from tritonop.autoscale.metrics import MetricsReader, ScrapeSource, source_for
from tritonop.autoscale.observe import MetricsTarget, PodEndpoint
from tritonop.config import Settings

PAGE = (Path(__file__).parent / "fixtures" / "triton_metrics_gpu_t0.txt").read_text()
PODS = [f"127.0.1.{i}" for i in range(1, 4)]


@pytest.fixture
async def peers() -> AsyncIterator[tuple[int, list[tuple[str, int]]]]:
    """Three fake Triton pods on one port; the client connections (address, port) they saw."""
    port, seen = free_port(), []

    async def metrics(request: web.Request) -> web.Response:
        seen.append(request.transport.get_extra_info("peername")[:2])  # type: ignore[union-attr]
        return web.Response(text=PAGE, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    for ip in PODS:
        await web.TCPSite(runner, ip, port).start()
    try:
        yield port, seen
    finally:
        await runner.cleanup()


def target(name: str, ips: list[str]) -> MetricsTarget:
    return MetricsTarget("ml", name, tuple(PodEndpoint(f"{name}-{ip}", ip) for ip in ips), 0, ())


async def test_each_pod_keeps_its_connection_across_intervals(
    peers: tuple[int, list[tuple[str, int]]],
) -> None:
    port, seen = peers
    async with started_reader() as reader:
        source = ScrapeSource(reader, port=port)
        for _ in range(3):  # three intervals of two services
            observations = await asyncio.gather(
                source.observe(target("a", PODS[:2])), source.observe(target("b", PODS[2:]))
            )
            assert [o.reporting_replicas for o in observations] == [2, 1]
    assert len(seen) == 9
    assert len(set(seen)) == 3  # one connection per pod, reused by every interval


def test_connections_outlive_the_pause_between_intervals() -> None:
    source = source_for(
        Settings(autoscale_interval_seconds=5, scrape_timeout_seconds=2), lambda: 0.0
    )
    assert isinstance(source, ScrapeSource) and isinstance(source.reader, MetricsReader)
    assert source.reader.keepalive > 5
