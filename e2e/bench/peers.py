"""`python -m e2e.bench.peers`: tritonop beside the real HPA and the real KEDA, on the same load.

Three InferenceServices that differ only in `spec.autoscaling.mode` (Operator, HPA, KEDA) run
side by side in one local control plane (e2e/cluster) with the peers started
(`LocalCluster.start_peers()`: Prometheus scraping the pods through the chart's PodMonitor,
prometheus-adapter with the chart's rules, KEDA), and each gets the *same* arrivals (one
Poisson draw per profile, replayed to each service by its own load generator, round-robin over
its ready pods as a Service would):

* HPA mode is scaled by kube-controller-manager's HorizontalPodAutoscaler controller (default
  15 s sync period) on prometheus-adapter's Pods metrics;
* KEDA mode by KEDA's operator and metrics server, i.e. by the HPA KEDA creates, on Prometheus
  queries;
* Operator mode by tritonop itself, reading the same Prometheus (the operator has
  `TRITONOP_PROMETHEUS_URL` set, which KEDA mode needs), every 2 s.

The data plane is the Triton **emulator** (e2e/tritonsim): 50 ms per request on one model
instance (20 requests/s per replica) and a model load of `--cold-start` seconds (20 by
default) before a new pod is Ready. Real tritonserver cannot run three services' worth of
replicas beside the control plane and the peers on two cores with honest timings.

Profiles (bounded; every load loop stops by itself):

* `step`: 5 requests/s for 60 s, 40/s for 150 s, 5/s for 60 s;
* `burst`: 3 requests/s with three 10 s bursts at 50/s (at 60, 130 and 200 s), 260 s in all:
  each burst is shorter than the cold start.

Per system it prints SLO attainment at the spec's objective (500 ms), replica-seconds (the
Deployment's spec.replicas integrated over the run), the scale-up delay after the step (or the
first burst), peak and settled replicas (at the end of the step's high phase; at the end of the
burst run), scale events (changes of spec.replicas), and beside each what `tritonop simulate`
predicts for the same arrivals with the matching policy (`operator`; `hpa` for HPA and KEDA,
both of which are an HPA) at the same decision interval and the cold start measured here.

    python -m e2e.bench.peers                       # both profiles (about 15 minutes)
    python -m e2e.bench.peers --profiles step --write e2e/bench/PEERS.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from e2e.cluster import LocalCluster, NodeSpec, default_nodes
from e2e.cluster.nodes import GPU_TAINT
from e2e.dataplane import H100_PRODUCT, data_plane_turn, parse_time, start_pod_runner
from e2e.harness import (
    OPERATOR_ACCOUNT,
    OPERATOR_NAMESPACE,
    OperatorProcess,
    Tools,
    bin_dir,
    install_crds_and_rbac,
)
from e2e.load import KubernetesEndpoints, LoadConfig, LoadGenerator, LoadResult, Profile
from e2e.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = ("Operator", "HPA", "KEDA")
SIM_POLICY = {"Operator": "operator", "HPA": "hpa", "KEDA": "hpa"}
#: Decision intervals: the operator's (as the e2e harness runs it), the HPA controller's default
#: sync period (KEDA's ScaledObject is served by the same HPA controller).
INTERVAL_S = {"Operator": 2.0, "HPA": 15.0, "KEDA": 15.0}
SERVICE_TIME_MS = 50.0
SLO_MS = 500.0
MAX_REPLICAS = 10
#: The age of what every policy sees: half the PodMonitor's 5 s scrape interval on average.
METRIC_DELAY_S = 2.5


@dataclass(frozen=True)
class LoadProfile:
    """A bounded offered load: (start s, requests/s) phases, and when its step (or first
    burst) begins and its high phase ends."""

    name: str
    phases: tuple[tuple[float, float], ...]
    duration: float
    step_at: float
    high_until: float
    settled_at: float
    """When "settled replicas" are read: the end of the high phase (step) or of the run."""

    def rate(self, t: float) -> float:
        current = 0.0
        for start, rate in self.phases:
            if t >= start:
                current = rate
        return current

    @property
    def peak(self) -> float:
        return max(rate for _, rate in self.phases)

    def arrivals(self, seed: int) -> list[float]:
        """Poisson arrivals (thinning at the peak rate), the same for every system."""
        rng = random.Random(seed)
        out: list[float] = []
        t = 0.0
        while True:
            t += rng.expovariate(self.peak)
            if t >= self.duration:
                return out
            if rng.random() * self.peak < self.rate(t):
                out.append(t)


PROFILES = {
    "step": LoadProfile("step", ((0, 5.0), (60, 40.0), (210, 5.0)), 270, 60, 210, settled_at=210),
    "burst": LoadProfile(
        "burst",
        ((0, 3.0), (60, 50.0), (70, 3.0), (130, 50.0), (140, 3.0), (200, 50.0), (210, 3.0)),
        260,
        60,
        210,
        settled_at=260,
    ),
}


def spec(name: str, mode: str) -> dict[str, Any]:
    """e2e/bench/spec.yaml's service (targets queueDepth 2 and queueTimeMs 100, no behavior:
    every autoscaler with its own defaults) on the emulator's `simple` model, in `mode`."""
    body = yaml.safe_load((ROOT / "e2e" / "bench" / "spec.yaml").read_text())
    body["metadata"] = {"name": name}
    body["spec"]["models"] = ["simple"]
    body["spec"]["gpu"] = {"count": 1, "products": [H100_PRODUCT], "fallback": "None"}
    body["spec"]["resources"] = {"requests": {"cpu": "1", "memory": "1Gi"}}
    body["spec"]["autoscaling"]["mode"] = mode
    body["spec"]["autoscaling"]["maxReplicas"] = MAX_REPLICAS
    return dict(body)


