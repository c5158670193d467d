"""Two operator replicas with kopf peering, configured exactly as the chart configures them
(replicaCount=2): one reconciles, the other stands by, and a stopped active replica hands over."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness import OPERATOR_NAMESPACE, ROOT, OperatorProcess, Tools, wait_established
from e2e.services import service, wait_condition

pytestmark = pytest.mark.kwok_only

#: A clean stop removes the replica's peering record, so the standby resumes at once; the bound
#: leaves room for kopf's peering watch and one reconcile on a loaded 2-core machine.
TAKEOVER_BOUND_S = 20.0
LOCAL_SETTINGS = {"TRITONOP_METRICS_PORT", "TRITONOP_HEALTH_PORT", "TRITONOP_LISTEN_ADDRESS"}


def chart(tools: Tools) -> list[dict[str, Any]]:
    rendered = tools.helm(
        "template", "tritonop", str(ROOT / "charts" / "tritonop"), "--namespace", OPERATOR_NAMESPACE,
        "--set", "replicaCount=2", "--set", "crds.enabled=false", "--include-crds",
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(rendered) if d]


def chart_env(documents: list[dict[str, Any]]) -> dict[str, str]:
    """The operator settings the chart gives its Deployment (without the listen ports)."""
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return {
        e["name"]: str(e["value"]) for e in env if "value" in e and e["name"] not in LOCAL_SETTINGS
    }


def reconciled(process: OperatorProcess) -> float:
    total = 0.0
    for line in process.metrics().splitlines():
        if line.startswith("tritonop_reconciles_total{") and 'result="ok"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def replicas(
    operator: OperatorProcess, installed: Tools, work_dir: Path
) -> Iterator[tuple[OperatorProcess, OperatorProcess]]:
    documents = chart(installed)
    crds = [d for d in documents if d["kind"] == "CustomResourceDefinition"]
    installed.apply(crds, force=True)
    for crd in crds:
        wait_established(installed, crd["metadata"]["name"])
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"}
    installed.apply([d for d in documents if d["kind"] in kinds], force=True)
    env = chart_env(documents)
    assert env["TRITONOP_PEERING"], "the chart must name a peering for two replicas"
    operator.stop()
    first = OperatorProcess(
        operator.kubeconfig, work_dir / "replica-1.log", {**env, "TRITONOP_PEERING_PRIORITY": "200"}
    )
    second = OperatorProcess(
        operator.kubeconfig, work_dir / "replica-2.log", {**env, "TRITONOP_PEERING_PRIORITY": "100"}
    )
    try:
        first.start()
        second.start()
        yield first, second
    finally:
        first.stop()
        second.stop()
        operator.start()


def test_one_replica_reconciles_and_the_other_takes_over(
    replicas: tuple[OperatorProcess, OperatorProcess], installed: Tools, namespace: str
) -> None:
    active, standby = replicas
    installed.apply([service("peer-a", gpu={"count": 0})], namespace)
    wait_condition(installed, namespace, "peer-a", "Ready", "True", timeout=90)
    assert reconciled(active) >= 1
    assert reconciled(standby) == 0, "the standby replica reconciled while the active one ran"

    active.stop()
    stopped = time.monotonic()
    installed.apply([service("peer-b", gpu={"count": 0})], namespace)
    wait_condition(installed, namespace, "peer-b", "Ready", "True", timeout=90)
    takeover = time.monotonic() - stopped
    print(
        f"\nstandby took over and reconciled a new service {takeover:.1f}s after the active replica stopped"
    )
    assert reconciled(standby) >= 1
    assert takeover < TAKEOVER_BOUND_S
    # kopf starts a replica paused and resumes it when no live peer outranks it: the standby
    # applied nothing before the active replica was gone.
    log = standby.log_path.read_text()
    resumed = log.index("Resuming operations after the pause")
    assert "applied " not in log[:resumed]
