"""Session fixtures of the e2e suite: one real control plane, the CRDs and the chart's RBAC, and
the operator running as its own ServiceAccount.

`TRITONOP_E2E_KUBECONFIG=<path>` points the suite at any other cluster (kind, a GPU cluster);
then nothing is started or stopped, and the tests that need this machine's simulated nodes or
audit log are skipped with the reason (they are `kwok_only`).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from e2e.cluster import LocalCluster
from e2e.cluster.processes import is_running
from e2e.harness import (
    OPERATOR_ACCOUNT,
    OPERATOR_NAMESPACE,
    OperatorProcess,
    Tools,
    bin_dir,
    install_crds_and_rbac,
)
from e2e.polling import wait_until

if TYPE_CHECKING:  # the data plane's imports are heavy; only its tests need them
    from e2e.tritonsim.podrunner import PodRunner

EXTERNAL = os.environ.get("TRITONOP_E2E_KUBECONFIG")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kwok_only: needs the local KWOK cluster (fake nodes, audit log)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not EXTERNAL:
        return
    skip = pytest.mark.skip(
        reason="needs the local KWOK control plane (TRITONOP_E2E_KUBECONFIG is set)"
    )
    for item in items:
        if "kwok_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def cluster(work_dir: Path) -> Iterator[LocalCluster | None]:
    """The local control plane (None when TRITONOP_E2E_KUBECONFIG names another cluster).

    Its teardown checks that `down()` left none of the cluster's processes running: the
    guarantee every later session on this machine relies on.
    """
    if EXTERNAL:
        yield None
        return
    # A state directory of its own, so a cluster started by hand (e2e/cluster/up) or another
    # suite on the same machine is never touched.
    state = os.environ.get("TRITONOP_E2E_STATE_DIR") or str(work_dir / "cluster")
    local = LocalCluster(state, die_with_parent=True)
    try:
        local.up()
        yield local
    finally:
        started = local.processes()
        try:
            local.dump_logs(work_dir / "cluster-logs")
        finally:
            local.down()
    survivors = {name: p["pid"] for name, p in started.items() if is_running(p)}
    assert not survivors, f"LocalCluster.down() left processes running: {survivors}"


@pytest.fixture(scope="session")
def tools(cluster: LocalCluster | None) -> Tools:
    path = f"{bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}"
    kubeconfig = cluster.kubeconfig if cluster is not None else Path(str(EXTERNAL))
    return Tools(kubeconfig=kubeconfig, path=path)


@pytest.fixture(scope="session")
def installed(tools: Tools) -> Tools:
    """CRDs from crds/ and the operator's RBAC from the chart, applied like a user would."""
    install_crds_and_rbac(tools)
    return tools


@pytest.fixture(scope="session")
def operator_kubeconfig(installed: Tools, cluster: LocalCluster | None, work_dir: Path) -> Path:
    """A kubeconfig that authenticates as the operator's ServiceAccount (RBAC enforced)."""
    path = work_dir / "operator.kubeconfig"
    if cluster is not None:
        return cluster.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, path)
    token = installed.kubectl(
        "create", "token", OPERATOR_ACCOUNT, "-n", OPERATOR_NAMESPACE, "--duration=6h"
    ).stdout.strip()
    view = installed.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout
    config = json.loads(view)
    config["users"] = [{"name": "operator", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "operator"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="session")
def operator(operator_kubeconfig: Path, work_dir: Path) -> Iterator[OperatorProcess]:
    """The operator, running for the whole session (tests that stop it start it again)."""
    process = OperatorProcess(kubeconfig=operator_kubeconfig, log_path=work_dir / "operator.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()
        print(f"\noperator log: {process.log_path}")


def fresh_namespace(tools: Tools, name: str) -> Iterator[str]:
    """Create a namespace, wait until pods can be created in it, yield it, then delete it
    without waiting (the garbage collector does the rest)."""
    tools.kubectl("create", "namespace", name)
    wait_until(
        lambda: tools.get("serviceaccount", "default", name),
        30,
        f"default ServiceAccount in {name}",
    )
    yield name
    tools.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(installed: Tools, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the garbage collector does the rest)."""
    base = request.node.name.lower().replace("_", "-")[:40].strip("-")
    yield from fresh_namespace(installed, f"{base}-{uuid.uuid4().hex[:5]}")


# ------------------------------------------------------------------------------ data plane
# (e2e/README.md, "Readiness"): tritonop pods in `dataplane-*` namespaces are served by Triton
# emulators and become Ready only when their emulator has loaded; every other test keeps
# KWOK's instant readiness and never needs the pod runner.


@pytest.fixture(scope="session")
def podrunner(cluster: LocalCluster | None, work_dir: Path) -> Iterator[PodRunner]:
    """One Triton server per Running tritonop pod in `dataplane-*` namespaces (session-wide):
    the emulator, or real tritonserver for services a test configures with
    `PodSettings(server=Server.TRITONSERVER)` (their logs under `<work dir>/podrunner/`).

    It plays the kubelet for those pods: each is marked Ready once its server is ready.
    Needs this machine's KWOK cluster (pod IPs on 127.0.0.0/8).
    """
    if cluster is None:
        pytest.skip("the data plane needs the local KWOK cluster (loopback pod IPs)")
    from e2e.dataplane import start_pod_runner

    runner = start_pod_runner(cluster.kubeconfig, work_dir=work_dir / "podrunner")
    try:
        yield runner
    finally:
        runner.stop()


@pytest.fixture
def dataplane_namespace(installed: Tools, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh `dataplane-*` namespace (its pods wait for the pod runner to become Ready)."""
    from e2e.dataplane import DATAPLANE_PREFIX

    base = request.node.name.lower().replace("_", "-").removeprefix("test-")[:30].strip("-")
    yield from fresh_namespace(installed, f"{DATAPLANE_PREFIX}{base}-{uuid.uuid4().hex[:5]}")
