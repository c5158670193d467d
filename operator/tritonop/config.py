"""Operator settings: one documented class, read from `TRITONOP_*` environment variables.

The Helm chart sets exactly these variables from its values, so a setting has one name in
the environment (TRITONOP_GPU_FALLBACK), one in values.yaml (gpuFallback) and one here
(gpu_fallback), and its meaning is written once: in the Field description below.
"""

from __future__ import annotations

from typing import Literal

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
    prometheus_url: str = Field(
        default="",
        description="Prometheus server to read Triton's metrics from (e.g. "
        "http://prometheus.monitoring:9090), and the server KEDA triggers query. Empty: the "
        "operator scrapes each ready Triton pod's :8002/metrics itself.",
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

    @field_validator("namespaces")
    @classmethod
    def _strip(cls, value: str) -> str:
        return ",".join(part.strip() for part in value.split(",") if part.strip())

    @property
    def namespace_list(self) -> list[str]:
        """Watched namespaces; empty means clusterwide."""
        return [part for part in self.namespaces.split(",") if part]
