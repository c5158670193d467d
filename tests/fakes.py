"""In-memory stand-ins for the operator's edges, so handler bodies run without kopf or a cluster.

`FakeCluster` is both the runtime's KubeApi (it records every write and keeps the objects) and
the source of a ClusterView whose indexes read those same objects live, as kopf's indexes
follow the watch streams. Writes are skipped like the real client skips them (k8s.is_subset),
so "nothing written" in a test means what it means against an API server.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from tritonop import API_VERSION, KIND
from tritonop.autoscale.deletioncost import DELETION_COST
from tritonop.autoscale.observe import MetricsTarget
from tritonop.autoscale.types import Observation
from tritonop.config import Settings
from tritonop.drift import SNAPSHOT_AGE_FRACTION, ChildVersions, child_lister
from tritonop.k8s import is_subset
from tritonop.placement import NodeInfo, node_info
from tritonop.render.labels import standard_labels
from tritonop.retries import Retries
from tritonop.runtime import Runtime
from tritonop.status import ServiceKey
from tritonop.statusbook import StatusBook
from tritonop.view import ClusterView

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told to: `advance`, or a StopAfter's wait."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> str:
        return (EPOCH + timedelta(seconds=self.now)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Event:
    name: str
    warning: bool
    reason: str
    message: str


class _Index(Mapping[ServiceKey, Collection[dict[str, Any]]]):
    """A kopf-like index over the fake's objects of one kind, read live."""

    def __init__(self, entries: Mapping[ServiceKey, Sequence[dict[str, Any]]]) -> None:
        self._entries = entries

    def __getitem__(self, key: ServiceKey) -> Collection[dict[str, Any]]:
        if not self._entries.get(key):
            raise KeyError(key)
        return list(self._entries[key])

    def __iter__(self) -> Iterator[ServiceKey]:
        return iter([key for key, items in self._entries.items() if items])

    def __len__(self) -> int:
        return len(list(iter(self)))


