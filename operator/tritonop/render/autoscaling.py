"""The HPA (mode HPA) or KEDA ScaledObject (mode KEDA) of an InferenceService.

Both delegate the replica count to Kubernetes' own horizontal autoscaler, fed with Triton's
queue signals: HPA through prometheus-adapter's Pods metrics `triton_queue_depth` and
`triton_queue_time_ms`, KEDA through Prometheus triggers. Either way the scale target is the
Deployment, never the InferenceService, because the InferenceService spec belongs to the
user's GitOps tooling and an autoscaler writing spec.replicas there would fight it.

The numbers mean what they mean in Operator mode: `targets.queueDepth` is pending requests
per replica, `targets.queueTimeMs` the average queue time per request. Behavior is passed
through in HPA v2's shape, which is the shape of the API's `behavior` field.
"""

from __future__ import annotations

import math
from typing import Any

from tritonop import conditions
from tritonop.api.models import Autoscaling
from tritonop.api.validation import ParsedService
from tritonop.autoscale import promql
from tritonop.config import Settings
from tritonop.render.labels import owner_references, standard_labels
from tritonop.render.templating import render_manifest

HPA_API = ("autoscaling/v2", "HorizontalPodAutoscaler")
SCALED_OBJECT_API = ("keda.sh/v1alpha1", "ScaledObject")


def quantity(value: float) -> str:
    """A Kubernetes quantity string for a positive target: "50" when whole, else milli-units.

    HPA targets are resource.Quantity values; "2.5" would be accepted but is normalised to
    "2500m" by the API server, so rendering "2500m" keeps the applied object equal to what the
    server stores (no diff, no rewrite on every reconcile). Values below 1m round up to "1m".
    """
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"a target must be a positive number, got {value!r}")
    if float(value).is_integer():
        return str(int(value))
    milli = max(1, round(value * 1000))
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def threshold(value: float) -> str:
    """A KEDA threshold string (KEDA parses it as a float): "4", "2.5"."""
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"a target must be a positive number, got {value!r}")
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def hpa_behavior(autoscaling: Autoscaling) -> dict[str, Any]:
    """spec.autoscaling.behavior in HPA v2's camelCase shape, without unset fields or directions."""
    dumped = autoscaling.behavior.model_dump(by_alias=True, exclude_none=True)
    return {direction: rules for direction, rules in dumped.items() if rules}


def polling_interval(settings: Settings) -> int:
    """KEDA's pollingInterval: the operator's own autoscaling interval, in whole seconds."""
    return max(1, math.ceil(settings.autoscale_interval_seconds))


def autoscaler_problem(
    service: ParsedService, settings: Settings, keda_crd_present: bool
) -> tuple[str, str] | None:
    """Why the service's autoscaler object cannot work in this cluster, as (reason, message).

    None when there is nothing to report. Only KEDA mode has checkable prerequisites: the
    ScaledObject CRD, and a Prometheus address for its triggers. (HPA mode needs
    prometheus-adapter with the shipped rules; a missing adapter shows on the HPA itself as
    FailedGetPodsMetric, which the operator cannot see without reading APIServices.)
    """
    if service.spec.autoscaling_mode != "KEDA":
        return None
    if not keda_crd_present:
        return (
            conditions.KEDA_NOT_INSTALLED,
            "autoscaling.mode KEDA needs KEDA's ScaledObject CRD (scaledobjects.keda.sh), which "
            "this cluster does not have; install KEDA or use mode Operator or HPA",
        )
    if not settings.prometheus_url:
        return (
            conditions.PROMETHEUS_NOT_CONFIGURED,
            "autoscaling.mode KEDA queries Prometheus for Triton's metrics, but the operator has "
            "no Prometheus address; set the chart value prometheusUrl "
            "(TRITONOP_PROMETHEUS_URL) or use mode Operator",
        )
    return None


