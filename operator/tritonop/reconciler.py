"""What the operator does on each cluster event, as plain functions of the runtime and the view.

- An InferenceService created, its spec changed, or the operator started: `reconcile` gathers
  the facts (nodes, the model repository Secret, KEDA's CRD, the live Deployment), asks the
  pure `plan()` (reconcile.py) what must be true, and makes it so: children, replicas, status,
  Events.
- A node added, removed or changed: `nodes_changed` re-decides placement of every service and
  reconciles those whose placement changes (a CPU-fallback service moves back to GPU when a
  fitting node appears).
- A model repository Secret or KEDA's CRD changed: `secret_changed` and `keda_crd_changed`
  reconcile the services that depend on it.
- An owned Deployment or pod changed: `workload_changed` mirrors replicas, readiness and the
  scheduler's reason into status; a Deployment deleted by hand is recreated by a reconcile.
- An InferenceService deleted: `forget` drops what the process remembers of it.

kopf calls these from handlers.py; they need no kopf, so unit tests call them directly with
an in-memory API and plain mappings as indexes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from kubernetes.client.exceptions import ApiException

from tritonop import conditions as c
from tritonop.api.validation import ParsedService, SpecError, parse_object
from tritonop.k8s import KEDA_CRD, namespace_terminating
from tritonop.observability import (
    CURRENT_REPLICAS,
    READY_REPLICAS,
    RECONCILE_DURATION,
    RECONCILE_ERRORS,
    RECONCILES,
    forget_service,
)
from tritonop.placement import NodeInfo, gpu_capacity_fingerprint
from tritonop.placement import decide as decide_placement
from tritonop.reconcile import ClusterFacts, plan, workload_refresh
from tritonop.render.lockdown import ADMIN_KEY_FIELD, admin_secret_name
from tritonop.runtime import Runtime
from tritonop.status import ServiceKey, invalid_spec_flags
from tritonop.statusbook import StatusBook, StatusChange
from tritonop.view import ClusterView

log = logging.getLogger(__name__)


class NodeCapacity:
    """What placement last read of the nodes, so node events that change none of it are skipped.

    Nodes report status every few seconds; re-deciding every service's placement on each
    heartbeat would cost O(services) per node per heartbeat for nothing.
    """

    def __init__(self) -> None:
        self._fingerprint = ""
        self._lock = threading.Lock()

    def changed(self, nodes: Sequence[NodeInfo]) -> bool:
        """Whether `nodes` differ from the last call's in anything placement reads."""
        fingerprint = gpu_capacity_fingerprint(nodes)
        with self._lock:
            if fingerprint == self._fingerprint:
                return False
            self._fingerprint = fingerprint
            return True


def _key(body: Mapping[str, Any]) -> ServiceKey:
    meta = body.get("metadata") or {}
    return (str(meta.get("namespace")), str(meta.get("name")))


def reconcile(
    runtime: Runtime, book: StatusBook, view: ClusterView, body: Mapping[str, Any], trigger: str
) -> None:
    """Make one InferenceService's children and status match its spec and the cluster.

    A spec that cannot be reconciled is reported (Ready=False InvalidSpec, one Event) and
    re-raised as the SpecError: retrying cannot help until the spec changes. In a namespace
    being deleted the reconcile stops quietly: there is nothing to restore.
    """
    key = _key(body)
    started = runtime.clock.monotonic()
    try:
        service = parse_object(dict(body))
    except SpecError as error:
        report_invalid_spec(runtime, book, body, error)
        RECONCILES.labels(trigger=trigger, result="invalid").inc()
        raise
    try:
        _carry_out_plan(runtime, book, view, service, body)
        RECONCILES.labels(trigger=trigger, result="ok").inc()
    except ApiException as error:
        if namespace_terminating(error):
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
        RECONCILE_DURATION.observe(runtime.clock.monotonic() - started)


def report_invalid_spec(
    runtime: Runtime, book: StatusBook, body: Mapping[str, Any], error: SpecError
) -> None:
    """Ready=False with reason InvalidSpec and the problems; the Event only when status changed
    (an unchanged invalid spec reconciled again posts nothing)."""
    message = "; ".join(error.problems)
    generation = int((body.get("metadata") or {}).get("generation") or 0)
    change = StatusChange(
        {"observedGeneration": generation}, invalid_spec_flags(message), generation
    )
    if book.update(_key(body), body.get("status"), lambda _: change):
        runtime.kube.event(body, warning=True, reason=c.INVALID_SPEC, message=message)


