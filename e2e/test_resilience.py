"""Writes and restarts: an idle operator is silent, restarts converge without duplicates, and the
operator survives an API server restart. Counts come from the API server's audit log, filtered
to the operator's ServiceAccount.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from e2e.harness import OPERATOR_USER, WRITE_VERBS, OperatorProcess, Tools
from e2e.polling import wait_until
from e2e.services import service, wait_condition

pytestmark = pytest.mark.kwok_only


def operator_writes(cluster: Any, since: int) -> list[dict[str, Any]]:
    """The operator's writes after the first `since` of them."""
    return list(cluster.audit_events(user=OPERATOR_USER, verbs=WRITE_VERBS))[since:]


def describe(writes: list[dict[str, Any]], detail: bool = False) -> Counter[str]:
    def one(write: dict[str, Any]) -> str:
        ref = write["objectRef"]
        text = f"{write['verb']} {ref.get('resource')}" + (
            f"/{ref['subresource']}" if ref.get("subresource") else ""
        )
        return f"{text} {ref.get('namespace')}/{ref.get('name')}" if detail else text

    return Counter(one(w) for w in writes)


def quiet_cluster(tools: Tools) -> bool:
    """No namespace of an earlier test is still being torn down (that is activity, not idling)."""
    return not any(n["status"].get("phase") == "Terminating" for n in tools.items("namespaces"))


def reconciles(operator: OperatorProcess, trigger: str, *results: str) -> float:
    """The operator's count of reconciles by `trigger` that ended in one of `results` ("ok":
    reconciled; "unchanged": stopped at the status digest, drift.py)."""
    total = 0.0
    for line in operator.metrics().splitlines():
        if (
            line.startswith("tritonop_reconciles_total{")
            and f'trigger="{trigger}"' in line
            and any(f'result="{result}"' in line for result in results or ("ok",))
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


#: Operator-mode services in the idle/restart check: their autoscaling loops run (every scrape
#: fails: nothing serves their pods' :8002, so the policy holds) and must write nothing either.
AUTOSCALED = 20
AUTOSCALING = {"mode": "Operator", "minReplicas": 1, "maxReplicas": 3, "targets": {"queueDepth": 4}}
#: How long after a restart writes are counted: past the loops' 30 s status period
#: (STATUS_METRICS_PERIOD_SECONDS), when a loop that only saw new numbers would write them.
AFTER_RESTART_S = 40


def test_idle_operator_and_restart_write_nothing(
    cluster: Any, operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    tools = installed
    scaled = [f"scaled-{i:02d}" for i in range(AUTOSCALED)]
    tools.apply(
        [
            service("quiet-a", gpu={"count": 0}, replicas=2),
            service("quiet-b"),
            *(service(name, gpu={"count": 0}, autoscaling=AUTOSCALING) for name in scaled),
        ],
        namespace,
    )
    for name in ("quiet-a", "quiet-b", *scaled):
        wait_condition(tools, namespace, name, "Ready", "True", timeout=90)
    for name in scaled:  # the loops have run: their verdict on the missing metrics is written
        wait_condition(tools, namespace, name, "ScalingActive", "False", "MissingMetrics", 30)
    wait_until(lambda: quiet_cluster(tools), 180, "earlier tests' namespaces to be deleted")
    # Let trailing status updates of the rollout land before counting.
    settled = len(operator_writes(cluster, 0))
    wait_until(
        lambda: len(operator_writes(cluster, 0)) == settled or None,
        5,
        "writes to settle",
        interval=2,
    )
    start = len(operator_writes(cluster, 0))
    started = time.monotonic()
    while time.monotonic() - started < 60:  # the idle interval under test
        assert operator.healthy()
        time.sleep(5)
    idle = operator_writes(cluster, start)
    assert idle == [], f"idle operator wrote: {describe(idle, detail=True)}"

    before = len(operator_writes(cluster, 0))
    total = len(
        [o for o in tools.items("inferenceservices") if not o["metadata"].get("deletionTimestamp")]
    )
    operator.restart()
    restarted = time.monotonic()
    wait_until(
        lambda: reconciles(operator, "resume", "ok", "unchanged") >= total,
        60,
        "every service to be resumed",
    )
    # The services whose status digest vouches for them are not reconciled again: all of this
    # test's but quiet-a, whose create scaled its Deployment (no digest: drift.py).
    assert reconciles(operator, "resume", "unchanged") >= AUTOSCALED + 1
    while time.monotonic() - restarted < AFTER_RESTART_S:
        assert operator.healthy()
        time.sleep(2)
    after = operator_writes(cluster, before)
    to_children = [w for w in after if w["objectRef"].get("resource") != "inferenceservices"]
    assert to_children == [], f"restart wrote to children: {describe(to_children, detail=True)}"
    to_status = [w for w in after if w["objectRef"].get("subresource") == "status"]
    assert to_status == [], f"restart rewrote status: {describe(to_status, detail=True)}"
    # kopf's own bookkeeping is the only thing allowed on InferenceServices; report it.
    print(f"\nwrites after restart (kopf bookkeeping only): {dict(describe(after))}")


def test_kill_midway_through_twenty_services_converges(
    operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    tools = installed
    names = [f"svc-{i:02d}" for i in range(20)]
    tools.apply([service(n, gpu={"count": 0}) for n in names], namespace)
    wait_until(lambda: len(tools.items("deployments", namespace)) >= 5, 60, "the first deployments")
    operator.kill()
    operator.start()
    for name in names:
        wait_condition(tools, namespace, name, "Ready", "True", timeout=120)
    deployments = tools.items("deployments", namespace)
    services = tools.items("services", namespace)
    budgets = tools.items("poddisruptionbudgets", namespace)
    for kind, objects in (
        ("Deployment", deployments),
        ("Service", services),
        ("PodDisruptionBudget", budgets),
    ):
        assert sorted(o["metadata"]["name"] for o in objects) == names, kind
        for obj in objects:
            owners = obj["metadata"].get("ownerReferences") or []
            assert len(owners) == 1 and owners[0]["name"] == obj["metadata"]["name"], obj[
                "metadata"
            ]["name"]
    replica_sets = Counter(
        rs["metadata"]["ownerReferences"][0]["name"] for rs in tools.items("replicasets", namespace)
    )
    assert all(count == 1 for count in replica_sets.values()), replica_sets
    pods = tools.items("pods", namespace)
    assert len([p for p in pods if not p["metadata"].get("deletionTimestamp")]) == 20


def test_operator_reconnects_after_apiserver_restart(
    cluster: Any, operator: OperatorProcess, installed: Tools, namespace: str
) -> None:
    tools = installed
    tools.apply([service("before", gpu={"count": 0})], namespace)
    wait_condition(tools, namespace, "before", "Ready", "True", timeout=90)
    cluster.restart_apiserver()
    tools.apply([service("after", gpu={"count": 0})], namespace)
    wait_condition(tools, namespace, "after", "Ready", "True", timeout=120)
    tools.kubectl("scale", "tis/before", "--replicas", "2", "-n", namespace)
    wait_until(
        lambda: (
            (tools.get("deployment", "before", namespace) or {}).get("spec", {}).get("replicas")
            == 2
        ),
        60,
        "the change after the restart to be reconciled",
    )
    assert operator.healthy()
