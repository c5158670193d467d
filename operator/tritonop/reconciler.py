"""What the operator does on each cluster event, as plain functions of the runtime and the view.

- An InferenceService created, its spec changed, or the operator started: `reconcile` gathers
  the facts (nodes, the model repository Secret, KEDA's CRD, the live Deployment), asks the
  pure `plan()` (reconcile.py) what must be true, and makes it so: children, replicas, status,
  Events.
- A node added, removed or changed: `nodes_changed` re-decides placement of every service and
  reconciles those whose placement changes (a CPU-fallback service moves back to GPU when a
  fitting node appears).
- KEDA's CRD changed: `keda_crd_changed` reconciles the KEDA-mode services. (Secrets are not
  watched: the Secret a service names is read by name at each reconcile, and the periodic
  resync of repair.py notices a rotation.)
- A reconcile that fails is tried again by the service's repair loop (repair.py) with bounded
  backoff; one failing service never keeps the others of a loop from being reconciled.
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
from dataclasses import dataclass, replace
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from tritonop import conditions as c
from tritonop.api.validation import ParsedService, SpecError, parse_object
from tritonop.autoscale.types import ConditionFlag
from tritonop.drift import (
    LISTED_KINDS,
    ChildVersions,
    ResyncInputs,
    fingerprint,
    object_version,
    resync_inputs,
)
from tritonop.k8s import KEDA_CRD, namespace_terminating, refused, server_message
from tritonop.observability import (
    CURRENT_REPLICAS,
    READY_REPLICAS,
    RECONCILE_DURATION,
    RECONCILE_ERRORS,
    RECONCILES,
    forget_service,
)
from tritonop.ownership import conflict, conflicts_message
from tritonop.placement import NodeInfo, Placement, gpu_capacity_fingerprint
from tritonop.placement import decide as decide_placement
from tritonop.reconcile import ClusterFacts, EventSpec, plan, plan_status, workload_refresh
from tritonop.render.lockdown import ADMIN_KEY_FIELD, admin_secret_name
from tritonop.retries import Retries
from tritonop.runtime import Runtime
from tritonop.status import ServiceKey, StatusFields, bounded, invalid_spec_flags
from tritonop.statusbook import StatusBook, StatusChange
from tritonop.view import ClusterView

log = logging.getLogger(__name__)

WORKLOAD_REFRESH_DELAY_SECONDS = 1.0
"""How long the status waits after a Deployment or pod change before mirroring it: a new
service's Deployment changes three or four times within a second or two, and each mirrored
change is a status write (see coalesce.py)."""
DEPLOYMENT_DEFAULT_REPLICAS = 1
"""What the API server gives a Deployment created without spec.replicas (the operator's apply
never carries them): a new service that wants 1 replica needs no scale write."""


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
    runtime: Runtime,
    book: StatusBook,
    retries: Retries,
    view: ClusterView,
    body: Mapping[str, Any],
    trigger: str,
) -> None:
    """Make one InferenceService's children and status match its spec and the cluster.

    A spec that cannot be reconciled is reported (Ready=False InvalidSpec, one Event) and
    re-raised as the SpecError: retrying cannot help until the spec changes. Nothing else is
    raised: a refused child (ApplyFailed), a taken name (ResourceExists), an API server that
    fails or cannot be reached, and any other error are recorded in `retries`, and the
    service's repair loop tries again with bounded backoff. (Raising would make kopf retry,
    patching its progress annotations on every attempt.) In a namespace being deleted the
    reconcile stops quietly: there is nothing to restore.
    """
    key = _key(body)
    started = runtime.clock.monotonic()
    try:
        service = parse_object(dict(body))
    except SpecError as error:
        retries.succeeded(key)  # nothing to retry: the next spec change reconciles
        report_invalid_spec(runtime, book, body, error)
        RECONCILES.labels(trigger=trigger, result="invalid").inc()
        raise
    try:
        outcome = _carry_out_plan(runtime, book, view, service, body)
    except ApiException as error:
        if namespace_terminating(error):
            retries.forget(key)
            RECONCILES.labels(trigger=trigger, result="skipped").inc()
            log.info("%s/%s: namespace is being deleted; not reconciling", *key)
            return
        _failed(
            runtime, retries, key, trigger, error, f"HTTP {error.status}: {server_message(error)}"
        )
        return
    except (HTTPError, OSError) as error:  # the API server could not be reached
        _failed(runtime, retries, key, trigger, error, str(error))
        return
    except Exception as error:
        log.exception("%s/%s: reconcile failed; retrying", *key)
        _failed(runtime, retries, key, trigger, error, repr(error))
        return
    finally:
        RECONCILE_DURATION.observe(runtime.clock.monotonic() - started)
    if outcome.healthy:
        retries.succeeded(key, outcome.fingerprint)
        RECONCILES.labels(trigger=trigger, result="ok").inc()
    else:
        _failed(runtime, retries, key, trigger, None, "")


def resync(
    runtime: Runtime,
    book: StatusBook,
    retries: Retries,
    view: ClusterView,
    children: ChildVersions,
    body: Mapping[str, Any],
    trigger: str = "resync",
) -> None:
    """The periodic resync of one service, or its resume when the operator starts: a full
    reconcile unless what it would read is what the service's last healthy reconcile left
    (drift.py says what is compared and why that is safe). The last reconcile's digest is the
    one this process remembers, else status.reconciledDigest (what a restarted operator has:
    the digest rides on the reconcile's status writes). Inputs that cannot be read make it a full reconcile, which reports the problem."""
    key = _key(body)
    carried = book.get(key, body.get("status")).get("reconciledDigest")
    remembered = retries.fingerprint(key) or carried
    if remembered:
        try:
            current = fingerprint(_resync_inputs(runtime, view, children, body))
        except (SpecError, ApiException, HTTPError, OSError) as error:
            log.debug("%s/%s: resync inputs unreadable (%s): reconciling", *key, error)
            current = None
        if current == remembered:
            retries.succeeded(key, current)
            RECONCILES.labels(trigger=trigger, result="unchanged").inc()
            return
    reconcile(runtime, book, retries, view, body, trigger)


def _resync_inputs(
    runtime: Runtime, view: ClusterView, children: ChildVersions, body: Mapping[str, Any]
) -> ResyncInputs:
    """What `resync` fingerprints, read as cheaply as it can be: one or two metadata reads of
    Secrets by name, the shared child lists and kopf's indexes."""
    service = parse_object(dict(body))
    kube = runtime.kube
    namespace, name = service.namespace, service.name
    secret_ref = service.spec.model_repository.secret_ref
    admin = kube.secret_version(namespace, admin_secret_name(name))
    deployment = view.deployment((namespace, name))
    versions = {kind: children.version(kind, namespace, name) for kind in LISTED_KINDS}
    versions["Secret"] = None if admin is None else object_version({"resourceVersion": admin})
    versions["Deployment"] = None if deployment is None else object_version(deployment["metadata"])
    return resync_inputs(
        body,
        _decision(decide_placement(service.spec, view.nodes(), runtime.settings.gpu_fallback)),
        kube.secret_version(namespace, secret_ref.name) if secret_ref else None,
        _keda_available(runtime, service),
        versions,
    )


def _decision(placement: Placement) -> tuple[str, str, str]:
    return (placement.mode, placement.reason, placement.message)


def _keda_available(runtime: Runtime, service: ParsedService) -> bool:
    """KEDA's CRD matters to KEDA-mode services only (it is read for no other)."""
    return service.spec.autoscaling_mode != "KEDA" or runtime.kube.crd_exists(KEDA_CRD)


def _failed(
    runtime: Runtime,
    retries: Retries,
    key: ServiceKey,
    trigger: str,
    error: BaseException | None,
    detail: str,
) -> None:
    """Count a failed reconcile and schedule the service's next attempt."""
    failure = retries.failed(
        key, runtime.clock.monotonic(), runtime.settings.resync_interval_seconds
    )
    delay = failure.due - runtime.clock.monotonic()
    if error is None:  # reported in status (ApplyFailed, ResourceExists)
        RECONCILES.labels(trigger=trigger, result="refused").inc()
        log.info("%s/%s: not reconciled (see its status); retry in %.0f s", *key, delay)
        return
    RECONCILES.labels(trigger=trigger, result="error").inc()
    RECONCILE_ERRORS.labels(error=type(error).__name__).inc()
    log.warning("%s/%s: reconcile failed (%s); retry in %.0f s", *key, bounded(detail), delay)


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


@dataclass(frozen=True)
class Outcome:
    """How `_carry_out_plan` ended."""

    healthy: bool
    """False when the status carries a verdict that only a change outside the spec clears
    (ResourceExists, ApplyFailed, SecretNotFound): the repair loop retries."""
    fingerprint: str | None = None
    """What the reconcile read and left (drift.py); None when it cannot vouch for all of it."""


def _carry_out_plan(
    runtime: Runtime,
    book: StatusBook,
    view: ClusterView,
    service: ParsedService,
    body: Mapping[str, Any],
) -> Outcome:
    """Apply the plan, then write the status and Events it calls for."""
    kube = runtime.kube
    key = (service.namespace, service.name)
    secret_ref = service.spec.model_repository.secret_ref
    version = kube.secret_version(service.namespace, secret_ref.name) if secret_ref else None
    admin_key, admin_secret = kube.admin_secret(
        service.namespace, admin_secret_name(service.name), ADMIN_KEY_FIELD
    )
    facts = ClusterFacts(
        admin_key=admin_key,
        nodes=view.nodes(),
        secret_version=version,
        secret_missing=secret_ref is not None and version is None,
        keda_available=_keda_available(runtime, service),
        live_status=book.get(key, body.get("status")),
        workload=view.workload(key),
    )
    result = plan(service, facts, runtime.settings)
    verdict, left = _write_children(runtime, service, result.children, {"Secret": admin_secret})
    scaled = False
    if verdict is None:
        may_own = _may_own(service, facts)
        for kind in result.stale_children:
            if may_own:
                kube.delete_owned(kind, service.namespace, service.name, service.uid)
            left[kind] = None
        running = facts.workload.desired if facts.workload.exists else DEPLOYMENT_DEFAULT_REPLICAS
        if result.replicas is not None and result.replicas != running:
            kube.scale_deployment(service.namespace, service.name, result.replicas)
            scaled = True

    healthy = verdict is None and not facts.secret_missing
    digest: str | None = None
    if healthy and not scaled and all(kind in left for kind in (*LISTED_KINDS, "Deployment")):
        digest = fingerprint(
            resync_inputs(body, _decision(result.placement), version, facts.keda_available, left)
        )

    def status(current: Mapping[str, Any]) -> StatusChange:
        # The Deployment may have moved on while the children were applied: plan the status
        # from the cluster as it is now (the status part of the plan renders nothing).
        now = plan_status(
            service,
            replace(facts, live_status=current, workload=view.workload(key)),
            runtime.settings,
        )
        flags = now.flags if verdict is None else c.with_condition(now.flags, verdict)
        return StatusChange(
            now.fields, tuple(flags), service.generation, _digest_field(healthy, digest)
        )

    events = list(result.events)
    if verdict is not None:
        ready = c.find_condition(facts.live_status, c.READY)
        if (ready.get("reason"), ready.get("message")) != (
            verdict.reason,
            bounded(verdict.message),
        ):
            events.append(EventSpec(True, verdict.reason, verdict.message))
    book.update(key, body.get("status"), status)
    for event in events:
        kube.event(body, warning=event.warning, reason=event.reason, message=event.message)
    return Outcome(healthy, digest)


def _digest_field(healthy: bool, digest: str | None) -> StatusFields:
    """status.reconciledDigest after a reconcile, riding on its status write (it causes
    none): the new digest; none after one that failed; unchanged after a healthy one that
    cannot vouch for what it left (it scaled the Deployment). A digest left behind is safe:
    it is compared with what is read, and anything that changed since its reconcile (the
    scale: the Deployment's generation) makes it differ."""
    if digest is not None:
        return {"reconciledDigest": digest}
    return {} if healthy else {"reconciledDigest": None}


def _may_own(service: ParsedService, facts: ClusterFacts) -> bool:
    """Whether the service may own children of kinds its spec no longer needs (an autoscaler
    of another mode, a NetworkPolicy the settings turned off): not when no reconcile has ever
    written its status and its spec never changed, which saves two reads per new service (of
    about twelve requests). Should an interrupted reconcile under other settings have left one
    anyway, its version is not the None this reconcile's fingerprint records, and the first
    resync reconciles fully and deletes it."""
    return service.generation > 1 or bool(facts.live_status.get("observedGeneration"))


def _write_children(
    runtime: Runtime,
    service: ParsedService,
    children: Sequence[dict[str, Any]],
    known: Mapping[str, Mapping[str, Any] | None],
) -> tuple[ConditionFlag | None, dict[str, str | None]]:
    """Apply the children unless one of their names is taken: the Ready verdict when not
    everything could be written (None when it was), and the version of each child it left
    (drift.object_version, by kind), as read or as the API server answered the write.

    Every child's live object is read first (but those of `known` kinds, read already: the
    admin Secret, present or not) and nothing is written if any of them exists without being controlled by this service
    (ResourceExists): half an install next to a user's object is worse than none. A child the
    API server refuses (4xx) does not stop the others; the refusals become one ApplyFailed
    message in the server's words. A 5xx, 409 or 429 is raised: it says nothing about the
    spec, and the repair loop retries.
    """
    kube = runtime.kube
    lives: list[Mapping[str, Any] | None] = []
    for child in children:
        meta = child["metadata"]
        if child["kind"] in known:
            lives.append(known[child["kind"]])
        else:
            lives.append(kube.get(child["kind"], meta["namespace"], meta["name"]))
    taken = [
        problem
        for child, live in zip(children, lives, strict=True)
        if (problem := conflict(child, live, service.uid)) is not None
    ]
    if taken:
        return ConditionFlag(c.READY, False, c.RESOURCE_EXISTS, conflicts_message(taken)), {}
    refusals = []
    left: dict[str, str | None] = {}
    for child, live in zip(children, lives, strict=True):
        try:
            if child["kind"] == "Secret" and live is None:
                written = kube.create(
                    child
                )  # the admin Secret: a generated key is never overwritten
            else:
                written = kube.apply(child, live)
        except ApiException as error:
            if not refused(error) or namespace_terminating(error):
                raise
            refusals.append(f"{child['kind']} {child['metadata']['name']}: {server_message(error)}")
            continue
        if written:
            left[child["kind"]] = object_version(written)
        elif live is not None:
            left[child["kind"]] = object_version(live.get("metadata") or {})
    if refusals:
        message = (
            "the API server refused "
            + "; ".join(refusals)
            + ". Fix the spec (or what refuses it: an admission policy, a quota, RBAC); the "
            "operator retries by itself"
        )
        return ConditionFlag(c.READY, False, c.APPLY_FAILED, message), left
    return None, left


def nodes_changed(
    runtime: Runtime,
    book: StatusBook,
    retries: Retries,
    view: ClusterView,
    capacity: NodeCapacity,
) -> None:
    """Reconcile the services whose placement a node change alters (deciding is cheap; only a
    changed decision costs a reconcile). A service whose reconcile fails is retried by its
    repair loop; the others are reconciled regardless.

    A service never placed yet is skipped: its create (or resume) handler is still queued in
    kopf and places it with the nodes as they are then. Reconciling it here too ran two
    reconciles of every new service at once on a busy operator (a third more writes while
    1,000 services were created, since the first node event after start changes the
    fingerprint)."""
    nodes = view.nodes()
    if not capacity.changed(nodes):
        return  # a heartbeat or status change no placement reads
    moved = []
    for key, body, service in _valid_services(view):
        live = book.get(key, body.get("status")).get("placement")
        if not live:
            continue
        placement = decide_placement(service.spec, nodes, runtime.settings.gpu_fallback)
        if live.get("mode") != placement.mode or live.get("reason") != placement.reason:
            moved.append(body)
    reconcile_each(runtime, book, retries, view, moved, "node")


def keda_crd_changed(
    runtime: Runtime, book: StatusBook, retries: Retries, view: ClusterView
) -> None:
    """KEDA installed or removed: KEDA-mode services get (or lose) their ScaledObject."""
    keda = [body for _, body, svc in _valid_services(view) if svc.spec.autoscaling_mode == "KEDA"]
    reconcile_each(runtime, book, retries, view, keda, "keda")


def reconcile_each(
    runtime: Runtime,
    book: StatusBook,
    retries: Retries,
    view: ClusterView,
    bodies: Sequence[Mapping[str, Any]],
    trigger: str,
) -> None:
    """Reconcile several services, each on its own: `reconcile` records a failure for the
    service's repair loop instead of raising, and an invalid spec (reported on the service
    itself) does not stop the rest."""
    for body in bodies:
        try:
            reconcile(runtime, book, retries, view, body, trigger)
        except SpecError:
            continue


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
    runtime: Runtime,
    book: StatusBook,
    retries: Retries,
    view: ClusterView,
    key: ServiceKey,
    deleted: bool,
) -> None:
    """A Deployment or pod of the service changed: recreate a Deployment deleted by hand (not
    one the garbage collector removes with its service), else mirror its state into status."""
    body = view.service(key)
    if body is None:
        return
    if deleted and not (body.get("metadata") or {}).get("deletionTimestamp"):
        reconcile_each(runtime, book, retries, view, [body], "child-deleted")
        return
    refresh_workload(book, view, key)


def refresh_workload(book: StatusBook, view: ClusterView, key: ServiceKey) -> None:
    """Mirror the Deployment's and pods' state into the InferenceService's status."""
    body = view.service(key)
    if body is None:
        return
    try:
        spec = parse_object(body).spec
    except SpecError:
        return
    mode = spec.autoscaling_mode
    wanted = spec.replicas if mode == "None" else None

    def status(current: Mapping[str, Any]) -> StatusChange | None:
        if not current.get("placement"):
            return None  # not reconciled yet: the reconcile writes the first status, from then
        workload = view.workload(key)
        fields, flags = workload_refresh(current, workload, mode, wanted)
        READY_REPLICAS.labels(namespace=key[0], name=key[1]).set(workload.ready)
        CURRENT_REPLICAS.labels(namespace=key[0], name=key[1]).set(workload.desired)
        return StatusChange(fields, flags, int(current.get("observedGeneration") or 0))

    book.update(key, body.get("status"), status)


def forget(book: StatusBook, retries: Retries, key: ServiceKey) -> None:
    """Drop a deleted service's status, retries, last fingerprint and metric series; the
    garbage collector deletes the children."""
    book.forget(key)
    retries.forget(key)
    forget_service(*key)
