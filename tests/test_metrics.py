"""Reading Triton's metrics over the network: scraping real local servers, asking a Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pages import DEFAULT_MAX_BYTES, free_port, read, read_once, started_reader
from tritonop.autoscale.metrics import (
    MetricsReader,
    PrometheusSource,
    ScrapeSource,
    metrics_url,
    source_for,
)
from tritonop.autoscale.observe import MetricsTarget, PodEndpoint, observe, remember
from tritonop.config import Settings

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# ------------------------------------------------------------------------- scraping, for real


def test_metrics_url_brackets_ipv6() -> None:
    assert metrics_url("10.1.2.3") == "http://10.1.2.3:8002/metrics"
    assert metrics_url("fd00::12", 9000) == "http://[fd00::12]:9000/metrics"


@pytest.fixture
async def pod_servers() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """Five fake Triton pods on 127.0.0.1-5, one port: normal, slow, 500, garbage, normal-CPU.

    127.0.0.6 on the same port has no listener: connection refused.
    """
    release = asyncio.Event()
    page = fixture("triton_metrics_gpu_t0.txt")

    async def normal(_: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/plain")

    async def slow(_: web.Request) -> web.Response:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), timeout=10)
        return web.Response(text=page)

    async def error(_: web.Request) -> web.Response:
        return web.Response(status=500, text="internal error")

    async def garbage(_: web.Request) -> web.Response:
        return web.Response(text="<html><body>hello</body></html>")

    async def cpu(_: web.Request) -> web.Response:
        return web.Response(text=fixture("triton_metrics_cpu_idle.txt"))

    port = free_port()
    runners = []
    for last_octet, handler in enumerate([normal, slow, error, garbage, cpu], start=1):
        app = web.Application()
        app.router.add_get("/metrics", handler)
        runner = web.AppRunner(app, shutdown_timeout=0.2)
        await runner.setup()
        await web.TCPSite(runner, f"127.0.0.{last_octet}", port).start()
        runners.append(runner)
    try:
        yield port, release
    finally:
        release.set()
        for runner in runners:
            await runner.cleanup()


async def test_reader_reports_each_failure_and_stays_within_timeout(
    pod_servers: tuple[int, asyncio.Event],
) -> None:
    port, _ = pod_servers
    pods = [
        PodEndpoint("normal", "127.0.0.1"),
        PodEndpoint("slow", "127.0.0.2"),
        PodEndpoint("error", "127.0.0.3"),
        PodEndpoint("garbage", "127.0.0.4"),
        PodEndpoint("cpu", "127.0.0.5"),
        PodEndpoint("refused", "127.0.0.6"),
    ]
    timeout = 0.6
    async with started_reader(timeout=timeout, concurrency=8) as reader:
        started = time.monotonic()
        results = await read(reader, pods, port)
        elapsed = time.monotonic() - started
    assert timeout <= elapsed < timeout + 0.4
    assert set(results) == {pod.name for pod in pods}
    assert results["normal"].sample is not None
    assert results["normal"].sample.models[("resnet50", "1")].pending == 2
    assert results["cpu"].sample is not None
    assert results["slow"].error == "timed out after 0.6s"
    assert results["error"].error == f"HTTP 500 from http://127.0.0.3:{port}/metrics"
    assert (results["garbage"].error or "").startswith("parse error: not Prometheus text")
    assert (results["refused"].error or "").startswith("unreachable:")
    assert started <= results["normal"].time <= started + elapsed


async def test_pods_queued_behind_the_semaphore_share_the_deadline(
    pod_servers: tuple[int, asyncio.Event],
) -> None:
    port, _ = pod_servers
    pods = [PodEndpoint("slow", "127.0.0.2"), PodEndpoint("normal", "127.0.0.1")]
    async with started_reader(timeout=0.4, concurrency=1) as reader:
        started = time.monotonic()
        results = await read(reader, pods, port)
        assert time.monotonic() - started < 0.4 + 0.3
    assert results["slow"].error == results["normal"].error == "timed out after 0.4s"


async def test_scraped_pages_feed_observe(pod_servers: tuple[int, asyncio.Event]) -> None:
    port, _ = pod_servers
    pods = [PodEndpoint("normal", "127.0.0.1"), PodEndpoint("error", "127.0.0.3")]
    first = await read_once(pods, port=port, timeout=1.0, concurrency=4)
    second = await read_once(pods, port=port, timeout=1.0, concurrency=4)
    result = observe(
        remember({}, first), second, ready_replicas=2, starting_replicas=0, models=[], now=2.0
    )
    assert result.reporting_replicas == 1
    assert result.queue_depth == 3.0  # 2 + 0 + 1 pending in the fixture
    assert result.request_rate == 0.0  # the same page twice: no new requests...
    assert result.queue_time_ms is None  # ...while 3 are pending: queue time unknown
    assert len(result.problems) == 1


async def test_scrape_nothing_returns_at_once() -> None:
    assert await read_once([], port=free_port()) == {}


async def test_scrape_source_remembers_each_service_until_forgotten(
    pod_servers: tuple[int, asyncio.Event],
) -> None:
    port, _ = pod_servers
    ticks = iter(float(t) for t in range(100, 200))
    reader = MetricsReader(
        timeout=1.0, max_bytes=DEFAULT_MAX_BYTES, concurrency=4, clock=lambda: next(ticks)
    )
    source = ScrapeSource(reader, port=port)
    one = MetricsTarget("ml", "one", (PodEndpoint("normal", "127.0.0.1"),), 1, ())
    other = MetricsTarget("ml", "other", (PodEndpoint("cpu", "127.0.0.5"),), 0, ())
    try:
        first = await source.observe(one)
        session = reader._session
        await source.observe(other)
        second = await source.observe(one)
        assert reader._session is session is not None
        source.forget(one.key)
        after_forget = await source.observe(one)
    finally:
        await source.close()
    assert (first.ready_replicas, first.starting_replicas, first.reporting_replicas) == (1, 1, 1)
    assert first.queue_depth == 3.0 and first.request_rate is None  # one scrape: no rates yet
    assert second.request_rate == 0.0  # the same page again: rates from the remembered scrape
    assert after_forget.request_rate is None  # forgotten: starts over
    assert reader._session is None


# ---------------------------------------------------------------------------- Prometheus source


def vector(values: dict[str, float | str]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"pod": pod}, "value": [1700000000.0, str(value)]}
                for pod, value in values.items()
            ],
        },
    }


@pytest.fixture
async def prometheus() -> AsyncIterator[Callable[[Callable[[str], tuple[int, Any]]], Any]]:
    """Start a fake Prometheus whose answers come from the test's `answer(query)`."""
    runners: list[web.AppRunner] = []

    async def start(answer: Callable[[str], tuple[int, Any]]) -> tuple[str, list[str]]:
        seen: list[str] = []

        async def query(request: web.Request) -> web.Response:
            form = await request.post()
            expression = str(form["query"])
            seen.append(expression)
            status, payload = answer(expression)
            body = payload if isinstance(payload, str) else json.dumps(payload)
            return web.Response(status=status, text=body, content_type="application/json")

        app = web.Application()
        app.router.add_post("/api/v1/query", query)
        runner = web.AppRunner(app, shutdown_timeout=0.2)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}/", seen

    yield start
    for runner in runners:
        await runner.cleanup()


