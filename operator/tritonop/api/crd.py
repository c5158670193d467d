"""Generate the InferenceService CustomResourceDefinition from the pydantic models.

pydantic emits JSON Schema 2020-12; the API server wants a *structural* OpenAPI v3 schema
(every level typed, no $ref, nullable unions resolved, booleans for exclusive bounds). The
conversion here is small and total over the constructs `api.models` uses, and it fails loudly
on anything else so a new model construct cannot silently produce a schema the server rejects.
"""

from __future__ import annotations

import copy
from typing import Any

from tritonop import GROUP, KIND, PLURAL, VERSION
from tritonop.api.models import (
    DNS1035_PATTERN,
    HPA_MODELS_MESSAGE,
    LABEL_VALUE_PATTERN,
    MAX_NAME_LENGTH,
    InferenceServiceSpec,
    InferenceServiceStatus,
)

Schema = dict[str, Any]

#: Rules that span several fields of one object, keyed by the object's JSON-schema title.
#: Each mirrors a pydantic model_validator in api.models with the same message.
OBJECT_RULES: dict[str, list[Schema]] = {
    "Autoscaling": [
        {
            "rule": "self.minReplicas <= self.maxReplicas",
            "message": "minReplicas must be <= maxReplicas",
            "fieldPath": ".minReplicas",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "self.mode == 'None' || has(self.targets.queueDepth) || "
            "has(self.targets.queueTimeMs) || (self.mode == 'Operator' && has(self.objective))",
            "message": "targets needs queueDepth or queueTimeMs (or both) unless mode is None, "
            "or in mode Operator an objective; e.g. targets: {queueDepth: 4} or objective: "
            "{latencyMs: 500, attainment: 0.99}",
            "fieldPath": ".targets",
            "reason": "FieldValueRequired",
        },
        {
            "rule": "self.minReplicas > 0 || self.mode == 'KEDA'",
            "message": "minReplicas 0 needs mode KEDA (scale to zero); set minReplicas >= 1",
            "fieldPath": ".minReplicas",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "self.mode != 'HPA' || !has(self.models) || "
            f"self.models.all(m, m.matches('{LABEL_VALUE_PATTERN}'))",
            "message": HPA_MODELS_MESSAGE,
            "fieldPath": ".models",
            "reason": "FieldValueInvalid",
        },
    ],
    "GPU": [
        {
            "rule": "self.count > 0 || !has(self.products) || size(self.products) == 0",
            "message": "products requires count > 0; remove products or set count",
            "fieldPath": ".products",
            "reason": "FieldValueInvalid",
        }
    ],
}

ROOT_RULES: list[Schema] = [
    {
        "rule": f"self.metadata.name.size() <= {MAX_NAME_LENGTH} && "
        f"self.metadata.name.matches('{DNS1035_PATTERN}')",
        "message": f"must be at most {MAX_NAME_LENGTH} characters of lowercase "
        "letters, digits and '-', starting with a letter (it names the Service and the pods)",
        "fieldPath": ".metadata.name",
        "reason": "FieldValueInvalid",
    }
]

PRINTER_COLUMNS: list[Schema] = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "Whether the service serves at its desired size.",
    },
    {
        "name": "Replicas",
        "type": "string",
        "jsonPath": ".status.replicaSummary",
        "description": "Ready replicas / desired replicas.",
    },
    {
        "name": "Placement",
        "type": "string",
        "jsonPath": ".status.placement.mode",
        "description": "GPU, CPUFallback, CPU or Unplaceable.",
    },
    {
        "name": "Queue",
        "type": "number",
        "jsonPath": ".status.metrics.queueDepth",
        "description": "Average pending requests per ready replica.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


class SchemaError(ValueError):
    """The pydantic schema uses a construct this converter does not know how to make structural."""


def _convert(node: Schema, defs: dict[str, Schema], path: str) -> Schema:
    """Turn one pydantic JSON-schema node into a structural OpenAPI v3 node."""
    node = copy.deepcopy(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").split("/")[-1]]
        merged = {**copy.deepcopy(target), **node}  # the field's own description wins
        return _convert(merged, defs, path)
    title = node.pop("title", None)
    if "anyOf" in node:
        variants = [v for v in node["anyOf"] if v.get("type") != "null"]
        if node.get("x-kubernetes-int-or-string"):
            node.pop("anyOf")
        elif len(variants) == 1:
            node.pop("anyOf")
            if node.get("default", ...) is None:
                node.pop("default")
            inner = _convert(variants[0], defs, path)
            inner.update({k: v for k, v in node.items() if k != "default" or v is not None})
            return inner  # converted all the way down: converting it again would add defaults
        else:
            raise SchemaError(f"{path}: unions other than Optional[...] are not structural")
    if node.get("default", ...) is None:
        node.pop("default")
    if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
        node["minimum"] = node.pop("exclusiveMinimum")
        node["exclusiveMinimum"] = True
    if "exclusiveMaximum" in node and not isinstance(node["exclusiveMaximum"], bool):
        node["maximum"] = node.pop("exclusiveMaximum")
        node["exclusiveMaximum"] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if node.get("x-kubernetes-preserve-unknown-fields"):
        node.pop("additionalProperties", None)
    kind = node.get("type")
    if kind == "object" and "properties" in node:
        node.pop("additionalProperties", None)  # unknown fields are pruned/rejected by the server
        props = {}
        for name, sub in node["properties"].items():
            child = _convert(sub, defs, f"{path}.{name}")
            if "description" not in child:
                raise SchemaError(
                    f"{path}.{name}: needs a description (it becomes kubectl explain)"
                )
            if (
                child.get("type") == "object"
                and "properties" in child
                and "default" not in sub
                and "anyOf" not in sub
                and name not in node.get("required", [])
                and not child.get("required")
            ):
                # An empty default lets the server apply the nested defaults (an object with
                # required fields has none to apply: {} would only be rejected).
                child["default"] = {}
            props[name] = child
        node["properties"] = props
        rules = OBJECT_RULES.get(title or "", [])
        if rules:
            node["x-kubernetes-validations"] = node.get("x-kubernetes-validations", []) + rules
    elif kind == "object" and isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _convert(node["additionalProperties"], defs, f"{path}.*")
    elif kind == "array":
        node["items"] = _convert(node["items"], defs, f"{path}[]")
    elif kind is None and not node.get("x-kubernetes-int-or-string"):
        raise SchemaError(f"{path}: untyped schema node {node!r}")
    return node


def _structural(model: type[Any], path: str) -> Schema:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})
    return _convert(schema, defs, path)


def openapi_schema() -> Schema:
    """The openAPIV3Schema of the CRD's only version."""
    spec = _structural(InferenceServiceSpec, ".spec")
    status = _structural(InferenceServiceStatus, ".status")
    return {
        "type": "object",
        "description": "InferenceService runs NVIDIA Triton Inference Server for a model repository "
        "and scales it on Triton's queue depth and queue time.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of the object."},
            "kind": {"type": "string", "description": "Kind of the object."},
            "metadata": {
                "type": "object",
                "properties": {"name": {"type": "string", "description": "Name of the service."}},
            },
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": ROOT_RULES,
    }


def crd() -> Schema:
    """The complete CustomResourceDefinition manifest."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {
                "app.kubernetes.io/name": "tritonop",
                "app.kubernetes.io/part-of": "tritonop",
            },
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["tis"],
                "categories": ["all", "tritonop"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }
