"""The generated CRD: in sync with crds/, structural, described, and validating like the models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

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
