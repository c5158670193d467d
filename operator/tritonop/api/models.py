"""pydantic models of the InferenceService API (`tritonop.io/v1alpha1`).

These models are the single source of truth for the API: the operator validates specs with
them, `tritonop render` uses them offline, and `api.crd` turns them into the CRD's OpenAPI
schema. Every field therefore carries a description (it becomes `kubectl explain` text), and
every rule the API server enforces through CEL is mirrored by a validator here with the same
message, so a spec rejected at admission is rejected in the same words by `tritonop render`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

#: Kubernetes resource.Quantity in its canonical string forms ("500m", "1.5", "16Gi", "1e3").
QUANTITY_PATTERN = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
#: The repository schemes Triton itself can read, plus pvc:// for a mounted claim.
REPOSITORY_URI_PATTERN = r"^(s3|gs|as|pvc)://.+"
#: A Kubernetes extended resource name such as nvidia.com/gpu or nvidia.com/mig-1g.10gb.
RESOURCE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
#: metav1.Condition's reason format.
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
#: DNS-1035 label: what a Service name (and so an InferenceService name) must be.
DNS1035_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
MAX_NAME_LENGTH = 52  # leaves room for the "-xxxxxxxxxx-xxxxx" suffixes of pod names

Quantity = Annotated[
    str | int | float,
    Field(json_schema_extra={"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN}),
]


def _check_quantity(value: str | int | float, where: str) -> str:
    """Validate a Kubernetes quantity and return its string form (how the API server keeps it)."""
    if isinstance(value, bool):
        raise ValueError(f"{where} must be a quantity such as '2', '500m' or '16Gi', not {value!r}")
    text = str(value)
    if not re.match(QUANTITY_PATTERN, text):
        raise ValueError(
            f"{where} must be a Kubernetes quantity such as '2', '500m' or '16Gi'; got {text!r}"
        )
    return text


class APIModel(BaseModel):
    """Base of all API models: camelCase on the wire, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=False,
    )


# --------------------------------------------------------------------------------------------
# spec
# --------------------------------------------------------------------------------------------


class SecretReference(APIModel):
    """A Secret in the InferenceService's namespace."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(
        description="Name of the Secret, in the same namespace as the InferenceService.",
    )


class ModelRepository(APIModel):
    """Where Triton loads models from."""

    uri: str = Field(
        description=(
            "Model repository location. s3://bucket/path, gs://bucket/path and "
            "as://account/container/path are read by Triton itself (credentials from secretRef); "
            "pvc://CLAIM[/sub/path] mounts a PersistentVolumeClaim read-only at /models."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.matches('" + REPOSITORY_URI_PATTERN + "')",
                    "message": "must start with s3://, gs://, as:// or pvc:// "
                    "followed by a location, e.g. s3://bucket/models or pvc://models-claim",
                }
            ]
        },
    )
    secret_ref: SecretReference | None = Field(
        default=None,
        description=(
            "Secret whose keys become environment variables of the Triton container, for cloud "
            "storage credentials (e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION "
            "for s3://; GOOGLE_APPLICATION_CREDENTIALS for gs://; AZURE_STORAGE_ACCOUNT and "
            "AZURE_STORAGE_KEY for as://). A change of the Secret rolls the pods."
        ),
    )

    @field_validator("uri")
    @classmethod
    def _scheme(cls, uri: str) -> str:
        if not re.match(REPOSITORY_URI_PATTERN, uri):
            raise ValueError(
                "must start with s3://, gs://, as:// or pvc:// followed by a location, "
                f"e.g. s3://bucket/models or pvc://models-claim; got {uri!r}"
            )
        if uri.startswith("pvc://"):
            claim = uri.removeprefix("pvc://").split("/", 1)[0]
            if not re.match(DNS1123_SUBDOMAIN_PATTERN, claim):
                raise ValueError(
                    f"pvc:// must be followed by a PersistentVolumeClaim name; got {claim!r}"
                )
        return uri

    @property
    def pvc_claim(self) -> str | None:
        """The claim name of a pvc:// repository, None for object storage."""
        if not self.uri.startswith("pvc://"):
            return None
        return self.uri.removeprefix("pvc://").split("/", 1)[0]

    @property
    def pvc_sub_path(self) -> str:
        """The path inside the claim of a pvc:// repository ("" for its root)."""
        rest = self.uri.removeprefix("pvc://").split("/", 1)
        return rest[1].strip("/") if len(rest) == 2 else ""


