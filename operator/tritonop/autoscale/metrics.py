"""Reading Triton's metrics over the network: the two sources of an autoscaling Observation.

One `MetricsSource` protocol, two implementations, chosen once from the settings by
`source_for` (the autoscaling loop never asks which it has):

* `ScrapeSource` (the default) reads `http://<podIP>:8002/metrics` of every ready pod
  concurrently and remembers each service's last scrapes, since counter deltas need two.
* `PrometheusSource`, when the operator is configured with a Prometheus server, asks it the
  same quantities as PromQL over a rate window.

One source serves every InferenceService and keeps one HTTP session for all of them; `close`
releases it when the operator stops. Everything that is not I/O (parsing, counter deltas,
turning query answers into an Observation, and the rules that keep a missing signal from
reading as zero) is autoscale/observe.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import aiohttp

from tritonop.autoscale.observe import (
    MetricsParseError,
    MetricsTarget,
    PodEndpoint,
    PodScrape,
    PrometheusError,
    empty_observation,
    observe,
    parse_triton_metrics,
    prometheus_observation,
    prometheus_queries,
    remember,
    shorten,
    vector_by_pod,
)
from tritonop.autoscale.types import Observation
from tritonop.config import Settings

TRITON_METRICS_PORT = 8002
MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest metrics body read from a pod; Triton prints a few KiB per model."""

Monotonic = Callable[[], float]
"""The monotonic clock that stamps observations (runtime.Clock.monotonic)."""


class MetricsSource(Protocol):
    """Where one interval's Observation of one InferenceService comes from."""

    async def observe(self, target: MetricsTarget) -> Observation:
        """The target's signals now; failures become `problems`, never an exception."""
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
    return ScrapeSource(
        timeout=settings.scrape_timeout_seconds,
        concurrency=settings.scrape_concurrency,
        clock=clock,
    )


# --------------------------------------------------------------------------------------------
# scraping the pods
# --------------------------------------------------------------------------------------------


def metrics_url(ip: str, port: int = TRITON_METRICS_PORT) -> str:
    """Triton's metrics URL on a pod IP (IPv6 addresses bracketed)."""
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}/metrics"


async def _fetch(session: aiohttp.ClientSession, url: str) -> str:
    """GET one metrics page; raise ScrapeFailure with a short reason on anything but 200 text."""
    try:
        async with session.get(url, allow_redirects=False) as response:
            if response.status != 200:
                raise ScrapeFailure(f"HTTP {response.status} from {url}")
            body = await response.content.read(MAX_BODY_BYTES + 1)
            if len(body) > MAX_BODY_BYTES:
                raise ScrapeFailure(f"metrics body larger than {MAX_BODY_BYTES} bytes")
            return body.decode("utf-8", errors="replace")
    except aiohttp.ClientConnectorError as error:
        raise ScrapeFailure(f"unreachable: {shorten(str(error.os_error) or str(error))}") from None
    except aiohttp.ClientError as error:
        raise ScrapeFailure(
            f"request failed: {shorten(type(error).__name__ + ' ' + str(error))}"
        ) from None


class ScrapeFailure(Exception):
    """Why one pod's metrics could not be read (the message becomes an Observation problem)."""


async def scrape_pods(
    pods: Sequence[PodEndpoint],
    *,
    timeout: float,
    concurrency: int,
    port: int = TRITON_METRICS_PORT,
    session: aiohttp.ClientSession | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, PodScrape]:
    """Read and parse every pod's metrics concurrently; returns one PodScrape per pod name.

    At most `concurrency` requests are in flight. `timeout` bounds the whole call, not each
    request: every request shares one deadline, so a slow or dead pod (or a queue of them
    behind the semaphore) costs at most `timeout` seconds of the autoscaling interval, and
    pods not answered by then are reported as timed out. A Triton page takes milliseconds,
    so the default 16 in flight within 2 s covers hundreds of pods.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if not pods:
        return {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    gate = asyncio.Semaphore(concurrency)

    async def scrape(pod: PodEndpoint, client: aiohttp.ClientSession) -> PodScrape:
        url = metrics_url(pod.ip, port)
        try:
            async with asyncio.timeout_at(deadline):
                async with gate:
                    text = await _fetch(client, url)
        except TimeoutError:
            return PodScrape(pod.name, pod.ip, clock(), error=f"timed out after {timeout:g}s")
        except ScrapeFailure as failure:
            return PodScrape(pod.name, pod.ip, clock(), error=str(failure))
        received = clock()
        try:
            sample = parse_triton_metrics(text)
        except MetricsParseError as error:
            return PodScrape(pod.name, pod.ip, received, error=f"parse error: {error}")
        return PodScrape(pod.name, pod.ip, received, sample=sample)

    async def scrape_all(client: aiohttp.ClientSession) -> list[PodScrape]:
        return await asyncio.gather(*(scrape(pod, client) for pod in pods))

    results = await _with_session(session, concurrency, scrape_all)
    return {result.pod: result for result in results}


async def _with_session(
    session: aiohttp.ClientSession | None,
    connections: int,
    work: Callable[[aiohttp.ClientSession], Awaitable[list[PodScrape]]],
) -> list[PodScrape]:
    """Run `work` with the caller's session, or a short-lived one that ignores proxy variables."""
    if session is not None:
        return await work(session)
    connector = aiohttp.TCPConnector(limit=connections, force_close=True)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as owned:
        return await work(owned)


class ScrapeSource:
    """Observations from scraping every ready pod, with each service's previous scrapes kept.

    The session is shared by every service's scrapes; `concurrency` bounds the requests of one
    service's interval (as before the session was shared), and connections are not kept alive
    (a pod may be gone by the next interval).
    """

    def __init__(
        self,
        *,
        timeout: float,
        concurrency: int,
        clock: Monotonic = time.monotonic,
        port: int = TRITON_METRICS_PORT,
    ) -> None:
        self.timeout = timeout
        self.concurrency = concurrency
        self.port = port
        self._clock = clock
        self._previous: dict[tuple[str, str], dict[str, PodScrape]] = {}
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # created on first use: a session belongs to the running loop
            connector = aiohttp.TCPConnector(limit=0, force_close=True)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    async def observe(self, target: MetricsTarget) -> Observation:
        scrapes = await scrape_pods(
            target.pods,
            timeout=self.timeout,
            concurrency=self.concurrency,
            port=self.port,
            session=self._client() if target.pods else None,
            clock=self._clock,
        )
        previous = self._previous.get(target.key, {})
        observation = observe(
            previous,
            scrapes,
            ready_replicas=len(target.pods),
            starting_replicas=target.starting,
            models=target.models,
            now=self._clock(),
        )
        self._previous[target.key] = remember(previous, scrapes)
        return observation

    def forget(self, key: tuple[str, str]) -> None:
        self._previous.pop(key, None)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


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
