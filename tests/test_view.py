"""The index entries keep only what the operator reads: the readers see the same thing from an
entry as from the whole object, and an entry is a fraction of the object's size. The objects are
as the API server returned them (tests/fixtures/live-*.json, from a local cluster)."""

from __future__ import annotations

import copy
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tritonop.api.validation import parse_object
from tritonop.autoscale.deletioncost import DELETION_COST, deletion_costs
from tritonop.autoscale.loop import pods_cold_start, split_pods
from tritonop.ownership import controller_of
from tritonop.status import workload_state
from tritonop.view import deployment_entry, pod_entry, service_entry

FIXTURES = Path(__file__).parent / "fixtures"
KEY = ("scale-01", "svc-0001")


def live(kind: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / f"live-{kind}.json").read_text()))


def size(obj: Any) -> int:
    """Bytes held by the Python objects of a nested structure (what an index entry costs)."""
    if isinstance(obj, dict):
        return sys.getsizeof(obj) + sum(size(k) + size(v) for k, v in obj.items())
    if isinstance(obj, list):
        return sys.getsizeof(obj) + sum(size(v) for v in obj)
    return sys.getsizeof(obj)


def test_a_pod_entry_reads_like_the_pod_at_a_tenth_of_its_size() -> None:
    pod = live("pod")
    [(key, entry)] = pod_entry(pod, "scale-01", pod["metadata"]["labels"]).items()
    assert key == KEY
    assert split_pods([entry]) == split_pods([pod]) and split_pods([pod])[0]  # ready, with IP
    assert workload_state(None, [entry]) == workload_state(None, [pod])
    assert pods_cold_start([entry]) == pods_cold_start([pod])
    assert size(entry) * 10 < size(pod)


def test_a_pod_entry_keeps_the_cold_start() -> None:
    """Creation and Ready's transition are what the objective's cold start is learned from."""
    pod = live("pod")
    created = datetime.fromisoformat(pod["metadata"]["creationTimestamp"])
    for condition in pod["status"]["conditions"]:
        if condition["type"] == "Ready":
            condition["lastTransitionTime"] = (created + timedelta(seconds=20)).isoformat()
    [entry] = pod_entry(pod, "scale-01", pod["metadata"]["labels"]).values()
    assert pods_cold_start([entry]) == pods_cold_start([pod]) == 20.0


def test_a_pod_entry_gets_the_same_deletion_cost_as_the_pod() -> None:
    """The scale-down's pod-deletion-cost reads owner labels, the controlling ReplicaSet and
    the cost written last: an entry without them would never be annotated (CI saw no cost
    written before a scale-down)."""
    pod = live("pod")
    name = pod["metadata"]["name"]
    service = pod["metadata"]["labels"]["tritonop.io/inferenceservice"]
    [entry] = pod_entry(pod, "scale-01", pod["metadata"]["labels"]).values()
    work = {name: 3.0}
    assert deletion_costs(service, [entry], work) == deletion_costs(service, [pod], work)
    assert deletion_costs(service, [entry], work) == {name: 3}
    pod["metadata"].setdefault("annotations", {})[DELETION_COST] = "3"
    [annotated] = pod_entry(pod, "scale-01", pod["metadata"]["labels"]).values()
    assert deletion_costs(service, [annotated], work) == {}  # written already: no write


def test_a_pending_or_terminating_pod_entry_keeps_why() -> None:
    pod = live("pod")
    pod["metadata"]["deletionTimestamp"] = "2026-12-03T11:00:00Z"
    [terminating] = pod_entry(pod, "scale-01", {}).values()
    assert split_pods([terminating]) == ((), 0)
    pending = copy.deepcopy(live("pod"))
    pending["status"] = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/5 nodes are available: 5 Insufficient nvidia.com/gpu.",
                "lastTransitionTime": "2026-12-03T11:00:00Z",
            }
        ],
    }
    [entry] = pod_entry(pending, "scale-01", {}).values()
    assert workload_state(None, [entry]).unschedulable_message == (
        "0/5 nodes are available: 5 Insufficient nvidia.com/gpu."
    )
    assert split_pods([entry]) == ((), 1)


def test_a_deployment_entry_counts_like_the_deployment_and_keeps_no_pod_template() -> None:
    """The entry is what workload_state, the controller check and the resync's fingerprint
    read; the reconcile reads the live Deployment for the rest (test_reconciler.py)."""
    deployment = live("deployment")
    [(key, entry)] = deployment_entry(deployment, *KEY).items()
    assert key == KEY
    assert workload_state(entry, []) == workload_state(deployment, [])
    assert controller_of(entry) == controller_of(deployment)
    owners = deployment["metadata"].get("ownerReferences")
    assert entry["metadata"].get("ownerReferences") == owners
    assert entry["metadata"]["generation"] == deployment["metadata"]["generation"]
    assert entry["spec"] == {"replicas": deployment["spec"]["replicas"]}
    assert size(entry) * 5 < size(deployment)


def test_a_service_entry_is_the_service_without_managed_fields_and_annotations() -> None:
    service = live("inferenceservice")  # with kopf's annotations and the operator's status
    assert "tritonop.io/last-handled-configuration" in service["metadata"]["annotations"]
    [(key, entry)] = service_entry(service, *KEY).items()
    assert key == KEY
    assert parse_object(entry) == parse_object(service)
    assert entry["status"] == service["status"] and entry["spec"] == service["spec"]
    kept = {
        k: v for k, v in service["metadata"].items() if k not in ("managedFields", "annotations")
    }
    assert entry["metadata"] == kept
    assert size(entry) * 2 < size(service)