def target(pods: list[str], starting: int = 0, models: tuple[str, ...] = ()) -> MetricsTarget:
    endpoints = tuple(PodEndpoint(pod, f"10.0.0.{i}") for i, pod in enumerate(pods, 1))
    return MetricsTarget("ml", "isvc", endpoints, starting, models, 60.0)


async def observe_once(source: PrometheusSource, what: MetricsTarget) -> Any:
    try:
        return await source.observe(what)
    finally:
        await source.close()


async def test_prometheus_source_per_pod_math_and_missing_pods(prometheus: Any) -> None:
    def answer(query: str) -> tuple[int, Any]:
        if "nv_inference_pending_request_count" in query:
            return 200, vector({"isvc-abc12-x1": 2, "isvc-abc12-x2": 6})
        if "nv_inference_queue_duration_us" in query:
            return 200, vector({"isvc-abc12-x1": 40_000.0, "isvc-abc12-x2": "NaN"})
        return 200, vector({"isvc-abc12-x1": 10.0})

    url, seen = await prometheus(answer)
    source = PrometheusSource(url, timeout=2.0, clock=lambda: 7.0)
    what = replace(
        target(["isvc-abc12-x1", "isvc-abc12-x2", "isvc-abc12-x3"], 1, ("resnet50",)),
        window_s=30.0,
    )
    result = await observe_once(source, what)
    assert result.time == 7.0
    assert result.reporting_replicas == 2
    assert result.queue_depth == 4.0
    assert result.queue_time_ms == pytest.approx(4.0)  # 40000 us/s / 10 req/s / 1000
    assert result.request_rate == pytest.approx(10.0)
    assert result.problems == (
        "isvc-abc12-x3: no nv_inference_pending_request_count series in Prometheus (is the pod scraped?)",
    )
    assert len(seen) == 3
    for expression in seen:
        assert 'namespace="ml"' in expression
        assert 'pod=~"isvc-abc12-x1|isvc-abc12-x2|isvc-abc12-x3"' in expression
        assert 'model=~"resnet50"' in expression
    assert any("[30s]" in expression for expression in seen)


