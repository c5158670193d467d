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
    AfterValidator,
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
#: A pvc:// URI whose sub path climbs out of the claim (a ".." element), which the API server
#: refuses as a volume subPath.
PVC_PARENT_PATTERN = r"^pvc://[^/]*/(.*/)?[.][.](/.*)?$"
PVC_PARENT_MESSAGE = (
    "the path after pvc://CLAIM must stay inside the claim: '..' is not allowed as a path "
    "element (e.g. pvc://models-claim/triton/v2)"
)
#: A Kubernetes extended resource name such as nvidia.com/gpu or nvidia.com/mig-1g.10gb.
RESOURCE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
#: metav1.Condition's reason format.
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
#: DNS-1035 label: what a Service name (and so an InferenceService name) must be.
DNS1035_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1123_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MAX_NAME_LENGTH = 52  # leaves room for the "-xxxxxxxxxx-xxxxx" suffixes of pod names

# Label syntax, where spec values become labels, label keys or annotation keys of the children.
# The API server checks them when the operator applies the children; checking them here (and at
# admission, through the CRD) makes a bad value a rejected spec instead of a failing apply.
_NAME_PART = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
# "[.]" rather than "\." so that the patterns can be embedded in CEL string literals as they are.
_DNS_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
#: A label key, annotation key, taint key or resource name (the API server's IsQualifiedName):
#: an optional DNS-subdomain prefix of at most 253 characters and "/", then a name.
QUALIFIED_NAME_PATTERN = rf"^({_DNS_PREFIX}/)?{_NAME_PART}$"
MAX_QUALIFIED_NAME_PREFIX = 253
MAX_QUALIFIED_NAME_LENGTH = MAX_QUALIFIED_NAME_PREFIX + 1 + 63
#: A label value (IsValidLabelValue): empty, or at most 63 letters, digits, '-', '_' and '.'
#: starting and ending with a letter or digit.
LABEL_VALUE_PATTERN = rf"^({_NAME_PART})?$"
QUALIFIED_NAME_HINT = (
    "an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting "
    "and ending with a letter or digit (e.g. example.com/pool or zone)"
)
LABEL_VALUE_HINT = (
    "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
)


def qualified_name_rule(variable: str) -> str:
    """The CEL condition mirroring `check_qualified_name` on the CEL string `variable`."""
    return (
        f"{variable}.size() <= {MAX_QUALIFIED_NAME_LENGTH} && "
        f"{variable}.matches('{QUALIFIED_NAME_PATTERN}') && "
        f"(!{variable}.contains('/') || "
        f"{variable}.split('/')[0].size() <= {MAX_QUALIFIED_NAME_PREFIX})"
    )


#: The CEL rule of maps whose keys become label, annotation or resource names (a structural
#: schema has no way to constrain map keys other than a rule on the map).
QUALIFIED_KEY_RULE = f"self.all(k, {qualified_name_rule('k')})"

# Size bounds. kopf keeps the last handled spec in an annotation, and all annotations of an object
# share 256 KiB: every list, map and string of the spec is bounded so that even a spec at every
# bound fits (tests/test_crd.py computes that worst case from the generated schema).
#: Longest free text in status (tritonop.status cuts what it writes to this).
MAX_STATUS_MESSAGE = 1024
MAX_URI_LENGTH = 2048
MAX_IMAGE_LENGTH = 1024
MAX_MODELS = 64
MAX_AUTOSCALING_MODELS = 32
MAX_MODEL_NAME = 128
MAX_ARGS = 32
MAX_ARG_LENGTH = 256
MAX_MAP_ENTRIES = 16
MAX_RESOURCES = 8
MAX_ANNOTATION_VALUE = 256
MAX_LIST_ITEMS = 16
MAX_QUANTITY_LENGTH = 64
#: Flags the operator sets itself to lock Triton's administrative APIs behind a key.
RESERVED_TRITON_FLAGS = ("--http-restricted-api", "--grpc-restricted-protocol")
RESERVED_FLAGS_MESSAGE = (
    "--http-restricted-api and --grpc-restricted-protocol are set by the operator (Triton's "
    "administrative APIs are behind the key in the Secret NAME-triton-admin); remove them"
)
HPA_MODELS_MESSAGE = (
    "in mode HPA the models become label values of the HPA's metric selector: each must be "
    + LABEL_VALUE_HINT
)
MAX_UNAVAILABLE_PERCENT_PATTERN = r"^([1-9][0-9]?|100)%$"
MAX_UNAVAILABLE_MESSAGE = (
    "must be at least 1 or a percentage from '1%' to '100%': 0 would never let a node drain "
    "evict a Triton pod"
)

