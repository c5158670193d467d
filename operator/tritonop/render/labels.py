"""Names, labels and endpoints every child of an InferenceService shares.

Kept in their own module (not in `render/__init__`) so that every renderer, including the
autoscaler renderer and the operator's status code, can import them without import cycles.
"""

from __future__ import annotations

from tritonop import API_VERSION, KIND
from tritonop.api.validation import ParsedService

#: Ports of the Triton container, by the names the Service and probes refer to.
HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PORT = 8002
#: Name of the Triton container in the pod (the Triton emulator and e2e tests look for it).
CONTAINER_NAME = "triton"


def selector_labels(name: str) -> dict[str, str]:
    """The labels that select one InferenceService's pods (Deployment, Service, PDB selectors).

    Deliberately minimal and never changed: a Deployment's selector is immutable, so anything
    added here later would force deleting and recreating every Deployment.
    """
    return {"app.kubernetes.io/name": "triton", "app.kubernetes.io/instance": name}


def standard_labels(name: str) -> dict[str, str]:
    """The labels on every child object and pod: the selector labels plus ownership labels."""
    return {
        **selector_labels(name),
        "app.kubernetes.io/component": "inference-server",
        "app.kubernetes.io/managed-by": "tritonop",
        "app.kubernetes.io/part-of": "tritonop",
        "tritonop.io/inferenceservice": name,
    }


def label_selector_string(name: str) -> str:
    """The pod selector as a label-selector string, for status.selector (the scale subresource)."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector_labels(name).items()))


def service_urls(service: ParsedService, cluster_domain: str) -> tuple[str, str]:
    """In-cluster endpoints: the KServe v2 HTTP URL and the gRPC host:port (no scheme)."""
    host = f"{service.name}.{service.namespace}.svc.{cluster_domain}"
    return f"http://{host}:{HTTP_PORT}", f"{host}:{GRPC_PORT}"


def owner_references(service: ParsedService) -> list[dict[str, object]]:
    """The controller reference to the InferenceService; none when rendering offline (no uid).

    An ownerReference without a real uid would be rejected by the API server, and `tritonop
    render` on a file has none, so offline output simply leaves it out.
    """
    if not service.uid:
        return []
    return [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": service.name,
            "uid": service.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