@dataclass
class FakeCluster:
    """The API server and kopf's indexes, in memory."""

    nodes: list[NodeInfo] = field(default_factory=list)
    secrets: dict[ServiceKey, str] = field(default_factory=dict)
    """Credentials Secrets' resourceVersions by (namespace, name)."""
    crds: set[str] = field(default_factory=set)
    services: dict[ServiceKey, list[dict[str, Any]]] = field(default_factory=dict)
    deployments: dict[ServiceKey, list[dict[str, Any]]] = field(default_factory=dict)
    pods: dict[ServiceKey, list[dict[str, Any]]] = field(default_factory=dict)
    """Objects by (namespace, InferenceService name); a list per key, as kopf's stores are."""
    children: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    """Everything applied, by (kind, namespace, name)."""
    writes: list[tuple[str, ...]] = field(default_factory=list)
    """(verb, kind, namespace, name) of every write sent, in order."""
    events: list[Event] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    """Every status written, in order."""
    fail_apply: Exception | None = None
    """Raised by every apply (the API server failing)."""
    refuse: dict[str, Exception] = field(default_factory=dict)
    """Raised by applies of these kinds (the API server refusing one child)."""
    retries: Retries = field(default_factory=Retries)
    """The operator's retry book, kept here so tests hand one to the handler bodies."""
    fail_scale: list[Exception] = field(default_factory=list)
    """Errors the next scale writes raise, one each, in order (then they succeed)."""
    fail_status: list[Exception] = field(default_factory=list)
    """Errors the next status writes raise, one each, in order."""
    reads: list[tuple[str, ...]] = field(default_factory=list)
    """(verb, kind, namespace, name) of every read of a child or Secret, in order."""
    last_version: int = 0
    """The API server's resourceVersion counter: every write of a child takes the next."""

    # ------------------------------------------------------------------ setup

    def add_service(self, name: str, spec: dict[str, Any], namespace: str = "ml") -> dict[str, Any]:
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": f"uid-{name}",
                "generation": 1,
            },
            "spec": spec,
        }
        self.services[(namespace, name)] = [body]
        return body

    def add_node(self, name: str, gpus: int = 0, product: str = "") -> None:
        labels = {"nvidia.com/gpu.product": product} if product else {}
        allocatable = {"cpu": "32", "memory": "128Gi"}
        if gpus:
            allocatable["nvidia.com/gpu"] = str(gpus)
        self.nodes.append(
            node_info(
                {
                    "metadata": {"name": name, "labels": labels},
                    "spec": {},
                    "status": {"allocatable": allocatable},
                }
            )
        )

    def set_pods(self, key: ServiceKey, *pods: dict[str, Any]) -> None:
        self.pods[key] = list(pods)

    def service(self, key: ServiceKey) -> dict[str, Any]:
        return self.services[key][0]

    def deployment(self, key: ServiceKey) -> dict[str, Any] | None:
        items = self.deployments.get(key)
        return items[0] if items else None

    def roll_out(self, key: ServiceKey) -> None:
        """The Deployment controller's part: every asked-for replica ready and updated."""
        deployment = self.deployment(key)
        assert deployment is not None
        desired = deployment["spec"].get("replicas", 1)
        deployment["metadata"]["generation"] = 1
        deployment["status"] = {
            "observedGeneration": 1,
            "replicas": desired,
            "readyReplicas": desired,
            "availableReplicas": desired,
            "updatedReplicas": desired,
        }

    def view(self) -> ClusterView:
        return ClusterView(
            node_index={"all": self.nodes},
            pod_index=_Index(self.pods),
            deployment_index=_Index(self.deployments),
            service_index=_Index(self.services),
        )

    def runtime(self, clock: FakeClock, **settings: Any) -> Runtime:
        return Runtime(settings=Settings(**settings), kube=self, clock=clock)

    def book(self, clock: FakeClock) -> StatusBook:
        return StatusBook(self, clock)

    def child_versions(self, runtime: Runtime) -> ChildVersions:
        """What handlers.Memo builds: the shared child lists over this API."""
        lister = child_lister(self, [], {"app.kubernetes.io/managed-by": "tritonop"})
        max_age = runtime.settings.resync_interval_seconds * SNAPSHOT_AGE_FRACTION
        return ChildVersions(lister, runtime.clock.monotonic, max_age)

    def _next_version(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A write as the API server does it: a new resourceVersion, and the generation
        counted up for kinds that keep one (all the operator's children but Services and
        Secrets); the written object's metadata, as the write's answer carries it."""
        self.last_version += 1
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(self.last_version)
        if obj.get("kind") not in ("Service", "Secret"):
            meta["generation"] = int(meta.get("generation") or 0) + 1
        return copy.deepcopy(meta)

    # ------------------------------------------------------------------ KubeApi

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.reads.append(("get", kind, str(namespace), name))
        return self.children.get((kind, str(namespace), name))

    def list_metadata(
        self, kind: str, namespace: str | None, label_selector: str
    ) -> dict[tuple[str, str], dict[str, Any]]:
        self.reads.append(("list", kind, str(namespace), label_selector))
        wanted = dict(term.split("=", 1) for term in label_selector.split(","))
        return {
            (ns, name): copy.deepcopy(obj["metadata"])
            for (k, ns, name), obj in self.children.items()
            if k == kind
            and namespace in (None, ns)
            and wanted.items() <= (obj["metadata"].get("labels") or {}).items()
        }

    def secret_version(self, namespace: str, name: str) -> str | None:
        self.reads.append(("get-metadata", "Secret", namespace, name))
        if (namespace, name) in self.secrets:
            return self.secrets[(namespace, name)]
        secret = self.children.get(("Secret", namespace, name))
        return None if secret is None else str(secret["metadata"].get("resourceVersion", ""))

    def crd_exists(self, name: str) -> bool:
        return name in self.crds

    def admin_secret(
        self, namespace: str, secret_name: str, field: str
    ) -> tuple[str, dict[str, Any] | None]:
        secret = self.get("Secret", namespace, secret_name)
        if secret is not None:
            return base64.b64decode(secret["data"][field]).decode(), secret
        return f"key-of-{secret_name}", None

    def apply(
        self, desired: dict[str, Any], live: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        kind, meta = desired["kind"], desired["metadata"]
        key = (kind, meta["namespace"], meta["name"])
        if live is not None and is_subset(desired, live):
            return None
        failure = self.fail_apply or self.refuse.get(kind)
        if failure is not None:
            self.writes.append(("refused", *key))
            raise failure
        self.writes.append(("apply", *key))
        merged = copy.deepcopy(desired)
        previous = (self.children.get(key) or {}).get("metadata") or {}
        if previous.get("generation"):
            merged["metadata"]["generation"] = previous["generation"]
        written = self._next_version(merged)
        if kind == "Deployment":
            existing = self.deployment((meta["namespace"], meta["name"]))
            # The API server defaults spec.replicas to 1; the operator's apply never sets it.
            merged["spec"]["replicas"] = 1 if existing is None else existing["spec"]["replicas"]
            if existing is not None:
                merged["status"] = existing.get("status", {})
            self.deployments[(meta["namespace"], meta["name"])] = [merged]
        self.children[key] = merged
        return written

    def create(self, desired: dict[str, Any]) -> dict[str, Any] | None:
        kind, meta = desired["kind"], desired["metadata"]
        key = (kind, meta["namespace"], meta["name"])
        failure = self.fail_apply or self.refuse.get(kind)
        if failure is not None:
            self.writes.append(("refused", *key))
            raise failure
        if key in self.children:
            return None
        self.writes.append(("create", *key))
        self.children[key] = copy.deepcopy(desired)
        return self._next_version(self.children[key])

    def delete_owned(self, kind: str, namespace: str, name: str, owner_uid: str) -> bool:
        live = self.children.get((kind, namespace, name))
        owners = (live or {}).get("metadata", {}).get("ownerReferences") or []
        if not any(owner.get("uid") == owner_uid for owner in owners):
            return False
        self.writes.append(("delete", kind, namespace, name))
        del self.children[(kind, namespace, name)]
        return True

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        if self.fail_scale:
            self.writes.append(("scale-refused", "Deployment", namespace, name, str(replicas)))
            raise self.fail_scale.pop(0)
        self.writes.append(("scale", "Deployment", namespace, name, str(replicas)))
        deployment = self.deployment((namespace, name))
        if deployment is not None:
            deployment["spec"]["replicas"] = replicas
            self._next_version(deployment)

    def set_pod_deletion_cost(self, namespace: str, name: str, cost: int) -> bool:
        self.writes.append(("annotate", "Pod", namespace, name, str(cost)))
        for pods in self.pods.values():
            for pod in pods:
                meta = pod["metadata"]
                if meta.get("name") == name:
                    meta.setdefault("annotations", {})[DELETION_COST] = str(cost)
                    return True
        return False

    def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        items = self.services.get((namespace, name))
        if not items:
            return False
        if self.fail_status:
            self.writes.append(("status-refused", KIND, namespace, name))
            raise self.fail_status.pop(0)
        self.writes.append(("status", KIND, namespace, name))
        self.statuses.append(copy.deepcopy(status))
        items[0]["status"] = copy.deepcopy(status)
        return True

    def event(self, body: Mapping[str, Any], *, warning: bool, reason: str, message: str) -> None:
        self.writes.append(("event", "Event", body["metadata"]["namespace"], reason))
        self.events.append(Event(body["metadata"]["name"], warning, reason, message))


@dataclass
class _Response:
    """What ApiException reads from a urllib3 response."""

    status: int
    reason: str
    headers: dict[str, str]
    data: bytes = b""

    def getheaders(self) -> dict[str, str]:
        return self.headers


def api_error(status: int, reason: str, **headers: str) -> ApiException:
    """The ApiException the real client raises for an HTTP error answer, headers included."""
    return ApiException(
        http_resp=_Response(status, reason, {k.replace("_", "-"): v for k, v in headers.items()})
    )


def ready_pod(name: str, ip: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def owned_pod(service: str, name: str, ip: str, cost: str | None = None) -> dict[str, Any]:
    """A ready pod as the ReplicaSet of `service`'s Deployment makes it (the operator's labels,
    a controller ReplicaSet), with a pod-deletion-cost annotation when `cost` is given."""
    pod = ready_pod(name, ip)
    pod["metadata"]["labels"] = standard_labels(service)
    pod["metadata"]["ownerReferences"] = [
        {"kind": "ReplicaSet", "name": f"{service}-5d9c7b", "controller": True}
    ]
    if cost is not None:
        pod["metadata"]["annotations"] = {DELETION_COST: cost}
    return pod


def starting_pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"phase": "Pending"}}


class FakeSource:
    """A MetricsSource that returns the Observation the test chose, stamped with the clock."""

    def __init__(self, clock: FakeClock, **signals: Any) -> None:
        self.clock = clock
        self.signals = signals
        self.targets: list[MetricsTarget] = []
        self.forgotten: list[ServiceKey] = []

    async def observe(self, target: MetricsTarget) -> Observation:
        self.targets.append(target)
        return Observation(
            time=self.clock.monotonic(),
            ready_replicas=len(target.pods),
            starting_replicas=target.starting,
            reporting_replicas=len(target.pods),
            **self.signals,
        )

    def has_news(self, target: MetricsTarget) -> bool:
        return True

    def forget(self, key: ServiceKey) -> None:
        self.forgotten.append(key)

    async def close(self) -> None:
        return None


class StopAfter:
    """A stop flag that turns true after `rounds` waits; each wait moves the clock on."""

    def __init__(self, clock: FakeClock, rounds: int) -> None:
        self.clock = clock
        self.rounds = rounds
        self.waits: list[float] = []

    def __bool__(self) -> bool:
        return len(self.waits) >= self.rounds

    async def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        self.clock.advance(timeout)
        return bool(self)