@dataclass
class Figures:
    """What one system did (or what the simulator predicts for it)."""

    attainment: float
    replica_seconds: float
    scale_up_delay_s: float | None
    peak: int
    settled: int
    scale_events: int
    requests: int = 0
    failed: int = 0
    changes: list[tuple[float, int]] = field(default_factory=list)
    """(seconds into the run, replicas) at the start and at every change (the JSON output)."""


def changes(
    samples: Sequence[tuple[float, int]], origin: float, duration: float
) -> list[tuple[float, int]]:
    """The replica sequence of (time, replicas) samples: the first, then every change."""
    out: list[tuple[float, int]] = []
    for t, replicas in samples:
        if 0 <= t - origin <= duration and (not out or out[-1][1] != replicas):
            out.append((round(t - origin, 1), replicas))
    return out


@dataclass
class Sampler:
    """Deployment spec.replicas of each service, every 0.5 s, until stopped."""

    tools: Tools
    targets: dict[str, tuple[str, str]]
    """system -> (namespace, name)"""
    samples: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True, name="sampler")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for system, (namespace, name) in self.targets.items():
                with contextlib.suppress(Exception):
                    deployment = self.tools.get("deployment", name, namespace) or {}
                    replicas = int((deployment.get("spec") or {}).get("replicas") or 0)
                    self.samples.setdefault(system, []).append((time.monotonic(), replicas))
            self._stop.wait(0.5)


def replicas_figures(
    samples: Sequence[tuple[float, int]], origin: float, profile: LoadProfile
) -> tuple[float, float | None, int, int, int]:
    """(replica-seconds, scale-up delay after the step, peak, settled, scale events) from
    (monotonic time, replicas) samples, over [origin, origin + duration]."""
    points = [(t - origin, r) for t, r in samples if 0 <= t - origin <= profile.duration]
    if not points:
        return 0.0, None, 0, 0, 0
    seconds = 0.0
    for (t0, r0), (t1, _) in itertools.pairwise(points):
        seconds += r0 * (t1 - t0)
    seconds += points[-1][1] * max(0.0, profile.duration - points[-1][0])
    before = max((r for t, r in points if t <= profile.step_at), default=points[0][1])
    delay = next(
        (t - profile.step_at for t, r in points if t > profile.step_at and r > before), None
    )
    peak = max(r for _, r in points)
    settled = next((r for t, r in reversed(points) if t <= profile.settled_at), points[-1][1])
    events = sum(1 for (_, a), (_, b) in itertools.pairwise(points) if a != b)
    return seconds, delay, peak, settled, events


