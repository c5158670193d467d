"""One Triton emulator per simulated pod of the e2e cluster.

KWOK marks the pods the scheduler placed Running and gives them IPs inside 127.0.0.0/8. The
pod runner watches the pods the operator manages (label `app.kubernetes.io/managed-by=tritonop`,
all namespaces), and for each Running pod with a loopback `status.podIP` starts an emulator
bound to that IP on the ports of the pod's `tritonserver` arguments (8000 and 8002), configured
from those arguments (`--load-model=...`, `--strict-readiness=...`). It stops the emulator when
the pod is deleted, stops running, or changes IP. Pods with any other IP are refused loudly:
nothing here binds or dials outside 127.0.0.0/8.

All emulators share one asyncio loop in a background thread; the Kubernetes watch runs in a
second thread and hands events to the loop, where one worker applies them in order.

Tests steer the data plane through the control API: per pod, per InferenceService (the pod
label `app.kubernetes.io/instance`) or for every pod, set the service time, instances, the
model-load delay of emulators started from then on, and the metrics fault mode. In process
that is `PodRunner.configure`; run as `python -m e2e.tritonsim.podrunner --kubeconfig K` it
is an HTTP endpoint on 127.0.0.1 (`GET /pods`, `POST /configure`).

Readiness: the emulator is ready only after its model-load delay, like Triton with
--strict-readiness, but the pod's Ready condition is KWOK's business and does not follow it
(KWOK does not run probes). Clients that must not hit a loading pod probe /v2/health/ready
themselves (the load generator does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ..polling import WaitTimeout, wait_until
from .emulator import (
    EmulatorConfig,
    MetricsFault,
    ServiceSettings,
    TritonEmulator,
    require_loopback,
)
from .loop import BackgroundLoop
from .options import config_from_args

log = logging.getLogger(__name__)

MANAGED_SELECTOR = "app.kubernetes.io/managed-by=tritonop"
INSTANCE_LABEL = "app.kubernetes.io/instance"
TRITON_CONTAINER = "triton"
#: Seconds between attempts to start an emulator whose bind failed (e.g. the pod's IP was
#: still held by the emulator of a pod whose deletion had not been seen yet).
RETRY_INTERVAL_S = 1.0

PodKey = tuple[str, str]


@dataclass(frozen=True)
class PodSettings:
    """Overrides for the emulators of some pods; None leaves the setting as it is."""

    service_time_ms: float | None = None
    service_time_cv: float | None = None
    instances: int | None = None
    max_batch_size: int | None = None
    max_queue_delay_ms: float | None = None
    load_delay_s: float | None = None
    """Applies to emulators started after the setting (a running server has loaded)."""
    metrics_fault: MetricsFault | None = None

    def over(self, base: PodSettings) -> PodSettings:
        """These settings layered over `base` (ours win where set)."""
        changes = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(base, **{k: v for k, v in changes.items() if v is not None})

    def service(self, base: ServiceSettings) -> ServiceSettings:
        """The emulator's service settings with these overrides applied."""
        overrides: dict[str, Any] = {
            "service_time_ms": self.service_time_ms,
            "service_time_cv": self.service_time_cv,
            "instances": self.instances,
            "max_batch_size": self.max_batch_size,
            "max_queue_delay_ms": self.max_queue_delay_ms,
        }
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> PodSettings:
        """From the control endpoint's camelCase JSON (unknown keys are an error)."""
        names = {
            "serviceTimeMs": "service_time_ms",
            "serviceTimeCv": "service_time_cv",
            "instances": "instances",
            "maxBatchSize": "max_batch_size",
            "maxQueueDelayMs": "max_queue_delay_ms",
            "loadDelaySeconds": "load_delay_s",
            "metricsFault": "metrics_fault",
        }
        unknown = sorted(set(body) - set(names) - {"namespace", "pod", "service"})
        if unknown:
            raise ValueError(f"unknown settings {unknown}; known: {sorted(names)}")
        values: dict[str, Any] = {names[k]: v for k, v in body.items() if k in names}
        if values.get("metrics_fault") is not None:
            values["metrics_fault"] = MetricsFault(values["metrics_fault"])
        return cls(**values)


