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

Load balancing: `least-request` (default) sends each request to the ready replica with the
fewest requests in flight, ties going round robin. This is what an L7 proxy in front of
Triton does (Envoy's and Istio's LEAST_REQUEST, the Gateway API inference extension);
`round-robin` (kube-proxy IPVS) and `random` (kube-proxy iptables) model a plain Service.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
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

    def __post_init__(self) -> None:
        if self.cold_start_s < 0:
            raise ValueError(f"the cold start must be >= 0 s, got {self.cold_start_s}")
        if self.slo_ms <= 0:
            raise ValueError(f"the latency objective must be > 0 ms, got {self.slo_ms}")
        if self.initial_replicas < 0:
            raise ValueError(f"initial replicas must be >= 0, got {self.initial_replicas}")
        if self.timeline_step_s <= 0:
            raise ValueError(f"the timeline step must be > 0 s, got {self.timeline_step_s}")


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


class ServiceView(Protocol):
    """What a controller may look at when it decides (the service, read-only)."""

    @property
    def desired(self) -> int:
        """Replicas currently requested (the Deployment's spec.replicas)."""

    @property
    def ready(self) -> Sequence[Replica]:
        """Replicas serving requests, oldest first."""

    @property
    def starting(self) -> Sequence[Replica]:
        """Replicas requested but not serving yet."""


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
    scale_events: int
    max_replicas: int
    timeline: Timeline

    @property
    def requests(self) -> int:
        return len(self.arrivals)

    @property
    def slo_attainment(self) -> float:
        """Fraction of requests whose latency met the SLO (1.0 for an empty trace)."""
        if not self.latencies:
            return 1.0
        limit = self.slo_ms / 1000.0 + 1e-9
        return sum(1 for latency in self.latencies if latency <= limit) / len(self.latencies)

    def latency_percentile_ms(self, percent: float) -> float:
        """The nearest-rank percentile of latency, in milliseconds."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        rank = max(0, math.ceil(percent / 100.0 * len(ordered)) - 1)
        return ordered[rank] * 1000.0

    def summary(self) -> dict[str, object]:
        """The figures `tritonop simulate --json` prints."""
        ordered = sorted(self.latencies)

        def percentile(percent: float) -> float:
            if not ordered:
                return 0.0
            return round(ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)] * 1000, 1)

        return {
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


class Service:
    """The running simulation of one service; implements ServiceView for controllers."""

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

    # ---------------------------------------------------------------- ServiceView

    @property
    def desired(self) -> int:
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

    def finish(self) -> None:
        """Let every request still in flight complete (no new arrivals).

        Requests still held because no replica ever became ready never complete: their
        latency is infinite (they miss any objective).
        """
        for request_index in self._held:
            self.latencies[request_index] = math.inf
        self._held = []
        for group in (self._ready, self._draining):
            for replica in group:
                while (upcoming := replica.model.next_event_time()) is not None:
                    self._collect(replica, upcoming)

    def replica_seconds(self, end: float) -> float:
        """Replica lifetime summed over every replica, up to `end`."""
        total = 0.0
        for group in (self._ready, self._starting, self._draining, self._gone):
            for replica in group:
                stop = end if replica.removed_at is None else min(replica.removed_at, end)
                total += max(0.0, stop - replica.created)
        return total


def simulate(
    arrivals: Sequence[float],
    controller: Controller,
    config: ServiceConfig,
    duration: float | None = None,
) -> SimulationResult:
    """Run the service under `controller` for the arrival times `arrivals` (sorted seconds).

    The controller is first asked at `controller.interval`, then every interval, until
    `duration` (default: the last arrival, rounded up to the interval). Requests still in
    flight at the end complete; replica-seconds count up to `duration`.
    """
    if controller.interval <= 0:
        raise ValueError(f"the decision interval must be > 0 s, got {controller.interval}")
    arrivals = list(arrivals)
    if any(later < earlier for earlier, later in itertools.pairwise(arrivals)):
        raise ValueError("arrival times must be sorted")
    if duration is None:
        last = arrivals[-1] if arrivals else 0.0
        duration = math.ceil((last + 1e-9) / controller.interval) * controller.interval
    service = Service(config, arrivals)
    timeline = Timeline()
    step = config.timeline_step_s
    next_sample = 0.0
    interval = controller.interval
    next_tick = interval
    scale_events = 0
    max_replicas = service.existing
    index = 0
    count = len(arrivals)
    while True:
        arrival = arrivals[index] if index < count else math.inf
        ready_time = service.next_ready_time()
        now = min(arrival, next_tick, ready_time, next_sample)
        if now > duration:
            break
        if ready_time <= now:
            service.promote(now)
        if now == next_sample:
            service.advance(now)
            timeline.times.append(now)
            timeline.ready.append(len(service.ready))
            timeline.replicas.append(service.existing)
            timeline.desired.append(service.desired)
            next_sample += step
        elif now == next_tick:
            service.advance(now)
            desired = controller.decide(now, service)
            if desired != service.desired:
                scale_events += 1
                service.scale(now, desired)
                max_replicas = max(max_replicas, service.existing)
            next_tick += interval
        elif now == arrival:
            service.route(now, index)
            index += 1
    service.finish()
    return SimulationResult(
        controller=controller.name,
        duration=duration,
        slo_ms=config.slo_ms,
        arrivals=arrivals,
        latencies=service.latencies,
        replica_seconds=service.replica_seconds(duration),
        scale_events=scale_events,
        max_replicas=max_replicas,
        timeline=timeline,
    )


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
    "Replica",
    "Service",
    "ServiceConfig",
    "ServiceView",
    "SimulationResult",
    "Timeline",
    "simulate",
]