Quantity = Annotated[
    str | int | float,
    Field(
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
            "maxLength": MAX_QUANTITY_LENGTH,
        }
    ),
]


def check_qualified_name(key: str, where: str = "key") -> str:
    """Validate a label/annotation/resource key the way the API server's IsQualifiedName does."""
    prefix, _, _name = key.rpartition("/")
    if (
        len(key) > MAX_QUALIFIED_NAME_LENGTH
        or len(prefix) > MAX_QUALIFIED_NAME_PREFIX
        or not re.match(QUALIFIED_NAME_PATTERN, key)
    ):
        raise ValueError(f"{where} {key!r} is not a valid key: use {QUALIFIED_NAME_HINT}")
    return key


def check_label_value(value: str) -> str:
    """Validate a label value the way the API server's IsValidLabelValue does."""
    if not re.match(LABEL_VALUE_PATTERN, value):
        raise ValueError(f"{value!r} is not a valid label value: use {LABEL_VALUE_HINT}")
    return value


LabelValue = Annotated[
    str,
    StringConstraints(max_length=63),
    AfterValidator(check_label_value),
    Field(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self.matches('{LABEL_VALUE_PATTERN}')",
                    "message": f"must be a label value: {LABEL_VALUE_HINT}",
                }
            ]
        }
    ),
]
#: Printable ASCII: what Triton model names, arguments, URIs and image references are. Besides
#: refusing control characters, it keeps each character one byte (two when JSON escapes it),
#: which the spec's size bound relies on.
PRINTABLE_PATTERN = r"^[ -~]*$"
PRINTABLE_MESSAGE = "must be printable ASCII (no control characters or non-ASCII letters)"


def check_printable(value: str) -> str:
    """Refuse control characters and non-ASCII text (see PRINTABLE_PATTERN)."""
    if not re.match(PRINTABLE_PATTERN, value):
        raise ValueError(f"{value!r} {PRINTABLE_MESSAGE}")
    return value


_PRINTABLE_RULE = Field(
    json_schema_extra={
        "x-kubernetes-validations": [
            {"rule": f"self.matches('{PRINTABLE_PATTERN}')", "message": PRINTABLE_MESSAGE}
        ]
    }
)
ModelName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_MODEL_NAME),
    AfterValidator(check_printable),
    _PRINTABLE_RULE,
]
TritonArgument = Annotated[
    str,
    StringConstraints(max_length=MAX_ARG_LENGTH),
    AfterValidator(check_printable),
    _PRINTABLE_RULE,
]
AnnotationValue = Annotated[
    str,
    StringConstraints(max_length=MAX_ANNOTATION_VALUE),
    AfterValidator(check_printable),
    _PRINTABLE_RULE,
]
QualifiedName = Annotated[
    str,
    StringConstraints(max_length=MAX_QUALIFIED_NAME_LENGTH),
    AfterValidator(check_qualified_name),
    Field(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": qualified_name_rule("self"), "message": f"must be {QUALIFIED_NAME_HINT}"}
            ]
        }
    ),
]


def _qualified_keys(values: dict[str, Any], where: str) -> dict[str, Any]:
    for key in values:
        check_qualified_name(key, where)
    return values


