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
* A page no Triton prints is not a value either. Only the nv_inference_* families the signals
  use are parsed (`autoscaling_lines`: cheaply, line by line, with bounds on line length and
  series count, so that no page costs more than a fraction of a second); a body cut short is
  a parse error. NaN, negative or fractional counts on a page (`findings`), and counter deltas
  beyond what the interval allows (`interval_findings`), make the pod an `InvalidMetrics`
  problem and fill `Observation.implausible`, on which the policy holds the replicas with
  ScalingActive=False: a sliver of a success against a growing queue would otherwise read as
  a demand of billions of replicas.
* Queue time is `Σ Δnv_inference_queue_duration_us / Σ Δnv_inference_request_success / 1000`
  over the pods with rates. With no successes in the interval it is 0.0 when nothing is pending
  either (true idle: the policy may scale down), and None when requests are pending but none
  finished (the queue time is unknown and growing; queue depth carries that case, and the
  policy's rule "None means missing" rightly blocks scale-down).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tritonop import conditions
from tritonop.autoscale import promql
from tritonop.autoscale.types import Observation
from tritonop.retries import backoff

PENDING = promql.PENDING_REQUESTS
QUEUE_DURATION = promql.QUEUE_DURATION_US
SUCCESS = promql.REQUEST_SUCCESS
FAILURE = "nv_inference_request_failure"
REQUEST_DURATION = "nv_inference_request_duration_us"
COMPUTE_INFER_DURATION = "nv_inference_compute_infer_duration_us"
INFERENCE_COUNT = "nv_inference_count"
EXEC_COUNT = "nv_inference_exec_count"

INVALID_METRICS = conditions.INVALID_METRICS
"""The word of a pod's problem whose page or interval no Triton produces."""
METRICS_TOO_LARGE = "MetricsTooLarge"
"""The word of a pod's problem whose page is larger than the reader reads."""

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


class MetricsTooLarge(MetricsParseError):
    """A page with more autoscaling series than any Triton prints (the parse is not attempted)."""


MAX_LINE_BYTES = 1024
"""Longest line of an autoscaling family that is parsed. Triton's lines are a name, at most four
labels (model, version, reason, gpu_uuid) and a number: a few hundred bytes with the longest
model names. prometheus-client's label parser is quadratic in the labels of one line (a 0.6 MiB
line of short labels took 2.2 s), so a longer line is refused instead of parsed."""
MAX_SERIES = 20_000
"""Most series of the autoscaling families parsed from one page: ~1,800 model versions at the
eleven series Triton prints per version, and ~0.4 s of parser time, the bound on what one pod's
page can cost."""
MAX_MODEL_VERSIONS = 2_000
"""Most model versions read from one page. The parsed page travels back from the parser
process to the event loop's process, where unpickling it holds the GIL: ~6 µs per model
version, so 2,000 cost ~12 ms of loop time (a page of 15,000 one-series "models" cost 90 ms)."""
WHOLE_COUNTS = (SUCCESS, FAILURE, INFERENCE_COUNT, EXEC_COUNT, PENDING)
"""Families Triton keeps as integers: a fraction in one is not a Triton page (see `findings`)."""

# Each pattern starts with the newline before its line (the page is searched with one
# prepended): a literal first character lets `re` skip ahead with memchr, ~20x faster than ^
# in MULTILINE mode, which tries every byte.
_AUTOSCALING_LINE = re.compile(
    rb"\n((?:# TYPE )?)("
    + b"|".join(re.escape(name.encode()) for name in sorted(_PER_MODEL_FAMILIES))
    + rb")(?:_total)?[{ \t][^\n]*"
)
"""A sample of a family the signals use, or its # TYPE line, in the page's order."""
_DECLARED = re.compile(rb"\n# (?:HELP|TYPE) (nv_[^ \t\n]+)")
_NOT_TEXT = re.compile(rb"\n[^#a-zA-Z_:\n]")
"""The start of a line that is neither a comment, a blank nor a metric name."""


@dataclass(frozen=True)
class ModelStats:
    """One model version's series on one pod, as Triton reports them (None: not exposed).

    Triton 21.x splits every per-model series by `gpu_uuid`; those are summed here, so a
    multi-GPU page reads like a current one.
    """

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

    def values(self) -> dict[str, float]:
        """Every value present, keyed by family (failures as family/reason), gauge included."""
        values = self.counters()
        if self.pending is not None:
            values[PENDING] = self.pending
        return values


@dataclass(frozen=True)
class TritonSample:
    """A parsed Triton metrics page: per model version stats and the families it declared."""

    models: Mapping[tuple[str, str], ModelStats]
    """Keyed by (model, version)."""
    families: frozenset[str]
    """Names (without `_total`) of the nv_* families the page declared with # HELP or # TYPE,
    and of the per-model families it had samples for."""
    implausible: tuple[str, ...] = ()
    """What on this page no Triton prints (see `findings`); such a page does not count."""

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


def autoscaling_lines(body: bytes) -> tuple[str, frozenset[str]]:
    """The lines of the families the signals use, and the nv_* family names the page declares.

    The cheap pass before prometheus-client's parser, which costs 15-30 µs a line in pure
    Python: a Triton page is mostly GPU, CPU, memory and summary series the signals never
    read, so only the per-model families (`_PER_MODEL_FAMILIES`) and their # TYPE lines are
    handed on, found by regular expressions (C speed: ~4 ms per MiB). Every other line must
    still look like Prometheus text (a comment, a blank, or a metric name), so an HTML error
    page or binary garbage is still a parse error, not an empty page.

    Raises MetricsParseError for a body whose last line has no newline (Triton ends every
    line with one: the body was cut short), for text that is not Prometheus exposition, and
    for an autoscaling line longer than MAX_LINE_BYTES; MetricsTooLarge for more than
    MAX_SERIES autoscaling series.
    """
    page = b"\n" + body
    garbage = _NOT_TEXT.search(page)
    if garbage is not None:
        number = page.count(b"\n", 0, garbage.start() + 1)
        end = page.find(b"\n", garbage.start() + 1)
        line = page[garbage.start() + 1 : end if end >= 0 else None]
        raise MetricsParseError(
            f"not Prometheus text: line {number} is {shorten(line.decode(errors='replace'))!r}"
        )
    if body and not body.endswith(b"\n"):
        last = body[body.rfind(b"\n") + 1 :][-40:]
        raise MetricsParseError(
            f"the body ends inside a line ({shorten(last.decode(errors='replace'))!r}): "
            "it was cut short"
        )
    families = {_family_name(name.decode(errors="replace")) for name in _DECLARED.findall(page)}
    kept: list[bytes] = []
    series = 0
    for match in _AUTOSCALING_LINE.finditer(page):
        line = match.group(0)[1:]
        name = match.group(2).decode()
        if len(line) > MAX_LINE_BYTES:
            number = page.count(b"\n", 0, match.start() + 1)
            raise MetricsParseError(
                f"line {number} ({name}) is {len(line)} bytes long, more than the "
                f"{MAX_LINE_BYTES} of any Triton series"
            )
        if not match.group(1):  # a sample, not its # TYPE line
            families.add(name)
            series += 1
            if series > MAX_SERIES:
                raise MetricsTooLarge(
                    f"more than {MAX_SERIES} series of the autoscaling families (nv_inference_*)"
                )
        kept.append(line)
    return b"\n".join(kept).decode(errors="replace") + "\n", frozenset(families)


def parser_started() -> None:
    """Nothing: the first task a new parser process runs (autoscale/metrics.py), done once
    the process has started and imported this module, which is all it imports to parse."""


def parse_triton_metrics(body: bytes | str) -> TritonSample:
    """Parse Triton's /metrics page into per model version stats, with its implausibilities.

    Only the autoscaling families reach prometheus-client's parser (`autoscaling_lines`).
    prometheus-client names a counter family without `_total` and each of its samples with
    `_total` appended, even when the exposition (like Triton's) has no suffix; both spellings
    are accepted here. Series split by `gpu_uuid` (Triton 21.x) are summed per model version.

    Raises MetricsParseError for text the parser rejects and for a duplicate series (the same
    labels twice); MetricsTooLarge for more than MAX_MODEL_VERSIONS model versions. Values no Triton prints (NaN, negative, a fraction in a count) are not an
    error here: they are listed in `TritonSample.implausible`, and `observe` turns the page
    into an InvalidMetrics problem.
    """
    text, families = autoscaling_lines(body.encode() if isinstance(body, str) else body)
    fields: dict[tuple[str, str], dict[str, Any]] = {}
    seen: set[tuple[str, ...]] = set()
    try:
        parsed = list(text_string_to_metric_families(text))
    except ValueError as error:  # the parser's only failure mode
        raise MetricsParseError(f"not Prometheus text: {shorten(str(error))}") from None
    for family in parsed:
        name = _family_name(family.name)
        if name not in _PER_MODEL_FAMILIES:
            continue
        for sample in family.samples:
            if _family_name(sample.name) != name:
                continue  # _created and similar companion samples
            labels = sample.labels
            key = (labels.get("model", ""), labels.get("version", ""))
            reason = labels.get("reason", "")
            series = (name, *key, reason, labels.get("gpu_uuid", ""))
            if series in seen:
                shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
                raise MetricsParseError(f"duplicate series {name}{{{shown}}}")
            seen.add(series)
            stats = fields.setdefault(key, {"request_failure": {}})
            value = float(sample.value)
            if name == FAILURE:
                failures = stats["request_failure"]
                failures[reason] = failures.get(reason, 0.0) + value
                continue
            attribute = "pending" if name == PENDING else _COUNTER_FIELDS[name]
            stats[attribute] = stats.get(attribute, 0.0) + value
    if len(fields) > MAX_MODEL_VERSIONS:
        raise MetricsTooLarge(f"more than {MAX_MODEL_VERSIONS} model versions")
    models = {
        key: ModelStats(model=key[0], version=key[1], **values) for key, values in fields.items()
    }
    return TritonSample(
        models=models, families=frozenset(families), implausible=tuple(findings(models.values()))
    )


def findings(models: Iterable[ModelStats]) -> list[str]:
    """What in these series no Triton prints: non-finite or negative values, fractional counts.

    Triton's counters are integers incremented by whole requests, inferences, executions and
    microseconds (prometheus-cpp prints them as integers, or with six zero decimals in older
    releases) and its pending count is a queue length. A page that says otherwise (5e-9 more
    successes, 7000.5 pending) is not a Triton page to size replicas from, however it parses.
    """
    found: list[str] = []
    for stats in models:
        where = f"model={stats.model!r} version={stats.version!r}"
        for family, value in stats.values().items():
            name = family.split("/", 1)[0]
            if not math.isfinite(value) or value < 0:
                found.append(f"{where}: {family} is {value!r}")
            elif name in WHOLE_COUNTS and value != math.floor(value):
                found.append(f"{where}: {family} is {value!r}, not a whole number")
    return found


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

    A pod whose scrape failed (or whose page was implausible) this interval keeps its older
    sample, so next interval's deltas
    span two intervals (divided by their real duration) instead of waiting another one. Pods
    that are gone are dropped.
    """
    kept: dict[str, PodScrape] = {}
    for pod, scrape in current.items():
        if scrape.sample is not None and not scrape.sample.implausible:
            kept[pod] = scrape
        elif pod in previous and previous[pod].sample is not None:
            kept[pod] = previous[pod]
    return kept


SCRAPE_BACKOFF_CEILING_SECONDS = 30.0
"""The longest a service none of whose pods can be read waits between attempts. Such a
service (its metrics port blocked by a policy, a server that never listens: every service of
the scale benchmark) is otherwise fetched every interval, which at 1,000 services was a fifth
of the operator's steady CPU for nothing. While any pod of the service answers, every pod is
read every interval: one crashed server among healthy ones is noticed back at once, and the
policy's hold on incomplete metrics ends with it."""


@dataclass(frozen=True)
class FailingPod:
    """A pod whose last scrapes failed: the failure is reported again until `retry_at`."""

    last: PodScrape
    streak: int
    retry_at: float


def scrape_due(pod: PodEndpoint, failing: Mapping[str, FailingPod], now: float) -> bool:
    """Whether to read `pod` this interval: always, unless no pod of its service answered for
    at least two intervals and the pod's backoff (5 s, doubling, up to
    SCRAPE_BACKOFF_CEILING_SECONDS) has not passed. A pod with a new IP is a new server, read
    at once."""
    known = failing.get(pod.name)
    return known is None or known.last.ip != pod.ip or now >= known.retry_at


def failing_after(
    failing: Mapping[str, FailingPod], scrapes: Mapping[str, PodScrape]
) -> dict[str, FailingPod]:
    """The failing pods after this interval's `scrapes` (one per current pod, those not read
    again included as their last failure): none when any pod answered, else a new failure
    lengthens its pod's streak; pods gone are dropped. The first failure is retried next
    interval (a server still starting), the second after 5 s, then 10, 20, 30."""
    if any(scrape.error is None for scrape in scrapes.values()):
        return {}
    after: dict[str, FailingPod] = {}
    for pod, scrape in scrapes.items():
        if scrape.error is None:
            continue
        known = failing.get(pod)
        if known is not None and known.last is scrape:  # not read again: still waiting
            after[pod] = known
            continue
        streak = known.streak + 1 if known is not None else 1
        delay = 0.0 if streak < 2 else backoff(streak - 1, SCRAPE_BACKOFF_CEILING_SECONDS)
        after[pod] = FailingPod(scrape, streak, scrape.time + delay)
    return after


@dataclass(frozen=True)
class _PodRates:
    queue_duration_us: float
    successes: float
    seconds: float
    compute_us: float | None
    """Compute time of the interval's requests; None when a selected model lacks the series."""


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
    computed: float | None = 0.0
    for stats in selected:
        base = before.get((stats.model, stats.version))
        base_counters = base.counters() if base is not None else {}
        now_counters = stats.counters()
        if any(now_counters.get(name, math.inf) < value for name, value in base_counters.items()):
            return None  # reset: skip this pod's rates for one interval
        queued += (stats.queue_duration_us or 0.0) - base_counters.get(QUEUE_DURATION, 0.0)
        succeeded += (stats.request_success or 0.0) - base_counters.get(SUCCESS, 0.0)
        if computed is not None and stats.compute_infer_duration_us is not None:
            computed += stats.compute_infer_duration_us - base_counters.get(
                COMPUTE_INFER_DURATION, 0.0
            )
        else:
            computed = None
    return _PodRates(
        queue_duration_us=queued, successes=succeeded, seconds=seconds, compute_us=computed
    )


MAX_REQUEST_RATE = 1_000_000.0
"""Successful requests per second beyond which one pod's counters are implausible: the fastest
Triton front ends finish tens of thousands of requests per second per server."""
MAX_QUEUE_WAIT_S = 3600.0
"""Longest wait in Triton's queue taken as possible: clients give up long before an hour."""


def interval_findings(rates: _PodRates) -> list[str]:
    """What one pod's counter deltas over an interval cannot be.

    Successes are bounded by the interval (`MAX_REQUEST_RATE`). Queue time is added when a
    request finishes, and each finishing request waited at most the interval plus however
    long it had waited before it (`MAX_QUEUE_WAIT_S`): so the queue time of an interval is at
    most its successes (at least one, as Triton may add the two counters in either order)
    times interval + MAX_QUEUE_WAIT_S. A page pair beyond that (5 µs of queueing spread over
    5e-9 requests, a billion requests in a second) implies a demand no traffic has.
    """
    found = []
    if rates.successes > MAX_REQUEST_RATE * rates.seconds:
        found.append(
            f"{rates.successes:.6g} successes in {rates.seconds:.3g}s, more than "
            f"{MAX_REQUEST_RATE:g}/s"
        )
    longest_us = max(rates.successes, 1.0) * (rates.seconds + MAX_QUEUE_WAIT_S) * 1e6
    if rates.queue_duration_us > longest_us:
        found.append(
            f"{rates.queue_duration_us:.6g} µs of queue time for {rates.successes:.6g} "
            f"successes in {rates.seconds:.3g}s, more than an hour's wait each"
        )
    return found


def _invalid(pod: str, found: Sequence[str]) -> str:
    """The per-pod problem line of an implausible page or interval."""
    more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
    return f"{pod}: {INVALID_METRICS}: {found[0]}{more}"


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
    is the request-weighted average over the same pods (see the module docstring for idle), and
    compute_ms likewise from nv_inference_compute_infer_duration_us (None when a pod lacks it:
    an upper bound of the request cost is only one if it covers every request). pod_work is
    each reporting pod's pending requests plus its average executing ones (compute time over
    the interval; 0 without a base sample or the series).
    """
    problems: list[str] = []
    implausible: list[str] = []
    reporting = 0
    pending_total = 0.0
    rate_pods = 0
    queued_us = successes = request_rate = 0.0
    computed_us: float | None = 0.0
    work: list[tuple[str, float]] = []
    for pod in sorted(current):
        scrape = current[pod]
        if scrape.sample is None:
            problems.append(f"{pod}: {scrape.error}")
            continue
        if scrape.sample.implausible:
            problems.append(_invalid(pod, scrape.sample.implausible))
            implausible.extend(f"{pod}: {found}" for found in scrape.sample.implausible)
            continue
        selected, reason = usable_models(scrape.sample, models)
        if reason is not None:
            problems.append(f"{pod}: {reason}")
            continue
        rates = _pod_rates(previous.get(pod), scrape, selected, models)
        found = interval_findings(rates) if rates is not None else []
        if found:
            problems.append(_invalid(pod, found))
            implausible.extend(f"{pod}: {finding}" for finding in found)
            continue
        reporting += 1
        pending = sum(stats.pending or 0.0 for stats in selected)
        pending_total += pending
        executing = (
            rates.compute_us / rates.seconds / 1e6
            if rates is not None and rates.compute_us is not None
            else 0.0
        )
        work.append((pod, pending + executing))
        if rates is None:
            continue
        rate_pods += 1
        queued_us += rates.queue_duration_us
        successes += rates.successes
        request_rate += rates.successes / rates.seconds
        computed_us = (
            computed_us + rates.compute_us
            if computed_us is not None and rates.compute_us is not None
            else None
        )
    return Observation(
        time=now,
        ready_replicas=ready_replicas,
        starting_replicas=starting_replicas,
        reporting_replicas=reporting,
        queue_depth=pending_total / reporting if reporting else None,
        queue_time_ms=_queue_time_ms(queued_us, successes, pending_total) if rate_pods else None,
        request_rate=request_rate if rate_pods else None,
        problems=tuple(problems),
        compute_ms=(
            computed_us / successes / 1000.0 if computed_us is not None and successes else None
        ),
        pod_work=tuple(work),
        implausible=tuple(implausible),
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
        pod_work=tuple((pod, pending[pod]) for pod in reporting),
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
