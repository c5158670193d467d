"""Find helm and render the chart: shared by the generator scripts and the chart tests.

Why a module: the manifest generator and the unit tests must render the chart in exactly the
same way (same helm binary, same pinned Kubernetes version, same release name and namespace),
or the staleness test would compare two different things.

helm comes from the project's pinned build first (`e2e/cluster/build --print-bin-dir`), then
from PATH. When neither has it, HelmNotFoundError says how to build it; callers fail loudly
instead of skipping, because an unchecked chart is a broken chart waiting to ship.

Standard library + PyYAML only, so it runs before anything else of the project is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
CHART_DIR = REPO_ROOT / "charts" / "tritonop"
BUILD_SCRIPT = REPO_ROOT / "e2e" / "cluster" / "build"

#: Kubernetes version given to `helm template`/`helm lint`, so the output does not depend on
#: the version a particular helm binary was stamped with (a go-installed helm defaults to 1.20,
#: below the chart's kubeVersion). Matches the e2e cluster's minor release.
KUBE_VERSION = "1.36.0"

#: Release and namespace of the plain manifests in manifests/ (what `kubectl apply -k` installs).
RELEASE = "tritonop"
NAMESPACE = "tritonop-system"

HELM_MISSING = (
    "helm is not available: run `e2e/cluster/build` (it builds the pinned helm into the "
    "project cache; `e2e/cluster/build --print-bin-dir` prints its directory), or put helm "
    "on PATH."
)


class HelmNotFoundError(RuntimeError):
    """No helm binary: neither the project's pinned build nor one on PATH."""


class HelmError(RuntimeError):
    """helm ran and failed; the message carries its stderr."""


def find_helm() -> str:
    """Path of the helm binary: the pinned build first, then PATH."""
    if BUILD_SCRIPT.exists():
        try:
            result = subprocess.run(
                [sys.executable, str(BUILD_SCRIPT), "--print-bin-dir"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except subprocess.TimeoutExpired:
            result = None
        if result is not None and result.returncode == 0:
            candidate = Path(result.stdout.strip()) / "helm"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    on_path = shutil.which("helm")
    if on_path:
        return on_path
    raise HelmNotFoundError(HELM_MISSING)


def run_helm(arguments: Sequence[str], *, helm: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run helm with a scratch HOME-independent config, returning the completed process.

    helm keeps caches and repository config under XDG directories; pointing them at a
    temporary directory keeps a test run from reading or writing the user's helm setup.
    """
    binary = helm or find_helm()
    with tempfile.TemporaryDirectory(prefix="tritonop-helm-") as scratch:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": f"{scratch}/cache",
            "HELM_CONFIG_HOME": f"{scratch}/config",
            "HELM_DATA_HOME": f"{scratch}/data",
        }
        return subprocess.run(
            [binary, *arguments], capture_output=True, text=True, env=env, timeout=120, check=False
        )


def template_text(
    values: Mapping[str, Any] | None = None,
    *,
    set_values: Sequence[str] = (),
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    include_crds: bool = False,
    chart_dir: Path = CHART_DIR,
    show_only: str | None = None,
    helm: str | None = None,
) -> str:
    """`helm template` of the chart as text; raises HelmError when helm rejects the values."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="values-") as values_file:
        yaml.safe_dump(dict(values or {}), values_file)
        values_file.flush()
        arguments = [
            "template",
            release,
            str(chart_dir),
            "--namespace",
            namespace,
            "--kube-version",
            KUBE_VERSION,
            "--values",
            values_file.name,
        ]
        for assignment in set_values:
            arguments += ["--set", assignment]
        if include_crds:
            arguments.append("--include-crds")
        if show_only:
            arguments += ["--show-only", show_only]
        result = run_helm(arguments, helm=helm)
    if result.returncode != 0:
        raise HelmError(result.stderr.strip() or result.stdout.strip())
    return result.stdout


def template(
    values: Mapping[str, Any] | None = None,
    *,
    set_values: Sequence[str] = (),
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    include_crds: bool = False,
    chart_dir: Path = CHART_DIR,
    helm: str | None = None,
) -> list[dict[str, Any]]:
    """`helm template` of the chart as a list of objects (empty documents dropped)."""
    text = template_text(
        values,
        set_values=set_values,
        release=release,
        namespace=namespace,
        include_crds=include_crds,
        chart_dir=chart_dir,
        helm=helm,
    )
    return [document for document in yaml.safe_load_all(text) if document]


def render_notes(values: Mapping[str, Any] | None = None, *, helm: str | None = None) -> str:
    """The chart's NOTES.txt rendered with the given values.

    `helm template` never prints NOTES.txt and `helm install --dry-run` wants a cluster, so a
    scratch copy of the chart gets one extra template that includes NOTES.txt (every template
    file is also a named template) as a JSON string.
    """
    with tempfile.TemporaryDirectory(prefix="tritonop-notes-") as scratch:
        chart_copy = Path(scratch) / CHART_DIR.name
        shutil.copytree(CHART_DIR, chart_copy, ignore=shutil.ignore_patterns("hack", "__pycache__"))
        probe = chart_copy / "templates" / "notes-probe.yaml"
        probe.write_text(
            'notes: {{ include (printf "%s/NOTES.txt" $.Template.BasePath) . | toJson }}\n'
        )
        text = template_text(
            values, chart_dir=chart_copy, show_only="templates/notes-probe.yaml", helm=helm
        )
    return str(yaml.safe_load(text)["notes"])
