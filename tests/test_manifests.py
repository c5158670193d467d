"""The plain install in manifests/: current with the chart, free of Helm noise, kustomize-ready.

GitOps tools (Argo CD, Flux) and `kubectl apply -k manifests/` consume these files directly, so
they must be exactly what the chart renders with default values, stable byte for byte, and
carry nothing that only Helm understands.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
sys.path.insert(0, str(ROOT / "charts" / "tritonop" / "hack"))

import generate_manifests  # noqa: E402
import helmtool  # noqa: E402

REGENERATE = "python charts/tritonop/hack/generate_manifests.py"
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}


@pytest.fixture(scope="module")
def expected() -> dict[Path, str]:
    try:
        helmtool.find_helm()
    except helmtool.HelmNotFoundError as error:
        pytest.fail(str(error), pytrace=False)
    return generate_manifests.expected_files()


def install_objects() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    objects: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        objects += [obj for obj in yaml.safe_load_all((MANIFESTS / resource).read_text()) if obj]
    return objects


def test_generated_files_are_current(expected: dict[Path, str]) -> None:
    stale = [str(path.relative_to(ROOT)) for path in generate_manifests.stale_files(expected)]
    assert not stale, f"stale generated files {stale}: run {REGENERATE}"


def test_generation_is_stable(expected: dict[Path, str]) -> None:
    """Two renders give identical bytes: nothing random, no timestamps."""
    assert generate_manifests.expected_files() == expected


def test_kustomization_installs_the_operator_and_leaves_examples_out() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization["resources"]
    assert not [resource for resource in resources if resource.startswith("examples")]
    assert sorted(resources) == sorted(
        str(path.relative_to(MANIFESTS)) for path in (MANIFESTS / "install").glob("*.yaml")
    )
    kinds = {obj["kind"] for obj in install_objects()}
    assert {"Namespace", "CustomResourceDefinition", "Deployment", "ClusterRole"} <= kinds


def test_manifests_carry_no_helm_noise() -> None:
    for resource in yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]:
        text = (MANIFESTS / resource).read_text()
        for noise in ("helm.sh/", "managed-by: Helm", "# Source:", "RELEASE-NAME", "{{"):
            assert noise not in text, f"{resource} contains {noise!r}"


def test_everything_lives_in_the_operator_namespace() -> None:
    objects = install_objects()
    assert objects[0]["kind"] == "Namespace"
    assert objects[0]["metadata"]["name"] == helmtool.NAMESPACE
    assert objects[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == helmtool.NAMESPACE, obj["metadata"]["name"]


def test_kubectl_kustomize_builds_the_install() -> None:
    """What `kubectl apply -k manifests/` would send: every object, nothing more."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH; the other tests still check the kustomization")
    result = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    built = [obj for obj in yaml.safe_load_all(result.stdout) if obj]
    key = lambda obj: (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, built)) == sorted(map(key, install_objects()))
