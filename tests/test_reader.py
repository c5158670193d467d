"""The operator's metrics reader against hostile pods: real HTTP servers on 127.0.0.1.

Whole bodies however they arrive, incomplete bodies as problems (never as values), a cap on
size, one deadline for fetch and parse, and one bound on requests in flight across services.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
from aiohttp import web
from e2e.tritonsim import hostile

from pages import DEFAULT_MAX_BYTES, free_port, read, read_once, started_reader
from tritonop.autoscale.metrics import MetricsReader, ScrapeSource
from tritonop.autoscale.observe import MetricsTarget, PodEndpoint, PodScrape

POD = PodEndpoint("pod", "127.0.0.1")


def big_page(models: int) -> bytes:
    """A Triton-shaped page: per model the autoscaling series, a summary and GPU noise."""
    lines = []
    for family, kind in (
        ("nv_inference_request_success", "counter"),
        ("nv_inference_queue_duration_us", "counter"),
        ("nv_inference_pending_request_count", "gauge"),
    ):
        lines += [f"# HELP {family} help", f"# TYPE {family} {kind}"]
        for index in range(models):
            value = {"counter": index * 1000, "gauge": index}[kind]
            lines.append(f'{family}{{model="model-{index:05d}",version="1"}} {value}')
    lines += [
        "# HELP nv_inference_request_summary_us x",
        "# TYPE nv_inference_request_summary_us summary",
    ]
    for index in range(models):
        for quantile in ("0.5", "0.9", "0.95", "0.99", "0.999"):
            lines.append(
                f'nv_inference_request_summary_us{{model="model-{index:05d}",quantile="{quantile}",'
                f'version="1"}} 123456.789'
            )
    return ("\n".join(lines) + "\n").encode()


@contextlib.asynccontextmanager
async def serving(handler: hostile.Handler) -> AsyncIterator[int]:
    """An aiohttp server on 127.0.0.1 answering /metrics with `handler`; yields its port."""
    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_serving(answer: bytes, close_after: bool = True) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that writes `answer` verbatim to each request, then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        if close_after:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


async def one(port: int, **limits: float) -> PodScrape:
    return (await read_once([POD], port=port, **limits))[POD.name]  # type: ignore[arg-type]


async def test_a_500_kb_page_in_ten_delayed_chunks_parses_completely() -> None:
    page = big_page(750)
    assert 450_000 < len(page) < 600_000
    last_model = "model-00749"

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain; version=0.0.4"})
        await response.prepare(request)
        step = len(page) // 10 + 1
        for start in range(0, len(page), step):
            await response.write(page[start : start + step])
            await asyncio.sleep(0.05)
        await response.write_eof()
        return response

    async with serving(chunked) as port:
        scrape = await one(port, timeout=5.0)
    assert scrape.error is None and scrape.sample is not None
    assert len(scrape.sample.models) == 750
    assert scrape.sample.models[(last_model, "1")].pending == 749  # the very last byte counts
    assert scrape.sample.models[(last_model, "1")].request_success == 749_000


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (  # Content-Length promises more than arrives: 1234 must not read as 1
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 400\r\n\r\n"
            b'nv_inference_pending_request_count{model="m",version="1"} 1',
            "incomplete body",
        ),
        (  # a chunked body whose connection closes before the last chunk
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'3d\r\nnv_inference_pending_request_count{model="m",version="1"} 12\n\r\n'
            b"20\r\nnv_inference_pending_reque",
            "incomplete body",
        ),
        (  # no length at all, read to the close: the cut last line gives it away
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
            b'nv_inference_pending_request_count{model="m",version="1"} 1',
            "it was cut short",
        ),
    ],
)
async def test_a_body_closed_early_is_a_problem_never_a_value(answer: bytes, problem: str) -> None:
    async with raw_serving(answer) as port:
        scrape = await one(port)
    assert scrape.sample is None
    assert problem in (scrape.error or "")


def rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


async def peak_rss_growth(work: Awaitable[PodScrape]) -> tuple[PodScrape, int]:
    """`work`'s result and the largest RSS growth sampled every 5 ms while it ran."""
    baseline = peak = rss_bytes()
    task = asyncio.ensure_future(work)
    while not task.done():
        peak = max(peak, rss_bytes())
        await asyncio.sleep(0.005)
    return task.result(), peak - baseline


async def test_an_endless_200_mb_response_is_cut_at_the_cap_within_the_deadline() -> None:
    sent = [0]
    async with serving(hostile.endless(200 * 1024 * 1024, sent)) as port:
        started = time.monotonic()
        scrape, growth = await peak_rss_growth(one(port, timeout=5.0))
        elapsed = time.monotonic() - started
    assert (scrape.error or "").startswith("MetricsTooLarge: the body is larger than 2097152")
    assert elapsed < 5.0
    assert sent[0] < 20 * 1024 * 1024  # the reader stopped reading; the server gave up
    assert growth < 50 * 1024 * 1024, f"RSS grew {growth / 1e6:.0f} MB"


async def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 209715200\r\n\r\n" + b"#\n" * 1000
    async with raw_serving(answer, close_after=False) as port:
        scrape = await one(port, max_bytes=64 * 1024)
    assert (scrape.error or "").startswith("MetricsTooLarge: the body is larger than 65536")


async def test_a_slow_drip_ends_at_the_deadline() -> None:
    async with serving(hostile.drip()) as port, started_reader(timeout=0.8) as reader:
        started = time.monotonic()
        scrape = (await read(reader, [POD], port))[POD.name]
        elapsed = time.monotonic() - started
    assert scrape.error == "timed out after 0.8s"
    assert 0.8 <= elapsed < 0.8 + 0.5


async def test_a_compressed_body_is_refused() -> None:
    page = big_page(3)

    async def compressed(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(page), headers={"Content-Encoding": "gzip"})

    async with serving(compressed) as port:
        scrape = await one(port)
    assert scrape.error == "the body is gzip-encoded although identity was asked for"


async def test_series_beyond_the_bound_are_metrics_too_large() -> None:
    lines = b"".join(
        b'nv_inference_pending_request_count{model="m%d",version="1"} 0\n' % index
        for index in range(25_000)
    )

    async def many(request: web.Request) -> web.Response:
        return web.Response(body=lines)

    async with serving(many) as port:
        scrape = await one(port, timeout=5.0)
    assert (scrape.error or "").startswith("MetricsTooLarge: more than 20000 series")


async def test_one_bound_on_requests_in_flight_across_every_service() -> None:
    in_flight = highest = 0
    page = big_page(2)

    async def counting(request: web.Request) -> web.Response:
        nonlocal in_flight, highest
        in_flight += 1
        highest = max(highest, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return web.Response(body=page)

    async with serving(counting) as port:
        reader = MetricsReader(timeout=5.0, max_bytes=DEFAULT_MAX_BYTES, concurrency=2)
        source = ScrapeSource(reader, port=port)
        targets = [
            MetricsTarget(
                "ml",
                f"svc-{service}",
                tuple(PodEndpoint(f"svc-{service}-{pod}", "127.0.0.1") for pod in range(3)),
                0,
            )
            for service in range(4)
        ]
        try:
            observations = await asyncio.gather(*(source.observe(t) for t in targets))
        finally:
            await source.close()
    assert [o.reporting_replicas for o in observations] == [3, 3, 3, 3]
    assert highest == 2
