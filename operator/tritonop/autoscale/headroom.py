"""Headroom for a latency objective: a memory of how fast load rose within one cold start.

Pure. Replicas the policy asks for now serve one cold start later, so a rise of load within a
cold start meets the replicas that already run. With an objective the policy therefore holds
headroom for the rises it has seen: `BurstMemory` keeps, for every interval of the last
`BURST_MEMORY_SECONDS`, how far the load rose above its level one cold start earlier, and
`BurstMemory.rise` picks the rise to hold capacity for so that the requests that arrived
during larger rises stay within the objective's miss budget. `BurstMemory.rate_after` says
what followed loads as high as the present one a cold start later: when they were all gone,
replicas asked for now would only arrive after such a load, and the policy asks for none.
Why this shape: docs/design/autoscaling.md ("Objective mode").
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

#: How long a rise is remembered: long enough to span the quiet spells between a service's
#: bursts (bursts minutes apart are the case a cold start cannot follow), short enough that a
#: change of traffic (a launch, a retired client) stops costing headroom within the hour.
BURST_MEMORY_SECONDS = 2700.0
#: Cold start assumed until one is configured or seen (a GPU pod pulling a cached image and
#: loading a model).
DEFAULT_COLD_START_SECONDS = 30.0
#: The share of the objective's miss budget (1 - attainment) that may fall on requests
#: arriving during rises larger than the headroom (the rest goes to the steady-state queue,
#: see queueing.STEADY_MISS_SHARE).
BURST_MISS_SHARE = 0.5
#: An interval of the memory counts as "as busy" as the present one (see
#: `BurstMemory.rate_after`) when its arrival rate is at most this share below the present
#: rate: one interval's rate is a noisy count (100 requests are +-10%) and the arrival
#: estimate of a burst's first intervals overshoots while its backlog builds (the
#: benchmark's 20 req/s spikes read up to 23), so a tight match would miss the bursts it
#: saw; a much wider one would take a load well above any seen for one of them.
LOAD_MATCH = 0.3


@dataclass(frozen=True)
class LoadSample:
    """Arrivals over one interval."""

    time: float
    """End of the interval."""
    seconds: float
    requests: float


@dataclass(frozen=True)
class Rise:
    """What one interval showed of the load's speed, kept for the memory window."""

    time: float
    rise: float
    """Requests per second above the level one cold start earlier (0 when lower)."""
    peak: float
    """The interval's effective arrival rate (requests per second)."""
    requests: float
    """Requests that arrived in the interval: the weight of this rise."""
    rate: float = 0.0
    """The interval's own arrival rate (requests per second), to see how long a load lasted."""


@dataclass(frozen=True)
class HeldRise:
    """The rise the policy holds capacity for, and the evidence behind it."""

    rise: float
    """Requests per second."""
    peak: float
    """The highest effective rate in the memory: no headroom beyond it."""
    span: float
    """Seconds of history the memory covers (at most BURST_MEMORY_SECONDS)."""


