"""The plain install in manifests/: free of Helm noise, kustomize-ready, in one namespace.

GitOps tools (Argo CD, Flux) and `kubectl apply -k manifests/` consume these files directly, so
they must carry nothing that only Helm understands. These checks read the files only; that they
are exactly what the chart renders, and that kubectl's kustomize builds them, is
e2e/test_manifests.py (it needs helm and kubectl).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
sys.path.insert(0, str(ROOT / "charts" / "tritonop" / "hack"))

import generate_manifests  # noqa: E402
import helmtool  # noqa: E402

CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}


def test_kustomization_installs_the_operator_and_leaves_examples_out() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization["resources"]
    assert not [resource for resource in resources if resource.startswith("examples")]
    assert sorted(resources) == sorted(
        str(path.relative_to(MANIFESTS)) for path in (MANIFESTS / "install").glob("*.yaml")
    )
    kinds = {obj["kind"] for obj in generate_manifests.install_objects()}
    assert {"Namespace", "CustomResourceDefinition", "Deployment", "ClusterRole"} <= kinds


def test_manifests_carry_no_helm_noise() -> None:
    for resource in yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]:
        text = (MANIFESTS / resource).read_text()
        for noise in ("helm.sh/", "managed-by: Helm", "# Source:", "RELEASE-NAME", "{{"):
            assert noise not in text, f"{resource} contains {noise!r}"


def test_everything_lives_in_the_operator_namespace() -> None:
    objects = generate_manifests.install_objects()
    assert objects[0]["kind"] == "Namespace"
    assert objects[0]["metadata"]["name"] == helmtool.NAMESPACE
    assert objects[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == helmtool.NAMESPACE, obj["metadata"]["name"]
