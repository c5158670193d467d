"""What the e2e tests drive: kubectl and helm as a user runs them, and the operator as a process
authenticated as its own ServiceAccount.

Everything here waits on conditions with deadlines (`e2e.polling.wait_until`); nothing sleeps a
fixed time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from e2e.cluster.processes import free_ports, log_tail, spawn
from e2e.polling import wait_until

ROOT = Path(__file__).resolve().parents[1]
OPERATOR_NAMESPACE = "tritonop-system"
OPERATOR_ACCOUNT = "tritonop"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def bin_dir() -> Path:
    """The pinned binaries (built by e2e/cluster/build)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "e2e" / "cluster" / "build"), "--print-bin-dir"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"e2e binaries missing: run e2e/cluster/build\n{out.stderr}")
    return Path(out.stdout.strip())


@dataclass
class Tools:
    """kubectl and helm bound to one kubeconfig."""

    kubeconfig: Path
    path: str

    def _env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": self.path}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", *args],
            input=input,
            capture_output=True,
            text=True,
            env=self._env(),
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    def helm(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["helm", *args], capture_output=True, text=True, env=self._env(), timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        args = ["get", kind, name, "-o", "json", "--show-managed-fields"]
        if namespace:
            args += ["-n", namespace]
        result = self.kubectl(*args, check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise AssertionError(result.stderr)
        return dict(json.loads(result.stdout))

    def items(
        self, kind: str, namespace: str | None = None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        args = ["get", kind, "-o", "json"]
        args += ["-n", namespace] if namespace else ["-A"]
        if selector:
            args += ["-l", selector]
        return list(json.loads(self.kubectl(*args).stdout)["items"])

    def apply(
        self,
        documents: Sequence[Mapping[str, Any]] | str,
        namespace: str | None = None,
        check: bool = True,
        force: bool = False,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Server-side apply as the user `e2e-user`; `force` takes over fields another manager
        (e.g. an earlier GitOps sync of the same objects) owns."""
        text = documents if isinstance(documents, str) else yaml.safe_dump_all(list(documents))
        args = ["apply", "--server-side", "--field-manager", "e2e-user", "-f", "-"]
        if force:
            args.append("--force-conflicts")
        if namespace:
            args += ["-n", namespace]
        return self.kubectl(*args, input=text, check=check, timeout=timeout)


def chart_rbac(tools: Tools, *extra: str, root: Path = ROOT) -> list[dict[str, Any]]:
    """The operator's ServiceAccount and RBAC exactly as the Helm chart (of the source tree
    `root`) renders them."""
    rendered = tools.helm(
        "template",
        "tritonop",
        str(root / "charts" / "tritonop"),
        "--namespace",
        OPERATOR_NAMESPACE,
        "--set",
        "crds.enabled=false",
        *extra,
    ).stdout
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    return [d for d in yaml.safe_load_all(rendered) if d and d.get("kind") in kinds]


def wait_established(tools: Tools, crd: str, timeout: float = 60) -> None:
    """Wait until the API server serves `crd`. Not `kubectl wait --for=condition=Established`:
    right after the create the CRD has no `status.conditions` yet, and kubectl (1.3x) then
    fails at once with "accessor error: <nil>" instead of waiting (seen in CI)."""
    jsonpath = '{.status.conditions[?(@.type=="Established")].status}'

    def established() -> bool:
        out = tools.kubectl("get", "crd", crd, "-o", f"jsonpath={jsonpath}", check=False)
        return out.returncode == 0 and out.stdout.strip() == "True"

    wait_until(established, timeout, f"CRD {crd} Established")


def install_crds_and_rbac(tools: Tools, root: Path = ROOT) -> None:
    """Install what the operator needs before it runs, as a user would: the CRDs from crds/
    (waiting until the API server serves them) and the operator's namespace, ServiceAccount
    and RBAC exactly as the chart renders them (both of the source tree `root`: a benchmark
    may run another revision of the operator)."""
    tools.kubectl("apply", "--server-side", "-f", str(root / "crds"))
    wait_established(tools, "inferenceservices.tritonop.io")
    tools.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    tools.apply(chart_rbac(tools, root=root))


@dataclass
class OperatorProcess:
    """`tritonop run` as a subprocess with the ServiceAccount's kubeconfig."""

    kubeconfig: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    health_port: int = 0

    def start(self, timeout: float = 60) -> None:
        self.metrics_port, self.health_port = free_ports(2)
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "TRITONOP_LISTEN_ADDRESS": "127.0.0.1",
            "TRITONOP_METRICS_PORT": str(self.metrics_port),
            "TRITONOP_HEALTH_PORT": str(self.health_port),
            "TRITONOP_AUTOSCALE_INTERVAL_SECONDS": "2",
            "TRITONOP_SCRAPE_TIMEOUT_SECONDS": "1",
            # Every service is resynced often, so the suite exercises the resync (and the
            # zero-idle-writes tests check that it writes nothing) and a rotated Secret rolls
            # the pods within the tests' waits.
            "TRITONOP_RESYNC_INTERVAL_SECONDS": "15",
            **self.env,
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # In a process group of its own (stop() reaches its parser process too), and killed
        # by the kernel if pytest dies before its teardown could stop it: a killed test run
        # leaves no operator behind.
        self.process = spawn(
            [sys.executable, "-m", "tritonop.cli", "run"],
            log_path=self.log_path,
            cwd=ROOT,
            env=env,
            kill_with_parent=True,
        )
        wait_until(self.healthy, timeout, "the operator's /healthz", check=self.check_running)

    def check_running(self) -> None:
        """Raise if the operator process has exited (with the end of its log)."""
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"operator exited; log tail:\n{self.tail()}")

    def healthy(self) -> bool:
        self.check_running()
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/healthz", timeout=1
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10
        ) as response:
            return str(response.read().decode())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def kill(self) -> None:
        """Stop abruptly, as a crash or an OOM kill would."""
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def rss_kib(self) -> RssKib:
        """The operator's resident memory now (0 for a process that is gone)."""
        if self.process is None:
            return RssKib(0, 0)
        return RssKib(process_rss_kib(self.process.pid), group_rss_kib(self.process.pid))


@dataclass(frozen=True)
class RssKib:
    """Resident memory in KiB: of the operator's process, and of its process group (with its
    metrics-parser process: what a container's memory limit counts)."""

    process: int
    group: int

    def max(self, other: RssKib) -> RssKib:
        return RssKib(max(self.process, other.process), max(self.group, other.group))


def process_rss_kib(pid: int) -> int:
    """VmRSS of `pid` in KiB; 0 if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0  # a zombie has no VmRSS


def group_rss_kib(pgid: int) -> int:
    """The sum of VmRSS over the processes of process group `pgid`, KiB."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid:  # state, ppid, pgrp
            total += process_rss_kib(int(stat.parent.name))
    return total


class PeakRss:
    """Samples the operator's RSS every `interval` seconds in a thread, while in its `with`
    block, and keeps the highest (following the operator across a restart: it samples whatever
    process it runs now)."""

    def __init__(self, operator: OperatorProcess, interval: float = 0.25) -> None:
        self.operator = operator
        self.interval = interval
        self.peak = RssKib(0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = self.peak.max(self.operator.rss_kib())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = self.peak.max(self.operator.rss_kib())


def peak_rss(operator: OperatorProcess, seconds: float) -> RssKib:
    """The operator's highest RSS over the next `seconds` (bounded)."""
    with PeakRss(operator) as sampler:
        time.sleep(seconds)
    return sampler.peak
