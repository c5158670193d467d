"""Where Triton's pods can run: GPU nodes, CPU fallback, or nowhere, from a node snapshot.

The question answered here is structural, not momentary: can any node in the cluster EVER host
one pod of this InferenceService with its GPU request? So nodes are compared on *allocatable*
(what the node offers when empty), never on free capacity: a full GPU node is still a GPU node,
and the scheduler will place the pod when a GPU frees up. Flipping to CPU because GPUs are busy
right now would roll every pod twice for a transient condition.

Everything here is pure: nodes come in as plain data (`NodeInfo`, built from a Node mapping by
`node_info`), the decision goes out as plain data (`Placement`). The renderer uses the same
toleration and product-affinity helpers, so the pods it renders tolerate exactly the taints
this module assumed they tolerate.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from tritonop.api.models import InferenceServiceSpec

#: Node label set by GPU feature discovery with the GPU model, e.g. NVIDIA-H100-80GB-HBM3.
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
#: Taint key GPU node pools conventionally carry so that only GPU workloads land there.
GPU_TAINT_KEY = "nvidia.com/gpu"
#: The toleration every GPU-placed Triton pod gets (and that placement assumes it has).
GPU_TOLERATION: dict[str, str] = {
    "key": GPU_TAINT_KEY,
    "operator": "Exists",
    "effect": "NoSchedule",
}

#: Taints the node lifecycle controller (or cloud provider) sets for a passing node condition.
#: They say "not now", not "never": counting them would flip services to CPU whenever a GPU
#: node restarts its kubelet, and back a minute later, rolling every pod twice. A cordon
#: (node.kubernetes.io/unschedulable) is an administrator's decision and is judged through
#: `NodeInfo.unschedulable` instead.
TRANSIENT_TAINT_KEYS = frozenset(
    {
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/network-unavailable",
        "node.kubernetes.io/unschedulable",
        "node.cloudprovider.kubernetes.io/uninitialized",
    }
)
#: Taint effects that keep a pod off a node (PreferNoSchedule only discourages).
BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})

PlacementModeName = Literal["GPU", "CPUFallback", "CPU", "Unplaceable"]


@dataclass(frozen=True)
class Taint:
    """A node taint (core/v1 Taint without timeAdded)."""

    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        """kubectl's notation: key=value:Effect (key:Effect without a value)."""
        if self.value:
            return f"{self.key}={self.value}:{self.effect}"
        return f"{self.key}:{self.effect}"


@dataclass(frozen=True)
class NodeInfo:
    """The facts about one node that decide placement, and nothing that churns (no status)."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    allocatable: dict[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False


@dataclass(frozen=True)
class Placement:
    """A placement decision: mode, a one-word CamelCase reason, a message with why and the fix."""

    mode: PlacementModeName
    reason: str
    message: str

    @property
    def uses_gpu(self) -> bool:
        """Whether pods are rendered with GPU limits, product affinity and GPU toleration.

        Unplaceable pods are rendered as GPU pods on purpose: they stay Pending, which is the
        truth the user asked for with fallback None, and they schedule the moment a fitting
        node joins, even before the operator re-evaluates.
        """
        return self.mode in ("GPU", "Unplaceable")


def node_info(node: Mapping[str, Any]) -> NodeInfo:
    """Extract placement facts from a Node object (a dict from the API or a kopf body)."""
    metadata = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    taints = tuple(
        Taint(
            key=str(taint.get("key", "")),
            value=str(taint.get("value") or ""),
            effect=str(taint.get("effect", "")),
        )
        for taint in spec.get("taints") or ()
    )
    return NodeInfo(
        name=str(metadata.get("name", "")),
        labels={str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
        allocatable={str(k): str(v) for k, v in (status.get("allocatable") or {}).items()},
        taints=taints,
        unschedulable=bool(spec.get("unschedulable", False)),
    )


# --------------------------------------------------------------------------------------------
# quantities, tolerations, selectors: the scheduler's rules for the parts placement needs
# --------------------------------------------------------------------------------------------

_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$"
)
_SUFFIX_FACTORS: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def parse_quantity(text: str) -> Decimal | None:
    """A Kubernetes quantity as a number ("4" -> 4, "1k" -> 1000, "2Gi" -> 2147483648).

    Returns None for text that is not a quantity, so one malformed node cannot break the
    decision for every service.
    """
    match = _QUANTITY.match(text.strip())
    if not match:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        if suffix[:1] in ("e", "E"):
            return Decimal(number + suffix)
        return Decimal(number) * _SUFFIX_FACTORS[suffix]
    except (InvalidOperation, KeyError):
        return None


def toleration_matches(toleration: Mapping[str, Any], taint: Taint) -> bool:
    """Whether one pod toleration tolerates one taint (core/v1 Toleration.ToleratesTaint)."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.effect:
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return not key or key == taint.key
    return key == taint.key and (toleration.get("value") or "") == taint.value


