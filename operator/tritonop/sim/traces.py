"""Load traces: built-in rate patterns, Poisson arrivals that follow them, and CSV traces.

Shared by `tritonop simulate` (virtual time) and the e2e load generator (which sends real
requests at `profile.rate(t)`), so both exercise the same shapes. Pure: the CSV parser takes
text, the arrival generator takes a seeded `random.Random`.

Built-in patterns, each one hour long:

* `step`: 5 req/s, 40 req/s from minute 10 to minute 30, then 5 req/s again;
* `ramp`: 2 req/s rising linearly to 60 req/s at minute 30, then back down to 2;
* `diurnal`: a sine between 5 and 50 req/s with a one-hour period, starting at its low;
* `spike`: 10 req/s with 10-second spikes to 100 req/s every 5 minutes (from minute 5 on);
* `bursty`: calm periods at 2 req/s (exponential durations, mean 300 s) alternating with
  bursts at 30 req/s (mean 60 s), starting calm; the durations come from the seeded rng.
* `heavy-burst`: calm at 2 req/s with bursts of exactly 10 s at 50 req/s, the calm periods
  between them exponential (mean 170 s, from the seeded rng), starting calm: a mean of about
  4.7 req/s with bursts at about 10x the mean, each shorter than a typical cold start, so
  only capacity held in advance can serve them.

`pattern(name, rng, scale)` multiplies any pattern's rate by `scale` (the benchmark runs the
patterns at a fifth of their rate for a model twenty times slower).
"""

from __future__ import annotations

import bisect
import csv
import io
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

HOUR = 3600.0
PATTERNS = ("step", "ramp", "diurnal", "spike", "bursty", "heavy-burst")


@dataclass(frozen=True)
class RateProfile:
    """Arrival rate (requests per second) as a function of seconds since the start."""

    name: str
    duration: float
    peak: float
    """An upper bound of `rate` over the whole duration (used for thinning)."""
    function: Callable[[float], float]

    def rate(self, t: float) -> float:
        """Requests per second at `t` seconds; 0 outside [0, duration)."""
        if t < 0 or t >= self.duration:
            return 0.0
        return self.function(t)


def step_rate(t: float) -> float:
    """5 req/s, 40 req/s between minute 10 and minute 30."""
    return 40.0 if 600.0 <= t < 1800.0 else 5.0


def ramp_rate(t: float) -> float:
    """2 to 60 req/s linearly over 30 minutes, then back to 2 over the next 30."""
    half = HOUR / 2
    climbed = t if t <= half else HOUR - t
    return 2.0 + 58.0 * max(0.0, climbed) / half


def diurnal_rate(t: float) -> float:
    """A sine between 5 and 50 req/s with a one-hour period, starting at the low point."""
    return 27.5 - 22.5 * math.cos(2.0 * math.pi * t / HOUR)


def spike_rate(t: float) -> float:
    """10 req/s, with 100 req/s for 10 seconds at every 5-minute mark after the start."""
    return 100.0 if t >= 300.0 and (t % 300.0) < 10.0 else 10.0


@dataclass(frozen=True)
class PiecewiseRate:
    """A rate that is constant between breakpoints: rates[i] holds from starts[i]."""

    starts: tuple[float, ...]
    rates: tuple[float, ...]

    def __call__(self, t: float) -> float:
        return self.rates[bisect.bisect_right(self.starts, t) - 1]


def bursty_rate(rng: random.Random, duration: float = HOUR) -> PiecewiseRate:
    """Calm (2 req/s, mean 300 s) and burst (30 req/s, mean 60 s) periods from `rng`."""
    starts: list[float] = []
    rates: list[float] = []
    t, calm = 0.0, True
    while t < duration:
        starts.append(t)
        rates.append(2.0 if calm else 30.0)
        t += rng.expovariate(1.0 / (300.0 if calm else 60.0))
        calm = not calm
    return PiecewiseRate(tuple(starts), tuple(rates))


def heavy_burst_rate(rng: random.Random, duration: float = HOUR) -> PiecewiseRate:
    """Calm 2 req/s (exponential, mean 170 s) broken by 10 s bursts at 50 req/s, from `rng`."""
    starts: list[float] = []
    rates: list[float] = []
    t = 0.0
    while t < duration:
        starts.append(t)
        rates.append(2.0)
        t += rng.expovariate(1.0 / 170.0)
        starts.append(t)
        rates.append(50.0)
        t += 10.0
    return PiecewiseRate(tuple(starts), tuple(rates))


@dataclass(frozen=True)
class ScaledRate:
    """Another rate function multiplied by a constant."""

    function: Callable[[float], float]
    factor: float

    def __call__(self, t: float) -> float:
        return self.function(t) * self.factor


