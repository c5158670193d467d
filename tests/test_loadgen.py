"""The load generator against emulators on 127.0.0.1 (a static endpoint list, no cluster)."""

from __future__ import annotations

import io
import random
import socket
from dataclasses import replace
from pathlib import Path

import pytest
from e2e.load import (
    Endpoint,
    LoadConfig,
    StaticEndpoints,
    parse_profile,
    percentile,
    ready_loopback_endpoints,
    run_load,
)
from e2e.load.profiles import ProfileError
from e2e.tritonsim import EmulatorConfig, ServiceSettings, TritonEmulator

FAST = EmulatorConfig(http_port=0, metrics_port=0, service=ServiceSettings(service_time_ms=5))


def test_profiles_follow_their_syntax() -> None:
    steps = parse_profile("step:5:30@60:10@90")
    assert steps.rate is not None
    assert [steps.rate(t) for t in (0, 59.9, 60, 89, 90, 1e6)] == [5, 5, 30, 30, 10, 10]
    assert steps.peak == 30
    ramp = parse_profile("ramp:2:62@60")
    assert ramp.rate is not None
    assert [ramp.rate(t) for t in (0, 30, 60, 120)] == [2, 32, 62, 62]
    assert parse_profile("constant:12.5").peak == 12.5
    for bad in ("constant:-1", "step:5:30", "ramp:1", "steady:3", "step:a:2@3", "constant:nan"):
        with pytest.raises(ProfileError):
            parse_profile(bad)


def test_poisson_arrivals_match_the_rate() -> None:
    profile = parse_profile("step:50:150@10")
    arrivals = []
    for t in profile.arrivals(random.Random(7)):
        if t >= 20:
            break
        arrivals.append(t)
    assert arrivals == sorted(arrivals)
    first_half = sum(1 for t in arrivals if t < 10)
    second_half = len(arrivals) - first_half
    # Poisson counts: 500 +- 4 sigma (sqrt 500 = 22), 1500 +- 4 sigma (39)
    assert abs(first_half - 500) < 90
    assert abs(second_half - 1500) < 155


def test_trace_profile_replays_arrivals(tmp_path: Path) -> None:
    pytest.importorskip("tritonop.sim.traces")
    trace = tmp_path / "calls.csv"
    trace.write_text("time,function\n100.5,f\n100.0,f\n103.0,g\n")
    profile = parse_profile(f"trace:{trace}")
    assert list(profile.arrivals(random.Random(1))) == [0.0, 0.5, 3.0]
    with pytest.raises(ProfileError):
        parse_profile(f"trace:{tmp_path / 'missing.csv'}")


