"""Triton's metrics as the policy sees them (pure): parsing, counter deltas, Prometheus answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from tritonop.autoscale.observe import (
    MAX_LINE_BYTES,
    MAX_MODEL_VERSIONS,
    MAX_SERIES,
    MetricsParseError,
    MetricsTarget,
    MetricsTooLarge,
    PodEndpoint,
    PodScrape,
    PrometheusError,
    TritonSample,
    empty_observation,
    observe,
    parse_triton_metrics,
    prometheus_observation,
    prometheus_queries,
    remember,
    usable_models,
    vector_by_pod,
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
        ("<html>\n<body>502</body>\n", "not Prometheus text: line 1 is '<html>'"),
        ('nv_inference_request_success{model="m",version="1"} 12', "it was cut short"),
        ('nv_inference_request_success{model="m",version="1" twelve\n', "not Prometheus text"),
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


REAL = FIXTURES / "triton-metrics"


KURA = "kura_triton24_reason_custom_metric.txt"
"""Kura's fixture file lacks the final newline the exposition format requires and Triton always
writes (it was saved by an editor, not read off a socket); served as is, it reads as cut short."""


def real_page(name: str) -> bytes:
    """A real page as Triton serves it (Kura's with its final newline back)."""
    body = (REAL / name).read_bytes()
    return body + b"\n" if name == KURA else body


def real(name: str) -> TritonSample:
    return parse_triton_metrics(real_page(name))


def test_kuras_file_as_saved_reads_as_cut_short() -> None:
    with pytest.raises(MetricsParseError, match="it was cut short"):
        parse_triton_metrics((REAL / KURA).read_bytes())


def test_real_pages_parse_with_reasons_summaries_ensembles_and_six_decimals() -> None:
    queued = real("triton-2.51-cpu-python-backend-under-load.txt")
    simple = queued.models[("simple", "1")]
    assert (simple.pending, simple.request_success, simple.queue_duration_us) == (
        107,
        400,
        347234812,
    )
    assert simple.request_failure == {"OTHER": 0, "BACKEND": 0, "CANCELED": 0, "REJECTED": 0}
    batching = real("triton-2.51-cpu-dynamic-batching-under-load.txt")
    assert batching.models[("simple_dyn", "1")].inference_count == 1019
    assert batching.models[("simple_dyn", "1")].exec_count == 130
    kura = real(KURA)
    assert sorted(model for model, _ in kura.models) == ["identity_long", "preprocessor"]
    assert "nv_inference_request_summary_us" in kura.families  # declared, never parsed
    ensemble = real("gh5296_ensemble_sixdecimal.partial.txt")
    assert ensemble.models[("backbone", "1")].exec_count == 100.0
    assert ensemble.models[("model_head_1", "1")].request_duration_us == 5557899.0
    assert usable_models(ensemble, [])[1] == (
        "missing family nv_inference_pending_request_count (Triton older than 23.03, or metrics "
        "disabled?), nv_inference_request_success, nv_inference_queue_duration_us (Triton runs "
        "with --metrics-config counter_latencies=false?)"
    )
    reasons = real("gh8561_triton_reason_labels.partial.txt")
    assert set(reasons.models[("resnet_50", "1")].request_failure) == {
        "OTHER",
        "BACKEND",
        "CANCELED",
        "REJECTED",
    }
    zeros = real("trtllm_readme_2311_base_zeros.txt")
    assert zeros.models[("tensorrt_llm", "1")].request_failure == {"": 0}
    old = real("gh2755_triton2003_help_type_no_samples.partial.txt")
    assert old.models == {}
    assert {"nv_inference_request_success", "nv_gpu_utilization"} <= old.families
    for page in REAL.glob("*.txt"):
        assert real(page.name).implausible == (), page.name


def test_only_the_autoscaling_families_reach_the_parser() -> None:
    text = (
        "# HELP nv_gpu_utilization GPU utilization\n# TYPE nv_gpu_utilization gauge\n"
        'nv_gpu_utilization{gpu_uuid="GPU-1"} not-a-number\n'  # never parsed: not a signal
        "process_cpu_seconds_total{} also garbage\n" + triton_page({("m", "1"): (2, 10, 100)})
    )
    sample = parse_triton_metrics(text)
    assert sample.models[("m", "1")].pending == 2
    assert "nv_gpu_utilization" in sample.families


def test_a_series_line_longer_than_any_triton_prints_is_refused() -> None:
    labels = ",".join(f'l{i}="v"' for i in range(400))
    text = f"nv_inference_request_success{{{labels}}} 1\n"
    with pytest.raises(MetricsParseError, match=f"more than the {MAX_LINE_BYTES}"):
        parse_triton_metrics(text)


def test_more_series_than_the_bound_is_too_large() -> None:
    lines = "".join(
        f'nv_inference_pending_request_count{{model="m{i}",version="1"}} 0\n'
        for i in range(MAX_SERIES + 1)
    )
    with pytest.raises(MetricsTooLarge, match=f"more than {MAX_SERIES} series"):
        parse_triton_metrics(lines)


def test_more_model_versions_than_the_bound_is_too_large() -> None:
    def page(versions: int) -> str:
        return "".join(
            f'nv_inference_pending_request_count{{model="m",version="{v}"}} 0\n'
            for v in range(versions)
        )

    assert len(parse_triton_metrics(page(MAX_MODEL_VERSIONS)).models) == MAX_MODEL_VERSIONS
    with pytest.raises(MetricsTooLarge, match=f"more than {MAX_MODEL_VERSIONS} model versions"):
        parse_triton_metrics(page(MAX_MODEL_VERSIONS + 1))


def test_multi_gpu_series_of_triton_21_are_summed_per_model() -> None:
    lines = ["# TYPE nv_inference_request_success counter"]
    for gpu, count in (("GPU-a", 10), ("GPU-b", 32)):
        lines.append(
            f'nv_inference_request_success{{gpu_uuid="{gpu}",model="m",version="1"}} {count}'
        )
        lines.append(
            f'nv_inference_queue_duration_us{{gpu_uuid="{gpu}",model="m",version="1"}} {count * 100}'
        )
        lines.append(
            f'nv_inference_request_failure{{gpu_uuid="{gpu}",model="m",version="1"}} {count // 10}'
        )
    sample = parse_triton_metrics("\n".join(lines) + "\n")
    stats = sample.models[("m", "1")]
    assert (stats.request_success, stats.queue_duration_us) == (42, 4200)
    assert stats.request_failure == {"": 4}
    # Triton 21.x has no pending-count family yet: the problem names the release needed.
    assert "Triton older than 23.03" in (usable_models(sample, [])[1] or "")
    twice = lines[1] + "\n" + lines[1] + "\n"
    with pytest.raises(MetricsParseError, match=r'duplicate series .*gpu_uuid="GPU-a"'):
        parse_triton_metrics(twice)


@pytest.mark.parametrize(
    ("line", "finding"),
    [
        ('nv_inference_pending_request_count{model="m",version="1"} NaN', "is nan"),
        ('nv_inference_pending_request_count{model="m",version="1"} -1', "is -1.0"),
        ('nv_inference_pending_request_count{model="m",version="1"} 7000.5', "not a whole"),
        ('nv_inference_request_success{model="m",version="1"} 1e-9', "not a whole"),
        ('nv_inference_exec_count{model="m",version="1"} 2.5', "not a whole"),
        ('nv_inference_queue_duration_us{model="m",version="1"} +Inf', "is inf"),
    ],
)
def test_values_no_triton_prints_make_the_page_implausible(line: str, finding: str) -> None:
    sample = parse_triton_metrics(line + "\n")
    assert len(sample.implausible) == 1
    assert sample.implausible[0].startswith("model='m' version='1': nv_inference_")
    assert finding in sample.implausible[0]


def test_fractional_microseconds_are_plausible() -> None:
    # Durations are whole in Triton, but the rule is about counts: emulators print fractions.
    text = triton_page({("m", "1"): (0, 3, 1234.5)})
    assert parse_triton_metrics(text).implausible == ()


def test_the_absurd_page_pair_is_invalid_metrics_and_not_remembered() -> None:
    # The pair: successes +5e-9, queue time +5 µs, pending 7,000 -> 8,000.
    before = {"a": scrape("a", 100.0, triton_page({("m", "1"): (7000, 1000, 1_000_000)}))}
    after_page = triton_page({("m", "1"): (8000, 1000 + 5e-9, 1_000_005)})
    after = {"a": scrape("a", 105.0, after_page)}
    result = observe_one(before, after)
    assert result.reporting_replicas == 0
    assert result.queue_depth is None
    assert result.problems[0].startswith("a: InvalidMetrics: model='m' version='1': ")
    assert "not a whole number" in result.problems[0]
    assert result.implausible and result.implausible[0].startswith("a: model='m'")
    assert remember(before, after) == before


def test_counter_deltas_beyond_the_interval_are_invalid_metrics() -> None:
    before = {"a": scrape("a", 100.0, triton_page({("m", "1"): (0, 0, 0)}))}
    flood = {"a": scrape("a", 101.0, triton_page({("m", "1"): (0, 5_000_000, 5)}))}
    result = observe_one(before, flood)
    assert "5e+06 successes in 1s" in result.implausible[0]
    endless = {"a": scrape("a", 101.0, triton_page({("m", "1"): (4, 1, 4e9)}))}
    result = observe_one(before, endless)
    assert "more than an hour's wait each" in result.implausible[0]
    assert result.reporting_replicas == 0
    busy = {"a": scrape("a", 101.0, triton_page({("m", "1"): (4, 10, 3e9)}))}
    assert observe_one(before, busy).implausible == ()  # 5 minutes each: slow, not absurd


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
    # compute time per request, like queue time: resnet50 +3.08 s, bert v2 +5.4 s
    assert everything.compute_ms == pytest.approx(8_480_000 / 800 / 1000)
    assert resnet.compute_ms == pytest.approx(3_080_000 / 600 / 1000)
    assert bert.compute_ms == pytest.approx(5_400_000 / 200 / 1000)


def test_compute_time_is_unknown_unless_every_rated_pod_reports_it() -> None:
    # triton_page has no compute series: an upper bound of the request cost over some of the
    # requests is no bound, so one pod without it leaves compute_ms unknown
    previous = {
        "a": scrape("a", 100.0, fixture("triton_metrics_gpu_t0.txt")),
        "b": scrape("b", 100.0, triton_page({("m", "1"): (0, 0, 0)}), ip="10.0.0.2"),
    }
    current = {
        "a": scrape("a", 105.0, fixture("triton_metrics_gpu_t5.txt")),
        "b": scrape("b", 105.0, triton_page({("m", "1"): (0, 10, 0)}), ip="10.0.0.2"),
    }
    assert observe_one(previous, current).compute_ms is None
    # each reporting pod's unfinished work: pending plus executing (compute s per second);
    # b's page has no compute series, so only its pending requests count
    assert dict(observe_one(previous, current).pod_work) == {
        "a": pytest.approx(8.0 + 8_480_000 / 5.0 / 1e6),
        "b": 0.0,
    }
    alone = {"a": current["a"]}
    assert observe_one({"a": previous["a"]}, alone).compute_ms == pytest.approx(10.6)


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


# ------------------------------------------------------------------- Prometheus answers, pure


def prom_target(*pods: str, starting: int = 0) -> MetricsTarget:
    endpoints = tuple(PodEndpoint(pod, f"10.0.0.{i}") for i, pod in enumerate(pods, 1))
    return MetricsTarget("ml", "isvc", endpoints, starting, ("resnet50",), 90.0)


def test_prometheus_queries_select_the_ready_pods_and_models_per_pod() -> None:
    queries = prometheus_queries(prom_target("isvc-a-1", "isvc-a-2"))
    assert set(queries) == {
        "nv_inference_pending_request_count",
        "nv_inference_queue_duration_us",
        "nv_inference_request_success",
    }
    for expression in queries.values():
        assert 'pod=~"isvc-a-1|isvc-a-2"' in expression and 'model=~"resnet50"' in expression
        assert expression.startswith("sum by (pod)")
    assert "[90s]" in queries["nv_inference_request_success"]


def test_prometheus_answers_per_pod_math() -> None:
    answers = {
        "nv_inference_pending_request_count": {"p1": 2.0, "p2": 6.0},
        "nv_inference_queue_duration_us": {"p1": 40_000.0},
        "nv_inference_request_success": {"p1": 10.0, "p2": 5.0},
    }
    result = prometheus_observation(prom_target("p1", "p2", "p3", starting=1), answers, [], 7.0)
    assert (result.time, result.ready_replicas, result.starting_replicas) == (7.0, 3, 1)
    assert result.reporting_replicas == 2
    assert result.queue_depth == 4.0
    assert result.queue_time_ms == pytest.approx(4.0)  # only p1 has both rates
    assert result.request_rate == pytest.approx(10.0)
    assert result.problems == (
        "p3: no nv_inference_pending_request_count series in Prometheus (is the pod scraped?)",
    )


def test_prometheus_without_the_depth_answer_observes_nothing() -> None:
    failed = ["prometheus x: query for b failed", "prometheus x: query for a failed"]
    answers = {"nv_inference_request_success": {"p1": 1.0}}
    result = prometheus_observation(prom_target("p1"), answers, failed, 1.0)
    assert result == empty_observation(prom_target("p1"), 1.0, sorted(failed))
    assert (result.queue_depth, result.queue_time_ms, result.request_rate) == (None, None, None)
    assert result.reporting_replicas == 0 and result.ready_replicas == 1


def test_vector_answers_keep_finite_values_and_reject_other_shapes() -> None:
    payload = {
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"pod": "a"}, "value": [1.0, "2.5"]},
                {"metric": {"pod": "b"}, "value": [1.0, "NaN"]},
                {"metric": {"pod": "c"}, "value": [1.0, "+Inf"]},
            ],
        }
    }
    assert vector_by_pod(payload) == {"a": 2.5}
    with pytest.raises(PrometheusError, match="expected a vector"):
        vector_by_pod({"data": {"resultType": "matrix", "result": []}})
    with pytest.raises(PrometheusError, match="malformed vector element"):
        vector_by_pod({"data": {"resultType": "vector", "result": [{"metric": {}}]}})


def test_a_failing_pod_is_read_again_at_once_when_it_gets_a_new_ip_and_forgotten_when_gone() -> (
    None
):
    """observe.scrape_due and failing_after; the timing is test_scrape_source.py's."""
    from tritonop.autoscale.observe import failing_after, scrape_due

    old = PodEndpoint("p", "10.0.0.1")
    first = failing_after({}, {"p": PodScrape("p", old.ip, 0.0, error="unreachable")})
    assert first["p"].streak == 1 and scrape_due(old, first, 0.1)  # next interval: read
    second = failing_after(first, {"p": PodScrape("p", old.ip, 5.0, error="unreachable")})
    assert second["p"].retry_at == 10.0 and not scrape_due(old, second, 9.0)
    assert scrape_due(PodEndpoint("p", "10.0.0.2"), second, 9.0)  # a new server
    assert failing_after(second, {}) == {}  # the pod is gone
    ok = PodScrape("p", old.ip, 10.0, sample=TritonSample(models={}, families=frozenset()))
    assert failing_after(second, {"p": ok}) == {}
