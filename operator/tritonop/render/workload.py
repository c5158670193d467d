"""Triton's Deployment, Service and PodDisruptionBudget for one InferenceService.

Python decides *what* goes into the objects (arguments, merged scheduling constraints,
resources, security context); the templates in operator/tritonop/templates decide *where* it
goes. Every function here is pure and deterministic: the same service, placement and settings
give dicts that are equal key order and all, so a reconcile that changes nothing is visible as
"rendered == last applied" and writes nothing.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from tritonop.api.models import InferenceServiceSpec
from tritonop.api.validation import ParsedService
from tritonop.config import Settings
from tritonop.placement import (
    Placement,
    gpu_pod_tolerations,
    product_expression,
    user_tolerations,
)
from tritonop.render.labels import (
    CONTAINER_NAME,
    GRPC_PORT,
    HTTP_PORT,
    METRICS_PORT,
    owner_references,
    selector_labels,
    standard_labels,
)
from tritonop.render.lockdown import admin_key_env, restricted_api_args
from tritonop.render.templating import render_manifest

#: Where a pvc:// repository is mounted inside the container.
MODELS_MOUNT_PATH = "/models"
#: Pod annotation whose value changes when the credentials Secret changes, rolling the pods: its
#: resourceVersion, which reveals nothing about the data (a digest of the data would, to anyone
#: who can read the Deployment and guess candidate credentials).
SECRET_VERSION_ANNOTATION = "tritonop.io/secret-version"
#: Pod annotation recording the placement mode the pod was rendered for (for `kubectl describe`).
PLACEMENT_ANNOTATION = "tritonop.io/placement"
#: Period of the startup probe; failureThreshold is derived from spec.triton.startupTimeoutSeconds.
STARTUP_PROBE_PERIOD_SECONDS = 10
#: Added to the startup timeout for the rollout's progress deadline: pulling a multi-gigabyte
#: Triton image onto a fresh node takes minutes before the model load even starts.
IMAGE_PULL_ALLOWANCE_SECONDS = 600


def places_gpus(spec: InferenceServiceSpec, placement: Placement) -> bool:
    """Whether the pods get GPU limits, product affinity and the GPU toleration."""
    return placement.uses_gpu and spec.gpu.count > 0


def model_repository_path(spec: InferenceServiceSpec) -> str:
    """--model-repository: the object-store URI as written, or the claim's mount point.

    A pvc:// sub path is mounted with subPath, so inside the container the repository is
    always at /models, whatever the path inside the claim.
    """
    if spec.model_repository.pvc_claim is not None:
        return MODELS_MOUNT_PATH
    return spec.model_repository.uri


#: Seconds the pod keeps serving after Kubernetes marks it terminating, before Triton gets
#: SIGTERM (a preStop pause): endpoint controllers, kube-proxy and L7 proxies take seconds to
#: stop sending it requests, and a Triton that stopped accepting already would fail them.
PRESTOP_PAUSE_SECONDS = 10
#: tritonserver's --exit-timeout-secs when the user's arguments do not set it: how long it
#: finishes the requests it holds after SIGTERM.
TRITON_EXIT_TIMEOUT_SECONDS = 30
#: Beyond the pause and the exit timeout, before the kubelet's SIGKILL: process exit, log flush.
TERMINATION_MARGIN_SECONDS = 20


def triton_exit_timeout(args: list[str]) -> int:
    """The exit timeout tritonserver runs with: the user's last --exit-timeout-secs, else its
    default. A value that is not a whole number is tritonserver's to refuse; it counts as the
    default here."""
    timeout = TRITON_EXIT_TIMEOUT_SECONDS
    for index, arg in enumerate(args):
        value = None
        if arg.startswith("--exit-timeout-secs="):
            value = arg.split("=", 1)[1]
        elif arg == "--exit-timeout-secs" and index + 1 < len(args):
            value = args[index + 1]
        if value is not None and value.strip().isdigit():
            timeout = int(value)
    return timeout


def termination_grace_seconds(spec: InferenceServiceSpec) -> int:
    """terminationGracePeriodSeconds: the preStop pause, then Triton's exit timeout to finish
    what it holds, then a margin; the grace period counts from the deletion, pause included.
    60 s with Triton's defaults."""
    return (
        PRESTOP_PAUSE_SECONDS + triton_exit_timeout(spec.triton.args) + TERMINATION_MARGIN_SECONDS
    )


