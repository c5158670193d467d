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


async def test_a_service_none_of_whose_pods_answers_is_read_with_backoff_until_one_does(
    peers: tuple[int, list[tuple[str, int]]],
) -> None:
    """A service whose only pod answers 500 is read at the first two intervals, then after 5,
    10, 20 and 30 s (the failure reported meanwhile, so the policy still holds); once it
    answers it is read every interval again. Beside a pod that answers, a failing pod is read
    every interval (a crashed server among healthy ones is seen back at once). The source has
    news for the autoscaling loop exactly when it reads a pod."""
    port, seen = peers
    broken, answers, hits = "127.0.1.9", {"status": 500}, [0]

    async def metrics(request: web.Request) -> web.Response:
        hits[0] += 1
        if answers["status"] != 200:
            return web.Response(status=answers["status"])
        return web.Response(text=PAGE, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, broken, port).start()
    now = [0.0]

    async def read_at(service: MetricsTarget, seconds: range) -> tuple[list[int], list[int]]:
        times, reporting = [], []
        for second in seconds:
            now[0] = float(second)
            before = hits[0]
            news = source.has_news(service)
            reporting.append((await source.observe(service)).reporting_replicas)
            assert news == (hits[0] > before)  # news exactly when a pod is read
            if hits[0] > before:
                times.append(second)
        return times, reporting

    try:
        async with started_reader() as reader:
            reader.clock = lambda: now[0]
            source = ScrapeSource(reader, port=port)
            alone = target("alone", [broken])
            times, reporting = await read_at(alone, range(0, 95, 5))
            assert times == [0, 5, 10, 20, 40, 70]  # 5, 10, 20, 30 s apart after the second
            assert reporting == [0] * 19
            answers["status"] = 200
            assert await read_at(alone, range(100, 115, 5)) == ([100, 105, 110], [1, 1, 1])

            answers["status"] = 500
            beside = target("beside", [PODS[0], broken])
            times, reporting = await read_at(beside, range(200, 250, 5))
            assert times == list(range(200, 250, 5))
            assert reporting == [1] * 10
            assert len(seen) == 10  # the healthy pod: every interval too
    finally:
        await runner.cleanup()
