"""Pure desired-state planning: from an InferenceService and a snapshot of the cluster to the
children to apply, the replicas to set, the status to show and the events to post.

reconciler.py gathers the inputs (through the runtime's API client and the cluster view) and
carries the plan out; every decision lives here so it is tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tritonop import conditions as c
from tritonop.admission import policy_violations
from tritonop.api.models import Autoscaling
from tritonop.api.validation import ParsedService
from tritonop.autoscale.types import ConditionFlag
from tritonop.config import Settings
from tritonop.placement import NodeInfo, Placement, decide
from tritonop.render import label_selector_string, render_children, service_urls
from tritonop.render.autoscaling import autoscaler_problem
from tritonop.status import StatusFields, WorkloadState, workload_flags

#: Autoscaler kinds a service may own, one per mode; the others are removed on a mode change.
AUTOSCALER_KINDS: dict[str, str] = {"HPA": "HorizontalPodAutoscaler", "KEDA": "ScaledObject"}

#: Event reason per placement mode, posted when the placement changes.
PLACEMENT_EVENTS: dict[str, tuple[bool, str]] = {
    "GPU": (False, c.PLACED_ON_GPU),
    "CPU": (False, c.PLACED_ON_CPU),
    "CPUFallback": (True, c.FELL_BACK_TO_CPU),
    "Unplaceable": (True, c.UNPLACEABLE),
}


@dataclass(frozen=True)
class EventSpec:
    """An Event to post on the InferenceService."""

    warning: bool
    reason: str
    message: str


@dataclass(frozen=True)
class ClusterFacts:
    """What the operator knows of the cluster around one InferenceService."""

    nodes: Sequence[NodeInfo] | None
    secret_version: str | None
    """resourceVersion of spec.modelRepository.secretRef's Secret; None when unset or missing."""
    secret_missing: bool
    keda_available: bool
    live_status: Mapping[str, Any]
    workload: WorkloadState
    admin_key: str | None = None
    """The key in the service's admin Secret (read, or newly generated); None renders no Secret."""


@dataclass(frozen=True)
class Plan:
    """Everything one reconcile should make true."""

    placement: Placement
    children: list[dict[str, Any]]
    stale_children: list[str]
    """Kinds of children this service must no longer have (they are deleted if it owns them)."""
    replicas: int | None
    """Deployment replicas to set through the scale subresource; None leaves them alone."""
    status_fields: StatusFields
    flags: tuple[ConditionFlag, ...]
    events: list[EventSpec] = field(default_factory=list)


def initial_replicas(service: ParsedService, workload: WorkloadState) -> int | None:
    """Replicas the reconcile sets: spec.replicas without autoscaling, the autoscaler's bounds
    in Operator mode (the loop owns the value in between), nothing in HPA/KEDA modes."""
    spec = service.spec
    mode = spec.autoscaling_mode
    if mode == "None":
        return spec.replicas
    if mode == "Operator" and spec.autoscaling is not None:
        low, high = spec.autoscaling.min_replicas, spec.autoscaling.max_replicas
        current = workload.desired if workload.exists else low
        return min(max(current, low), high)
    return None


@dataclass(frozen=True)
class StatusPlan:
    """The status part of a plan: what it needs no rendering for."""

    placement: Placement
    fields: StatusFields
    flags: tuple[ConditionFlag, ...]
    events: list[EventSpec]
    autoscaler_refused: bool
    """The autoscaler object the mode needs cannot be accepted (the condition explains)."""
    refused: bool
    """Nothing is applied (a policy the spec breaks; Ready says which)."""


def plan(service: ParsedService, facts: ClusterFacts, settings: Settings) -> Plan:
    """The reconcile of one valid InferenceService."""
    status = plan_status(service, facts, settings)
    if status.refused:
        return Plan(
            placement=status.placement,
            children=[],
            stale_children=[],
            replicas=None,
            status_fields=status.fields,
            flags=status.flags,
            events=status.events,
        )
    children = render_children(
        service,
        status.placement,
        settings,
        replicas=None,
        secret_version=facts.secret_version,
        admin_key=facts.admin_key,
    )
    if status.autoscaler_refused:
        # An autoscaler object the cluster cannot accept is not applied; the condition explains.
        children = [child for child in children if child["kind"] not in AUTOSCALER_KINDS.values()]
    mode = service.spec.autoscaling_mode
    stale = [kind for name, kind in AUTOSCALER_KINDS.items() if name != mode]
    if not settings.network_policy:
        stale.append("NetworkPolicy")
    return Plan(
        placement=status.placement,
        children=children,
        stale_children=stale,
        replicas=initial_replicas(service, facts.workload),
        status_fields=status.fields,
        flags=status.flags,
        events=status.events,
    )


