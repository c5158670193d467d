"""One Triton server per simulated pod of the e2e cluster: the emulator, or real tritonserver.

KWOK marks the pods the scheduler placed Running and gives them IPs inside 127.0.0.0/8. The
pod runner watches the pods the operator manages (label `app.kubernetes.io/managed-by=tritonop`,
all namespaces), and for each Running pod with a loopback `status.podIP` starts a server bound
to that IP on the ports of the pod's `tritonserver` arguments (8000, 8001, 8002), configured
from those arguments (`--load-model=...`, `--strict-readiness=...`). It stops the server when
the pod is deleted, stops running, or changes IP. Pods with any other IP are refused loudly:
nothing here binds or dials outside 127.0.0.0/8.

Which server a pod gets is a setting like the others (`PodSettings.server`, per pod, per
service or for all; the runner's `default_server` otherwise): `emulator` (`TritonEmulator`,
in process, every fault mode, service times that change at run time) or `tritonserver`
(NVIDIA's real server from the `nvidia-pytriton` wheel, `e2e.realtriton.pod.RealTritonPod`:
the pod's own arguments rewritten only where this machine differs, a repository written from
the same settings, a process per pod that stops within its exit timeout). A real server that
exits while its pod still runs (killed, crashed) is started again after `RESTART_DELAY_S`, as
the kubelet restarts a container.

All emulators share one asyncio loop in a background thread; the Kubernetes watch runs in a
second thread and hands events to the loop, where one worker applies them in order.

Like the kubelet, the runner expands `$(NAME)` in the container's command and args from its
environment (`env` values and `secretKeyRef`s, `envFrom` Secrets, read through the API; see
`containerenv`) before either server sees them: the operator passes Triton's admin key that
way. A Secret that is missing keeps the server from starting (retried every
`RETRY_INTERVAL_S`), as a container waits in CreateContainerConfigError.

Tests steer the data plane through the control API: per pod, per InferenceService (the pod
label `app.kubernetes.io/instance`) or for every pod, set the server kind, service time,
instances, the model-load delay of servers started from then on, and (emulator only) the
metrics fault mode; a real server takes service settings when it (re)starts. In process
that is `PodRunner.configure`; run as `python -m e2e.tritonsim.podrunner --kubeconfig K` it
is an HTTP endpoint on 127.0.0.1 (`GET /pods`, `POST /configure`).

Readiness: the emulator is ready only after its model-load delay, like Triton with
--strict-readiness, and the real server when its `/v2/health/ready` says so; the pod's Ready
condition is KWOK's business unless `set_pod_readiness` (see the class) makes the runner mark
it from the server's readiness. Clients that must not hit a loading pod probe
/v2/health/ready themselves (the load generator does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from ..polling import WaitTimeout, wait_until
from ..realtriton.pod import RealTritonPod
from ..realtriton.server import DEFAULT_EXIT_TIMEOUT_S
from .containerenv import (
    ContainerConfigError,
    EnvSource,
    SecretReader,
    env_sources,
    environment,
    expand_all,
)
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
#: Seconds before a real server that exited while its pod runs is started again: the
#: kubelet's first restart back-off (10 s). With the readiness probe the operator renders
#: (every 5 s, 3 failures) the kubelet would withdraw the pod's Ready only after 15 s, so the
#: restarted server is usually back before that; the runner leaves Ready as it is meanwhile.
RESTART_DELAY_S = 10.0


class Server(enum.StrEnum):
    """Which Triton a pod gets."""

    EMULATOR = "emulator"
    TRITONSERVER = "tritonserver"


#: A pod's server: both have config, start(), stop(), is_ready() and pending.
PodServer = TritonEmulator | RealTritonPod

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
    """Applies to servers started after the setting (a running server has loaded)."""
    metrics_fault: MetricsFault | None = None
    """Emulator only: real tritonserver's metrics cannot be made to misbehave."""
    server: Server | None = None
    """Applies to pods started after the setting."""

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
            "server": "server",
        }
        unknown = sorted(set(body) - set(names) - {"namespace", "pod", "service"})
        if unknown:
            raise ValueError(f"unknown settings {unknown}; known: {sorted(names)}")
        values: dict[str, Any] = {names[k]: v for k, v in body.items() if k in names}
        if values.get("metrics_fault") is not None:
            values["metrics_fault"] = MetricsFault(values["metrics_fault"])
        if values.get("server") is not None:
            values["server"] = Server(values["server"])
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
    """Requests waiting in the server's queues now (nv_inference_pending_request_count)."""
    server: str = ""
    """emulator or tritonserver."""
    pid: int | None = None
    """The real server's process id."""