def _flag(value: bool) -> str:
    return "true" if value else "false"


def triton_args(spec: InferenceServiceSpec, gpu: bool) -> list[str]:
    """tritonserver's arguments: fixed ports and metrics, the administrative APIs behind the
    admin key, model control, then the user's last.

    The user's arguments come last so that, where tritonserver lets a later flag win, the user
    can override what the operator sets (the API refuses their own restricted-API flags:
    Triton refuses an API named in two restriction groups).
    """
    args = [
        f"--model-repository={model_repository_path(spec)}",
        f"--http-port={HTTP_PORT}",
        f"--grpc-port={GRPC_PORT}",
        f"--metrics-port={METRICS_PORT}",
        "--allow-metrics=true",
        f"--allow-gpu-metrics={_flag(gpu)}",
        f"--strict-readiness={_flag(spec.triton.strict_readiness)}",
        *restricted_api_args(),
    ]
    if spec.models:
        args.append("--model-control-mode=explicit")
        args.extend(f"--load-model={model}" for model in spec.models)
    args.extend(spec.triton.args)
    return args


def container_resources(spec: InferenceServiceSpec, gpu: bool) -> dict[str, dict[str, str]]:
    """spec.resources with the GPU limit merged in on GPU placement, keys sorted.

    GPUs go in limits only: Kubernetes defaults an extended resource's request to its limit.
    A GPU resource the user put in spec.resources is dropped, so a CPU-fallback pod never
    asks for the GPU it was moved off.
    """
    gpu_name = spec.gpu.resource_name
    requests = {k: str(v) for k, v in spec.resources.requests.items() if k != gpu_name}
    limits = {k: str(v) for k, v in spec.resources.limits.items() if k != gpu_name}
    if gpu:
        limits[gpu_name] = str(spec.gpu.count)
    resources: dict[str, dict[str, str]] = {}
    if requests:
        resources["requests"] = dict(sorted(requests.items()))
    if limits:
        resources["limits"] = dict(sorted(limits.items()))
    return resources


def merge_gpu_affinity(affinity: Mapping[str, Any], products: list[str]) -> dict[str, Any]:
    """The user's affinity with the GPU product requirement ANDed into its required node terms.

    Required node selector terms are ORed by the scheduler, so the product expression is added
    to every term (A or B becomes (A and P) or (B and P)); without user terms it becomes the
    only term. Preferred terms and pod (anti-)affinity are left exactly as written.
    """
    merged: dict[str, Any] = copy.deepcopy(dict(affinity))
    if not products:
        return merged
    expression = product_expression(products)
    node_affinity = merged.setdefault("nodeAffinity", {})
    if not isinstance(node_affinity, dict):
        return merged  # malformed (the CRD keeps affinity free-form): the API server will say so
    required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    if not isinstance(required, dict):
        return merged
    terms = required.get("nodeSelectorTerms")
    if not isinstance(terms, list) or not terms:
        required["nodeSelectorTerms"] = [{"matchExpressions": [expression]}]
        return merged
    for term in terms:
        if not isinstance(term, dict):
            continue
        expressions = term.setdefault("matchExpressions", [])
        if isinstance(expressions, list) and expression not in expressions:
            expressions.append(copy.deepcopy(expression))
    return merged


