"""kopf registrations: which cluster events reach which handler body, and nothing else.

Each handler is one call into reconciler.py or autoscale/loop.py with the `Memo` kopf hands it
and a `ClusterView` over kopf's indexes. kopf passes the indexes as keyword arguments named
after their index handlers; handlers take them as `**kwargs` (kopf's handler protocols name
only kopf's own arguments) and `ClusterView.of` picks them out, typed, in one place.

Triggers:
- InferenceService create / update of spec / operator start: reconcile.
- Node or KEDA CRD changed: reconcile the services that depend on it. (Secrets are not watched:
  each reconcile reads the Secret a service names, and the resync notices a rotation.)
- Deployment or pod owned by tritonop changed: mirror it into status (or recreate it).
- InferenceService gone: forget it.
- Retries and the periodic resync: one repair daemon per service (repair.py).
- Operator-mode autoscaling: one daemon per service.

All state is a cache (the status book, the node capacity last seen, the metrics source's last
scrapes) and kopf's indexes; all are rebuilt from the cluster after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from functools import partial
from typing import Any

import kopf

from tritonop import FIELD_MANAGER, GROUP, PLURAL, VERSION, reconciler
from tritonop.api.validation import SpecError
from tritonop.autoscale.loop import operator_mode, run_autoscaler
from tritonop.autoscale.metrics import MetricsSource, source_for
from tritonop.coalesce import Coalescer
from tritonop.drift import SNAPSHOT_AGE_FRACTION, ChildVersions, child_lister
from tritonop.k8s import KEDA_CRD
from tritonop.observability import SERVICES_TRACKED, LoopLagMonitor
from tritonop.placement import NodeInfo
from tritonop.reconciler import NodeCapacity
from tritonop.repair import run_repair
from tritonop.retries import Retries
from tritonop.runtime import Runtime
from tritonop.status import ServiceKey
from tritonop.statusbook import StatusBook
from tritonop.view import (
    INSTANCE_LABEL,
    ClusterView,
    Obj,
    deployment_entry,
    node_entry,
    pod_entry,
    service_entry,
)

log = logging.getLogger(__name__)

ISVC = (GROUP, VERSION, PLURAL)
MANAGED = {"app.kubernetes.io/managed-by": FIELD_MANAGER}
CONSISTENCY_TIMEOUT_SECONDS = 30.0
SHUTDOWN_WRITE_TIMEOUT_SECONDS = 5.0
"""How long the stop waits for status refreshes already writing (a fraction of the pod's
termination grace period; each is one API call)."""
LIST_CHUNK_SIZE = 500
"""Objects per page of kopf's initial listings (client-go's default page size). Pages of 100
were tried for a restart's memory peak at 1,000 services and did not lower it (e2e/bench/SCALE.md):
the peak is every object's event, held until all indexes are populated, not the page."""


@dataclass(frozen=True)
class Memo:
    """What kopf hands every handler as `memo`: built once by `tritonop run` (kopf.run(memo=)).

    kopf gives each object a shallow copy, so every handler shares these same instances.
    """

    runtime: Runtime
    status: StatusBook
    retries: Retries
    capacity: NodeCapacity
    metrics: MetricsSource
    refresher: Coalescer
    """Mirrors Deployment and pod changes into status, one write per burst of changes."""
    lag: LoopLagMonitor
    children: ChildVersions
    """The shared metadata lists of children each resync compares against (drift.py)."""

    @classmethod
    def build(cls, runtime: Runtime) -> Memo:
        """The caches of one operator process around its runtime; the metrics source is
        chosen here, once, from the settings."""
        book = StatusBook(runtime.kube, runtime.clock)
        SERVICES_TRACKED.set_function(lambda: len(book))
        return cls(
            runtime=runtime,
            status=book,
            retries=Retries(),
            capacity=NodeCapacity(),
            metrics=source_for(runtime.settings, runtime.clock.monotonic),
            refresher=Coalescer(reconciler.WORKLOAD_REFRESH_DELAY_SECONDS),
            lag=LoopLagMonitor(),
            children=ChildVersions(
                child_lister(runtime.kube, runtime.settings.namespace_list, MANAGED),
                runtime.clock.monotonic,
                runtime.settings.resync_interval_seconds * SNAPSHOT_AGE_FRACTION,
            ),
        )