def _qualified_key_rule(what: str) -> dict[str, Any]:
    """The CEL rule of a map whose keys must be qualified names, with its message."""
    return {
        "x-kubernetes-validations": [
            {"rule": QUALIFIED_KEY_RULE, "message": f"{what} keys must be {QUALIFIED_NAME_HINT}"}
        ]
    }


def _check_quantity(value: str | int | float, where: str) -> str:
    """Validate a Kubernetes quantity and return its string form (how the API server keeps it)."""
    if isinstance(value, bool):
        raise ValueError(f"{where} must be a quantity such as '2', '500m' or '16Gi', not {value!r}")
    text = str(value)
    if len(text) > MAX_QUANTITY_LENGTH or not re.match(QUANTITY_PATTERN, text):
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

    name: Annotated[
        str, StringConstraints(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN_PATTERN)
    ] = Field(
        description="Name of the Secret, in the same namespace as the InferenceService.",
    )


class ModelRepository(APIModel):
    """Where Triton loads models from."""

    uri: str = Field(
        max_length=MAX_URI_LENGTH,
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
                },
                {
                    "rule": "!self.matches('" + PVC_PARENT_PATTERN + "')",
                    "message": PVC_PARENT_MESSAGE,
                },
                {"rule": f"self.matches('{PRINTABLE_PATTERN}')", "message": PRINTABLE_MESSAGE},
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
        check_printable(uri)
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
            if re.match(PVC_PARENT_PATTERN, uri):
                raise ValueError(f"{PVC_PARENT_MESSAGE}; got {uri!r}")
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
        max_length=MAX_RESOURCES,
        description="Minimum resources, e.g. {cpu: '2', memory: 8Gi}.",
        json_schema_extra=_qualified_key_rule("resource"),
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=MAX_RESOURCES,
        description="Maximum resources, e.g. {memory: 16Gi}. GPU limits come from gpu.count.",
        json_schema_extra=_qualified_key_rule("resource"),
    )

    @field_validator("requests", "limits")
    @classmethod
    def _quantities(cls, values: dict[str, Any]) -> dict[str, str]:
        _qualified_keys(values, "resource name")
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
        max_length=MAX_QUALIFIED_NAME_LENGTH,
        description=(
            "Extended resource to request: nvidia.com/gpu, or a MIG profile such as "
            "nvidia.com/mig-1g.10gb when the GPU operator runs the mixed MIG strategy."
        ),
    )
    products: list[Annotated[LabelValue, StringConstraints(min_length=1)]] = Field(
        default_factory=list,
        max_length=MAX_LIST_ITEMS,
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

    key: QualifiedName | None = Field(
        default=None,
        description="Taint key to tolerate (a label key, e.g. example.com/dedicated); unset with "
        "Exists matches all.",
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (default Equal)."
    )
    value: LabelValue | None = Field(
        default=None, description="Taint value for the Equal operator (a label value)."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None,
        description="For NoExecute: how long the pod stays bound after the taint appears.",
    )


# core/v1 Affinity, typed: the API server checks every field of it when the Deployment is
# applied, so an unknown or misspelt field is refused here instead (and the bounds keep the
# spec small enough for kopf's annotation, see MAX_MODELS).

NodeSelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
LabelSelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
# Generous for real scheduling constraints, small enough that the spec stays bounded (the
# nesting multiplies them): node terms, expressions per node term, values per expression, pod
# (anti-)affinity terms per kind, and the parts of a pod term's label selectors.
MAX_NODE_TERMS = 3
MAX_NODE_EXPRESSIONS = 4
MAX_AFFINITY_VALUES = 8
MAX_POD_TERMS = 2
MAX_SELECTOR_PARTS = 4
MAX_SELECTOR_EXPRESSIONS = 2
MAX_TERM_KEYS = 2


class NodeSelectorRequirement(APIModel):
    """One requirement on node labels or fields (core/v1 NodeSelectorRequirement)."""

    key: QualifiedName = Field(description="Node label key (or field name in matchFields).")
    operator: NodeSelectorOperator = Field(description="In, NotIn, Exists, DoesNotExist, Gt or Lt.")
    values: list[LabelValue] = Field(
        default_factory=list,
        max_length=MAX_AFFINITY_VALUES,
        description="Values for In and NotIn; one integer for Gt and Lt; empty otherwise.",
    )


class NodeSelectorTerm(APIModel):
    """Requirements that must all hold (core/v1 NodeSelectorTerm)."""

    match_expressions: list[NodeSelectorRequirement] = Field(
        default_factory=list,
        max_length=MAX_NODE_EXPRESSIONS,
        description="Requirements on node labels.",
    )
    match_fields: list[NodeSelectorRequirement] = Field(
        default_factory=list,
        max_length=1,
        description="A requirement on the node's metadata.name (the only field there is).",
    )


class NodeSelector(APIModel):
    """Terms of which at least one must hold (core/v1 NodeSelector)."""

    node_selector_terms: list[NodeSelectorTerm] = Field(
        min_length=1, max_length=MAX_NODE_TERMS, description="Terms, ORed."
    )


class PreferredSchedulingTerm(APIModel):
    """A weighted preference for nodes (core/v1 PreferredSchedulingTerm)."""

    weight: Annotated[int, Field(ge=1, le=100)] = Field(description="Weight 1..100.")
    preference: NodeSelectorTerm = Field(description="The nodes preferred.")


class NodeAffinity(APIModel):
    """Node affinity (core/v1 NodeAffinity)."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = Field(
        default=None, description="Nodes the pods must run on."
    )
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] = Field(
        default_factory=list,
        max_length=MAX_NODE_TERMS,
        description="Nodes the pods prefer.",
    )


class LabelSelectorRequirement(APIModel):
    """One requirement on labels (meta/v1 LabelSelectorRequirement)."""

    key: QualifiedName = Field(description="Label key.")
    operator: LabelSelectorOperator = Field(description="In, NotIn, Exists or DoesNotExist.")
    values: list[LabelValue] = Field(
        default_factory=list,
        max_length=MAX_AFFINITY_VALUES,
        description="Values for In and NotIn; empty otherwise.",
    )


class LabelSelector(APIModel):
    """A label selector (meta/v1 LabelSelector)."""

    match_labels: dict[str, LabelValue] = Field(
        default_factory=dict,
        max_length=MAX_SELECTOR_PARTS,
        description="Labels that must all match.",
        json_schema_extra=_qualified_key_rule("matchLabels"),
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list,
        max_length=MAX_SELECTOR_EXPRESSIONS,
        description="Requirements that must all hold.",
    )

    @field_validator("match_labels")
    @classmethod
    def _label_keys(cls, labels: dict[str, str]) -> dict[str, str]:
        return _qualified_keys(labels, "matchLabels key")


class PodAffinityTerm(APIModel):
    """Pods to be near (or away from) on a topology (core/v1 PodAffinityTerm)."""

    label_selector: LabelSelector | None = Field(default=None, description="The other pods.")
    namespace_selector: LabelSelector | None = Field(
        default=None, description="Namespaces of the other pods (empty: all)."
    )
    namespaces: list[
        Annotated[str, StringConstraints(max_length=63, pattern=DNS1123_LABEL_PATTERN)]
    ] = Field(
        default_factory=list,
        max_length=MAX_SELECTOR_PARTS,
        description="Namespaces of the other pods (unset with no namespaceSelector: this one).",
    )
    topology_key: QualifiedName = Field(
        description="Node label that defines the topology, e.g. kubernetes.io/hostname."
    )
    match_label_keys: list[QualifiedName] = Field(
        default_factory=list,
        max_length=MAX_TERM_KEYS,
        description="Label keys whose values (taken from the incoming pod) are ANDed with labelSelector.",
    )
    mismatch_label_keys: list[QualifiedName] = Field(
        default_factory=list,
        max_length=MAX_TERM_KEYS,
        description="Label keys whose values must differ from the incoming pod's.",
    )


class WeightedPodAffinityTerm(APIModel):
    """A weighted pod (anti-)affinity preference (core/v1 WeightedPodAffinityTerm)."""

    weight: Annotated[int, Field(ge=1, le=100)] = Field(description="Weight 1..100.")
    pod_affinity_term: PodAffinityTerm = Field(description="The term.")


class PodAffinity(APIModel):
    """Pod affinity or anti-affinity (core/v1 PodAffinity, PodAntiAffinity)."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] = Field(
        default_factory=list, max_length=MAX_POD_TERMS, description="Terms that must hold."
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] = Field(
        default_factory=list, max_length=MAX_POD_TERMS, description="Preferred terms."
    )


