"""The autoscaling loop end to end: load -> Triton's queue -> metrics -> operator -> Deployment ->
scheduler -> new pods -> the queue drains -> later the service shrinks.

Everything is real except the GPUs: the operator (as its ServiceAccount) scrapes
`:8002/metrics` on pod IPs inside 127.0.0.0/8, where the pod runner binds one Triton server
per Running pod and marks the pod Ready once the server is; the load generator sends KServe v2
inference requests to the Ready pods. The server is NVIDIA's tritonserver (CPU build from the
`nvidia-pytriton` wheel, python-backend `simple` model sleeping its service time) or the
emulator: the step and restart scenarios run on both; fail-static on garbage and HTTP 500
metrics needs the emulator (a real server's metrics cannot be made to misbehave), a killed
server, gRPC and the restricted model-control API need the real one (see e2e/README.md).
Assertions are on what the API server (objects, Events, the audit log of the operator's
writes) and the servers report.

Every load is bounded in time and count. Figures are printed (`-s`) and appended as JSON lines
to `<pytest tmp>/e2e*/dataplane-figures.jsonl`.

Timing constants, and why:
* INTERVAL: the e2e operator's TRITONOP_AUTOSCALE_INTERVAL_SECONDS (e2e/harness.py).
* SCALE_UP_MARGIN: a scale-up must follow the queue crossing its target within two intervals
  (one tick to see it, one spare for a tick whose scrape raced the crossing) plus this margin:
  the scrape itself (1 s timeout, normally milliseconds), the policy and the scale write in a
  worker thread, on two CPUs shared with the control plane, the emulators and the load.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from e2e.cluster import LocalCluster
from e2e.dataplane import (
    AdjustableRate,
    BackgroundLoad,
    ClusterView,
    Timeline,
    autoscaled_service,
    data_plane_turn,
    p95_ms,
    requests_between,
)
from e2e.harness import OPERATOR_USER, ROOT, OperatorProcess, Tools
from e2e.polling import WaitTimeout, wait_until
from e2e.services import condition
from e2e.tritonsim.emulator import MetricsFault
from e2e.tritonsim.podrunner import RESTART_DELAY_S, PodRunner, PodSettings, Server
from tritonop.autoscale.deletioncost import DELETION_COST
from tritonop.autoscale.loop import STATUS_METRICS_PERIOD_SECONDS
from tritonop.autoscale.queueing import MAX_TARGET_UTILIZATION
from tritonop.render.lockdown import ADMIN_KEY_FIELD, ADMIN_KEY_HEADER, admin_secret_name

pytestmark = pytest.mark.kwok_only

INTERVAL = 2.0
SCALE_UP_MARGIN = 1.0
SLO_MS = 500.0
#: Poll interval of this file's waits: the times they return (all pods ready, metrics back)
#: are measurements, so they are taken often; the probes are cheap API reads.
POLL_S = 0.1
H100_NODES = {"gpu-h100-a", "gpu-h100-b"}
#: Emulated model: 50 ms per request on one instance, so one pod serves about 20 requests/s.
SERVICE_TIME_MS = 50.0
POD_CAPACITY = 1000.0 / SERVICE_TIME_MS


Record = Callable[..., None]


def needed(rate: float) -> int:
    """Replicas the emulated model needs for `rate` req/s: the fewest that carry it at the
    highest utilisation any target allows (the policy never plans a replica busier)."""
    return max(1, math.ceil(rate / (POD_CAPACITY * MAX_TARGET_UTILIZATION) - 1e-9))


@pytest.fixture(scope="module")
def figures(work_dir: Path) -> Iterator[Record]:
    """Print a scenario's measured figures and append them as one JSON line."""
    path = work_dir / "dataplane-figures.jsonl"

    def record(scenario: str, **values: Any) -> None:
        line = {"scenario": scenario, **values}
        print(f"\n[figures] {json.dumps(line)}", flush=True)
        with path.open("a") as out:
            out.write(json.dumps(line) + "\n")

    yield record
    print(f"\ndata-plane figures: {path}")


@pytest.fixture(scope="module")
def turn(podrunner: PodRunner) -> Iterator[None]:
    """This machine's data-plane lock for the module (see `data_plane_turn`), released once
    this session's emulators are gone, so another session's pods may take the same IPs."""
    with data_plane_turn("pytest e2e/test_dataplane.py"):
        yield
        with contextlib.suppress(WaitTimeout):
            wait_until(lambda: not podrunner.pods(), 60, "the data-plane pods to go", interval=0.5)


@dataclass
class DataPlane:
    """What a scenario runs on: the operator (as its ServiceAccount), the pod runner serving
    its pods, and a fresh `dataplane-*` namespace, with this module's turn of the data plane."""

    cluster: LocalCluster
    operator: OperatorProcess
    installed: Tools
    podrunner: PodRunner
    namespace: str
    view: ClusterView


@pytest.fixture
def plane(
    cluster: LocalCluster,
    operator: OperatorProcess,
    installed: Tools,
    podrunner: PodRunner,
    turn: None,
    dataplane_namespace: str,
) -> DataPlane:
    view = ClusterView(cluster.kubeconfig, cluster.audit_log)
    return DataPlane(cluster, operator, installed, podrunner, dataplane_namespace, view)


def serve(
    runner: PodRunner,
    namespace: str,
    name: str,
    load_delay_s: float = 1.0,
    server: Server = Server.EMULATOR,
) -> None:
    """The server and model of one service's pods (set before its pods start)."""
    runner.configure(
        PodSettings(
            service_time_ms=SERVICE_TIME_MS,
            instances=1,
            load_delay_s=load_delay_s,
            server=server,
        ),
        namespace=namespace,
        service=name,
    )


def hold(until: float, check: Callable[[], None] | None = None) -> None:
    """Keep the current load until a monotonic time, checking an invariant as it runs."""
    while time.monotonic() < until:
        if check is not None:
            check()
        time.sleep(min(0.5, max(0.0, until - time.monotonic())))


