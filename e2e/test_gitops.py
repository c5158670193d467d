"""GitOps: the user's manifests (the CRD and every example) applied twice change nothing, and once
the operator has reconciled them `kubectl diff --server-side` is empty — the operator never writes
to objects or fields the user's manifests own (in particular not to InferenceService spec)."""

from __future__ import annotations

import json
from typing import Any

import yaml

from e2e.harness import ROOT, OperatorProcess, Tools
from e2e.polling import wait_until
from e2e.services import EXAMPLES

SYNC = ("--server-side", "--field-manager", "gitops-sync")


def example_documents() -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in sorted(EXAMPLES.glob("*.yaml"))]


def specs(tools: Tools, namespace: str) -> dict[str, tuple[int, Any]]:
    """Generation and spec of each service (status writes bump resourceVersion, not these)."""
    return {
        o["metadata"]["name"]: (o["metadata"]["generation"], o["spec"])
        for o in tools.items("inferenceservices", namespace)
    }


def reconciled(tools: Tools, namespace: str, names: set[str]) -> bool:
    found = {o["metadata"]["name"]: o for o in tools.items("inferenceservices", namespace)}
    return names <= found.keys() and all(
        (found[n].get("status") or {}).get("observedGeneration")
        == found[n]["metadata"]["generation"]
        for n in names
    )


def test_examples_sync_idempotently_and_show_no_drift_after_reconcile(
    operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    tools = installed
    for secret in ("s3-credentials", "azure-credentials"):
        tools.kubectl("create", "secret", "generic", secret, "-n", namespace, "--from-literal=k=v")
    crd = str(ROOT / "crds")
    examples = str(EXAMPLES)
    tools.kubectl("apply", *SYNC, "-f", crd)
    tools.kubectl("apply", *SYNC, "-n", namespace, "-f", examples)
    names = {d["metadata"]["name"] for d in example_documents()}
    wait_until(lambda: reconciled(tools, namespace, names), 90, "every example to be reconciled")
    before = specs(tools, namespace)

    second = tools.kubectl("apply", *SYNC, "-n", namespace, "-f", examples)
    assert all(line.endswith("serverside-applied") for line in second.stdout.splitlines()), (
        second.stdout
    )
    assert specs(tools, namespace) == before, "a second sync changed InferenceServices"

    for target in (["-f", crd], ["-n", namespace, "-f", examples]):
        diff = tools.kubectl("diff", *SYNC, *target, check=False)
        assert diff.returncode == 0, (
            f"drift after the operator reconciled:\n{diff.stdout}{diff.stderr}"
        )

    listed = tools.kubectl(
        "get", "inferenceservices", "-n", namespace, "-o", "json", "--show-managed-fields"
    )
    for obj in json.loads(listed.stdout)["items"]:
        spec_managers = {
            entry["manager"]
            for entry in obj["metadata"].get("managedFields") or []
            if "f:spec" in (entry.get("fieldsV1") or {})
        }
        assert spec_managers == {"gitops-sync"}, (
            f"{obj['metadata']['name']}: spec written by {spec_managers}"
        )
        status_managers = {
            entry["manager"]
            for entry in obj["metadata"].get("managedFields") or []
            if entry.get("subresource") == "status"
        }
        assert status_managers == {"tritonop"}, status_managers
