"""A discrete-event model of one Triton service: replicas, a load balancer and an autoscaler.

The service owns `ReplicaModel`s. Requests arrive from a trace and go to a ready replica
chosen by the balancer; a controller (the operator's policy or a baseline, see
`controllers.py`) is asked every `controller.interval` seconds for the desired replica count,
and the service carries it out the way a Deployment does:

* a new replica exists (and costs replica-seconds) from the moment it is requested, and
  serves after `cold_start_s` (image pull, Triton start, model load); until then it counts
  as starting, which is what the operator sees as `starting_replicas`;
* scale-down removes starting replicas first (newest first, as a ReplicaSet deletes pods
  that are not ready first), then the ready replicas with the fewest requests in flight;
  a removed ready replica gets no new requests but finishes the ones it holds, as Triton
  does on SIGTERM within the termination grace period, and costs replica-seconds until then.

What a controller sees is a `ServiceView`: the pods and their Triton counters as they were
`metric_delay_s` before the decision (scrape and pipeline delay, the same for every
controller), and the desired count as it is now (the controller's own last write).

The end of a run is honest about cost: arrivals stop at `duration`, every request accepted by
then still completes, and a replica holding one keeps costing replica-seconds until its last
request finishes (idle replicas stop costing at `duration`).

Load balancing: `least-request` (default) sends each request to the ready replica with the
fewest requests in flight, ties going round robin. This is what an L7 proxy in front of
Triton does (Envoy's and Istio's LEAST_REQUEST, the Gateway API inference extension);
`round-robin` (kube-proxy IPVS) and `random` (kube-proxy iptables) model a plain Service.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from tritonop.sim.replica import ReplicaConfig, ReplicaModel

Balancer = Literal["least-request", "round-robin", "random"]
BALANCERS: tuple[Balancer, ...] = ("least-request", "round-robin", "random")


@dataclass(frozen=True)
class ServiceConfig:
    """The service being simulated (everything but the load and the controller)."""

    replica: ReplicaConfig = field(default_factory=ReplicaConfig)
    cold_start_s: float = 20.0
    initial_replicas: int = 1
    """Replicas that are ready at time 0."""
    slo_ms: float = 500.0
    """Latency objective: a request meets it when queue plus execution time is at most this."""
    balancer: Balancer = "least-request"
    seed: int = 0
    """Seeds service times (when variable) and the random balancer."""
    timeline_step_s: float = 5.0
    """Resolution of the recorded timeline (replicas over time)."""
    metric_delay_s: float = 0.0
    """How old the pods and metrics a controller sees are when it decides."""

    def __post_init__(self) -> None:
        if self.cold_start_s < 0:
            raise ValueError(f"the cold start must be >= 0 s, got {self.cold_start_s}")
        if self.slo_ms <= 0:
            raise ValueError(f"the latency objective must be > 0 ms, got {self.slo_ms}")
        if self.initial_replicas < 0:
            raise ValueError(f"initial replicas must be >= 0, got {self.initial_replicas}")
        if self.timeline_step_s <= 0:
            raise ValueError(f"the timeline step must be > 0 s, got {self.timeline_step_s}")
        if self.metric_delay_s < 0:
            raise ValueError(f"the metric delay must be >= 0 s, got {self.metric_delay_s}")


class Replica:
    """One replica (pod) of the service and its lifecycle times."""

    __slots__ = (
        "created",
        "drain_started",
        "id",
        "last_completion",
        "model",
        "ready_at",
        "removed_at",
    )

    def __init__(self, replica_id: int, model: ReplicaModel, created: float, ready_at: float):
        self.id = replica_id
        self.model = model
        self.created = created
        self.ready_at = ready_at
        self.drain_started: float | None = None
        self.removed_at: float | None = None
        self.last_completion = created

    def fork(self, rng: random.Random) -> Replica:
        """An independent copy (see `ReplicaModel.fork`)."""
        clone = Replica(self.id, self.model.fork(rng), self.created, self.ready_at)
        clone.drain_started = self.drain_started
        clone.removed_at = self.removed_at
        clone.last_completion = self.last_completion
        return clone


@dataclass(frozen=True, slots=True)
class PodSample:
    """One ready pod as a scrape shows it: identity, lifecycle times and Triton's counters."""

    id: int
    created: float
    """When the pod was requested (its creationTimestamp)."""
    ready_at: float
    """When it became Ready: ready_at - created is the cold start it went through."""
    pending: int
    """nv_inference_pending_request_count: queued, not executing."""
    in_flight: int
    """Queued plus executing (what a queue-proxy counts as concurrency)."""
    success_count: int
    queue_duration_us: float
    compute_infer_duration_us: float
    concurrency_seconds: float
    """Integral of in_flight over time (Knative's concurrency is its rate)."""


