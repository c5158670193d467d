"""`python -m e2e.demo`: watch tritonop autoscale Triton on a real control plane, in minutes.

One command, no Docker: it starts a local Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, KWOK nodes with H100 GPUs) in its own state directory
outside the repository, installs the CRDs and the chart's RBAC, runs the operator as its own
ServiceAccount, starts the data plane (one real tritonserver per pod, NVIDIA's CPU build from
the `nvidia-pytriton` wheel, bound to the pod's 127.64.x.y IP; `--emulator` for the Triton
emulator instead), applies an autoscaled InferenceService (manifests/examples/autoscaled.yaml with a shorter
scale-down window), and drives a few minutes of varying load at it: warm-up, ramp, plateau,
burst, drop. A compact table shows every two seconds what the load sees (offered and served
requests/s, p95 latency), what Triton reports (requests waiting per ready pod) and what the
operator does (replicas, ready pods, where the scheduler placed them, scale events). At the end:
a summary per phase, and how to look around.

    python -m e2e.demo [--duration 210] [--keep] [--state-dir DIR] [--emulator]
    python -m e2e.demo --down [--state-dir DIR]     # tear down what --keep left running

Bounded in time; Ctrl-C or SIGTERM tears everything down; no prompts; plain lines (no
terminal control codes) when stdout is not a terminal or CI is set. Without `--keep` nothing is
left running. With `--keep` the control plane, the operator and the data plane stay up; they
stop with `e2e/cluster/down --state-dir DIR` (the operator and the pod runner each run under a
small supervisor that ends them once the cluster's state says the API server is gone).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from e2e.cluster import cluster_is_gone
from e2e.cluster.processes import die_with_parent, free_ports, log_tail
from e2e.polling import WaitTimeout, wait_until

if TYPE_CHECKING:  # the data plane's imports are heavy; the supervisor mode needs none of them
    from e2e.dataplane import AdjustableRate, BackgroundLoad, ClusterView, Turn

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "dataplane-demo"
"""A `dataplane-*` namespace: KWOK leaves its pods unready until their server is ready."""
EXAMPLE = ROOT / "manifests" / "examples" / "autoscaled.yaml"
INTERVAL_S = 2
"""The operator's metrics interval in the demo (as in the e2e suite)."""
TICK_S = 2.0
"""Seconds between table rows."""
P95_WINDOW_S = 6.0
"""Latency percentiles over requests that finished in the last few seconds."""
SERVICE_TIME_MS = 50.0
"""Emulated model: 50 ms per request on one instance, about 20 requests/s per pod."""
DEMO_FILE = "demo.json"


@dataclass(frozen=True)
class Phase:
    """A stretch of the load profile: the offered rate goes linearly from `start` to `end`."""

    name: str
    begin: float
    """Seconds from the start of the load."""
    until: float
    start_rps: float
    end_rps: float

    def rate(self, t: float) -> float:
        if self.until <= self.begin:
            return self.end_rps
        share = min(1.0, max(0.0, (t - self.begin) / (self.until - self.begin)))
        return self.start_rps + (self.end_rps - self.start_rps) * share


def phases(duration: float) -> list[Phase]:
    """Warm-up, ramp, plateau, burst and drop, as shares of the run.

    One pod carries about 20 requests/s; the targets of the example (4 requests waiting per
    pod, 50 ms average queue time) put a pod at about two thirds of that. So the plateau
    needs about four pods, the burst about eight (the example's maximum), and the drop lets the
    service shrink back once the scale-down window has passed.
    """
    shares = [
        ("warm-up", 0.12, 8.0, 8.0),
        ("ramp", 0.18, 8.0, 45.0),
        ("plateau", 0.2, 45.0, 45.0),
        ("burst", 0.12, 90.0, 90.0),
        ("drop", 0.38, 6.0, 6.0),
    ]
    result, begin = [], 0.0
    for name, share, start, end in shares:
        until = begin + share * duration
        result.append(Phase(name, begin, until, start, end))
        begin = until
    return result


def phase_at(plan: Sequence[Phase], t: float) -> Phase:
    return next((p for p in plan if t < p.until), plan[-1])


def scale_down_window(duration: float) -> int:
    """A scale-down window short enough to see the service shrink within the run."""
    return int(max(10, min(60, round(duration * 0.12))))