class ResourceRequirements(APIModel):
    """Compute resources of the Triton container (GPUs are set by `gpu`, not here)."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict,
        description="Minimum resources, e.g. {cpu: '2', memory: 8Gi}.",
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict,
        description="Maximum resources, e.g. {memory: 16Gi}. GPU limits come from gpu.count.",
    )

    @field_validator("requests", "limits")
    @classmethod
    def _quantities(cls, values: dict[str, Any]) -> dict[str, str]:
        return {
            name: _check_quantity(v, f"resources quantity {name!r}") for name, v in values.items()
        }


GPUFallback = Literal["None", "CPU"]


class GPU(APIModel):
    """GPUs per Triton replica, and what to do when no node can ever provide them."""

    count: int = Field(
        default=1,
        description="GPUs (or MIG slices) per replica. 0 makes a CPU-only service.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self >= 0", "message": "must be 0 (CPU only) or a positive GPU count"}
            ]
        },
    )
    resource_name: str = Field(
        default="nvidia.com/gpu",
        pattern=RESOURCE_NAME_PATTERN,
        description=(
            "Extended resource to request: nvidia.com/gpu, or a MIG profile such as "
            "nvidia.com/mig-1g.10gb when the GPU operator runs the mixed MIG strategy."
        ),
    )
    products: list[Annotated[str, StringConstraints(min_length=1, max_length=63)]] = Field(
        default_factory=list,
        description=(
            "Acceptable GPU models, matched against the node label nvidia.com/gpu.product "
            "(set by GPU feature discovery), e.g. [NVIDIA-H100-80GB-HBM3]. Empty: any GPU."
        ),
    )
    fallback: GPUFallback | None = Field(
        default=None,
        description=(
            "What to do when no node in the cluster can ever host the GPU request: None keeps the "
            "pods Pending (and says so in status), CPU runs the same Triton image without GPUs. "
            "Unset: the operator's default (TRITONOP_GPU_FALLBACK)."
        ),
    )

    @field_validator("count")
    @classmethod
    def _count(cls, count: int) -> int:
        if count < 0:
            raise ValueError("must be 0 (CPU only) or a positive GPU count")
        return count

    @model_validator(mode="after")
    def _products_need_gpus(self) -> GPU:
        if self.count == 0 and self.products:
            raise ValueError("products requires count > 0; remove products or set count")
        return self


class Toleration(APIModel):
    """A pod toleration (core/v1 Toleration)."""

    key: str | None = Field(
        default=None, description="Taint key to tolerate; empty with Exists matches all."
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (default Equal)."
    )
    value: str | None = Field(default=None, description="Taint value for the Equal operator.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None,
        description="For NoExecute: how long the pod stays bound after the taint appears.",
    )


class Targets(APIModel):
    """Per-replica targets the autoscaler keeps Triton's own signals at."""

    queue_depth: float | None = Field(
        default=None,
        description=(
            "Target average pending requests per ready replica "
            "(Triton's nv_inference_pending_request_count)."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self > 0.0", "message": "must be greater than 0"}
            ]
        },
    )
    queue_time_ms: float | None = Field(
        default=None,
        description=(
            "Target average time a request waits in Triton's queue, in milliseconds "
            "(rate of nv_inference_queue_duration_us over rate of nv_inference_request_success)."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self > 0.0", "message": "must be greater than 0"}
            ]
        },
    )

    @field_validator("queue_depth", "queue_time_ms")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be greater than 0")
        return value


