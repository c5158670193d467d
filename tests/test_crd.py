"""The generated CRD: in sync with crds/, structural, described, and validating like the models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tritonop.api import models
from tritonop.api.crd import crd

ROOT = Path(__file__).resolve().parents[1]
CRD_FILE = ROOT / "crds" / "inferenceservices.tritonop.io.yaml"


def schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def test_committed_crd_matches_the_models() -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "tritonop.cli", "crd"], check=True, capture_output=True, text=True
    ).stdout
    assert generated == CRD_FILE.read_text(), (
        "crds/inferenceservices.tritonop.io.yaml is stale: run `tritonop crd > crds/inferenceservices.tritonop.io.yaml`"
    )


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in (node.get("properties") or {}).items():
        found += walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += walk(node["additionalProperties"], f"{path}{{}}")
    return found


def test_every_spec_and_status_field_has_a_description() -> None:
    for path, node in walk(schema()):
        if path.startswith((".spec.", ".status.")) and not path.endswith(("[]", "{}")):
            assert node.get("description"), f"{path} has no description"


def test_schema_is_structural() -> None:
    for path, node in walk(schema()):
        assert ("$ref" not in node and "anyOf" not in node) or node.get(
            "x-kubernetes-int-or-string"
        ), path
        assert "type" in node or node.get("x-kubernetes-int-or-string") or path == "", path
        assert node.get("additionalProperties") is not True, path
        assert "title" not in node, path


def rules(path: str) -> list[str]:
    nodes = dict(walk(schema()))
    return [r["rule"] for r in nodes[path].get("x-kubernetes-validations", [])]


def test_cel_rules_cover_what_the_schema_cannot_say() -> None:
    assert "self.minReplicas <= self.maxReplicas" in rules(".spec.autoscaling")
    assert "self >= 0" in rules(".spec.gpu.count")
    assert any("s3|gs|as|pvc" in r for r in rules(".spec.modelRepository.uri"))
    assert "self > 0.0" in rules(".spec.autoscaling.targets.queueDepth")
    assert "self > 0.0" in rules(".spec.autoscaling.targets.queueTimeMs")
    assert "self > 0.0" in rules(".spec.autoscaling.objective.latencyMs")
    assert "self > 0.0 && self < 1.0" in rules(".spec.autoscaling.objective.attainment")
    assert any("has(self.objective)" in r for r in rules(".spec.autoscaling"))
    assert any("metadata.name" in r for r in rules(""))


def test_optional_objects_are_not_defaulted_into_invalid_shapes() -> None:
    nodes = dict(walk(schema()))
    assert "default" not in nodes[".spec.modelRepository.secretRef"]
    assert "default" not in nodes[".spec.autoscaling"]
    assert "default" not in nodes[".spec.autoscaling.objective"]  # {} lacks its required fields
    assert nodes[".spec.gpu"]["default"] == {}
    assert nodes[".spec.gpu.count"]["default"] == 1


def test_subresources_and_printer_columns() -> None:
    version = crd()["spec"]["versions"][0]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Ready",
        "Replicas",
        "Placement",
        "Queue",
        "Age",
    ]
    assert crd()["spec"]["names"]["shortNames"] == ["tis"]


def test_crd_file_is_valid_yaml_of_one_document() -> None:
    documents = list(yaml.safe_load_all(CRD_FILE.read_text()))
    assert len(documents) == 1 and documents[0]["kind"] == "CustomResourceDefinition"


#: All annotations of an object share 256 KiB, and kopf keeps the last handled spec in one of
#: them: the largest spec the schema admits must leave room for kopf's other annotations and
#: for the user's own.
SPEC_SIZE_BUDGET = 200 * 1024
#: Patterns whose strings JSON never escapes (letters, digits and a little punctuation).
UNESCAPED_PATTERNS = (
    models.LABEL_VALUE_PATTERN,
    models.QUALIFIED_NAME_PATTERN,
    models.DNS1123_LABEL_PATTERN,
    models.DNS1123_SUBDOMAIN_PATTERN,
    models.QUANTITY_PATTERN,
    models.RESOURCE_NAME_PATTERN,
    models.MAX_UNAVAILABLE_PERCENT_PATTERN,
)


def _largest_string(node: dict[str, Any], path: str, unbounded: list[str]) -> int:
    """Bytes of the longest JSON string a string node admits."""
    if "enum" in node:
        return max(len(str(value)) for value in node["enum"]) + 2
    if "maxLength" not in node:
        unbounded.append(path)
        return 0
    # kopf writes JSON with ASCII escapes: a character is 12 bytes at worst (an astral
    # character as two \uXXXX escapes), 2 when a pattern keeps it ASCII (\" or \\), 1 when
    # the pattern allows nothing JSON escapes.
    checks = node.get("pattern", "") + " ".join(
        rule["rule"] for rule in node.get("x-kubernetes-validations", [])
    )
    if any(pattern in checks for pattern in UNESCAPED_PATTERNS):
        per_character = 1
    elif "matches('^" in checks or "pattern" in node:
        per_character = 2
    else:
        per_character = 12
    return int(node["maxLength"]) * per_character + 2


def _largest_map(node: dict[str, Any], path: str, unbounded: list[str]) -> int:
    """Bytes of the largest JSON object a map node (additionalProperties) admits."""
    rules = " ".join(rule["rule"] for rule in node.get("x-kubernetes-validations", []))
    if "maxProperties" not in node or "size() <= 317" not in rules:
        unbounded.append(f"{path} (entries or keys)")
        return 0
    value = largest_json(node["additionalProperties"], f"{path}{{}}", unbounded)
    return 2 + int(node["maxProperties"]) * (317 + 4 + value)


def largest_json(node: dict[str, Any], path: str, unbounded: list[str]) -> int:
    """Bytes of the longest JSON a value of this schema node can have (an upper bound)."""
    kind = node.get("type")
    if node.get("x-kubernetes-preserve-unknown-fields"):
        unbounded.append(path)
        return 0
    if kind in ("integer", "number", "boolean"):
        return 24
    if kind == "string" or node.get("x-kubernetes-int-or-string"):
        return _largest_string(node, path, unbounded)
    if kind == "array":
        if "maxItems" not in node:
            unbounded.append(path)
            return 0
        return 2 + int(node["maxItems"]) * (largest_json(node["items"], f"{path}[]", unbounded) + 1)
    if "properties" in node:
        return 2 + sum(
            len(name) + 4 + largest_json(child, f"{path}.{name}", unbounded)
            for name, child in node["properties"].items()
        )
    return _largest_map(node, path, unbounded)


def test_every_spec_value_is_bounded_and_the_largest_spec_fits_kopfs_annotation() -> None:
    unbounded: list[str] = []
    size = largest_json(schema()["properties"]["spec"], ".spec", unbounded)
    assert unbounded == [], f"unbounded in the schema: {unbounded}"
    print(
        f"largest admissible spec: {size / 1024:.0f} KiB of JSON (budget {SPEC_SIZE_BUDGET // 1024} KiB)"
    )
    assert size <= SPEC_SIZE_BUDGET


def test_label_syntax_rules_guard_what_becomes_labels() -> None:
    nodes = dict(walk(schema()))
    for path in (".spec.nodeSelector", ".spec.service.annotations", ".spec.resources.limits"):
        assert any("self.all(k" in rule for rule in rules(path)), path
    assert any("matches" in rule for rule in rules(".spec.nodeSelector{}"))
    assert any("matches" in rule for rule in rules(".spec.tolerations[].key"))
    assert any("self.mode != 'HPA'" in rule for rule in rules(".spec.autoscaling"))
    assert any("[.][.]" in rule for rule in rules(".spec.modelRepository.uri"))
    assert any("self >= 1" in rule for rule in rules(".spec.disruption.maxUnavailable"))
    assert any("--http-restricted-api" in rule for rule in rules(".spec.triton.args"))
    affinity = nodes[".spec.affinity"]
    assert "x-kubernetes-preserve-unknown-fields" not in affinity
    assert set(affinity["properties"]) == {"nodeAffinity", "podAffinity", "podAntiAffinity"}
