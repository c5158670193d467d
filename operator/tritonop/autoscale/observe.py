"""Triton's metrics as the autoscaling policy sees them: parsing and per-interval observation.

Pure: text, scrapes and query answers in, an `Observation` (autoscale/types.py) out. The I/O
that fetches them (HTTP to the pods or to Prometheus) is autoscale/metrics.py, so every rule
below is tested on plain data.

Two paths produce the same Observation:

* Direct scraping (the default): `parse_triton_metrics` parses each pod's page and `observe`
  compares each pod's counters with its previous scrape (`remember` keeps those).
* Prometheus: `prometheus_queries` are the same quantities as PromQL (autoscale/promql.py) over
  a rate window, and `prometheus_observation` turns their per-pod answers into an Observation.

Principles, because a wrong zero scales a service down:

* A pod whose metrics are unreachable, garbage, or lack a family the signals need does not
  count as reporting, and gets one line in `Observation.problems`; it is never read as zeros.
* Counter deltas need two scrapes of the same pod. A pod seen for the first time contributes
  its queue-depth gauge at once and its rates from the next interval on; that is normal and
  not a problem.
* Counter resets (Triton restarted in the same pod, or a model reloaded) are detected per pod:
  if any counter of the pod's selected models went down, that pod's rates are skipped for this
  one interval (its gauge still counts). Prometheus' alternative, taking the new value as the
  delta since the restart, would attribute an unknown fraction of the interval to a freshly
  started server whose first requests (model warm-up, cold caches) are not representative.
* Queue time is `Σ Δnv_inference_queue_duration_us / Σ Δnv_inference_request_success / 1000`
  over the pods with rates. With no successes in the interval it is 0.0 when nothing is pending
  either (true idle: the policy may scale down), and None when requests are pending but none
  finished (the queue time is unknown and growing; queue depth carries that case, and the
  policy's rule "None means missing" rightly blocks scale-down).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tritonop.autoscale import promql
from tritonop.autoscale.types import Observation

PENDING = promql.PENDING_REQUESTS
QUEUE_DURATION = promql.QUEUE_DURATION_US
SUCCESS = promql.REQUEST_SUCCESS
FAILURE = "nv_inference_request_failure"
REQUEST_DURATION = "nv_inference_request_duration_us"
COMPUTE_INFER_DURATION = "nv_inference_compute_infer_duration_us"
INFERENCE_COUNT = "nv_inference_count"
EXEC_COUNT = "nv_inference_exec_count"

REQUIRED_FAMILIES = (PENDING, SUCCESS, QUEUE_DURATION)
"""Families every reporting pod must expose: queue depth, and the two counters of queue time."""

_COUNTER_FIELDS = {
    QUEUE_DURATION: "queue_duration_us",
    SUCCESS: "request_success",
    REQUEST_DURATION: "request_duration_us",
    COMPUTE_INFER_DURATION: "compute_infer_duration_us",
    INFERENCE_COUNT: "inference_count",
    EXEC_COUNT: "exec_count",
}
_PER_MODEL_FAMILIES = frozenset({PENDING, FAILURE, *_COUNTER_FIELDS})
_MISSING_HINTS = {
    QUEUE_DURATION: " (Triton runs with --metrics-config counter_latencies=false?)",
    PENDING: " (Triton older than 23.03, or metrics disabled?)",
}


# --------------------------------------------------------------------------------------------
# what to observe
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodEndpoint:
    """A ready Triton pod to scrape."""

    name: str
    ip: str


@dataclass(frozen=True)
class MetricsTarget:
    """One InferenceService's interval to observe: which pods, which models, over what window."""

    namespace: str
    name: str
    pods: tuple[PodEndpoint, ...]
    """The ready pods: the ones whose metrics count (others are starting or terminating)."""
    starting: int
    """Pods that exist but are not ready yet: capacity on its way, reported as such."""
    models: tuple[str, ...] = ()
    """spec.autoscaling.models: the models whose series count (empty: all)."""
    window_s: float = promql.DEFAULT_RATE_WINDOW_SECONDS
    """Prometheus' rate window (direct scraping measures between its own scrapes)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def empty_observation(
    target: MetricsTarget, now: float, problems: Iterable[str] = ()
) -> Observation:
    """An interval in which no pod reported: every signal missing (never zero)."""
    return Observation(
        time=now,
        ready_replicas=len(target.pods),
        starting_replicas=target.starting,
        reporting_replicas=0,
        queue_depth=None,
        queue_time_ms=None,
        request_rate=None,
        problems=tuple(problems),
    )


# --------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------


class MetricsParseError(ValueError):
    """A metrics body that is not usable Prometheus text exposition."""


@dataclass(frozen=True)
class ModelStats:
    """One model version's series on one pod, as Triton reports them (None: not exposed)."""

    model: str
    version: str
    pending: float | None = None
    queue_duration_us: float | None = None
    request_success: float | None = None
    request_duration_us: float | None = None
    compute_infer_duration_us: float | None = None
    inference_count: float | None = None
    exec_count: float | None = None
    request_failure: Mapping[str, float] = field(default_factory=dict)
    """Failed requests by `reason` (REJECTED, CANCELED, BACKEND, OTHER); "" if unlabelled."""

    def counters(self) -> dict[str, float]:
        """Every cumulative counter present, keyed by family (failures as family/reason)."""
        values = {
            family: getattr(self, attribute)
            for family, attribute in _COUNTER_FIELDS.items()
            if getattr(self, attribute) is not None
        }
        values.update(
            {f"{FAILURE}/{reason}": count for reason, count in self.request_failure.items()}
        )
        return values


