"""A Triton Inference Server look-alike: KServe v2 HTTP on one port, Triton metrics on another.

What a client or the operator sees is Triton's protocol; what happens behind it is the shared
queueing model `tritonop.sim.replica.ReplicaModel`. Every inference request is submitted to
that model on arrival; one scheduler task per emulator sleeps until the model's next event,
advances it, and completes the requests that finished by resolving their futures. Queue depth,
queue time and the success/exec counters therefore behave as Triton's do under load, with the
timing of the model and the wall clock of the event loop.

Counters are accumulated from the model's `Completion` records (arrival, start, end, batch
size) exactly as Triton defines them (updated when a request completes), which also lets the
service time or instance count change at run time: new arrivals go to a fresh model with the
new configuration while the previous one drains its in-flight requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import itertools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, cast

from aiohttp import web

from tritonop.sim.replica import Completion, ReplicaConfig, ReplicaModel

from .metrics import (
    CONTENT_TYPE,
    FAILURE_REASONS,
    GARBAGE_EXPOSITION,
    ModelMetrics,
    ServerMetrics,
    absurd_exposition,
    render_exposition,
    triton_registry,
)
from .models import AddSubModel
from .tensors import (
    HEADER_LENGTH,
    ProtocolError,
    compress,
    decode_infer_request,
    decompress,
    encode_infer_response,
)

log = logging.getLogger(__name__)

#: The server version reported in metadata: the tritonserver whose behaviour
#: e2e/test_conformance.py checks the emulator against (the `nvidia-pytriton` 0.7.0 wheel).
SERVER_VERSION = "2.51.0"

#: Extensions the emulator implements (and only those), as listed in server metadata.
EXTENSIONS = (
    "binary_tensor_data",
    "model_configuration",
    "model_repository",
    "parameters",
    "statistics",
)

#: Synthetic memory figures for the nv_cpu_memory_* gauges (there is no real process to
#: measure per emulated pod): a fixed total, a resident baseline, and a small cost per
#: request in flight so the gauge moves under load.
MEMORY_TOTAL_BYTES = 16 * 1024**3
MEMORY_BASELINE_BYTES = 1536 * 1024**2
MEMORY_PER_REQUEST_BYTES = 256 * 1024


class MetricsFault(enum.StrEnum):
    """How the metrics endpoint misbehaves, for tests of the operator's metrics reader."""

    OK = "ok"
    ERROR = "error"
    """HTTP 500 with a short text body."""
    GARBAGE = "garbage"
    """HTTP 200 with text no Prometheus parser accepts."""
    HANG = "hang"
    """Accept the request and never answer (until the mode changes or the emulator stops)."""
    ABSURD = "absurd"
    """HTTP 200 with pages that parse but that no Triton prints (see `absurd_exposition`):
    read twice, they imply a demand of a billion replicas."""


class ModelState(enum.StrEnum):
    """Model states as Triton's repository index reports them."""

    LOADING = "LOADING"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True)
class ServiceSettings:
    """How fast the emulated model serves: the knobs of `ReplicaConfig`, plus a queue limit."""

    service_time_ms: float = 50.0
    service_time_cv: float = 0.0
    instances: int = 1
    max_batch_size: int = 1
    """Largest batch the emulated dynamic batcher forms; 1 = no dynamic batching."""
    max_queue_delay_ms: float = 0.0
    batch_overhead: float = 0.1
    max_queue_size: int = 0
    """Reject requests (HTTP 503) when this many already wait; 0 = unbounded."""
    error_rate: float = 0.0
    """Fraction of executions in which the model raises after its service time (1 = all):
    a failing model, counted reason BACKEND like Triton counts a backend's error."""

    def replica_config(self) -> ReplicaConfig:
        """The queueing model's configuration (validates the values)."""
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be between 0 and 1, got {self.error_rate}")
        if self.max_queue_size < 0:
            raise ValueError(f"max_queue_size must be >= 0, got {self.max_queue_size}")
        return ReplicaConfig(
            instances=self.instances,
            service_time_ms=self.service_time_ms,
            service_time_cv=self.service_time_cv,
            max_batch_size=self.max_batch_size,
            max_queue_delay_ms=self.max_queue_delay_ms,
            batch_overhead=self.batch_overhead,
        )