@dataclass(frozen=True)
class _Desired:
    """The emulator a pod should have, derived from the pod object alone."""

    ip: str
    service: str
    args: tuple[str, ...]
    """The container's command and args as the pod spec has them (`$(NAME)` unexpanded)."""
    env: tuple[EnvSource, ...] = ()
    """The container's envFrom and env, for the kubelet's `$(NAME)` expansion."""

    def container(self) -> dict[str, Any]:
        """The `triton` container of a pod spec this was derived from."""
        container: dict[str, Any] = {"name": TRITON_CONTAINER, "args": list(self.args)}
        for field, entry in (source.manifest() for source in self.env):
            container.setdefault(field, []).append(entry)
        return container


@dataclass
class _Running:
    desired: _Desired
    server: PodServer | None
    error: str = ""
    refused: bool = False
    restart: asyncio.TimerHandle | None = None
    """A pending restart of a real server that exited."""


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
    return _Desired(
        ip=str(ip),
        service=str(service),
        args=tuple(str(a) for a in args),
        env=env_sources(container),
    )


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


def _api_secret_reader(api_client: Any) -> SecretReader:
    """Reads a Secret's data through the API (as the kubelet does, with the runner's
    credentials); None for a Secret that does not exist."""
    import base64

    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)

    def read(namespace: str, name: str) -> Mapping[str, str] | None:
        try:
            secret = core.read_namespaced_secret(name, namespace, _request_timeout=10)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        data = secret.data or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    return read


