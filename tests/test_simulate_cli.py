"""`tritonop simulate`: reading the spec and the load, printing and plotting the outcome."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tritonop.cli import main

SPEC = """\
apiVersion: tritonop.io/v1alpha1
kind: InferenceService
metadata: {name: simple}
spec:
  modelRepository: {uri: s3://bucket/models}
  autoscaling:
    minReplicas: 1
    maxReplicas: 6
    targets: {queueDepth: 2, queueTimeMs: 100}
"""

NO_AUTOSCALING = """\
apiVersion: tritonop.io/v1alpha1
kind: InferenceService
metadata: {name: fixed}
spec:
  modelRepository: {uri: s3://bucket/models}
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "service.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture
def trace_file(tmp_path: Path) -> Path:
    # 10 req/s for 30 s, with timestamps as in public production traces
    rows = [f"2023-11-16 18:17:{i // 10:02d}.{i % 10}000000,12,34" for i in range(300)]
    path = tmp_path / "trace.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    return path


def test_json_summary_of_a_trace(
    spec_file: Path, trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", "--spec", str(spec_file), "--trace", str(trace_file), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["policy"] == "operator"
    assert summary["requests"] == 300
    assert summary["slo_attainment"] == 1.0
    assert summary["latency_ms"]["p50"] == 50.0
    assert summary["max_replicas"] == 1 and summary["scale_events"] == 0
    assert summary["replica_seconds"] == pytest.approx(30.0, abs=5)


def test_text_summary_of_a_pattern_with_a_baseline(
    spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "--spec", str(spec_file), "--pattern", "step", "--duration", "300"]
    assert main([*argv, "--policy", "static:2"]) == 0
    out = capsys.readouterr().out
    assert "policy static:2 on pattern step" in out
    assert "SLO 500 ms met by" in out
    assert "600 replica-seconds" in out


def test_service_model_options_change_the_outcome(
    spec_file: Path, trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["simulate", "--spec", str(spec_file), "--trace", str(trace_file), "--json"]
    assert main([*base, "--service-time-ms", "120", "--slo-ms", "100"]) == 0
    slow = json.loads(capsys.readouterr().out)
    assert slow["slo_attainment"] == 0.0 and slow["latency_ms"]["p50"] >= 120


def test_spec_without_autoscaling_uses_defaults_and_says_so(
    tmp_path: Path, trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "fixed.yaml"
    spec.write_text(NO_AUTOSCALING)
    assert main(["simulate", "--spec", str(spec), "--trace", str(trace_file), "--json"]) == 0
    captured = capsys.readouterr()
    assert "no autoscaling in the spec" in captured.err
    assert json.loads(captured.out)["requests"] == 300


def test_cold_start_scores_after_the_first_cold_start_and_says_so(
    spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "--spec", str(spec_file), "--pattern", "heavy-burst", "--duration", "300"]
    assert main([*argv, "--start", "cold", "--policy", "static:2"]) == 0
    assert "arriving after 25 s" in capsys.readouterr().out
    assert main([*argv, "--start", "cold", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["scored_from_s"] == 25.0
    assert 0 <= summary["slo_attainment_all_requests"] <= 1
    assert main([*argv, "--json"]) == 0  # warm (default): everything is scored
    assert "scored_from_s" not in json.loads(capsys.readouterr().out)


def test_metric_delay_and_rate_scale_change_the_run(
    spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "--spec", str(spec_file), "--pattern", "step", "--json"]
    assert main([*argv, "--duration", "900"]) == 0
    base = json.loads(capsys.readouterr().out)
    assert main([*argv, "--duration", "900", "--rate-scale", "0.5"]) == 0
    half = json.loads(capsys.readouterr().out)
    assert half["requests"] == pytest.approx(base["requests"] / 2, rel=0.1)
    assert main([*argv, "--duration", "900", "--metric-delay-s", "30"]) == 0
    late = json.loads(capsys.readouterr().out)
    assert late["slo_attainment"] < base["slo_attainment"]  # the step is seen 30 s later


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--policy", "magic"], "unknown policy"),
        (["--policy", "static:0"], "static:N"),
        (["--duration", "-5"], "--duration"),
        (["--interval", "0"], "interval"),
        (["--instances", "0"], "instances"),
        (["--cold-start-s", "-1"], "cold start"),
        (["--metric-delay-s", "-1"], "metric delay"),
        (["--rate-scale", "2"], "--rate-scale applies to --pattern only"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    spec_file: Path,
    trace_file: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    code = main(["simulate", "--spec", str(spec_file), "--trace", str(trace_file), *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_bad_trace_and_bad_spec_exit_2(
    tmp_path: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text("time\n1.0\nlater\n")
    assert main(["simulate", "--spec", str(spec_file), "--trace", str(trace)]) == 2
    assert "line 3" in capsys.readouterr().err
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC.replace("maxReplicas: 6", "maxReplicas: 0"))
    assert main(["simulate", "--spec", str(spec), "--pattern", "step"]) == 2
    assert "maxReplicas" in capsys.readouterr().err


def test_plot_writes_a_png_or_explains_the_missing_extra(
    tmp_path: Path, spec_file: Path, trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.png"
    code = main(
        ["simulate", "--spec", str(spec_file), "--trace", str(trace_file), "--plot", str(out)]
    )
    if importlib.util.find_spec("matplotlib") is None:
        assert code == 1
        assert "pip install 'tritonop[plot]'" in capsys.readouterr().err
    else:
        assert code == 0
        assert out.read_bytes().startswith(b"\x89PNG")


def test_the_specs_objective_is_the_slo_unless_slo_ms_overrides_it(
    tmp_path: Path, trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "objective.yaml"
    spec.write_text(
        SPEC.replace(
            "targets: {queueDepth: 2, queueTimeMs: 100}",
            "objective: {latencyMs: 40, attainment: 0.99}",
        )
    )
    base = ["simulate", "--spec", str(spec), "--trace", str(trace_file), "--json"]
    assert main(base) == 0
    scored = json.loads(capsys.readouterr().out)
    # 50 ms requests never meet a 40 ms objective; the default 500 ms they always would
    assert (scored["slo_ms"], scored["slo_attainment"]) == (40.0, 0.0)
    assert main([*base, "--slo-ms", "500"]) == 0
    overridden = json.loads(capsys.readouterr().out)
    assert (overridden["slo_ms"], overridden["slo_attainment"]) == (500.0, 1.0)
