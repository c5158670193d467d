"""Open-loop load against the Triton pods of one InferenceService.

Requests leave at the times a profile dictates whether or not earlier ones have answered (an
open loop, like independent users), through `tritonclient.http.aio`, spread round-robin over
the service's pods the way a Service would. The pod list is refreshed every second or so, so
pods the operator adds receive traffic as soon as they are ready; pods that go away stop
receiving it.

Every run is bounded twice: by duration (no request leaves after it; stragglers get at most
the request timeout) and by a request count. Every request is recorded (send time, latency,
outcome, pod), per-window statistics are printed as the run goes, and the result carries a
summary (p50/p95/p99, errors by kind) so e2e tests can assert, for example, that p95 comes
back under the SLO after the service scaled out.

Readiness: in the e2e cluster KWOK marks pods Ready without running their readiness probes,
so a "Ready" pod may be an emulator still loading its model (or not yet started). With
`probe_ready` (the default) a pod joins the rotation only once its own /v2/health/ready says
200, which is what the pod's readiness probe would have gated in a real cluster.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import ipaddress
import logging
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

import aiohttp
import numpy as np
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException

from .profiles import Profile

log = logging.getLogger(__name__)

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


@dataclass(frozen=True, order=True)
class Endpoint:
    """One pod's Triton HTTP endpoint."""

    name: str
    ip: str
    port: int = 8000

    @property
    def url(self) -> str:
        """host:port, the form tritonclient takes."""
        return f"{self.ip}:{self.port}"


class EndpointSource(Protocol):
    """Where the pods come from: the Kubernetes API in e2e, a fixed list in unit tests."""

    async def endpoints(self) -> list[Endpoint]:
        """The pods that should receive traffic now."""
        ...


@dataclass(frozen=True)
class StaticEndpoints:
    """A fixed list of endpoints."""

    items: tuple[Endpoint, ...]

    async def endpoints(self) -> list[Endpoint]:
        return list(self.items)


def is_loopback(ip: str) -> bool:
    """True for IPv4 addresses inside 127.0.0.0/8 (the only ones this tool dials)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return address.version == 4 and address in LOOPBACK


def ready_loopback_endpoints(pods: Sequence[dict[str, Any]], port: int = 8000) -> list[Endpoint]:
    """The pods a Service would route to (Ready, not terminating), restricted to 127.0.0.0/8."""
    endpoints = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        status = pod.get("status") or {}
        if metadata.get("deletionTimestamp"):
            continue
        conditions = status.get("conditions") or []
        if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            continue
        ip = status.get("podIP")
        if not ip:
            continue
        if not is_loopback(ip):
            log.error("skipping pod %s: IP %s is outside 127.0.0.0/8", metadata.get("name"), ip)
            continue
        endpoints.append(Endpoint(str(metadata.get("name", ip)), str(ip), port))
    return sorted(endpoints)


class KubernetesEndpoints:
    """The Ready pods of one InferenceService, listed through the Kubernetes API."""

    def __init__(self, kubeconfig: str | None, namespace: str, name: str, port: int = 8000) -> None:
        from kubernetes import client, config

        api_client = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        self._api_client = api_client
        self._core = client.CoreV1Api(api_client)
        self._namespace = namespace
        self._selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/name=triton"
        self._port = port

    def _list(self) -> list[Endpoint]:
        listed = self._core.list_namespaced_pod(
            self._namespace, label_selector=self._selector, _request_timeout=10
        )
        pods = [self._api_client.sanitize_for_serialization(pod) for pod in listed.items]
        return ready_loopback_endpoints(pods, self._port)

    async def endpoints(self) -> list[Endpoint]:
        return await asyncio.to_thread(self._list)


@dataclass(frozen=True)
class RequestRecord:
    """One request: when it left (seconds since start), how long it took, how it ended."""

    sent_at: float
    latency_s: float | None
    """None when the request never left (no pod, too many in flight)."""
    endpoint: str
    error: str | None = None
    """None on success; else a kind: http_<status>, timeout, connect, client, wrong_result,
    no_endpoint, overload."""

    @property
    def ok(self) -> bool:
        """True when the answer came back and was right."""
        return self.error is None


@dataclass(frozen=True)
class WindowStats:
    """Requests that finished within one progress window."""

    start: float
    end: float
    sent: int
    """Requests sent in the window."""
    ok: int
    errors: int
    rate: float
    """Successful answers per second in the window."""
    p50_ms: float | None
    p95_ms: float | None
    pods: int
    """Pods in the rotation at the end of the window."""
    in_flight: int


@dataclass(frozen=True)
class LoadSummary:
    """The whole run."""

    sent: int
    ok: int
    errors: int
    errors_by_kind: dict[str, int]
    duration_s: float
    achieved_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    stopped_by: str
    """duration, max_requests or profile_end."""
    pods_seen: tuple[str, ...]


@dataclass
class LoadResult:
    """Everything a run produced."""

    records: list[RequestRecord]
    windows: list[WindowStats]
    summary: LoadSummary
    profile: str = ""
    started_at: float = 0.0
    """`time.monotonic()` when the run's clock started: record times are offsets from it, so
    they can be lined up with other monotonic observations (scale events, queue samples)."""

    def latencies_ms(self, since: float = 0.0, until: float = math.inf) -> list[float]:
        """Latencies of successful requests sent within [since, until) seconds."""
        return [
            record.latency_s * 1000
            for record in self.records
            if record.ok and record.latency_s is not None and since <= record.sent_at < until
        ]

    def percentile_ms(self, q: float, since: float = 0.0, until: float = math.inf) -> float | None:
        """The q-th percentile (0..100) of successful latencies sent within [since, until)."""
        return percentile(sorted(self.latencies_ms(since, until)), q)


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile of sorted values (None for no values)."""
    if not ordered:
        return None
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100.0
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


