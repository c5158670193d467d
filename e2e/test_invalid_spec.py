"""A spec that got past admission (it predates a stricter CRD) is reported, not retried in a loop:
Ready=False with reason InvalidSpec, one Event, no children. Fixing the spec heals the service."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.harness import OPERATOR_USER, ROOT, WRITE_VERBS, OperatorProcess, Tools
from e2e.services import condition, service, wait_condition

pytestmark = pytest.mark.kwok_only
CRD = "inferenceservices.tritonop.io"


@pytest.fixture
def permissive_crd(installed: Tools) -> Iterator[None]:
    """The CRD with a schema that accepts any spec, as an older, looser release might have had."""
    original = installed.get("crd", CRD)
    assert original is not None
    loose = copy.deepcopy(original)
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        loose["metadata"].pop(key, None)
    loose.pop("status", None)
    schema = loose["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["properties"]["spec"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema.pop("x-kubernetes-validations", None)
    installed.kubectl("replace", "-f", "-", input=json.dumps(loose))
    try:
        yield
    finally:
        installed.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))


def test_invalid_spec_past_admission_is_reported_once(
    cluster: Any, operator: OperatorProcess, installed: Tools, namespace: str, permissive_crd: None
) -> None:
    tools = installed
    bad = service(
        "legacy",
        gpu={"count": -2},
        autoscaling={"minReplicas": 4, "maxReplicas": 2, "targets": {"queueDepth": 1}},
    )
    tools.apply([bad], namespace)
    obj = wait_condition(tools, namespace, "legacy", "Ready", "False", "InvalidSpec", timeout=60)
    message = condition(obj, "Ready")["message"]
    assert "spec.gpu.count" in message and "must be 0 (CPU only)" in message
    assert tools.get("deployment", "legacy", namespace) is None
    events = [e for e in tools.items("events", namespace) if e["reason"] == "InvalidSpec"]
    assert len(events) == 1 and events[0]["type"] == "Warning"

    def writes() -> int:
        return len(
            [
                e
                for e in cluster.audit_events(user=OPERATOR_USER, verbs=WRITE_VERBS)
                if e["objectRef"].get("namespace") == namespace
            ]
        )

    # kopf retries a failing handler after 1, 2, 5 and 10 s; a permanent error must not be
    # retried, so over a window longer than the first three retries nothing more is written.
    settled = writes()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert writes() == settled, "the operator kept writing for an unchanged invalid spec"
        time.sleep(1)

    fixed = service("legacy", gpu={"count": 0})
    tools.apply([fixed], namespace)
    wait_condition(tools, namespace, "legacy", "Ready", "True", timeout=90)