@dataclass(frozen=True)
class ServiceView:
    """What a controller may look at when it decides (read-only, possibly delayed)."""

    time: float
    """When the pods were observed: the decision time minus the metric delay."""
    desired: int
    """Replicas currently requested (the Deployment's spec.replicas), as of the decision."""
    ready: tuple[PodSample, ...]
    """Pods serving requests at `time`, oldest first."""
    starting: int
    """Pods requested but not serving yet at `time`."""


class Controller(Protocol):
    """An autoscaler: asked every `interval` seconds for the desired replica count."""

    name: str
    interval: float

    def decide(self, now: float, service: ServiceView) -> int:
        """Desired replicas at `now`; the service clamps nothing, so stay within bounds."""


@dataclass
class Timeline:
    """The service over time, sampled every `timeline_step_s`."""

    times: list[float] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)
    replicas: list[int] = field(default_factory=list)
    """Replicas that exist (ready, starting or draining): what costs money."""
    desired: list[int] = field(default_factory=list)


@dataclass
class SimulationResult:
    """Per-request outcomes and the replica history of one run."""

    controller: str
    duration: float
    slo_ms: float
    arrivals: list[float]
    latencies: list[float]
    """Seconds from arrival to completion, in arrival order (same index as `arrivals`)."""
    replica_seconds: float
    """Every replica's life, request to removal; a replica still serving at `duration`
    counts until its last request completes."""
    scale_events: int
    max_replicas: int
    timeline: Timeline
    scored_from: float = 0.0
    """Requests arriving before this time are not scored (see scenario.START_RULES)."""

    @property
    def requests(self) -> int:
        return len(self.arrivals)

    def _scored(self) -> Sequence[float]:
        if self.scored_from <= 0:
            return self.latencies
        return self.latencies[bisect.bisect_left(self.arrivals, self.scored_from) :]

    @property
    def slo_attainment(self) -> float:
        """Fraction of the scored requests whose latency met the SLO (1.0 when none)."""
        return _attainment(self._scored(), self.slo_ms)

    @property
    def slo_attainment_all(self) -> float:
        """The same over every request, scored or not."""
        return _attainment(self.latencies, self.slo_ms)

    def latency_percentile_ms(self, percent: float) -> float:
        """The nearest-rank percentile of the scored requests' latency, in milliseconds."""
        return percentile_of(sorted(self._scored()), percent) * 1000.0

    def summary(self) -> dict[str, object]:
        """The figures `tritonop simulate --json` prints."""
        ordered = sorted(self._scored())

        def percentile(percent: float) -> float:
            return round(percentile_of(ordered, percent) * 1000, 1)

        summary: dict[str, object] = {
            "policy": self.controller,
            "requests": self.requests,
            "duration_s": round(self.duration, 1),
            "slo_ms": self.slo_ms,
            "slo_attainment": round(self.slo_attainment, 5),
            "latency_ms": {"p50": percentile(50), "p95": percentile(95), "p99": percentile(99)},
            "replica_seconds": round(self.replica_seconds, 1),
            "mean_replicas": round(self.replica_seconds / self.duration, 3) if self.duration else 0,
            "scale_events": self.scale_events,
            "max_replicas": self.max_replicas,
        }
        if self.scored_from > 0:
            summary["scored_from_s"] = self.scored_from
            summary["slo_attainment_all_requests"] = round(self.slo_attainment_all, 5)
        return summary


def _attainment(latencies: Sequence[float], slo_ms: float) -> float:
    if not latencies:
        return 1.0
    limit = slo_ms / 1000.0 + 1e-9
    return sum(1 for latency in latencies if latency <= limit) / len(latencies)


