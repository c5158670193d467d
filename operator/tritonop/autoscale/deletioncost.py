"""Which pods a scale-down removes: `controller.kubernetes.io/pod-deletion-cost` from their work.

Pure. When a Deployment shrinks, its ReplicaSet deletes not-ready pods first and then, among
ready ones, those with the lowest pod-deletion-cost annotation (Kubernetes >= 1.22). Without
the annotation it picks by age and spread, so it may terminate a pod with a long queue while an
idle one stays: those queued requests then wait out the termination (or fail), and that is
where a scale-down costs latency. So before lowering replicas the autoscaling loop annotates
the service's ready pods with their unfinished requests (queued plus executing, from the
interval's Triton metrics), and the idle ones go first.

Only pods the operator owns are touched (its labels for this service, created by a ReplicaSet),
and only those whose annotation would change: a scale-down of an idle service writes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
#: The annotation's value is an int32.
MAX_DELETION_COST = 2**31 - 1


def deletion_cost(work: float) -> int:
    """The annotation for a pod with `work` unfinished requests: whole requests, rounded up,
    so a pod with any work at all ranks above an idle one (0)."""
    if not math.isfinite(work) or work <= 0:
        return 0
    return min(MAX_DELETION_COST, math.ceil(work - 1e-9))


def owned_by(pod: Mapping[str, Any], service: str) -> bool:
    """Whether the pod is one of `service`'s Triton pods, made by its Deployment's ReplicaSet."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get("app.kubernetes.io/managed-by") != "tritonop":
        return False
    if labels.get("tritonop.io/inferenceservice") != service:
        return False
    return any(
        owner.get("kind") == "ReplicaSet"
        and owner.get("controller") is True
        and str(owner.get("name", "")).startswith(f"{service}-")
        for owner in meta.get("ownerReferences") or []
    )


def deletion_costs(
    service: str, pods: Iterable[Mapping[str, Any]], work: Mapping[str, float]
) -> dict[str, int]:
    """Pod name -> the deletion cost to write, for the owned pods whose annotation differs.

    `work` is the unfinished requests of the pods that reported metrics this interval
    (Observation.pod_work); a pod without a figure is left as it is (its work is unknown, and
    Kubernetes already removes pods that are not ready first). Terminating pods are skipped.
    """
    changes: dict[str, int] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        name = str(meta.get("name", ""))
        if name not in work or meta.get("deletionTimestamp") or not owned_by(pod, service):
            continue
        cost = deletion_cost(work[name])
        if (meta.get("annotations") or {}).get(DELETION_COST) != str(cost):
            changes[name] = cost
    return changes
