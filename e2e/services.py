"""InferenceService helpers for e2e tests: build, read and wait on services and their pods."""

from __future__ import annotations

import base64
import copy
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from e2e.harness import ROOT, Tools
from e2e.polling import WaitTimeout, wait_until

EXAMPLES = ROOT / "manifests" / "examples"
SELECTOR = "app.kubernetes.io/name=triton,app.kubernetes.io/instance={name}"


def example(file: str, name: str | None = None) -> dict[str, Any]:
    """An example from manifests/examples, optionally renamed."""
    document = yaml.safe_load((EXAMPLES / file).read_text())
    if name:
        document["metadata"]["name"] = name
    return dict(document)


def service(name: str, **spec: Any) -> dict[str, Any]:
    """A small InferenceService; `spec` overrides the defaults (a CPU-free H100 service)."""
    body: dict[str, Any] = {
        "modelRepository": {"uri": "s3://models/triton"},
        "models": ["simple"],
        "gpu": {"count": 1, "products": ["NVIDIA-H100-80GB-HBM3"]},
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
    }
    body.update(copy.deepcopy(spec))
    return {
        "apiVersion": "tritonop.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": body,
    }


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return {}


def wait_condition(
    tools: Tools,
    namespace: str,
    name: str,
    kind: str,
    status: str,
    reason: str | None = None,
    timeout: float = 60,
) -> dict[str, Any]:
    """Wait until the service's condition `kind` has `status` (and `reason`); returns the object."""

    def probe() -> dict[str, Any] | None:
        obj = tools.get("tis", name, namespace)
        found = condition(obj, kind)
        if found.get("status") == status and (reason is None or found.get("reason") == reason):
            return obj
        return None

    try:
        return wait_until(probe, timeout, f"{namespace}/{name} {kind}={status} {reason or ''}")
    except WaitTimeout as error:
        raise WaitTimeout(
            f"{error}\nlast status: {(tools.get('tis', name, namespace) or {}).get('status')}"
        ) from None


def events(tools: Tools, namespace: str, name: str) -> list[dict[str, Any]]:
    """The Events posted on an InferenceService."""
    return [
        e
        for e in tools.items("events", namespace)
        if e["involvedObject"].get("name") == name
        and e["involvedObject"].get("kind") == "InferenceService"
    ]


def event_reasons(tools: Tools, namespace: str, name: str) -> set[str]:
    return {e["reason"] for e in events(tools, namespace, name)}


def pods(tools: Tools, namespace: str, name: str) -> list[dict[str, Any]]:
    return [
        p
        for p in tools.items("pods", namespace, SELECTOR.format(name=name))
        if not p["metadata"].get("deletionTimestamp")
    ]


def running_pods(
    tools: Tools, namespace: str, name: str, count: int, timeout: float = 60
) -> list[dict[str, Any]]:
    """Wait until exactly `count` pods of the service run (on their final template)."""

    def probe() -> list[dict[str, Any]] | None:
        found = pods(tools, namespace, name)
        running = [p for p in found if p["status"].get("phase") == "Running"]
        return running if len(running) == count == len(found) else None

    return wait_until(probe, timeout, f"{count} running pods of {namespace}/{name}")


def secret_version(tools: Tools, namespace: str, name: str) -> str | None:
    """The credentials Secret's version the service's pod template carries (it rolls on it)."""
    deployment = tools.get("deployment", name, namespace) or {}
    template = (deployment.get("spec") or {}).get("template") or {}
    found = (
        (template.get("metadata") or {}).get("annotations", {}).get("tritonop.io/secret-version")
    )
    return None if found is None else str(found)


def rotate_and_wait_for_the_roll(
    tools: Tools, namespace: str, name: str, secret: str, timeout: float = 60
) -> None:
    """Change one key of the service's credentials Secret, then wait until the pod template
    carries the Secret's new version and the service's one pod has been replaced."""
    before = secret_version(tools, namespace, name)
    first_pod = running_pods(tools, namespace, name, 1)[0]["metadata"]["name"]
    tools.kubectl(
        "patch", "secret", secret, "-n", namespace, "-p", '{"stringData": {"ROTATED": "yes"}}'
    )
    wait_until(
        lambda: secret_version(tools, namespace, name) != before,
        timeout,
        "the pod template to carry the Secret's new version",
    )
    wait_until(
        lambda: [
            p
            for p in running_pods(tools, namespace, name, 1, timeout=5)
            if p["metadata"]["name"] != first_pod
        ],
        90,
        "the pods to roll",
    )


def create_service_with_credentials(tools: Tools, namespace: str) -> None:
    """A CPU service `creds` whose model repository names the credentials Secret `s3`
    (created here), once it is Ready."""
    tools.kubectl(
        "create", "secret", "generic", "s3", "-n", namespace, "--from-literal=AWS_ACCESS_KEY_ID=a"
    )
    repository = {"uri": "s3://models/triton", "secretRef": {"name": "s3"}}
    tools.apply([service("creds", gpu={"count": 0}, modelRepository=repository)], namespace)
    wait_condition(tools, namespace, "creds", "Ready", "True", timeout=90)


#: The data of an unrelated Secret: 750 000 random bytes, 1 000 000 characters of base64 (the
#: API server stores and serves it as 1 MB).
UNRELATED_SECRET_BYTES = 750_000


def create_unrelated_secrets(cluster: Any, namespace: str, count: int) -> float:
    """Create `count` 1 MB Secrets (random data) in `namespace` as admin, four at a time, for
    what the operator must not pay for; returns the seconds taken."""
    started = time.monotonic()

    def create(index: int) -> None:
        data = base64.b64encode(os.urandom(UNRELATED_SECRET_BYTES)).decode()
        cluster.api(
            "POST",
            f"/api/v1/namespaces/{namespace}/secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"unrelated-{index:03d}"},
                "data": {"blob": data},
            },
            timeout=60,
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(create, range(count)))
    return time.monotonic() - started


def write_file(path: Path, documents: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path
