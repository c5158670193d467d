"""The e2e data plane, shared by `e2e/test_dataplane.py` and the demo (`python -m e2e.demo`).

Everything here is real except Triton's inference engine: the operator scrapes pod IPs inside
127.0.0.0/8 where the pod runner binds one Triton emulator per Running pod, the load generator
sends KServe v2 requests to the Ready pods, and the Deployment, the scheduler and KWOK do the
rest. This module adds what both callers need on top of `e2e.tritonsim` and `e2e.load`:

* `start_pod_runner`: the pod runner restricted to `dataplane-*` namespaces, marking pods Ready
  once their emulator has loaded (see e2e/README.md, "Readiness");
* `AdjustableRate` / `BackgroundLoad`: an open-loop load whose rate a test or the demo changes
  while it runs (a step, a drop), bounded in time and count like every load here;
* `ClusterView`: typed-enough reads of the objects the tests assert on (Deployment, pods,
  InferenceService status, its Events, the operator's scale writes in the audit log);
* `Timeline`: a sampler thread recording the emulators' queues (10 Hz, in process) and the
  Deployment and status (2 Hz), so delays can be measured rather than guessed.

Times are `time.monotonic()` seconds throughout; audit timestamps are converted with one
wall-to-monotonic offset taken at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from e2e.load import KubernetesEndpoints, LoadConfig, LoadGenerator, LoadResult, Profile
from e2e.polling import wait_until
from e2e.tritonsim.emulator import EmulatorConfig, ServiceSettings
from e2e.tritonsim.podrunner import PodRunner, PodStatus, Server

#: Namespaces whose tritonop pods KWOK leaves unready until the pod runner marks them Ready
#: (e2e/cluster/kwok-stages.yaml, stage pod-running-unready-dataplane).
DATAPLANE_PREFIX = "dataplane-"
H100_PRODUCT = "NVIDIA-H100-80GB-HBM3"
#: A deleted pod's emulator serves this long more, so requests in flight when the Deployment
#: scales down finish (the load generator drops the pod from its rotation within 0.5 s).
TERMINATION_GRACE_S = 2.0
GROUP, VERSION, PLURAL = "tritonop.io", "v1alpha1", "inferenceservices"
#: "... : 1 -> 4 (panic)": the change at the end of the operator's scale reason.
SCALE_CHANGE = re.compile(r":\s*(\d+)\s*->\s*(\d+)")


class DataPlaneBusy(RuntimeError):
    """Another process holds this machine's data-plane lock."""


@dataclass
class Turn:
    """This process's hold on the data-plane lock (see `data_plane_turn`)."""

    fd: int | None
    """The locked file's descriptor, to hand to processes that must keep the turn (Popen's
    pass_fds); None when the turn is shared with an ancestor."""
    kept: str | None = None

    def keep(self, note: str) -> None:
        """Leave the lock to the processes that inherited `fd`: it is released only when the
        last of them exits (a demo left running with --keep holds the data plane until its
        cluster is torn down). `note` tells waiters why and how to end it."""
        self.kept = note


@contextlib.contextmanager
def data_plane_turn(
    what: str, timeout: float = 900.0, notify: Callable[[str], None] | None = print
) -> Iterator[Turn]:
    """Hold this machine's data-plane lock while emulators may bind pod IPs.

    Every LocalCluster gives its pods the same loopback addresses (127.64.N.M, see
    e2e/cluster), so two data planes at once (two test sessions, a test session and the demo)
    would fight over 127.64.0.1:8000 and scrape each other's emulators. The lock
    (`$TRITONOP_CACHE/dataplane.lock`, an flock) lets one run at a time; the others wait up to
    `timeout` seconds, saying who holds it. A process whose ancestor holds the lock (the demo
    started by a test that holds it) shares its turn. `Turn.keep` hands the lock on to child
    processes that inherited its descriptor.
    """
    from e2e.cluster.binaries import cache_root

    path = cache_root() / "dataplane.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        announced = False

        def take() -> str:
            """ "locked" (ours now) or "shared" (an ancestor's); raises naming the holder."""
            nonlocal announced
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return "locked"
            except BlockingIOError:
                holder = _lock_holder(path)
            if holder is not None and holder[0] in _ancestors():
                return "shared"  # our parent's turn is ours
            shown = f"pid {holder[0]} ({holder[1]})" if holder else "another process"
            if not announced and notify is not None:
                notify(f"waiting for the data plane: {shown} holds {path}")
                announced = True
            raise DataPlaneBusy(f"{shown} holds {path}")

        shared = wait_until(take, timeout, "this machine's data plane", interval=1.0) == "shared"
        if shared:
            yield Turn(None)
            return
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {what}\n")
        handle.flush()
        turn = Turn(handle.fileno())
        try:
            yield turn
        finally:
            handle.seek(0)
            handle.truncate()
            if turn.kept is not None:
                handle.write(f"{os.getpid()} {what}: {turn.kept}\n")
                handle.flush()  # and no unlock: the inheritors' open descriptions hold it
            else:
                handle.flush()
                fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_holder(path: Path) -> tuple[int, str] | None:
    try:
        pid, _, what = path.read_text().strip().partition(" ")
        return int(pid), what
    except (OSError, ValueError):
        return None