def pattern(name: str, rng: random.Random, scale: float = 1.0) -> RateProfile:
    """The built-in pattern `name` (one of PATTERNS) at `scale` times its rate.

    `rng` shapes only `bursty` and `heavy-burst`.
    """
    if scale <= 0:
        raise ValueError(f"the rate scale must be > 0, got {scale}")
    shapes: dict[str, tuple[float, Callable[[], Callable[[float], float]]]] = {
        "step": (40.0, lambda: step_rate),
        "ramp": (60.0, lambda: ramp_rate),
        "diurnal": (50.0, lambda: diurnal_rate),
        "spike": (100.0, lambda: spike_rate),
        "bursty": (30.0, lambda: bursty_rate(rng)),
        "heavy-burst": (50.0, lambda: heavy_burst_rate(rng)),
    }
    if name not in shapes:
        raise ValueError(f"unknown pattern {name!r}; choose one of {', '.join(PATTERNS)}")
    peak, make = shapes[name]
    function = make()
    if scale != 1.0:
        function = ScaledRate(function, scale)
    return RateProfile(name, HOUR, peak * scale, function)


def first_rise(profile: RateProfile, resolution: float = 0.05) -> float | None:
    """When the profile's rate first rises above its rate at 0 (to `resolution` seconds),
    or None when it never does: the first moment a policy that knows the present load
    exactly, but not the future, can know that more replicas are needed."""
    if resolution <= 0:
        raise ValueError(f"the resolution must be > 0 s, got {resolution}")
    start = profile.rate(0.0)
    for index in range(1, math.ceil(profile.duration / resolution)):
        t = index * resolution
        if profile.rate(t) > start * (1 + 1e-9) + 1e-12:
            return t
    return None


def base_seconds(profile: RateProfile, resolution: float = 0.05) -> float:
    """Seconds (to `resolution`) the profile's rate is at its rate at 0: the calm between
    rises, through which a policy that cannot see a rise coming holds what the rises need."""
    if resolution <= 0:
        raise ValueError(f"the resolution must be > 0 s, got {resolution}")
    start = profile.rate(0.0)
    steps = math.ceil(profile.duration / resolution)
    calm = sum(
        1 for index in range(steps) if profile.rate(index * resolution) <= start * (1 + 1e-9)
    )
    return calm * resolution


def poisson_arrivals(profile: RateProfile, rng: random.Random) -> list[float]:
    """Arrival times of a non-homogeneous Poisson process with the profile's rate (thinning).

    Candidates come at the peak rate; each is kept with probability rate(t) / peak, which
    yields exactly the profile's rate wherever rate <= peak.
    """
    arrivals: list[float] = []
    peak = profile.peak
    t = 0.0
    expovariate, uniform, rate = rng.expovariate, rng.random, profile.rate
    while True:
        t += expovariate(peak)
        if t >= profile.duration:
            return arrivals
        if uniform() * peak < rate(t):
            arrivals.append(t)


class TraceError(ValueError):
    """A trace file that cannot be read as arrival times."""


def _parse_time(text: str) -> float:
    """Seconds as a number, or a timestamp (seven fractional digits allowed) as epoch seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    stamp = text.strip()
    fraction = ""
    # datetime handles at most 6 fractional digits before Python 3.11; keep the rest ourselves
    if "." in stamp:
        head, _, tail = stamp.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        fraction, zone = tail[:digits], tail[digits:]
        stamp = head + zone
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp() + (float("0." + fraction) if fraction else 0.0)


def parse_trace_csv(text: str) -> list[float]:
    """Arrival times in seconds from the first request, from a CSV with a header row.

    The first column is the arrival time: seconds (any origin) or timestamps such as
    `2023-11-16 18:17:03.9799600`; other columns are ignored. Rows are sorted by time and
    shifted so the earliest arrival is at 0. Raises TraceError naming the bad line.
    """
    reader = csv.reader(io.StringIO(text))
    try:
        next(reader)
    except StopIteration:
        raise TraceError(
            "the trace is empty (expected a header row and one row per request)"
        ) from None
    times: list[float] = []
    for line_number, row in enumerate(reader, start=2):
        if not row or not row[0].strip():
            continue
        try:
            times.append(_parse_time(row[0]))
        except ValueError:
            raise TraceError(
                f"line {line_number}: {row[0]!r} is neither seconds nor a timestamp such as "
                "2023-11-16 18:17:03.9799600"
            ) from None
    if not times:
        raise TraceError("the trace has a header but no requests")
    times.sort()
    origin = times[0]
    return [t - origin for t in times]


def rate_of(arrivals: Sequence[float], bucket: float) -> list[float]:
    """Requests per second in consecutive buckets of `bucket` seconds (for plots and tables)."""
    if not arrivals:
        return []
    counts = [0] * (int(arrivals[-1] // bucket) + 1)
    for t in arrivals:
        counts[int(t // bucket)] += 1
    return [count / bucket for count in counts]