def user_tolerations(spec: InferenceServiceSpec) -> list[dict[str, Any]]:
    """spec.tolerations as core/v1 Toleration mappings (camelCase, unset fields left out)."""
    return [item.model_dump(by_alias=True, exclude_none=True) for item in spec.tolerations]


def gpu_pod_tolerations(spec: InferenceServiceSpec) -> list[dict[str, Any]]:
    """A GPU-placed pod's tolerations: the user's, then the GPU taint's unless already there."""
    tolerations = user_tolerations(spec)
    if GPU_TOLERATION not in tolerations:
        tolerations.append(dict(GPU_TOLERATION))
    return tolerations


def product_expression(products: Sequence[str]) -> dict[str, Any]:
    """The node selector requirement that pins pods to the listed GPU models."""
    return {"key": GPU_PRODUCT_LABEL, "operator": "In", "values": list(products)}


def _requirement_matches(requirement: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """One NodeSelectorRequirement against node labels (In/NotIn/Exists/DoesNotExist/Gt/Lt)."""
    key = str(requirement.get("key", ""))
    operator = requirement.get("operator")
    values = [str(value) for value in requirement.get("values") or ()]
    present = key in labels
    if operator == "In":
        return present and labels[key] in values
    if operator == "NotIn":
        return not present or labels[key] not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt"):
        # Both sides must be integers, as the scheduler requires; anything else does not match.
        if not present or len(values) != 1:
            return False
        try:
            node_value, bound = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return node_value > bound if operator == "Gt" else node_value < bound
    return False  # an operator the API server would have rejected


def _term_matches(term: Mapping[str, Any], node: NodeInfo) -> bool:
    """One NodeSelectorTerm: all its expressions and fields hold. An empty term matches nothing."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    node_fields = {"metadata.name": node.name}
    return all(_requirement_matches(req, node.labels) for req in expressions) and all(
        _requirement_matches(req, node_fields) for req in fields
    )


def required_node_terms(affinity: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """The user's required node affinity terms, or None when there is no such constraint."""
    node_affinity = affinity.get("nodeAffinity")
    if not isinstance(node_affinity, Mapping):
        return None
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not isinstance(required, Mapping):
        return None
    terms = required.get("nodeSelectorTerms")
    if not isinstance(terms, list):
        return None
    return [term for term in terms if isinstance(term, Mapping)]


def node_affinity_matches(affinity: Mapping[str, Any], node: NodeInfo) -> bool:
    """Whether the required node affinity lets the pod onto the node (terms are ORed)."""
    terms = required_node_terms(affinity)
    if terms is None:
        return True
    return any(_term_matches(term, node) for term in terms)


# --------------------------------------------------------------------------------------------
# the decision
# --------------------------------------------------------------------------------------------

# Why a node cannot host the pod, in the order checks run; the first failing check names it.
_NO_RESOURCE = "no_resource"
_TOO_FEW = "too_few"
_WRONG_PRODUCT = "wrong_product"
_CORDONED = "cordoned"
_TAINTED = "tainted"
_NODE_SELECTOR = "node_selector"
_AFFINITY = "affinity"
_CHECK_ORDER = (
    _NO_RESOURCE,
    _TOO_FEW,
    _WRONG_PRODUCT,
    _CORDONED,
    _TAINTED,
    _NODE_SELECTOR,
    _AFFINITY,
)


@dataclass(frozen=True)
class _Rejection:
    """Why one node cannot host the pod: a check and the node's offending value."""

    check: str
    detail: str = ""


def _rejection(
    node: NodeInfo, spec: InferenceServiceSpec, tolerations: list[dict[str, Any]]
) -> _Rejection | None:
    """The first reason this node can never host one pod of the service; None if it can."""
    gpu = spec.gpu
    offered = parse_quantity(node.allocatable.get(gpu.resource_name, "0")) or Decimal(0)
    if offered <= 0:
        return _Rejection(_NO_RESOURCE)
    if offered < gpu.count:
        return _Rejection(_TOO_FEW, _format_number(offered))
    if gpu.products and node.labels.get(GPU_PRODUCT_LABEL) not in gpu.products:
        return _Rejection(_WRONG_PRODUCT, node.labels.get(GPU_PRODUCT_LABEL, "unlabelled"))
    if node.unschedulable:
        return _Rejection(_CORDONED)
    for taint in node.taints:
        if taint.effect not in BLOCKING_EFFECTS or taint.key in TRANSIENT_TAINT_KEYS:
            continue
        if not any(toleration_matches(toleration, taint) for toleration in tolerations):
            return _Rejection(_TAINTED, str(taint))
    if any(node.labels.get(key) != value for key, value in spec.node_selector.items()):
        return _Rejection(_NODE_SELECTOR)
    if not node_affinity_matches(spec.affinity.manifest(), node):
        return _Rejection(_AFFINITY)
    return None


def _format_number(value: Decimal) -> str:
    """A quantity for a message: 4 rather than 4.000 or 4E+0."""
    return str(int(value)) if value == value.to_integral_value() else str(value.normalize())


def _plural(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def _distinct(values: Sequence[str], limit: int = 3) -> str:
    """Up to `limit` distinct values in first-seen order, with a count of the rest."""
    unique = list(dict.fromkeys(values))
    shown = ", ".join(unique[:limit])
    return shown + (f", +{len(unique) - limit} more" if len(unique) > limit else "")


def describe_requirement(spec: InferenceServiceSpec) -> str:
    """What one pod needs from a node, in words: `nvidia.com/gpu >= 2 with product in [X]`."""
    text = f"{spec.gpu.resource_name} >= {spec.gpu.count}"
    if spec.gpu.products:
        text += f" with product in [{', '.join(spec.gpu.products)}]"
    return text


def _describe_rejections(
    spec: InferenceServiceSpec, rejections: Sequence[tuple[NodeInfo, _Rejection]]
) -> str:
    """A breakdown of why each node was rejected, grouped by check, in check order."""
    if not rejections:
        return "the cluster has no nodes"
    resource = spec.gpu.resource_name
    groups: dict[str, list[_Rejection]] = {}
    for _node, rejection in rejections:
        groups.setdefault(rejection.check, []).append(rejection)
    parts = []
    for check in _CHECK_ORDER:
        group = groups.get(check)
        if not group:
            continue
        count = len(group)
        details = [rejection.detail for rejection in group]
        if check == _NO_RESOURCE:
            parts.append(f"{count} without {resource}")
        elif check == _TOO_FEW:
            most = max(details, key=lambda text: parse_quantity(text) or Decimal(0))
            parts.append(f"{count} with fewer than {spec.gpu.count} {resource} (at most {most})")
        elif check == _WRONG_PRODUCT:
            parts.append(f"{count} with another GPU product ({_distinct(details)})")
        elif check == _CORDONED:
            parts.append(f"{count} cordoned")
        elif check == _TAINTED:
            parts.append(f"{count} with untolerated taints ({_distinct(details)})")
        elif check == _NODE_SELECTOR:
            parts.append(f"{count} not matching spec.nodeSelector")
        else:
            parts.append(f"{count} not matching spec.affinity's required node affinity")
    return f"of {_plural(len(rejections), 'node', 'nodes')}: " + ", ".join(parts)


def effective_fallback(spec: InferenceServiceSpec, default_fallback: str) -> str:
    """spec.gpu.fallback when set, else the operator's default (TRITONOP_GPU_FALLBACK)."""
    return spec.gpu.fallback if spec.gpu.fallback is not None else default_fallback


def decide(
    spec: InferenceServiceSpec, nodes: Sequence[NodeInfo] | None, default_fallback: str
) -> Placement:
    """Decide GPU, CPUFallback, CPU or Unplaceable for a spec against a node snapshot.

    `nodes=None` means the operator cannot see nodes (no RBAC, cache not synced yet): the
    decision is then GPU, because rendering GPU pods is what the user asked for, and falling
    back to CPU on missing information would roll pods back and forth.
    """
    if spec.gpu.count == 0:
        return Placement(
            mode="CPU",
            reason="CPUOnly",
            message="spec.gpu.count is 0: Triton runs on CPU without GPU requests",
        )
    requirement = describe_requirement(spec)
    if nodes is None:
        return Placement(
            mode="GPU",
            reason="NodesUnknown",
            message=f"nodes are not visible to the operator; assuming a node offers {requirement}",
        )
    tolerations = gpu_pod_tolerations(spec)
    fitting = 0
    rejections: list[tuple[NodeInfo, _Rejection]] = []
    for node in sorted(nodes, key=lambda item: item.name):
        rejection = _rejection(node, spec, tolerations)
        if rejection is None:
            fitting += 1
        else:
            rejections.append((node, rejection))
    if fitting:
        return Placement(
            mode="GPU",
            reason="GPUNodesAvailable",
            message=f"{fitting} of {_plural(len(nodes), 'node', 'nodes')} can host {requirement}",
        )
    breakdown = _describe_rejections(spec, rejections)
    missing = f"no node offers {requirement} that the pods can schedule on ({breakdown})"
    if effective_fallback(spec, default_fallback) == "CPU":
        return Placement(
            mode="CPUFallback",
            reason="NoMatchingGPUNode",
            message=f"{missing}; running on CPU until such a node appears",
        )
    return Placement(
        mode="Unplaceable",
        reason="NoMatchingGPUNode",
        message=(
            f"{missing}; pods stay Pending. Add a node with {requirement} whose taints the pods "
            "tolerate and that matches spec.nodeSelector and spec.affinity, or set "
            "spec.gpu.fallback: CPU to run on CPU meanwhile"
        ),
    )


def gpu_capacity_fingerprint(nodes: Sequence[NodeInfo] | None) -> str:
    """A short digest of every node fact `decide` reads, so the operator re-decides only on change.

    Node objects change every few seconds (heartbeats, conditions, images); the facts placement
    depends on (labels, extended-resource allocatable, blocking non-transient taints, cordon)
    change rarely. Equal fingerprints guarantee equal decisions for every spec.
    """
    if nodes is None:
        return "unknown"
    facts = [
        [
            node.name,
            sorted(node.labels.items()),
            sorted((name, value) for name, value in node.allocatable.items() if "/" in name),
            sorted(
                str(taint)
                for taint in node.taints
                if taint.effect in BLOCKING_EFFECTS and taint.key not in TRANSIENT_TAINT_KEYS
            ),
            node.unschedulable,
        ]
        for node in sorted(nodes, key=lambda item: item.name)
    ]
    encoded = json.dumps(facts, separators=(",", ":"), ensure_ascii=True).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]