class Service:
    """The running service: replicas, their queues and the balancer (no controller, no clock)."""

    def __init__(self, config: ServiceConfig, arrivals: Sequence[float]) -> None:
        self.config = config
        self.arrivals = arrivals
        self.latencies = [math.nan] * len(arrivals)
        """Seconds from arrival to completion per request index; NaN while unfinished."""
        self._service_rng = random.Random(config.seed)
        self._balancer_rng = random.Random(config.seed + 1)
        self._next_id = 0
        self._ready: list[Replica] = []
        self._starting: list[Replica] = []
        self._draining: list[Replica] = []
        self._gone: list[Replica] = []
        self._held: list[int] = []
        self._round_robin = 0
        for _ in range(config.initial_replicas):
            self._ready.append(self._new_replica(0.0, ready_at=0.0))

    def fork(self) -> Service:
        """An independent copy in the same state, for what-if runs (the oracle's trials)."""
        clone = copy.copy(self)
        clone.latencies = self.latencies.copy()
        clone._service_rng = random.Random()
        clone._service_rng.setstate(self._service_rng.getstate())
        clone._balancer_rng = random.Random()
        clone._balancer_rng.setstate(self._balancer_rng.getstate())
        rng = clone._service_rng
        clone._ready = [replica.fork(rng) for replica in self._ready]
        clone._starting = [replica.fork(rng) for replica in self._starting]
        clone._draining = [replica.fork(rng) for replica in self._draining]
        clone._gone = list(self._gone)  # never changes again
        clone._held = list(self._held)
        return clone

    # ---------------------------------------------------------------- what controllers see

    @property
    def desired(self) -> int:
        """Replicas currently requested (ready + starting): the Deployment's spec.replicas."""
        return len(self._ready) + len(self._starting)

    @property
    def ready(self) -> Sequence[Replica]:
        return self._ready

    @property
    def starting(self) -> Sequence[Replica]:
        return self._starting

    @property
    def existing(self) -> int:
        """Replicas that exist and cost: ready, starting and draining."""
        return len(self._ready) + len(self._starting) + len(self._draining)

    def sample(self, now: float) -> ServiceView:
        """The pods and their counters at `now` (call after `advance(now)`)."""
        pods = tuple(
            PodSample(
                id=replica.id,
                created=replica.created,
                ready_at=replica.ready_at,
                pending=replica.model.pending_count,
                in_flight=replica.model.in_flight,
                success_count=replica.model.success_count,
                queue_duration_us=replica.model.queue_duration_us,
                compute_infer_duration_us=replica.model.compute_infer_duration_us,
                concurrency_seconds=replica.model.concurrency_seconds(now),
            )
            for replica in self._ready
        )
        return ServiceView(now, self.desired, pods, len(self._starting))

    # ---------------------------------------------------------------- lifecycle

    def _new_replica(self, now: float, ready_at: float) -> Replica:
        model = ReplicaModel(self.config.replica, self._service_rng)
        replica = Replica(self._next_id, model, now, ready_at)
        self._next_id += 1
        return replica

    def next_ready_time(self) -> float:
        """When the next starting replica becomes ready (inf when none is starting)."""
        return min((r.ready_at for r in self._starting), default=math.inf)

    def promote(self, now: float) -> None:
        """Starting replicas whose cold start is over begin serving (and take held requests)."""
        if not self._starting or self.next_ready_time() > now:
            return
        still: list[Replica] = []
        for replica in self._starting:
            (self._ready if replica.ready_at <= now else still).append(replica)
        self._starting = still
        held, self._held = self._held, []
        for request_index in held:
            self.route(now, request_index)

    def scale(self, now: float, desired: int) -> None:
        """Carry out a desired replica count as a Deployment would (see the module docstring)."""
        desired = max(0, desired)
        while self.desired < desired:
            self._starting.append(self._new_replica(now, now + self.config.cold_start_s))
        while self.desired > desired and self._starting:
            cancelled = self._starting.pop()
            cancelled.removed_at = now
            self._gone.append(cancelled)
        if self.desired > desired:
            self.advance(now)
            victims = sorted(self._ready, key=lambda r: (r.model.in_flight, -r.id))
            for victim in victims[: self.desired - desired]:
                self._ready.remove(victim)
                victim.drain_started = now
                self._draining.append(victim)
            self._retire_drained(now)

    def _retire_drained(self, now: float) -> None:
        """Draining replicas with nothing left in flight are gone (at their last completion)."""
        still = []
        for replica in self._draining:
            if replica.model.in_flight == 0:
                replica.removed_at = max(replica.drain_started or now, replica.last_completion)
                self._gone.append(replica)
            else:
                still.append(replica)
        self._draining = still

    # ---------------------------------------------------------------- requests

    def _collect(self, replica: Replica, now: float) -> None:
        """Advance one replica to `now` and record the latencies of what finished."""
        latencies, arrivals = self.latencies, self.arrivals
        for completion in replica.model.advance(now):
            index: int = completion.request_id  # type: ignore[assignment]
            latencies[index] = completion.end - arrivals[index]
            replica.last_completion = completion.end

    def advance(self, now: float) -> None:
        """Process every replica's events up to `now`, recording latencies."""
        for group in (self._ready, self._draining):
            for replica in group:
                upcoming = replica.model.next_event_time()
                if upcoming is not None and upcoming <= now:
                    self._collect(replica, now)
        if self._draining:
            self._retire_drained(now)

    def route(self, now: float, request_index: int) -> None:
        """Send request `request_index` to a ready replica at `now` (or hold it until one is)."""
        ready = self._ready
        if not ready:
            # no endpoint yet: the request waits (as at an activator or a retrying client)
            self._held.append(request_index)
            return
        balancer = self.config.balancer
        if balancer == "least-request":
            count = len(ready)
            start = self._round_robin % count
            self._round_robin += 1
            chosen = ready[start]
            self._collect_if_due(chosen, now)
            best_load = chosen.model.in_flight
            for offset in range(1, count):
                if best_load == 0:
                    break
                candidate = ready[(start + offset) % count]
                self._collect_if_due(candidate, now)
                load = candidate.model.in_flight
                if load < best_load:
                    chosen, best_load = candidate, load
        elif balancer == "round-robin":
            chosen = ready[self._round_robin % len(ready)]
            self._round_robin += 1
        else:
            chosen = ready[self._balancer_rng.randrange(len(ready))]
        self._collect_if_due(chosen, now)
        chosen.model.submit(now, request_index)

    def _collect_if_due(self, replica: Replica, now: float) -> None:
        upcoming = replica.model.next_event_time()
        if upcoming is not None and upcoming <= now:
            self._collect(replica, now)

    def finish(self, end: float) -> None:
        """Arrivals have stopped at `end`: let every accepted request complete, then stop.

        Requests held for want of a ready replica go to the replicas still starting when
        those become ready; with none starting either they never complete (infinite latency,
        they miss any objective). Replicas still serving at `end` are removed at their last
        completion, idle and starting ones at `end`, so a run's tail of work is paid for.
        """
        while self._held and self._starting:
            self.promote(self.next_ready_time())
        for request_index in self._held:
            self.latencies[request_index] = math.inf
        self._held = []
        for group in (self._ready, self._draining):
            for replica in group:
                while (upcoming := replica.model.next_event_time()) is not None:
                    self._collect(replica, upcoming)
                replica.removed_at = max(end, replica.last_completion)
                if replica.drain_started is not None:
                    replica.removed_at = max(replica.drain_started, replica.last_completion)
        for replica in self._starting:
            replica.removed_at = end

    def replica_seconds(self, end: float) -> float:
        """Replica lifetime summed over every replica; one not removed yet counts to `end`."""
        total = 0.0
        for group in (self._ready, self._starting, self._draining, self._gone):
            for replica in group:
                stop = end if replica.removed_at is None else replica.removed_at
                total += max(0.0, stop - replica.created)
        return total