@dataclass(frozen=True)
class PodStatus:
    """What the runner does for one pod."""

    namespace: str
    name: str
    service: str
    ip: str
    state: str
    """serving, failed (bind error, retrying) or refused (IP outside 127.0.0.0/8)."""
    models: tuple[str, ...] = ()
    ready: bool = False
    service_time_ms: float | None = None
    instances: int | None = None
    metrics_fault: str | None = None
    error: str = ""
    pending: int = 0
    """Requests waiting in the emulator's queues now (nv_inference_pending_request_count)."""


@dataclass(frozen=True)
class _Desired:
    """The emulator a pod should have, derived from the pod object alone."""

    ip: str
    service: str
    args: tuple[str, ...]


@dataclass
class _Running:
    desired: _Desired
    emulator: TritonEmulator | None
    error: str = ""
    refused: bool = False


def desired_emulator(pod: Mapping[str, Any]) -> _Desired | None:
    """The emulator a Running pod with an IP needs (None for other pods)."""
    status = pod.get("status") or {}
    ip = status.get("podIP")
    if status.get("phase") != "Running" or not ip:
        return None
    metadata = pod.get("metadata") or {}
    containers = (pod.get("spec") or {}).get("containers") or []
    container = next(
        (c for c in containers if c.get("name") == TRITON_CONTAINER),
        containers[0] if containers else {},
    )
    args = [*(container.get("command") or []), *(container.get("args") or [])]
    service = (metadata.get("labels") or {}).get(INSTANCE_LABEL, "")
    return _Desired(ip=str(ip), service=str(service), args=tuple(str(a) for a in args))