def pod_security_context(settings: Settings) -> dict[str, Any]:
    """Restricted pod security when Triton runs as a non-root uid; seccomp either way."""
    uid = settings.triton_run_as_user
    context: dict[str, Any] = {}
    if uid > 0:
        context.update({"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid})
    context["seccompProfile"] = {"type": "RuntimeDefault"}
    return context


def container_security_context() -> dict[str, Any]:
    """No privilege escalation, no capabilities; the root filesystem stays writable for Triton."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": False,  # Triton and its backends write to /tmp and $HOME
        "capabilities": {"drop": ["ALL"]},
    }


def _volumes(spec: InferenceServiceSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and the Triton container's mounts: /dev/shm, and the claim for pvc://."""
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": str(spec.triton.shm_size)}}
    ]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    claim = spec.model_repository.pvc_claim
    if claim is not None:
        volumes.append(
            {
                "name": "model-repository",
                "persistentVolumeClaim": {"claimName": claim, "readOnly": True},
            }
        )
        mount: dict[str, Any] = {
            "name": "model-repository",
            "mountPath": MODELS_MOUNT_PATH,
            "readOnly": True,
        }
        if spec.model_repository.pvc_sub_path:
            mount["subPath"] = spec.model_repository.pvc_sub_path
        mounts.append(mount)
    return volumes, mounts


def deployment_context(
    service: ParsedService,
    placement: Placement,
    settings: Settings,
    *,
    replicas: int | None,
    secret_version: str | None,
) -> dict[str, Any]:
    """Everything deployment.yaml.j2 needs, as plain data."""
    spec = service.spec
    gpu = places_gpus(spec, placement)
    # No prometheus.io/* scrape annotations: under a shared honor_labels scrape job they let any
    # pod publish series labelled as another namespace's pods. The chart's PodMonitor is the
    # way to scrape Triton (README, "Security").
    pod_annotations: dict[str, str] = {PLACEMENT_ANNOTATION: placement.mode}
    if secret_version:
        pod_annotations[SECRET_VERSION_ANNOTATION] = secret_version
    volumes, mounts = _volumes(spec)
    secret = spec.model_repository.secret_ref
    return {
        "name": service.name,
        "namespace": service.namespace,
        "labels": standard_labels(service.name),
        "selector": selector_labels(service.name),
        "owner_references": owner_references(service),
        "replicas": replicas,
        "pod_annotations": pod_annotations,
        "pod_security_context": pod_security_context(settings),
        "container_security_context": container_security_context(),
        "container_name": CONTAINER_NAME,
        "image": spec.image or settings.default_image,
        "args": triton_args(spec, gpu),
        "ports": {"http": HTTP_PORT, "grpc": GRPC_PORT, "metrics": METRICS_PORT},
        "env": admin_key_env(service.name),
        "env_from": [{"secretRef": {"name": secret.name}}] if secret is not None else [],
        "resources": container_resources(spec, gpu),
        "volumes": volumes,
        "volume_mounts": mounts,
        "node_selector": dict(sorted(spec.node_selector.items())),
        "tolerations": gpu_pod_tolerations(spec) if gpu else user_tolerations(spec),
        "affinity": merge_gpu_affinity(spec.affinity.manifest(), spec.gpu.products if gpu else []),
        # Kubernetes' default (600 s) is shorter than a default model load (900 s): without
        # this a slow but healthy rollout would be reported as ProgressDeadlineExceeded.
        "progress_deadline_seconds": spec.triton.startup_timeout_seconds
        + IMAGE_PULL_ALLOWANCE_SECONDS,
        "termination_grace_seconds": termination_grace_seconds(spec),
        "prestop_pause_seconds": PRESTOP_PAUSE_SECONDS,
        "startup_period_seconds": STARTUP_PROBE_PERIOD_SECONDS,
        "startup_failure_threshold": math.ceil(
            spec.triton.startup_timeout_seconds / STARTUP_PROBE_PERIOD_SECONDS
        ),
    }


def render_deployment(
    service: ParsedService,
    placement: Placement,
    settings: Settings,
    *,
    replicas: int | None,
    secret_version: str | None = None,
) -> dict[str, Any]:
    """Triton's Deployment (apps/v1)."""
    context = deployment_context(
        service, placement, settings, replicas=replicas, secret_version=secret_version
    )
    return render_manifest("deployment.yaml.j2", context)


def render_service(service: ParsedService) -> dict[str, Any]:
    """The Service in front of the Triton pods (v1)."""
    return render_manifest(
        "service.yaml.j2",
        {
            "name": service.name,
            "namespace": service.namespace,
            "labels": standard_labels(service.name),
            "annotations": dict(sorted(service.spec.service.annotations.items())),
            "owner_references": owner_references(service),
            "type": service.spec.service.type,
            "selector": selector_labels(service.name),
            "ports": {"http": HTTP_PORT, "grpc": GRPC_PORT, "metrics": METRICS_PORT},
        },
    )


def render_pod_disruption_budget(service: ParsedService) -> dict[str, Any]:
    """The PodDisruptionBudget (policy/v1) limiting voluntary evictions."""
    return render_manifest(
        "pdb.yaml.j2",
        {
            "name": service.name,
            "namespace": service.namespace,
            "labels": standard_labels(service.name),
            "owner_references": owner_references(service),
            "max_unavailable": service.spec.disruption.max_unavailable,
            "selector": selector_labels(service.name),
        },
    )
