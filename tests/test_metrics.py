"""Reading Triton's metrics: parsing, counter deltas, scraping real local servers, Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from tritonop.autoscale.metrics import (
    MetricsParseError,
    PodEndpoint,
    PodScrape,
    PrometheusSource,
    TritonSample,
    metrics_url,
    observe,
    parse_triton_metrics,
    remember,
    scrape_pods,
    usable_models,
)

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def triton_page(models: dict[tuple[str, str], tuple[float, float, float]]) -> str:
    """A minimal Triton-style page: (pending, success, queue_us) per (model, version)."""
    lines = []
    for family, kind, index in (
        ("nv_inference_request_success", "counter", 1),
        ("nv_inference_queue_duration_us", "counter", 2),
        ("nv_inference_pending_request_count", "gauge", 0),
    ):
        lines += [f"# HELP {family} help text", f"# TYPE {family} {kind}"]
        for (model, version), values in models.items():
            lines.append(f'{family}{{model="{model}",version="{version}"}} {values[index]}')
    return "\n".join(lines) + "\n"


def scrape(pod: str, at: float, text: str, ip: str = "10.0.0.1") -> PodScrape:
    return PodScrape(pod, ip, at, sample=parse_triton_metrics(text))


def observe_one(
    previous: dict[str, PodScrape], current: dict[str, PodScrape], models: list[str] | None = None
) -> Any:
    return observe(
        previous,
        current,
        ready_replicas=len(current),
        starting_replicas=0,
        models=models or [],
        now=1000.0,
    )


# ------------------------------------------------------------------------------------ parsing


def test_parses_real_triton_page_per_model_version_with_failure_reasons() -> None:
    sample = parse_triton_metrics(fixture("triton_metrics_gpu_t0.txt"))
    assert sorted(sample.models) == [("bert", "1"), ("bert", "2"), ("resnet50", "1")]
    resnet = sample.models[("resnet50", "1")]
    assert resnet.pending == 2
    assert resnet.request_success == 12000
    assert resnet.queue_duration_us == 18_000_000
    assert resnet.request_duration_us == 98_400_000
    assert resnet.compute_infer_duration_us == 61_000_000
    assert resnet.inference_count == 45210
    assert resnet.exec_count == 9630
    assert resnet.request_failure == {"REJECTED": 3, "CANCELED": 0, "BACKEND": 1, "OTHER": 0}
    assert sample.models[("bert", "2")].request_failure["OTHER"] == 2
    # GPU, CPU and summary families are recorded by name only, and do not disturb parsing.
    assert {"nv_gpu_utilization", "nv_energy_consumption", "nv_cpu_utilization"} <= sample.families
    assert "nv_inference_queue_summary_us" in sample.families


def test_cpu_page_without_gpu_families_is_usable() -> None:
    sample = parse_triton_metrics(fixture("triton_metrics_cpu_idle.txt"))
    assert not any(name.startswith("nv_gpu_") for name in sample.families)
    selected, reason = usable_models(sample, [])
    assert reason is None
    assert [(s.model, s.pending, s.request_success) for s in selected] == [("simple", 0, 0)]


def test_counter_samples_with_total_suffix_and_created_are_read_like_triton_spelling() -> None:
    # prometheus-client's own exposition writes `<name>_total` and `<name>_created` samples;
    # Triton writes the bare name. Both must give the same numbers.
    registry = CollectorRegistry()
    labels = ["model", "version"]
    success = Counter("nv_inference_request_success", "ok", labels, registry=registry)
    queued = Counter("nv_inference_queue_duration_us", "queue", labels, registry=registry)
    pending = Gauge("nv_inference_pending_request_count", "pending", labels, registry=registry)
    success.labels("m", "1").inc(40)
    queued.labels("m", "1").inc(80_000)
    pending.labels("m", "1").set(3)
    exposition = generate_latest(registry).decode()
    assert "nv_inference_request_success_total{" in exposition
    assert "nv_inference_request_success_created{" in exposition
    other = parse_triton_metrics(exposition).models[("m", "1")]
    bare = parse_triton_metrics(triton_page({("m", "1"): (3, 40, 80_000)})).models[("m", "1")]
    assert (other.pending, other.request_success, other.queue_duration_us) == (3, 40, 80_000)
    assert (bare.pending, bare.request_success, bare.queue_duration_us) == (3, 40, 80_000)


def test_failure_counter_without_reason_label_from_older_triton() -> None:
    text = (
        "# TYPE nv_inference_request_failure counter\n"
        'nv_inference_request_failure{model="m",version="1"} 7\n'
    )
    assert parse_triton_metrics(text).models[("m", "1")].request_failure == {"": 7}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<html><body>502 Bad Gateway</body></html>", "not Prometheus text"),
        ("\x00\x01\x02 binary", "not Prometheus text"),
        ('{"status": "ok"}', "not Prometheus text"),
        ('nv_inference_pending_request_count{model="m",version="1"} NaN\n', "invalid value nan"),
        ('nv_inference_pending_request_count{model="m",version="1"} -1\n', "invalid value -1"),
        (
            "# TYPE nv_inference_request_success counter\n"
            'nv_inference_request_success{model="m",version="1"} 1\n'
            'nv_inference_request_success{model="m",version="1"} 2\n',
            "duplicate series",
        ),
    ],
)
def test_garbage_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(MetricsParseError, match=message):
        parse_triton_metrics(text)


def test_empty_body_parses_to_nothing_and_is_unusable() -> None:
    sample = parse_triton_metrics("")
    assert sample == TritonSample(models={}, families=frozenset())
    selected, reason = usable_models(sample, [])
    assert selected == []
    assert reason is not None
    assert "missing family nv_inference_pending_request_count" in reason


def test_missing_queue_duration_family_names_triton_flag() -> None:
    sample = parse_triton_metrics(fixture("triton_metrics_no_counter_latencies.txt"))
    _, reason = usable_models(sample, [])
    assert reason is not None
    assert "nv_inference_queue_duration_us" in reason
    assert "counter_latencies" in reason


def test_model_restriction_selects_all_versions_and_reports_absent_models() -> None:
    sample = parse_triton_metrics(fixture("triton_metrics_gpu_t0.txt"))
    selected, reason = usable_models(sample, ["bert"])
    assert reason is None
    assert [(s.model, s.version) for s in selected] == [("bert", "1"), ("bert", "2")]
    _, reason = usable_models(sample, ["llama"])
    assert reason == "no metrics for model(s) llama; the pod reports bert, resnet50"


def test_families_declared_without_samples_mean_no_model_loaded() -> None:
    text = "# TYPE nv_inference_pending_request_count gauge\n"
    text += "# TYPE nv_inference_request_success counter\n# TYPE nv_inference_queue_duration_us counter\n"
    _, reason = usable_models(parse_triton_metrics(text), [])
    assert reason == "no model metrics (no model loaded?)"


def test_partial_model_series_are_not_read_as_zero() -> None:
    text = triton_page({("a", "1"): (1, 10, 100)})
    text += '# TYPE nv_inference_pending_request_count gauge\nnv_inference_pending_request_count{model="b",version="1"} 4\n'
    # prometheus-client merges the repeated TYPE into one family stream; b lacks both counters.
    _, reason = usable_models(parse_triton_metrics(text), [])
    assert reason == (
        "partial metrics: model='b' version='1' lacks "
        "nv_inference_request_success, nv_inference_queue_duration_us"
    )


# ------------------------------------------------------------------------------------ observe


def test_observe_hand_computed_from_fixtures() -> None:
    # Five seconds apart: resnet50 +600 successes, +1.2 s queueing; bert v2 +200, +1.0 s;
    # bert v1 idle. Pending 5 + 3 + 0.
    previous = {"p": scrape("p", 100.0, fixture("triton_metrics_gpu_t0.txt"))}
    current = {"p": scrape("p", 105.0, fixture("triton_metrics_gpu_t5.txt"))}
    everything = observe_one(previous, current)
    assert everything.reporting_replicas == 1
    assert everything.queue_depth == 8.0
    assert everything.queue_time_ms == pytest.approx(2.75)  # 2.2e6 us / 800 / 1000
    assert everything.request_rate == pytest.approx(160.0)  # 800 / 5 s
    assert everything.problems == ()
    assert everything.complete
    resnet = observe_one(previous, current, ["resnet50"])
    assert (resnet.queue_depth, resnet.queue_time_ms, resnet.request_rate) == (5.0, 2.0, 120.0)
    bert = observe_one(previous, current, ["bert"])
    assert (bert.queue_depth, bert.queue_time_ms, bert.request_rate) == (3.0, 5.0, 40.0)


def test_two_pods_average_depth_and_weight_queue_time_by_requests() -> None:
    previous = {
        "a": scrape("a", 0.0, triton_page({("m", "1"): (0, 1000, 1_000_000)}), ip="10.0.0.1"),
        "b": scrape("b", 0.0, triton_page({("m", "1"): (0, 50, 0)}), ip="10.0.0.2"),
    }
    current = {
        # a: 100 requests queued 2 ms each in 5 s; b: 300 requests queued 10 ms each in 4 s.
        "a": scrape("a", 5.0, triton_page({("m", "1"): (2, 1100, 1_200_000)}), ip="10.0.0.1"),
        "b": scrape("b", 4.0, triton_page({("m", "1"): (6, 350, 3_000_000)}), ip="10.0.0.2"),
    }
    result = observe_one(previous, current)
    assert result.queue_depth == 4.0
    assert result.queue_time_ms == pytest.approx(3_200_000 / 400 / 1000)  # 8 ms, not (2+10)/2
    assert result.request_rate == pytest.approx(100 / 5 + 300 / 4)


def test_new_pod_counts_for_depth_but_not_rates_and_does_not_blank_queue_time() -> None:
    previous = {"a": scrape("a", 0.0, triton_page({("m", "1"): (0, 100, 100_000)}))}
    current = {
        "a": scrape("a", 5.0, triton_page({("m", "1"): (1, 200, 400_000)})),
        "new": scrape("new", 5.0, triton_page({("m", "1"): (5, 9_999, 99_999_999)}), ip="10.0.0.9"),
    }
    result = observe_one(previous, current)
    assert result.reporting_replicas == 2
    assert result.queue_depth == 3.0
    assert result.queue_time_ms == pytest.approx(3.0)  # only a: 300000 us / 100
    assert result.request_rate == pytest.approx(20.0)
    assert result.problems == ()


def test_only_new_pods_means_rates_missing_not_zero() -> None:
    current = {"a": scrape("a", 5.0, triton_page({("m", "1"): (0, 0, 0)}))}
    result = observe_one({}, current)
    assert result.queue_depth == 0.0
    assert result.queue_time_ms is None
    assert result.request_rate is None


def test_counter_reset_skips_that_pods_rates_for_one_interval() -> None:
    before = {
        "a": scrape("a", 0.0, triton_page({("m", "1"): (0, 5000, 5_000_000)}), ip="10.0.0.1"),
        "b": scrape("b", 0.0, triton_page({("m", "1"): (0, 100, 100_000)}), ip="10.0.0.2"),
    }
    after_restart = {
        # a restarted (counters went down); b served 50 requests at 4 ms each.
        "a": scrape("a", 5.0, triton_page({("m", "1"): (3, 40, 4_000_000)}), ip="10.0.0.1"),
        "b": scrape("b", 5.0, triton_page({("m", "1"): (1, 150, 300_000)}), ip="10.0.0.2"),
    }
    result = observe_one(before, after_restart)
    assert result.reporting_replicas == 2
    assert result.queue_depth == 2.0
    assert result.queue_time_ms == pytest.approx(4.0)
    assert result.request_rate == pytest.approx(10.0)
    # The next interval uses the post-restart scrape as its base and a's rates are back.
    later = {
        "a": scrape("a", 10.0, triton_page({("m", "1"): (0, 90, 4_500_000)}), ip="10.0.0.1"),
        "b": scrape("b", 10.0, triton_page({("m", "1"): (0, 150, 300_000)}), ip="10.0.0.2"),
    }
    recovered = observe_one(remember(before, after_restart), later)
    assert recovered.queue_time_ms == pytest.approx(10.0)  # 500000 us / 50
    assert recovered.request_rate == pytest.approx(10.0)


def test_reset_of_a_failure_counter_alone_is_a_reset() -> None:
    def page(rejected: int) -> str:
        return triton_page({("m", "1"): (0, 10, 1000)}) + (
            "# TYPE nv_inference_request_failure counter\n"
            f'nv_inference_request_failure{{model="m",reason="REJECTED",version="1"}} {rejected}\n'
        )

    result = observe_one({"a": scrape("a", 0.0, page(9))}, {"a": scrape("a", 5.0, page(0))})
    assert result.request_rate is None


def test_same_pod_name_with_new_ip_is_a_new_pod() -> None:
    previous = {"a": scrape("a", 0.0, triton_page({("m", "1"): (0, 10, 1000)}), ip="10.0.0.1")}
    current = {"a": scrape("a", 5.0, triton_page({("m", "1"): (0, 20, 2000)}), ip="10.0.0.7")}
    assert observe_one(previous, current).request_rate is None


def test_model_loaded_between_scrapes_counts_from_zero() -> None:
    previous = {"a": scrape("a", 0.0, triton_page({("m", "1"): (0, 100, 100_000)}))}
    current = {
        "a": scrape(
            "a", 5.0, triton_page({("m", "1"): (0, 100, 100_000), ("m", "2"): (0, 10, 50_000)})
        )
    }
    result = observe_one(previous, current)
    assert result.queue_time_ms == pytest.approx(5.0)
    assert result.request_rate == pytest.approx(2.0)


def test_true_idle_is_zero_queue_time_so_scale_down_can_happen() -> None:
    page = triton_page({("m", "1"): (0, 100, 100_000)})
    result = observe_one({"a": scrape("a", 0.0, page)}, {"a": scrape("a", 5.0, page)})
    assert (result.queue_depth, result.queue_time_ms, result.request_rate) == (0.0, 0.0, 0.0)


def test_pending_without_completions_leaves_queue_time_unknown() -> None:
    previous = {"a": scrape("a", 0.0, triton_page({("m", "1"): (0, 100, 100_000)}))}
    current = {"a": scrape("a", 5.0, triton_page({("m", "1"): (7, 100, 100_000)}))}
    result = observe_one(previous, current)
    assert result.queue_depth == 7.0
    assert result.queue_time_ms is None
    assert result.request_rate == 0.0


def test_failed_and_unusable_pods_are_problems_never_zeros() -> None:
    good_before = triton_page({("m", "1"): (0, 100, 100_000)})
    good_after = triton_page({("m", "1"): (8, 200, 600_000)})
    previous = {"a": scrape("a", 0.0, good_before)}
    current = {
        "a": scrape("a", 5.0, good_after),
        "b": PodScrape("b", "10.0.0.2", 5.0, error="HTTP 500 from http://10.0.0.2:8002/metrics"),
        "c": scrape("c", 5.0, fixture("triton_metrics_no_counter_latencies.txt"), ip="10.0.0.3"),
    }
    result = observe(previous, current, ready_replicas=3, starting_replicas=1, models=[], now=5.0)
    assert result.reporting_replicas == 1
    assert result.queue_depth == 8.0  # b and c are not averaged in as zeros
    assert result.queue_time_ms == pytest.approx(5.0)
    assert result.starting_replicas == 1
    assert result.problems[0] == "b: HTTP 500 from http://10.0.0.2:8002/metrics"
    assert result.problems[1].startswith("c: missing family nv_inference_queue_duration_us")
    assert not result.complete


def test_no_pods_at_all_is_missing() -> None:
    result = observe({}, {}, ready_replicas=0, starting_replicas=2, models=[], now=1.0)
    assert (result.queue_depth, result.queue_time_ms, result.request_rate) == (None, None, None)


def test_remember_keeps_last_good_sample_and_drops_gone_pods() -> None:
    good = scrape("a", 0.0, triton_page({("m", "1"): (0, 1, 1)}))
    failed = PodScrape("a", "10.0.0.1", 5.0, error="timed out after 2s")
    gone = scrape("z", 0.0, triton_page({("m", "1"): (0, 1, 1)}))
    assert remember({"a": good, "z": gone}, {"a": failed}) == {"a": good}
    fresh = scrape("a", 10.0, triton_page({("m", "1"): (0, 2, 2)}))
    assert remember({"a": good}, {"a": fresh}) == {"a": fresh}


def test_pod_scrape_has_exactly_one_of_sample_and_error() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        PodScrape("a", "10.0.0.1", 0.0)


counter_steps = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=20),  # pending now
        st.integers(min_value=0, max_value=500),  # new successes
        st.integers(min_value=0, max_value=50_000),  # queue microseconds per new success
        st.floats(min_value=0.5, max_value=30.0),  # seconds between scrapes
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(counter_steps)
def test_property_rates_match_counter_deltas(steps: list[tuple[int, int, int, float]]) -> None:
    previous: dict[str, PodScrape] = {}
    current: dict[str, PodScrape] = {}
    total_queue = total_success = expected_rate = 0.0
    for index, (pending, successes, queue_each, seconds) in enumerate(steps):
        pod, ip = f"pod-{index}", f"10.0.1.{index}"
        base = (0, 1000 * index, 7 * index)
        previous[pod] = scrape(pod, 100.0, triton_page({("m", "1"): base}), ip=ip)
        after = (pending, base[1] + successes, base[2] + successes * queue_each)
        current[pod] = scrape(pod, 100.0 + seconds, triton_page({("m", "1"): after}), ip=ip)
        total_queue += successes * queue_each
        total_success += successes
        expected_rate += successes / seconds
    current["broken"] = PodScrape("broken", "10.0.9.9", 101.0, error="unreachable")
    result = observe_one(previous, current)
    assert result.reporting_replicas == len(steps)
    assert result.queue_depth == pytest.approx(sum(step[0] for step in steps) / len(steps))
    assert result.request_rate == pytest.approx(expected_rate)
    assert result.problems == ("broken: unreachable",)
    if total_success:
        assert result.queue_time_ms == pytest.approx(total_queue / total_success / 1000)
    elif any(step[0] for step in steps):
        assert result.queue_time_ms is None
    else:
        assert result.queue_time_ms == 0.0


# ------------------------------------------------------------------------- scraping, for real


def test_metrics_url_brackets_ipv6() -> None:
    assert metrics_url("10.1.2.3") == "http://10.1.2.3:8002/metrics"
    assert metrics_url("fd00::12", 9000) == "http://[fd00::12]:9000/metrics"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def pod_servers() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """Five fake Triton pods on 127.0.0.1-5, one port: normal, slow, 500, garbage, normal-CPU.

    127.0.0.6 on the same port has no listener: connection refused.
    """
    release = asyncio.Event()
    page = fixture("triton_metrics_gpu_t0.txt")

    async def normal(_: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/plain")

    async def slow(_: web.Request) -> web.Response:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), timeout=10)
        return web.Response(text=page)

    async def error(_: web.Request) -> web.Response:
        return web.Response(status=500, text="internal error")

    async def garbage(_: web.Request) -> web.Response:
        return web.Response(text="<html><body>hello</body></html>")

    async def cpu(_: web.Request) -> web.Response:
        return web.Response(text=fixture("triton_metrics_cpu_idle.txt"))

    port = _free_port()
    runners = []
    for last_octet, handler in enumerate([normal, slow, error, garbage, cpu], start=1):
        app = web.Application()
        app.router.add_get("/metrics", handler)
        runner = web.AppRunner(app, shutdown_timeout=0.2)
        await runner.setup()
        await web.TCPSite(runner, f"127.0.0.{last_octet}", port).start()
        runners.append(runner)
    try:
        yield port, release
    finally:
        release.set()
        for runner in runners:
            await runner.cleanup()


async def test_scrape_pods_reports_each_failure_and_stays_within_timeout(
    pod_servers: tuple[int, asyncio.Event],
) -> None:
    port, _ = pod_servers
    pods = [
        PodEndpoint("normal", "127.0.0.1"),
        PodEndpoint("slow", "127.0.0.2"),
        PodEndpoint("error", "127.0.0.3"),
        PodEndpoint("garbage", "127.0.0.4"),
        PodEndpoint("cpu", "127.0.0.5"),
        PodEndpoint("refused", "127.0.0.6"),
    ]
    timeout = 0.6
    started = time.monotonic()
    results = await scrape_pods(pods, timeout=timeout, concurrency=8, port=port)
    elapsed = time.monotonic() - started
    assert timeout <= elapsed < timeout + 0.4
    assert set(results) == {pod.name for pod in pods}
    assert results["normal"].sample is not None
    assert results["normal"].sample.models[("resnet50", "1")].pending == 2
    assert results["cpu"].sample is not None
    assert results["slow"].error == "timed out after 0.6s"
    assert results["error"].error == f"HTTP 500 from http://127.0.0.3:{port}/metrics"
    assert (results["garbage"].error or "").startswith("parse error: not Prometheus text")
    assert (results["refused"].error or "").startswith("unreachable:")
    assert started <= results["normal"].time <= started + elapsed


async def test_pods_queued_behind_the_semaphore_share_the_deadline(
    pod_servers: tuple[int, asyncio.Event],
) -> None:
    port, _ = pod_servers
    pods = [PodEndpoint("slow", "127.0.0.2"), PodEndpoint("normal", "127.0.0.1")]
    started = time.monotonic()
    results = await scrape_pods(pods, timeout=0.4, concurrency=1, port=port)
    assert time.monotonic() - started < 0.4 + 0.3
    assert results["slow"].error == results["normal"].error == "timed out after 0.4s"


async def test_scraped_pages_feed_observe(pod_servers: tuple[int, asyncio.Event]) -> None:
    port, _ = pod_servers
    pods = [PodEndpoint("normal", "127.0.0.1"), PodEndpoint("error", "127.0.0.3")]
    first = await scrape_pods(pods, timeout=1.0, concurrency=4, port=port)
    second = await scrape_pods(pods, timeout=1.0, concurrency=4, port=port)
    result = observe(
        remember({}, first), second, ready_replicas=2, starting_replicas=0, models=[], now=2.0
    )
    assert result.reporting_replicas == 1
    assert result.queue_depth == 3.0  # 2 + 0 + 1 pending in the fixture
    assert result.request_rate == 0.0  # the same page twice: no new requests...
    assert result.queue_time_ms is None  # ...while 3 are pending: queue time unknown
    assert len(result.problems) == 1


async def test_scrape_nothing_returns_at_once() -> None:
    assert await scrape_pods([], timeout=1.0, concurrency=1) == {}


# ---------------------------------------------------------------------------- Prometheus source


def vector(values: dict[str, float | str]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"pod": pod}, "value": [1700000000.0, str(value)]}
                for pod, value in values.items()
            ],
        },
    }


@pytest.fixture
async def prometheus() -> AsyncIterator[Callable[[Callable[[str], tuple[int, Any]]], Any]]:
    """Start a fake Prometheus whose answers come from the test's `answer(query)`."""
    runners: list[web.AppRunner] = []

    async def start(answer: Callable[[str], tuple[int, Any]]) -> tuple[str, list[str]]:
        seen: list[str] = []

        async def query(request: web.Request) -> web.Response:
            form = await request.post()
            expression = str(form["query"])
            seen.append(expression)
            status, payload = answer(expression)
            body = payload if isinstance(payload, str) else json.dumps(payload)
            return web.Response(status=status, text=body, content_type="application/json")

        app = web.Application()
        app.router.add_post("/api/v1/query", query)
        runner = web.AppRunner(app, shutdown_timeout=0.2)
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}/", seen

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_prometheus_source_per_pod_math_and_missing_pods(prometheus: Any) -> None:
    def answer(query: str) -> tuple[int, Any]:
        if "nv_inference_pending_request_count" in query:
            return 200, vector({"isvc-abc12-x1": 2, "isvc-abc12-x2": 6})
        if "nv_inference_queue_duration_us" in query:
            return 200, vector({"isvc-abc12-x1": 40_000.0, "isvc-abc12-x2": "NaN"})
        return 200, vector({"isvc-abc12-x1": 10.0})

    url, seen = await prometheus(answer)
    source = PrometheusSource(url, timeout=2.0)
    result = await source.observe(
        "ml",
        "isvc",
        ["isvc-abc12-x1", "isvc-abc12-x2", "isvc-abc12-x3"],
        3,
        1,
        ["resnet50"],
        30.0,
        now=7.0,
    )
    assert result.time == 7.0
    assert result.reporting_replicas == 2
    assert result.queue_depth == 4.0
    assert result.queue_time_ms == pytest.approx(4.0)  # 40000 us/s / 10 req/s / 1000
    assert result.request_rate == pytest.approx(10.0)
    assert result.problems == (
        "isvc-abc12-x3: no nv_inference_pending_request_count series in Prometheus (is the pod scraped?)",
    )
    assert len(seen) == 3
    for expression in seen:
        assert 'namespace="ml"' in expression
        assert 'pod=~"isvc-abc12-x1|isvc-abc12-x2|isvc-abc12-x3"' in expression
        assert 'model=~"resnet50"' in expression
    assert any("[30s]" in expression for expression in seen)