# ------------------------------------------------------------------------------ lifecycle


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Memo, **_: Any) -> None:
    """kopf settings: annotation-only bookkeeping, our own events only, peering as configured."""
    if not isinstance(memo, Memo):
        raise kopf.PermanentError("start the operator with `tritonop run`, not `kopf run`")
    ours = memo.runtime.settings
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # After its own bookkeeping patch kopf waits for that version before it trusts an event of
    # the object; past the timeout it takes an older event as current and, on a busy API
    # server, runs the create handler a second time (found at 1,000 services: ~2 reconciles
    # and kopf patches per service). Waiting longer only delays what the stale events carry.
    settings.persistence.consistency_timeout = CONSISTENCY_TIMEOUT_SECONDS
    settings.posting.loggers = False
    # Initial listings in pages, as client-go's pager does, instead of every pod of the cluster
    # in one response held in memory at once.
    settings.watching.chunk_size = LIST_CHUNK_SIZE
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.batching.error_delays = (1, 2, 5, 10)
    if ours.peering:
        settings.peering.name = ours.peering
        settings.peering.standalone = False
        settings.peering.clusterwide = not ours.namespace_list
        settings.peering.mandatory = True
        settings.peering.priority = ours.peering_priority or secrets.randbelow(2**31 - 1) + 1
        settings.peering.lifetime = ours.peering_lifetime_seconds
        log.info("peering %s with priority %d", settings.peering.name, settings.peering.priority)
    else:
        settings.peering.standalone = True


@kopf.on.startup()
async def watch_loop_lag(memo: Memo, **_: Any) -> None:
    """Start measuring the event loop's lag (the operator's /metrics shows it)."""
    memo.lag.start()


@kopf.on.cleanup()
async def release(memo: Memo, **_: Any) -> None:
    """Drop the status refreshes still waiting (the next start reconciles every service) and
    let the running ones finish; close the metrics source's HTTP session (and its parser
    process); stop measuring lag."""
    await memo.refresher.close(SHUTDOWN_WRITE_TIMEOUT_SECONDS)
    await memo.lag.stop()
    await memo.metrics.close()


# ------------------------------------------------------------------------------ indexes
# The function names are ClusterView's field names: kopf passes each index under its name.
# They are coroutines because they are quick and pure: kopf runs a plain function in its
# thread pool, where it would queue behind the reconciles' blocking API calls, and every watch
# event of every pod passes through here. Each keeps only what the operator reads (view.py).


@kopf.index("", "v1", "nodes")
async def node_index(body: kopf.Body, **_: Any) -> dict[str, NodeInfo]:
    """Every node's GPU-relevant facts, for placement."""
    return node_entry(body)


