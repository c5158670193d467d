"""The administrator's policy: what a tenant's InferenceService may ask for beyond Triton itself.

RBAC lets a tenant create InferenceServices; the operator, not the tenant, then creates the
Service and the pods. Without a policy that would hand every tenant powers their own RBAC may
deny them: a LoadBalancer or NodePort Service (a public address), any Service annotation
(external DNS names, cloud load-balancer settings) and any image. The chart's `policy` values
set the allowed Service types, Service annotation prefixes and image prefixes
(TRITONOP_ALLOWED_*); a service outside them is not applied and reports Ready=False with
reason PolicyViolation, naming what is refused and what is allowed.

Pure: settings and a spec in, problems out.
"""

from __future__ import annotations

from tritonop.api.models import InferenceServiceSpec
from tritonop.config import Settings

#: A policy entry that allows everything.
ANY = "*"


def _allowed(value: str, prefixes: list[str]) -> bool:
    return any(prefix == ANY or value.startswith(prefix) for prefix in prefixes)


def _listed(entries: list[str]) -> str:
    return ", ".join(entries) if entries else "none"


def policy_violations(spec: InferenceServiceSpec, settings: Settings) -> list[str]:
    """What in `spec` the operator's policy refuses, one line each; empty when allowed."""
    problems: list[str] = []
    types = settings.allowed_service_type_list
    if spec.service.type not in types and ANY not in types:
        problems.append(
            f"spec.service.type {spec.service.type} is not allowed in this cluster (allowed: "
            f"{_listed(types)}); use ClusterIP, or ask the cluster administrator"
        )
    prefixes = settings.allowed_service_annotation_prefix_list
    refused = sorted(key for key in spec.service.annotations if not _allowed(key, prefixes))
    if refused:
        problems.append(
            f"spec.service.annotations {', '.join(refused)} not allowed in this cluster "
            f"(allowed prefixes: {_listed(prefixes)}); remove them, or ask the cluster "
            "administrator"
        )
    images = settings.allowed_image_prefix_list
    image = spec.image
    if image is not None and image != settings.default_image and not _allowed(image, images):
        problems.append(
            f"spec.image {image} is not allowed in this cluster (allowed prefixes: "
            f"{_listed(images)}); remove spec.image to use the default "
            f"{settings.default_image}, or ask the cluster administrator"
        )
    return problems