def _ancestors() -> set[int]:
    """This process and its ancestors (from /proc)."""
    found, pid = set(), os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return found


def is_dataplane_namespace(namespace: str) -> bool:
    """True for the namespaces the data plane serves."""
    return namespace.startswith(DATAPLANE_PREFIX)


def start_pod_runner(
    kubeconfig: str | Path,
    *,
    service_time_ms: float = 50.0,
    instances: int = 1,
    load_delay_s: float = 1.0,
    default_server: Server = Server.EMULATOR,
    work_dir: Path | None = None,
) -> PodRunner:
    """A started pod runner for `dataplane-*` pods that marks them Ready when loaded.

    Defaults: 50 ms per request on one model instance (about 20 requests/s per pod), a
    one-second model load, so a new pod is visibly unready for a moment, as Triton is, and a
    short termination grace for pods the Deployment removes. `default_server` serves the pods
    no `PodSettings.server` names (real servers keep repositories and logs in `work_dir`).
    """
    defaults = EmulatorConfig(
        load_delay_s=load_delay_s,
        service=ServiceSettings(service_time_ms=service_time_ms, instances=instances),
    )
    runner = PodRunner(
        str(kubeconfig),
        defaults=defaults,
        set_pod_readiness=True,
        namespace_filter=is_dataplane_namespace,
        termination_grace_s=TERMINATION_GRACE_S,
        default_server=default_server,
        work_dir=work_dir,
    )
    runner.start()
    return runner


# ------------------------------------------------------------------------------ load


class AdjustableRate:
    """An offered rate a caller changes while the load runs (thread-safe).

    The load generator thins Poisson arrivals at `peak` with the rate current when it draws
    the next arrival, so a change applies from the next request on. `stop()` drops the rate to
    zero for good, which ends the run (the profile then has nothing more to offer).
    """

    def __init__(self, rate: float, peak: float) -> None:
        if not 0 <= rate <= peak:
            raise ValueError(f"rate {rate} must be within [0, peak {peak}]")
        self.peak = peak
        self._rate = rate
        self._lock = threading.Lock()
        self.changes: list[tuple[float, float]] = [(time.monotonic(), rate)]
        """(monotonic time, requests/s) of every change, the first being the initial rate."""

    @property
    def rate(self) -> float:
        """The requests per second offered now."""
        with self._lock:
            return self._rate

    def set(self, rate: float) -> float:
        """Offer `rate` requests/s from now on; returns the monotonic time of the change."""
        if not 0 <= rate <= self.peak:
            raise ValueError(f"rate {rate} must be within [0, peak {self.peak}]")
        with self._lock:
            self._rate = rate
            now = time.monotonic()
            self.changes.append((now, rate))
            return now

    def stop(self) -> None:
        """Offer nothing more: the run ends after its last in-flight requests."""
        self.set(0.0)

    def profile(self, duration_s: float) -> Profile:
        """The load profile; finite, so a rate of zero ends the arrivals instead of spinning."""
        return Profile(
            f"adjustable rate up to {self.peak:g}/s",
            rate=lambda _t: self.rate,
            peak=self.peak,
            duration=duration_s,
        )