def plan_status(service: ParsedService, facts: ClusterFacts, settings: Settings) -> StatusPlan:
    """Placement, status fields, conditions and Events of a reconcile, without rendering the
    children: the reconcile recomputes its status from the cluster as it is when it writes."""
    spec = service.spec
    placement = decide(spec, facts.nodes, settings.gpu_fallback)
    violations = policy_violations(spec, settings)
    if violations:
        return refused(service, facts, placement, c.POLICY_VIOLATION, "; ".join(violations))
    replicas = initial_replicas(service, facts.workload)
    mode = spec.autoscaling_mode
    url, grpc_url = service_urls(service, settings.cluster_domain)

    flags = list(
        workload_flags(
            facts.workload,
            placement.mode != "Unplaceable",
            placement.reason,
            placement.message,
            spec.replicas if mode == "None" else None,
        )
    )
    events: list[EventSpec] = []
    if facts.secret_missing and spec.model_repository.secret_ref is not None:
        secret = spec.model_repository.secret_ref.name
        message = (
            f"Secret {secret!r} named in spec.modelRepository.secretRef does not exist in namespace "
            f"{service.namespace}; create it or fix the name (pods cannot start without it)"
        )
        flags = c.with_condition(flags, ConditionFlag(c.READY, False, c.SECRET_NOT_FOUND, message))
        events.append(EventSpec(True, c.SECRET_NOT_FOUND, message))
    problem = autoscaler_problem(service, settings, facts.keda_available)
    if problem is not None:
        reason, message = problem
        flags.append(ConditionFlag(c.SCALING_ACTIVE, False, reason, message))
        if c.find_condition(facts.live_status, c.SCALING_ACTIVE).get("reason") != reason:
            events.append(EventSpec(True, reason, message))
    elif mode in ("None", "HPA", "KEDA"):
        flag = _delegated_scaling_flag(mode, spec.autoscaling)
        flags.append(flag)
        if (
            flag.reason == c.OBJECTIVE_IGNORED
            and c.find_condition(facts.live_status, c.SCALING_ACTIVE).get("reason") != flag.reason
        ):
            events.append(EventSpec(True, flag.reason, flag.message))

    previous_mode = (facts.live_status.get("placement") or {}).get("mode")
    if previous_mode != placement.mode:
        warning, reason = PLACEMENT_EVENTS[placement.mode]
        events.append(EventSpec(warning, reason, placement.message))

    fields: StatusFields = {
        "observedGeneration": service.generation,
        "placement": {
            "mode": placement.mode,
            "reason": placement.reason,
            "message": placement.message,
        },
        "url": url,
        "grpcUrl": grpc_url,
        "selector": label_selector_string(service.name),
        **workload_fields(facts.workload, mode, replicas),
    }
    if mode != "Operator":
        fields["metrics"] = None
    return StatusPlan(placement, fields, tuple(flags), events, problem is not None, False)


def refused(
    service: ParsedService, facts: ClusterFacts, placement: Placement, reason: str, message: str
) -> StatusPlan:
    """The status of a reconcile that applies nothing (what exists stays as it is):
    Ready=False says why, with a Warning Event when that is news."""
    ready = c.find_condition(facts.live_status, c.READY)
    repeated = ready.get("reason") == reason and ready.get("message") == message
    return StatusPlan(
        placement=placement,
        fields={"observedGeneration": service.generation},
        flags=(ConditionFlag(c.READY, False, reason, message),),
        events=[] if repeated else [EventSpec(True, reason, message)],
        autoscaler_refused=False,
        refused=True,
    )


def _delegated_scaling_flag(mode: str, autoscaling: Autoscaling | None) -> ConditionFlag:
    """ScalingActive when the operator itself does not scale.

    Kubernetes' autoscaler scales on the targets only, so an objective in HPA or KEDA mode
    would silently promise a latency nobody sizes for: the reason says ObjectiveIgnored
    instead of DelegatedTo..., with how to fix it (status stays True: the HPA does scale).
    """
    if mode == "None":
        return ConditionFlag(
            c.SCALING_ACTIVE, False, c.AUTOSCALING_DISABLED, "replicas follow spec.replicas"
        )
    if mode == "HPA":
        reason, owner = c.DELEGATED_TO_HPA, "the HorizontalPodAutoscaler"
    else:
        reason, owner = c.DELEGATED_TO_KEDA, "KEDA's ScaledObject"
    message = f"replicas are managed by {owner}"
    if autoscaling is not None and autoscaling.objective is not None:
        return ConditionFlag(
            c.SCALING_ACTIVE,
            True,
            c.OBJECTIVE_IGNORED,
            f"{message} on spec.autoscaling.targets; spec.autoscaling.objective is ignored in "
            f"mode {mode} (only mode Operator sizes replicas for a latency objective): remove "
            "the objective or set autoscaling.mode to Operator",
        )
    return ConditionFlag(c.SCALING_ACTIVE, True, reason, message)


def workload_fields(workload: WorkloadState, mode: str, replicas: int | None) -> StatusFields:
    """Status fields that mirror the Deployment (kept current by the Deployment watch)."""
    desired = workload.desired if workload.exists else (replicas or 0)
    if mode == "None" and replicas is not None:
        desired = replicas
    fields: StatusFields = {
        "replicas": workload.replicas,
        "readyReplicas": workload.ready,
        "replicaSummary": f"{workload.ready}/{desired}",
    }
    if mode != "Operator":
        fields["desiredReplicas"] = desired
    return fields


def workload_refresh(
    live_status: Mapping[str, Any],
    workload: WorkloadState,
    mode: str,
    wanted: int | None = None,
) -> tuple[StatusFields, tuple[ConditionFlag, ...]]:
    """Status fields and conditions after the Deployment or its pods changed.

    Placement comes from the last reconcile (in status); nothing is re-rendered. `wanted`:
    the replicas the spec fixes (mode None), see `workload_flags`.
    """
    placement = live_status.get("placement") or {}
    flags = workload_flags(
        workload,
        placement.get("mode", "GPU") != "Unplaceable",
        str(placement.get("reason", c.PENDING)),
        str(placement.get("message", "")),
        wanted,
    )
    if c.find_condition(live_status, c.READY).get("reason") in c.RECONCILE_VERDICTS:
        flags = tuple(flag for flag in flags if flag.type != c.READY)  # the verdict stands
    return workload_fields(workload, mode, workload.desired if workload.exists else None), flags