def _metadata_context(service: ParsedService) -> dict[str, Any]:
    return {
        "name": service.name,
        "namespace": service.namespace,
        "labels": standard_labels(service.name),
        "owner_references": owner_references(service),
    }


def render_hpa(service: ParsedService) -> dict[str, Any]:
    """The autoscaling/v2 HorizontalPodAutoscaler on the prometheus-adapter Pods metrics."""
    autoscaling = _autoscaling(service)
    targets = autoscaling.targets
    metrics = []
    if targets.queue_depth is not None:
        metrics.append({"name": promql.QUEUE_DEPTH_METRIC, "target": quantity(targets.queue_depth)})
    if targets.queue_time_ms is not None:
        metrics.append(
            {"name": promql.QUEUE_TIME_METRIC, "target": quantity(targets.queue_time_ms)}
        )
    # prometheus-adapter adds the HPA's metric selector to its label matchers, so the model
    # restriction of Operator mode carries over to the per-pod series it sums.
    metric_selector = None
    if autoscaling.models:
        models = sorted(set(autoscaling.models))
        metric_selector = {
            "matchExpressions": [{"key": "model", "operator": "In", "values": models}]
        }
    return render_manifest(
        "hpa.yaml.j2",
        {
            **_metadata_context(service),
            "min_replicas": autoscaling.min_replicas,
            "max_replicas": autoscaling.max_replicas,
            "metrics": metrics,
            "metric_selector": metric_selector,
            "behavior": hpa_behavior(autoscaling),
        },
    )


def render_scaled_object(service: ParsedService, settings: Settings) -> dict[str, Any]:
    """The keda.sh/v1alpha1 ScaledObject with one Prometheus trigger per target.

    Queue depth is the service's total pending requests with metricType AverageValue (the HPA
    divides it by the replica count, giving pending per replica); queue time is already an
    average per request, so it is compared as a Value.
    """
    autoscaling = _autoscaling(service)
    targets = autoscaling.targets
    selector = promql.service_selector(service.namespace, service.name, autoscaling.models)
    window = promql.duration(promql.DEFAULT_RATE_WINDOW_SECONDS)
    triggers = []
    if targets.queue_depth is not None:
        triggers.append(
            {
                "metric_type": "AverageValue",
                "query": promql.queue_depth(selector),
                "threshold": threshold(targets.queue_depth),
            }
        )
    if targets.queue_time_ms is not None:
        triggers.append(
            {
                "metric_type": "Value",
                "query": promql.queue_time_ms(selector, window),
                "threshold": threshold(targets.queue_time_ms),
            }
        )
    return render_manifest(
        "scaledobject.yaml.j2",
        {
            **_metadata_context(service),
            "polling_interval": polling_interval(settings),
            "min_replicas": autoscaling.min_replicas,
            "max_replicas": autoscaling.max_replicas,
            "behavior": hpa_behavior(autoscaling),
            "server_address": settings.prometheus_url,
            "triggers": triggers,
        },
    )


def _autoscaling(service: ParsedService) -> Autoscaling:
    if service.spec.autoscaling is None:
        raise ValueError(f"InferenceService {service.name} has no autoscaling block")
    return service.spec.autoscaling


def render_autoscaler(
    service: ParsedService, settings: Settings, *, keda_available: bool = True
) -> list[dict[str, Any]]:
    """The autoscaler objects of the service's mode: [HPA], [ScaledObject], or [].

    Empty for modes Operator and None, and for KEDA mode when `autoscaler_problem` reports
    that the object cannot work (no KEDA CRD, no Prometheus address): the operator then sets
    a condition instead of applying an object that the API server would reject or that could
    only ever scale on errors.
    """
    mode = service.spec.autoscaling_mode
    if mode == "HPA":
        return [render_hpa(service)]
    if mode == "KEDA":
        if autoscaler_problem(service, settings, keda_available) is not None:
            return []
        return [render_scaled_object(service, settings)]
    return []
