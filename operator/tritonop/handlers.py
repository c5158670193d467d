"""kopf registrations: thin glue from cluster events to the pure core and to k8s.py.

Triggers and what they do:
- InferenceService create / update of spec / resume: full reconcile (children, replicas, status).
- Node added, removed or changed: re-decide placement of every service; reconcile those whose
  placement changes (a CPU-fallback service moves back to GPU when a fitting node appears).
- Deployment or pod owned by tritonop changed: refresh status (replicas, readiness, the
  scheduler's reason for Pending pods); a deleted Deployment is recreated by a reconcile.
- Operator-mode autoscaling: one daemon per service reads Triton's metrics and scales.

All state these handlers keep is a cache of what they last wrote (StatusBook) and of what kopf
indexes; both are rebuilt from the cluster after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from tritonop import FIELD_MANAGER, GROUP, PLURAL, VERSION
from tritonop.api.validation import ParsedService, SpecError, parse_object
from tritonop.autoscale.metrics import PodEndpoint, PrometheusSource, observe, remember, scrape_pods
from tritonop.autoscale.policy import PolicyState, decide
from tritonop.autoscale.types import ConditionFlag, Decision, Observation
from tritonop.config import Settings
from tritonop.k8s import KEDA_CRD, Kube, namespace_terminating
from tritonop.observability import (
    CURRENT_REPLICAS,
    DESIRED_REPLICAS,
    METRICS_PROBLEMS,
    READY_REPLICAS,
    RECONCILE_DURATION,
    RECONCILE_ERRORS,
    RECONCILES,
    SCALE_EVENTS,
    SIGNAL,
    forget_service,
)
from tritonop.placement import NodeInfo, gpu_capacity_fingerprint, node_info
from tritonop.placement import decide as decide_placement
from tritonop.reconcile import ClusterFacts, plan, workload_refresh
from tritonop.render.lockdown import ADMIN_KEY_FIELD, admin_secret_name
from tritonop.status import (
    WorkloadState,
    invalid_spec_flags,
    merge_status,
    now_rfc3339,
    workload_state,
)

log = logging.getLogger(__name__)

ISVC = (GROUP, VERSION, PLURAL)
MANAGED = {"app.kubernetes.io/managed-by": FIELD_MANAGER}
ALL = "all"


@dataclass
class Runtime:
    """Process-wide dependencies, set once by `tritonop run` before kopf starts."""

    settings: Settings = field(default_factory=Settings)
    kube: Kube | None = None
    node_fingerprint: str = ""
    """What placement last read of the nodes; node events that leave it unchanged are skipped."""

    @property
    def api(self) -> Kube:
        if self.kube is None:
            self.kube = Kube()
        return self.kube


RUNTIME = Runtime()


#: What a status writer contributes: (fields, conditions, generation), or None for nothing.
StatusChange = Callable[
    [Mapping[str, Any]], tuple[Mapping[str, Any], Iterable[ConditionFlag], int] | None
]


@dataclass(frozen=True)
class ClusterView:
    """kopf's live indexes, read at the moment a decision needs them (not snapshotted early)."""

    node_index: kopf.Index[Any, Any]
    pod_index: kopf.Index[Any, Any]
    deployment_index: kopf.Index[Any, Any]

    def nodes(self) -> list[NodeInfo]:
        return list(self.node_index.get(ALL, []))

    def deployment(self, key: tuple[str, str]) -> dict[str, Any] | None:
        return _one(self.deployment_index, key)

    def pods(self, key: tuple[str, str]) -> list[dict[str, Any]]:
        return list(self.pod_index.get(key, []))

    def workload(self, key: tuple[str, str]) -> WorkloadState:
        return workload_state(self.deployment(key), self.pods(key))


