"""Pure status computation: conditions in the metav1.Condition shape and the status document.

The operator has several writers of status (the reconcile of spec and nodes, the watch of
the Deployment and its pods, the autoscaling loop). Each computes *its* part here from plain
data and `merge_status` folds it into the live status, keeping `lastTransitionTime` of every
condition whose status did not change, so a reconcile that observes nothing new produces a
status equal to the live one and nothing is written.

Writers name the fields they set through `StatusFields`, the CRD's status schema
(`InferenceServiceStatus`) as mypy sees it: a misspelt field is a type error, not a field the
API server silently prunes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypedDict

from tritonop import conditions as c
from tritonop.api.models import MAX_STATUS_MESSAGE
from tritonop.autoscale.types import ConditionFlag

#: Longest message the status carries (conditions, placement, the last scale's reason). Messages
#: can quote what pods report (model names, errors), so they are cut here rather than letting
#: the API server refuse a status write against the CRD's maxLength.
MAX_MESSAGE_LENGTH = MAX_STATUS_MESSAGE

ServiceKey: TypeAlias = tuple[str, str]
"""(namespace, name) of an InferenceService; its status, Deployment and pods are keyed by it."""


class PlacementFields(TypedDict):
    """status.placement (`PlacementStatus`)."""

    mode: str
    reason: str
    message: str


class MetricsFields(TypedDict, total=False):
    """status.metrics (`MetricsStatus`): only the signals that were observed."""

    queueDepth: float
    queueTimeMs: float
    requestRate: float


ScaleFields = TypedDict("ScaleFields", {"from": int, "to": int, "reason": str})
"""status.lastScale (`ScaleRecord`); `from` is a Python keyword, hence the functional form."""


class StatusFields(TypedDict, total=False):
    """The fields of an InferenceService's status a writer sets, by their CRD names.

    A writer names only the fields it owns; `merge_status` keeps the others. None removes a
    field that no longer applies (metrics after leaving Operator mode). Conditions are not
    here: writers pass them as ConditionFlags, which `merge_conditions` turns into conditions.
    """

    observedGeneration: int
    replicas: int
    readyReplicas: int
    desiredReplicas: int
    replicaSummary: str
    selector: str
    placement: PlacementFields
    url: str
    grpcUrl: str
    metrics: MetricsFields | None
    lastScaleTime: str
    lastScale: ScaleFields
    reconciledDigest: str | None


def bounded(text: str) -> str:
    """`text` cut to MAX_MESSAGE_LENGTH characters, marked with an ellipsis when cut."""
    if len(text) <= MAX_MESSAGE_LENGTH:
        return text
    return text[: MAX_MESSAGE_LENGTH - 1] + "\u2026"


#: The free-text part of status objects that carry one (placement.message, lastScale.reason).
_TEXT_FIELDS = {"placement": "message", "lastScale": "reason"}


def _bounded_texts(key: str, value: Any) -> Any:
    """A status field with its free text cut to MAX_MESSAGE_LENGTH."""
    text_key = _TEXT_FIELDS.get(key)
    if text_key is None or not isinstance(value, Mapping) or text_key not in value:
        return value
    return {**value, text_key: bounded(str(value[text_key]))}


def merge_conditions(
    live: Iterable[Mapping[str, Any]],
    flags: Iterable[ConditionFlag],
    *,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """Set each flag's condition, keeping lastTransitionTime when the status is unchanged.

    Conditions this call does not mention are kept as they are: another writer owns them.
    """
    by_type = {str(c["type"]): dict(c) for c in live}
    for flag in flags:
        status = "True" if flag.status else "False"
        previous = by_type.get(flag.type)
        changed = previous is None or previous.get("status") != status
        by_type[flag.type] = {
            "type": flag.type,
            "status": status,
            "reason": flag.reason,
            "message": bounded(flag.message),
            "lastTransitionTime": now
            if changed or previous is None
            else previous["lastTransitionTime"],
            "observedGeneration": generation,
        }
    order = {name: index for index, name in enumerate(c.CONDITION_ORDER)}
    return sorted(by_type.values(), key=lambda c: (order.get(c["type"], len(order)), c["type"]))


def merge_status(
    live: Mapping[str, Any] | None,
    fields: StatusFields,
    flags: Iterable[ConditionFlag] = (),
    *,
    generation: int,
    now: str,
) -> dict[str, Any]:
    """The live status with `fields` overlaid and `flags` set as conditions.

    A field set to None is removed (it no longer applies, e.g. metrics after leaving
    Operator mode). `now` stamps the conditions whose status changes: the caller's clock, so
    that this stays a function of its arguments.
    """
    merged = {k: v for k, v in (live or {}).items() if k != "conditions"}
    for key, value in fields.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _bounded_texts(key, value)
    merged["conditions"] = merge_conditions(
        (live or {}).get("conditions") or [], flags, generation=generation, now=now
    )
    return merged


@dataclass(frozen=True)
class WorkloadState:
    """What the owned Deployment and its pods say, as plain data."""

    exists: bool
    desired: int
    """spec.replicas of the Deployment (what it is asked to run)."""
    replicas: int
    ready: int
    available: int
    updated: int
    generation_observed: bool
    """The Deployment controller has seen the Deployment's latest spec."""
    unschedulable_message: str | None = None
    """The scheduler's message for a Pending pod of this service, if any."""