def _carry_out_plan(
    runtime: Runtime,
    book: StatusBook,
    view: ClusterView,
    service: ParsedService,
    body: Mapping[str, Any],
) -> None:
    kube = runtime.kube
    key = (service.namespace, service.name)
    deployment = view.deployment(key)
    secret_ref = service.spec.model_repository.secret_ref
    digest = kube.secret_digest(service.namespace, secret_ref.name) if secret_ref else None
    facts = ClusterFacts(
        admin_key=kube.admin_key(
            service.namespace, admin_secret_name(service.name), ADMIN_KEY_FIELD
        ),
        nodes=view.nodes(),
        secret_digest=digest,
        secret_missing=secret_ref is not None and digest is None,
        keda_available=service.spec.autoscaling_mode != "KEDA" or kube.crd_exists(KEDA_CRD),
        live_status=book.get(key, body.get("status")),
        workload=view.workload(key),
    )
    result = plan(service, facts, runtime.settings)
    for child in result.children:
        kube.apply(child, deployment if child["kind"] == "Deployment" else None)
    for kind in result.stale_children:
        kube.delete_owned(kind, service.namespace, service.name, service.uid)
    if result.replicas is not None and (
        not facts.workload.exists or facts.workload.desired != result.replicas
    ):
        kube.scale_deployment(service.namespace, service.name, result.replicas)

    def status(current: Mapping[str, Any]) -> StatusChange:
        # The Deployment may have moved on while the children were applied: plan the status
        # from the cluster as it is now (planning is pure and cheap).
        now = plan(
            service,
            replace(facts, live_status=current, workload=view.workload(key)),
            runtime.settings,
        )
        return StatusChange(now.status_fields, now.flags, service.generation)

    book.update(key, body.get("status"), status)
    for event in result.events:
        kube.event(body, warning=event.warning, reason=event.reason, message=event.message)


def nodes_changed(
    runtime: Runtime, book: StatusBook, view: ClusterView, capacity: NodeCapacity
) -> None:
    """Reconcile the services whose placement a node change alters (deciding is cheap; only a
    changed decision costs a reconcile)."""
    nodes = view.nodes()
    if not capacity.changed(nodes):
        return  # a heartbeat or status change no placement reads
    for key, body in view.services():
        try:
            service = parse_object(body)
        except SpecError:
            continue
        placement = decide_placement(service.spec, nodes, runtime.settings.gpu_fallback)
        live = book.get(key, body.get("status")).get("placement") or {}
        if live.get("mode") != placement.mode or live.get("reason") != placement.reason:
            reconcile(runtime, book, view, body, "node")


def secret_changed(
    runtime: Runtime, book: StatusBook, view: ClusterView, namespace: str, name: str
) -> None:
    """A Secret named by spec.modelRepository.secretRef changed: its digest in the pod template
    changes, so the pods roll and Triton reads the new credentials."""
    for (service_namespace, _), body, service in _valid_services(view):
        reference = service.spec.model_repository.secret_ref
        if service_namespace == namespace and reference is not None and reference.name == name:
            reconcile(runtime, book, view, body, "secret")


def keda_crd_changed(runtime: Runtime, book: StatusBook, view: ClusterView) -> None:
    """KEDA installed or removed: KEDA-mode services get (or lose) their ScaledObject."""
    for _, body, service in _valid_services(view):
        if service.spec.autoscaling_mode == "KEDA":
            reconcile(runtime, book, view, body, "keda")


def _valid_services(
    view: ClusterView,
) -> list[tuple[ServiceKey, dict[str, Any], ParsedService]]:
    """Every service whose spec parses (an invalid one has its status already and waits for an
    edit of its spec)."""
    valid = []
    for key, body in view.services():
        try:
            valid.append((key, body, parse_object(body)))
        except SpecError:
            continue
    return valid


def workload_changed(
    runtime: Runtime, book: StatusBook, view: ClusterView, key: ServiceKey, deleted: bool
) -> None:
    """A Deployment or pod of the service changed: recreate a Deployment deleted by hand (not
    one the garbage collector removes with its service), else mirror its state into status."""
    body = view.service(key)
    if body is None:
        return
    if deleted and not (body.get("metadata") or {}).get("deletionTimestamp"):
        reconcile(runtime, book, view, body, "child-deleted")
        return
    refresh_workload(book, view, key)


def refresh_workload(book: StatusBook, view: ClusterView, key: ServiceKey) -> None:
    """Mirror the Deployment's and pods' state into the InferenceService's status."""
    body = view.service(key)
    if body is None:
        return
    try:
        mode = parse_object(body).spec.autoscaling_mode
    except SpecError:
        return

    def status(current: Mapping[str, Any]) -> StatusChange | None:
        if not current.get("placement"):
            return None  # not reconciled yet: the reconcile writes the first status, from then
        workload = view.workload(key)
        fields, flags = workload_refresh(current, workload, mode)
        READY_REPLICAS.labels(namespace=key[0], name=key[1]).set(workload.ready)
        CURRENT_REPLICAS.labels(namespace=key[0], name=key[1]).set(workload.desired)
        return StatusChange(fields, flags, int(current.get("observedGeneration") or 0))

    book.update(key, body.get("status"), status)


def forget(book: StatusBook, key: ServiceKey) -> None:
    """Drop a deleted service's status and metric series; the garbage collector deletes the
    children."""
    book.forget(key)
    forget_service(*key)