def demo_service(duration: float) -> dict[str, Any]:
    """The autoscaled example, with a scale-down window and panic window fit for a demo."""
    import yaml

    document = dict(yaml.safe_load(EXAMPLE.read_text()))
    autoscaling = document["spec"]["autoscaling"]
    autoscaling.setdefault("behavior", {}).setdefault("scaleDown", {})[
        "stabilizationWindowSeconds"
    ] = scale_down_window(duration)
    autoscaling["panic"] = {"windowSeconds": 3}
    return document


# ------------------------------------------------------------------------------ processes


def supervise(argv: Sequence[str]) -> int:
    """`python -m e2e.demo _supervise STATE_DIR [--die-with-parent] -- COMMAND...`

    Runs COMMAND and ends it (SIGTERM, then SIGKILL) when the cluster of STATE_DIR is torn
    down, when this supervisor gets SIGTERM/SIGINT, or, with --die-with-parent, when the demo
    that started it dies. So a kept demo's operator and pod runner never outlive the cluster.
    """
    separator = list(argv).index("--")
    options, command = list(argv[:separator]), list(argv[separator + 1 :])
    state_dir = Path(options[0])
    if "--die-with-parent" in options:
        die_with_parent(signal.SIGTERM)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    child = subprocess.Popen(command)
    while not stopping and child.poll() is None and not cluster_is_gone(state_dir):
        time.sleep(0.5)
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)
    return 0 if stopping or child.returncode in (0, -signal.SIGTERM) else int(child.returncode)


@dataclass
class Supervised:
    """A supervised child process (see `supervise`)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(
        cls,
        name: str,
        command: Sequence[str],
        *,
        state_dir: Path,
        log_path: Path,
        env: dict[str, str],
        keep: bool,
        lock_fd: int | None = None,
    ) -> Supervised:
        wrapper = [sys.executable, "-m", "e2e.demo", "_supervise", str(state_dir)]
        # `-m e2e...` must resolve wherever the demo was started from.
        path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        env = {**env, "PYTHONPATH": path}
        if not keep:
            wrapper.append("--die-with-parent")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [*wrapper, "--", *command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                # The data-plane lock: held by this supervisor too, so a kept demo keeps its
                # turn until its cluster is torn down.
                pass_fds=(lock_fd,) if lock_fd is not None else (),
            )
        return cls(name, process, log_path)

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited; its log:\n{log_tail(self.log_path, 30)}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(25)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


# ------------------------------------------------------------------------------ the live view


@dataclass
class Row:
    t: float
    phase: str
    offered: float
    served: float
    queue: float | None
    p95: float | None
    desired: int | None
    ready: int
    placement: str
    event: str
    servers: tuple[tuple[str, int], ...] = ()
    """(pod IP, pid) of the real tritonservers serving the service's ready pods."""
    server_rss_mib: float = 0.0
    """Their resident memory with their stub processes."""