def workload_state(
    deployment: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]]
) -> WorkloadState:
    """Summarise a Deployment object and its pods."""
    if not deployment:
        return WorkloadState(False, 0, 0, 0, 0, 0, False, _unschedulable(pods))
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    meta = deployment.get("metadata") or {}
    return WorkloadState(
        exists=True,
        desired=int(spec.get("replicas", 1)),
        replicas=int(status.get("replicas", 0)),
        ready=int(status.get("readyReplicas", 0)),
        available=int(status.get("availableReplicas", 0)),
        updated=int(status.get("updatedReplicas", 0)),
        generation_observed=int(status.get("observedGeneration", 0))
        >= int(meta.get("generation", 0)),
        unschedulable_message=_unschedulable(pods),
    )


def _unschedulable(pods: Iterable[Mapping[str, Any]]) -> str | None:
    """The scheduler's reason of the first Pending pod that could not be scheduled."""
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") != "Pending":
            continue
        scheduled = c.find_condition(status, c.POD_SCHEDULED)
        if scheduled.get("status") == "False" and scheduled.get("reason") == c.UNSCHEDULABLE:
            return str(scheduled.get("message") or "the scheduler found no node for the pod")
    return None


def workload_flags(
    workload: WorkloadState,
    placement_ok: bool,
    placement_reason: str,
    placement_message: str,
    wanted: int | None = None,
) -> tuple[ConditionFlag, ...]:
    """Placed, Available and the Ready summary from placement and the Deployment's state.

    `wanted`: the replicas the spec fixes (spec.replicas without autoscaling), else None. A
    new Deployment starts at one replica and is scaled to the spec's count a moment later;
    until it is, its one ready pod is not the service the spec asks for, so not Ready.
    """
    scheduler = workload.unschedulable_message
    if not placement_ok:
        message = f"{placement_message} Scheduler: {scheduler}" if scheduler else placement_message
        placed = ConditionFlag(c.PLACED, False, placement_reason, message)
    elif scheduler:
        placed = ConditionFlag(
            c.PLACED, False, c.PODS_UNSCHEDULABLE, f"pods are Pending: {scheduler}"
        )
    else:
        placed = ConditionFlag(c.PLACED, True, placement_reason, placement_message)
    if not workload.exists:
        available = ConditionFlag(
            c.AVAILABLE, False, c.DEPLOYMENT_MISSING, "the Deployment is not created yet"
        )
    elif workload.available >= 1:
        available = ConditionFlag(
            c.AVAILABLE,
            True,
            c.MINIMUM_REPLICAS_AVAILABLE,
            f"{workload.available} replica(s) available",
        )
    elif workload.desired == 0:
        available = ConditionFlag(
            c.AVAILABLE, False, c.SCALED_TO_ZERO, "the service has 0 replicas"
        )
    else:
        available = ConditionFlag(
            c.AVAILABLE, False, c.NO_REPLICAS_AVAILABLE, "no Triton replica is ready yet"
        )
    rolled_out = (
        workload.exists
        and workload.generation_observed
        and workload.updated >= workload.desired
        and workload.ready >= workload.desired
        and workload.replicas == workload.desired
        and (wanted is None or workload.desired == wanted)
    )
    if not placed.status:
        ready = ConditionFlag(c.READY, False, placed.reason, placed.message)
    elif not available.status:
        ready = ConditionFlag(c.READY, False, available.reason, available.message)
    elif not rolled_out:
        ready = ConditionFlag(
            c.READY,
            False,
            c.ROLLOUT_IN_PROGRESS,
            f"{workload.ready}/{workload.desired if wanted is None else wanted} replicas ready, "
            f"{workload.updated} updated",
        )
    else:
        ready = ConditionFlag(
            c.READY, True, c.REPLICAS_READY, f"{workload.ready}/{workload.desired} replicas ready"
        )
    return (ready, available, placed)


def invalid_spec_flags(message: str) -> tuple[ConditionFlag, ...]:
    """Conditions for a spec the operator cannot act on."""
    return (ConditionFlag(c.READY, False, c.INVALID_SPEC, message),)
