"""Plain data shared by the metrics reader, the policy, the simulator and the operator loop.

Kept apart from both producers and consumers so that the policy never imports I/O code and
the metrics reader never imports policy code: `metrics.py` produces an Observation, `policy.py`
turns it into a Decision, and the operator loop (or `sim/`) carries the Decision out.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Observation:
    """What one metrics interval showed for one InferenceService.

    Averages are over the replicas that reported usable metrics. `None` means the signal is
    missing for this interval (no pod reported it, or its counters have no previous sample
    yet); it is never silently replaced by zero, because a zero would scale the service down.
    """

    time: float
    """Monotonic seconds when the observation was taken."""
    ready_replicas: int
    """Pods that are Ready (they count as current capacity)."""
    starting_replicas: int
    """Pods that exist but are not Ready yet: capacity already on its way."""
    reporting_replicas: int
    """Ready pods whose metrics were read and parsed this interval."""
    queue_depth: float | None
    """Average nv_inference_pending_request_count per reporting replica."""
    queue_time_ms: float | None
    """Average queue time per successful request over the interval, in milliseconds."""
    request_rate: float | None
    """Successful requests per second over the interval, summed over reporting replicas."""
    problems: tuple[str, ...] = field(default_factory=tuple)
    """One entry per pod whose metrics were missing, unreachable, partial or garbage."""
    compute_ms: float | None = None
    """Average compute time per successful request over the interval, in milliseconds
    (nv_inference_compute_infer_duration_us over nv_inference_request_success); None when
    unknown. An upper bound of the request cost: a replica with several model instances or
    batches runs requests side by side."""
    cold_start_seconds: float | None = None
    """How long the service's recently started pods took from creation to Ready (see
    `autoscale.coldstart`); None when none was seen. Sizes the objective's headroom."""
    pod_work: tuple[tuple[str, float], ...] = ()
    """(pod name, unfinished requests) per reporting pod: its pending requests plus those it
    executed on average over the interval (compute time per second). What a scale-down should
    spare (autoscale/deletioncost.py); the sizing uses the totals above."""
    implausible: tuple[str, ...] = field(default_factory=tuple)
    """One entry per plausibility check a page failed (a counter Triton keeps whole that is
    not, a rate beyond what the counts allow). Non-empty: the policy holds the replicas with
    ScalingActive=False, reason InvalidMetrics, and learns nothing from this observation."""

    @property
    def complete(self) -> bool:
        """True when every ready replica reported metrics."""
        return self.reporting_replicas == self.ready_replicas and not self.problems


@dataclass(frozen=True)
class ConditionFlag:
    """A condition the policy wants on the InferenceService (metav1.Condition without times)."""

    type: str
    status: bool
    reason: str
    """One CamelCase word, e.g. ValidMetrics, MissingMetrics, TooManyReplicas."""
    message: str


@dataclass(frozen=True)
class Decision:
    """The policy's answer for one interval."""

    desired_replicas: int
    reason: str
    """Human-readable: names the metric and the numbers that drove the decision."""
    conditions: tuple[ConditionFlag, ...]
    """AbleToScale, ScalingActive and ScalingLimited, always all three."""
    panicking: bool = False