@dataclass(frozen=True)
class TritonSample:
    """A parsed Triton metrics page: per model version stats and the families it declared."""

    models: Mapping[tuple[str, str], ModelStats]
    """Keyed by (model, version)."""
    families: frozenset[str]
    """Names (without `_total`) of every family the page declared or had samples for."""

    def select(self, models: Collection[str]) -> list[ModelStats]:
        """Stats of the named models (every model when `models` is empty), in a stable order."""
        wanted = set(models)
        return [
            stats
            for key, stats in sorted(self.models.items())
            if not wanted or stats.model in wanted
        ]


def _family_name(name: str) -> str:
    """A family's name as Triton prints it: prometheus-client drops `_total` from counters."""
    return name.removesuffix("_total")


def _check_value(family: str, labels: Mapping[str, str], value: float) -> float:
    if not math.isfinite(value) or value < 0:
        shown = ",".join(f'{key}="{val}"' for key, val in sorted(labels.items()))
        raise MetricsParseError(f"{family}{{{shown}}} has invalid value {value!r}")
    return float(value)


def parse_triton_metrics(text: str) -> TritonSample:
    """Parse Triton's /metrics text into per model version stats.

    prometheus-client's parser names a counter family without `_total` and each of its samples
    with `_total` appended, even when the exposition (like Triton's) has no suffix; both
    spellings are accepted here. Families other than the per-model inference ones
    (nv_gpu_*, nv_cpu_*, nv_pinned_memory_*, ...) are only recorded by name.

    Raises MetricsParseError for text the parser rejects, for a NaN, infinite or negative value
    in a family the signals use, and for a duplicate series.
    """
    families: set[str] = set()
    fields: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        parsed = list(text_string_to_metric_families(text))
    except ValueError as error:  # the parser's only failure mode
        raise MetricsParseError(f"not Prometheus text: {shorten(str(error))}") from None
    for family in parsed:
        name = _family_name(family.name)
        families.add(name)
        if name not in _PER_MODEL_FAMILIES:
            continue
        for sample in family.samples:
            if _family_name(sample.name) != name:
                continue  # _created and similar companion samples
            labels = sample.labels
            key = (labels.get("model", ""), labels.get("version", ""))
            value = _check_value(name, labels, sample.value)
            stats = fields.setdefault(key, {"request_failure": {}})
            if name == FAILURE:
                reason = labels.get("reason", "")
                if reason in stats["request_failure"]:
                    raise MetricsParseError(f"duplicate series {name} {key} reason={reason!r}")
                stats["request_failure"][reason] = value
                continue
            attribute = "pending" if name == PENDING else _COUNTER_FIELDS[name]
            if attribute in stats:
                raise MetricsParseError(
                    f"duplicate series {name} model={key[0]!r} version={key[1]!r}"
                )
            stats[attribute] = value
    models = {
        key: ModelStats(model=key[0], version=key[1], **values) for key, values in fields.items()
    }
    return TritonSample(models=models, families=frozenset(families))


