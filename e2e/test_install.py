"""Installing tritonop the ways users do, on the real API server: Helm and plain manifests.

- `helm install`, `helm upgrade` (a no-op upgrade writes nothing; going from 2 replicas with kopf
  peering to 1 removes the peering object and the PDB) and `helm uninstall` (the CRD stays).
- Namespaced mode: the ServiceAccount can do its job in the watched namespaces and nothing
  in the others, asked of the API server's own authorizer (`kubectl auth can-i --as`).
- GitOps: `kubectl apply --server-side -k manifests/` twice changes nothing the second time,
  and `kubectl diff` then reports no drift, as Argo CD and Flux would see it. (That rendering
  the chart is byte-stable is a unit test: tests/test_manifests.py.)

The operator pods here are KWOK pods (nothing runs in them), hence `kwok_only`; the operator
under test in the rest of the suite is a local process, so these releases use their own names.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from e2e.harness import OPERATOR_NAMESPACE, ROOT, Tools
from e2e.polling import wait_until

pytestmark = pytest.mark.kwok_only

CHART = str(ROOT / "charts" / "tritonop")
MANIFESTS = str(ROOT / "manifests")
CRD = "inferenceservices.tritonop.io"
PEERING_CRDS = ("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev")


def can_i(tools: Tools, account: str, verb: str, resource: str, namespace: str | None) -> bool:
    """The API server's answer to "may this ServiceAccount do that?"."""
    where = ["-n", namespace] if namespace else []
    result = tools.kubectl("auth", "can-i", verb, resource, "--as", account, *where, check=False)
    return result.stdout.strip() == "yes"


def resource_versions(tools: Tools, documents: list[dict[str, Any]]) -> dict[str, str]:
    """kind/namespace/name -> resourceVersion, read back from the server."""
    versions = {}
    for document in documents:
        metadata = document["metadata"]
        live = tools.get(document["kind"], metadata["name"], metadata.get("namespace"))
        assert live is not None, f"{document['kind']} {metadata['name']} missing"
        key = f"{document['kind']}/{metadata.get('namespace', '')}/{metadata['name']}"
        versions[key] = live["metadata"]["resourceVersion"]
    return versions


def release_objects(tools: Tools, release: str, namespace: str) -> list[dict[str, Any]]:
    manifest = tools.helm("get", "manifest", release, "-n", namespace).stdout
    return [document for document in yaml.safe_load_all(manifest) if document]


def deployment_ready(tools: Tools, name: str, namespace: str, replicas: int) -> bool:
    deployment = tools.get("deployment", name, namespace)
    return deployment is not None and deployment.get("status", {}).get("readyReplicas") == replicas