@dataclass(frozen=True)
class LoadConfig:
    """One run: what to offer, to which model, within which bounds."""

    profile: Profile
    duration_s: float
    max_requests: int
    model: str = "simple"
    window_s: float = 5.0
    refresh_s: float = 1.0
    request_timeout_s: float = 10.0
    max_in_flight: int = 2000
    """Beyond this many unanswered requests new ones are recorded as `overload`, not sent."""
    probe_ready: bool = True
    wait_for_pods_s: float = 0.0
    """Before the run's clock starts, wait up to this long for a first pod in the rotation
    (0: start at once; requests with no pod to go to are recorded as `no_endpoint`)."""
    verify: bool = True
    """Check OUTPUT0 == INPUT0 + INPUT1 and OUTPUT1 == INPUT0 - INPUT1 on every answer."""
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise ValueError("duration_s must be a finite number > 0 (runs are bounded in time)")
        if self.max_requests < 1:
            raise ValueError("max_requests must be >= 1 (runs are bounded in count)")


def _error_kind(error: BaseException) -> str:
    if isinstance(error, InferenceServerException):
        status = error.status()
        return f"http_{status}" if status else "server"
    if isinstance(error, asyncio.TimeoutError):
        return "timeout"
    if isinstance(error, aiohttp.ClientConnectorError | ConnectionError):
        return "connect"
    if isinstance(error, aiohttp.ClientError):
        return "client"
    return type(error).__name__


class _Rotation:
    """The pods in rotation, each with its own client, picked round-robin."""

    def __init__(self, request_timeout: float) -> None:
        self._timeout = request_timeout
        self.clients: dict[Endpoint, aioclient.InferenceServerClient] = {}
        self._order: list[Endpoint] = []
        self._next = 0
        self._retired: list[aioclient.InferenceServerClient] = []
        self.seen: set[str] = set()

    def pick(self) -> tuple[Endpoint, aioclient.InferenceServerClient] | None:
        if not self._order:
            return None
        endpoint = self._order[self._next % len(self._order)]
        self._next += 1
        return endpoint, self.client_for(endpoint)

    def client_for(self, endpoint: Endpoint) -> aioclient.InferenceServerClient:
        client = self.clients.get(endpoint)
        if client is None:
            client = aioclient.InferenceServerClient(
                endpoint.url, conn_limit=256, conn_timeout=self._timeout
            )
            self.clients[endpoint] = client
        return client

    @property
    def size(self) -> int:
        return len(self._order)

    def set(self, listed: Sequence[Endpoint], ready: Sequence[Endpoint]) -> None:
        """Keep clients for every listed pod; route only to the ready ones."""
        wanted = set(listed)
        for endpoint in [e for e in self.clients if e not in wanted]:
            # In-flight requests of a pod that left keep their session until the run ends.
            self._retired.append(self.clients.pop(endpoint))
        self._order = sorted(set(ready) & wanted)
        self.seen.update(endpoint.name for endpoint in self._order)

    async def close(self) -> None:
        for client in [*self.clients.values(), *self._retired]:
            with contextlib.suppress(Exception):
                await client.close()


