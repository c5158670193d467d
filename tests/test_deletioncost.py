"""Which pods a scale-down removes (pure): pod-deletion-cost from each owned pod's work."""

from __future__ import annotations

from typing import Any

from fakes import owned_pod
from tritonop.autoscale.deletioncost import (
    MAX_DELETION_COST,
    deletion_cost,
    deletion_costs,
    owned_by,
)


def pod(name: str, service: str = "svc", cost: str | None = None, **meta: Any) -> dict[str, Any]:
    made = owned_pod(service, name, "10.0.0.1", cost)
    made["metadata"].update(meta)
    return made


def test_the_cost_is_unfinished_requests_rounded_up() -> None:
    assert deletion_cost(0.0) == 0
    assert deletion_cost(0.05) == 1  # any work ranks above an idle pod
    assert deletion_cost(3.0) == 3
    assert deletion_cost(3.2) == 4
    assert deletion_cost(float("nan")) == deletion_cost(-1.0) == 0
    assert deletion_cost(1e12) == MAX_DELETION_COST  # the annotation is an int32


def test_only_the_services_own_pods_are_owned() -> None:
    assert owned_by(pod("svc-a"), "svc")
    assert not owned_by(pod("other-a", service="other"), "svc")
    stranger = pod("svc-b")
    stranger["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "helm"
    assert not owned_by(stranger, "svc")
    orphan = pod("svc-c")
    orphan["metadata"]["ownerReferences"] = []
    assert not owned_by(orphan, "svc")
    foreign_owner = pod("svc-d")
    foreign_owner["metadata"]["ownerReferences"][0]["name"] = "svcx-77"
    assert not owned_by(foreign_owner, "svc")


def test_only_changed_costs_of_owned_known_pods_are_written() -> None:
    pods = [
        pod("svc-idle"),
        pod("svc-busy", cost="2"),
        pod("svc-same", cost="5"),
        pod("svc-unknown"),
        pod("svc-leaving", deletionTimestamp="2026-12-03T10:00:00Z"),
        pod("intruder", service="other"),
    ]
    work = {
        "svc-idle": 0.0,
        "svc-busy": 7.4,
        "svc-same": 4.6,
        "svc-leaving": 9.0,
        "intruder": 3.0,
    }
    assert deletion_costs("svc", pods, work) == {"svc-idle": 0, "svc-busy": 8}
    # written once, nothing changes: nothing to write
    written = [pod("svc-idle", cost="0"), pod("svc-busy", cost="8"), pod("svc-same", cost="5")]
    assert deletion_costs("svc", written, work) == {}