@dataclass(frozen=True)
class EmulatorConfig:
    """One emulated Triton server."""

    host: str = "127.0.0.1"
    """Address to bind; must be inside 127.0.0.0/8 (the emulator never binds elsewhere)."""
    http_port: int = 8000
    metrics_port: int = 8002
    models: tuple[str, ...] = ("simple",)
    load_delay_s: float = 0.0
    """Seconds after start before the models (and, with strict readiness, the server) are ready."""
    strict_readiness: bool = True
    service: ServiceSettings = field(default_factory=ServiceSettings)
    seed: int | None = None
    """Seed of the service-time randomness (only used when service_time_cv > 0)."""
    model_repository: str = ""
    """Informational: the --model-repository the emulated server was started with."""
    repository_models: tuple[str, ...] = ()
    """Models the emulated repository holds besides `models`. Loading a name that is in
    neither fails as Triton fails to find a model in its repository (HTTP 500)."""


def require_loopback(host: str) -> None:
    """Refuse any address outside 127.0.0.0/8: emulators never bind or dial elsewhere."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError as error:
        raise ValueError(f"refusing non-loopback address {host!r}: not an IP address") from error
    if address.version != 4 or address not in ipaddress.ip_network("127.0.0.0/8"):
        raise ValueError(f"refusing non-loopback address {host!r}: outside 127.0.0.0/8")


@dataclass
class _Counters:
    """Triton's per-model cumulative statistics, in nanoseconds like the statistics API."""

    success: int = 0
    success_ns: int = 0
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_REASONS, 0))
    fail_ns: int = 0
    inference_count: int = 0
    exec_count: int = 0
    queue_ns: int = 0
    compute_infer_ns: int = 0
    last_inference_ms: int = 0
    batch_executions: dict[int, list[int]] = field(default_factory=dict)
    """batch size (rows) -> [executions, compute_infer_ns]."""


@dataclass
class _Waiter:
    future: asyncio.Future[Completion]
    rows: int


class _ModelRuntime:
    """One loaded model: its state, queueing model(s) and statistics."""

    def __init__(self, model: AddSubModel, settings: ServiceSettings, rng: random.Random) -> None:
        self.model = model
        self.rng = rng
        self.state = ModelState.LOADING
        self.ready_at = 0.0
        self.settings = settings
        self.active = ReplicaModel(settings.replica_config(), rng)
        self.draining: list[ReplicaModel] = []
        self.counters = _Counters()
        self.waiters: dict[int, _Waiter] = {}

    def replicas(self) -> list[ReplicaModel]:
        return [self.active, *self.draining]

    @property
    def pending(self) -> int:
        return sum(replica.pending_count for replica in self.replicas())

    @property
    def in_flight(self) -> int:
        return sum(replica.in_flight for replica in self.replicas())

    def reconfigure(self, settings: ServiceSettings, rng: random.Random) -> None:
        """New arrivals go to a model with the new settings; the old one drains."""
        if self.active.in_flight:
            self.draining.append(self.active)
        self.settings = settings
        self.active = ReplicaModel(settings.replica_config(), rng)

    def record(self, completions: list[Completion]) -> None:
        """Fold finished requests into the counters and wake their HTTP handlers.

        A batch's completions are consecutive in the model's output, `batch_size` at a time,
        which is how executions (exec_count, batch statistics) are told apart. With an
        `error_rate`, a batch may fail as a whole (the model raised for the execution): as in
        Triton, its requests count as failures with reason BACKEND and the execution still
        counts, but neither success, queue nor inference statistics.
        """
        counters = self.counters
        index = 0
        while index < len(completions):
            batch = completions[index : index + completions[index].batch_size]
            index += len(batch)
            first = batch[0]
            compute_ns = round((first.end - first.start) * 1e9)
            failed = self.settings.error_rate > 0 and self.rng.random() < self.settings.error_rate
            rows = 0
            for completion in batch:
                waiter = self.waiters.pop(cast(int, completion.request_id))
                rows += waiter.rows
                duration_ns = round((completion.end - completion.arrival) * 1e9)
                if failed:
                    counters.failures["BACKEND"] += 1
                    counters.fail_ns += duration_ns
                    if not waiter.future.done():
                        waiter.future.set_exception(self._model_error())
                    continue
                counters.success += 1
                counters.success_ns += duration_ns
                counters.queue_ns += round((completion.start - completion.arrival) * 1e9)
                counters.compute_infer_ns += compute_ns
                if not waiter.future.done():
                    waiter.future.set_result(completion)
            if not failed:
                counters.inference_count += rows
            counters.exec_count += 1
            execution = counters.batch_executions.setdefault(rows, [0, 0])
            execution[0] += 1
            execution[1] += compute_ns
        if completions:
            counters.last_inference_ms = int(time.time() * 1000)
        self.draining = [replica for replica in self.draining if replica.in_flight]

    def _model_error(self) -> ProtocolError:
        """What the python backend answers when a model's execute() raises (without the
        Python traceback it appends); the emulator names the first instance."""
        return ProtocolError(
            f"Failed to process the request(s) for model '{self.model.name}_0_0', message: "
            "TritonModelException: model error injected (error_rate parameter)",
            status=500,
        )