class Objective(APIModel):
    """A latency objective: Operator mode chooses its own headroom to meet it at lowest cost."""

    latency_ms: float = Field(
        description=(
            "Request latency (queue + compute) the service promises, in milliseconds (> 0)."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self > 0.0", "message": "must be greater than 0"}
            ]
        },
    )
    attainment: float = Field(
        description=(
            "Fraction of requests that must meet latencyMs, strictly between 0 and 1 (e.g. 0.99)."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self > 0.0 && self < 1.0",
                    "message": "must be between 0 and 1 (exclusive), e.g. 0.99",
                }
            ]
        },
    )

    @field_validator("latency_ms")
    @classmethod
    def _positive_latency(cls, value: float) -> float:
        if not value > 0:
            raise ValueError("must be greater than 0")
        return value

    @field_validator("attainment")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError("must be between 0 and 1 (exclusive), e.g. 0.99")
        return value


class ScalingPolicy(APIModel):
    """One rate limit on scaling, as in HPA v2's HPAScalingPolicy."""

    type: Literal["Pods", "Percent"] = Field(
        description="Pods: at most `value` pods per period; Percent: at most `value`% of current."
    )
    value: Annotated[int, Field(gt=0)] = Field(
        description="Amount of change allowed per period (> 0)."
    )
    period_seconds: Annotated[int, Field(gt=0, le=1800)] = Field(
        description="Length of the window the limit applies to, in seconds (1..1800)."
    )


class ScalingRules(APIModel):
    """Behavior in one direction, as in HPA v2's HPAScalingRules."""

    stabilization_window_seconds: Annotated[int, Field(ge=0, le=3600)] | None = Field(
        default=None,
        description=(
            "Use the highest (scale down) or lowest (scale up) recommendation of this many past "
            "seconds, to avoid flapping. Unset: 0 for scaleUp; for scaleDown 60 in Operator "
            "mode, Kubernetes' 300 in HPA and KEDA modes."
        ),
    )
    select_policy: Literal["Max", "Min", "Disabled"] | None = Field(
        default=None,
        description="Which policy wins when several apply: Max (default), Min, or Disabled (no scaling).",
    )
    policies: list[ScalingPolicy] | None = Field(
        default=None,
        description="Rate limits. Unset: HPA's defaults for the direction.",
    )


class Behavior(APIModel):
    """Scaling behavior per direction (HPA v2 shape)."""

    scale_up: ScalingRules | None = Field(default=None, description="Rules for scaling up.")
    scale_down: ScalingRules | None = Field(default=None, description="Rules for scaling down.")


class Panic(APIModel):
    """Knative-style panic mode: scale up at once on a burst the normal window would smooth away."""

    window_seconds: Annotated[int, Field(ge=1, le=300)] = Field(
        default=6, description="Length of the short window that detects a burst, in seconds."
    )
    threshold: Annotated[float, Field(gt=1.0, le=10.0)] = Field(
        default=2.0,
        description=(
            "Enter panic mode when the short window shows this multiple of what the ready "
            "replicas can carry at their targets (2.0 = twice the target)."
        ),
    )


AutoscalingMode = Literal["Operator", "HPA", "KEDA", "None"]