class LoadGenerator:
    """Runs one bounded, open-loop load run (see module docstring)."""

    def __init__(
        self,
        config: LoadConfig,
        source: EndpointSource,
        *,
        out: TextIO | None = sys.stdout,
    ) -> None:
        self.config = config
        self.source = source
        self.out = out
        self._rng = random.Random(config.seed)
        self._records: list[RequestRecord] = []
        self._completed_at: list[float] = []
        self._sent_at: list[float] = []
        """Offsets at which requests left (or were dropped), in order: for per-window counts."""
        self._windows: list[WindowStats] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._rotation = _Rotation(config.request_timeout_s)
        self._start = 0.0
        first = np.arange(16, dtype=np.int32).reshape(1, 16)
        second = np.full((1, 16), 7, dtype=np.int32)
        self._expected = (first + second, first - second)
        self._inputs = []
        for name, value in (("INPUT0", first), ("INPUT1", second)):
            tensor = aioclient.InferInput(name, [1, 16], "INT32")
            tensor.set_data_from_numpy(value)
            self._inputs.append(tensor)

    def _now(self) -> float:
        return asyncio.get_running_loop().time() - self._start

    @property
    def started_at(self) -> float:
        """`time.monotonic()` when the run's clock started (0.0 before it has)."""
        return self._start

    def completed_since(self, since: float) -> list[RequestRecord]:
        """Requests that finished `since` seconds into the run or later, for live views.

        Call it on the generator's event loop (or accept a view that may miss the requests
        finishing while it copies).
        """
        first = bisect.bisect_left(self._completed_at, since)
        return self._records[first:]

    def in_rotation(self) -> int:
        """Pods currently receiving traffic."""
        return self._rotation.size

    async def run(self) -> LoadResult:
        """Send the profile's requests until its end, the duration or the request limit."""
        loop = asyncio.get_running_loop()
        await self._refresh()
        give_up = loop.time() + self.config.wait_for_pods_s
        while self._rotation.size == 0 and loop.time() < give_up:
            await asyncio.sleep(min(self.config.refresh_s, 0.2))
            await self._refresh()
        self._start = loop.time()
        refresher = asyncio.create_task(self._keep_refreshing())
        reporter = asyncio.create_task(self._report())
        stopped_by = "profile_end"
        try:
            for offset in self.config.profile.arrivals(self._rng):
                if offset >= self.config.duration_s:
                    stopped_by = "duration"
                    break
                if len(self._sent_at) >= self.config.max_requests:
                    stopped_by = "max_requests"
                    break
                delay = offset - self._now()
                if delay > 0:
                    await asyncio.sleep(delay)
                self._send()
            if stopped_by == "duration":
                # Nothing more is offered, but the run still lasts its full duration.
                await asyncio.sleep(max(0.0, self.config.duration_s - self._now()))
            if self._in_flight:
                await asyncio.wait(self._in_flight, timeout=self.config.request_timeout_s + 1)
            for task in self._in_flight:
                task.cancel()
        finally:
            refresher.cancel()
            reporter.cancel()
            await asyncio.gather(refresher, reporter, return_exceptions=True)
            self._window_stats(final=True)
            await self._rotation.close()
        return LoadResult(
            records=sorted(self._records, key=lambda record: record.sent_at),
            windows=self._windows,
            summary=self._summary(stopped_by),
            profile=self.config.profile.description,
            started_at=self._start,
        )

    # ------------------------------------------------------------------ sending

    def _send(self) -> None:
        now = self._now()
        self._sent_at.append(now)
        picked = self._rotation.pick()
        if picked is None:
            self._finish(RequestRecord(now, None, "-", "no_endpoint"))
            return
        if len(self._in_flight) >= self.config.max_in_flight:
            self._finish(RequestRecord(now, None, picked[0].name, "overload"))
            return
        task = asyncio.create_task(self._infer(now, *picked))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _infer(
        self, sent: float, endpoint: Endpoint, client: aioclient.InferenceServerClient
    ) -> None:
        error: str | None = None
        try:
            result = await asyncio.wait_for(
                client.infer(self.config.model, self._inputs), self.config.request_timeout_s
            )
            if self.config.verify and not (
                np.array_equal(result.as_numpy("OUTPUT0"), self._expected[0])
                and np.array_equal(result.as_numpy("OUTPUT1"), self._expected[1])
            ):
                error = "wrong_result"
        except asyncio.CancelledError:
            raise
        except Exception as exception:  # every failure is data: recorded by kind
            error = _error_kind(exception)
        self._finish(RequestRecord(sent, self._now() - sent, endpoint.name, error))

    def _finish(self, record: RequestRecord) -> None:
        self._records.append(record)
        self._completed_at.append(self._now())

    # ------------------------------------------------------------------ pods

    async def _refresh(self) -> None:
        try:
            listed = await self.source.endpoints()
        except Exception as error:
            log.warning("could not list pods (%s); keeping the previous rotation", error)
            return
        listed = [endpoint for endpoint in listed if is_loopback(endpoint.ip)]
        ready = listed
        if self.config.probe_ready:
            answers = await asyncio.gather(*(self._is_ready(endpoint) for endpoint in listed))
            ready = [endpoint for endpoint, ok in zip(listed, answers, strict=True) if ok]
        self._rotation.set(listed, ready)

    async def _is_ready(self, endpoint: Endpoint) -> bool:
        try:
            client = self._rotation.client_for(endpoint)
            return bool(await asyncio.wait_for(client.is_server_ready(), 2.0))
        except Exception:
            return False

    async def _keep_refreshing(self) -> None:
        while True:
            await asyncio.sleep(self.config.refresh_s)
            await self._refresh()

    # ------------------------------------------------------------------ reporting

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(self.config.window_s)
            self._window_stats()

    def _window_stats(self, final: bool = False) -> None:
        end = self._now()
        start = self._windows[-1].end if self._windows else 0.0
        if final and end - start < 1e-3:
            return
        finished = [
            record
            for record, done in zip(self._records, self._completed_at, strict=True)
            if start <= done < end or (final and done >= end)
        ]
        sent = bisect.bisect_left(self._sent_at, end) - bisect.bisect_left(self._sent_at, start)
        latencies = sorted(
            record.latency_s * 1000
            for record in finished
            if record.ok and record.latency_s is not None
        )
        ok = sum(1 for record in finished if record.ok)
        window = WindowStats(
            start=start,
            end=end,
            sent=sent,
            ok=ok,
            errors=len(finished) - ok,
            rate=ok / (end - start) if end > start else 0.0,
            p50_ms=percentile(latencies, 50),
            p95_ms=percentile(latencies, 95),
            pods=self._rotation.size,
            in_flight=len(self._in_flight),
        )
        self._windows.append(window)
        if self.out is not None:
            total_ok = sum(1 for record in self._records if record.ok)
            print(
                f"[{end:7.1f}s] sent {len(self._sent_at):6d} "
                f"ok {total_ok:6d} err {len(self._records) - total_ok:5d} | window: "
                f"rate {window.rate:6.1f}/s p50 {_ms(window.p50_ms)} p95 {_ms(window.p95_ms)} "
                f"pods {window.pods} in-flight {window.in_flight}",
                file=self.out,
                flush=True,
            )

    def _summary(self, stopped_by: str) -> LoadSummary:
        records = self._records
        latencies = sorted(
            record.latency_s * 1000 for record in records if record.ok and record.latency_s
        )
        errors_by_kind: dict[str, int] = {}
        for record in records:
            if record.error is not None:
                errors_by_kind[record.error] = errors_by_kind.get(record.error, 0) + 1
        ok = len(records) - sum(errors_by_kind.values())
        duration = self._windows[-1].end if self._windows else self._now()
        return LoadSummary(
            sent=len(records),
            ok=ok,
            errors=len(records) - ok,
            errors_by_kind=errors_by_kind,
            duration_s=duration,
            achieved_rate=ok / duration if duration > 0 else 0.0,
            p50_ms=percentile(latencies, 50),
            p95_ms=percentile(latencies, 95),
            p99_ms=percentile(latencies, 99),
            max_ms=latencies[-1] if latencies else None,
            stopped_by=stopped_by,
            pods_seen=tuple(sorted(self._rotation.seen)),
        )


def _ms(value: float | None) -> str:
    return f"{value:7.1f}ms" if value is not None else "      -  "


async def run_load(
    config: LoadConfig, source: EndpointSource, *, out: TextIO | None = sys.stdout
) -> LoadResult:
    """Run one bounded load run and return its records, windows and summary."""
    return await LoadGenerator(config, source, out=out).run()


def summary_text(result: LoadResult) -> str:
    """A few human lines about a finished run."""
    summary = result.summary
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(summary.errors_by_kind.items()))
    return (
        f"profile {result.profile}: {summary.sent} sent, {summary.ok} ok, "
        f"{summary.errors} errors{f' ({kinds})' if kinds else ''} in {summary.duration_s:.1f}s "
        f"({summary.achieved_rate:.1f} ok/s, stopped by {summary.stopped_by})\n"
        f"latency p50 {_ms(summary.p50_ms).strip()} p95 {_ms(summary.p95_ms).strip()} "
        f"p99 {_ms(summary.p99_ms).strip()} max {_ms(summary.max_ms).strip()}; "
        f"pods {', '.join(summary.pods_seen) or '-'}"
    )