async def test_prometheus_source_idle_is_zero_and_errors_are_problems(prometheus: Any) -> None:
    def idle(query: str) -> tuple[int, Any]:
        return 200, vector({"isvc-a-b": 0.0})

    url, _ = await prometheus(idle)
    result = await observe_once(PrometheusSource(url, 2.0), target(["isvc-a-b"]))
    assert (result.queue_depth, result.queue_time_ms, result.request_rate) == (0.0, 0.0, 0.0)

    def failing(query: str) -> tuple[int, Any]:
        return 503, {"status": "error", "errorType": "unavailable", "error": "TSDB not ready"}

    url, _ = await prometheus(failing)
    result = await observe_once(PrometheusSource(url, 2.0), target(["isvc-a-b"]))
    assert (result.reporting_replicas, result.queue_depth, result.queue_time_ms) == (0, None, None)
    assert len(result.problems) == 3
    assert all("HTTP 503: TSDB not ready" in problem for problem in result.problems)

    def not_json(query: str) -> tuple[int, Any]:
        return 200, "<html>proxy login</html>"

    url, _ = await prometheus(not_json)
    result = await observe_once(PrometheusSource(url, 2.0), target(["isvc-a-b"]))
    assert result.queue_depth is None
    assert all("body is not JSON" in problem for problem in result.problems)


async def test_prometheus_source_with_no_ready_pods_asks_nothing(prometheus: Any) -> None:
    url, seen = await prometheus(lambda query: (200, vector({"isvc-old-pod": 9.0})))
    source = PrometheusSource(url, 2.0, clock=lambda: 3.0)
    result = await observe_once(source, target([], starting=2))
    assert seen == []
    assert result.reporting_replicas == 0
    assert (result.queue_depth, result.queue_time_ms, result.request_rate) == (None, None, None)
    assert result.starting_replicas == 2


async def test_prometheus_unreachable_is_a_problem() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = await observe_once(PrometheusSource(url, 1.0), target(["isvc-a-b"]))
    assert result.queue_depth is None
    assert len(result.problems) == 3
    assert all(problem.startswith(f"prometheus {url}: query for ") for problem in result.problems)


async def test_one_prometheus_source_serves_every_service_on_one_session(prometheus: Any) -> None:
    url, seen = await prometheus(lambda query: (200, vector({"a-1-x": 1.0, "b-1-x": 3.0})))
    source = PrometheusSource(url, 2.0)
    try:
        first = await source.observe(replace(target(["a-1-x"]), name="a"))
        session = source._session
        second = await source.observe(replace(target(["b-1-x"]), name="b"))
        assert source._session is session is not None
    finally:
        await source.close()
    assert (first.queue_depth, second.queue_depth) == (1.0, 3.0)
    assert len(seen) == 6
    assert source._session is None


# ---------------------------------------------------------------------------- choosing a source


def test_the_settings_choose_the_source_once() -> None:
    assert isinstance(source_for(Settings(), time.monotonic), ScrapeSource)
    chosen = source_for(Settings(prometheus_url="http://prom:9090/"), time.monotonic)
    assert isinstance(chosen, PrometheusSource) and chosen.url == "http://prom:9090"