def pods_by_node(pods: Sequence[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for pod in pods:
        node = pod["spec"].get("nodeName") or "pending"
        counts[node] = counts.get(node, 0) + 1
    return " ".join(f"{node.removeprefix('gpu-')}:{n}" for node, n in sorted(counts.items()))


class Screen:
    """Rows as plain lines (pipes, CI) or a table redrawn in place (a terminal)."""

    HEADER = (
        f"{'time':>6} {'phase':<8} {'offered':>8} {'served':>8} {'queue':>6} {'p95':>8} "
        f"{'replicas':>9}  placement / events"
    )

    def __init__(self, out: TextIO, live: bool, title: str) -> None:
        self.out = out
        self.live = live
        self.title = title
        self.rows: list[str] = []
        self.events: list[str] = []

    @staticmethod
    def format(row: Row) -> str:
        queue = "-" if row.queue is None else f"{row.queue:.1f}"
        p95 = "-" if row.p95 is None else f"{row.p95:.0f}ms"
        desired = "-" if row.desired is None else str(row.desired)
        return (
            f"{row.t:>5.0f}s {row.phase:<8} {row.offered:>6.0f}/s {row.served:>6.1f}/s "
            f"{queue:>6} {p95:>8} {row.ready:>4}/{desired:<4}  {row.placement}"
            + (f"  << {row.event}" if row.event else "")
        )

    def add(self, row: Row) -> None:
        line = self.format(row)
        self.rows.append(line)
        if row.event:
            self.events.append(f"{row.t:>5.0f}s {row.event}")
        if not self.live:
            if len(self.rows) == 1:
                print(self.HEADER, file=self.out)
            print(line, file=self.out, flush=True)
            return
        height = shutil.get_terminal_size((100, 40)).lines
        shown = self.rows[-max(5, height - 8 - min(len(self.events), 4)) :]
        self.out.write("\x1b[H\x1b[2J")  # home, clear
        print(self.title, file=self.out)
        print(self.HEADER, file=self.out)
        for text in shown:
            print(text, file=self.out)
        if self.events:
            print("\nscale events: " + " | ".join(self.events[-4:]), file=self.out)
        self.out.flush()


# ------------------------------------------------------------------------------ the run


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def run(args: argparse.Namespace, turn: Turn) -> int:
    from e2e.cluster import LocalCluster
    from e2e.dataplane import DATAPLANE_PREFIX, AdjustableRate, BackgroundLoad, ClusterView
    from e2e.harness import (
        OPERATOR_ACCOUNT,
        OPERATOR_NAMESPACE,
        Tools,
        bin_dir,
        install_crds_and_rbac,
    )

    assert NAMESPACE.startswith(DATAPLANE_PREFIX)

    duration = float(args.duration)
    plan = phases(duration)
    live = sys.stdout.isatty() and not os.environ.get("CI") and not args.plain
    state_dir = Path(args.state_dir)
    cluster = LocalCluster(state_dir, die_with_parent=not args.keep)
    supervised: list[Supervised] = []
    load: BackgroundLoad | None = None
    finished = False
    started = time.monotonic()
    try:
        say(f"starting a local control plane in {state_dir} (about 10 s with cached binaries)")
        cluster.up()
        kubeconfig = Path(cluster.kubeconfig)
        tools = Tools(kubeconfig, f"{bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}")
        say("installing the CRDs and the chart's RBAC")
        install_crds_and_rbac(tools)
        tools.kubectl("create", "namespace", NAMESPACE, check=False)
        demo_dir = state_dir / "demo"
        demo_dir.mkdir(exist_ok=True)
        operator_kubeconfig = cluster.service_account_kubeconfig(
            OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, demo_dir / "operator.kubeconfig"
        )
        metrics_port, health_port, control_port = free_ports(3)
        operator = Supervised.start(
            "the operator",
            [sys.executable, "-m", "tritonop.cli", "run"],
            state_dir=state_dir,
            log_path=demo_dir / "operator.log",
            lock_fd=turn.fd,
            env={
                **os.environ,
                "KUBECONFIG": str(operator_kubeconfig),
                "TRITONOP_LISTEN_ADDRESS": "127.0.0.1",
                "TRITONOP_METRICS_PORT": str(metrics_port),
                "TRITONOP_HEALTH_PORT": str(health_port),
                "TRITONOP_AUTOSCALE_INTERVAL_SECONDS": str(INTERVAL_S),
                "TRITONOP_SCRAPE_TIMEOUT_SECONDS": "1",
            },
            keep=args.keep,
        )
        supervised.append(operator)
        # A real server's model load takes what it takes (about 2 s); the emulator's is 2 s.
        server, load_delay = ("emulator", "2") if args.emulator else ("tritonserver", "0")
        say(
            "data plane: "
            + (
                "the Triton emulator"
                if args.emulator
                else "NVIDIA tritonserver 2.51 (nvidia-pytriton, CPU) on each pod's IP"
            )
        )
        runner = Supervised.start(
            "the pod runner",
            [
                sys.executable,
                "-m",
                "e2e.tritonsim.podrunner",
                "--kubeconfig",
                str(kubeconfig),
                "--control-port",
                str(control_port),
                "--set-pod-readiness",
                "--namespace-prefix",
                DATAPLANE_PREFIX,
                "--load-delay",
                load_delay,
                "--service-time-ms",
                str(SERVICE_TIME_MS),
                "--termination-grace",
                "2",
                "--server",
                server,
                "--work-dir",
                str(demo_dir / "servers"),
            ],
            state_dir=state_dir,
            log_path=demo_dir / "podrunner.log",
            env=dict(os.environ),
            keep=args.keep,
            lock_fd=turn.fd,
        )
        supervised.append(runner)
        health = f"http://127.0.0.1:{health_port}/healthz"
        wait_until(lambda: http_ok(health), 60, "the operator's /healthz", check=operator.check)
        control = f"http://127.0.0.1:{control_port}"
        wait_until(lambda: http_ok(f"{control}/healthz"), 30, "the pod runner", check=runner.check)
        (state_dir / DEMO_FILE).write_text(
            json.dumps(
                {
                    "operator": {"pid": operator.process.pid, "metrics_port": metrics_port},
                    "podrunner": {"pid": runner.process.pid, "control_port": control_port},
                    "namespace": NAMESPACE,
                }
            )
        )
        service = demo_service(duration)
        name = service["metadata"]["name"]
        tools.apply([service], NAMESPACE)
        autoscaling = service["spec"]["autoscaling"]
        say(
            f"applied InferenceService {NAMESPACE}/{name}: targets {autoscaling['targets']}, "
            f"{autoscaling['minReplicas']}-{autoscaling['maxReplicas']} replicas, scale-down "
            f"window {scale_down_window(duration)}s; operator metrics "
            f"http://127.0.0.1:{metrics_port}/metrics"
        )
        view = ClusterView(kubeconfig, cluster.audit_log)
        rate = AdjustableRate(plan[0].start_rps, peak=max(p.end_rps for p in plan))
        load = BackgroundLoad(
            kubeconfig,
            NAMESPACE,
            name,
            rate,
            duration_s=duration + 5,
            max_requests=int(duration * 100),
        ).start()
        wait_until(lambda: load is not None and load.started, 90, "the first ready pod")
        say(
            "load: "
            + ", ".join(
                f"{p.name} {p.start_rps:g}"
                + (f"->{p.end_rps:g}" if p.end_rps != p.start_rps else "")
                + f"/s {p.until - p.begin:.0f}s"
                for p in plan
            )
        )
        rows = drive(load, rate, plan, view, name, control, supervised, live, duration)
        result = load.wait(30)
        finished = True
        summary(result, rows, plan, view, name, load.generator.started_at)
        look_around(args, cluster.kubeconfig, metrics_port, control_port, name, state_dir)
        if args.keep:
            turn.keep(f"kept running; tear down with e2e/cluster/down --state-dir {state_dir}")
        return 0
    except KeyboardInterrupt:
        say("interrupted: tearing down")
        return 130
    finally:
        if load is not None and not finished:
            load.rate.stop()
        if not (args.keep and finished):
            for process in supervised:
                process.stop()
            cluster.down()
            say(f"stopped everything ({time.monotonic() - started:.0f}s in all)")


def drive(
    load: BackgroundLoad,
    rate: AdjustableRate,
    plan: Sequence[Phase],
    view: ClusterView,
    name: str,
    control: str,
    supervised: Sequence[Supervised],
    live: bool,
    duration: float,
) -> list[Row]:
    """Set the offered rate along the plan and show a row every TICK_S until the end."""
    screen = Screen(
        sys.stdout,
        live,
        f"tritonop demo: {NAMESPACE}/{name}; queue = requests waiting per ready pod "
        f"(Triton's nv_inference_pending_request_count); replicas = ready/desired",
    )
    rows: list[Row] = []
    origin = load.generator.started_at
    seen_events = len(view.scale_events(NAMESPACE, name))
    next_row = origin + TICK_S
    while True:
        now = time.monotonic()
        elapsed = now - origin
        if elapsed >= duration:
            break
        phase = phase_at(plan, elapsed)
        if phase.rate(elapsed) != rate.rate:
            rate.set(phase.rate(elapsed))
        if now >= next_row:
            next_row += TICK_S
            for process in supervised:
                process.check()
            row, seen_events = observe_row(
                load, view, name, control, phase, rate.rate, elapsed, seen_events
            )
            rows.append(row)
            screen.add(row)
        time.sleep(0.25)
    return rows


def observe_row(
    load: BackgroundLoad,
    view: ClusterView,
    name: str,
    control: str,
    phase: Phase,
    offered: float,
    elapsed: float,
    seen_events: int,
) -> tuple[Row, int]:
    from e2e.load import percentile

    recent = load.generator.completed_since(elapsed - P95_WINDOW_S)
    latencies = sorted(r.latency_s * 1000 for r in recent if r.ok and r.latency_s is not None)
    served = len(load.generator.completed_since(elapsed - TICK_S)) / TICK_S
    queue: float | None = None
    servers: tuple[tuple[str, int], ...] = ()
    with contextlib.suppress(OSError, ValueError):
        with urllib.request.urlopen(f"{control}/pods", timeout=2) as response:
            pods = [
                p
                for p in json.loads(response.read())
                if p["namespace"] == NAMESPACE and p["service"] == name and p["ready"]
            ]
        queue = sum(p["pending"] for p in pods) / len(pods) if pods else 0.0
        servers = tuple((str(p["ip"]), int(p["pid"])) for p in pods if p.get("pid"))
    from e2e.realtriton.server import tree_rss

    resident = sum(parent + sum(stubs) for parent, stubs in (tree_rss(p) for _, p in servers))
    deployment = view.deployment(NAMESPACE, name) or {}
    status = (view.service(NAMESPACE, name) or {}).get("status") or {}
    scaled = view.scale_events(NAMESPACE, name)
    event = ", ".join(
        f"{reason} {before}->{after}" for reason, before, after in scaled[seen_events:]
    )
    mode = (status.get("placement") or {}).get("mode", "-")
    row = Row(
        t=elapsed,
        phase=phase.name,
        offered=offered,
        served=served,
        queue=queue,
        p95=percentile(latencies, 95),
        desired=(deployment.get("spec") or {}).get("replicas"),
        ready=int((deployment.get("status") or {}).get("readyReplicas") or 0),
        placement=f"{mode} {pods_by_node(view.pods(NAMESPACE, name))}",
        event=event,
        servers=servers,
        server_rss_mib=resident / 2**20,
    )
    return row, len(scaled)


def summary(
    result: Any,
    rows: Sequence[Row],
    plan: Sequence[Phase],
    view: ClusterView,
    name: str,
    origin: float,
) -> None:
    """Requests, errors, p95 per phase, peak replicas and the scale events."""
    from e2e.dataplane import p95_ms, requests_between

    s = result.summary
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(s.errors_by_kind.items())) or "none"
    print("\n=== summary ===")
    print(
        f"requests: {s.sent} sent, {s.ok} ok, {s.errors} errors ({kinds}); "
        f"p50 {fmt_ms(s.p50_ms)}, p95 {fmt_ms(s.p95_ms)}, p99 {fmt_ms(s.p99_ms)}"
    )
    print(f"{'phase':<8} {'offered':>12} {'requests':>9} {'errors':>7} {'p95':>9}  replicas")
    for phase in plan:
        begin, until = origin + phase.begin, origin + phase.until
        sent, failed = requests_between(result, begin, until)
        shown = [r.desired for r in rows if phase.begin <= r.t < phase.until and r.desired]
        offered = (
            f"{phase.start_rps:g}/s"
            if phase.start_rps == phase.end_rps
            else f"{phase.start_rps:g}->{phase.end_rps:g}/s"
        )
        span = f"{min(shown)}-{max(shown)}" if shown else "-"
        print(
            f"{phase.name:<8} {offered:>12} {sent:>9} {failed:>7} "
            f"{fmt_ms(p95_ms(result, begin, until)):>9}  {span}"
        )
    desired = [r.desired for r in rows if r.desired]
    events = view.scale_events(NAMESPACE, name)
    ups = [e for e in events if e[0] == "ScaledUp"]
    print(
        f"replicas: peak {max(desired, default=0)}, at the end {desired[-1] if desired else '-'}; "
        f"{len(ups)} scale-ups, {len(events) - len(ups)} scale-downs: "
        + (", ".join(f"{b}->{a}" for _, b, a in events) or "none")
    )
    for event in view.events(NAMESPACE, name):
        if event.get("reason") in ("ScaledUp", "ScaledDown"):
            message = str(event.get("message", ""))
            print(f"  {event['reason']}: " + textwrap.shorten(message, 220, placeholder=" ..."))
    served_by = sorted({server for row in rows for server in row.servers}, key=lambda s: s[1])
    if served_by:
        print(
            f"tritonserver processes: {len(served_by)} over the run, at most "
            f"{max(len(r.servers) for r in rows)} at once using "
            f"{max(r.server_rss_mib for r in rows):.0f} MiB with their python-backend stubs: "
            + ", ".join(f"pid {pid} on {ip}" for ip, pid in served_by)
        )


def fmt_ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.0f}ms"