def container_env(deployment: dict[str, Any]) -> dict[str, str | None]:
    """The operator container's environment as the API server stored it."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def helm_install(tools: Tools, release: str, namespace: str, *values: str) -> None:
    """`helm install --wait` of the chart with `--set` for each of `values`."""
    sets = [argument for value in values for argument in ("--set", value)]
    tools.helm("install", release, CHART, "-n", namespace, *sets, "--wait", "--timeout", "180s")


def uninstall(tools: Tools, release: str, namespace: str) -> None:
    """`helm uninstall --wait`, in a test's cleanup (a failure there is not the test's)."""
    tools.helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "120s", check=False)


def adopt_crd_if_unowned(tools: Tools, release: str, namespace: str) -> bool:
    """Let `release` take over the CRD the suite applied with kubectl (Helm's adoption rule).

    Returns False when another Helm release owns it already; the caller then leaves the CRD out.
    """
    crd = tools.get("crd", CRD)
    if crd is None:
        return True
    owner = (crd["metadata"].get("annotations") or {}).get("meta.helm.sh/release-name")
    if owner not in (None, release):
        return False
    tools.kubectl("label", "crd", CRD, "app.kubernetes.io/managed-by=Helm", "--overwrite")
    tools.kubectl(
        "annotate",
        "crd",
        CRD,
        f"meta.helm.sh/release-name={release}",
        f"meta.helm.sh/release-namespace={namespace}",
        "--overwrite",
    )
    return True


@pytest.fixture
def release_namespace(installed: Tools) -> Iterator[str]:
    """A fresh namespace for a Helm release (the last one may still be terminating)."""
    name = f"tritonop-helm-{uuid.uuid4().hex[:5]}"
    installed.kubectl("create", "namespace", name)
    yield name
    installed.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_helm_install_upgrade_uninstall(installed: Tools, release_namespace: str) -> None:
    tools = installed
    release = "tritonop-install"
    account = f"system:serviceaccount:{release_namespace}:{release}"
    peering_crds_before = {name for name in PEERING_CRDS if tools.get("crd", name)}
    with_crd = adopt_crd_if_unowned(tools, release, release_namespace)
    try:
        helm_install(
            tools,
            release,
            release_namespace,
            "replicaCount=2",
            f"crds.enabled={str(with_crd).lower()}",
        )
        assert deployment_ready(tools, release, release_namespace, 2)
        # kopf peering: its CRDs (Helm's crds/ folder) existed before the peering object was built.
        assert {name for name in PEERING_CRDS if tools.get("crd", name)} == set(PEERING_CRDS)
        peering = tools.get("clusterkopfpeering", release)
        assert peering is not None, f"ClusterKopfPeering {release} missing"
        pdb = tools.get("poddisruptionbudget", release, release_namespace)
        assert pdb is not None and pdb["spec"]["minAvailable"] == 1
        if with_crd:
            crd = tools.get("crd", CRD)
            assert crd is not None
            assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

        # The ServiceAccount may do what the operator does, and no more.
        assert can_i(tools, account, "patch", "inferenceservices.tritonop.io", "default")
        assert can_i(tools, account, "patch", "inferenceservices.tritonop.io/status", "default")
        assert can_i(tools, account, "create", "deployments.apps", "default")
        assert can_i(tools, account, "list", "nodes", None)
        assert can_i(tools, account, "patch", "clusterkopfpeerings.kopf.dev", None)
        assert not can_i(tools, account, "delete", "deployments.apps", "default")
        assert not can_i(tools, account, "create", "pods", "default")
        assert not can_i(tools, account, "update", "secrets", "default")

        # An upgrade with the same values writes nothing.
        objects = release_objects(tools, release, release_namespace)
        before = resource_versions(tools, objects)
        tools.helm(
            "upgrade",
            release,
            CHART,
            "-n",
            release_namespace,
            "--reuse-values",
            "--wait",
            "--timeout",
            "180s",
        )
        assert resource_versions(tools, objects) == before

        # Down to one replica: no peering, no PDB, and a rollout that never overlaps operators.
        tools.helm(
            "upgrade", release, CHART, "-n", release_namespace, "--reuse-values",
            "--set", "replicaCount=1", "--wait", "--timeout", "180s",
        )  # fmt: skip
        wait_until(
            lambda: deployment_ready(tools, release, release_namespace, 1),
            60,
            "one operator replica",
        )
        assert tools.get("clusterkopfpeering", release) is None
        assert tools.get("poddisruptionbudget", release, release_namespace) is None
        deployment = tools.get("deployment", release, release_namespace)
        assert deployment is not None and deployment["spec"]["strategy"]["type"] == "Recreate"
        env = container_env(deployment)
        assert not env["TRITONOP_PEERING"]  # the API server drops the empty value
    finally:
        uninstall(tools, release, release_namespace)

    # Uninstalled: the operator's objects are gone, the CRD (and every InferenceService) stays.
    assert tools.get("deployment", release, release_namespace) is None
    assert tools.get("clusterrole", release) is None
    assert tools.get("serviceaccount", release, release_namespace) is None
    assert tools.get("crd", CRD) is not None
    if not peering_crds_before:
        # Helm never deletes what it created from crds/.
        assert all(tools.get("crd", name) for name in PEERING_CRDS)


def test_namespaced_install_grants_only_the_watched_namespaces(
    installed: Tools, namespace: str, release_namespace: str
) -> None:
    tools = installed
    release = "tritonop-scoped"
    other = f"{namespace[:50]}-b"
    tools.kubectl("create", "namespace", other)
    account = f"system:serviceaccount:{release_namespace}:{release}"
    try:
        helm_install(
            tools,
            release,
            release_namespace,
            "crds.enabled=false",
            f"watchNamespaces={{{namespace},{other}}}",
        )
        for watched in (namespace, other):
            assert can_i(tools, account, "patch", "inferenceservices.tritonop.io", watched)
            assert can_i(tools, account, "create", "deployments.apps", watched)
            assert can_i(tools, account, "watch", "pods", watched)
        for unwatched in ("default", release_namespace):
            assert not can_i(tools, account, "patch", "inferenceservices.tritonop.io", unwatched)
            assert not can_i(tools, account, "list", "pods", unwatched)
            assert not can_i(tools, account, "list", "secrets", unwatched)
        # Cluster-scoped reads stay clusterwide; nothing namespaced is granted clusterwide.
        assert can_i(tools, account, "list", "nodes", None)
        assert can_i(
            tools, account, "watch", "customresourcedefinitions.apiextensions.k8s.io", None
        )
        assert not can_i(tools, account, "list", "inferenceservices.tritonop.io", None)
        deployment = tools.get("deployment", release, release_namespace)
        assert deployment is not None
        env = container_env(deployment)
        assert env["TRITONOP_NAMESPACES"] == f"{namespace},{other}"
    finally:
        uninstall(tools, release, release_namespace)
        tools.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_plain_manifests_apply_idempotently(installed: Tools) -> None:
    """What a GitOps controller does on every sync: apply, then find nothing to change."""
    tools = installed
    built = tools.kubectl("kustomize", MANIFESTS).stdout
    documents = [document for document in yaml.safe_load_all(built) if document]
    apply = ("apply", "--server-side", "--field-manager", "gitops-sync", "-k", MANIFESTS)
    try:
        tools.kubectl(*apply)
        wait_until(
            lambda: deployment_ready(tools, "tritonop", OPERATOR_NAMESPACE, 1),
            120,
            "operator Deployment",
        )
        first = resource_versions(tools, documents)
        tools.kubectl(*apply)
        assert resource_versions(tools, documents) == first, "a second apply changed objects"
        diff = tools.kubectl(
            "diff", "--server-side", "--field-manager", "gitops-sync", "-k", MANIFESTS, check=False
        )
        assert diff.returncode == 0, f"kubectl diff reports drift:\n{diff.stdout}{diff.stderr}"
    finally:
        # Remove what the suite's own setup does not use; keep its ServiceAccount, RBAC and CRD.
        for kind, name in (("deployment", "tritonop"), ("service", "tritonop-metrics")):
            tools.kubectl(
                "delete", kind, name, "-n", OPERATOR_NAMESPACE, "--ignore-not-found", check=False
            )
        tools.kubectl(
            "label",
            "namespace",
            OPERATOR_NAMESPACE,
            "pod-security.kubernetes.io/enforce-",
            check=False,
        )