StatusPatcher = Callable[[str, str, dict[str, Any]], None]
"""(namespace, pod name, patch body) -> None: writes a pod's status."""


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    """True when the pod's Ready condition is True."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def ready_status_patch() -> dict[str, Any]:
    """A strategic-merge patch of pod status: Ready and ContainersReady True.

    Conditions merge by `type`, so the other conditions KWOK wrote stay as they are.
    """
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            ]
        }
    }


def _api_status_patcher(api_client: Any) -> StatusPatcher:
    from kubernetes import client

    core = client.CoreV1Api(api_client)

    def patch(namespace: str, name: str, body: dict[str, Any]) -> None:
        core.patch_namespaced_pod_status(name, namespace, body, _request_timeout=10)

    return patch


def _pod_key(pod: Mapping[str, Any]) -> PodKey:
    metadata = pod.get("metadata") or {}
    return str(metadata.get("namespace", "")), str(metadata.get("name", ""))


class PodRunner:
    """Runs an emulator for every Running, loopback-addressed pod the operator manages."""

    def __init__(
        self,
        kubeconfig: str | os.PathLike[str] | None = None,
        *,
        namespace: str | None = None,
        label_selector: str = MANAGED_SELECTOR,
        defaults: EmulatorConfig | None = None,
        control_port: int | None = None,
        watch: bool = True,
        set_pod_readiness: bool = False,
        status_patcher: StatusPatcher | None = None,
        namespace_filter: Callable[[str], bool] | None = None,
        termination_grace_s: float = 0.0,
    ) -> None:
        """`watch=False` runs without a cluster: feed pod events with `apply_event`.

        `set_pod_readiness=True` makes the runner play the kubelet's readiness probe: a Running
        pod whose Ready condition is not True is marked Ready (through `status_patcher`, by
        default a patch of the pod's status subresource) once its emulator answers ready. This
        only has an effect when KWOK leaves such pods unready (see README.md).

        `namespace_filter` limits the runner to pods in namespaces it accepts (e.g. the e2e
        suite's `dataplane-*` namespaces), so one runner can live through a whole test session
        without serving, or changing the behaviour of, other tests' pods.

        `termination_grace_s` keeps a deleted pod's emulator serving that long before it stops,
        like a container finishing its in-flight requests after SIGTERM (KWOK deletes a pod the
        moment it is marked for deletion; clients notice within their refresh interval).
        """
        self._kubeconfig = os.fspath(kubeconfig) if kubeconfig is not None else None
        self._namespace = namespace
        self._selector = label_selector
        self._defaults = defaults or EmulatorConfig()
        self._control_port = control_port
        self._watch_enabled = watch
        self._loop: BackgroundLoop | None = None
        self._events: asyncio.Queue[tuple[str, Any]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._running: dict[PodKey, _Running] = {}
        self._global = PodSettings()
        self._per_service: dict[tuple[str, str], PodSettings] = {}
        self._per_pod: dict[PodKey, PodSettings] = {}
        self._control: web.AppRunner | None = None
        self._control_address: tuple[str, int] | None = None
        self._stopping = threading.Event()
        self._watch_thread: threading.Thread | None = None
        self._current_watch: Any = None
        self._set_pod_readiness = set_pod_readiness
        self._status_patcher = status_patcher
        self._pod_ready: dict[PodKey, bool] = {}
        self._marking: set[PodKey] = set()
        self._marking_tasks: set[asyncio.Task[None]] = set()
        self._readiness_task: asyncio.Task[None] | None = None
        self._namespace_filter = namespace_filter
        self._termination_grace_s = termination_grace_s
        self._terminating: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the emulator loop, the control endpoint (if asked) and the pod watch."""
        api = self._api_client() if self._watch_enabled else None
        if self._set_pod_readiness and self._status_patcher is None:
            if api is None:
                raise ValueError("set_pod_readiness without a watch needs a status_patcher")
            self._status_patcher = _api_status_patcher(api)
        self._loop = BackgroundLoop("podrunner-loop")
        self._loop.run(self._start_async())
        if api is not None:
            self._watch_thread = threading.Thread(
                target=self._watch_pods, args=(api,), name="podrunner-watch", daemon=True
            )
            self._watch_thread.start()

    async def _start_async(self) -> None:
        self._events = asyncio.Queue()
        self._worker = asyncio.create_task(self._work())
        if self._set_pod_readiness:
            self._readiness_task = asyncio.create_task(self._mark_ready_pods())
        if self._control_port is not None:
            app = web.Application()
            app.add_routes(
                [
                    web.get("/healthz", self._http_health),
                    web.get("/pods", self._http_pods),
                    web.post("/configure", self._http_configure),
                ]
            )
            self._control = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            await self._control.setup()
            await web.TCPSite(self._control, "127.0.0.1", self._control_port).start()
            host, port = self._control.addresses[0][:2]
            self._control_address = (str(host), int(port))
            log.info("pod runner control endpoint on http://%s:%d", host, port)

    def stop(self) -> None:
        """Stop watching, stop every emulator, close the loop."""
        self._stopping.set()
        response = getattr(self._current_watch, "_resp", None)
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()  # unblocks the watch thread's read at once
        if self._watch_thread is not None:
            self._watch_thread.join(timeout=10)
        if self._loop is not None:
            self._loop.run(self._stop_async())
            self._loop.close()
            self._loop = None

    async def _stop_async(self) -> None:
        if self._readiness_task is not None:
            self._readiness_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._readiness_task
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        await asyncio.gather(*(self._stop_pod(key) for key in list(self._running)))
        for task in list(self._terminating):
            task.cancel()
        await asyncio.gather(*self._terminating, return_exceptions=True)
        if self._control is not None:
            await self._control.cleanup()

    def __enter__(self) -> PodRunner:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def control_url(self) -> str | None:
        """Base URL of the HTTP control endpoint, when one was asked for."""
        if self._control_address is None:
            return None
        return f"http://{self._control_address[0]}:{self._control_address[1]}"

    def _on_loop(self) -> BackgroundLoop:
        if self._loop is None:
            raise RuntimeError("the pod runner is not running")
        return self._loop

    # ------------------------------------------------------------------ events

    def apply_event(self, event_type: str, pod: Mapping[str, Any]) -> None:
        """Queue a pod event (ADDED, MODIFIED, DELETED); thread-safe, applied in order."""
        loop = self._on_loop()
        events = self._events
        assert events is not None
        loop.call(events.put_nowait, (event_type, dict(pod)))

    def sync(self, timeout: float = 30.0) -> None:
        """Wait until every event queued so far has been applied."""

        async def drained() -> None:
            assert self._events is not None
            await self._events.join()

        self._on_loop().run(drained(), timeout=timeout)

    async def _work(self) -> None:
        assert self._events is not None
        while True:
            event_type, payload = await self._events.get()
            try:
                if event_type == "SYNCED":
                    await self._forget_missing(payload)
                else:
                    await self._reconcile(event_type, payload)
            except Exception:
                log.exception("pod runner failed to apply a %s event", event_type)
            finally:
                self._events.task_done()

    async def _forget_missing(self, present: set[PodKey]) -> None:
        """After a full list: stop emulators of pods deleted while the watch was down."""
        for key in [key for key in self._running if key not in present]:
            await self._stop_pod(key)

    async def _reconcile(self, event_type: str, pod: Mapping[str, Any]) -> None:
        key = _pod_key(pod)
        if self._namespace_filter is not None and not self._namespace_filter(key[0]):
            return
        desired = None if event_type == "DELETED" else desired_emulator(pod)
        if desired is None:
            self._pod_ready.pop(key, None)
        else:
            self._pod_ready[key] = pod_is_ready(pod)
        current = self._running.get(key)
        if current is not None and current.desired == desired and current.emulator is not None:
            return
        if current is not None and current.desired == desired and current.refused:
            return
        if current is not None:
            if event_type == "DELETED" and self._termination_grace_s > 0:
                self._stop_after_grace(key)
            else:
                await self._stop_pod(key)
        if desired is not None:
            await self._start_pod(key, desired)

    async def _start_pod(self, key: PodKey, desired: _Desired) -> None:
        namespace, name = key
        try:
            require_loopback(desired.ip)
        except ValueError as error:
            log.error(
                "REFUSING pod %s/%s: %s. The e2e data plane only binds and dials 127.0.0.0/8; "
                "give KWOK a loopback pod CIDR.",
                namespace,
                name,
                error,
            )
            self._running[key] = _Running(desired, None, str(error), refused=True)
            return
        settings = self._settings_for(namespace, desired.service, name)
        base = replace(
            self._defaults,
            host=desired.ip,
            service=settings.service(self._defaults.service),
            load_delay_s=pick_float(settings.load_delay_s, self._defaults.load_delay_s),
        )
        config, ignored = config_from_args(desired.args, base=base)
        config = replace(config, host=desired.ip)  # never what the args say: the pod's IP
        emulator = TritonEmulator(config)
        if settings.metrics_fault is not None:
            emulator.set_metrics_fault(settings.metrics_fault)
        try:
            await emulator.start()
        except OSError as error:
            previous = self._running.get(key)
            if previous is None or previous.error != str(error):
                log.error(
                    "emulator for pod %s/%s on %s failed: %s", namespace, name, desired.ip, error
                )
            self._running[key] = _Running(desired, None, str(error))
            asyncio.get_running_loop().call_later(RETRY_INTERVAL_S, self._retry, key, desired)
            return
        log.info(
            "pod %s/%s (%s): emulator on %s, models %s%s",
            namespace,
            name,
            desired.service or "-",
            desired.ip,
            ",".join(config.models) or "-",
            f", ignored args {' '.join(ignored)}" if ignored else "",
        )
        self._running[key] = _Running(desired, emulator)

    def _retry(self, key: PodKey, desired: _Desired) -> None:
        current = self._running.get(key)
        if self._stopping.is_set() or current is None or current.emulator is not None:
            return
        if current.desired == desired and not current.refused and self._events is not None:
            synthetic = {
                "metadata": {
                    "namespace": key[0],
                    "name": key[1],
                    "labels": {INSTANCE_LABEL: desired.service},
                },
                "status": {"phase": "Running", "podIP": desired.ip},
                "spec": {"containers": [{"name": TRITON_CONTAINER, "args": list(desired.args)}]},
            }
            self._running.pop(key)
            self._events.put_nowait(("RETRY", synthetic))

    async def _mark_ready_pods(self) -> None:
        """Mark pods Ready once their emulator is (the kubelet's readiness probe, emulated)."""
        while True:
            await asyncio.sleep(0.2)
            for key, running in list(self._running.items()):
                emulator = running.emulator
                if (
                    emulator is None
                    or self._pod_ready.get(key, True)
                    or key in self._marking
                    or not emulator.is_ready()
                ):
                    continue
                self._marking.add(key)
                task = asyncio.create_task(self._mark_ready(key))
                self._marking_tasks.add(task)
                task.add_done_callback(self._marking_tasks.discard)

    async def _mark_ready(self, key: PodKey) -> None:
        patcher = self._status_patcher
        assert patcher is not None
        try:
            await asyncio.to_thread(patcher, key[0], key[1], ready_status_patch())
            self._pod_ready[key] = True
            log.info("pod %s/%s marked Ready: its emulator finished loading", *key)
        except Exception as error:
            log.warning("could not mark pod %s/%s Ready: %s", key[0], key[1], error)
        finally:
            self._marking.discard(key)

    def _stop_after_grace(self, key: PodKey) -> None:
        """Forget a deleted pod now; stop its emulator after the termination grace."""
        current = self._running.pop(key, None)
        if current is None or current.emulator is None:
            return
        emulator = current.emulator

        async def stop_later() -> None:
            try:
                await asyncio.sleep(self._termination_grace_s)
            finally:
                await emulator.stop()
                log.info("pod %s/%s: emulator on %s stopped", key[0], key[1], current.desired.ip)

        task = asyncio.create_task(stop_later())
        self._terminating.add(task)
        task.add_done_callback(self._terminating.discard)

    async def _stop_pod(self, key: PodKey) -> None:
        current = self._running.pop(key, None)
        if current is not None and current.emulator is not None:
            await current.emulator.stop()
            log.info("pod %s/%s: emulator on %s stopped", key[0], key[1], current.desired.ip)

    # ------------------------------------------------------------------ control

    def _settings_for(self, namespace: str, service: str, pod: str) -> PodSettings:
        settings = self._global
        service_settings = self._per_service.get((namespace, service))
        if service_settings is not None:
            settings = service_settings.over(settings)
        pod_settings = self._per_pod.get((namespace, pod))
        if pod_settings is not None:
            settings = pod_settings.over(settings)
        return settings

    def configure(
        self,
        settings: PodSettings,
        *,
        namespace: str | None = None,
        pod: str | None = None,
        service: str | None = None,
    ) -> list[str]:
        """Apply settings to one pod, one InferenceService's pods, or every pod.

        The settings also hold for matching pods started later. Returns `namespace/name` of
        the running emulators that were changed.
        """
        if pod is not None and service is not None:
            raise ValueError("name a pod or a service, not both")
        if (pod is not None or service is not None) and namespace is None:
            raise ValueError("a pod or service needs its namespace")
        settings.service(ServiceSettings()).replica_config()  # validate on the caller's thread

        async def apply() -> list[str]:
            if pod is not None:
                key = (str(namespace), pod)
                self._per_pod[key] = settings.over(self._per_pod.get(key, PodSettings()))
            elif service is not None:
                key = (str(namespace), service)
                self._per_service[key] = settings.over(self._per_service.get(key, PodSettings()))
            else:
                self._global = settings.over(self._global)
            changed = []
            for (pod_namespace, pod_name), running in self._running.items():
                emulator = running.emulator
                if emulator is None:
                    continue
                matches = (
                    (pod is not None and (pod_namespace, pod_name) == (namespace, pod))
                    or (
                        service is not None
                        and (pod_namespace, running.desired.service) == (namespace, service)
                    )
                    or (pod is None and service is None)
                )
                if not matches:
                    continue
                effective = self._settings_for(pod_namespace, running.desired.service, pod_name)
                service_settings = effective.service(emulator.config.service)
                if service_settings != emulator.config.service:
                    emulator.set_service(service_settings)
                if effective.metrics_fault is not None:
                    emulator.set_metrics_fault(effective.metrics_fault)
                changed.append(f"{pod_namespace}/{pod_name}")
            return changed

        return self._on_loop().run(apply())

    def pods(self) -> list[PodStatus]:
        """The state of every pod the runner has acted on."""

        async def collect() -> list[PodStatus]:
            return self._statuses()

        return self._on_loop().run(collect())

    def _statuses(self) -> list[PodStatus]:
        statuses = []
        for (namespace, name), running in sorted(self._running.items()):
            pod = (namespace, name, running.desired.service, running.desired.ip)
            emulator = running.emulator
            if emulator is None:
                state = "refused" if running.refused else "failed"
                statuses.append(PodStatus(*pod, state, error=running.error))
                continue
            statuses.append(
                PodStatus(
                    *pod,
                    "serving",
                    models=emulator.config.models,
                    ready=emulator.is_ready(),
                    service_time_ms=emulator.config.service.service_time_ms,
                    instances=emulator.config.service.instances,
                    metrics_fault=emulator.metrics_fault.value,
                    pending=sum(
                        m.pending_request_count for m in emulator.metrics_snapshot().models
                    ),
                )
            )
        return statuses

    def emulator(self, namespace: str, name: str) -> TritonEmulator | None:
        """The emulator serving a pod (for in-process tests; use it on the runner's loop)."""
        running = self._running.get((namespace, name))
        return running.emulator if running else None

    def wait_until(
        self, predicate: Callable[[list[PodStatus]], bool], timeout: float = 30.0
    ) -> list[PodStatus]:
        """Poll `pods()` until the predicate holds and return those statuses; WaitTimeout
        (with the last statuses seen) otherwise."""
        seen: list[PodStatus] = []

        def matched() -> tuple[list[PodStatus]] | None:
            seen[:] = self.pods()
            return (list(seen),) if predicate(seen) else None

        try:
            return wait_until(matched, timeout, "the pod runner's state", interval=0.05)[0]
        except WaitTimeout as error:
            raise WaitTimeout(f"{error}; last state: {seen}") from None

    # ------------------------------------------------------------------ control over HTTP

    async def _http_health(self, request: web.Request) -> web.Response:
        return web.json_response({"pods": len(self._running)})

    async def _http_pods(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(status) for status in self._statuses()])

    async def _http_configure(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            settings = PodSettings.from_json(body)
            settings.service(ServiceSettings()).replica_config()
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=400)
        # configure() blocks on the loop this handler runs on: hop to a thread.
        try:
            changed = await asyncio.to_thread(
                self.configure,
                settings,
                namespace=body.get("namespace"),
                pod=body.get("pod"),
                service=body.get("service"),
            )
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response({"changed": changed})

    # ------------------------------------------------------------------ Kubernetes watch

    def _api_client(self) -> Any:
        from kubernetes import client, config

        if self._kubeconfig is not None:
            return config.new_client_from_config(config_file=self._kubeconfig)  # type: ignore[no-untyped-call]
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return client.ApiClient()
        except config.ConfigException:
            return config.new_client_from_config()  # type: ignore[no-untyped-call]

    def _push(self, event_type: str, payload: Any) -> None:
        loop, events = self._loop, self._events
        if loop is None or events is None or self._stopping.is_set():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us: we are stopping
            loop.call(events.put_nowait, (event_type, payload))

    def _watch_pods(self, api_client: Any) -> None:
        """List, then watch from the list's resourceVersion; relist after errors or 410."""
        from kubernetes import client, watch
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(api_client)
        if self._namespace:
            lister: Callable[..., Any] = core.list_namespaced_pod
            scope: dict[str, Any] = {"namespace": self._namespace}
        else:
            lister, scope = core.list_pod_for_all_namespaces, {}
        while not self._stopping.is_set():
            try:
                listed = lister(label_selector=self._selector, _request_timeout=30, **scope)
                present: set[PodKey] = set()
                for item in listed.items:
                    pod = api_client.sanitize_for_serialization(item)
                    present.add(_pod_key(pod))
                    self._push("MODIFIED", pod)
                self._push("SYNCED", present)
                version = listed.metadata.resource_version
                while not self._stopping.is_set():
                    self._current_watch = watch.Watch()  # type: ignore[no-untyped-call]
                    for event in self._current_watch.stream(
                        lister,
                        label_selector=self._selector,
                        resource_version=version,
                        timeout_seconds=30,
                        allow_watch_bookmarks=True,
                        deserialize=False,
                        **scope,
                    ):
                        kind = event.get("type")
                        obj = event.get("raw_object") or event.get("object") or {}
                        if kind == "ERROR":
                            raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                        version = (obj.get("metadata") or {}).get("resourceVersion", version)
                        if kind in ("ADDED", "MODIFIED", "DELETED"):
                            self._push(kind, obj)
                        if self._stopping.is_set():
                            break
            except Exception as error:
                if self._stopping.is_set():
                    break
                log.warning("pod watch interrupted (%s); relisting in 1s", error)
                self._stopping.wait(1.0)


def pick_float(value: float | None, fallback: float) -> float:
    """`value` unless it is None."""
    return fallback if value is None else value


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m e2e.tritonsim.podrunner --kubeconfig K [--control-port P] [defaults]`."""
    parser = argparse.ArgumentParser(
        prog="python -m e2e.tritonsim.podrunner",
        description="Run a Triton emulator for every Running loopback pod managed by tritonop.",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig of the e2e cluster (default: $KUBECONFIG)")
    parser.add_argument("--namespace", help="watch one namespace (default: all)")
    parser.add_argument("--control-port", type=int, default=18080, help="127.0.0.1 control port")
    parser.add_argument("--service-time-ms", type=float, default=50.0)
    parser.add_argument("--service-time-cv", type=float, default=0.0)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=1)
    parser.add_argument("--load-delay", type=float, default=2.0, help="model-load seconds")
    parser.add_argument(
        "--set-pod-readiness",
        action="store_true",
        help="mark pods Ready once their emulator has loaded (KWOK stages that leave them unready)",
    )
    parser.add_argument(
        "--namespace-prefix", help="serve only pods in namespaces starting with this prefix"
    )
    parser.add_argument(
        "--termination-grace",
        type=float,
        default=0.0,
        help="seconds a deleted pod's emulator keeps serving (in-flight requests finish)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    defaults = EmulatorConfig(
        load_delay_s=args.load_delay,
        service=ServiceSettings(
            service_time_ms=args.service_time_ms,
            service_time_cv=args.service_time_cv,
            instances=args.instances,
            max_batch_size=args.max_batch_size,
        ),
    )
    defaults.service.replica_config()
    prefix = args.namespace_prefix
    runner = PodRunner(
        args.kubeconfig,
        namespace=args.namespace,
        defaults=defaults,
        control_port=args.control_port,
        set_pod_readiness=args.set_pod_readiness,
        namespace_filter=(lambda namespace: namespace.startswith(prefix)) if prefix else None,
        termination_grace_s=args.termination_grace,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        runner.start()
    except Exception as error:  # a bad kubeconfig or a busy control port: say so, exit 2
        print(f"podrunner: cannot start: {error}", file=sys.stderr)
        runner.stop()
        return 2
    print(f"pod runner watching pods; control endpoint {runner.control_url}", flush=True)
    try:
        stop.wait()
    finally:
        runner.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