def look_around(
    args: argparse.Namespace,
    kubeconfig: Path,
    metrics_port: int,
    control_port: int,
    name: str,
    state_dir: Path,
) -> None:
    down = f"e2e/cluster/down --state-dir {state_dir}"
    if args.keep:
        print(
            "\n=== the cluster, the operator and the data plane keep running ===\n"
            f"export KUBECONFIG={kubeconfig}\n"
            f"kubectl get tis -n {NAMESPACE}              # Ready, replicas, placement, queue\n"
            f"kubectl describe tis {name} -n {NAMESPACE}  # conditions and scale events\n"
            f"kubectl get pods -n {NAMESPACE} -o wide     # nodes and 127.64.x.y pod IPs\n"
            f"curl -s http://127.0.0.1:{metrics_port}/metrics | grep tritonop_   # the operator\n"
            f"curl -s 127.0.0.1:{control_port}/pods       # the pods' servers (pending, ready, pid)\n"
            "ps -o pid,rss,args -C tritonserver           # real servers, one per pod IP\n"
            f"tear down: {down}   (or: python -m e2e.demo --down --state-dir {state_dir})"
        )
    else:
        print(
            "\nTearing everything down. To look around afterwards, run with --keep; then\n"
            f"`export KUBECONFIG={kubeconfig}; kubectl get tis -n {NAMESPACE}`, the operator's\n"
            f"/metrics on 127.0.0.1, and `{down}` to stop it all."
        )