class BackgroundLoad:
    """One bounded load run in its own thread and event loop.

    The test (or the demo) changes the rate through `rate` and reads live figures from
    `generator`; `wait()` returns the run's records once the rate is stopped, the duration is
    over or the request limit is reached.
    """

    def __init__(
        self,
        kubeconfig: str | Path,
        namespace: str,
        name: str,
        rate: AdjustableRate,
        *,
        duration_s: float,
        max_requests: int,
        window_s: float = 5.0,
        seed: int | None = 1,
    ) -> None:
        config = LoadConfig(
            profile=rate.profile(duration_s),
            duration_s=duration_s,
            max_requests=max_requests,
            window_s=window_s,
            refresh_s=0.5,
            wait_for_pods_s=60.0,
            seed=seed,
        )
        self.rate = rate
        self.source = KubernetesEndpoints(str(kubeconfig), namespace, name)
        self.generator = LoadGenerator(config, self.source, out=None)
        self._result: LoadResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"load-{name}", daemon=True)

    def start(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._result = asyncio.run(self.generator.run())
        except BaseException as error:  # reported by wait(), in the caller's thread
            self._error = error

    @property
    def started(self) -> bool:
        """True once the run's clock started (a first pod was in rotation, or 60 s passed)."""
        return self.generator.started_at > 0

    def wait(self, timeout: float = 60.0) -> LoadResult:
        """Stop offering load and return the run's result."""
        self.rate.stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the load run did not end within {timeout:.0f}s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def p95_ms(result: LoadResult, since: float, until: float) -> float | None:
    """p95 latency (ms) of successful requests sent between two monotonic times."""
    return result.percentile_ms(95, since - result.started_at, until - result.started_at)


def requests_between(result: LoadResult, since: float, until: float) -> tuple[int, int]:
    """(sent, failed) requests sent between two monotonic times."""
    low, high = since - result.started_at, until - result.started_at
    chosen = [r for r in result.records if low <= r.sent_at < high]
    return len(chosen), sum(1 for r in chosen if not r.ok)


# ------------------------------------------------------------------------------ cluster reads


class ClusterView:
    """Reads of one cluster through the kubernetes client (an admin kubeconfig)."""

    def __init__(self, kubeconfig: str | Path, audit_log: Path | None = None) -> None:
        from kubernetes import client, config

        self._api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        # Any: the generated client is untyped; results are plain dicts from here on.
        self._apps: Any = client.AppsV1Api(self._api)
        self._core: Any = client.CoreV1Api(self._api)
        self._custom: Any = client.CustomObjectsApi(self._api)
        self.audit_log = audit_log
        self.wall_offset = time.time() - time.monotonic()
        """Add to a monotonic time to get wall-clock seconds (and subtract for the reverse)."""

    def _plain(self, obj: Any) -> dict[str, Any]:
        return dict(self._api.sanitize_for_serialization(obj))

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._plain(
                self._apps.read_namespaced_deployment(name, namespace, _request_timeout=5)
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def service(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The InferenceService."""
        from kubernetes.client.exceptions import ApiException

        try:
            return dict(
                self._custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _request_timeout=5
                )
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The service's pods that are not terminating."""
        listed = self._core.list_namespaced_pod(
            namespace,
            label_selector=f"app.kubernetes.io/name=triton,app.kubernetes.io/instance={name}",
            _request_timeout=5,
        )
        pods = [self._plain(p) for p in listed.items]
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["metadata"]["name"]: n for n in map(self._plain, self._core.list_node().items)}

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """Events about the InferenceService, oldest first."""
        listed = self._core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}", _request_timeout=5
        )
        events = [
            self._plain(e) for e in listed.items if e.involved_object.kind == "InferenceService"
        ]
        return sorted(events, key=event_time)

    def scale_events(self, namespace: str, name: str) -> list[tuple[str, int, int]]:
        """(reason, from, to) of every ScaledUp/ScaledDown Event, oldest first."""
        found = []
        for event in self.events(namespace, name):
            if event.get("reason") not in ("ScaledUp", "ScaledDown"):
                continue
            change = SCALE_CHANGE.findall(event.get("message") or "")
            if not change:
                raise AssertionError(f"scale event without 'from -> to': {event.get('message')}")
            before, after = change[-1]
            for _ in range(int(event.get("count") or 1)):
                found.append((str(event["reason"]), int(before), int(after)))
        return found

    def scale_writes(self, user: str, namespace: str, name: str) -> list[float]:
        """Monotonic times of `user`'s writes to the Deployment's scale subresource (audit)."""
        return [
            t
            for t, _ in self.audit_writes(user, namespace, "deployments", "scale", name, '"scale"')
        ]

    def status_writes(self, user: str, namespace: str, name: str) -> list[float]:
        """Monotonic times of `user`'s writes to the InferenceService's status (audit)."""
        return [
            t
            for t, _ in self.audit_writes(
                user, namespace, "inferenceservices", "status", name, '"status"'
            )
        ]

    def pod_writes(self, user: str, namespace: str, name: str) -> list[tuple[float, str]]:
        """(monotonic time, pod) of `user`'s writes to the service's pods (audit), oldest first."""
        return self.audit_writes(user, namespace, "pods", None, f"{name}-", '"pods"')

    def audit_writes(
        self,
        user: str,
        namespace: str,
        resource: str,
        subresource: str | None,
        name: str,
        marker: str,
    ) -> list[tuple[float, str]]:
        """(monotonic time, object name) of `user`'s patches and updates of `resource` (with
        `subresource`) named `name`, or starting with it when it ends in "-"; `marker` is a
        string every such audit line has, to skip the others without parsing them."""
        if self.audit_log is None:
            raise AssertionError("no audit log: the data-plane tests need the local cluster")
        found = []
        with contextlib.suppress(FileNotFoundError), self.audit_log.open() as log:
            for line in log:
                if marker not in line or name not in line:
                    continue
                event = json.loads(line)
                ref = event.get("objectRef") or {}
                written = str(ref.get("name", ""))
                if (
                    (event.get("user") or {}).get("username") == user
                    and ref.get("resource") == resource
                    and ref.get("subresource") == subresource
                    and ref.get("namespace") == namespace
                    and (written.startswith(name) if name.endswith("-") else written == name)
                    and event.get("verb") in ("patch", "update")
                ):
                    received = event.get("stageTimestamp") or event["requestReceivedTimestamp"]
                    found.append((parse_time(received) - self.wall_offset, written))
        return sorted(found)