async def test_prometheus_source_idle_is_zero_and_errors_are_problems(prometheus: Any) -> None:
    def idle(query: str) -> tuple[int, Any]:
        return 200, vector({"isvc-a-b": 0.0})

    url, _ = await prometheus(idle)
    result = await PrometheusSource(url, 2.0).observe("ml", "isvc", ["isvc-a-b"], 1, 0, [], 60.0)
    assert (result.queue_depth, result.queue_time_ms, result.request_rate) == (0.0, 0.0, 0.0)

    def failing(query: str) -> tuple[int, Any]:
        return 503, {"status": "error", "errorType": "unavailable", "error": "TSDB not ready"}

    url, _ = await prometheus(failing)
    result = await PrometheusSource(url, 2.0).observe("ml", "isvc", ["isvc-a-b"], 1, 0, [], 60.0)
    assert (result.reporting_replicas, result.queue_depth, result.queue_time_ms) == (0, None, None)
    assert len(result.problems) == 3
    assert all("HTTP 503: TSDB not ready" in problem for problem in result.problems)

    def not_json(query: str) -> tuple[int, Any]:
        return 200, "<html>proxy login</html>"

    url, _ = await prometheus(not_json)
    result = await PrometheusSource(url, 2.0).observe("ml", "isvc", ["isvc-a-b"], 1, 0, [], 60.0)
    assert result.queue_depth is None
    assert all("body is not JSON" in problem for problem in result.problems)


