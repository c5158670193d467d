"""Pure rendering: one InferenceService plus a placement decision -> its child objects.

`render_children` is what the operator applies: the Triton Deployment, its Service and its
PodDisruptionBudget (`render_workload`), followed by the autoscaler objects of the service's
mode (HPA or KEDA ScaledObject, from `render.autoscaling`). The output is plain dicts in a
fixed order with deterministic key order, so rendering the same input twice gives equal
objects and equal YAML bytes.

Modules of this package (render.autoscaling included) import shared helpers from
`render.labels` and `render.templating`, never from `tritonop.render` itself, which is still
initialising while they load.
"""

from __future__ import annotations

from typing import Any

from tritonop.api.validation import ParsedService
from tritonop.config import Settings
from tritonop.placement import Placement
from tritonop.render.autoscaling import render_autoscaler
from tritonop.render.labels import (
    CONTAINER_NAME,
    GRPC_PORT,
    HTTP_PORT,
    METRICS_PORT,
    label_selector_string,
    owner_references,
    selector_labels,
    service_urls,
    standard_labels,
)
from tritonop.render.lockdown import render_admin_secret, render_network_policy
from tritonop.render.templating import manifests_to_yaml, render_manifest, to_yaml_flow
from tritonop.render.workload import (
    render_deployment,
    render_pod_disruption_budget,
    render_service,
)

__all__ = [
    "CONTAINER_NAME",
    "GRPC_PORT",
    "HTTP_PORT",
    "METRICS_PORT",
    "label_selector_string",
    "manifests_to_yaml",
    "owner_references",
    "render_access",
    "render_children",
    "render_manifest",
    "render_workload",
    "selector_labels",
    "service_urls",
    "standard_labels",
    "to_yaml_flow",
]


def render_workload(
    service: ParsedService,
    placement: Placement,
    settings: Settings,
    *,
    replicas: int | None,
    secret_version: str | None = None,
) -> list[dict[str, Any]]:
    """[Deployment, Service, PodDisruptionBudget] for one InferenceService.

    `replicas=None` leaves Deployment spec.replicas out, for HPA and KEDA modes where another
    controller owns it; `secret_version` (the credentials Secret's resourceVersion, which says nothing about its data) becomes a pod
    annotation so that a changed Secret rolls the pods.
    """
    return [
        render_deployment(
            service, placement, settings, replicas=replicas, secret_version=secret_version
        ),
        render_service(service),
        render_pod_disruption_budget(service),
    ]


def render_access(
    service: ParsedService, settings: Settings, *, admin_key: str | None
) -> list[dict[str, Any]]:
    """[admin Secret, NetworkPolicy]: who may use the service's Triton, and how.

    Applied before the Deployment, so that no pod starts without its key or unisolated. The
    Secret is left out when `admin_key` is None (offline rendering: the operator generates
    the key in the cluster); the NetworkPolicy when the operator's settings turn it off.
    """
    access = [render_admin_secret(service, admin_key)] if admin_key is not None else []
    if settings.network_policy:
        access.append(render_network_policy(service, settings))
    return access


def render_children(
    service: ParsedService,
    placement: Placement,
    settings: Settings,
    *,
    replicas: int | None,
    secret_version: str | None = None,
    admin_key: str | None = None,
) -> list[dict[str, Any]]:
    """Every child the operator applies: access, the workload, then the mode's autoscaler."""
    return [
        *render_access(service, settings, admin_key=admin_key),
        *render_workload(
            service, placement, settings, replicas=replicas, secret_version=secret_version
        ),
        *render_autoscaler(service, settings),
    ]