def _json(body: object, status: int = 200) -> web.Response:
    """A JSON answer as Triton writes it: compact, `application/json` without a charset."""
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def _error(message: str, status: int = 400) -> web.Response:
    return _json({"error": message}, status=status)


def _plain(status: int, body: bytes = b"") -> web.Response:
    """Health and readiness answers: Triton sends them as text/plain (errors in JSON)."""
    return web.Response(body=body, status=status, content_type="text/plain")


@web.middleware
async def _triton_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer failures with Triton's error body `{"error": "..."}`."""
    try:
        return await handler(request)
    except ProtocolError as error:
        return _error(error.message, error.status)
    except web.HTTPNotFound:
        return _error("Not Found", 404)
    except web.HTTPMethodNotAllowed:
        return _error("Method Not Allowed", 405)


class TritonEmulator:
    """One emulated Triton server (start it inside a running event loop)."""

    def __init__(self, config: EmulatorConfig) -> None:
        require_loopback(config.host)
        if not config.models:
            log.warning("emulator on %s starts with no models loaded", config.host)
        self.config = config
        self._rng = random.Random(config.seed)
        self._request_ids = itertools.count()
        self._runtimes: dict[str, _ModelRuntime] = {}
        self._metrics_fault = MetricsFault.OK
        self._absurd_reads = 0
        self._fault_changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None
        self._runners: list[web.AppRunner] = []
        self._ports: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started_at = 0.0
        self._stopping = False
        self._registry = triton_registry(self.metrics_snapshot)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind both listeners and start loading the models."""
        self._loop = asyncio.get_running_loop()
        self._started_at = self._loop.time()
        for name in self.config.models:
            self._load(name, self.config.load_delay_s)
        self._scheduler = asyncio.create_task(self._schedule(), name=f"triton-{self.config.host}")
        try:
            await self._listen("http", self._http_app(), self.config.http_port)
            await self._listen("metrics", self._metrics_app(), self.config.metrics_port)
        except BaseException:
            await self.stop()
            raise
        log.info(
            "Triton emulator on %s: http %d, metrics %d, models %s, load delay %.1fs",
            self.config.host,
            self.http_port,
            self.metrics_port,
            ",".join(self.config.models) or "-",
            self.config.load_delay_s,
        )

    async def stop(self) -> None:
        """Close both listeners (hanging metrics requests are released first)."""
        self._stopping = True
        self._fault_changed.set()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
            self._scheduler = None
        for runtime in self._runtimes.values():
            for waiter in runtime.waiters.values():
                waiter.future.cancel()
            runtime.waiters.clear()

    async def _listen(self, role: str, app: web.Application, port: int) -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self.config.host, port, reuse_address=True)
        await site.start()
        self._ports[role] = int(runner.addresses[-1][1])

    @property
    def http_port(self) -> int:
        """The bound HTTP port (differs from the configured one when that was 0)."""
        return self._ports.get("http", self.config.http_port)

    @property
    def metrics_port(self) -> int:
        """The bound metrics port."""
        return self._ports.get("metrics", self.config.metrics_port)

    @property
    def url(self) -> str:
        """host:port of the HTTP endpoint, the form tritonclient takes."""
        return f"{self.config.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        """Full URL of the metrics endpoint."""
        return f"http://{self.config.host}:{self.metrics_port}/metrics"

    # ------------------------------------------------------------------ control

    def _now(self) -> float:
        assert self._loop is not None, "the emulator has not been started"
        return self._loop.time()

    def set_service(self, settings: ServiceSettings) -> None:
        """Change service time, instances or batching of every model, from now on."""
        settings.replica_config()  # validate before touching anything
        for runtime in self._runtimes.values():
            runtime.reconfigure(settings, self._rng)
        self.config = replace(self.config, service=settings)
        self._wake.set()

    def set_metrics_fault(self, mode: MetricsFault | str) -> None:
        """Make the metrics endpoint answer normally, with 500, with garbage, or never."""
        self._metrics_fault = MetricsFault(mode)
        self._fault_changed.set()
        self._fault_changed = asyncio.Event()

    @property
    def metrics_fault(self) -> MetricsFault:
        """The current metrics fault mode."""
        return self._metrics_fault

    def _refresh_states(self) -> None:
        now = self._now()
        for runtime in self._runtimes.values():
            if runtime.state is ModelState.LOADING and now >= runtime.ready_at:
                runtime.state = ModelState.READY

    def model_state(self, name: str) -> ModelState | None:
        """The model's state, or None when the server has never heard of it."""
        self._refresh_states()
        runtime = self._runtimes.get(name)
        return runtime.state if runtime else None

    def is_ready(self) -> bool:
        """Server readiness: with strict readiness, only when every model that is loaded or
        loading is READY (an unloaded model no longer counts, as in Triton)."""
        if self._stopping or self._loop is None:
            return False
        self._refresh_states()
        if not self.config.strict_readiness:
            return True
        return all(
            runtime.state is ModelState.READY
            for runtime in self._runtimes.values()
            if runtime.state is not ModelState.UNAVAILABLE
        )

    def _load(self, name: str, delay: float) -> _ModelRuntime:
        runtime = self._runtimes.get(name)
        if runtime is None or runtime.state is ModelState.UNAVAILABLE:
            runtime = _ModelRuntime(AddSubModel(name), self.config.service, self._rng)
            self._runtimes[name] = runtime
        runtime.ready_at = self._now() + delay
        runtime.state = ModelState.READY if delay <= 0 else ModelState.LOADING
        return runtime

    # ------------------------------------------------------------------ scheduling

    async def _schedule(self) -> None:
        """Sleep until the next model event (or a new arrival), then complete what finished."""
        while True:
            self._wake.clear()
            now = self._now()
            next_event: float | None = None
            for runtime in self._runtimes.values():
                for replica in runtime.replicas():
                    runtime.record(replica.advance(now))
                    event = replica.next_event_time()
                    if event is not None and (next_event is None or event < next_event):
                        next_event = event
            timeout = None if next_event is None else max(0.0, next_event - self._now())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _execute(self, runtime: _ModelRuntime, rows: int) -> Completion:
        request_id = next(self._request_ids)
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        runtime.waiters[request_id] = _Waiter(future, rows)
        runtime.active.submit(self._now(), request_id)
        self._wake.set()
        return await future

    # ------------------------------------------------------------------ observation

    def metrics_snapshot(self) -> ServerMetrics:
        """What a scrape shows right now (loaded models only, like Triton)."""
        self._refresh_states()
        models: list[ModelMetrics] = []
        busy = capacity = in_flight = 0
        for runtime in self._runtimes.values():
            if runtime.state is not ModelState.READY:
                continue
            counters = runtime.counters
            models.append(
                ModelMetrics(
                    model=runtime.model.name,
                    version=runtime.model.version,
                    success=counters.success,
                    failures=dict(counters.failures),
                    inference_count=counters.inference_count,
                    exec_count=counters.exec_count,
                    request_duration_us=counters.success_ns // 1000,
                    queue_duration_us=counters.queue_ns // 1000,
                    compute_infer_duration_us=counters.compute_infer_ns // 1000,
                    pending_request_count=runtime.pending,
                )
            )
            busy += sum(replica.busy_instances for replica in runtime.replicas())
            capacity += runtime.settings.instances
            in_flight += runtime.in_flight
        return ServerMetrics(
            models=models,
            cpu_utilization=min(1.0, busy / capacity) if capacity else 0.0,
            cpu_memory_total_bytes=MEMORY_TOTAL_BYTES,
            cpu_memory_used_bytes=MEMORY_BASELINE_BYTES + in_flight * MEMORY_PER_REQUEST_BYTES,
        )

    @property
    def pending(self) -> int:
        """Requests queued and not executing, over the ready models (what
        nv_inference_pending_request_count sums to)."""
        self._refresh_states()
        return sum(r.pending for r in self._runtimes.values() if r.state is ModelState.READY)

    def metrics_text(self) -> bytes:
        """The metrics endpoint's body in the OK mode."""
        return render_exposition(self._registry)

    def statistics(self, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        """The statistics extension's response for one model or all ready models."""
        self._refresh_states()
        if name is None:
            runtimes = [r for r in self._runtimes.values() if r.state is ModelState.READY]
        else:
            runtime = self._runtimes.get(name)
            if runtime is None or runtime.state is not ModelState.READY:
                raise ProtocolError(f"requested model '{name}' is not available")
            runtimes = [self._ready_runtime(name, version)]
        return {"model_stats": [self._model_statistics(runtime) for runtime in runtimes]}

    @staticmethod
    def _model_statistics(runtime: _ModelRuntime) -> dict[str, Any]:
        counters = runtime.counters
        failed = sum(counters.failures.values())

        def duration(count: int, ns: int) -> dict[str, int]:
            return {"count": count, "ns": ns}

        return {
            "name": runtime.model.name,
            "version": runtime.model.version,
            "last_inference": counters.last_inference_ms,
            "inference_count": counters.inference_count,
            "execution_count": counters.exec_count,
            "inference_stats": {
                "success": duration(counters.success, counters.success_ns),
                "fail": duration(failed, counters.fail_ns),
                "queue": duration(counters.success, counters.queue_ns),
                "compute_input": duration(counters.success, 0),
                "compute_infer": duration(counters.success, counters.compute_infer_ns),
                "compute_output": duration(counters.success, 0),
                "cache_hit": duration(0, 0),
                "cache_miss": duration(0, 0),
            },
            "response_stats": {},
            "batch_stats": [
                {
                    "batch_size": rows,
                    "compute_input": duration(executions, 0),
                    "compute_infer": duration(executions, ns),
                    "compute_output": duration(executions, 0),
                }
                for rows, (executions, ns) in sorted(counters.batch_executions.items())
            ],
            "memory_usage": [],
        }

    def _ready_runtime(self, name: str, version: str | None) -> _ModelRuntime:
        """The named model if it is READY in that version, else Triton's unknown-model error
        (HTTP 404; a model the server knows but has not loaded "has no available versions")."""
        self._refresh_states()
        runtime = self._runtimes.get(name)
        if runtime is None:
            raise ProtocolError(f"Request for unknown model: '{name}' is not found", 404)
        if runtime.state is not ModelState.READY:
            raise ProtocolError(
                f"Request for unknown model: '{name}' has no available versions", 404
            )
        if version not in (None, "", runtime.model.version):
            raise ProtocolError(
                f"Request for unknown model: '{name}' version {version} is not found", 404
            )
        return runtime

    def _requested_runtime(self, request: web.Request) -> _ModelRuntime:
        return self._ready_runtime(request.match_info["model"], request.match_info.get("version"))

    # ------------------------------------------------------------------ HTTP: KServe v2

    def _http_app(self) -> web.Application:
        app = web.Application(middlewares=[_triton_errors], client_max_size=64 * 1024**2)
        routes = [
            web.get("/v2/health/live", self._live),
            web.get("/v2/health/ready", self._ready),
            web.get("/v2", self._server_metadata),
            web.get("/v2/models/stats", self._stats),
            web.post("/v2/repository/index", self._repository_index),
            web.post("/v2/repository/models/{model}/load", self._load_model),
            web.post("/v2/repository/models/{model}/unload", self._unload_model),
        ]
        for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            routes += [
                web.get(prefix, self._model_metadata),
                web.get(prefix + "/ready", self._model_ready),
                web.get(prefix + "/config", self._model_config),
                web.get(prefix + "/stats", self._stats),
                web.post(prefix + "/infer", self._infer),
            ]
        app.add_routes(routes)
        return app

    async def _live(self, request: web.Request) -> web.Response:
        return _plain(200 if not self._stopping else 400)

    async def _ready(self, request: web.Request) -> web.Response:
        return _plain(200 if self.is_ready() else 400)

    async def _server_metadata(self, request: web.Request) -> web.Response:
        return _json({"name": "triton", "version": SERVER_VERSION, "extensions": list(EXTENSIONS)})

    async def _model_metadata(self, request: web.Request) -> web.Response:
        runtime = self._requested_runtime(request)
        return _json(runtime.model.metadata())

    async def _model_ready(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        version = request.match_info.get("version")
        runtime = self._runtimes.get(name)
        ready = (
            self.model_state(name) is ModelState.READY
            and runtime is not None
            and version in (None, "", runtime.model.version)
        )
        if ready:
            return _plain(200)
        return _plain(400, b'{"error":"Model version not ready"}')

    async def _model_config(self, request: web.Request) -> web.Response:
        runtime = self._requested_runtime(request)
        settings = runtime.settings
        return _json(
            runtime.model.config(
                instances=settings.instances,
                batcher_max_batch_size=settings.max_batch_size,
                max_queue_delay_ms=settings.max_queue_delay_ms,
                max_queue_size=settings.max_queue_size,
            )
        )

    async def _stats(self, request: web.Request) -> web.Response:
        name = request.match_info.get("model")
        return _json(self.statistics(name, request.match_info.get("version")))

    async def _repository_index(self, request: web.Request) -> web.Response:
        body = await request.read()
        ready_only = False
        if body:
            try:
                ready_only = bool(json.loads(body).get("ready", False))
            except (ValueError, AttributeError) as error:
                raise ProtocolError("failed to parse the repository index request") from error
        self._refresh_states()
        index = []
        for runtime in self._runtimes.values():
            if ready_only and runtime.state is not ModelState.READY:
                continue
            entry = {
                "name": runtime.model.name,
                "version": runtime.model.version,
                "state": runtime.state.value,
            }
            if runtime.state is ModelState.UNAVAILABLE:
                entry["reason"] = "unloaded"
            index.append(entry)
        return _json(index)

    async def _load_model(self, request: web.Request) -> web.Response:
        """Explicit model control: load (taking the load delay, like a real load would).

        Only models of the emulated repository load; Triton answers any other name with 500.
        """
        name = request.match_info["model"]
        if name not in self.config.models and name not in self.config.repository_models:
            raise ProtocolError(
                f"failed to load '{name}', failed to poll from model repository", 500
            )
        runtime = self._load(name, self.config.load_delay_s)
        await asyncio.sleep(max(0.0, runtime.ready_at - self._now()))
        self._refresh_states()
        return web.Response(status=200, content_type="application/json")

    async def _unload_model(self, request: web.Request) -> web.Response:
        """Unload; a model the server never loaded is unloaded already (200, like Triton)."""
        runtime = self._runtimes.get(request.match_info["model"])
        if runtime is not None:
            runtime.state = ModelState.UNAVAILABLE
        return web.Response(status=200, content_type="application/json")

    async def _infer(self, request: web.Request) -> web.Response:
        runtime = self._requested_runtime(request)
        body = decompress(await request.read(), request.headers.get("Content-Encoding"))
        # tritonserver 2.51 counts neither a request it cannot decode, nor one that fails
        # validation, nor one its full queue rejects: none became an execution. Only a
        # failed execution counts (reason BACKEND, see _ModelRuntime.record).
        infer_request = decode_infer_request(body, request.headers.get(HEADER_LENGTH))
        rows = runtime.model.validate(infer_request)
        limit = runtime.settings.max_queue_size
        if limit and runtime.active.pending_count >= limit:
            request_id = infer_request.request_id or "<id_unknown>"
            raise ProtocolError(
                f"[request id: {request_id}] Exceeds maximum queue size", status=503
            )
        await self._execute(runtime, rows)
        outputs = runtime.model.compute(infer_request)
        payload, header_length = encode_infer_response(
            runtime.model.name, runtime.model.version, infer_request.request_id, outputs
        )
        payload, encoding = compress(payload, request.headers.get("Accept-Encoding"))
        headers = {}
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        if header_length is None:
            content_type = "application/json"
        else:
            content_type = "application/octet-stream"
            headers[HEADER_LENGTH] = str(header_length)
        return web.Response(body=payload, headers=headers, content_type=content_type)

    # ------------------------------------------------------------------ HTTP: metrics

    def _metrics_app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.get("/metrics", self._metrics)])
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        while self._metrics_fault is MetricsFault.HANG and not self._stopping:
            await self._fault_changed.wait()
        if self._stopping:
            return web.Response(status=503, text="shutting down\n")
        if self._metrics_fault is MetricsFault.ERROR:
            return web.Response(status=500, text="Internal Server Error: metrics fault injected\n")
        if self._metrics_fault is MetricsFault.GARBAGE:
            return web.Response(body=GARBAGE_EXPOSITION, content_type="text/plain")
        if self._metrics_fault is MetricsFault.ABSURD:
            self._absurd_reads += 1
            body = absurd_exposition(self.config.models, self._absurd_reads - 1)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
        response = web.Response(body=self.metrics_text())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response