def first_after(times: list[float], after: float) -> float | None:
    return next((t for t in times if t > after), None)


def operator_scale_writes(view: ClusterView, namespace: str, name: str) -> list[float]:
    """When the operator wrote the service's Deployment scale (audit log), oldest first."""
    return view.scale_writes(OPERATOR_USER, namespace, name)


def next_scale_write(plane: DataPlane, name: str, after: float, timeout: float, what: str) -> float:
    """Wait for the operator's first scale write to the service's Deployment after `after`;
    returns its time (from the audit log, so the poll interval does not blur it)."""
    return wait_until(
        lambda: first_after(operator_scale_writes(plane.view, plane.namespace, name), after),
        timeout,
        what,
        interval=POLL_S,
    )


def scale_down_seen(
    plane: DataPlane, timeline: Timeline, name: str, *, after: float, below: int, within: float
) -> float:
    """Wait for the operator's first scale write after `after` (the scale-down a repair lets
    through) and for the sampler to see fewer than `below` replicas, so the timeline the
    scenario reports holds it; returns the write's time."""
    written_at = next_scale_write(plane, name, after, within, f"a scale-down below {below}")
    wait_until(
        lambda: (timeline.replicas_at(time.monotonic()) or below) < below,
        15,
        "the sampler to see the scale-down",
        interval=POLL_S,
    )
    return written_at