def down(state_dir: Path) -> int:
    """Tear down a kept demo: the cluster (its supervisors then end the operator and runner)."""
    from e2e.cluster import LocalCluster

    cluster = LocalCluster(state_dir)
    recorded: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        recorded = json.loads((state_dir / DEMO_FILE).read_text())
    cluster.down()
    supervisors = [
        int(recorded[role]["pid"])
        for role in ("operator", "podrunner")
        if (recorded.get(role) or {}).get("pid")
    ]
    try:
        wait_until(
            lambda: not any(pid_alive(pid) for pid in supervisors),
            30,
            f"the operator's and the pod runner's supervisors (pids {supervisors}) to exit",
        )
    except WaitTimeout as error:
        say(f"the cluster is down, but {error}")
        return 1
    say(f"stopped the demo in {state_dir}")
    return 0


def pid_alive(pid: int) -> bool:
    """Whether a supervisor still runs (reaped if it was our child and has exited)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def default_state_dir() -> Path:
    from e2e.cluster import clusters_root

    return clusters_root() / "demo"


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["_supervise"]:
        return supervise(arguments[1:])
    parser = argparse.ArgumentParser(
        prog="python -m e2e.demo",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=210.0,
        help="seconds of load (default 210; at least 30)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the cluster, the operator and the data plane running afterwards",
    )
    parser.add_argument(
        "--state-dir",
        default=None,
        help="the cluster's state directory (default: $TRITONOP_CACHE/clusters/demo)",
    )
    parser.add_argument("--plain", action="store_true", help="plain lines, even on a terminal")
    parser.add_argument(
        "--emulator",
        action="store_true",
        help="serve the pods with the Triton emulator instead of real tritonserver",
    )
    parser.add_argument("--down", action="store_true", help="tear down a demo left by --keep")
    args = parser.parse_args(arguments)
    args.state_dir = str(args.state_dir or default_state_dir())
    if args.down:
        return down(Path(args.state_dir))
    if args.duration < 30:
        parser.error("--duration must be at least 30 seconds")
    from e2e.cluster import signals_raise
    from e2e.dataplane import data_plane_turn

    with signals_raise(), data_plane_turn("python -m e2e.demo", notify=say) as turn:
        return run(args, turn)


if __name__ == "__main__":
    sys.exit(main())
