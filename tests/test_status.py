"""Status computation: metav1.Condition shape, stable transition times, the Ready summary."""

from __future__ import annotations

from tritonop.autoscale.types import ConditionFlag
from tritonop.status import (
    PlacementFields,
    WorkloadState,
    merge_conditions,
    merge_status,
    workload_flags,
    workload_state,
)

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def test_condition_shape_and_order() -> None:
    conditions = merge_conditions(
        [],
        [
            ConditionFlag("Placed", True, "GPUNodesAvailable", "2 nodes fit"),
            ConditionFlag("Ready", False, "RolloutInProgress", "0/1"),
        ],
        generation=3,
        now=T0,
    )
    assert [c["type"] for c in conditions] == ["Ready", "Placed"]
    assert conditions[0] == {
        "type": "Ready",
        "status": "False",
        "reason": "RolloutInProgress",
        "message": "0/1",
        "lastTransitionTime": T0,
        "observedGeneration": 3,
    }


def test_transition_time_kept_while_status_unchanged() -> None:
    first = merge_conditions(
        [], [ConditionFlag("Ready", False, "RolloutInProgress", "0/2")], generation=1, now=T0
    )
    same = merge_conditions(
        first, [ConditionFlag("Ready", False, "NoReplicasAvailable", "none")], generation=1, now=T1
    )
    assert same[0]["lastTransitionTime"] == T0 and same[0]["reason"] == "NoReplicasAvailable"
    flipped = merge_conditions(
        same, [ConditionFlag("Ready", True, "ReplicasReady", "2/2")], generation=1, now=T1
    )
    assert flipped[0]["lastTransitionTime"] == T1


def test_conditions_of_other_writers_are_kept() -> None:
    live = merge_conditions(
        [], [ConditionFlag("ScalingActive", True, "ValidMetrics", "ok")], generation=1, now=T0
    )
    merged = merge_conditions(
        live, [ConditionFlag("Ready", True, "ReplicasReady", "1/1")], generation=1, now=T1
    )
    assert {c["type"] for c in merged} == {"Ready", "ScalingActive"}


def test_merge_status_is_idempotent_and_removes_none_fields() -> None:
    flags = [ConditionFlag("Ready", True, "ReplicasReady", "1/1")]
    once = merge_status(
        {"metrics": {"queueDepth": 1}},
        {"replicas": 1, "metrics": None},
        flags,
        generation=2,
        now=T0,
    )
    twice = merge_status(once, {"replicas": 1, "metrics": None}, flags, generation=2, now=T1)
    assert once == twice
    assert "metrics" not in once


def deployment(
    desired: int, ready: int, generation: int = 2, observed: int = 2
) -> dict[str, object]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": desired},
        "status": {
            "observedGeneration": observed,
            "replicas": desired,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "updatedReplicas": desired,
        },
    }


def pending_pod(message: str) -> dict[str, object]:
    return {
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                }
            ],
        }
    }


def flags_by_type(state: WorkloadState, placed: bool = True) -> dict[str, ConditionFlag]:
    return {f.type: f for f in workload_flags(state, placed, "GPUNodesAvailable", "2 nodes fit")}


def test_ready_when_every_replica_is_ready() -> None:
    flags = flags_by_type(workload_state(deployment(2, 2), []))
    assert flags["Ready"].status and flags["Available"].status and flags["Placed"].status


def test_rollout_in_progress_is_not_ready_but_available() -> None:
    flags = flags_by_type(workload_state(deployment(3, 1), []))
    assert not flags["Ready"].status and flags["Ready"].reason == "RolloutInProgress"
    assert flags["Available"].status


def test_a_new_deployment_not_yet_scaled_to_the_fixed_count_is_not_ready() -> None:
    """A Deployment is created at one replica and scaled to spec.replicas just after: its one
    ready pod is not yet the service the spec asks for (CI saw Ready=True at 1 of 2)."""
    state = workload_state(deployment(1, 1), [])
    ready = {f.type: f for f in workload_flags(state, True, "GPUNodesAvailable", "fit", wanted=2)}[
        "Ready"
    ]
    assert (ready.status, ready.reason) == (False, "RolloutInProgress")
    assert ready.message.startswith("1/2 replicas ready")
    scaled = workload_state(deployment(2, 2), [])
    assert {f.type: f for f in workload_flags(scaled, True, "GPUNodesAvailable", "fit", wanted=2)}[
        "Ready"
    ].status


def test_unobserved_generation_is_not_ready() -> None:
    assert not flags_by_type(workload_state(deployment(1, 1, generation=3, observed=2), []))[
        "Ready"
    ].status


def test_scheduler_reason_reaches_the_placed_condition() -> None:
    message = "0/5 nodes are available: 5 Insufficient nvidia.com/gpu."
    flags = flags_by_type(workload_state(deployment(1, 0), [pending_pod(message)]))
    assert not flags["Placed"].status and flags["Placed"].reason == "PodsUnschedulable"
    assert message in flags["Placed"].message
    assert flags["Ready"].reason == "PodsUnschedulable"


def test_unplaceable_placement_carries_the_scheduler_message_too() -> None:
    state = workload_state(deployment(1, 0), [pending_pod("0/5 nodes are available")])
    flags = {
        f.type: f for f in workload_flags(state, False, "NoMatchingGPUNode", "no node offers X.")
    }
    assert flags["Placed"].reason == "NoMatchingGPUNode"
    assert flags["Placed"].message == "no node offers X. Scheduler: 0/5 nodes are available"


def test_missing_deployment() -> None:
    flags = flags_by_type(workload_state(None, []))
    assert flags["Available"].reason == "DeploymentMissing" and not flags["Ready"].status


def test_status_messages_are_bounded() -> None:
    from tritonop.status import MAX_MESSAGE_LENGTH

    long = "model " * 1000
    merged = merge_status(
        {},
        {
            "placement": {"mode": "GPU", "reason": "R", "message": long},
            "lastScale": {"from": 1, "to": 2, "reason": long},
        },
        [ConditionFlag("Ready", False, "R", long)],
        generation=1,
        now="t",
    )
    assert len(merged["conditions"][0]["message"]) == MAX_MESSAGE_LENGTH
    assert merged["conditions"][0]["message"].endswith("\u2026")
    assert len(merged["placement"]["message"]) == MAX_MESSAGE_LENGTH
    assert len(merged["lastScale"]["reason"]) == MAX_MESSAGE_LENGTH
    short: PlacementFields = {"mode": "GPU", "reason": "R", "message": "ok"}
    assert merge_status({}, {"placement": short}, generation=1, now="t")["placement"] == short
