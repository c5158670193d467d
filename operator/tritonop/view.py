"""A read-only view of the cluster, over kopf's in-memory indexes: how they are keyed and read.

kopf keeps each index current from its watch streams and hands every handler the live index
objects; the view reads them at the moment a decision needs them (not snapshotted when the
handler starts), so a status computed under the status book's lock sees the latest Deployment.
The view never writes: writes go through the runtime's KubeApi and the status book.

Plain mappings stand in for kopf's indexes in unit tests: an index is a mapping from key to a
collection of entries, which is all the view reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from tritonop import conditions as c
from tritonop.autoscale.deletioncost import DELETION_COST
from tritonop.ownership import controller_of
from tritonop.placement import NodeInfo, node_info
from tritonop.status import ServiceKey, WorkloadState, workload_state

Obj: TypeAlias = dict[str, Any]
"""A Kubernetes object as the API returns it."""

NodeIndex: TypeAlias = Mapping[str, Collection[NodeInfo]]
"""Every node's placement facts, all under the one key ALL_NODES."""
ObjectIndex: TypeAlias = Mapping[ServiceKey, Collection[Obj]]
"""Objects by the InferenceService they belong to."""

ALL_NODES: Final = "all"
INSTANCE_LABEL: Final = "app.kubernetes.io/instance"
"""The pods' label naming their InferenceService (render/labels.py sets it)."""
POD_LABELS: Final = ("app.kubernetes.io/managed-by", "tritonop.io/inferenceservice")
"""The labels of a pod's index entry (deletioncost.owned_by reads them)."""
POD_CONDITIONS: Final = frozenset({c.POD_READY, c.POD_SCHEDULED})
POD_CONDITION_FIELDS: Final = ("type", "status", "reason", "message", "lastTransitionTime")
DEPLOYMENT_STATUS_FIELDS: Final = (
    "observedGeneration",
    "replicas",
    "readyReplicas",
    "availableReplicas",
    "updatedReplicas",
)
"""What workload_state reads of a Deployment's status."""


def node_entry(node: Mapping[str, Any]) -> dict[str, NodeInfo]:
    """A Node's entry in the node index."""
    return {ALL_NODES: node_info(dict(node))}


def pod_entry(
    pod: Mapping[str, Any], namespace: str, labels: Mapping[str, str]
) -> dict[ServiceKey, Obj]:
    """A Triton pod's entry in the pod index: under the InferenceService its label names.

    Only what the operator reads of a pod is kept (its name, whether it is terminating, its
    owner labels and controller, its deletion cost, phase, IP and Ready/PodScheduled
    conditions): a whole pod is a few KiB of JSON and tens of
    KiB as Python objects, times every replica of every service.
    """
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    # creationTimestamp and Ready's lastTransitionTime: the cold start (autoscale/coldstart.py)
    kept_meta: Obj = {"name": meta.get("name"), "creationTimestamp": meta.get("creationTimestamp")}
    if meta.get("deletionTimestamp"):
        kept_meta["deletionTimestamp"] = meta["deletionTimestamp"]
    # What the scale-down's pod-deletion-cost reads (autoscale/deletioncost.py): whose pod it
    # is, which ReplicaSet made it, and the cost written last.
    labels = meta.get("labels") or {}
    kept_meta["labels"] = {key: labels[key] for key in POD_LABELS if key in labels}
    kept_meta["ownerReferences"] = [
        {key: owner[key] for key in ("kind", "name", "uid", "controller") if key in owner}
        for owner in meta.get("ownerReferences") or []
        if owner.get("controller")
    ]
    cost = (meta.get("annotations") or {}).get(DELETION_COST)
    if cost is not None:
        kept_meta["annotations"] = {DELETION_COST: cost}
    kept_status: Obj = {
        "phase": status.get("phase"),
        "conditions": [
            {key: condition[key] for key in POD_CONDITION_FIELDS if key in condition}
            for condition in status.get("conditions") or []
            if condition.get("type") in POD_CONDITIONS
        ],
    }
    if status.get("podIP"):
        kept_status["podIP"] = status["podIP"]
    return {
        (namespace, labels.get(INSTANCE_LABEL, "")): {"metadata": kept_meta, "status": kept_status}
    }