async def test_prometheus_source_selects_deployment_pods_by_pattern_without_names(
    prometheus: Any,
) -> None:
    def answer(query: str) -> tuple[int, Any]:
        return 200, vector({"isvc-abc12-x1": 1.0} if "pending" in query else {})

    url, seen = await prometheus(answer)
    result = await PrometheusSource(url, 2.0).observe("ml", "isvc", None, 1, 0, [], 60.0)
    assert 'pod=~"isvc-[a-z0-9]+-[a-z0-9]+"' in seen[0]
    assert result.queue_depth == 1.0
    assert result.queue_time_ms is None  # no rate series yet: missing, not zero


async def test_prometheus_source_with_no_ready_pods_asks_nothing(prometheus: Any) -> None:
    url, seen = await prometheus(lambda query: (200, vector({"isvc-old-pod": 9.0})))
    result = await PrometheusSource(url, 2.0).observe("ml", "isvc", [], 0, 2, [], 60.0, now=3.0)
    assert seen == []
    assert result.reporting_replicas == 0
    assert (result.queue_depth, result.queue_time_ms, result.request_rate) == (None, None, None)
    assert result.starting_replicas == 2


async def test_prometheus_unreachable_is_a_problem() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = await PrometheusSource(url, 1.0).observe("ml", "isvc", ["isvc-a-b"], 1, 0, [], 60.0)
    assert result.queue_depth is None
    assert len(result.problems) == 3
    assert all(problem.startswith(f"prometheus {url}: query for ") for problem in result.problems)


async def test_prometheus_no_series_for_the_service_is_a_problem(prometheus: Any) -> None:
    url, _ = await prometheus(lambda query: (200, vector({})))
    result = await PrometheusSource(url, 2.0).observe("ml", "isvc", None, 0, 0, [], 60.0)
    assert result.queue_depth is None
    assert result.problems == (
        "no nv_inference_pending_request_count series for ml/isvc in Prometheus (is it scraped?)",
    )