class Affinity(APIModel):
    """Scheduling constraints of the Triton pods (core/v1 Affinity)."""

    node_affinity: NodeAffinity | None = Field(default=None, description="Node affinity.")
    pod_affinity: PodAffinity | None = Field(default=None, description="Pod affinity.")
    pod_anti_affinity: PodAffinity | None = Field(default=None, description="Pod anti-affinity.")

    def manifest(self) -> dict[str, Any]:
        """The affinity as the pod spec carries it: camelCase, unset and empty fields left out
        (the API server drops them too, so the rendered object equals the stored one)."""
        manifest: dict[str, Any] = _compact(self.model_dump(by_alias=True, exclude_none=True))
        return manifest


def _compact(value: Any) -> Any:
    """`value` without empty lists and mappings, at every depth."""
    if isinstance(value, dict):
        pairs = ((k, _compact(v)) for k, v in value.items())
        return {k: v for k, v in pairs if v not in ({}, [])}
    if isinstance(value, list):
        return [_compact(item) for item in value]
    return value


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
            "mode (with an objective: the learned cold start plus three intervals, at most 60), "
            "Kubernetes' 300 in HPA and KEDA modes."
        ),
    )
    select_policy: Literal["Max", "Min", "Disabled"] | None = Field(
        default=None,
        description="Which policy wins when several apply: Max (default), Min, or Disabled (no scaling).",
    )
    policies: list[ScalingPolicy] | None = Field(
        default=None,
        max_length=10,
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
    models: list[ModelName] = Field(
        default_factory=list,
        max_length=MAX_AUTOSCALING_MODELS,
        description="Only these models' metrics drive scaling. Empty: every model the pod "
        "serves. In mode HPA they become label values of the HPA's metric selector, so they "
        "must be valid label values there.",
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

    @model_validator(mode="after")
    def _hpa_models_are_label_values(self) -> Autoscaling:
        if self.mode == "HPA":
            for model in self.models:
                if not re.match(LABEL_VALUE_PATTERN, model):
                    raise ValueError(f"{HPA_MODELS_MESSAGE}; got {model!r}")
        return self


class Triton(APIModel):
    """Settings of the tritonserver process."""

    args: list[TritonArgument] = Field(
        default_factory=list,
        max_length=MAX_ARGS,
        description="Extra tritonserver arguments, appended last (e.g. --log-verbose=1). "
        "--http-restricted-api and --grpc-restricted-protocol are set by the operator (they put "
        "Triton's administrative APIs behind the key in the Secret NAME-triton-admin) and are "
        "refused here.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(a, "
                    + " && ".join(f"!a.startsWith('{flag}')" for flag in RESERVED_TRITON_FLAGS)
                    + ")",
                    "message": RESERVED_FLAGS_MESSAGE,
                }
            ]
        },
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

    @field_validator("args")
    @classmethod
    def _no_reserved_flags(cls, args: list[str]) -> list[str]:
        if any(arg.startswith(RESERVED_TRITON_FLAGS) for arg in args):
            raise ValueError(RESERVED_FLAGS_MESSAGE)
        return args


