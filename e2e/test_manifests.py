"""The plain install in manifests/, checked with the pinned helm and kubectl.

The files must be exactly what the chart renders with default values, stable byte for byte,
and `kubectl kustomize manifests/` must build them into the same objects. That takes helm and
kubectl, so it lives in the tier that builds them (found the way the rest of e2e/ finds its
binaries); what the files say without rendering anything is tests/test_manifests.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from e2e.harness import ROOT, bin_dir

MANIFESTS = ROOT / "manifests"
sys.path.insert(0, str(ROOT / "charts" / "tritonop" / "hack"))

import generate_manifests  # noqa: E402

REGENERATE = "python charts/tritonop/hack/generate_manifests.py"


@pytest.fixture(scope="module")
def helm() -> str:
    return str(bin_dir() / "helm")


@pytest.fixture(scope="module")
def expected(helm: str) -> dict[Path, str]:
    return generate_manifests.expected_files(helm=helm)


def test_generated_files_are_current(expected: dict[Path, str]) -> None:
    stale = [str(path.relative_to(ROOT)) for path in generate_manifests.stale_files(expected)]
    assert not stale, f"stale generated files {stale}: run {REGENERATE}"


def test_generation_is_stable(helm: str, expected: dict[Path, str]) -> None:
    """Two renders give identical bytes: nothing random, no timestamps."""
    assert generate_manifests.expected_files(helm=helm) == expected


def test_kubectl_kustomize_builds_the_install() -> None:
    """What `kubectl apply -k manifests/` would send: every object, nothing more."""
    result = subprocess.run(
        [str(bin_dir() / "kubectl"), "kustomize", str(MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    built = [obj for obj in yaml.safe_load_all(result.stdout) if obj]
    key = lambda obj: (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, built)) == sorted(map(key, generate_manifests.install_objects()))
