"""Pure desired-state planning: from an InferenceService and a snapshot of the cluster to the
children to apply, the replicas to set, the status to show and the events to post.

Handlers gather the inputs (via k8s.py and kopf's indexes) and carry the plan out; every
decision lives here so it is tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tritonop.admission import policy_violations
from tritonop.api.validation import ParsedService
from tritonop.autoscale.types import ConditionFlag
from tritonop.config import Settings
from tritonop.placement import NodeInfo, Placement, decide
from tritonop.render import label_selector_string, render_children, service_urls
from tritonop.render.autoscaling import autoscaler_problem
from tritonop.status import WorkloadState, workload_flags

#: Autoscaler kinds a service may own, one per mode; the others are removed on a mode change.
AUTOSCALER_KINDS: dict[str, str] = {"HPA": "HorizontalPodAutoscaler", "KEDA": "ScaledObject"}

#: Ready reasons that are the reconcile's verdict on the spec itself: changes of the Deployment
#: and its pods do not override them (only the next reconcile does).
VERDICT_REASONS = ("SecretNotFound", "InvalidSpec", "PolicyViolation")

#: Event reason per placement mode, posted when the placement changes.
PLACEMENT_EVENTS: dict[str, tuple[bool, str]] = {
    "GPU": (False, "PlacedOnGPU"),
    "CPU": (False, "PlacedOnCPU"),
    "CPUFallback": (True, "FellBackToCPU"),
    "Unplaceable": (True, "Unplaceable"),
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
    secret_digest: str | None
    """Digest of spec.modelRepository.secretRef's data; None when unset or missing."""
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
    status_fields: dict[str, Any]
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


def plan(service: ParsedService, facts: ClusterFacts, settings: Settings) -> Plan:
    """The reconcile of one valid InferenceService."""
    spec = service.spec
    placement = decide(spec, facts.nodes, settings.gpu_fallback)
    violations = policy_violations(spec, settings)
    if violations:
        return refused(service, facts, placement, "PolicyViolation", "; ".join(violations))
    replicas = initial_replicas(service, facts.workload)
    children = render_children(
        service,
        placement,
        settings,
        replicas=None,
        secret_hash=facts.secret_digest,
        admin_key=facts.admin_key,
    )
    mode = spec.autoscaling_mode
    stale = [kind for name, kind in AUTOSCALER_KINDS.items() if name != mode]
    if not settings.network_policy:
        stale.append("NetworkPolicy")
    url, grpc_url = service_urls(service, settings.cluster_domain)

    flags = list(
        workload_flags(
            facts.workload,
            placement.mode != "Unplaceable",
            placement.reason,
            placement.message,
        )
    )
    events: list[EventSpec] = []
    if facts.secret_missing and spec.model_repository.secret_ref is not None:
        secret = spec.model_repository.secret_ref.name
        message = (
            f"Secret {secret!r} named in spec.modelRepository.secretRef does not exist in namespace "
            f"{service.namespace}; create it or fix the name (pods cannot start without it)"
        )
        flags[0] = ConditionFlag("Ready", False, "SecretNotFound", message)
        events.append(EventSpec(True, "SecretNotFound", message))
    problem = autoscaler_problem(service, settings, facts.keda_available)
    if problem is not None:
        reason, message = problem
        flags.append(ConditionFlag("ScalingActive", False, reason, message))
        # An autoscaler object the cluster cannot accept is not applied; the condition explains.
        children = [c for c in children if c["kind"] not in AUTOSCALER_KINDS.values()]
        if not any(
            c.get("type") == "ScalingActive" and c.get("reason") == reason
            for c in facts.live_status.get("conditions") or []
        ):
            events.append(EventSpec(True, reason, message))
    elif mode in ("None", "HPA", "KEDA"):
        flags.append(_delegated_scaling_flag(mode))

    previous_mode = (facts.live_status.get("placement") or {}).get("mode")
    if previous_mode != placement.mode:
        warning, reason = PLACEMENT_EVENTS[placement.mode]
        events.append(EventSpec(warning, reason, placement.message))

    fields: dict[str, Any] = {
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
    return Plan(
        placement=placement,
        children=children,
        stale_children=stale,
        replicas=replicas,
        status_fields=fields,
        flags=tuple(flags),
        events=events,
    )


def refused(
    service: ParsedService, facts: ClusterFacts, placement: Placement, reason: str, message: str
) -> Plan:
    """A reconcile that applies nothing (what exists stays as it is): Ready=False says why,
    with a Warning Event when that is news."""
    ready: Mapping[str, Any] = next(
        (c for c in facts.live_status.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    repeated = ready.get("reason") == reason and ready.get("message") == message
    return Plan(
        placement=placement,
        children=[],
        stale_children=[],
        replicas=None,
        status_fields={"observedGeneration": service.generation},
        flags=(ConditionFlag("Ready", False, reason, message),),
        events=[] if repeated else [EventSpec(True, reason, message)],
    )


def _delegated_scaling_flag(mode: str) -> ConditionFlag:
    """ScalingActive when the operator itself does not scale."""
    if mode == "None":
        return ConditionFlag(
            "ScalingActive", False, "AutoscalingDisabled", "replicas follow spec.replicas"
        )
    owner = "the HorizontalPodAutoscaler" if mode == "HPA" else "KEDA's ScaledObject"
    return ConditionFlag(
        "ScalingActive", True, f"DelegatedTo{mode}", f"replicas are managed by {owner}"
    )


def workload_fields(workload: WorkloadState, mode: str, replicas: int | None) -> dict[str, Any]:
    """Status fields that mirror the Deployment (kept current by the Deployment watch)."""
    desired = workload.desired if workload.exists else (replicas or 0)
    if mode == "None" and replicas is not None:
        desired = replicas
    fields: dict[str, Any] = {
        "replicas": workload.replicas,
        "readyReplicas": workload.ready,
        "replicaSummary": f"{workload.ready}/{desired}",
    }
    if mode != "Operator":
        fields["desiredReplicas"] = desired
    return fields


def workload_refresh(
    live_status: Mapping[str, Any], workload: WorkloadState, mode: str
) -> tuple[dict[str, Any], tuple[ConditionFlag, ...]]:
    """Status fields and conditions after the Deployment or its pods changed.

    Placement comes from the last reconcile (in status); nothing is re-rendered.
    """
    placement = live_status.get("placement") or {}
    flags = workload_flags(
        workload,
        placement.get("mode", "GPU") != "Unplaceable",
        str(placement.get("reason", "Pending")),
        str(placement.get("message", "")),
    )
    conditions = {c.get("type"): c for c in live_status.get("conditions") or []}
    ready = conditions.get("Ready") or {}
    if ready.get("reason") in VERDICT_REASONS:
        flags = tuple(
            flag for flag in flags if flag.type != "Ready"
        )  # the reconcile's verdict stands
    return workload_fields(workload, mode, workload.desired if workload.exists else None), flags