def shorten(text: str, limit: int = 120) -> str:
    """One line of at most `limit` characters, for problem messages."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def usable_models(
    sample: TritonSample, models: Collection[str]
) -> tuple[list[ModelStats], str | None]:
    """The selected models' stats, or the reason this page cannot drive scaling.

    A page must declare every family in REQUIRED_FAMILIES, have at least one selected model,
    and each selected model version must have all three required series (a partial page would
    otherwise read as a zero).
    """
    absent = [name for name in REQUIRED_FAMILIES if name not in sample.families]
    if absent:
        return [], "missing family " + ", ".join(
            name + _MISSING_HINTS.get(name, "") for name in absent
        )
    selected = sample.select(models)
    if not selected:
        loaded = sorted({stats.model for stats in sample.models.values()})
        if models:
            return [], (
                f"no metrics for model(s) {', '.join(sorted(set(models)))}; "
                f"the pod reports {', '.join(loaded) if loaded else 'no models'}"
            )
        return [], "no model metrics (no model loaded?)"
    for stats in selected:
        lacking = [
            family
            for family, value in (
                (PENDING, stats.pending),
                (SUCCESS, stats.request_success),
                (QUEUE_DURATION, stats.queue_duration_us),
            )
            if value is None
        ]
        if lacking:
            return [], (
                f"partial metrics: model={stats.model!r} version={stats.version!r} "
                f"lacks {', '.join(lacking)}"
            )
    return selected, None


# --------------------------------------------------------------------------------------------
# from scrapes to an Observation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodScrape:
    """One pod's metrics read at `time` (monotonic seconds): a sample, or why there is none."""

    pod: str
    ip: str
    time: float
    sample: TritonSample | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if (self.sample is None) == (self.error is None):
            raise ValueError("a PodScrape has exactly one of sample and error")


def remember(
    previous: Mapping[str, PodScrape], current: Mapping[str, PodScrape]
) -> dict[str, PodScrape]:
    """The `previous` to pass to the next `observe`: each current pod's last successful scrape.

    A pod whose scrape failed this interval keeps its older sample, so next interval's deltas
    span two intervals (divided by their real duration) instead of waiting another one. Pods
    that are gone are dropped.
    """
    kept: dict[str, PodScrape] = {}
    for pod, scrape in current.items():
        if scrape.sample is not None:
            kept[pod] = scrape
        elif pod in previous and previous[pod].sample is not None:
            kept[pod] = previous[pod]
    return kept


@dataclass(frozen=True)
class _PodRates:
    queue_duration_us: float
    successes: float
    seconds: float


def _pod_rates(
    previous: PodScrape | None,
    current: PodScrape,
    selected: Iterable[ModelStats],
    models: Collection[str],
) -> _PodRates | None:
    """Counter deltas of one pod since its previous scrape; None when there is no usable base.

    No base: first sight of the pod, a previous scrape without sample, a different pod IP
    (another pod under the same name), a clock that did not advance, or a counter reset.
    A model version absent from the previous scrape was loaded since, so its counters started
    from zero within the interval and count in full.
    """
    if previous is None or previous.sample is None or previous.ip != current.ip:
        return None
    seconds = current.time - previous.time
    if seconds <= 0:
        return None
    before = {(stats.model, stats.version): stats for stats in previous.sample.select(models)}
    queued = succeeded = 0.0
    for stats in selected:
        base = before.get((stats.model, stats.version))
        base_counters = base.counters() if base is not None else {}
        now_counters = stats.counters()
        if any(now_counters.get(name, math.inf) < value for name, value in base_counters.items()):
            return None  # reset: skip this pod's rates for one interval
        queued += (stats.queue_duration_us or 0.0) - base_counters.get(QUEUE_DURATION, 0.0)
        succeeded += (stats.request_success or 0.0) - base_counters.get(SUCCESS, 0.0)
    return _PodRates(queue_duration_us=queued, successes=succeeded, seconds=seconds)


def _queue_time_ms(queued_us: float, successes: float, pending_total: float) -> float | None:
    """Average queue time per request; 0.0 at true idle, None when work is pending unfinished."""
    if successes > 0:
        return queued_us / successes / 1000.0
    return 0.0 if pending_total == 0 else None