def test_only_ready_loopback_pods_receive_traffic() -> None:
    def pod(
        name: str, ip: str | None, ready: bool = True, deleting: bool = False
    ) -> dict[str, object]:
        metadata: dict[str, object] = {"name": name}
        if deleting:
            metadata["deletionTimestamp"] = "2025-01-01T00:00:00Z"
        return {
            "metadata": metadata,
            "status": {
                "podIP": ip,
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }

    pods = [
        pod("b", "127.64.1.3"),
        pod("a", "127.64.1.2"),
        pod("starting", "127.64.1.4", ready=False),
        pod("leaving", "127.64.1.5", deleting=True),
        pod("elsewhere", "10.244.1.7"),
        pod("no-ip", None),
    ]
    assert ready_loopback_endpoints(pods) == [
        Endpoint("a", "127.64.1.2", 8000),
        Endpoint("b", "127.64.1.3", 8000),
    ]


def test_percentile_interpolates() -> None:
    assert percentile([], 50) is None
    assert percentile([4.0], 95) == 4.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([0.0, 10.0], 95) == pytest.approx(9.5)


async def test_load_spreads_over_ready_pods_and_skips_loading_ones() -> None:
    ready = TritonEmulator(FAST)
    loading = TritonEmulator(replace(FAST, load_delay_s=0.5))
    await ready.start()
    await loading.start()
    endpoints = StaticEndpoints(
        (
            Endpoint("ready", "127.0.0.1", ready.http_port),
            Endpoint("loading", "127.0.0.1", loading.http_port),
        )
    )
    config = LoadConfig(
        profile=parse_profile("constant:50"),
        duration_s=1.5,
        max_requests=1000,
        window_s=0.4,
        refresh_s=0.2,
        seed=3,
    )
    progress = io.StringIO()
    try:
        result = await run_load(config, endpoints, out=progress)
    finally:
        await ready.stop()
        await loading.stop()

    summary = result.summary
    # The loading emulator answers 400 to inferences until its model is READY: no errors
    # means no request reached it before its readiness probe passed.
    assert summary.errors == 0, summary.errors_by_kind
    assert 40 <= summary.sent <= 115  # Poisson(75)
    assert summary.stopped_by == "duration"
    assert summary.duration_s == pytest.approx(1.5, abs=0.3)
    assert summary.p95_ms is not None and summary.p50_ms is not None
    assert summary.p50_ms <= summary.p95_ms <= (summary.p99_ms or 0)
    assert set(summary.pods_seen) == {"ready", "loading"}
    to_loading = [record for record in result.records if record.endpoint == "loading"]
    assert to_loading, "the pod that finished loading must join the rotation"
    assert min(record.sent_at for record in to_loading) > 0.2
    served = {
        name: emulator.metrics_snapshot().models[0].success
        for name, emulator in (("ready", ready), ("loading", loading))
    }
    assert served == {
        name: sum(1 for record in result.records if record.endpoint == name) for name in served
    }
    assert len(result.windows) >= 3
    assert sum(window.ok for window in result.windows) == summary.ok
    assert sum(window.sent for window in result.windows) == summary.sent
    assert progress.getvalue().count("\n") == len(result.windows)
    assert result.percentile_ms(95, since=1.0) is not None


async def test_runs_stop_at_the_request_limit_and_record_errors() -> None:
    emulator = TritonEmulator(FAST)
    await emulator.start()
    try:
        bounded = LoadConfig(
            profile=parse_profile("constant:400"), duration_s=5.0, max_requests=25, window_s=1.0
        )
        result = await run_load(
            bounded, StaticEndpoints((Endpoint("pod", "127.0.0.1", emulator.http_port),)), out=None
        )
        assert result.summary.sent == 25 and result.summary.ok == 25
        assert result.summary.stopped_by == "max_requests"
        assert result.summary.duration_s < 2.0

        loading = TritonEmulator(replace(FAST, load_delay_s=0.3))
        await loading.start()
        patient = replace(bounded, max_requests=5, wait_for_pods_s=5.0)
        try:
            result = await run_load(
                patient,
                StaticEndpoints((Endpoint("pod", "127.0.0.1", loading.http_port),)),
                out=None,
            )
        finally:
            await loading.stop()
        assert result.summary.errors_by_kind == {}  # the clock started once the pod was ready

        wrong_model = replace(bounded, model="nosuchmodel", max_requests=5)
        result = await run_load(
            wrong_model,
            StaticEndpoints((Endpoint("pod", "127.0.0.1", emulator.http_port),)),
            out=None,
        )
        assert result.summary.errors_by_kind == {"http_404": 5}  # unknown model, as Triton
    finally:
        await emulator.stop()

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    unprobed = replace(bounded, max_requests=5, probe_ready=False)
    result = await run_load(
        unprobed, StaticEndpoints((Endpoint("gone", "127.0.0.1", closed_port),)), out=None
    )
    assert result.summary.errors_by_kind == {"connect": 5}
    nothing_ready = replace(bounded, max_requests=5)
    result = await run_load(
        nothing_ready, StaticEndpoints((Endpoint("gone", "127.0.0.1", closed_port),)), out=None
    )
    assert result.summary.errors_by_kind == {"no_endpoint": 5}
    with pytest.raises(ValueError, match="bounded"):
        LoadConfig(profile=parse_profile("constant:1"), duration_s=float("inf"), max_requests=1)
