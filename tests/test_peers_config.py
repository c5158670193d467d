"""The pure parts of the peers (e2e/cluster/peers.py) and of their benchmark (e2e/bench/peers.py):
the PodMonitor as a Prometheus scrape config, the chart's adapter rules, the loopback APIService
and the replica figures."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml
from e2e.bench.peers import PROFILES, replicas_figures
from e2e.cluster.peers import (
    ADAPTER_RULES,
    aggregated_api,
    chart_adapter_rules,
    label_name,
    podmonitor_scrape_configs,
    prometheus_config,
)

from tritonop.autoscale import promql

#: The chart's PodMonitor as `helm template --set tritonPodMonitor.enabled=true` renders it
#: (e2e/test_chart.py renders the real one; e2e/cluster/peers.py translates what helm prints).
PODMONITOR: dict[str, Any] = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PodMonitor",
    "metadata": {"name": "tritonop-triton", "namespace": "tritonop-system"},
    "spec": {
        "selector": {
            "matchLabels": {
                "app.kubernetes.io/managed-by": "tritonop",
                "app.kubernetes.io/name": "triton",
            }
        },
        "namespaceSelector": {"any": True},
        "podMetricsEndpoints": [
            {
                "port": "metrics",
                "path": "/metrics",
                "interval": "5s",
                "honorLabels": False,
                "relabelings": [
                    {"sourceLabels": ["__meta_kubernetes_namespace"], "targetLabel": "namespace"},
                    {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod"},
                    {
                        "sourceLabels": [
                            "__meta_kubernetes_pod_label_tritonop_io_inferenceservice"
                        ],
                        "targetLabel": "inferenceservice",
                    },
                ],
            }
        ],
    },
}
SD = {"api_server": "https://127.0.0.1:6443", "tls_config": {"ca_file": "/ca.crt"}}


def test_podmonitor_becomes_a_pod_discovery_scrape_config_with_its_relabelings() -> None:
    (config,) = podmonitor_scrape_configs(PODMONITOR, SD)
    assert config["job_name"] == "podMonitor/tritonop-system/tritonop-triton/0"
    assert config["scrape_interval"] == "5s" and config["metrics_path"] == "/metrics"
    assert config["honor_labels"] is False
    assert config["kubernetes_sd_configs"] == [{"role": "pod", **SD}]  # any namespace
    relabel = config["relabel_configs"]
    keeps = [r for r in relabel if r.get("action") == "keep"]
    assert {
        "source_labels": [
            "__meta_kubernetes_pod_label_app_kubernetes_io_managed_by",
            "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_managed_by",
        ],
        "regex": "(tritonop);true",
        "action": "keep",
    } in keeps
    assert {
        "source_labels": ["__meta_kubernetes_pod_container_port_name"],
        "regex": "metrics",
        "action": "keep",
    } in keeps
    # The PodMonitor's own relabelings come last, translated to Prometheus' spelling.
    assert relabel[-3:] == [
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {
            "source_labels": ["__meta_kubernetes_pod_label_tritonop_io_inferenceservice"],
            "target_label": "inferenceservice",
        },
    ]
    assert prometheus_config([config])["global"]["scrape_interval"] == "5s"


def test_podmonitor_namespace_selection_and_untranslated_fields() -> None:
    named = {
        **PODMONITOR,
        "spec": {**PODMONITOR["spec"], "namespaceSelector": {"matchNames": ["a"]}},
    }
    (config,) = podmonitor_scrape_configs(named, SD)
    assert config["kubernetes_sd_configs"][0]["namespaces"] == {"names": ["a"]}
    own = {**PODMONITOR, "spec": {**PODMONITOR["spec"], "namespaceSelector": {}}}
    (config,) = podmonitor_scrape_configs(own, SD)
    assert config["kubernetes_sd_configs"][0]["namespaces"] == {"names": ["tritonop-system"]}
    endpoint = {**PODMONITOR["spec"]["podMetricsEndpoints"][0], "metricRelabelings": []}
    odd = {**PODMONITOR, "spec": {**PODMONITOR["spec"], "podMetricsEndpoints": [endpoint]}}
    with pytest.raises(ValueError, match="metricRelabelings"):
        podmonitor_scrape_configs(odd, SD)
    assert label_name("app.kubernetes.io/name") == "app_kubernetes_io_name"


def test_the_adapter_gets_the_rules_the_chart_ships() -> None:
    rules = chart_adapter_rules()
    assert rules == yaml.safe_load(promql.adapter_rules_yaml())
    assert rules == yaml.safe_load(ADAPTER_RULES.read_text())


def test_aggregated_api_routes_through_an_externalname_service_to_loopback() -> None:
    service, apiservice = aggregated_api(
        "v1beta1.custom.metrics.k8s.io", "monitoring", "prometheus-adapter", 44321, b"CA"
    )
    assert service["spec"] == {"type": "ExternalName", "externalName": "localhost"}
    assert apiservice["spec"]["group"] == "custom.metrics.k8s.io"
    assert apiservice["spec"]["version"] == "v1beta1"
    assert apiservice["spec"]["service"] == {
        "name": "prometheus-adapter",
        "namespace": "monitoring",
        "port": 44321,
    }
    assert base64.b64decode(apiservice["spec"]["caBundle"]) == b"CA"


def test_replica_figures_of_a_step() -> None:
    step = PROFILES["step"]
    samples = [(100.0, 1), (100.0 + 61, 3), (100.0 + 90, 4), (100.0 + 230, 2)]
    seconds, delay, peak, settled, events = replicas_figures(samples, 100.0, step)
    assert seconds == pytest.approx(61 * 1 + 29 * 3 + 140 * 4 + 40 * 2)
    assert delay == pytest.approx(1.0)
    assert (peak, settled, events) == (4, 4, 3)


def test_profiles_are_bounded_and_reproducible() -> None:
    for profile in PROFILES.values():
        arrivals = profile.arrivals(1)
        assert arrivals == profile.arrivals(1)
        assert arrivals and max(arrivals) < profile.duration
    burst = PROFILES["burst"]
    assert all(burst.rate(t) == 50.0 for t in (60, 65, 69.9))
    assert burst.rate(70) == 3.0  # 10 s bursts: shorter than the 20 s cold start
