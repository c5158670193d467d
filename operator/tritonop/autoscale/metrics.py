"""Reading Triton's metrics over the network: the two sources of an autoscaling Observation.

One `MetricsSource` protocol, two implementations, chosen once from the settings by
`source_for` (the autoscaling loop never asks which it has):

* `ScrapeSource` (the default) reads `http://<podIP>:8002/metrics` of every ready pod
  through the operator's one `MetricsReader` and remembers each service's last scrapes, since
  counter deltas need two. The reader is where a hostile pod is contained: whole bodies up to
  a cap, a parser process off the event loop, one deadline per service's reads, one bound on
  requests in flight for the operator. `tritonop scrape` reads with the same reader.
* `PrometheusSource`, when the operator is configured with a Prometheus server, asks it the
  same quantities as PromQL over a rate window.

One source serves every InferenceService and keeps one HTTP session for all of them; `close`
releases it (and the parser process) when the operator stops. Everything that is not I/O (parsing, counter deltas,
turning query answers into an Observation, and the rules that keep a missing signal from
reading as zero) is autoscale/observe.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

import aiohttp

from tritonop.autoscale.observe import (
    METRICS_TOO_LARGE,
    FailingPod,
    MetricsParseError,
    MetricsTarget,
    MetricsTooLarge,
    PodEndpoint,
    PodScrape,
    PrometheusError,
    TritonSample,
    empty_observation,
    failing_after,
    observe,
    parse_triton_metrics,
    parser_started,
    prometheus_observation,
    prometheus_queries,
    remember,
    scrape_due,
    shorten,
    vector_by_pod,
)
from tritonop.autoscale.types import Observation
from tritonop.config import Settings

TRITON_METRICS_PORT = 8002

Monotonic = Callable[[], float]
"""The monotonic clock that stamps observations (runtime.Clock.monotonic)."""


class MetricsSource(Protocol):
    """Where one interval's Observation of one InferenceService comes from."""

    async def observe(self, target: MetricsTarget) -> Observation:
        """The target's signals now; failures become `problems`, never an exception."""
        ...

    def has_news(self, target: MetricsTarget) -> bool:
        """Whether `observe` could see anything its last observation of `target` did not."""
        ...

    def forget(self, key: tuple[str, str]) -> None:
        """Drop what the source remembers of a service whose autoscaling stopped."""
        ...

    async def close(self) -> None:
        """Release the HTTP session (the operator is stopping)."""
        ...


def source_for(settings: Settings, clock: Monotonic) -> MetricsSource:
    """The source the settings choose: Prometheus when an address is set, else scraping."""
    if settings.prometheus_url:
        return PrometheusSource(settings.prometheus_url, settings.scrape_timeout_seconds, clock)
    return ScrapeSource(reader_for(settings, clock))


def reader_for(settings: Settings, clock: Monotonic = time.monotonic) -> MetricsReader:
    """The operator's metrics reader with the settings' limits (also `tritonop scrape`'s)."""
    return MetricsReader(
        timeout=settings.scrape_timeout_seconds,
        max_bytes=settings.scrape_max_bytes,
        concurrency=settings.scrape_concurrency,
        # Outlive the pause between two intervals, so each interval reuses the connections.
        keepalive=2 * settings.autoscale_interval_seconds + settings.scrape_timeout_seconds,
        clock=clock,
    )


# --------------------------------------------------------------------------------------------
# reading the pages
# --------------------------------------------------------------------------------------------


def metrics_url(ip: str, port: int = TRITON_METRICS_PORT) -> str:
    """Triton's metrics URL on a pod IP (IPv6 addresses bracketed)."""
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}/metrics"


class ScrapeFailure(Exception):
    """Why one pod's metrics could not be read (the message becomes an Observation problem)."""


_REQUEST_HEADERS = {"Accept": "text/plain", "Accept-Encoding": "identity"}
"""Triton's exposer compresses when asked; the reader asks not to, so the byte cap is the
page's size (a compressed body would be a zip bomb away from the cap meaning nothing)."""