DEPLOYMENT_METADATA_FIELDS: Final = (
    "name",
    "namespace",
    "uid",
    "generation",
    "resourceVersion",
    "ownerReferences",
)
"""What is read of a Deployment's metadata: the controller (view.deployment) and the
generation (workload_state, and the resync's fingerprint: drift.py)."""


def deployment_entry(
    deployment: Mapping[str, Any], namespace: str, name: str
) -> dict[ServiceKey, Obj]:
    """An owned Deployment's entry (named like its service): who controls it, its generation,
    spec.replicas and the replica counts of its status.

    Not its pod template, about four fifths of the object and 30 MiB at 1,000 services: the
    rare reconcile that compares the rendered Deployment with the live one reads it (since the
    resync stops at its fingerprint, those are creates, spec and placement changes, and
    restarts).
    """
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    return {
        (namespace, name): {
            "metadata": {k: meta[k] for k in DEPLOYMENT_METADATA_FIELDS if k in meta},
            "spec": {"replicas": spec.get("replicas", 1)},
            "status": {k: status[k] for k in DEPLOYMENT_STATUS_FIELDS if k in status},
        }
    }


def service_entry(service: Mapping[str, Any], namespace: str, name: str) -> dict[ServiceKey, Obj]:
    """An InferenceService's entry: the object without managedFields and annotations.

    Nothing reads those, and kopf's bookkeeping annotation alone is a second copy of the spec.
    """
    meta = {
        k: v
        for k, v in (service.get("metadata") or {}).items()
        if k not in ("managedFields", "annotations")
    }
    return {(namespace, name): {**service, "metadata": meta}}


@dataclass(frozen=True)
class ClusterView:
    """The four indexes the operator keeps, read by InferenceService key.

    The field names are the indexes' names: kopf passes each index to handlers as a keyword
    argument named after its index handler, and `of` picks them from there.
    """

    node_index: NodeIndex
    pod_index: ObjectIndex
    deployment_index: ObjectIndex
    service_index: ObjectIndex

    @classmethod
    def of(cls, handler_kwargs: Mapping[str, Any]) -> ClusterView:
        """The view over the indexes among a kopf handler's keyword arguments."""
        return cls(**{field.name: handler_kwargs[field.name] for field in dataclasses.fields(cls)})

    def nodes(self) -> list[NodeInfo]:
        return list(self.node_index.get(ALL_NODES, []))

    def service(self, key: ServiceKey) -> Obj | None:
        """The InferenceService object, or None once it is deleted."""
        return _one(self.service_index, key)

    def services(self) -> Iterator[tuple[ServiceKey, Obj]]:
        """Every known InferenceService (a copy of the keys: the index may change meanwhile)."""
        for key in list(self.service_index):
            body = _one(self.service_index, key)
            if body is not None:
                yield key, body

    def deployment(self, key: ServiceKey) -> Obj | None:
        """The service's Deployment: the one named like it *and controlled by it* (by uid). A
        Deployment of the same name that someone else controls is not the service's, even if
        it carries the operator's labels: its replicas are never read, let alone scaled."""
        deployment = _one(self.deployment_index, key)
        service = self.service(key)
        if deployment is None or service is None:
            return None
        controller = controller_of(deployment)
        uid = (service.get("metadata") or {}).get("uid")
        return deployment if controller is not None and controller.get("uid") == uid else None

    def pods(self, key: ServiceKey) -> list[Obj]:
        return list(self.pod_index.get(key, []))

    def workload(self, key: ServiceKey) -> WorkloadState:
        return workload_state(self.deployment(key), self.pods(key))


def _one(index: ObjectIndex, key: ServiceKey) -> Obj | None:
    """The single entry under `key` (services and Deployments are unique per key)."""
    store = index.get(key)
    return next(iter(store), None) if store is not None else None