class Autoscaling(APIModel):
    """Autoscaling on Triton's queue depth and queue time."""

    mode: AutoscalingMode = Field(
        default="Operator",
        description=(
            "Operator: tritonop reads Triton's metrics and scales the Deployment. HPA: render a "
            "HorizontalPodAutoscaler on prometheus-adapter metrics. KEDA: render a KEDA ScaledObject "
            "with Prometheus triggers. None: replicas come from spec.replicas."
        ),
    )
    min_replicas: Annotated[int, Field(ge=0)] = Field(
        default=1, description="Lower bound of replicas (>= 0; 0 only in KEDA mode)."
    )
    max_replicas: Annotated[int, Field(ge=1)] = Field(
        default=8, description="Upper bound of replicas."
    )
    targets: Targets = Field(
        default_factory=Targets,
        description=(
            "Targets; at least one is required unless mode is None or (in mode Operator) an "
            "objective is set. The largest recommendation wins."
        ),
    )
    objective: Objective | None = Field(
        default=None,
        description=(
            "Latency objective (mode Operator only; HPA and KEDA modes ignore it and say so): "
            "the policy holds the headroom that the cold start and the bursts it has seen call "
            "for, so that the attainment is met at the lowest cost. With targets too, the "
            "stricter of the two wins."
        ),
    )
    cold_start_seconds: Annotated[int, Field(ge=1, le=7200)] | None = Field(
        default=None,
        description=(
            "Seconds a new replica takes from creation to Ready (1..7200), for the objective's "
            "headroom. Unset: learned from how long the service's own new pods take."
        ),
    )
    models: list[str] = Field(
        default_factory=list,
        description="Only these models' metrics drive scaling. Empty: every model the pod serves.",
    )
    behavior: Behavior = Field(
        default_factory=Behavior,
        description="Scaling speed and stabilization per direction, in the shape of HPA v2's behavior.",
    )
    panic: Panic = Field(default_factory=Panic, description="Burst handling (Operator mode only).")

    @model_validator(mode="after")
    def _bounds_and_targets(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) must be <= maxReplicas ({self.max_replicas})"
            )
        if (
            self.mode != "None"
            and self.targets.queue_depth is None
            and self.targets.queue_time_ms is None
            and not (self.mode == "Operator" and self.objective is not None)
        ):
            if self.mode == "Operator":
                raise ValueError(
                    "targets needs queueDepth or queueTimeMs (or both), or an objective, when "
                    "mode is Operator; e.g. targets: {queueDepth: 4} or objective: "
                    "{latencyMs: 500, attainment: 0.99}"
                )
            raise ValueError(
                "targets needs queueDepth or queueTimeMs (or both) when mode is "
                f"{self.mode} (only mode Operator can scale on an objective alone); e.g. "
                "targets: {queueDepth: 4}"
            )
        if self.min_replicas == 0 and self.mode != "KEDA":
            raise ValueError("minReplicas 0 needs mode KEDA (scale to zero); set minReplicas >= 1")
        return self


class Triton(APIModel):
    """Settings of the tritonserver process."""

    args: list[str] = Field(
        default_factory=list,
        description="Extra tritonserver arguments, appended last (e.g. --log-verbose=1).",
    )
    shm_size: Quantity = Field(
        default="1Gi",
        description="Size of the memory-backed /dev/shm (Triton uses shared memory for its python backend and clients).",
    )
    strict_readiness: bool = Field(
        default=True,
        description="Pass --strict-readiness: the pod is ready only when every model is ready.",
    )
    startup_timeout_seconds: Annotated[int, Field(ge=30, le=7200)] = Field(
        default=900,
        description=(
            "How long Triton may take to load its models before the startup probe gives up "
            "(30..7200 s). Large LLMs may need more than the default."
        ),
    )

    @field_validator("shm_size")
    @classmethod
    def _shm(cls, value: str | int | float) -> str:
        return _check_quantity(value, "shmSize")