def _no_secrets(namespace: str, name: str) -> Mapping[str, str] | None:
    """The secret reader of a runner without a cluster: there are no Secrets."""
    return None


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
    """Runs a Triton server for every Running, loopback-addressed pod the operator manages."""

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
        default_server: Server = Server.EMULATOR,
        work_dir: Path | None = None,
        exit_timeout_s: int | None = None,
        secret_reader: SecretReader | None = None,
    ) -> None:
        """`watch=False` runs without a cluster: feed pod events with `apply_event`.

        `set_pod_readiness=True` makes the runner play the kubelet's readiness probe: a Running
        pod whose Ready condition is not True is marked Ready (through `status_patcher`, by
        default a patch of the pod's status subresource) once its emulator answers ready. This
        only has an effect when KWOK leaves such pods unready (see README.md).

        `namespace_filter` limits the runner to pods in namespaces it accepts (e.g. the e2e
        suite's `dataplane-*` namespaces), so one runner can live through a whole test session
        without serving, or changing the behaviour of, other tests' pods.

        `termination_grace_s` keeps a deleted pod's server serving that long before it stops,
        like a container finishing its in-flight requests after SIGTERM (KWOK deletes a pod the
        moment it is marked for deletion; clients notice within their refresh interval). A
        real server then gets SIGTERM and stops within `exit_timeout_s` (its
        --exit-timeout-secs) plus a margin, else it is killed.

        `default_server` is the server of pods no `PodSettings.server` names; real servers keep
        their repositories and logs under `work_dir/<namespace>/<pod>/` (default: a temporary
        directory removed by `stop()`).

        `secret_reader` resolves the Secrets a container's environment names (for `$(NAME)` in
        its arguments, see `containerenv`); by default the cluster's, through the watch's API
        client, and none without a watch.
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
        #: Stoppers of deleted pods' servers, each with the event that cuts its grace short.
        self._terminating: dict[asyncio.Task[None], asyncio.Event] = {}
        #: The servers of deleted pods still in their termination grace, by pod IP: KWOK frees
        #: a pod's IP with the pod object and may hand it to the next pod at once.
        self._terminating_on: dict[str, asyncio.Task[None]] = {}
        self._default_server = default_server
        self._work_dir = work_dir
        self._own_work_dir = False
        self._exit_timeout_s = exit_timeout_s
        self._server_watch: asyncio.Task[None] | None = None
        self._secret_reader = secret_reader

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the emulator loop, the control endpoint (if asked) and the pod watch."""
        api = self._api_client() if self._watch_enabled else None
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="podrunner-"))
            self._own_work_dir = True
        if self._set_pod_readiness and self._status_patcher is None:
            if api is None:
                raise ValueError("set_pod_readiness without a watch needs a status_patcher")
            self._status_patcher = _api_status_patcher(api)
        if self._secret_reader is None:
            self._secret_reader = _api_secret_reader(api) if api is not None else _no_secrets
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
        self._server_watch = asyncio.create_task(self._watch_servers())
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
            self._loop.run(self._stop_async(), timeout=120)
            self._loop.close()
            self._loop = None
        if self._own_work_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)

    async def _stop_async(self) -> None:
        for task in (self._readiness_task, self._server_watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        await asyncio.gather(*(self._stop_pod(key) for key in list(self._running)))
        for cut_short in self._terminating.values():
            cut_short.set()
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
        if current is not None and current.desired == desired and current.server is not None:
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
        await self._release_ip(desired.ip)
        settings = self._settings_for(namespace, desired.service, name)
        kind = settings.server or self._default_server
        try:
            args = await self._container_args(namespace, desired)
        except ContainerConfigError as error:
            self._start_failed(key, desired, f"{kind} for pod {namespace}/{name}", error)
            return
        base = replace(
            self._defaults,
            host=desired.ip,
            service=settings.service(self._defaults.service),
            load_delay_s=pick_float(settings.load_delay_s, self._defaults.load_delay_s),
        )
        config, ignored = config_from_args(args, base=base)
        config = replace(config, host=desired.ip)  # never what the args say: the pod's IP
        server: PodServer
        if kind is Server.TRITONSERVER:
            server = self._real_server(key, config, args)
            ignored = []  # the real server takes the pod's arguments (rewritten) as they are
        else:
            emulator = TritonEmulator(config)
            if settings.metrics_fault is not None:
                emulator.set_metrics_fault(settings.metrics_fault)
            server = emulator
        try:
            await server.start()
        except OSError as error:
            self._start_failed(key, desired, f"{kind} for pod {namespace}/{name}", error)
            return
        log.info(
            "pod %s/%s (%s): %s on %s, models %s%s",
            namespace,
            name,
            desired.service or "-",
            kind,
            desired.ip,
            ",".join(config.models) or "-",
            f", ignored args {' '.join(ignored)}" if ignored else "",
        )
        self._running[key] = _Running(desired, server)

    def _start_failed(self, key: PodKey, desired: _Desired, what: str, error: Exception) -> None:
        """Record a server that could not start (logged once per error) and try again soon."""
        previous = self._running.get(key)
        if previous is None or previous.error != str(error):
            log.error("%s on %s failed: %s", what, desired.ip, error)
        self._running[key] = _Running(desired, None, str(error))
        asyncio.get_running_loop().call_later(RETRY_INTERVAL_S, self._retry, key, desired)

    async def _container_args(self, namespace: str, desired: _Desired) -> tuple[str, ...]:
        """The pod's command and args with `$(NAME)` expanded from its environment, as the
        kubelet starts the container (Secrets read off the loop)."""
        if not desired.env:
            return desired.args
        reader = self._secret_reader or _no_secrets
        try:
            variables = await asyncio.to_thread(environment, desired.env, namespace, reader)
        except ContainerConfigError:
            raise
        except Exception as error:  # the API unreachable or refusing: the kubelet retries too
            raise ContainerConfigError(f"reading the container's Secrets: {error}") from error
        return expand_all(desired.args, variables)

    def _real_server(
        self, key: PodKey, config: EmulatorConfig, args: Sequence[str]
    ) -> RealTritonPod:
        assert self._work_dir is not None
        return RealTritonPod(
            config,
            args,
            self._work_dir / key[0] / key[1],
            exit_timeout_s=self._exit_timeout_s or DEFAULT_EXIT_TIMEOUT_S,
        )

    async def _watch_servers(self) -> None:
        """Restart real servers that exited while their pod runs (killed, crashed), after the
        kubelet's restart delay."""
        while True:
            await asyncio.sleep(0.5)
            for key, running in list(self._running.items()):
                server = running.server
                if server is None or server_alive(server):
                    continue
                log.warning(
                    "pod %s/%s: tritonserver on %s exited; restarting it in %.0fs",
                    key[0],
                    key[1],
                    running.desired.ip,
                    RESTART_DELAY_S,
                )
                running.server = None
                running.error = "tritonserver exited"
                await server.stop()  # reap it and any stub left behind
                running.restart = asyncio.get_running_loop().call_later(
                    RESTART_DELAY_S, self._retry, key, running.desired
                )

    def kill_server(self, namespace: str, name: str) -> int:
        """SIGKILL a pod's real tritonserver (a crash); returns its pid. The runner starts it
        again after RESTART_DELAY_S."""

        async def kill() -> int:
            running = self._running.get((namespace, name))
            server = running.server if running else None
            pid = server_pid(server) if server is not None else None
            if server is None or pid is None:
                raise ValueError(f"pod {namespace}/{name} runs no real tritonserver")
            await asyncio.to_thread(os.kill, pid, signal.SIGKILL)
            return pid

        return self._on_loop().run(kill())

    def _retry(self, key: PodKey, desired: _Desired) -> None:
        current = self._running.get(key)
        if self._stopping.is_set() or current is None or current.server is not None:
            return
        if current.desired == desired and not current.refused and self._events is not None:
            synthetic = {
                "metadata": {
                    "namespace": key[0],
                    "name": key[1],
                    "labels": {INSTANCE_LABEL: desired.service},
                },
                "status": {"phase": "Running", "podIP": desired.ip},
                "spec": {"containers": [desired.container()]},
            }
            self._running.pop(key)
            self._events.put_nowait(("RETRY", synthetic))

    async def _mark_ready_pods(self) -> None:
        """Mark pods Ready once their server is (the kubelet's readiness probe, emulated)."""
        while True:
            await asyncio.sleep(0.2)
            for key, running in list(self._running.items()):
                server = running.server
                if (
                    server is None
                    or self._pod_ready.get(key, True)
                    or key in self._marking
                    or not server.is_ready()
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
            log.info("pod %s/%s marked Ready: its server is ready", *key)
        except Exception as error:
            log.warning("could not mark pod %s/%s Ready: %s", key[0], key[1], error)
        finally:
            self._marking.discard(key)

    def _stop_after_grace(self, key: PodKey) -> None:
        """Forget a deleted pod now; stop its server after the termination grace, or sooner
        when its IP goes to another pod (`_release_ip`) or the runner stops."""
        current = self._running.pop(key, None)
        if current is not None and current.restart is not None:
            current.restart.cancel()
        if current is None or current.server is None:
            return
        server, ip = current.server, current.desired.ip
        cut_short = asyncio.Event()

        async def stop_later() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cut_short.wait(), self._termination_grace_s)
            await server.stop()
            log.info("pod %s/%s: server on %s stopped", key[0], key[1], ip)

        task = asyncio.create_task(stop_later())
        self._terminating[task] = cut_short
        self._terminating_on[ip] = task

        def forget(done: asyncio.Task[None]) -> None:
            self._terminating.pop(done, None)
            if self._terminating_on.get(ip) is done:
                del self._terminating_on[ip]

        task.add_done_callback(forget)

    async def _release_ip(self, ip: str) -> None:
        """Stop at once a deleted pod's server that still holds `ip` in its grace.

        The API server has deleted that pod, so the IP is free by the cluster's account, and
        KWOK gives it to the next pod. Left running, the old server would still hold the
        address (a real tritonserver then fails to bind, or with SO_REUSEPORT shares the port
        and answers half the new pod's connections with the old pod's models and admin key).
        """
        task = self._terminating_on.get(ip)
        if task is None:
            return
        log.info("pod IP %s reused: stopping the terminating server that held it", ip)
        self._terminating[task].set()
        await task

    async def _stop_pod(self, key: PodKey) -> None:
        current = self._running.pop(key, None)
        if current is not None and current.restart is not None:
            current.restart.cancel()
        if current is not None and current.server is not None:
            await current.server.stop()
            log.info("pod %s/%s: server on %s stopped", key[0], key[1], current.desired.ip)

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
        the running emulators that were changed (a running real server keeps its settings
        until it restarts; a metrics fault for one is an error).
        """
        if pod is not None and service is not None:
            raise ValueError("name a pod or a service, not both")
        if (pod is not None or service is not None) and namespace is None:
            raise ValueError("a pod or service needs its namespace")
        settings.service(ServiceSettings()).replica_config()  # validate on the caller's thread

        async def apply() -> list[str]:
            matching = [
                (key, running)
                for key, running in self._running.items()
                if running.server is not None
                and _matches(key, running.desired.service, namespace, pod, service)
            ]
            real = [f"{k[0]}/{k[1]}" for k, r in matching if isinstance(r.server, RealTritonPod)]
            if settings.metrics_fault is not None and real:
                raise ValueError(
                    f"{', '.join(real)} run tritonserver, whose metrics cannot be made to "
                    "misbehave: give them server=emulator"
                )
            if pod is not None:
                key = (str(namespace), pod)
                self._per_pod[key] = settings.over(self._per_pod.get(key, PodSettings()))
            elif service is not None:
                key = (str(namespace), service)
                self._per_service[key] = settings.over(self._per_service.get(key, PodSettings()))
            else:
                self._global = settings.over(self._global)
            changed = []
            for (pod_namespace, pod_name), running in matching:
                server = running.server
                if not isinstance(server, TritonEmulator):
                    continue  # service settings apply when a real server (re)starts
                effective = self._settings_for(pod_namespace, running.desired.service, pod_name)
                service_settings = effective.service(server.config.service)
                if service_settings != server.config.service:
                    server.set_service(service_settings)
                if effective.metrics_fault is not None:
                    server.set_metrics_fault(effective.metrics_fault)
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
            server = running.server
            if server is None:
                state = "refused" if running.refused else "failed"
                statuses.append(PodStatus(*pod, state, error=running.error))
                continue
            emulated = isinstance(server, TritonEmulator)
            statuses.append(
                PodStatus(
                    *pod,
                    "serving",
                    models=server.config.models,
                    ready=server.is_ready(),
                    service_time_ms=server.config.service.service_time_ms,
                    instances=server.config.service.instances,
                    metrics_fault=(
                        server.metrics_fault.value if isinstance(server, TritonEmulator) else None
                    ),
                    pending=server.pending,
                    server=Server.EMULATOR if emulated else Server.TRITONSERVER,
                    pid=server_pid(server),
                )
            )
        return statuses

    def emulator(self, namespace: str, name: str) -> TritonEmulator | None:
        """The emulator serving a pod (for in-process tests; use it on the runner's loop)."""
        running = self._running.get((namespace, name))
        server = running.server if running else None
        return server if isinstance(server, TritonEmulator) else None

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


def _matches(
    key: PodKey, pod_service: str, namespace: str | None, pod: str | None, service: str | None
) -> bool:
    """Whether a running pod is one that `configure(namespace=, pod=|service=)` names."""
    if pod is not None:
        return key == (namespace, pod)
    if service is not None:
        return (key[0], pod_service) == (namespace, service)
    return True


def server_pid(server: PodServer) -> int | None:
    """The process id of a real server (None for an emulator, which runs in this process)."""
    if isinstance(server, RealTritonPod) and server.server.process is not None:
        return server.server.process.pid
    return None


def server_alive(server: PodServer) -> bool:
    """A real server's process has not exited (emulators are always alive)."""
    return isinstance(server, TritonEmulator) or server.running()


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
    parser.add_argument(
        "--server",
        choices=[kind.value for kind in Server],
        default=Server.EMULATOR.value,
        help="what serves each pod: the emulator or real tritonserver (nvidia-pytriton)",
    )
    parser.add_argument("--work-dir", type=Path, help="real servers' repositories and logs")
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
        default_server=Server(args.server),
        work_dir=args.work_dir,
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