def parse_time(text: str) -> float:
    """RFC 3339 (with or without fractions, 'Z' or an offset) to Unix seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def event_time(event: Mapping[str, Any]) -> float:
    for key in ("eventTime", "lastTimestamp", "firstTimestamp"):
        value = event.get(key)
        if value:
            return parse_time(str(value))
    return parse_time(str(event["metadata"]["creationTimestamp"]))


# ------------------------------------------------------------------------------ timeline


@dataclass(frozen=True)
class QueueSample:
    """The service's emulators at one instant (in process, from the pod runner)."""

    t: float
    pending: dict[str, int]
    """Pod name -> requests waiting in its emulator's queue."""
    ready: int
    """Emulators whose model is loaded."""

    @property
    def average(self) -> float:
        """Pending requests per ready emulator: what the operator's queueDepth averages."""
        return sum(self.pending.values()) / self.ready if self.ready else 0.0


@dataclass(frozen=True)
class ApiSample:
    """The Deployment and the InferenceService status at one instant."""

    t: float
    replicas: int | None
    """Deployment spec.replicas (None before the Deployment exists)."""
    ready_replicas: int
    status: dict[str, Any]


@dataclass
class Timeline:
    """Samples one InferenceService's data plane and control plane until stopped."""

    runner: PodRunner
    view: ClusterView
    namespace: str
    name: str
    queue_interval: float = 0.1
    api_interval: float = 0.5
    queue: list[QueueSample] = field(default_factory=list)
    api: list[ApiSample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Timeline:
        self._thread = threading.Thread(target=self._run, name="timeline", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Timeline:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        next_api = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                statuses = self.runner.pods()
                mine = [
                    s for s in statuses if s.namespace == self.namespace and s.service == self.name
                ]
                self.queue.append(
                    QueueSample(
                        now, {s.name: s.pending for s in mine}, sum(1 for s in mine if s.ready)
                    )
                )
                if now >= next_api:
                    next_api = now + self.api_interval
                    deployment = self.view.deployment(self.namespace, self.name)
                    service = self.view.service(self.namespace, self.name) or {}
                    spec = (deployment or {}).get("spec") or {}
                    ready = ((deployment or {}).get("status") or {}).get("readyReplicas") or 0
                    self.api.append(
                        ApiSample(
                            time.monotonic(),
                            spec.get("replicas") if deployment else None,
                            int(ready),
                            dict(service.get("status") or {}),
                        )
                    )
            except Exception as error:  # a sampler must outlive a transient API error
                if len(self.errors) < 20:
                    self.errors.append(f"{type(error).__name__}: {error}")
            self._stop.wait(max(0.0, self.queue_interval - (time.monotonic() - now)))

    # -- questions asked of the samples

    def queue_crossed(self, per_replica: float, after: float) -> float | None:
        """First time after `after` that the average queue per ready emulator exceeded it."""
        for sample in list(self.queue):
            if sample.t >= after and sample.ready and sample.average > per_replica:
                return sample.t
        return None

    def drained(self, per_pod: float, after: float, lasting: float) -> float | None:
        """When, after `after`, no server's queue has been above `per_pod` for at least
        `lasting` seconds up to the latest sample: the start of that calm stretch, or None.

        Per pod, not averaged: after a step the backlog sits on the pods that were ready
        before it, and requests behind it wait however idle the new pods are.
        """
        start: float | None = None
        latest = after
        for sample in list(self.queue):
            if sample.t < after:
                continue
            latest = sample.t
            if not sample.ready or max(sample.pending.values(), default=0) > per_pod:
                start = None
            elif start is None:
                start = sample.t
        return start if start is not None and latest - start >= lasting else None

    def replicas(self) -> list[tuple[float, int]]:
        """(time, Deployment spec.replicas) at every observed change."""
        changes: list[tuple[float, int]] = []
        for sample in list(self.api):
            if sample.replicas is None:
                continue
            if not changes or changes[-1][1] != sample.replicas:
                changes.append((sample.t, sample.replicas))
        return changes

    def replicas_at(self, when: float) -> int | None:
        value = None
        for t, replicas in self.replicas():
            if t > when:
                break
            value = replicas
        return value

    def peak_replicas(self, since: float = -math.inf, until: float = math.inf) -> int:
        return max(
            (s.replicas for s in list(self.api) if s.replicas and since <= s.t <= until),
            default=0,
        )

    def statuses(self, since: float = -math.inf) -> Iterator[ApiSample]:
        return (s for s in list(self.api) if s.t >= since)

    def decisions(self, since: float = -math.inf, origin: float = 0.0) -> list[dict[str, Any]]:
        """The operator's decisions as its status showed them, one entry per change.

        Each entry: seconds since `origin`, desiredReplicas, the AbleToScale and ScalingActive
        reasons (e.g. ScaleDownStabilized, IncompleteMetrics) and the measured queue depth:
        enough to see why a scale happened when it did.
        """
        entries: list[dict[str, Any]] = []
        previous: tuple[Any, ...] | None = None
        for sample in self.statuses(since):
            conditions = {
                c.get("type"): c.get("reason") for c in sample.status.get("conditions") or []
            }
            key = (
                sample.status.get("desiredReplicas"),
                conditions.get("AbleToScale"),
                conditions.get("ScalingActive"),
            )
            if key == previous:
                continue
            previous = key
            metrics = sample.status.get("metrics") or {}
            entries.append(
                {
                    "t": round(sample.t - origin, 1),
                    "desired": key[0],
                    "able": key[1],
                    "active": key[2],
                    "queueDepth": metrics.get("queueDepth"),
                    "requestRate": metrics.get("requestRate"),
                }
            )
        return entries


def autoscaled_service(
    name: str,
    *,
    min_replicas: int = 1,
    max_replicas: int = 6,
    targets: Mapping[str, float] | None = None,
    scale_down_window_s: int = 20,
    panic_window_s: int = 2,
) -> dict[str, Any]:
    """An Operator-mode InferenceService on H100 GPUs serving the `simple` model."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "modelRepository": {"uri": "s3://models/triton"},
            "models": ["simple"],
            "gpu": {"count": 1, "products": [H100_PRODUCT], "fallback": "None"},
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
            "autoscaling": {
                "mode": "Operator",
                "minReplicas": min_replicas,
                "maxReplicas": max_replicas,
                "targets": dict(targets or {"queueDepth": 4}),
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": scale_down_window_s}},
                "panic": {"windowSeconds": panic_window_s},
            },
        },
    }


def pods_ready(statuses: Sequence[PodStatus], namespace: str, name: str) -> int:
    """Emulators of one service whose model has loaded."""
    return sum(1 for s in statuses if s.namespace == namespace and s.service == name and s.ready)