class ServiceSpec(APIModel):
    """The Service in front of the Triton pods."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Service type."
    )
    annotations: dict[str, AnnotationValue] = Field(
        default_factory=dict,
        max_length=MAX_MAP_ENTRIES,
        description="Annotations for the Service (e.g. load-balancer settings). The operator's "
        "administrator decides which annotation prefixes are allowed.",
        json_schema_extra=_qualified_key_rule("annotation"),
    )

    @field_validator("annotations")
    @classmethod
    def _annotation_keys(cls, annotations: dict[str, str]) -> dict[str, str]:
        return _qualified_keys(annotations, "annotation")


class Disruption(APIModel):
    """The PodDisruptionBudget for voluntary evictions (node drains, upgrades)."""

    max_unavailable: Annotated[
        str | int, Field(json_schema_extra={"x-kubernetes-int-or-string": True, "maxLength": 4})
    ] = Field(
        default=1,
        description="Pods that may be evicted at once: a number (at least 1) or a percentage "
        "from '1%' to '100%' (rounded up, so always at least one pod). 0 is refused: it would "
        "block every node drain for good.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "type(self) == int ? self >= 1 : self.matches('"
                    + MAX_UNAVAILABLE_PERCENT_PATTERN
                    + "')",
                    "message": MAX_UNAVAILABLE_MESSAGE,
                }
            ]
        },
    )

    @field_validator("max_unavailable")
    @classmethod
    def _int_or_percent(cls, value: str | int) -> str | int:
        if isinstance(value, int):
            if value < 1:
                raise ValueError(MAX_UNAVAILABLE_MESSAGE)
            return value
        if not re.match(MAX_UNAVAILABLE_PERCENT_PATTERN, value):
            raise ValueError(f"{MAX_UNAVAILABLE_MESSAGE}; got {value!r}")
        return value


class InferenceServiceSpec(APIModel):
    """Desired state of an InferenceService: a Triton deployment serving a model repository."""

    model_repository: ModelRepository = Field(description="Where Triton loads models from.")
    models: list[ModelName] = Field(
        default_factory=list,
        max_length=MAX_MODELS,
        description=(
            "Models to load with explicit model control (--model-control-mode=explicit, one "
            "--load-model per entry). Empty: Triton loads every model in the repository."
        ),
    )
    image: str | None = Field(
        default=None,
        max_length=MAX_IMAGE_LENGTH,
        pattern=r"^[!-~]+$",
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
    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict,
        max_length=MAX_MAP_ENTRIES,
        description="Extra node selector (label keys and values), merged with what gpu implies.",
        json_schema_extra=_qualified_key_rule("nodeSelector"),
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=MAX_LIST_ITEMS,
        description="Extra tolerations, merged with the GPU taint toleration.",
    )
    affinity: Affinity = Field(
        default_factory=Affinity,
        description="Pod affinity (core/v1 Affinity); the GPU product node affinity is merged in.",
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

    @field_validator("node_selector")
    @classmethod
    def _node_selector_keys(cls, selector: dict[str, str]) -> dict[str, str]:
        return _qualified_keys(selector, "nodeSelector key")

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
        default="",
        max_length=MAX_STATUS_MESSAGE,
        description="Human-readable detail, with how to fix it when False.",
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
    message: str = Field(default="", max_length=MAX_STATUS_MESSAGE, description="Why, in words.")


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
    reason: str = Field(
        max_length=MAX_STATUS_MESSAGE, description="The metric and numbers that drove the decision."
    )


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
    reconciled_digest: str | None = Field(
        default=None,
        description="Digest of what the last healthy reconcile read and left (the spec, the "
        "placement decision, the Secrets' and every child's version). A restarted operator "
        "compares it instead of reconciling every service again; absent after a reconcile "
        "that did not succeed.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready (summary), Available, Placed, ScalingActive, AbleToScale, ScalingLimited.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
