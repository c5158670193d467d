"""The scrape source at scale: one connection pool reused across intervals, one bound on the
requests in flight for the whole operator (not per service). Real local HTTP servers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from tritonop.autoscale.metrics import ScrapeSource, source_for
from tritonop.autoscale.observe import MetricsTarget, PodEndpoint
from tritonop.config import Settings

PAGE = (Path(__file__).parent / "fixtures" / "triton_metrics_gpu_t0.txt").read_text()
PODS = [f"127.0.1.{i}" for i in range(1, 7)]


@dataclass
class Pods:
    """Six fake Triton pods on one port: which client connections they saw, how many requests
    were in flight at most."""

    port: int
    delay: float = 0.0
    peers: list[tuple[str, int]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0


@pytest.fixture
async def pods() -> AsyncIterator[Pods]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    state = Pods(port)

    async def metrics(request: web.Request) -> web.Response:
        state.peers.append(request.transport.get_extra_info("peername")[:2])  # type: ignore[union-attr]
        state.in_flight += 1
        state.most_in_flight = max(state.most_in_flight, state.in_flight)
        try:
            await asyncio.sleep(state.delay)
        finally:
            state.in_flight -= 1
        return web.Response(text=PAGE, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    for ip in PODS:
        await web.TCPSite(runner, ip, port).start()
    try:
        yield state
    finally:
        await runner.cleanup()


def target(name: str, ips: list[str]) -> MetricsTarget:
    return MetricsTarget("ml", name, tuple(PodEndpoint(f"{name}-{ip}", ip) for ip in ips), 0, ())


async def test_each_pod_keeps_its_connection_across_intervals(pods: Pods) -> None:
    source = ScrapeSource(timeout=1.0, concurrency=4, port=pods.port)
    try:
        for _ in range(3):  # three intervals of two services
            await source.observe(target("a", PODS[:2]))
            await source.observe(target("b", PODS[2:3]))
    finally:
        await source.close()
    assert len(pods.peers) == 9
    assert len(set(pods.peers)) == 3  # one connection per pod, reused by every interval


async def test_requests_in_flight_are_bounded_across_services(pods: Pods) -> None:
    pods.delay = 0.05
    source = ScrapeSource(timeout=2.0, concurrency=2, port=pods.port)
    try:
        observations = await asyncio.gather(
            source.observe(target("a", PODS[:3])), source.observe(target("b", PODS[3:]))
        )
    finally:
        await source.close()
    assert [o.reporting_replicas for o in observations] == [3, 3]
    assert pods.most_in_flight == 2  # the operator's bound, although each service has 3 pods


def test_connections_outlive_the_pause_between_intervals() -> None:
    source = source_for(
        Settings(autoscale_interval_seconds=5, scrape_timeout_seconds=2), lambda: 0.0
    )
    assert isinstance(source, ScrapeSource)
    assert source.keepalive > 5 and source.concurrency == Settings().scrape_concurrency