class ServiceSpec(APIModel):
    """The Service in front of the Triton pods."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Service type."
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations for the Service (e.g. load-balancer settings).",
    )


class Disruption(APIModel):
    """The PodDisruptionBudget for voluntary evictions (node drains, upgrades)."""

    max_unavailable: Annotated[
        str | int, Field(json_schema_extra={"x-kubernetes-int-or-string": True})
    ] = Field(
        default=1,
        description="Pods that may be evicted at once: a number or a percentage such as '25%'.",
    )

    @field_validator("max_unavailable")
    @classmethod
    def _int_or_percent(cls, value: str | int) -> str | int:
        if isinstance(value, int):
            if value < 0:
                raise ValueError("must be >= 0")
            return value
        if not re.match(r"^[0-9]+%$", value):
            raise ValueError(f"must be a number or a percentage such as '25%'; got {value!r}")
        return value


class InferenceServiceSpec(APIModel):
    """Desired state of an InferenceService: a Triton deployment serving a model repository."""

    model_repository: ModelRepository = Field(description="Where Triton loads models from.")
    models: list[Annotated[str, StringConstraints(min_length=1, max_length=255)]] = Field(
        default_factory=list,
        description=(
            "Models to load with explicit model control (--model-control-mode=explicit, one "
            "--load-model per entry). Empty: Triton loads every model in the repository."
        ),
    )
    image: str | None = Field(
        default=None,
        description="Triton image. Unset: the operator's default (TRITONOP_DEFAULT_IMAGE).",
    )
    replicas: Annotated[int, Field(ge=0)] = Field(
        default=1,
        description="Replicas when autoscaling is off (also the target of `kubectl scale`).",
    )
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements,
        description="CPU and memory of the Triton container; GPUs come from gpu.",
    )
    gpu: GPU = Field(default_factory=GPU, description="GPU request, GPU models and CPU fallback.")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Extra node selector, merged with what gpu implies."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Extra tolerations, merged with the GPU taint toleration."
    )
    affinity: dict[str, Any] = Field(
        default_factory=dict,
        description="Pod affinity (core/v1 Affinity); the GPU product node affinity is merged in.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    autoscaling: Autoscaling | None = Field(
        default=None,
        description="Autoscaling on Triton's metrics. Unset: a fixed spec.replicas.",
    )
    triton: Triton = Field(default_factory=Triton, description="tritonserver settings.")
    service: ServiceSpec = Field(default_factory=ServiceSpec, description="The Service settings.")
    disruption: Disruption = Field(
        default_factory=Disruption, description="PodDisruptionBudget settings."
    )

    @property
    def autoscaling_mode(self) -> AutoscalingMode:
        """The effective mode: None when the autoscaling block is absent."""
        return self.autoscaling.mode if self.autoscaling is not None else "None"


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------


class Condition(APIModel):
    """A metav1.Condition."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )

    type: str = Field(description="Condition type: Ready, Available, Placed, ScalingActive, ...")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(pattern=CONDITION_REASON_PATTERN, description="One-word CamelCase reason.")
    message: str = Field(
        default="", description="Human-readable detail, with how to fix it when False."
    )
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this condition was computed for."
    )


PlacementMode = Literal["GPU", "CPUFallback", "CPU", "Unplaceable"]


class PlacementStatus(APIModel):
    """Where the operator decided to run the pods."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )

    mode: PlacementMode = Field(description="GPU, CPUFallback, CPU (gpu.count 0) or Unplaceable.")
    reason: str = Field(description="One-word reason for the decision.")
    message: str = Field(default="", description="Why, in words.")


class MetricsStatus(APIModel):
    """The last autoscaling signals, averaged over ready replicas."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )

    queue_depth: float | None = Field(
        default=None, description="Average pending requests per ready replica."
    )
    queue_time_ms: float | None = Field(
        default=None, description="Average queue time per request, ms."
    )
    request_rate: float | None = Field(
        default=None, description="Successful requests per second, all replicas."
    )


class ScaleRecord(APIModel):
    """The last scaling decision the operator carried out."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )

    from_: int = Field(alias="from", description="Replicas before.")
    to: int = Field(description="Replicas after.")
    reason: str = Field(description="The metric and numbers that drove the decision.")


class InferenceServiceStatus(APIModel):
    """Observed state, written only by the operator."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )

    observed_generation: int | None = Field(
        default=None, description="The generation last reconciled."
    )
    replicas: int | None = Field(
        default=None, description="Pods of the Deployment (scale subresource)."
    )
    ready_replicas: int | None = Field(default=None, description="Ready pods of the Deployment.")
    desired_replicas: int | None = Field(default=None, description="Replicas the operator wants.")
    replica_summary: str | None = Field(default=None, description="ready/desired, for kubectl get.")
    selector: str | None = Field(
        default=None, description="Label selector of the pods (scale subresource)."
    )
    placement: PlacementStatus | None = Field(default=None, description="Placement decision.")
    url: str | None = Field(default=None, description="In-cluster HTTP (KServe v2) endpoint.")
    grpc_url: str | None = Field(default=None, description="In-cluster gRPC endpoint.")
    metrics: MetricsStatus | None = Field(
        default=None, description="Last observed autoscaling signals."
    )
    last_scale_time: str | None = Field(
        default=None, description="When the operator last changed replicas."
    )
    last_scale: ScaleRecord | None = Field(default=None, description="The last scaling decision.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready (summary), Available, Placed, ScalingActive, AbleToScale, ScalingLimited.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