def attainment(result: LoadResult) -> tuple[float, int, int]:
    """(share of requests answered correctly within the SLO, requests, failed)."""
    records = result.records
    met = sum(
        1 for r in records if r.ok and r.latency_s is not None and r.latency_s * 1000 <= SLO_MS
    )
    failed = sum(1 for r in records if not r.ok)
    return (met / len(records) if records else 1.0), len(records), failed


def simulate(
    system: str, arrivals: Sequence[float], profile: LoadProfile, cold_start_s: float
) -> Figures:
    """What `tritonop simulate --policy <matching> --trace <these arrivals>` predicts."""
    from tritonop.api.validation import parse_object
    from tritonop.sim.engine import ServiceConfig
    from tritonop.sim.replica import ReplicaConfig
    from tritonop.sim.scenario import Scenario, run

    service = parse_object(spec("bench", system))
    assert service.spec.autoscaling is not None
    config = ServiceConfig(
        replica=ReplicaConfig(instances=1, service_time_ms=SERVICE_TIME_MS),
        cold_start_s=cold_start_s,
        slo_ms=SLO_MS,
        balancer="round-robin",
        seed=1,
        metric_delay_s=METRIC_DELAY_S,
        timeline_step_s=0.5,  # as often as the real Deployments are sampled
    )
    scenario = Scenario(
        service.spec.autoscaling,
        config,
        list(arrivals),
        profile.duration,
        INTERVAL_S[system],
        "warm",
    )
    result = run(SIM_POLICY[system], scenario)
    timeline = result.timeline
    samples = list(zip(timeline.times, timeline.desired, strict=False))
    _, delay, _, settled, _ = replicas_figures(samples, 0.0, profile)
    return Figures(
        attainment=result.slo_attainment,
        replica_seconds=result.replica_seconds,
        scale_up_delay_s=delay,
        peak=result.max_replicas,
        settled=settled,
        scale_events=result.scale_events,
        requests=result.requests,
        changes=changes(samples, 0.0, profile.duration),
    )


def sim_command(system: str, cold_start_s: float) -> str:
    """The equivalent command line (the arrivals saved as a CSV trace)."""
    return (
        f"tritonop simulate --spec <{system} spec> --trace <arrivals.csv> "
        f"--policy {SIM_POLICY[system]} --service-time-ms {SERVICE_TIME_MS:g} "
        f"--cold-start-s {cold_start_s:.1f} --interval {INTERVAL_S[system]:g} "
        f"--metric-delay-s {METRIC_DELAY_S:g} --balancer round-robin --slo-ms {SLO_MS:g}"
    )


def run_load(
    kubeconfig: Path, namespace: str, name: str, arrivals: Sequence[float], duration: float
) -> Callable[[], LoadResult]:
    """Start replaying `arrivals` to one service in a thread; returns a join function."""
    config = LoadConfig(
        profile=Profile(f"replay {name}", replay=tuple(arrivals)),
        duration_s=duration,
        max_requests=len(arrivals) + 1,
        refresh_s=0.5,
        wait_for_pods_s=60.0,
        seed=1,
    )
    generator = LoadGenerator(
        config, KubernetesEndpoints(str(kubeconfig), namespace, name), out=None
    )
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(generator.run())
        except BaseException as error:
            box["error"] = error

    thread = threading.Thread(target=target, daemon=True, name=f"load-{name}")
    thread.start()

    def join() -> LoadResult:
        thread.join(duration + 90)
        if thread.is_alive():
            raise RuntimeError(f"the load on {name} did not end")
        if "error" in box:
            raise box["error"]
        return box["result"]  # type: ignore[no-any-return]

    return join