def observe(
    previous: Mapping[str, PodScrape],
    current: Mapping[str, PodScrape],
    *,
    ready_replicas: int,
    starting_replicas: int,
    models: Collection[str],
    now: float,
) -> Observation:
    """Combine this interval's scrapes (and the previous ones) into one Observation.

    `current` holds one scrape per ready pod; `previous` the last successful scrape per pod
    (see `remember`). `models` restricts every signal to those model names (empty: all).
    queue_depth is the mean over reporting pods of the pod's pending requests summed over its
    selected models; request_rate is Σ Δsuccess/Δt over pods with a base sample; queue_time_ms
    is the request-weighted average over the same pods (see the module docstring for idle).
    """
    problems: list[str] = []
    reporting = 0
    pending_total = 0.0
    rate_pods = 0
    queued_us = successes = request_rate = 0.0
    for pod in sorted(current):
        scrape = current[pod]
        if scrape.sample is None:
            problems.append(f"{pod}: {scrape.error}")
            continue
        selected, reason = usable_models(scrape.sample, models)
        if reason is not None:
            problems.append(f"{pod}: {reason}")
            continue
        reporting += 1
        pending_total += sum(stats.pending or 0.0 for stats in selected)
        rates = _pod_rates(previous.get(pod), scrape, selected, models)
        if rates is None:
            continue
        rate_pods += 1
        queued_us += rates.queue_duration_us
        successes += rates.successes
        request_rate += rates.successes / rates.seconds
    return Observation(
        time=now,
        ready_replicas=ready_replicas,
        starting_replicas=starting_replicas,
        reporting_replicas=reporting,
        queue_depth=pending_total / reporting if reporting else None,
        queue_time_ms=_queue_time_ms(queued_us, successes, pending_total) if rate_pods else None,
        request_rate=request_rate if rate_pods else None,
        problems=tuple(problems),
    )


# --------------------------------------------------------------------------------------------
# from Prometheus answers to an Observation
# --------------------------------------------------------------------------------------------


class PrometheusError(Exception):
    """A Prometheus query that failed (transport, HTTP status, API error or malformed answer)."""


def prometheus_queries(target: MetricsTarget) -> dict[str, str]:
    """The instant queries of one interval, by the family each measures, per ready pod.

    Per pod, so that pods without series can be named in `problems` exactly as with direct
    scraping. Selected by pod name: series of terminating pods, which Prometheus keeps for
    minutes after they vanish, do not count.
    """
    selector = promql.pods_selector(
        target.namespace, [pod.name for pod in target.pods], target.models
    )
    window = promql.duration(target.window_s)
    return {
        PENDING: promql.queue_depth(selector, by="pod"),
        QUEUE_DURATION: promql.queue_duration_rate(selector, window, by="pod"),
        SUCCESS: promql.request_rate(selector, window, by="pod"),
    }


def prometheus_observation(
    target: MetricsTarget,
    answers: Mapping[str, Mapping[str, float]],
    problems: Sequence[str],
    now: float,
) -> Observation:
    """The Observation from the answers to `prometheus_queries` (a failed query is absent).

    Prometheus' rate() handles counter resets itself; a pod too new for rate() (fewer than two
    samples in the window) contributes its gauge only, as with direct scraping. `problems`
    are the failed queries' reasons; pods without series are added to them.
    """
    pending = answers.get(PENDING)
    if pending is None:
        return empty_observation(target, now, sorted(problems))
    found = list(problems)
    expected = sorted(pod.name for pod in target.pods)
    for pod in expected:
        if pod not in pending:
            found.append(f"{pod}: no {PENDING} series in Prometheus (is the pod scraped?)")
    reporting = [pod for pod in expected if pod in pending]
    pending_total = sum(pending[pod] for pod in reporting)
    queued_rates = answers.get(QUEUE_DURATION, {})
    success_rates = answers.get(SUCCESS, {})
    rated = [pod for pod in reporting if pod in queued_rates and pod in success_rates]
    queued = sum(queued_rates[pod] for pod in rated)
    succeeded = sum(success_rates[pod] for pod in rated)
    return Observation(
        time=now,
        ready_replicas=len(target.pods),
        starting_replicas=target.starting,
        reporting_replicas=len(reporting),
        queue_depth=pending_total / len(reporting) if reporting else None,
        queue_time_ms=_queue_time_ms(queued, succeeded, pending_total) if rated else None,
        request_rate=succeeded if rated else None,
        problems=tuple(found),
    )


def vector_by_pod(payload: Mapping[str, Any]) -> dict[str, float]:
    """Values of an instant-vector API answer keyed by the `pod` label (finite values only)."""
    data = payload.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise PrometheusError(f"expected a vector result, got {shorten(str(data))}")
    values: dict[str, float] = {}
    for item in data.get("result") or []:
        try:
            pod = str(item["metric"]["pod"])
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            raise PrometheusError(f"malformed vector element {shorten(str(item))}") from None
        if math.isfinite(value):
            values[pod] = value
    return values
