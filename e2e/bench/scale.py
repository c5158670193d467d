"""Scale benchmark: N InferenceServices on one operator, against the API server's own floor.

    python -m e2e.bench.scale                       # 1,000 services, both modes (~25 min)
    python -m e2e.bench.scale --services 100 --json # smaller, one JSON object on stdout

Every phase runs on a fresh local control plane (e2e/cluster: etcd, kube-apiserver,
controller-manager, scheduler, KWOK) with extra KWOK CPU nodes so every service's pod fits, the
CRDs and the chart's RBAC installed as a user would, and the operator as its own ServiceAccount
(`tritonop run`, default autoscaling interval, scrape timeout and resync interval). Per mode:

* fixed: `spec.replicas: 1`; operator: Operator-mode autoscaling (1-4 replicas). There is no
  data plane (nothing serves the pods' :8002), so every scrape fails and the policy holds.
* floor: the same services' children rendered by `tritonop render`, applied with the services
  themselves by one sequential client (`kubectl apply --server-side`, one call per batch): what
  the API server needs to take these objects, without any operator.
* operator: the services applied in the same batches, then the time until every Deployment
  exists and until every service is observed and Ready, the operator's CPU seconds and peak
  RSS until then (and the peak PSS of the operator with its metrics parser's processes), 60 s of steady state (writes from the audit log, CPU), a restart (time to
  /healthz, to every service resumed, writes and CPU in the next 60 s).

The targets of issue 14 are printed as PASS/FAIL lines (exit status 1 if one fails). `--profile`
records the operator with py-spy (`pip install py-spy`) during creation and steady state; its
figures are then inflated by the sampling. See e2e/bench/SCALE.md for results and findings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from e2e.bench.probes import (
    AuditTail,
    ProcessMeter,
    Progress,
    Watch,
    admin_ssl_context,
    cpu_delta,
    group_cpu,
)
from e2e.cluster import LocalCluster
from e2e.cluster.nodes import NodeSpec, default_nodes
from e2e.cluster.processes import signals_raise
from e2e.harness import (
    OPERATOR_ACCOUNT,
    OPERATOR_NAMESPACE,
    OPERATOR_USER,
    WRITE_VERBS,
    OperatorProcess,
    Tools,
    bin_dir,
    install_crds_and_rbac,
)
from e2e.load import Endpoint, LoadConfig, LoadGenerator, LoadResult
from e2e.load.profiles import constant
from e2e.polling import wait_until
from e2e.services import service

if TYPE_CHECKING:  # the data plane's imports are heavy; only its phase needs them
    from e2e.tritonsim.podrunner import PodRunner

MODES = ("fixed", "operator")
STATUS_PERIOD_S = 30.0
"""The status cadence under test: at most one status write per service per 30 s."""
DATAPLANE_RATE_PER_SERVICE = 2.0
"""Requests/s per service in the data-plane phase: light (an emulated pod serves 20/s), so no
service scales, yet every interval's numbers differ."""
MANAGED = "app.kubernetes.io/managed-by=tritonop"
ISVC_PATH = "/apis/tritonop.io/v1alpha1/inferenceservices"
DEPLOYMENT_PATH = "/apis/apps/v1/deployments"
PODS_PER_NODE = 110
TRACEMALLOC_DIR = Path(__file__).resolve().parent / "tracemalloc"
#: The controller-manager's and scheduler's client-side limits (defaults 20 and 50 requests/s)
#: raised, so the control plane below the operator keeps up: with the defaults, 1,000 services
#: applied without any operator need 249 s until every pod is Ready (the ReplicaSet and pod
#: creations queue behind 20 requests/s), and the benchmark would time the controller-manager.
CONTROL_PLANE_LIMITS = {
    component: ["--kube-api-qps=300", "--kube-api-burst=600"]
    for component in ("kube-controller-manager", "kube-scheduler")
}
#: The operator's settings as a default install has them (the e2e fixture shortens them).
DEFAULT_INTERVALS = {
    "TRITONOP_AUTOSCALE_INTERVAL_SECONDS": "5",
    "TRITONOP_SCRAPE_TIMEOUT_SECONDS": "2",
    # The e2e harness resyncs every 15 s so that its tests see resyncs; the benchmark measures
    # the default (figures before 2026-12-04 evening were taken at 15 s by mistake).
    "TRITONOP_RESYNC_INTERVAL_SECONDS": "300",
}