class StatusBook:
    """The status each InferenceService last had, as written by us or first seen.

    Several writers (reconcile, Deployment watch, autoscaler) each change part of the status.
    Merging into the status *we* last wrote, not into a possibly older watch event, keeps one
    writer from undoing another's fields; a per-service lock orders them.
    """

    def __init__(self) -> None:
        self._status: dict[tuple[str, str], dict[str, Any]] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def update(
        self,
        key: tuple[str, str],
        seen: Mapping[str, Any] | None,
        compute: StatusChange,
    ) -> bool:
        """Merge `compute(current status)` into the status and write it; True when written.

        `compute` runs under the service's lock and reads the cluster as it is *then*: an event
        that arrives while another writer holds the lock is seen by the next one, never lost.
        It returns None to change nothing.
        """
        with self.lock(key):
            current = self._status.get(key)
            if current is None:
                current = dict(seen or {})
            change = compute(current)
            if change is None:
                return False
            fields, flags, generation = change
            merged = merge_status(current, fields, flags, generation=generation, now=now_rfc3339())
            written = RUNTIME.api.apply_status(key[0], key[1], current, merged)
            self._status[key] = merged
            return written

    def get(self, key: tuple[str, str], seen: Mapping[str, Any] | None) -> dict[str, Any]:
        with self.lock(key):
            return dict(self._status.get(key) or seen or {})

    def forget(self, key: tuple[str, str]) -> None:
        with self._guard:
            self._status.pop(key, None)
            self._locks.pop(key, None)


STATUS = StatusBook()


# ------------------------------------------------------------------------------ startup


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """kopf settings: annotation-only bookkeeping, our own events only, peering as configured."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.loggers = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.batching.error_delays = (1, 2, 5, 10)
    if RUNTIME.settings.peering:
        settings.peering.name = RUNTIME.settings.peering
        settings.peering.standalone = False
        settings.peering.clusterwide = not RUNTIME.settings.namespace_list
        settings.peering.mandatory = True
        settings.peering.priority = (
            RUNTIME.settings.peering_priority or secrets.randbelow(2**31 - 1) + 1
        )
        settings.peering.lifetime = RUNTIME.settings.peering_lifetime_seconds
        log.info("peering %s with priority %d", settings.peering.name, settings.peering.priority)
    else:
        settings.peering.standalone = True


# ------------------------------------------------------------------------------ indexes


@kopf.index("", "v1", "nodes")
def node_index(body: kopf.Body, **_: Any) -> dict[str, NodeInfo]:
    """Every node's GPU-relevant facts, for placement."""
    return {ALL: node_info(dict(body))}