@dataclass(frozen=True)
class BurstMemory:
    """Recent load and the rises of the last BURST_MEMORY_SECONDS (immutable)."""

    recent: tuple[LoadSample, ...] = ()
    """Samples of the last two cold starts: the level before a rise, and the rise itself."""
    rises: tuple[Rise, ...] = ()

    def observe(self, sample: LoadSample, cold_start: float, slack: float) -> BurstMemory:
        """The memory after one more interval.

        The effective rate is the most arrivals any run of recent intervals within one cold
        start brought per second of that run plus `slack` (the seconds a request may wait
        and still meet the objective: a burst shorter than that is absorbed by queueing).
        The level it rose from is the highest rate of the intervals that ended at least one
        cold start before this one (within two cold starts): replicas asked for at their end
        serve by now. While no interval is that old (the memory's first cold start), the
        rise is from the lowest rate of the intervals before this one to the runs after it.
        So a load whose rate never rises by more than R req/s between two intervals that end
        less than one cold start plus one interval apart (a rise is seen at the end of an
        interval) shows rises of at most R.
        """
        if not (sample.seconds > 0 and math.isfinite(sample.requests) and sample.requests >= 0):
            return self
        recent = tuple(s for s in self.recent if s.time > sample.time - 2 * cold_start)
        recent = (*recent, sample)
        peak = _effective_rate(recent, sample.time, cold_start, slack)
        level = max(
            (s.requests / s.seconds for s in recent if s.time <= sample.time - cold_start),
            default=None,
        )
        rise = max(0.0, peak - level) if level is not None else 0.0
        if level is None and len(recent) > 1:
            # no interval a cold start old yet (a memory younger than one cold start, or
            # after a gap in the samples): the rise from the lowest rate seen since to the
            # runs after it, so that a burst in the memory's first cold start is not lost
            # for want of a level to rise from
            rates = [s.requests / s.seconds for s in recent[:-1]]
            lowest = min(range(len(rates)), key=lambda i: (rates[i], i))
            after = _effective_rate(recent[lowest + 1 :], sample.time, cold_start, slack)
            rise = max(0.0, after - rates[lowest])
        cutoff = sample.time - BURST_MEMORY_SECONDS
        kept = tuple(r for r in self.rises if r.time > cutoff)
        return BurstMemory(
            recent,
            (
                *kept,
                Rise(sample.time, rise, peak, sample.requests, sample.requests / sample.seconds),
            ),
        )

    def rise(self, attainment: float, now: float) -> HeldRise | None:
        """The rise to hold capacity for: the smallest that leaves the requests of larger
        rises within BURST_MISS_SHARE of the objective's miss budget. None: nothing seen."""
        live = [r for r in self.rises if r.time > now - BURST_MEMORY_SECONDS]
        if not live:
            return None
        total = sum(r.requests for r in live)
        budget = (1.0 - attainment) * BURST_MISS_SHARE * total
        uncovered = 0.0
        held = 0.0
        for entry in sorted(live, key=lambda r: r.rise, reverse=True):
            if uncovered + entry.requests > budget:
                held = entry.rise
                break
            uncovered += entry.requests
        span = now - min(r.time for r in live)
        return HeldRise(rise=held, peak=max(r.peak for r in live), span=span)

    def rate_after(self, rate: float, now: float, cold_start: float) -> float | None:
        """The highest arrival rate seen one cold start after an interval about as busy as
        `rate` (at least 1 - LOAD_MATCH of it): what replicas asked for now would meet.

        None when no interval of the memory was that busy with one cold start after it seen
        (a load the memory has not seen outlive a cold start). Replicas asked for now serve
        one cold start later; when every load this high the memory saw was gone by then, a
        scale-up for it only costs (the capacity the headroom holds is what served it).
        """
        times = [r.time for r in self.rises]
        found: float | None = None
        for entry in self.rises:
            if entry.rate < rate * (1.0 - LOAD_MATCH) or entry.time + cold_start > now:
                continue
            index = bisect.bisect_left(times, entry.time + cold_start - 1e-9)
            if index < len(self.rises):
                later = self.rises[index].rate
                found = later if found is None else max(found, later)
        return found


def _effective_rate(
    samples: tuple[LoadSample, ...], now: float, cold_start: float, slack: float
) -> float:
    """Most arrivals per second (plus slack) of any run of the latest samples within a cold
    start (the latest one always counts)."""
    best = 0.0
    requests = seconds = 0.0
    for sample in reversed(samples):
        if seconds > 0 and now - (sample.time - sample.seconds) > cold_start:
            break
        requests += sample.requests
        seconds += sample.seconds
        best = max(best, requests / (seconds + slack))
    return best


def headroom_capacity(held: HeldRise | None, arrivals: float, request_cost: float) -> float:
    """Busy replicas a remembered rise asks to be ready for: today's arrivals plus the rise, at
    most the peak seen, at full use (the rates already allow for queueing slack). Zero when no
    rise exceeded one replica's worth."""
    if held is None or held.rise * request_cost <= 1.0 + 1e-9:
        return 0.0
    return min(arrivals + held.rise, max(held.peak, arrivals)) * request_cost


def headroom_replicas(
    held: HeldRise | None, arrivals: float, request_cost: float, steady: int
) -> int:
    """Replicas beyond `steady` (the sizing for today's arrivals) that a remembered rise asks
    for (`headroom_capacity`, rounded up). Zero when no rise exceeded one replica's worth."""
    carried = headroom_capacity(held, arrivals, request_cost)
    if carried <= 0.0:
        return 0
    return max(0, math.ceil(carried - 1e-9) - steady)
