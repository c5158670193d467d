"""The Helm chart's own files, without helm: version, values documentation, schema, CRD copy.

Everything here reads the chart's files (and the operator's `tritonop crd`), so it runs on a
fresh machine with no Kubernetes binaries. Rendering the chart with helm (lint, schema
enforcement, RBAC, the objects it creates) is e2e/test_chart.py, in the tier that builds helm.
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tritonop.cli import main as tritonop_main

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "tritonop"
sys.path.insert(0, str(CHART / "hack"))

import values_table  # noqa: E402


def test_chart_version_and_app_version_follow_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    package = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "tritonop"
    assert chart["version"] == package
    assert chart["appVersion"] == package


def test_chart_crd_copy_equals_tritonop_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert tritonop_main(["crd"]) == 0
    printed = capsys.readouterr().out
    copy = (CHART / "files" / "crds" / "inferenceservices.tritonop.io.yaml").read_text()
    assert copy == printed, (
        "charts/tritonop/files/crds/inferenceservices.tritonop.io.yaml is stale: "
        "run python charts/tritonop/hack/generate_manifests.py"
    )


# ------------------------------------------------------------------------------------------
# values.yaml documentation
# ------------------------------------------------------------------------------------------


def test_every_value_has_a_description() -> None:
    text = (CHART / "values.yaml").read_text()
    assert values_table.undescribed_keys(text) == []
    documented = [doc.path for doc in values_table.described_keys(text)]
    assert documented == list(values_table.value_paths(yaml.safe_load(text)))


def test_schema_covers_every_value_and_closes_every_section() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in values_table.value_paths(values):
        assert values_table.schema_node(schema, path) is not None, (
            f"{path} missing in values.schema.json"
        )
    # Every section the chart defines (an object with declared properties) rejects unknown keys.
    free_form = {"resources.requests", "resources.limits"}  # any resource name is allowed

    def walk(node: Mapping[str, Any], path: str) -> None:
        if "properties" in node:
            if path not in free_form:
                assert node.get("additionalProperties") is False, (
                    f"{path or '<root>'} accepts unknown keys"
                )
            for key, child in node["properties"].items():
                walk(child, f"{path}.{key}" if path else key)

    walk(schema, "")


def test_values_table_is_current() -> None:
    stale = [
        str(path.relative_to(ROOT))
        for path, text in values_table.expected_documents().items()
        if path.read_text() != text
    ]
    assert not stale, (
        f"stale values table in {stale}: run python charts/tritonop/hack/values_table.py"
    )
    assert CHART / "README.md" in values_table.expected_documents()


def test_values_table_parser_reads_nested_descriptions() -> None:
    text = (
        "## a note, not a description\n"
        "# -- Top.\n"
        "top:\n"
        "  # -- First line\n"
        "  # continues here.\n"
        "  inner: 1\n"
        "\n"
        "# -- Bare.\n"
        "bare: []\n"
        "undocumented: x\n"
    )
    docs = values_table.described_keys(text)
    assert [(doc.path, doc.description) for doc in docs] == [
        ("top", "Top."),
        ("top.inner", "First line continues here."),
        ("bare", "Bare."),
        ("undocumented", ""),
    ]
    assert values_table.undescribed_keys(text) == ["undocumented"]