def hpa_active(tools: Tools, namespace: str, name: str) -> bool:
    hpa = tools.get("hpa", name, namespace) or {}
    conds = {c["type"]: c["status"] for c in (hpa.get("status") or {}).get("conditions") or []}
    return conds.get("ScalingActive") == "True"


def wait_ready(tools: Tools, system: str, namespace: str, name: str) -> None:
    """Until the service has a Ready pod and its autoscaler has valid metrics."""
    wait_until(
        lambda: ((tools.get("deployment", name, namespace) or {}).get("status") or {}).get(
            "readyReplicas"
        ),
        180,
        f"{system}: a ready pod",
        interval=1.0,
    )
    if system == "Operator":

        def active() -> bool:
            obj = tools.get("inferenceservice", name, namespace) or {}
            conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
            return bool(conds.get("ScalingActive", {}).get("status") == "True")

        wait_until(active, 120, "Operator: ScalingActive", interval=1.0)
    else:
        hpa = name if system == "HPA" else f"keda-hpa-{name}"
        wait_until(
            lambda: hpa_active(tools, namespace, hpa), 180, f"{system}: HPA active", interval=1.0
        )


def cold_start(tools: Tools, namespaces: Sequence[str]) -> float | None:
    """Mean seconds from a pod's creation to its Ready condition, over the run's pods."""
    spans = []
    for namespace in namespaces:
        for pod in tools.items("pods", namespace):
            ready = next(
                (c for c in pod["status"].get("conditions") or [] if c["type"] == "Ready"), None
            )
            if ready and ready["status"] == "True":
                spans.append(
                    parse_time(ready["lastTransitionTime"])
                    - parse_time(pod["metadata"]["creationTimestamp"])
                )
    return statistics.mean(spans) if spans else None


def run_profile(
    cluster: LocalCluster,
    tools: Tools,
    profile: LoadProfile,
    seed: int,
    cold_start_s: float,
    systems: Sequence[str] = SYSTEMS,
) -> dict[str, Any]:
    """The three systems on one profile; returns the measured and predicted figures."""
    suffix = f"{profile.name}-{int(time.time()) % 100000}"
    targets = {s: (f"dataplane-peers-{s.lower()}-{suffix}", f"tis-{s.lower()}") for s in systems}
    for system, (namespace, name) in targets.items():
        tools.kubectl("create", "namespace", namespace)
        wait_until(lambda ns=namespace: tools.get("serviceaccount", "default", ns), 30, "SA")  # type: ignore[misc]
        tools.apply([spec(name, system)], namespace)
    for system, (namespace, name) in targets.items():
        wait_ready(tools, system, namespace, name)
    print(f"[bench] {profile.name}: all three services ready; offering the load", flush=True)
    arrivals = profile.arrivals(seed)
    sampler = Sampler(tools, targets).start()
    origin = time.monotonic()
    joins = {
        s: run_load(cluster.kubeconfig, ns, name, arrivals, profile.duration)
        for s, (ns, name) in targets.items()
    }
    results = {s: join() for s, join in joins.items()}
    sampler.stop()
    measured_cold = cold_start(tools, [ns for ns, _ in targets.values()])
    sim_cold = measured_cold if measured_cold is not None else cold_start_s
    out: dict[str, Any] = {"profile": profile.name, "requests": len(arrivals), "systems": {}}
    for system in systems:
        # Each load's clock starts when its first pod is in rotation: align on it.
        start = results[system].started_at or origin
        seconds, delay, peak, settled, events = replicas_figures(
            sampler.samples.get(system, []), start, profile
        )
        share, sent, failed = attainment(results[system])
        samples = sampler.samples.get(system, [])
        real = Figures(
            share, seconds, delay, peak, settled, events, sent, failed,
            changes(samples, start, profile.duration),
        )  # fmt: skip
        predicted = simulate(system, arrivals, profile, sim_cold)
        out["systems"][system] = {"real": real.__dict__, "sim": predicted.__dict__}
    out["cold_start_s"] = round(sim_cold, 2)
    for namespace, _ in targets.values():
        tools.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    return out