@kopf.index("", "v1", "pods", labels=MANAGED)
async def pod_index(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[ServiceKey, Obj]:
    """Triton pods by (namespace, InferenceService name)."""
    return pod_entry(body, str(namespace), labels)


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
async def deployment_index(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[ServiceKey, Obj]:
    """Owned Deployments by (namespace, name); named like their InferenceService."""
    return deployment_entry(body, str(namespace), name)


@kopf.index(*ISVC)
async def service_index(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[ServiceKey, Obj]:
    """InferenceServices, so node and child events can reach them."""
    return service_entry(body, str(namespace), name)


# ------------------------------------------------------------------------------ reconcile


@kopf.on.resume(*ISVC)
@kopf.on.create(*ISVC)
@kopf.on.update(*ISVC, field="spec")
def reconcile(body: kopf.Body, reason: str, memo: Memo, **kwargs: Any) -> None:
    """Reconcile on create and spec change; on operator start, resume as a resync does (a
    service whose status digest still matches is left alone). An invalid spec is not retried."""
    view = ClusterView.of(kwargs)
    try:
        if reason == kopf.Reason.RESUME:
            reconciler.resync(
                memo.runtime, memo.status, memo.retries, view, memo.children, dict(body), "resume"
            )
        else:
            reconciler.reconcile(
                memo.runtime, memo.status, memo.retries, view, dict(body), str(reason)
            )
    except SpecError as error:
        raise kopf.PermanentError("; ".join(error.problems)) from None


@kopf.on.event(*ISVC)
async def forget(type: str | None, namespace: str | None, name: str, memo: Memo, **_: Any) -> None:
    """Once a service is gone, drop its status, lock and metric series (the garbage collector
    deletes the children). A watch event, not kopf's on.delete: that runs only while a
    finalizer holds the object, and a fixed-replica service has none, so it would never run.
    A coroutine: it sees every event of every service, and forgetting is quick, so no thread."""
    if type == "DELETED":
        reconciler.forget(memo.status, memo.retries, (str(namespace), name))


@kopf.on.event("", "v1", "nodes")
def nodes_changed(type: str | None, memo: Memo, **kwargs: Any) -> None:
    """Re-place services whose placement a node change alters."""
    if type is not None:  # None: the initial listing; resume handlers reconcile every service
        reconciler.nodes_changed(
            memo.runtime, memo.status, memo.retries, ClusterView.of(kwargs), memo.capacity
        )


@kopf.on.event(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", field="metadata.name", value=KEDA_CRD
)
def keda_crd_changed(type: str | None, memo: Memo, **kwargs: Any) -> None:
    """KEDA installed or removed: KEDA-mode services get (or lose) their ScaledObject."""
    if type is not None:
        reconciler.keda_crd_changed(memo.runtime, memo.status, memo.retries, ClusterView.of(kwargs))


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
async def deployment_changed(
    type: str | None, namespace: str | None, name: str, memo: Memo, **kwargs: Any
) -> None:
    """Status follows the Deployment (within a second: changes are coalesced); a Deployment
    deleted by hand is recreated at once."""
    key, view = (str(namespace), name), ClusterView.of(kwargs)
    if type == "DELETED":
        await asyncio.to_thread(
            reconciler.workload_changed,
            memo.runtime,
            memo.status,
            memo.retries,
            view,
            key,
            deleted=True,
        )
    else:
        memo.refresher.request(key, partial(reconciler.refresh_workload, memo.status, view, key))


@kopf.on.event("", "v1", "pods", labels=MANAGED)
async def pod_changed(
    namespace: str | None, labels: kopf.Labels, memo: Memo, **kwargs: Any
) -> None:
    """Pending pods the scheduler cannot place show up in the service's conditions."""
    if name := labels.get(INSTANCE_LABEL):
        key, view = (str(namespace), name), ClusterView.of(kwargs)
        memo.refresher.request(key, partial(reconciler.refresh_workload, memo.status, view, key))


@kopf.daemon(*ISVC, cancellation_timeout=10, initial_delay=1)
async def repair(
    namespace: str | None, name: str, stopped: kopf.DaemonStopped, memo: Memo, **kwargs: Any
) -> None:
    """Retries of a failed reconcile with backoff, and the periodic resync, of one service."""
    await run_repair(
        memo.runtime,
        memo.status,
        memo.retries,
        memo.children,
        (str(namespace), name),
        ClusterView.of(kwargs),
        stopped,
    )


# ------------------------------------------------------------------------------ autoscaling


def _operator_mode(body: kopf.Body, **_: Any) -> bool:
    return operator_mode(body)


@kopf.daemon(*ISVC, when=_operator_mode, cancellation_timeout=10, initial_delay=1)
async def autoscaler(
    namespace: str | None, name: str, stopped: kopf.DaemonStopped, memo: Memo, **kwargs: Any
) -> None:
    """Operator-mode autoscaling of one service: metrics -> policy -> scale -> status."""
    await run_autoscaler(
        memo.runtime,
        memo.status,
        (str(namespace), name),
        ClusterView.of(kwargs),
        memo.metrics,
        stopped,
    )