class Simulation:
    """One run of a service under a controller, in virtual time; can pause and fork.

    `run_until` processes events up to a time, `fork` copies the whole run (service,
    clock, pending decisions) under another controller, `result` runs to the end. The
    oracle plans with forks: it tries a replica count on a copy and keeps the cheapest
    that serves the window, so its plan and its run are the same simulation.

    Events at one instant run in this order: replicas finishing their cold start, the
    timeline sample, the metrics snapshot, the controller's decision, then an arrival.
    """

    def __init__(
        self,
        arrivals: Sequence[float],
        controller: Controller,
        config: ServiceConfig,
        duration: float | None = None,
        *,
        record_timeline: bool = True,
    ) -> None:
        if controller.interval <= 0:
            raise ValueError(f"the decision interval must be > 0 s, got {controller.interval}")
        arrivals = list(arrivals)
        if any(later < earlier for earlier, later in itertools.pairwise(arrivals)):
            raise ValueError("arrival times must be sorted")
        if duration is None:
            last = arrivals[-1] if arrivals else 0.0
            duration = math.ceil((last + 1e-9) / controller.interval) * controller.interval
        self.controller = controller
        self.config = config
        self.duration = duration
        self.service = Service(config, arrivals)
        self.timeline = Timeline()
        self.record_timeline = record_timeline
        self.now = 0.0
        self.next_sample = 0.0 if record_timeline else math.inf
        self.next_tick = controller.interval
        self.ticks_sampled = 0
        """Decisions whose metrics snapshot has been taken."""
        self.snapshots: deque[ServiceView] = deque()
        self.scale_events = 0
        self.max_replicas = self.service.existing
        self.index = 0
        """The next arrival to route."""

    @property
    def arrivals(self) -> Sequence[float]:
        return self.service.arrivals

    def _next_snapshot(self) -> float:
        """When the metrics for the next decision not yet sampled are read."""
        tick = (self.ticks_sampled + 1) * self.controller.interval
        return max(0.0, tick - self.config.metric_delay_s)

    def run_until(self, limit: float, *, inclusive: bool = False) -> None:
        """Process every event before `limit` (and at it, when `inclusive`), up to `duration`."""
        service, arrivals, count = self.service, self.service.arrivals, len(self.service.arrivals)
        timeline, step = self.timeline, self.config.timeline_step_s
        while True:
            arrival = arrivals[self.index] if self.index < count else math.inf
            ready_time = service.next_ready_time()
            snapshot = self._next_snapshot()
            now = min(arrival, self.next_tick, ready_time, self.next_sample, snapshot)
            if now > self.duration or now > limit or (now == limit and not inclusive):
                break
            self.now = now
            if ready_time <= now:
                service.promote(now)
            if now == self.next_sample:
                service.advance(now)
                timeline.times.append(now)
                timeline.ready.append(len(service.ready))
                timeline.replicas.append(service.existing)
                timeline.desired.append(service.desired)
                self.next_sample += step
            elif now == snapshot:
                service.advance(now)
                self.snapshots.append(service.sample(now))
                self.ticks_sampled += 1
            elif now == self.next_tick:
                service.advance(now)
                seen = self.snapshots.popleft()
                view = ServiceView(seen.time, service.desired, seen.ready, seen.starting)
                desired = self.controller.decide(now, view)
                if desired != service.desired:
                    self.scale_events += 1
                    service.scale(now, desired)
                    self.max_replicas = max(self.max_replicas, service.existing)
                self.next_tick += self.controller.interval
            elif now == arrival:
                service.route(now, self.index)
                self.index += 1
        self.now = max(self.now, min(limit, self.duration))

    def fork(self, controller: Controller) -> Simulation:
        """A copy of this run, from where it is, under `controller` (no timeline recorded)."""
        clone = copy.copy(self)
        clone.controller = controller
        clone.service = self.service.fork()
        clone.timeline = Timeline()
        clone.record_timeline = False
        clone.next_sample = math.inf
        clone.snapshots = deque(self.snapshots)
        return clone

    def settle(self) -> list[float]:
        """Stop arrivals now, let accepted requests complete; the latencies (NaN: never sent)."""
        self.service.finish(self.now)
        return self.service.latencies

    def result(self) -> SimulationResult:
        """Run to `duration`, let every accepted request complete, and report."""
        self.run_until(self.duration, inclusive=True)
        self.service.finish(self.duration)
        return SimulationResult(
            controller=self.controller.name,
            duration=self.duration,
            slo_ms=self.config.slo_ms,
            arrivals=list(self.service.arrivals),
            latencies=self.service.latencies,
            replica_seconds=self.service.replica_seconds(self.duration),
            scale_events=self.scale_events,
            max_replicas=self.max_replicas,
            timeline=self.timeline,
        )