def log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ what is applied


def namespaces(count: int) -> list[str]:
    return [f"scale-{i:02d}" for i in range(count)]


def manifests(services: int, spread: Sequence[str], mode: str) -> list[dict[str, Any]]:
    """`services` small CPU InferenceServices, round-robin over the namespaces."""
    documents = []
    for i in range(services):
        spec: dict[str, Any] = {
            "gpu": {"count": 0},
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        }
        if mode == "fixed":
            spec["replicas"] = 1
        else:
            spec["autoscaling"] = {
                "mode": "Operator",
                "minReplicas": 1,
                "maxReplicas": 4,
                "targets": {"queueDepth": 4},
            }
        document = service(f"svc-{i:04d}", **spec)
        document["metadata"]["namespace"] = spread[i % len(spread)]
        documents.append(document)
    return documents


def batches(items: Sequence[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def rendered_children(documents: Sequence[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """What `tritonop render` prints for the services: their Deployments, Services, PDBs."""
    source = out / "floor-services.yaml"
    source.write_text(yaml.safe_dump_all(list(documents)))
    printed = subprocess.run(
        [sys.executable, "-m", "tritonop.cli", "render", "-f", str(source)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(printed) if d]


def scale_nodes(services: int) -> list[NodeSpec]:
    """Extra KWOK CPU nodes so every service's pod fits (10% spare), beside the defaults."""
    count = math.ceil(services * 1.1 / PODS_PER_NODE)
    allocatable = {"cpu": "64", "memory": "256Gi", "pods": str(PODS_PER_NODE)}
    return [NodeSpec(name=f"scale-{i:02d}", allocatable=dict(allocatable)) for i in range(count)]


# ------------------------------------------------------------------------------ the cluster


@contextlib.contextmanager
def bench_cluster(services: int, out: Path, phase: str) -> Iterator[tuple[LocalCluster, Tools]]:
    """A fresh control plane with room for the services, CRDs and RBAC installed."""
    cluster = LocalCluster(
        nodes=[*default_nodes(), *scale_nodes(services)],
        die_with_parent=True,
        extra_args=CONTROL_PLANE_LIMITS,
    )
    try:
        log(f"{phase}: starting a control plane with {len(cluster.nodes)} nodes")
        cluster.up(timeout=240)
        tools = Tools(cluster.kubeconfig, f"{bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}")
        install_crds_and_rbac(tools)
        yield cluster, tools
    finally:
        logs = out / f"{phase}-logs"
        logs.mkdir(parents=True, exist_ok=True)
        for path in cluster.logs_dir.glob("*.log"):
            (logs / path.name).write_bytes(path.read_bytes())
        cluster.down()


def create_namespaces(tools: Tools, names: Sequence[str]) -> None:
    """The namespaces, each with its default ServiceAccount (pods are refused before it)."""
    for name in names:
        tools.kubectl("create", "namespace", name)
    for name in names:
        wait_until(partial(tools.get, "serviceaccount", "default", name), 60, f"{name}/default")


def component_pids(cluster: LocalCluster) -> dict[str, int]:
    return {name: int(info["pid"]) for name, info in cluster.processes().items()}


@dataclass
class Watched:
    """The watches of one phase and what they saw."""

    progress: Progress = field(default_factory=Progress)
    watches: list[Watch] = field(default_factory=list)

    @classmethod
    def start(cls, cluster: LocalCluster) -> Watched:
        watched = cls()
        context = admin_ssl_context(cluster.pki_dir)
        watched.watches = [
            Watch(
                cluster.server,
                context,
                DEPLOYMENT_PATH,
                watched.progress.on_deployment,
                selector=MANAGED,
            ),
            Watch(cluster.server, context, ISVC_PATH, watched.progress.on_service),
        ]
        return watched

    def stop(self) -> None:
        for watch in self.watches:
            watch.stop()


def apply_batches(tools: Tools, documents: Sequence[dict[str, Any]], size: int) -> None:
    """One sequential `kubectl apply --server-side` per batch, back to back."""
    for batch in batches(documents, size):
        started = time.monotonic()
        tools.apply(batch, timeout=900)
        log(f"  applied {len(batch)} objects in {time.monotonic() - started:.1f}s")


# ------------------------------------------------------------------------------ the floor


def run_floor(args: argparse.Namespace, mode: str, out: Path) -> dict[str, Any]:
    """The same objects applied by one sequential client, no operator running."""
    spread = namespaces(args.namespaces)
    services = manifests(args.services, spread, mode)
    children = rendered_children(services, out)
    kinds = Counter(str(c["kind"]) for c in children)
    with bench_cluster(args.services, out, f"{mode}-floor") as (cluster, tools):
        create_namespaces(tools, spread)
        watched = Watched.start(cluster)
        pids = component_pids(cluster)
        before = group_cpu(pids)
        log(f"floor ({mode}): applying {len(services)} services and {dict(kinds)}")
        t0 = time.monotonic()
        apply_batches(tools, services, args.batch)
        services_s = time.monotonic() - t0
        apply_batches(tools, children, args.batch * len(children) // max(1, len(services)))
        applied_s = time.monotonic() - t0
        timeout = 120 + 1.5 * args.services
        deployments_s = watched.progress.wait_all("deployments", args.services, timeout) - t0
        ready_s = watched.progress.wait_all("deployments_ready", args.services, timeout) - t0
        components = cpu_delta(group_cpu(pids), before)
        watched.stop()
    figures = {
        "services_applied_s": round(services_s, 2),
        "children_applied_s": round(applied_s - services_s, 2),
        "floor_s": round(applied_s, 2),
        "deployments_exist_s": round(deployments_s, 2),
        "deployments_ready_s": round(ready_s, 2),
        "objects": {"InferenceService": len(services), **kinds},
        "component_cpu_s": components,
    }
    log(f"floor ({mode}): {figures}")
    return figures


# ------------------------------------------------------------------------------ the operator


class Profiler:
    """py-spy recording the operator for one window (raw collapsed stacks), when asked."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, pid: int, name: str) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy",
                "record",
                "--pid",
                str(pid),
                "--rate",
                "50",
                "--format",
                "raw",
                "--nonblocking",
                "--gil",  # CPU: only the thread holding the GIL, not threads blocked in I/O
                "--output",
                str(self.directory / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(30)
            self.process = None


def operator_metric(operator: OperatorProcess, name: str, **labels: str) -> float:
    """Sum of the operator's /metrics samples `name` whose labels include `labels`."""
    total = 0.0
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    for line in operator.metrics().splitlines():
        if line.startswith(f"{name}{{") and all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def reconciles_by_trigger(operator: OperatorProcess) -> dict[str, int]:
    found: Counter[str] = Counter()
    for line in operator.metrics().splitlines():
        if line.startswith("tritonop_reconciles_total{"):
            trigger = line.split('trigger="', 1)[1].split('"', 1)[0]
            found[trigger] += int(float(line.rsplit(" ", 1)[1]))
    return dict(found)


def settle(audit: AuditTail, quiet_s: float, limit_s: float) -> float:
    """Wait until the operator has written nothing for `quiet_s` (at most `limit_s`)."""
    started = time.monotonic()
    count, since = audit.poll(), time.monotonic()
    while time.monotonic() - started < limit_s:
        time.sleep(1)
        now_count = audit.poll()
        if now_count != count:
            count, since = now_count, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
    return time.monotonic() - started


def hold(seconds: float, operator: OperatorProcess) -> None:
    """Let `seconds` pass while checking that the operator stays up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        operator.check_running()
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))


def run_operator(args: argparse.Namespace, mode: str, out: Path) -> dict[str, Any]:
    spread = namespaces(args.namespaces)
    services = manifests(args.services, spread, mode)
    profiler = Profiler(out / "profiles" if args.profile else None)
    figures: dict[str, Any] = {}
    with bench_cluster(args.services, out, f"{mode}-operator") as (cluster, tools):
        create_namespaces(tools, spread)
        kubeconfig = cluster.service_account_kubeconfig(
            OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, out / f"{mode}-operator.kubeconfig"
        )
        env = dict(DEFAULT_INTERVALS)
        if args.trace_memory:
            env["PYTHONPATH"] = os.pathsep.join(
                [str(TRACEMALLOC_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
            )
            env["TRITONOP_BENCH_TRACEMALLOC"] = str(out / f"{mode}-tracemalloc.txt")
        operator = OperatorProcess(
            kubeconfig=kubeconfig, log_path=out / f"{mode}-operator.log", env=env
        )
        operator.start()
        try:
            figures = measure_operator(args, mode, cluster, tools, operator, services, profiler)
        finally:
            profiler.stop()
            operator.stop()
    log(f"operator ({mode}): {json.dumps(figures)}")
    return figures


def measure_operator(
    args: argparse.Namespace,
    mode: str,
    cluster: LocalCluster,
    tools: Tools,
    operator: OperatorProcess,
    services: Sequence[dict[str, Any]],
    profiler: Profiler,
) -> dict[str, Any]:
    assert operator.process is not None
    meter = ProcessMeter(operator.process.pid)
    audit = AuditTail(cluster.audit_log, OPERATOR_USER, frozenset(WRITE_VERBS))
    watched = Watched.start(cluster)
    pids = component_pids(cluster)
    n = len(services)
    timeout = 300 + 2.0 * n
    idle_rss = meter.rss_mib()

    # creation
    mark, cpu0, components0 = audit.poll(), meter.cpu(), group_cpu(pids)
    profiler.start(operator.process.pid, f"{mode}-create")
    log(f"operator ({mode}): applying {n} services in batches of {args.batch}")
    t0 = time.monotonic()
    apply_batches(tools, services, args.batch)
    applied_s = time.monotonic() - t0
    progress = watched.progress
    deployments_s = progress.wait_all("deployments", n, timeout, operator.check_running) - t0
    log(f"operator ({mode}): every Deployment exists after {deployments_s:.1f}s")
    ready_s = progress.wait_all("services_ready", n, timeout, operator.check_running) - t0
    create_cpu = meter.cpu() - cpu0
    components = cpu_delta(group_cpu(pids), components0)
    profiler.stop()
    audit.poll()
    create_writes = audit.since(mark)
    create_peak = meter.peak_mib
    log(f"operator ({mode}): every service observed and Ready after {ready_s:.1f}s")

    settled_s = settle(audit, quiet_s=10, limit_s=90)

    # steady state
    profiler.start(operator.process.pid, f"{mode}-steady")
    mark, cpu0, components0 = audit.poll(), meter.cpu(), group_cpu(pids)
    hold(args.window, operator)
    audit.poll()
    steady_writes = audit.since(mark)
    steady_cpu = meter.cpu() - cpu0
    steady_components = cpu_delta(group_cpu(pids), components0)
    profiler.stop()
    steady_rss = meter.rss_mib()
    if args.trace_memory:
        dump = Path(operator.env["TRITONOP_BENCH_TRACEMALLOC"])
        operator.process.send_signal(signal.SIGUSR2)  # e2e/bench/tracemalloc: where memory is
        # A snapshot of a large heap takes a while on a busy machine: wait for the file, then
        # for it to stop growing (the restart below would kill a dump half-written).
        wait_until(lambda: dump.exists() or None, 300, "the tracemalloc dump", interval=2)
        size = -1
        while dump.stat().st_size != size:
            size = dump.stat().st_size
            time.sleep(3)
    reconciles = reconciles_by_trigger(operator)
    meter.stop()

    # restart
    log(f"operator ({mode}): restarting")
    operator.stop()
    mark = audit.poll()
    started = time.monotonic()
    operator.start(timeout=120)
    healthy_s = time.monotonic() - started
    assert operator.process is not None
    restarted = ProcessMeter(operator.process.pid)
    wait_until(
        lambda: operator_metric(operator, "tritonop_reconciles_total", trigger="resume") >= n,
        timeout,
        f"{n} services resumed",
        interval=0.5,
        check=operator.check_running,
    )
    resumed_s = time.monotonic() - started
    hold(max(0.0, started + args.window - time.monotonic()), operator)
    audit.poll()
    restart_writes = audit.since(mark)
    restart_cpu = restarted.cpu()
    restarted.stop()
    watched.stop()
    return {
        "services_applied_s": round(applied_s, 2),
        "deployments_exist_s": round(deployments_s, 2),
        "observed_ready_s": round(ready_s, 2),
        "create_cpu_s": round(create_cpu, 2),
        "create_writes": dict(create_writes),
        "create_writes_total": sum(create_writes.values()),
        "component_cpu_s": components,
        "rss_idle_mib": round(idle_rss, 1),
        "rss_peak_create_mib": round(create_peak, 1),
        "rss_peak_mib": round(max(meter.peak_mib, restarted.peak_mib), 1),
        "tree_pss_peak_mib": round(max(meter.tree_peak_mib, restarted.tree_peak_mib), 1),
        "rss_steady_mib": round(steady_rss, 1),
        "settled_after_s": round(settled_s, 1),
        "steady_window_s": args.window,
        "steady_writes": dict(steady_writes),
        "steady_writes_total": sum(steady_writes.values()),
        "steady_cpu_s": round(steady_cpu, 2),
        "steady_core_share": round(steady_cpu / args.window, 3),
        "steady_component_cpu_s": steady_components,
        "reconciles": reconciles,
        "restart_healthy_s": round(healthy_s, 2),
        "restart_resumed_s": round(resumed_s, 2),
        "restart_writes": dict(restart_writes),
        "restart_writes_total": sum(restart_writes.values()),
        "restart_cpu_s": round(restart_cpu, 2),
        "restart_rss_peak_mib": round(restarted.peak_mib, 1),
        "watch_errors": [e for w in watched.watches for e in w.errors][:5],
    }


# ------------------------------------------------------------------------------ the data plane


@dataclass(frozen=True)
class RunnerEndpoints:
    """The load's targets: every pod the pod runner serves and has marked Ready (no API reads)."""

    runner: PodRunner

    async def endpoints(self) -> list[Endpoint]:
        statuses = await asyncio.to_thread(self.runner.pods)
        return [Endpoint(s.name, s.ip) for s in statuses if s.ready and s.state == "serving"]


def run_dataplane(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Operator-mode services on Triton emulators under a light, moving load: their numbers
    change every interval, and status must still be written at most once per 30 s each."""
    from e2e.dataplane import DATAPLANE_PREFIX, data_plane_turn, start_pod_runner

    n = args.dataplane
    namespace = f"{DATAPLANE_PREFIX}scale"
    services = manifests(n, [namespace], "operator")
    with (
        data_plane_turn("e2e/bench/scale.py", notify=log),
        bench_cluster(n, out, "dataplane") as (cluster, tools),
    ):
        create_namespaces(tools, [namespace])
        kubeconfig = cluster.service_account_kubeconfig(
            OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, out / "dataplane-operator.kubeconfig"
        )
        operator = OperatorProcess(
            kubeconfig=kubeconfig, log_path=out / "dataplane-operator.log", env=DEFAULT_INTERVALS
        )
        runner = start_pod_runner(cluster.kubeconfig)
        operator.start()
        try:
            return measure_dataplane(args, cluster, tools, operator, runner, services)
        finally:
            operator.stop()
            runner.stop()


def measure_dataplane(
    args: argparse.Namespace,
    cluster: LocalCluster,
    tools: Tools,
    operator: OperatorProcess,
    runner: PodRunner,
    services: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    assert operator.process is not None
    n = len(services)
    watched = Watched.start(cluster)
    audit = AuditTail(cluster.audit_log, OPERATOR_USER, frozenset(WRITE_VERBS))
    log(f"dataplane: {n} Operator-mode services on emulators")
    apply_batches(tools, services, args.batch)
    watched.progress.wait_all("services_ready", n, 300 + 2.0 * n, operator.check_running)
    rate = DATAPLANE_RATE_PER_SERVICE * n
    window = 4 * STATUS_PERIOD_S
    config = LoadConfig(
        profile=constant(rate),
        duration_s=window + 2 * STATUS_PERIOD_S,
        max_requests=int(rate * (window + 2 * STATUS_PERIOD_S) * 1.5),
        refresh_s=2.0,
        seed=1,
    )
    load = LoadGenerator(config, RunnerEndpoints(runner), out=None)
    result: dict[str, LoadResult] = {}
    thread = threading.Thread(target=lambda: result.update(run=asyncio.run(load.run())))
    thread.start()
    meter = ProcessMeter(operator.process.pid)
    hold(STATUS_PERIOD_S, operator)  # every loop has seen the load and written it once
    mark, cpu0 = audit.poll(), meter.cpu()
    hold(window, operator)
    audit.poll()
    cpu = meter.cpu() - cpu0
    meter.stop()
    per_service = audit.targets(mark, "patch inferenceservices/status")
    thread.join(config.duration_s + 60)
    run = result.get("run")
    watched.stop()
    periods = window / STATUS_PERIOD_S
    return {
        "services": n,
        "rate_per_s": rate,
        "window_s": window,
        "status_writes": sum(per_service.values()),
        "status_writes_per_service_per_30s": round(sum(per_service.values()) / n / periods, 2),
        "max_status_writes_of_a_service_per_30s": round(
            max(per_service.values(), default=0) / periods, 2
        ),
        "writes": dict(audit.since(mark)),
        "operator_cpu_s": round(cpu, 2),
        "requests": len(run.records) if run else 0,
        "failed_requests": sum(1 for r in run.records if not r.ok) if run else 0,
    }


# ------------------------------------------------------------------------------ targets


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    passed: bool


def rss_budget_mib(services: int) -> float | None:
    """Issue 14: <= 100 MiB at 100 services, <= 200 MiB at 1,000 (no target above)."""
    if services <= 100:
        return 100.0
    if services <= 1000:
        return 200.0
    return None


def checks(
    services: int, mode: str, floor: Mapping[str, Any], op: Mapping[str, Any]
) -> list[Check]:
    found = []
    base = float(floor["floor_s"])
    deploy_ratio = float(op["deployments_exist_s"]) / base
    ready_ratio = float(op["observed_ready_s"]) / base
    found.append(
        Check("all Deployments within 2x the floor", f"{deploy_ratio:.1f}x", deploy_ratio <= 2)
    )
    found.append(
        Check("all observed and Ready within 3x the floor", f"{ready_ratio:.1f}x", ready_ratio <= 3)
    )
    budget = rss_budget_mib(services)
    if budget is not None:
        # The larger of the operator process's RSS and its tree's PSS (with the metrics
        # parser's processes): either is what the container's memory limit must hold.
        peak = max(float(op["rss_peak_mib"]), float(op["tree_pss_peak_mib"]))
        found.append(Check(f"memory peak <= {budget:.0f} MiB", f"{peak:.0f} MiB", peak <= budget))
    found.append(
        Check(
            "steady state: 0 writes in the window",
            str(op["steady_writes_total"]),
            op["steady_writes_total"] == 0,
        )
    )
    if mode == "operator":
        share = float(op["steady_core_share"])
        found.append(Check("steady state <= 10% of a core", f"{share:.1%}", share <= 0.10))
    healthy = float(op["restart_healthy_s"])
    found.append(Check("restart: healthy in < 5 s", f"{healthy:.1f} s", healthy < 5))
    found.append(
        Check(
            "restart: 0 writes in the next window",
            str(op["restart_writes_total"]),
            op["restart_writes_total"] == 0,
        )
    )
    return found


def report(results: Mapping[str, Any]) -> str:
    lines = [
        f"scale benchmark: {results['services']} InferenceServices in {results['namespaces']} "
        f"namespaces, batches of {results['batch']}, {results['cpus']} CPUs",
        "machine load average (1 min) at the start and after each mode: "
        + ", ".join(f"{x:.1f}" for x in results["load_average"]),
    ]
    for mode, run in results["modes"].items():
        floor, op = run["floor"], run["operator"]
        base = float(floor["floor_s"])
        rows = [
            ("floor: services applied", f"{floor['services_applied_s']:.1f} s"),
            ("floor: children applied", f"{floor['children_applied_s']:.1f} s"),
            ("floor (one sequential client)", f"{base:.1f} s"),
            (
                "floor: all Deployments ready (controllers, KWOK)",
                f"{floor['deployments_ready_s']:.1f} s",
            ),
            ("services applied", f"{op['services_applied_s']:.1f} s"),
            (
                "all Deployments exist",
                f"{op['deployments_exist_s']:.1f} s  ({op['deployments_exist_s'] / base:.1f}x floor)",
            ),
            (
                "all observed and Ready",
                f"{op['observed_ready_s']:.1f} s  ({op['observed_ready_s'] / base:.1f}x floor)",
            ),
            ("operator CPU until then", f"{op['create_cpu_s']:.1f} s"),
            ("operator writes until then", f"{op['create_writes_total']}  {op['create_writes']}"),
            (
                "operator RSS idle / peak / steady",
                f"{op['rss_idle_mib']:.0f} / {op['rss_peak_mib']:.0f} / {op['rss_steady_mib']:.0f} MiB",
            ),
            ("operator and its parser processes, PSS peak", f"{op['tree_pss_peak_mib']:.0f} MiB"),
            (
                f"steady {op['steady_window_s']:.0f} s: writes",
                f"{op['steady_writes_total']}  {op['steady_writes']}",
            ),
            (
                f"steady {op['steady_window_s']:.0f} s: CPU",
                f"{op['steady_cpu_s']:.1f} s ({op['steady_core_share']:.1%} of a core)",
            ),
            (
                "restart: healthy / all resumed",
                f"{op['restart_healthy_s']:.1f} s / {op['restart_resumed_s']:.1f} s",
            ),
            (
                f"restart: next {op['steady_window_s']:.0f} s writes",
                f"{op['restart_writes_total']}  {op['restart_writes']}",
            ),
            (f"restart: next {op['steady_window_s']:.0f} s CPU", f"{op['restart_cpu_s']:.1f} s"),
        ]
        lines.append(f"\nmode {mode}")
        width = max(len(r[0]) for r in rows)
        lines += [f"  {label:<{width}}  {value}" for label, value in rows]
        for check in run["checks"]:
            verdict = "PASS" if check["passed"] else "FAIL"
            lines.append(f"{verdict} {mode}: {check['name']}: {check['value']}")
    plane = results.get("dataplane")
    if plane:
        lines.append(
            f"\ndata plane: {plane['services']} Operator-mode services on emulators, "
            f"{plane['rate_per_s']:.0f} requests/s in all, {plane['window_s']:.0f} s counted"
        )
        rows = [
            ("status writes", f"{plane['status_writes']}"),
            ("per service per 30 s", f"{plane['status_writes_per_service_per_30s']:.2f}"),
            ("operator writes", f"{plane['writes']}"),
            ("operator CPU", f"{plane['operator_cpu_s']:.1f} s"),
            ("requests sent / failed", f"{plane['requests']} / {plane['failed_requests']}"),
        ]
        width = max(len(r[0]) for r in rows)
        lines += [f"  {label:<{width}}  {value}" for label, value in rows]
        for check in plane["checks"]:
            verdict = "PASS" if check["passed"] else "FAIL"
            lines.append(f"{verdict} dataplane: {check['name']}: {check['value']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ command line


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.bench.scale", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--services", type=int, default=1000, help="InferenceServices (1000)")
    parser.add_argument("--namespaces", type=int, default=10, help="spread over (10)")
    parser.add_argument("--batch", type=int, default=200, help="services per apply (200)")
    parser.add_argument("--modes", default=",".join(MODES), help="fixed,operator (both by default)")
    parser.add_argument(
        "--window", type=float, default=60.0, help="steady-state and after-restart window (60 s)"
    )
    parser.add_argument(
        "--dataplane",
        type=int,
        default=50,
        help="Operator-mode services on Triton emulators under load, for the status cadence "
        "(50; 0 skips the phase)",
    )
    parser.add_argument("--out", help="directory for logs and results (default: a temp dir)")
    parser.add_argument("--profile", action="store_true", help="record the operator with py-spy")
    parser.add_argument(
        "--trace-memory",
        action="store_true",
        help="trace the operator's allocations (slow) and write the largest sites in steady "
        "state to OUT/MODE-tracemalloc.txt",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    unknown = set(args.modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}: choose from {', '.join(MODES)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="tritonop-scale-"))
    out.mkdir(parents=True, exist_ok=True)
    log(f"results and logs in {out}")
    results: dict[str, Any] = {
        "services": args.services,
        "namespaces": args.namespaces,
        "batch": args.batch,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average": [os.getloadavg()[0]],
        "modes": {},
    }
    with signals_raise():
        for mode in args.modes:
            floor = run_floor(args, mode, out)
            op = run_operator(args, mode, out)
            results["load_average"].append(os.getloadavg()[0])
            results["modes"][mode] = {
                "floor": floor,
                "operator": op,
                "checks": [c.__dict__ for c in checks(args.services, mode, floor, op)],
            }
            (out / "results.json").write_text(json.dumps(results, indent=2))
        if args.dataplane:
            figures = run_dataplane(args, out)
            per_30s = float(figures["status_writes_per_service_per_30s"])
            results["dataplane"] = {
                **figures,
                "checks": [
                    Check(
                        "status writes <= 1 per service per 30 s under load",
                        f"{per_30s:.2f} (most of one service: "
                        f"{figures['max_status_writes_of_a_service_per_30s']:.2f})",
                        per_30s <= 1,
                    ).__dict__
                ],
            }
            (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2) if args.json else report(results))
    verdicts = [*(c for run in results["modes"].values() for c in run["checks"])]
    verdicts += results.get("dataplane", {}).get("checks", [])
    passed = all(c["passed"] for c in verdicts)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
