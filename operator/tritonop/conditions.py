"""Condition types, condition reasons and Event reasons of an InferenceService, in one place.

Users and tools match on these words (`kubectl wait --for=condition=Ready`, alerts on a reason,
`kubectl get events --field-selector reason=...`), so they are part of the API: a misspelt
literal in one writer would be a silent API change. Every writer names them from here, and a
unit test checks each is one CamelCase word as metav1.Condition requires.

Also here: the lookup of a condition by type. Conditions are a list keyed by type (the CRD
marks it `x-kubernetes-list-type: map`), so code finds one by its type, never by position.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from tritonop.autoscale.types import ConditionFlag

# ------------------------------------------------------------------ condition types

READY: Final = "Ready"
"""The summary: the service serves at its desired replicas (False says why not)."""
AVAILABLE: Final = "Available"
"""At least one Triton replica serves."""
PLACED: Final = "Placed"
"""The pods have (or can get) nodes: placement decided and the scheduler agrees."""
ABLE_TO_SCALE: Final = "AbleToScale"
"""The autoscaler may change replicas now (HPA's condition of the same name)."""
SCALING_ACTIVE: Final = "ScalingActive"
"""The autoscaler has the metrics it needs, or who else scales the service."""
SCALING_LIMITED: Final = "ScalingLimited"
"""The wanted replicas were clamped by minReplicas, maxReplicas or a rate limit."""

CONDITION_ORDER: Final = (READY, AVAILABLE, PLACED, ABLE_TO_SCALE, SCALING_ACTIVE, SCALING_LIMITED)
"""Order of conditions in status, summary first (a stable order keeps writes minimal)."""

# ------------------------------------------------------------------ reasons of Ready, Available, Placed

REPLICAS_READY: Final = "ReplicasReady"
ROLLOUT_IN_PROGRESS: Final = "RolloutInProgress"
MINIMUM_REPLICAS_AVAILABLE: Final = "MinimumReplicasAvailable"
NO_REPLICAS_AVAILABLE: Final = "NoReplicasAvailable"
SCALED_TO_ZERO: Final = "ScaledToZero"
DEPLOYMENT_MISSING: Final = "DeploymentMissing"
PODS_UNSCHEDULABLE: Final = "PodsUnschedulable"
SECRET_NOT_FOUND: Final = "SecretNotFound"
"""Also an Event reason: spec.modelRepository.secretRef names a Secret that does not exist."""
INVALID_SPEC: Final = "InvalidSpec"
"""Also an Event reason: a spec that got past admission but cannot be reconciled."""
PENDING: Final = "Pending"
"""Placed's reason before any reconcile recorded a placement."""

POLICY_VIOLATION: Final = "PolicyViolation"
"""Also an Event reason: the spec asks for what the administrator's policy does not allow."""
RESOURCE_EXISTS: Final = "ResourceExists"
"""Also an Event reason: a child's name is taken by an object this service does not control."""
APPLY_FAILED: Final = "ApplyFailed"
"""Also an Event reason: the API server refused a child (the message is the server's)."""

RECONCILE_VERDICTS: Final = frozenset(
    {SECRET_NOT_FOUND, INVALID_SPEC, POLICY_VIOLATION, RESOURCE_EXISTS, APPLY_FAILED}
)
"""Ready reasons only a reconcile can clear: a Deployment or pod change does not override them."""

# ------------------------------------------------------------------ reasons of ScalingActive set by the reconcile

AUTOSCALING_DISABLED: Final = "AutoscalingDisabled"
DELEGATED_TO_HPA: Final = "DelegatedToHPA"
DELEGATED_TO_KEDA: Final = "DelegatedToKEDA"
KEDA_NOT_INSTALLED: Final = "KEDANotInstalled"
"""Also an Event reason: KEDA mode on a cluster without KEDA's ScaledObject CRD."""
PROMETHEUS_NOT_CONFIGURED: Final = "PrometheusNotConfigured"
"""Also an Event reason: KEDA mode without a Prometheus address for its triggers."""
OBJECTIVE_IGNORED: Final = "ObjectiveIgnored"
"""Also an Event reason: HPA or KEDA mode with spec.autoscaling.objective, which only the
operator's own policy (mode Operator) sizes for; the HPA or ScaledObject scales on the targets."""

# ------------------------------------------------------------------ reasons of the autoscaling policy
# AbleToScale, ScalingActive and ScalingLimited in Operator mode; HPA's words where HPA has one.

READY_FOR_NEW_SCALE: Final = "ReadyForNewScale"
SCALE_UP_STABILIZED: Final = "ScaleUpStabilized"
SCALE_DOWN_STABILIZED: Final = "ScaleDownStabilized"
SCALING_DISABLED: Final = "ScalingDisabled"
VALID_METRICS: Final = "ValidMetrics"
MISSING_METRICS: Final = "MissingMetrics"
INCOMPLETE_METRICS: Final = "IncompleteMetrics"
STALE_METRICS: Final = "StaleMetrics"
INVALID_METRICS: Final = "InvalidMetrics"
"""Also the word of a pod's problem whose page no Triton prints (autoscale/observe.py)."""
FAILED_UPDATE_SCALE: Final = "FailedUpdateScale"
"""AbleToScale=False: the scale (or status) write failed; retried next interval (HPA's word)."""
NO_READY_REPLICAS: Final = "NoReadyReplicas"
DESIRED_WITHIN_RANGE: Final = "DesiredWithinRange"
TOO_MANY_REPLICAS: Final = "TooManyReplicas"
TOO_FEW_REPLICAS: Final = "TooFewReplicas"
SCALE_UP_LIMIT: Final = "ScaleUpLimit"
SCALE_DOWN_LIMIT: Final = "ScaleDownLimit"

# ------------------------------------------------------------------ Event reasons

PLACED_ON_GPU: Final = "PlacedOnGPU"
PLACED_ON_CPU: Final = "PlacedOnCPU"
FELL_BACK_TO_CPU: Final = "FellBackToCPU"
UNPLACEABLE: Final = "Unplaceable"
SCALED_UP: Final = "ScaledUp"
SCALED_DOWN: Final = "ScaledDown"

# ------------------------------------------------------------------ Kubernetes' own pod conditions

POD_READY: Final = "Ready"
POD_SCHEDULED: Final = "PodScheduled"
UNSCHEDULABLE: Final = "Unschedulable"
"""PodScheduled's reason when the scheduler found no node."""


# ------------------------------------------------------------------ lookup by type


def find_condition(status: Mapping[str, Any] | None, type_: str) -> dict[str, Any]:
    """The condition of `type_` in an object's status (an InferenceService's or a pod's).

    An empty mapping when there is none, so callers read `.get("reason")` without a check:
    a missing condition and one without the field read alike.
    """
    for condition in (status or {}).get("conditions") or []:
        if condition.get("type") == type_:
            return dict(condition)
    return {}


def with_condition(flags: Iterable[ConditionFlag], flag: ConditionFlag) -> list[ConditionFlag]:
    """`flags` with `flag` in place of the one of its type (appended when there is none)."""
    result = list(flags)
    for index, existing in enumerate(result):
        if existing.type == flag.type:
            result[index] = flag
            return result
    result.append(flag)
    return result