def simulate(
    arrivals: Sequence[float],
    controller: Controller,
    config: ServiceConfig,
    duration: float | None = None,
) -> SimulationResult:
    """Run the service under `controller` for the arrival times `arrivals` (sorted seconds).

    The controller is first asked at `controller.interval`, then every interval, until
    `duration` (default: the last arrival, rounded up to the interval). Requests still in
    flight at the end complete, and the replicas serving them cost until they do.
    """
    return Simulation(arrivals, controller, config, duration).result()


def percentile_of(values: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not values:
        return 0.0
    return values[max(0, math.ceil(percent / 100.0 * len(values)) - 1)]


def bucket_latency(
    arrivals: Sequence[float], latencies: Sequence[float], bucket: float, percent: float
) -> tuple[list[float], list[float]]:
    """Per-bucket latency percentile (by arrival time), for plots."""
    if not arrivals:
        return [], []
    times: list[float] = []
    values: list[float] = []
    start = 0.0
    end = arrivals[-1]
    while start <= end:
        low = bisect.bisect_left(arrivals, start)
        high = bisect.bisect_left(arrivals, start + bucket)
        if high > low:
            times.append(start + bucket / 2)
            values.append(percentile_of(sorted(latencies[low:high]), percent))
        start += bucket
    return times, values


__all__ = [
    "BALANCERS",
    "Balancer",
    "Controller",
    "PodSample",
    "Replica",
    "Service",
    "ServiceConfig",
    "ServiceView",
    "Simulation",
    "SimulationResult",
    "Timeline",
    "simulate",
]
