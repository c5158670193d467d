"""Operator settings: one documented class, read from `TRITONOP_*` environment variables.

The Helm chart sets exactly these variables from its values, so a setting has one name in
the environment (TRITONOP_GPU_FALLBACK), one in values.yaml (gpuFallback) and one here
(gpu_fallback), and its meaning is written once: in the Field description below.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator deployment can tune. Defaults suit a single-replica install."""

    model_config = SettingsConfigDict(env_prefix="TRITONOP_", frozen=True, extra="ignore")

    default_image: str = Field(
        default="nvcr.io/nvidia/tritonserver:25.01-py3",
        description="Triton image for InferenceServices that do not set spec.image.",
    )
    gpu_fallback: Literal["None", "CPU"] = Field(
        default="None",
        description="Default of spec.gpu.fallback: CPU runs services without GPUs when no node "
        "can ever host their GPU request; None keeps them Pending.",
    )
    namespaces: str = Field(
        default="",
        description="Comma-separated namespaces to watch; empty watches the whole cluster.",
    )
    listen_address: str = Field(
        default="0.0.0.0",
        description="Address the metrics and health endpoints bind to (127.0.0.1 keeps them local).",
    )
    metrics_port: int = Field(
        default=9090, description="Port of the operator's Prometheus /metrics."
    )
    health_port: int = Field(
        default=8080, description="Port of the operator's liveness endpoint /healthz."
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log format: text or json."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level."
    )
    metrics_token_file: str = Field(
        default="",
        description="File holding a bearer token that every request to the operator's /metrics "
        "must present (Authorization: Bearer TOKEN); /metrics names every tenant's services. "
        "Empty: /metrics is served without authentication (bind it to 127.0.0.1 with "
        "TRITONOP_LISTEN_ADDRESS to keep it inside the pod).",
    )
    prometheus_url: str = Field(
        default="",
        description="Prometheus server to read Triton's metrics from (e.g. "
        "http://prometheus.monitoring:9090), and the server KEDA triggers query. Empty: the "
        "operator scrapes each ready Triton pod's :8002/metrics itself. It may not carry "
        "credentials (user:password@ or a query string): KEDA mode copies it into every "
        "tenant's ScaledObject.",
    )
    autoscale_interval_seconds: float = Field(
        default=5.0,
        gt=0.5,
        le=300,
        description="How often Operator-mode autoscaling reads metrics and decides.",
    )
    scrape_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        le=30,
        description="Deadline of one service's metrics reads: every ready pod's page fetched "
        "and parsed within it, or reported as timed out.",
    )
    scrape_concurrency: int = Field(
        default=16, ge=1, le=256, description="Metrics requests in flight at once, across all pods."
    )
    kube_api_qps: float = Field(
        default=100.0,
        ge=0,
        description="Requests per second the operator sends the API server on average "
        "(client-side limit, as client-go's --kube-api-qps); 0 removes the limit.",
    )
    kube_api_burst: int = Field(
        default=200,
        ge=1,
        description="Requests the operator may send at once above kube_api_qps after a quiet "
        "spell (as client-go's --kube-api-burst).",
    )
    scrape_max_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=64 * 1024,
        le=64 * 1024 * 1024,
        description="Largest Triton metrics page read, in bytes (Triton prints a few KiB per "
        "model); a larger page is the pod's MetricsTooLarge problem.",
    )
    triton_run_as_user: int = Field(
        default=1000,
        ge=0,
        description="UID the Triton container runs as (1000 is the NGC image's triton-server user); "
        "0 disables the restricted security context for images that need root.",
    )
    cluster_domain: str = Field(default="cluster.local", description="DNS domain for status.url.")
    resync_interval_seconds: float = Field(
        default=300.0,
        ge=10,
        le=86400,
        description="How often every InferenceService is reconciled even when no event came: it "
        "repairs drift and lost events (a child deleted while the API server failed, a rotated "
        "credentials Secret) and writes nothing when nothing changed. Also the longest wait "
        "between retries of a failing service (5 s, doubling up to this).",
    )
    network_policy: bool = Field(
        default=True,
        description="Give every InferenceService a NetworkPolicy: its HTTP and gRPC ports admit "
        "pods of its own namespace and pods labelled tritonop.io/inference-client=true in "
        "namespaces labelled the same; its metrics port admits the operator and Prometheus.",
    )
    operator_namespace: str = Field(
        default="tritonop-system",
        description="Namespace the operator runs in: its pods may scrape Triton's metrics port "
        "through the NetworkPolicy (the chart sets it).",
    )
    prometheus_namespace: str = Field(
        default="monitoring",
        description="Namespace of the Prometheus that scrapes Triton's metrics port (for the "
        "NetworkPolicy).",
    )
    prometheus_pod_labels: str = Field(
        default="app.kubernetes.io/name=prometheus",
        description="Labels of the Prometheus pods that scrape Triton's metrics port, as "
        "key=value[,key=value] (for the NetworkPolicy).",
    )
    allowed_service_types: str = Field(
        default="ClusterIP",
        description="Comma-separated Service types an InferenceService may ask for "
        "(ClusterIP, NodePort, LoadBalancer); others are refused with PolicyViolation.",
    )
    allowed_service_annotation_prefixes: str = Field(
        default="",
        description="Comma-separated prefixes of the Service annotations an InferenceService may "
        "set (e.g. service.beta.kubernetes.io/); * allows any. Empty: none.",
    )
    allowed_image_prefixes: str = Field(
        default="nvcr.io/nvidia/tritonserver:,nvcr.io/nvidia/tritonserver@",
        description="Comma-separated prefixes of the images an InferenceService may name in "
        "spec.image; * allows any. The default image is always allowed.",
    )
    peering: str = Field(
        default="",
        description="kopf peering name: set when several operator replicas run, so exactly one "
        "is active. Empty: standalone (no peering objects needed).",
    )

    peering_priority: int = Field(
        default=0,
        ge=0,
        description="kopf peering priority of this replica; the highest active replica works, "
        "the others stand by. 0 picks a random priority at start, so replicas never tie (kopf "
        "freezes every replica of a tied priority).",
    )
    peering_lifetime_seconds: int = Field(
        default=30,
        ge=5,
        le=600,
        description="How long a replica's peering record lives without renewal: the bound on "
        "how long a standby waits after the active replica crashed (a clean stop hands over at once).",
    )

    @field_validator(
        "namespaces",
        "allowed_service_types",
        "allowed_service_annotation_prefixes",
        "allowed_image_prefixes",
        "prometheus_pod_labels",
    )
    @classmethod
    def _strip(cls, value: str) -> str:
        return ",".join(part.strip() for part in value.split(",") if part.strip())

    @field_validator("prometheus_url")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None or parts.query:
            raise ValueError(
                "TRITONOP_PROMETHEUS_URL may not carry credentials (user:password@ or a query "
                "string): KEDA mode copies the address into every tenant's ScaledObject, where "
                "anyone who can read the namespace sees it. Give the operator an address that "
                "needs no credentials, e.g. an authenticating proxy inside the cluster."
            )
        return value

    @field_validator("prometheus_pod_labels")
    @classmethod
    def _labels(cls, value: str) -> str:
        for pair in filter(None, value.split(",")):
            key, equals, _ = pair.partition("=")
            if not equals or not key.strip():
                raise ValueError(f"expected key=value[,key=value], got {value!r}")
        return value

    @property
    def namespace_list(self) -> list[str]:
        """Watched namespaces; empty means clusterwide."""
        return _items(self.namespaces)

    @property
    def allowed_service_type_list(self) -> list[str]:
        """allowed_service_types as a list."""
        return _items(self.allowed_service_types)

    @property
    def allowed_service_annotation_prefix_list(self) -> list[str]:
        """allowed_service_annotation_prefixes as a list."""
        return _items(self.allowed_service_annotation_prefixes)

    @property
    def allowed_image_prefix_list(self) -> list[str]:
        """allowed_image_prefixes as a list."""
        return _items(self.allowed_image_prefixes)

    @property
    def prometheus_pod_label_map(self) -> dict[str, str]:
        """prometheus_pod_labels as a label mapping."""
        pairs = (pair.partition("=") for pair in _items(self.prometheus_pod_labels))
        return {key.strip(): value.strip() for key, _, value in pairs}


def _items(value: str) -> list[str]:
    """The entries of a comma-separated setting (already stripped by its validator)."""
    return [part for part in value.split(",") if part]
