"""PromQL builders and the shipped prometheus-adapter rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tritonop.autoscale import promql

RULES_FILE = Path(__file__).parent.parent / "charts/tritonop/files/prometheus-adapter-rules.yaml"


def unquote(literal: str) -> str:
    """Decode a PromQL double-quoted string literal (the escapes quote() produces)."""
    assert literal.startswith('"') and literal.endswith('"')
    body = literal[1:-1]
    out, index = [], 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            following = body[index + 1]
            out.append({"n": "\n", "\\": "\\", '"': '"'}[following])
            index += 2
            continue
        assert char not in '"\n', "unescaped quote or newline inside the literal"
        out.append(char)
        index += 1
    return "".join(out)


@given(st.text())
def test_quote_round_trips_any_text(text: str) -> None:
    assert unquote(promql.quote(text)) == text


@given(st.text(alphabet=st.characters(codec="ascii")))
def test_regex_literal_matches_exactly_its_text(text: str) -> None:
    pattern = promql.regex_literal(text)
    assert re.fullmatch(pattern, text, flags=re.DOTALL)
    assert not re.fullmatch(pattern, text + "x", flags=re.DOTALL)


def test_model_names_with_dots_do_not_match_other_models() -> None:
    pattern = promql.regex_literal("bert.v2")
    assert pattern == r"bert\.v2"
    assert not re.fullmatch(pattern, "bertXv2")


@pytest.mark.parametrize(
    ("pod", "matches"),
    [
        ("resnet-7d9f8c6b5-x2k4q", True),
        ("resnet-5c4b-abcde", True),
        ("resnet-canary-7d9f8c6b5-x2k4q", False),  # another service's pods
        ("resnet-7d9f8c6b5", False),  # not a Deployment pod name
        ("xresnet-7d9f8c6b5-x2k4q", False),
    ],
)
def test_deployment_pod_pattern(pod: str, matches: bool) -> None:
    # PromQL regex matchers are fully anchored, like fullmatch.
    assert bool(re.fullmatch(promql.deployment_pod_pattern("resnet"), pod)) is matches


def test_service_selector_with_and_without_models() -> None:
    assert promql.service_selector("ml", "resnet") == (
        'namespace="ml",pod=~"resnet-[a-z0-9]+-[a-z0-9]+"'
    )
    assert promql.service_selector("ml", "resnet", ["b", "a.x", "b"]) == (
        'namespace="ml",pod=~"resnet-[a-z0-9]+-[a-z0-9]+",model=~"a\\\\.x|b"'
    )


def test_pods_selector_lists_exact_pods() -> None:
    assert promql.pods_selector("ml", ["r-1-b", "r-1-a"]) == 'namespace="ml",pod=~"r-1-a|r-1-b"'
    with pytest.raises(ValueError, match="at least one pod"):
        promql.pods_selector("ml", [])


@pytest.mark.parametrize(
    ("seconds", "text"), [(60, "60s"), (60.0, "60s"), (1.5, "1500ms"), (0.0001, "1ms")]
)
def test_duration(seconds: float, text: str) -> None:
    assert promql.duration(seconds) == text


@pytest.mark.parametrize("seconds", [0, -5, float("nan"), float("inf")])
def test_duration_rejects_nonsense(seconds: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        promql.duration(seconds)


def test_signal_queries() -> None:
    selector = 'namespace="ml"'
    assert promql.queue_depth(selector) == 'sum(nv_inference_pending_request_count{namespace="ml"})'
    assert promql.queue_depth(selector, by="pod") == (
        'sum by (pod) (nv_inference_pending_request_count{namespace="ml"})'
    )
    assert promql.queue_depth_average(selector) == (
        'avg(sum by (pod) (nv_inference_pending_request_count{namespace="ml"}))'
    )
    assert promql.request_rate(selector, "30s") == (
        'sum(rate(nv_inference_request_success{namespace="ml"}[30s]))'
    )


def test_queue_time_guards_idle_and_missing_series() -> None:
    query = promql.queue_time_ms('namespace="ml"', "60s")
    queued = 'sum(rate(nv_inference_queue_duration_us{namespace="ml"}[60s]))'
    succeeded = 'sum(rate(nv_inference_request_success{namespace="ml"}[60s]))'
    # ratio where requests finished; 0 where none did but both series exist; absent otherwise
    assert query == (
        f"({queued} / ({succeeded} > 0) / 1000) or (({queued} * 0) and ({succeeded} == 0))"
    )


def test_adapter_rules_file_is_the_generated_one() -> None:
    assert RULES_FILE.read_text() == promql.adapter_rules_yaml(), (
        f'{RULES_FILE} is stale; regenerate it with: python -c "import tritonop.autoscale.promql '
        f"as p; print(p.adapter_rules_yaml(), end='')\" > charts/tritonop/files/"
        "prometheus-adapter-rules.yaml"
    )


def test_adapter_rules_shape() -> None:
    rules = yaml.safe_load(RULES_FILE.read_text())["rules"]
    by_name = {rule["name"]["as"]: rule for rule in rules}
    assert set(by_name) == {"triton_queue_depth", "triton_queue_time_ms"}
    for rule in rules:
        assert rule["resources"] == {
            "overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
        }
        assert rule["seriesQuery"].endswith('{namespace!="",pod!=""}')
        series = rule["seriesQuery"].split("{")[0]
        assert re.fullmatch(rule["name"]["matches"], series)
        assert "<<.LabelMatchers>>" in rule["metricsQuery"]
        assert "sum by (<<.GroupBy>>)" in rule["metricsQuery"]
    depth = by_name["triton_queue_depth"]
    assert depth["seriesQuery"].startswith("nv_inference_pending_request_count{")
    assert depth["metricsQuery"] == (
        "sum by (<<.GroupBy>>) (nv_inference_pending_request_count{<<.LabelMatchers>>})"
    )
    queue_time = by_name["triton_queue_time_ms"]["metricsQuery"]
    assert queue_time == promql.queue_time_ms("<<.LabelMatchers>>", "60s", by="<<.GroupBy>>")
    assert "nv_inference_request_success{<<.LabelMatchers>>}[60s]" in queue_time