async def _read_body(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The whole body, streamed, or ScrapeFailure: over `max_bytes`, encoded, or incomplete.

    `content.read(n)` returns what has arrived so far, not n bytes, so the body is read to its
    end in pieces and counted; reading stops as soon as the count passes the cap, so an
    endless response costs `max_bytes` of memory and is then dropped with its connection.
    A body shorter than its Content-Length, or a chunked body cut off, makes aiohttp raise
    ClientPayloadError (reported by the caller); a body without either that ends early can
    only be told by its last line, which `observe.autoscaling_lines` checks.
    """
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ScrapeFailure(f"the body is {encoding}-encoded although identity was asked for")
    declared = response.content_length
    too_large = (
        f"{METRICS_TOO_LARGE}: the body is larger than {max_bytes} bytes "
        "(TRITONOP_SCRAPE_MAX_BYTES)"
    )
    if declared is not None and declared > max_bytes:
        raise ScrapeFailure(too_large)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > max_bytes:
            raise ScrapeFailure(too_large)
        chunks.append(chunk)
    if declared is not None and size != declared:
        raise ScrapeFailure(f"incomplete body: {size} of {declared} bytes")
    return b"".join(chunks)


class MetricsReader:
    """How the operator reads Triton's metrics pages: one session, one bound, one parser.

    One reader serves every InferenceService of the process (and `tritonop scrape`), so its
    limits are the operator's, not a service's:

    * at most `concurrency` requests are in flight, across every service's scrapes;
    * every page is read whole, up to `max_bytes` (over it: a MetricsTooLarge problem);
    * pages are parsed in a separate process, one page at a time. prometheus-client's parser
      is pure Python: in a thread it would hold the GIL the event loop needs (every socket
      read waits for the parser's 5 ms switch interval); e2e/bench/scrape.py measures both.
      Parse work per page is bounded (`observe.autoscaling_lines`), so one process keeps up
      with thousands of ordinary pages per interval and a hostile page costs it < 0.5 s;
    * one connection pool: a pod's connection is kept alive for `keepalive` seconds (longer
      than an autoscaling interval), so the next interval reuses it instead of opening a new
      TCP connection to every pod every interval (1,000 services: 200 connects a second). A
      connection to a pod that went away fails its next request once, which reads as that
      pod's missing metrics for one interval; a deleted pod is not scraped again.

    `parser` replaces the parser process (the benchmark passes a thread pool to compare).
    """

    def __init__(
        self,
        *,
        timeout: float,
        max_bytes: int,
        concurrency: int,
        keepalive: float = 30.0,
        clock: Monotonic = time.monotonic,
        parser: Executor | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.concurrency = concurrency
        self.keepalive = keepalive
        self.clock = clock
        self._gate = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._parser = parser
        self._owns_parser = parser is None
        self._starting: asyncio.Future[None] | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # created on first use: a session belongs to the running loop
            # No pool limit: the gate bounds requests in flight; idle connections close after
            # `keepalive`.
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=self.keepalive)
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, auto_decompress=False
            )
        return self._session

    def _executor(self) -> Executor:
        if self._parser is None:
            # spawn: a fresh interpreter, not a fork of a process running threads (kopf's),
            # that imports only the parser's modules (observe.py, prometheus_client), not
            # this one's aiohttp and pydantic: about 20 MiB, not 40 (e2e/bench/SCALE.md).
            context = multiprocessing.get_context("spawn")
            self._parser = ProcessPoolExecutor(max_workers=1, mp_context=context)
            self._starting = asyncio.wrap_future(self._parser.submit(parser_started))
        return self._parser

    async def start(self) -> None:
        """Have the parser process running before a deadline starts counting (idempotent;
        `scrape` calls it).

        A new process takes 0.1-1 s to start (it imports the parser, and the main module, as
        multiprocessing does); that is paid once per reader, not by the first pods' deadline.
        A process that fails to start surfaces as BrokenProcessPool at the first parse.
        """
        self._executor()
        if self._starting is not None:
            with contextlib.suppress(BrokenProcessPool):
                await self._starting
            self._starting = None

    async def _parse(self, body: bytes) -> TritonSample:
        """The page parsed in the parser process; ScrapeFailure when it is not a usable page."""
        executor = self._executor()
        try:
            return await asyncio.wrap_future(executor.submit(parse_triton_metrics, body))
        except MetricsTooLarge as error:
            raise ScrapeFailure(f"{METRICS_TOO_LARGE}: {error}") from None
        except MetricsParseError as error:
            raise ScrapeFailure(f"parse error: {error}") from None
        except BrokenProcessPool:
            # The parser process died (killed for memory?): the next page gets a new one.
            if self._owns_parser and self._parser is executor:
                self._parser = None
                executor.shutdown(wait=False, cancel_futures=True)
            raise ScrapeFailure("the parser process died; retried next interval") from None

    async def _fetch(self, url: str) -> bytes:
        """GET one metrics page: its whole body, or ScrapeFailure with a short reason."""
        try:
            async with self._client().get(
                url, allow_redirects=False, headers=_REQUEST_HEADERS
            ) as response:
                if response.status != 200:
                    raise ScrapeFailure(f"HTTP {response.status} from {url}")
                return await _read_body(response, self.max_bytes)
        except aiohttp.ClientConnectorError as error:
            reason = str(error.os_error) or str(error)
            raise ScrapeFailure(f"unreachable: {shorten(reason)}") from None
        except aiohttp.ClientPayloadError as error:
            raise ScrapeFailure(f"incomplete body: {shorten(str(error))}") from None
        except aiohttp.ClientError as error:
            raise ScrapeFailure(
                f"request failed: {shorten(type(error).__name__ + ' ' + str(error))}"
            ) from None

    async def scrape(self, pages: Sequence[tuple[PodEndpoint, str]]) -> dict[str, PodScrape]:
        """Read and parse each (pod, URL) concurrently; one PodScrape per pod name.

        `timeout` bounds the whole call, not each request: every page shares one deadline,
        waiting for the gate, fetching and parsing included, so a slow, dead or hostile pod
        (or a queue of them behind the gate) costs at most `timeout` seconds of the
        autoscaling interval, and pods not done by then are reported as timed out.
        """
        if not pages:
            return {}
        await self.start()
        deadline = asyncio.get_running_loop().time() + self.timeout

        async def one(pod: PodEndpoint, url: str) -> PodScrape:
            received: float | None = None
            try:
                async with asyncio.timeout_at(deadline):
                    async with self._gate:
                        body = await self._fetch(url)
                    received = self.clock()
                    sample = await self._parse(body)
            except TimeoutError:
                error = f"timed out after {self.timeout:g}s"
                return PodScrape(pod.name, pod.ip, self.clock(), error=error)
            except ScrapeFailure as failure:
                at = self.clock() if received is None else received
                return PodScrape(pod.name, pod.ip, at, error=str(failure))
            return PodScrape(pod.name, pod.ip, received, sample=sample)

        results = await asyncio.gather(*(one(pod, url) for pod, url in pages))
        return {result.pod: result for result in results}

    async def close(self) -> None:
        """Release the session and stop the parser process."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._parser is not None and self._owns_parser:
            self._parser.shutdown(wait=False, cancel_futures=True)
            self._parser = None


class ScrapeSource:
    """Observations from scraping every ready pod, with each service's previous scrapes kept.

    Every service is read through the one `MetricsReader` (its session, its bound on requests
    in flight and its parser are the operator's).
    """

    def __init__(self, reader: MetricsReader, port: int = TRITON_METRICS_PORT) -> None:
        self.reader = reader
        self.port = port
        self._previous: dict[tuple[str, str], dict[str, PodScrape]] = {}
        self._failing: dict[tuple[str, str], dict[str, FailingPod]] = {}

    def has_news(self, target: MetricsTarget) -> bool:
        """False only while no pod is due: every pod's scrapes keep failing and none is to be
        read again yet (`observe` would report the same failures)."""
        failing, now = self._failing.get(target.key, {}), self.reader.clock()
        return any(scrape_due(pod, failing, now) for pod in target.pods)

    async def observe(self, target: MetricsTarget) -> Observation:
        """Scrape the pods that are due (a pod whose scrapes keep failing is retried with
        backoff, its last failure reported meanwhile: observe.scrape_due) and combine."""
        failing = self._failing.get(target.key, {})
        now = self.reader.clock()
        due = [pod for pod in target.pods if scrape_due(pod, failing, now)]
        scrapes = await self.reader.scrape([(pod, metrics_url(pod.ip, self.port)) for pod in due])
        for pod in target.pods:
            if pod.name not in scrapes:
                scrapes[pod.name] = failing[pod.name].last
        self._failing[target.key] = failing_after(failing, scrapes)
        previous = self._previous.get(target.key, {})
        observation = observe(
            previous,
            scrapes,
            ready_replicas=len(target.pods),
            starting_replicas=target.starting,
            models=target.models,
            now=self.reader.clock(),
        )
        self._previous[target.key] = remember(previous, scrapes)
        return observation

    def forget(self, key: tuple[str, str]) -> None:
        self._previous.pop(key, None)
        self._failing.pop(key, None)

    async def close(self) -> None:
        await self.reader.close()


# --------------------------------------------------------------------------------------------
# asking Prometheus
# --------------------------------------------------------------------------------------------


class PrometheusSource:
    """Observations from a Prometheus server that scrapes the Triton pods.

    Runs the instant queries of `observe.prometheus_queries` through `/api/v1/query`, all of one
    interval within `timeout`; a failed query becomes a problem and its signal is missing.
    """

    def __init__(self, url: str, timeout: float, clock: Monotonic = time.monotonic) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # created on first use: a session belongs to the running loop
            self._session = aiohttp.ClientSession(trust_env=False)
        return self._session

    async def query(self, client: aiohttp.ClientSession, expression: str) -> dict[str, float]:
        """Run an instant query; return each result's value keyed by its `pod` label.

        NaN and infinite values are dropped (the pod then lacks that signal).
        """
        endpoint = f"{self.url}/api/v1/query"
        try:
            async with client.post(
                endpoint, data={"query": expression}, allow_redirects=False
            ) as response:
                try:
                    payload = await response.json(content_type=None)
                except ValueError:
                    raise PrometheusError(f"HTTP {response.status}, body is not JSON") from None
                if (
                    response.status != 200
                    or not isinstance(payload, dict)
                    or payload.get("status") != "success"
                ):
                    detail = payload.get("error") if isinstance(payload, dict) else None
                    raise PrometheusError(
                        f"HTTP {response.status}: {shorten(str(detail or payload))}"
                    )
        except aiohttp.ClientError as error:
            raise PrometheusError(shorten(f"{type(error).__name__} {error}")) from None
        return vector_by_pod(payload)

    def has_news(self, target: MetricsTarget) -> bool:
        """Always: Prometheus' numbers move with every scrape it makes."""
        return True

    async def observe(self, target: MetricsTarget) -> Observation:
        """The target's Observation over the last `target.window_s` seconds.

        No ready pod asks nothing and observes nothing, as scraping no pods would.
        """
        taken = self._clock()
        if not target.pods:
            return empty_observation(target, taken)
        problems: list[str] = []
        answers: dict[str, dict[str, float]] = {}
        client = self._client()

        async def one(family: str, expression: str) -> None:
            try:
                answers[family] = await self.query(client, expression)
            except PrometheusError as error:
                problems.append(f"prometheus {self.url}: query for {family} failed: {error}")

        try:
            async with asyncio.timeout(self.timeout):
                await asyncio.gather(
                    *(one(family, expr) for family, expr in prometheus_queries(target).items())
                )
        except TimeoutError:
            problems.append(f"prometheus {self.url}: no answer within {self.timeout:g}s")
        return prometheus_observation(target, answers, problems, taken)

    def forget(self, key: tuple[str, str]) -> None:
        """Nothing to forget: Prometheus keeps the history."""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