@kopf.index("", "v1", "pods", labels=MANAGED)
def pod_index(
    body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    """Triton pods by (namespace, InferenceService name)."""
    return {(namespace, labels.get("app.kubernetes.io/instance", "")): dict(body)}


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
def deployment_index(
    body: kopf.Body, namespace: str, name: str, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    """Owned Deployments by (namespace, name); named like their InferenceService."""
    return {(namespace, name): dict(body)}


@kopf.index(*ISVC)
def isvc_index(
    body: kopf.Body, namespace: str, name: str, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    """InferenceServices, so node and child events can reach them."""
    return {(namespace, name): dict(body)}


def _services(isvc_index: kopf.Index[Any, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(namespace, name, body) of every known InferenceService."""
    for (namespace, name), store in list(isvc_index.items()):
        body = next(iter(store), None)
        if body is not None:
            yield namespace, name, body


def _one(index: kopf.Index[Any, Any], key: Any) -> Any | None:
    store = index.get(key)
    return next(iter(store), None) if store is not None else None


# ------------------------------------------------------------------------------ reconcile


def reconcile_body(body: Mapping[str, Any], trigger: str, view: ClusterView) -> None:
    """Make one InferenceService's children and status match its spec and the cluster."""
    kube = RUNTIME.api
    meta = body.get("metadata") or {}
    key = (str(meta.get("namespace")), str(meta.get("name")))
    started = time.perf_counter()
    try:
        service = parse_object(dict(body))
    except SpecError as error:
        message = "; ".join(error.problems)
        generation = int(meta.get("generation") or 0)
        if STATUS.update(
            key,
            body.get("status"),
            lambda _: ({"observedGeneration": generation}, invalid_spec_flags(message), generation),
        ):
            kube.event(body, warning=True, reason="InvalidSpec", message=message)
        RECONCILES.labels(trigger=trigger, result="invalid").inc()
        raise kopf.PermanentError(message) from None
    try:
        _reconcile(kube, service, body, view)
        RECONCILES.labels(trigger=trigger, result="ok").inc()
    except ApiException as error:
        if namespace_terminating(error):
            # The namespace is being deleted (and the service with it): nothing to restore.
            RECONCILES.labels(trigger=trigger, result="skipped").inc()
            log.info("%s/%s: namespace is being deleted; not reconciling", *key)
            return
        RECONCILES.labels(trigger=trigger, result="error").inc()
        RECONCILE_ERRORS.labels(error=type(error).__name__).inc()
        raise
    except Exception as error:
        RECONCILES.labels(trigger=trigger, result="error").inc()
        RECONCILE_ERRORS.labels(error=type(error).__name__).inc()
        raise
    finally:
        RECONCILE_DURATION.observe(time.perf_counter() - started)


def _reconcile(
    kube: Kube, service: ParsedService, body: Mapping[str, Any], view: ClusterView
) -> None:
    key = (service.namespace, service.name)
    deployment = view.deployment(key)
    secret_ref = service.spec.model_repository.secret_ref
    digest = kube.secret_digest(service.namespace, secret_ref.name) if secret_ref else None
    mode = service.spec.autoscaling_mode
    facts = ClusterFacts(
        admin_key=kube.admin_key(
            service.namespace, admin_secret_name(service.name), ADMIN_KEY_FIELD
        ),
        nodes=view.nodes(),
        secret_digest=digest,
        secret_missing=secret_ref is not None and digest is None,
        keda_available=mode != "KEDA" or kube.crd_exists(KEDA_CRD),
        live_status=STATUS.get(key, body.get("status")),
        workload=workload_state(deployment, view.pods(key)),
    )
    result = plan(service, facts, RUNTIME.settings)
    for child in result.children:
        live = deployment if child["kind"] == "Deployment" else None
        kube.apply(child, live)
    for kind in result.stale_children:
        kube.delete_owned(kind, service.namespace, service.name, service.uid)
    if result.replicas is not None and (
        not facts.workload.exists or facts.workload.desired != result.replicas
    ):
        kube.scale_deployment(service.namespace, service.name, result.replicas)

    def status(
        current: Mapping[str, Any],
    ) -> tuple[Mapping[str, Any], Iterable[ConditionFlag], int]:
        # The Deployment may have moved on while the children were applied: plan the status
        # from the cluster as it is now (planning is pure and cheap).
        now = plan(
            service,
            replace(facts, live_status=current, workload=view.workload(key)),
            RUNTIME.settings,
        )
        return now.status_fields, now.flags, service.generation

    STATUS.update(key, body.get("status"), status)
    for event in result.events:
        kube.event(body, warning=event.warning, reason=event.reason, message=event.message)


@kopf.on.resume(*ISVC)
@kopf.on.create(*ISVC)
@kopf.on.update(*ISVC, field="spec")
def reconcile(
    body: kopf.Body,
    namespace: str,
    name: str,
    reason: str,
    node_index: kopf.Index[Any, Any],
    pod_index: kopf.Index[Any, Any],
    deployment_index: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    """Reconcile on create, spec change and operator start."""
    reconcile_body(dict(body), str(reason), ClusterView(node_index, pod_index, deployment_index))


@kopf.on.delete(*ISVC, optional=True)
def forget(namespace: str, name: str, **_: Any) -> None:
    """Drop caches and metric series; the garbage collector deletes the children."""
    STATUS.forget((namespace, name))
    forget_service(namespace, name)


@kopf.on.event("", "v1", "nodes")
def nodes_changed(
    type: str | None,
    isvc_index: kopf.Index[Any, Any],
    node_index: kopf.Index[Any, Any],
    pod_index: kopf.Index[Any, Any],
    deployment_index: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    """Re-place services whose placement a node change alters (deciding is cheap; only a
    changed decision costs a reconcile)."""
    if type is None:  # the initial listing: resume handlers take care of every service
        return
    view = ClusterView(node_index, pod_index, deployment_index)
    nodes = view.nodes()
    fingerprint = gpu_capacity_fingerprint(nodes)
    if fingerprint == RUNTIME.node_fingerprint:
        return  # a heartbeat or status change no placement reads
    RUNTIME.node_fingerprint = fingerprint
    for namespace, name, body in _services(isvc_index):
        try:
            service = parse_object(body)
        except SpecError:
            continue
        placement = decide_placement(service.spec, nodes, RUNTIME.settings.gpu_fallback)
        live = STATUS.get((namespace, name), body.get("status")).get("placement") or {}
        if live.get("mode") != placement.mode or live.get("reason") != placement.reason:
            reconcile_body(body, "node", view)


@kopf.on.event("", "v1", "secrets")
def secret_changed(
    type: str | None,
    namespace: str,
    name: str,
    isvc_index: kopf.Index[Any, Any],
    node_index: kopf.Index[Any, Any],
    pod_index: kopf.Index[Any, Any],
    deployment_index: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    """A Secret named by spec.modelRepository.secretRef changed: its digest in the pod template
    changes, so the pods roll and Triton reads the new credentials."""
    if type is None:
        return
    for service_namespace, _service_name, body in _services(isvc_index):
        reference = ((body.get("spec") or {}).get("modelRepository") or {}).get("secretRef") or {}
        if service_namespace == namespace and reference.get("name") == name:
            reconcile_body(
                body,
                "secret",
                ClusterView(node_index, pod_index, deployment_index),
            )


def refresh_workload(
    namespace: str, name: str, isvc_index: kopf.Index[Any, Any], view: ClusterView
) -> None:
    """Mirror the Deployment's and pods' state into the InferenceService's status."""
    body = _one(isvc_index, (namespace, name))
    if body is None:
        return
    try:
        mode = parse_object(body).spec.autoscaling_mode
    except SpecError:
        return
    key = (namespace, name)

    def status(
        current: Mapping[str, Any],
    ) -> tuple[Mapping[str, Any], Iterable[ConditionFlag], int] | None:
        if not current.get("placement"):
            return None  # not reconciled yet: the reconcile writes the first status, from then
        workload = view.workload(key)
        fields, flags = workload_refresh(current, workload, mode)
        READY_REPLICAS.labels(namespace=namespace, name=name).set(workload.ready)
        CURRENT_REPLICAS.labels(namespace=namespace, name=name).set(workload.desired)
        return fields, flags, int(current.get("observedGeneration") or 0)

    STATUS.update(key, body.get("status"), status)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
def deployment_changed(
    type: str | None,
    namespace: str,
    name: str,
    isvc_index: kopf.Index[Any, Any],
    node_index: kopf.Index[Any, Any],
    pod_index: kopf.Index[Any, Any],
    deployment_index: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    """Status follows the Deployment; a Deployment deleted by hand is recreated."""
    body = _one(isvc_index, (namespace, name))
    if (
        type == "DELETED"
        and body is not None
        and not (body.get("metadata") or {}).get("deletionTimestamp")
    ):
        reconcile_body(
            body,
            "child-deleted",
            ClusterView(node_index, pod_index, deployment_index),
        )
        return
    refresh_workload(
        namespace, name, isvc_index, ClusterView(node_index, pod_index, deployment_index)
    )


@kopf.on.event("", "v1", "pods", labels=MANAGED)
def pod_changed(
    namespace: str,
    labels: kopf.Labels,
    isvc_index: kopf.Index[Any, Any],
    node_index: kopf.Index[Any, Any],
    pod_index: kopf.Index[Any, Any],
    deployment_index: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    """Pending pods the scheduler cannot place show up in the service's conditions."""
    name = labels.get("app.kubernetes.io/instance")
    if name:
        refresh_workload(
            namespace, name, isvc_index, ClusterView(node_index, pod_index, deployment_index)
        )


@kopf.on.event(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", field="metadata.name", value=KEDA_CRD
)
def keda_crd_changed(
    type: str | None,
    isvc_index: kopf.Index[Any, Any],
    node_index: kopf.Index[Any, Any],
    pod_index: kopf.Index[Any, Any],
    deployment_index: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    """KEDA installed or removed: KEDA-mode services get (or lose) their ScaledObject."""
    if type is None:
        return
    for _namespace, _name, body in _services(isvc_index):
        if ((body.get("spec") or {}).get("autoscaling") or {}).get("mode") == "KEDA":
            reconcile_body(body, "keda", ClusterView(node_index, pod_index, deployment_index))


# ------------------------------------------------------------------------------ autoscaling


def _operator_mode(spec: kopf.Spec, **_: Any) -> bool:
    return ((spec.get("autoscaling") or {}).get("mode", "Operator")) == "Operator" and bool(
        spec.get("autoscaling")
    )


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def _split_pods(pods: Iterable[Mapping[str, Any]]) -> tuple[list[PodEndpoint], int]:
    """Ready pods with an IP (metrics targets) and the count of pods still starting."""
    ready: list[PodEndpoint] = []
    starting = 0
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            continue
        if _pod_ready(pod) and status.get("podIP"):
            ready.append(PodEndpoint(name=str(meta.get("name")), ip=str(status["podIP"])))
        else:
            starting += 1
    return ready, starting


@kopf.daemon(*ISVC, when=_operator_mode, cancellation_timeout=10, initial_delay=1)
async def autoscaler(
    body: kopf.Body,
    namespace: str,
    name: str,
    stopped: kopf.DaemonStopped,
    pod_index: kopf.Index[Any, Any],
    deployment_index: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    """Operator-mode autoscaling loop: metrics -> policy -> scale -> status, every interval."""
    settings = RUNTIME.settings
    interval = settings.autoscale_interval_seconds
    key = (namespace, name)
    prometheus = (
        PrometheusSource(settings.prometheus_url, settings.scrape_timeout_seconds)
        if settings.prometheus_url
        else None
    )
    previous: dict[str, Any] = {}
    state: PolicyState | None = None
    while not stopped:
        started = time.monotonic()
        try:
            service = parse_object(dict(body))
        except SpecError:
            await stopped.wait(interval)
            continue
        autoscaling = service.spec.autoscaling
        deployment = _one(deployment_index, key)
        if autoscaling is None or deployment is None:
            await stopped.wait(interval)
            continue
        current = int((deployment.get("spec") or {}).get("replicas", 1))
        ready, starting = _split_pods(pod_index.get(key, []))
        models = autoscaling.models
        observation: Observation | None
        if prometheus is not None:
            observation = await prometheus.observe(
                namespace,
                name,
                [p.name for p in ready],
                len(ready),
                starting,
                models,
                max(interval * 6, 30.0),
            )
        else:
            scrapes = await scrape_pods(
                ready,
                timeout=settings.scrape_timeout_seconds,
                concurrency=settings.scrape_concurrency,
            )
            observation = observe(
                previous,
                scrapes,
                ready_replicas=len(ready),
                starting_replicas=starting,
                models=models,
                now=time.monotonic(),
            )
            previous = remember(previous, scrapes)
        now = time.monotonic()
        if state is None:
            state = PolicyState.fresh(now, current)
        decision, state = decide(autoscaling, current, observation, state, now, interval)
        await asyncio.to_thread(_carry_out, dict(body), service, current, decision, observation)
        await stopped.wait(max(0.0, interval - (time.monotonic() - started)))


def _carry_out(
    body: dict[str, Any],
    service: ParsedService,
    current: int,
    decision: Decision,
    observation: Observation | None,
) -> None:
    """Scale when the decision differs, then record the decision in status and /metrics."""
    kube = RUNTIME.api
    key = (service.namespace, service.name)
    labels = {"namespace": service.namespace, "name": service.name}
    fields: dict[str, Any] = {"desiredReplicas": decision.desired_replicas}
    if observation is not None:
        fields["metrics"] = {
            k: round(v, 3)
            for k, v in (
                ("queueDepth", observation.queue_depth),
                ("queueTimeMs", observation.queue_time_ms),
                ("requestRate", observation.request_rate),
            )
            if v is not None
        } or None
        for signal, value in (
            ("queue_depth", observation.queue_depth),
            ("queue_time_ms", observation.queue_time_ms),
            ("request_rate", observation.request_rate),
        ):
            if value is not None:
                SIGNAL.labels(signal=signal, **labels).set(value)
        if observation.problems:
            METRICS_PROBLEMS.labels(**labels).inc(len(observation.problems))
    if decision.desired_replicas != current:
        kube.scale_deployment(service.namespace, service.name, decision.desired_replicas)
        direction = "up" if decision.desired_replicas > current else "down"
        SCALE_EVENTS.labels(direction=direction, **labels).inc()
        fields["lastScaleTime"] = now_rfc3339()
        fields["lastScale"] = {
            "from": current,
            "to": decision.desired_replicas,
            "reason": decision.reason,
        }
        kube.event(
            body,
            warning=False,
            reason="ScaledUp" if direction == "up" else "ScaledDown",
            message=decision.reason,
        )
        log.info("%s/%s scaled %s: %s", service.namespace, service.name, direction, decision.reason)

    def status(
        current: Mapping[str, Any],
    ) -> tuple[Mapping[str, Any], Iterable[ConditionFlag], int]:
        ready = int(current.get("readyReplicas") or 0)
        summary = {"replicaSummary": f"{ready}/{decision.desired_replicas}"}
        return (
            {**fields, **summary},
            decision.conditions,
            int(current.get("observedGeneration") or 0),
        )

    STATUS.update(key, body.get("status"), status)
    DESIRED_REPLICAS.labels(**labels).set(decision.desired_replicas)
    CURRENT_REPLICAS.labels(**labels).set(decision.desired_replicas)