def table(report: dict[str, Any]) -> str:
    """One profile's figures, measured | simulated, as a Markdown table."""

    def pct(x: float) -> str:
        return f"{x * 100:.1f}%"

    def sec(x: float | None) -> str:
        return "—" if x is None else f"{x:.1f} s"

    lines = [
        f"**{report['profile']}** ({report['requests']} requests each; measured cold start "
        f"{report['cold_start_s']:.1f} s; real | sim)",
        "",
        "| system | SLO 500 ms met | replica-seconds | scale-up delay | peak | settled | "
        "scale events | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for system, figs in report["systems"].items():
        r, s = figs["real"], figs["sim"]
        lines.append(
            f"| {system} | {pct(r['attainment'])} \\| {pct(s['attainment'])} "
            f"| {r['replica_seconds']:.0f} \\| {s['replica_seconds']:.0f} "
            f"| {sec(r['scale_up_delay_s'])} \\| {sec(s['scale_up_delay_s'])} "
            f"| {r['peak']} \\| {s['peak']} | {r['settled']} \\| {s['settled']} "
            f"| {r['scale_events']} \\| {s['scale_events']} | {r['failed']} of {r['requests']} |"
        )
    return "\n".join(lines)


def bench_nodes() -> list[NodeSpec]:
    """The default nodes plus two more H100 nodes: 32 GPUs for 3 x maxReplicas 10."""
    gpu = {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": "8"}
    extra = [
        NodeSpec(
            name=n,
            labels={"nvidia.com/gpu.product": H100_PRODUCT, "nvidia.com/gpu.count": "8"},
            taints=[dict(GPU_TAINT)],
            allocatable=dict(gpu),
        )
        for n in ("gpu-h100-c", "gpu-h100-d")
    ]
    return [*default_nodes(), *extra]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m e2e.bench.peers", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--profiles", default="step,burst", help="comma-separated: step, burst")
    ap.add_argument(
        "--systems", default=",".join(SYSTEMS), help="comma-separated: Operator, HPA, KEDA"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cold-start", type=float, default=20.0, help="model load of a new pod, s")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    ap.add_argument("--write", metavar="PATH", help="write the tables into this Markdown file")
    args = ap.parse_args(argv)
    profiles = [PROFILES[p] for p in args.profiles.split(",") if p]
    systems = tuple(s for s in SYSTEMS if s in args.systems.split(","))
    t0 = time.monotonic()
    reports = []
    with data_plane_turn("python -m e2e.bench.peers"):
        cluster = LocalCluster(nodes=bench_nodes(), die_with_parent=True)
        cluster.up()
        runner = None
        operator = None
        peers = None
        try:
            tools = Tools(
                cluster.kubeconfig, f"{bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}"
            )
            install_crds_and_rbac(tools)
            peers = cluster.start_peers(keda="KEDA" in systems)
            kubeconfig = cluster.service_account_kubeconfig(
                OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, cluster.state_dir / "operator.kubeconfig"
            )
            operator = OperatorProcess(
                kubeconfig=kubeconfig,
                log_path=cluster.logs_dir / "operator.log",
                env={"TRITONOP_PROMETHEUS_URL": peers.prometheus_url},
            )
            operator.start()
            runner = start_pod_runner(
                cluster.kubeconfig, service_time_ms=SERVICE_TIME_MS, load_delay_s=args.cold_start
            )
            for profile in profiles:
                report = run_profile(cluster, tools, profile, args.seed, args.cold_start, systems)
                reports.append(report)
                print("\n" + table(report) + "\n", flush=True)
        finally:
            if runner is not None:
                runner.stop()
            if operator is not None:
                operator.stop()
            if peers is not None:
                peers.stop()
            cluster.down()
    elapsed = time.monotonic() - t0
    print(f"[bench] {len(reports)} profile(s) in {elapsed:.0f} s")
    cold = reports[0]["cold_start_s"] if reports else args.cold_start
    for system in systems:
        print(f"  sim for {system}: {sim_command(system, cold)}")
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2))
    if args.write:
        Path(args.write).write_text("\n\n".join(table(r) for r in reports) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