def round_or_none(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def scaling_active(view: ClusterView, namespace: str, name: str) -> dict[str, Any]:
    return condition(view.service(namespace, name), "ScalingActive")


def wait_ready_and_stable(
    view: ClusterView, timeline: Timeline, namespace: str, name: str, *, at_least: int
) -> int:
    """Wait for at least `at_least` replicas, all ready, unchanged for two intervals, with
    ScalingActive=True; returns the replica count."""

    def ready_and_stable() -> bool:
        deployment = view.deployment(namespace, name) or {}
        replicas = deployment["spec"]["replicas"]
        changes = timeline.replicas()
        return bool(
            replicas >= at_least
            and (deployment.get("status") or {}).get("readyReplicas") == replicas
            and changes
            and time.monotonic() - changes[-1][0] > 2 * INTERVAL
            and scaling_active(view, namespace, name).get("status") == "True"
        )

    what = f">= {at_least} ready replicas, stable, ScalingActive=True"
    wait_until(ready_and_stable, 60, what, interval=POLL_S)
    return timeline.replicas()[-1][1]


def live_signal(operator: OperatorProcess, namespace: str, name: str, signal: str) -> float | None:
    """One of the service's live autoscaling signals on the operator's /metrics (None until the
    operator has observed the service, or while its /metrics does not answer)."""
    labels = f'name="{name}",namespace="{namespace}",signal="{signal}"'
    try:
        page = operator.metrics()
    except OSError:
        return None
    found = re.search(rf"^tritonop_autoscaler_signal\{{{labels}\}} ([0-9.e+-]+)$", page, re.M)
    return float(found.group(1)) if found else None


def wait_steady(plane: DataPlane, name: str, load: BackgroundLoad) -> None:
    """Wait until load flows, ScalingActive=True, and the operator measures a request rate.

    The rate is read from the operator's /metrics, where the signals are live at every
    interval: status.metrics carries the numbers at most once per
    STATUS_METRICS_PERIOD_SECONDS (issue 14), so it may show an older rate for half a minute.
    """
    namespace, view = plane.namespace, plane.view
    wait_until(lambda: load.started, 60, "a first ready pod receiving load", interval=POLL_S)

    def active_with_rate() -> bool:
        obj = view.service(namespace, name) or {}
        rate = live_signal(plane.operator, namespace, name, "request_rate")
        return bool(
            condition(obj, "ScalingActive").get("status") == "True"
            and (rate or 0) > load.rate.rate / 2
        )

    wait_until(
        active_with_rate, 30, "ScalingActive=True with the request rate measured", interval=POLL_S
    )


@dataclass
class Scenario:
    """A service of one scenario under load: see `steady_load`."""

    load: BackgroundLoad
    timeline: Timeline
    applied_at: float
    """When the InferenceService was applied (monotonic)."""


@dataclass
class ScaleRecord:
    """One reading of a service's scaling history in its three views: the operator's scale
    writes (audit log), its ScaledUp/ScaledDown Events and the sampled replica changes."""

    writes: list[float]
    changes: list[tuple[float, int]]
    events: list[tuple[str, int, int]]
    sequence: list[int]
    """Every sampled replica count, the first included: what the Events' chain must be."""

    @classmethod
    def read(cls, plane: DataPlane, name: str, timeline: Timeline, since: float) -> ScaleRecord:
        """Writes after `since`, changes sampled from just before it, and all the Events; the
        changes and the sequence come from one reading of the sampler, so they cannot differ
        by a change sampled in between."""
        replicas = timeline.replicas()
        return cls(
            writes=[
                t for t in operator_scale_writes(plane.view, plane.namespace, name) if t > since
            ],
            changes=[(t, r) for t, r in replicas if t > since - 0.5],
            events=plane.view.scale_events(plane.namespace, name),
            sequence=[r for _, r in replicas],
        )

    def agrees(self) -> bool:
        """Every write changed the replicas and is one Event."""
        return len(self.writes) == len(self.events) == len(self.changes)


@contextlib.contextmanager
def steady_load(
    plane: DataPlane,
    service: dict[str, Any],
    rate: AdjustableRate,
    *,
    duration_s: float,
    max_requests: int,
    load_delay_s: float = 1.0,
    server: Server = Server.EMULATOR,
) -> Iterator[Scenario]:
    """What every scenario starts with: the server and model set for the service's pods, the
    service applied, the sampler running, and the load (bounded by `duration_s` and
    `max_requests`) flowing with the operator reporting valid metrics (`wait_steady`).
    The sampler stops when the block ends; the caller waits for the load's result."""
    namespace, name = plane.namespace, service["metadata"]["name"]
    serve(plane.podrunner, namespace, name, load_delay_s, server)
    plane.installed.apply([service], namespace)
    applied_at = time.monotonic()
    load = BackgroundLoad(
        plane.cluster.kubeconfig,
        namespace,
        name,
        rate,
        duration_s=duration_s,
        max_requests=max_requests,
    )
    with Timeline(plane.podrunner, plane.view, namespace, name) as timeline:
        load.start()
        wait_steady(plane, name, load)
        yield Scenario(load, timeline, applied_at)


#: The scenarios that run on both data planes: the emulator, and NVIDIA's tritonserver.
BOTH_SERVERS = pytest.mark.parametrize("server", [Server.EMULATOR, Server.TRITONSERVER])


@BOTH_SERVERS
def test_step_load_scales_up_on_the_queue_and_down_after_the_window(
    plane: DataPlane, figures: Record, server: Server
) -> None:
    namespace, name = plane.namespace, "step"
    view = plane.view
    window, target, low, high = 20, 4.0, 10.0, 60.0
    service = autoscaled_service(name, targets={"queueDepth": target}, scale_down_window_s=window)
    rate = AdjustableRate(low, peak=high)
    # Steady: one replica carries `low` (half its capacity); the operator reads valid metrics
    # and keeps one replica.
    with steady_load(
        plane, service, rate, duration_s=330, max_requests=15000, server=server
    ) as scenario:
        load, timeline = scenario.load, scenario.timeline

        def one_replica() -> None:
            deployment = view.deployment(namespace, name) or {}
            assert deployment["spec"]["replicas"] == 1, "scaled while the load was steady"

        steady_until = max(time.monotonic() + 8, load.generator.started_at + 12)
        hold(steady_until, one_replica)

        # Step: six times the load, three times what one replica carries.
        step_at = rate.set(high)
        scaled_up_at = next_scale_write(plane, name, step_at, 20, "the operator's scale-up")
        crossed_at = wait_until(
            lambda: timeline.queue_crossed(target, step_at),
            5,
            "the queue crossing its target",
            interval=POLL_S,
        )
        delay = scaled_up_at - crossed_at
        assert delay <= 2 * INTERVAL + SCALE_UP_MARGIN, (
            f"scaled up {delay:.1f}s after the queue crossed {target}/replica"
        )

        hold(step_at + 30)
        settled_high = (view.deployment(namespace, name) or {})["spec"]["replicas"]
        assert settled_high >= high / POD_CAPACITY, "fewer replicas than the load needs"
        # Acceptance 3 of issue 10: within one replica of what the load needs (the fewest
        # replicas that carry it at the highest utilisation a target allows)
        assert settled_high <= needed(high) + 1, f"{settled_high} replicas for {high} req/s"
        pods = view.pods(namespace, name)
        assert len(pods) == settled_high
        assert {p["spec"].get("nodeName") for p in pods} <= H100_NODES, "a pod off the H100s"
        for pod in pods:
            limits = pod["spec"]["containers"][0]["resources"]["limits"]
            assert str(limits.get("nvidia.com/gpu")) == "1"
        # The backlog the first pod built before the new ones were ready drains at that pod's
        # spare capacity, so how long it takes depends on how fast the new servers came up
        # (real tritonservers with their python-backend stubs are slower on a busy machine):
        # the SLO holds for the 10 s after it drained, not by a fixed time after the step.
        drained_at = wait_until(
            lambda: timeline.drained(target, step_at, lasting=2),
            120,
            f"every pod's queue at most {target} (the step's backlog drained)",
            interval=POLL_S,
        )
        high_until = max(step_at + 30, drained_at + 10)
        hold(high_until)

        # Drop: back to `low`. No scale-down before the stabilization window has passed.
        drop_at = rate.set(low)
        scaled_down_at = next_scale_write(plane, name, drop_at, window + 45, "the first scale-down")

        def settled() -> bool:
            changes = timeline.replicas()
            return bool(changes and changes[-1][1] <= 2 and time.monotonic() - changes[-1][0] > 6)

        wait_until(settled, 90, "replicas settled after the drop", interval=POLL_S)
        settled_at = timeline.replicas()[-1][0]
        after_down = timeline.replicas_at(scaled_down_at + 1.5) or 0
        hold(settled_at + 8)
    result = load.wait()
    # Load-aware scale-down: the operator wrote its pods' pod-deletion-cost after the drop
    # and before its first scale-down write, and the pods left carry it.
    annotated = [
        (t, pod) for t, pod in view.pod_writes(OPERATOR_USER, namespace, name) if t > drop_at
    ]
    assert annotated and annotated[0][0] < scaled_down_at, (
        f"no pod-deletion-cost written between the drop and the scale-down: {annotated}"
    )
    for pod in view.pods(namespace, name):
        annotations = pod["metadata"].get("annotations") or {}
        assert annotations.get(DELETION_COST, "").isdigit(), (pod["metadata"]["name"], annotations)

    replicas = timeline.replicas()
    peak = max(r for _, r in replicas)
    final = replicas[-1][1]
    down_delay = scaled_down_at - drop_at
    p95 = {
        "before": p95_ms(result, step_at - 8, step_at),
        "step_first_10s": p95_ms(result, step_at, step_at + 10),
        "high_last_10s": p95_ms(result, high_until - 10, high_until),
        "after": p95_ms(result, settled_at, settled_at + 8),
    }
    sent, failed = requests_between(result, 0, float("inf"))
    events = view.scale_events(namespace, name)
    figures(
        "step",
        server=server.value,
        load_rps={"low": low, "high": high, "pod_capacity": POD_CAPACITY},
        target_queue_depth=target,
        scale_up_delay_s=round(delay, 2),
        scale_up_after_step_s=round(scaled_up_at - step_at, 2),
        queue_crossed_after_step_s=round(crossed_at - step_at, 2),
        backlog_drained_after_step_s=round(drained_at - step_at, 1),
        high_phase_s=round(high_until - step_at, 1),
        peak_replicas=peak,
        settled_replicas_high=settled_high,
        needed_replicas={"high": needed(high), "low": needed(low)},
        final_replicas=final,
        scale_down_after_drop_s=round(down_delay, 1),
        stabilization_window_s=window,
        p95_ms={k: round_or_none(v) for k, v in p95.items()},
        slo_ms=SLO_MS,
        requests={"sent": sent, "failed": failed, "errors": result.summary.errors_by_kind},
        replicas_timeline=[(round(t - step_at, 1), r) for t, r in replicas],
        decisions=timeline.decisions(since=step_at - 4, origin=step_at),
        scale_events=events,
        sampler_errors=timeline.errors,
    )

    assert min(r for _, r in replicas) >= 1, f"below minReplicas: {replicas}"
    assert all(r <= 6 for _, r in replicas)
    assert down_delay >= window, f"scaled down {down_delay:.1f}s after the drop (< {window}s)"
    assert after_down < settled_high and final < settled_high
    assert final <= needed(low) + 1, f"{final} replicas for {low} req/s after the drop"
    for phase in ("before", "high_last_10s", "after"):
        assert (p95[phase] or 0) < SLO_MS, f"p95 {phase} the step: {p95}"
    assert failed <= sent * 0.01, f"{failed} of {sent} requests failed: {result.summary}"


def test_queue_time_target_alone_drives_a_scale_up(plane: DataPlane, figures: Record) -> None:
    namespace, name = plane.namespace, "qtime"
    view = plane.view
    target_ms, low, high = 100.0, 8.0, 32.0
    service = autoscaled_service(name, max_replicas=4, targets={"queueTimeMs": target_ms})
    rate = AdjustableRate(low, peak=high)
    with steady_load(plane, service, rate, duration_s=90, max_requests=3000) as scenario:
        load, timeline = scenario.load, scenario.timeline
        hold(time.monotonic() + 4)
        assert timeline.replicas()[-1][1] == 1, "scaled at a load one replica carries"
        # 1.6 times what one replica serves: the queue, and so each request's wait, grows.
        step_at = rate.set(high)
        scaled_at = next_scale_write(plane, name, step_at, 20, "a scale-up")
        obj = wait_until(
            lambda: (s := view.service(namespace, name)) and s["status"].get("lastScale") and s,
            10,
            "status.lastScale",
            interval=POLL_S,
        )
    result = load.wait()

    last = obj["status"]["lastScale"]
    spec_targets = obj["spec"]["autoscaling"]["targets"]
    events = view.scale_events(namespace, name)
    figures(
        "queue_time",
        target_queue_time_ms=target_ms,
        load_rps={"low": low, "high": high, "pod_capacity": POD_CAPACITY},
        scale_up_after_step_s=round(scaled_at - step_at, 2),
        last_scale=last,
        p95_ms_before=round_or_none(p95_ms(result, step_at - 4, step_at)),
        requests={"sent": result.summary.sent, "failed": result.summary.errors},
    )
    assert "queueDepth" not in spec_targets
    assert last["to"] > last["from"] == 1
    assert "(queueTimeMs" in last["reason"], last["reason"]
    assert [e[:3] for e in events][:1] == [("ScaledUp", 1, last["to"])]


def test_busy_service_status_is_written_once_per_period_while_signals_stay_live(
    plane: DataPlane, figures: Record
) -> None:
    """Issue 14, status under load: a busy service's numbers move every interval, but with the
    replicas and conditions unchanged its status is written at most once per
    STATUS_METRICS_PERIOD_SECONDS (and at least once: the numbers are not left to go stale),
    while the decision loop keeps its interval and /metrics shows the live signals."""
    namespace, name = plane.namespace, "cadence"
    view = plane.view
    # Two replicas fixed by the bounds; the load needs one, so ScalingLimited stays True and
    # no decision changes the replicas or a condition's reason: only the numbers move.
    service = autoscaled_service(name, min_replicas=2, max_replicas=2)
    rate = AdjustableRate(0.3 * POD_CAPACITY, peak=0.3 * POD_CAPACITY)
    watched_s = 2 * STATUS_METRICS_PERIOD_SECONDS + 5
    with steady_load(plane, service, rate, duration_s=watched_s + 60, max_requests=5000) as sc:
        wait_ready_and_stable(view, sc.timeline, namespace, name, at_least=2)
        hold(time.monotonic() + 2 * INTERVAL)  # the ready pods' last status mirror lands
        started = time.monotonic()
        rates = []
        while time.monotonic() - started < watched_s:
            live = live_signal(plane.operator, namespace, name, "request_rate")
            assert live is not None, f"no request_rate signal for {name} on the operator's /metrics"
            rates.append(live)
            time.sleep(INTERVAL)
        ended = time.monotonic()
        rate.stop()
    sc.load.wait()
    writes = [t for t in view.status_writes(OPERATOR_USER, namespace, name) if started < t <= ended]
    figures(
        "status_cadence",
        watched_s=round(ended - started, 1),
        status_writes=len(writes),
        status_period_s=STATUS_METRICS_PERIOD_SECONDS,
        signal_samples=len(rates),
        distinct_request_rates=len(set(rates)),
    )
    assert sc.timeline.replicas()[-1][1] == 2
    # the live signals moved at (nearly) every interval: the loop kept deciding
    assert len(set(rates)) >= len(rates) // 2, rates
    bound = math.ceil((ended - started) / STATUS_METRICS_PERIOD_SECONDS)
    assert 1 <= len(writes) <= bound, (
        f"{len(writes)} status writes in {ended - started:.0f} s of steady load "
        f"(at most {bound}: one per {STATUS_METRICS_PERIOD_SECONDS:.0f} s)"
    )


def restore_metrics(plane: DataPlane, name: str, pods: list[str]) -> tuple[float, float]:
    """Give `pods` their metrics back; when that was, and how long until ScalingActive=True."""
    for pod in pods:
        plane.podrunner.configure(
            PodSettings(metrics_fault=MetricsFault.OK), namespace=plane.namespace, pod=pod
        )
    restored_at = time.monotonic()
    wait_until(
        lambda: scaling_active(plane.view, plane.namespace, name).get("status") == "True",
        3 * INTERVAL + 2,
        "ScalingActive=True after the metrics recovered",
        interval=POLL_S,
    )
    return restored_at, time.monotonic() - restored_at


def test_broken_metrics_hold_replicas_until_they_recover(plane: DataPlane, figures: Record) -> None:
    """Fail-static: with one pod's metrics answering HTTP 500 and another's garbage, the operator
    reports ScalingActive=False naming both and never scales down, although the load dropped;
    once the metrics return, ScalingActive turns True and the scale-down follows."""
    namespace, name = plane.namespace, "failstatic"
    view, podrunner = plane.view, plane.podrunner
    window = 6
    service = autoscaled_service(name, scale_down_window_s=window)
    rate = AdjustableRate(45.0, peak=45.0)
    with steady_load(plane, service, rate, duration_s=150, max_requests=6000) as scenario:
        load, timeline, created_at = scenario.load, scenario.timeline, scenario.applied_at

        held = wait_ready_and_stable(view, timeline, namespace, name, at_least=3)
        pods = sorted(p["metadata"]["name"] for p in view.pods(namespace, name))
        failing, garbled = pods[0], pods[1]
        podrunner.configure(
            PodSettings(metrics_fault=MetricsFault.ERROR), namespace=namespace, pod=failing
        )
        podrunner.configure(
            PodSettings(metrics_fault=MetricsFault.GARBAGE), namespace=namespace, pod=garbled
        )
        broken_at = rate.set(3.0)  # and the load drops: healthy metrics would now scale down

        def inactive_naming_both() -> dict[str, Any] | None:
            active = scaling_active(view, namespace, name)
            message = active.get("message", "")
            if active.get("status") == "False" and failing in message and garbled in message:
                return active
            return None

        inactive = wait_until(
            inactive_naming_both, 3 * INTERVAL + 2, "ScalingActive=False", interval=POLL_S
        )
        inactive_after = time.monotonic() - broken_at
        # Long enough that healthy metrics would have scaled down: past the policy's hold for
        # a new service (60 s, whose held recommendations then stay in the scale-down window
        # for `window` more seconds), the window after the drop, and a few intervals.
        broken_until = max(
            broken_at + window + 4 * INTERVAL, created_at + 60 + window + 3 * INTERVAL
        )

        def no_scale_down() -> None:
            deployment = view.deployment(namespace, name) or {}
            assert deployment["spec"]["replicas"] >= held, "scaled down on broken metrics"
            assert scaling_active(view, namespace, name).get("status") == "False"

        hold(broken_until, no_scale_down)
        restored_at, active_again_after = restore_metrics(plane, name, [failing, garbled])
        scaled_down_at = scale_down_seen(
            plane, timeline, name, after=restored_at, below=held, within=window + 20
        )
    result = load.wait()

    during = [s.replicas for s in timeline.api if broken_at <= s.t <= restored_at and s.replicas]
    figures(
        "fail_static",
        replicas_held=held,
        broken_pods={failing: "HTTP 500", garbled: "garbage"},
        broken_for_s=round(restored_at - broken_at, 1),
        inactive_after_s=round(inactive_after, 1),
        inactive_reason=inactive.get("reason"),
        inactive_message=inactive.get("message"),
        active_again_after_s=round(active_again_after, 1),
        scale_down_after_recovery_s=round(scaled_down_at - restored_at, 1),
        replicas_while_broken=sorted(set(during)),
        requests={"sent": result.summary.sent, "failed": result.summary.errors},
    )
    assert inactive["reason"] in ("IncompleteMetrics", "MissingMetrics")
    assert min(during) >= held
    assert not [
        t for t in operator_scale_writes(view, namespace, name) if broken_at < t < restored_at
    ], "a scale write while broken"
    assert timeline.replicas()[-1][1] < held


def fixed_service(name: str) -> dict[str, Any]:
    """A one-replica InferenceService without autoscaling: what the reconcile alone handles."""
    service = autoscaled_service(name)
    del service["spec"]["autoscaling"]
    service["spec"]["replicas"] = 1
    return service


def reconcile_seconds(plane: DataPlane, name: str) -> float:
    """Apply a fixed service and time it until its Deployment exists and its status says so."""
    plane.installed.apply([fixed_service(name)], plane.namespace)
    applied_at = time.monotonic()

    def reconciled() -> bool:
        obj = plane.view.service(plane.namespace, name) or {}
        return bool(
            plane.view.deployment(plane.namespace, name) is not None
            and (obj.get("status") or {}).get("observedGeneration") == 1
        )

    wait_until(reconciled, 30, f"{name} reconciled", interval=POLL_S)
    return time.monotonic() - applied_at


def event_loop_lag(operator: OperatorProcess) -> float:
    """The operator's own tritonop_event_loop_lag_seconds (largest lag of its last window)."""
    found = re.search(r"^tritonop_event_loop_lag_seconds ([0-9.e+-]+)$", operator.metrics(), re.M)
    assert found, "tritonop_event_loop_lag_seconds missing from the operator's /metrics"
    return float(found.group(1))


def test_absurd_metrics_hold_their_service_and_spare_the_operator(
    plane: DataPlane, figures: Record
) -> None:
    """Two pods serving the issue's absurd page pair (pending 7,000 -> 8,000, successes +5e-9,
    queue time +5 µs: a demand of ~1e9 replicas at face value): their service holds its
    replicas (never above maxReplicas) with ScalingActive=False, InvalidMetrics; the operator's /healthz stays up, its
    event loop stays responsive, and another service is reconciled as fast as before."""
    namespace, name = plane.namespace, "absurd"
    view, podrunner, operator = plane.view, plane.podrunner, plane.operator
    service = autoscaled_service(name, min_replicas=2, max_replicas=6)
    rate = AdjustableRate(8.0, peak=8.0)
    with steady_load(plane, service, rate, duration_s=90, max_requests=1500) as scenario:
        timeline = scenario.timeline

        def two_ready() -> bool:
            deployment = view.deployment(namespace, name) or {}
            return (deployment.get("status") or {}).get("readyReplicas") == 2

        wait_until(two_ready, 60, "two ready replicas", interval=POLL_S)
        before_s = reconcile_seconds(plane, "before")
        lag_before = event_loop_lag(operator)
        pods = sorted(p["metadata"]["name"] for p in view.pods(namespace, name))
        for pod in pods:
            podrunner.configure(
                PodSettings(metrics_fault=MetricsFault.ABSURD), namespace=namespace, pod=pod
            )
        broken_at = time.monotonic()

        def invalid() -> dict[str, Any] | None:
            active = scaling_active(view, namespace, name)
            if active.get("status") == "False" and active.get("reason") == "InvalidMetrics":
                return active
            return None

        active = wait_until(invalid, 3 * INTERVAL + 2, "ScalingActive=False, InvalidMetrics")
        invalid_at = time.monotonic()
        invalid_after = invalid_at - broken_at
        during_s = reconcile_seconds(plane, "during")
        health: list[bool] = []
        lags: list[float] = []

        def operator_fine() -> None:
            health.append(operator.healthy())
            lags.append(event_loop_lag(operator))
            deployment = view.deployment(namespace, name) or {}
            assert deployment["spec"]["replicas"] <= 6, "more than maxReplicas"
            time.sleep(0.5)

        hold(broken_at + 6 * INTERVAL + 2, operator_fine)
        restored_at, active_again_after = restore_metrics(plane, name, pods)
    scenario.load.wait()

    # The first absurd page alone (7,000 pending, whole counters) is a deep queue, and may be
    # scaled for, up to maxReplicas; from the second on, the pages are invalid and hold.
    writes = [
        t for t in operator_scale_writes(view, namespace, name) if invalid_at < t < restored_at
    ]
    figures(
        "absurd",
        invalid_after_s=round(invalid_after, 1),
        invalid_message=active.get("message"),
        healthz_ok=f"{sum(health)}/{len(health)}",
        event_loop_lag_s={"before": lag_before, "during_max": max(lags)},
        reconcile_s={"before": round(before_s, 2), "during": round(during_s, 2)},
        active_again_after_s=round(active_again_after, 1),
        replicas_while_absurd=sorted({r for t, r in timeline.replicas() if t >= broken_at}),
        scale_writes_while_invalid=len(writes),
    )
    assert all(health), f"/healthz failed {health.count(False)} of {len(health)} times"
    assert max(lags) < 1.0, f"event loop lag {max(lags):.2f}s while reading absurd pages"
    assert during_s <= max(5.0, 3 * before_s), (
        f"reconcile took {during_s:.1f}s (before {before_s:.1f}s)"
    )
    assert not writes, "a scale write while the metrics were invalid"


@BOTH_SERVERS
def test_operator_restart_during_a_scale_up_neither_repeats_nor_stalls_it(
    plane: DataPlane, figures: Record, server: Server
) -> None:
    """The operator restarts (SIGTERM, start again) right after a scale-up, while its new pods are
    still loading their model.

    "No duplicate scale", precisely: (a) every write of the operator to the Deployment's scale
    subresource changed spec.replicas, and is one ScaledUp/ScaledDown Event (writes, changes
    and Events are equal in number); (b) the Events' `from -> to` chain reproduces the
    Deployment's replica sequence exactly, starting at 1; (c) the restarted operator does not
    add replicas while the pods asked for before the restart are still starting, unless the
    queue per ready replica is above target (starting pods count as capacity). The loop goes
    on: status updates with fresh metrics resume, and a later load step scales up again.
    """
    namespace, name = plane.namespace, "restart"
    view = plane.view
    target = 4.0
    rate = AdjustableRate(10.0, peak=80.0)
    # A slow model load keeps the new pods starting across the restart.
    with steady_load(
        plane,
        autoscaled_service(name, max_replicas=10),
        rate,
        duration_s=150,
        max_requests=9000,
        load_delay_s=5.0,
        server=server,
    ) as scenario:
        load, timeline = scenario.load, scenario.timeline
        step_at = rate.set(35.0)
        scaled_at = next_scale_write(plane, name, step_at, 20, "the first scale-up")
        deployment = view.deployment(namespace, name) or {}
        asked = deployment["spec"]["replicas"]
        ready_then = (deployment.get("status") or {}).get("readyReplicas") or 0
        assert ready_then < asked, "the new pods were ready before the restart began"
        restart_at = time.monotonic()
        plane.operator.restart()
        restarted_at = time.monotonic()

        # The new process's /metrics has the service's signals from its first decision on
        # (status.metrics follows at most once per STATUS_METRICS_PERIOD_SECONDS).
        resumed_at = wait_until(
            lambda: (
                live_signal(plane.operator, namespace, name, "request_rate") is not None
                and time.monotonic()
            ),
            30,
            "the restarted operator's first decision (its live signals on /metrics)",
            interval=POLL_S,
        )
        all_ready_at = wait_until(
            lambda: (
                (d := view.deployment(namespace, name))
                and (d.get("status") or {}).get("readyReplicas") == d["spec"]["replicas"]
                and time.monotonic()
            ),
            90,
            "the pods asked for before the restart to be ready",
            interval=POLL_S,
        )
        second_step_at = rate.set(80.0)
        later_up_at = next_scale_write(
            plane, name, second_step_at, 20, "a scale-up after the restart"
        )
        hold(later_up_at + 3 * INTERVAL)

        def agreeing_counts() -> ScaleRecord | None:
            record = ScaleRecord.read(plane, name, timeline, since=step_at)
            return record if record.agrees() else None

        # Writes (audit log), Events and the sampled replica changes are three views of one
        # history that each lag the write a little, and the operator goes on scaling while the
        # load drains: compare them at a moment when all three have caught up. If they never
        # agree, the assertion below reports the last reading.
        try:
            record = wait_until(agreeing_counts, 10, "writes, Events and changes to agree")
        except WaitTimeout:
            record = ScaleRecord.read(plane, name, timeline, since=step_at)
    result = load.wait()

    # (a) and (b)
    scale_writes, changes, events, sequence = (
        record.writes,
        record.changes,
        record.events,
        record.sequence,
    )
    chain = [events[0][1]] + [to for _, _, to in events] if events else []
    # (c) scale writes after the restart while the earlier pods were starting, and the
    # emulators' queue per ready replica at each of them
    restarted_writes = [t for t in scale_writes if restart_at < t < all_ready_at]
    queue_at = {
        round(t - restart_at, 2): max(
            (s.average for s in timeline.queue if t - INTERVAL <= s.t <= t), default=0.0
        )
        for t in restarted_writes
    }
    figures(
        "restart",
        server=server.value,
        replicas_before_restart={"asked": asked, "ready": ready_then},
        scaled_up_after_step_s=round(scaled_at - step_at, 2),
        restart_took_s=round(restarted_at - restart_at, 1),
        decisions_resumed_after_restart_s=round(resumed_at - restarted_at, 1),
        later_scale_up_after_step_s=round(later_up_at - second_step_at, 2),
        scale_writes=len(scale_writes),
        replica_changes=len(changes),
        scale_events=events,
        replica_sequence=sequence,
        writes_while_earlier_pods_started=queue_at,
        requests={
            "sent": result.summary.sent,
            "failed": result.summary.errors,
            "errors": result.summary.errors_by_kind,
        },
    )
    assert len(scale_writes) == len(events) == len(changes), (scale_writes, events, changes)
    assert chain == sequence and sequence[0] == 1, (chain, sequence)
    assert all(queue > target for queue in queue_at.values()), queue_at
    assert max(sequence) > asked, "no scale-up after the restart"


def test_a_killed_tritonserver_holds_replicas_until_it_is_back(
    plane: DataPlane, figures: Record
) -> None:
    """Fail-static on real Triton: one pod's tritonserver is SIGKILLed (its metrics port now
    refuses connections) as the load drops. The operator reports ScalingActive=False naming
    that pod and does not scale down, although healthy metrics would (the policy's hold for a
    new service is over); the pod runner starts the server again after the kubelet's restart
    delay, ScalingActive turns True and the scale-down follows."""
    namespace, name = plane.namespace, "killed"
    view, podrunner = plane.view, plane.podrunner
    window = 6
    service = autoscaled_service(name, scale_down_window_s=window)
    rate = AdjustableRate(45.0, peak=45.0)
    with steady_load(
        plane, service, rate, duration_s=150, max_requests=6000, server=Server.TRITONSERVER
    ) as scenario:
        load, timeline, created_at = scenario.load, scenario.timeline, scenario.applied_at
        wait_ready_and_stable(view, timeline, namespace, name, at_least=3)
        # Past the hold for a new service (60 s, plus the window its held recommendations
        # stay in): from here a drop scales down within the window and an interval or two.
        hold(created_at + 60 + window + INTERVAL)
        held = timeline.replicas()[-1][1]
        victim = sorted(p["metadata"]["name"] for p in view.pods(namespace, name))[0]
        killed_pid = podrunner.kill_server(namespace, victim)
        killed_at = rate.set(3.0)

        def inactive_naming_victim() -> dict[str, Any] | None:
            active = scaling_active(view, namespace, name)
            if active.get("status") == "False" and victim in active.get("message", ""):
                return active
            return None

        # Seen while the server is down: the pod runner starts it again after RESTART_DELAY_S.
        inactive = wait_until(
            inactive_naming_victim, RESTART_DELAY_S, "ScalingActive=False", interval=POLL_S
        )
        inactive_after = time.monotonic() - killed_at

        def no_scale_down() -> None:
            deployment = view.deployment(namespace, name) or {}
            assert deployment["spec"]["replicas"] >= held, "scaled down while a server was down"

        def back() -> bool:
            return any(
                s.name == victim and s.ready and s.pid not in (None, killed_pid)
                for s in podrunner.pods()
            )

        wait_until(
            back,
            RESTART_DELAY_S + 60,
            "the killed server back",
            interval=POLL_S,
            check=no_scale_down,
        )
        back_at = time.monotonic()
        wait_until(
            lambda: scaling_active(view, namespace, name).get("status") == "True",
            30,
            "ScalingActive=True with the server back",
            interval=POLL_S,
        )
        active_again_after = time.monotonic() - back_at
        scaled_down_at = scale_down_seen(
            plane, timeline, name, after=back_at, below=held, within=window + 20
        )
    result = load.wait()

    during = [s.replicas for s in timeline.api if killed_at <= s.t <= back_at and s.replicas]
    figures(
        "killed_server",
        server="tritonserver",
        replicas_held=held,
        killed_pod=victim,
        down_for_s=round(back_at - killed_at, 1),
        inactive_after_s=round(inactive_after, 1),
        inactive_reason=inactive.get("reason"),
        inactive_message=inactive.get("message"),
        active_again_after_s=round(active_again_after, 1),
        scale_down_after_back_s=round(scaled_down_at - back_at, 1),
        requests={
            "sent": result.summary.sent,
            "failed": result.summary.errors,
            "errors": result.summary.errors_by_kind,
        },
    )
    assert inactive["reason"] == "IncompleteMetrics", inactive
    assert min(during) >= held
    assert not [
        t for t in operator_scale_writes(view, namespace, name) if killed_at < t < back_at
    ], "a scale write while the server was down"
    assert timeline.replicas()[-1][1] < held


def test_tritonserver_pod_serves_grpc_and_locks_model_control(plane: DataPlane) -> None:
    """On a pod's real tritonserver: inference over gRPC on the pod's gRPC port, and with the
    restricted-API flags the operator renders (the key from the service's own generated
    Secret, NAME-triton-admin), a model load without the key is refused over HTTP and gRPC,
    and accepted with it; the pod spec holds only the reference."""
    namespace, name = plane.namespace, "grpc"
    service = autoscaled_service(name, max_replicas=1)
    serve(plane.podrunner, namespace, name, server=Server.TRITONSERVER)
    plane.installed.apply([service], namespace)

    def ready_pod() -> dict[str, Any] | None:
        pods = plane.view.pods(namespace, name)
        ready = [p for p in pods if condition(p, "Ready").get("status") == "True"]
        return ready[0] if ready else None

    pod = wait_until(ready_pod, 90, "the pod Ready on its tritonserver", interval=POLL_S)
    ip = pod["status"]["podIP"]
    ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    (status,) = [s for s in plane.podrunner.pods() if s.name == pod["metadata"]["name"]]
    assert status.server == "tritonserver" and status.pid is not None
    secret = json.loads(
        plane.installed.kubectl(
            "get", "secret", admin_secret_name(name), "-n", namespace, "-o", "json"
        ).stdout
    )
    key = base64.b64decode(secret["data"][ADMIN_KEY_FIELD]).decode()
    assert key not in json.dumps(pod["spec"]), "the key in clear in the pod spec"
    assert f"{ADMIN_KEY_HEADER}={key}" in Path(f"/proc/{status.pid}/cmdline").read_text()

    client = grpcclient.InferenceServerClient(f"{ip}:{ports['grpc']}")
    try:
        inputs = []
        for tensor_name, value in (("INPUT0", 5), ("INPUT1", 2)):
            tensor = grpcclient.InferInput(tensor_name, [1, 16], "INT32")
            tensor.set_data_from_numpy(np.full((1, 16), value, dtype=np.int32))
            inputs.append(tensor)
        result = client.infer("simple", inputs)
        assert result.as_numpy("OUTPUT0").tolist() == [[7] * 16]
        assert result.as_numpy("OUTPUT1").tolist() == [[3] * 16]
        with pytest.raises(InferenceServerException, match="restricted"):
            client.load_model("simple")
        client.load_model("simple", headers={f"triton-grpc-protocol-{ADMIN_KEY_HEADER}": key})
    finally:
        client.close()

    def load(headers: dict[str, str]) -> int:
        connection = http.client.HTTPConnection(ip, ports["http"], timeout=30)
        try:
            connection.request("POST", "/v2/repository/models/simple/load", b"{}", headers)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    assert load({}) == 403
    assert load({ADMIN_KEY_HEADER: "wrong"}) == 403
    assert load({ADMIN_KEY_HEADER: key}) == 200


DEMO_PHASES = ("warm-up", "ramp", "plateau", "burst", "drop")


def held_by_backlog_until(output: str, phase: str) -> int:
    """The most replicas the demo's scale-ups up to the end of `phase` added for a backlog.

    What a load needs includes the requests already queued (issue 10: a draining backlog is
    demand): a ramp the first scale-up came late for leaves a queue of tens of requests, and
    the replicas sized to drain it within a cold start stay for the scale-down window, longer
    than the demo's short steady phases. Each ScaledUp reason says how many replicas a backlog
    held ("N held by a backlog"); the table's rows mark the scale-ups in order, with their
    phase, so the i-th marker goes with the i-th reason.
    """
    reasons = re.findall(r"^  ScaledUp: .*$", output, re.M)
    later = DEMO_PHASES[DEMO_PHASES.index(phase) + 1 :]
    markers = [
        row["phase"] for row in re.finditer(r"^\s*\d+s (?P<phase>\S+) .*<< ScaledUp", output, re.M)
    ]
    count = sum(1 for marked in markers if marked not in later)
    held = [re.search(r"(\d+) held by a backlog", reason) for reason in reasons[:count]]
    return max((int(found.group(1)) for found in held if found), default=0)


def test_demo_runs_scales_up_and_leaves_nothing_running(
    podrunner: PodRunner, turn: None, tmp_path: Path, figures: Record
) -> None:
    """`python -m e2e.demo` as a user (or CI, no terminal, no stdin) runs it: a short run, on
    real tritonserver (the demo's default)."""
    # The demo's pods get the same loopback IPs as this session's: let ours go first.
    wait_until(
        lambda: not podrunner.pods(), 60, "this session's data-plane pods to go", interval=0.5
    )
    state_dir = tmp_path / "demo-cluster"
    started = time.monotonic()
    finished = subprocess.run(
        [sys.executable, "-m", "e2e.demo", "--duration", "40", "--state-dir", str(state_dir)],
        cwd=ROOT,
        env={**os.environ, "CI": "true"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    took = time.monotonic() - started
    output = finished.stdout
    print(output[-4000:])
    ups = re.search(r"(\d+) scale-ups", output)
    figures(
        "demo",
        duration_s=40,
        took_s=round(took, 1),
        exit_code=finished.returncode,
        scale_ups=int(ups.group(1)) if ups else None,
    )
    assert finished.returncode == 0, f"{output[-3000:]}\n{finished.stderr[-3000:]}"
    assert ups is not None and int(ups.group(1)) >= 1, output[-3000:]
    # Acceptance 3 of issue 10: the steady phases end within one replica of what they need
    steady = {
        match["phase"]: (float(match["rate"]), int(match["most"]))
        for match in re.finditer(
            r"^(?P<phase>plateau|burst)\s+(?P<rate>[\d.]+)/s\s+\d+\s+\d+\s+\S+\s+\d+-(?P<most>\d+)$",
            output,
            re.M,
        )
    }
    assert set(steady) == {"plateau", "burst"}, output[-3000:]
    for phase, (rate, most) in steady.items():
        held = held_by_backlog_until(output, phase)
        assert most <= needed(rate) + 1 + held, (
            f"{phase}: {most} replicas for {rate} req/s ({held} held by a backlog)"
        )
    assert "ScaledUp" in output and "=== summary ===" in output
    # By default the demo's pods are served by real tritonservers, one per pod IP.
    assert re.search(r"tritonserver processes: \d+ over the run", output), output[-3000:]
    assert "\x1b[" not in output, "terminal control codes without a terminal"
    assert not state_dir.exists(), "the demo left its cluster behind"
