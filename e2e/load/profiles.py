"""Load profiles: how many requests per second to offer, as a function of time.

Profile syntax (times in seconds from the start of the run, rates in requests per second):

    constant:R                 R throughout                      constant:20
    step:R0:R1@T1[:R2@T2...]   R0 from 0, R1 from T1, R2 from T2  step:5:30@60  step:5:40@30:5@90
    ramp:R0:R1@T               R0 at 0 rising linearly to R1 at T, then R1      ramp:2:60@120
    pattern:NAME               a built-in one-hour pattern of tritonop.sim.traces
                               (step, ramp, diurnal, spike, bursty)           pattern:spike
    trace:PATH                 replay the arrival times of a CSV trace as they are
                               (first column: seconds or timestamps, header row;
                               tritonop.sim.traces' format)                   trace:calls.csv

Rate profiles become Poisson arrivals (open loop: arrivals never wait for answers) by
thinning, generated lazily so a profile may be longer than any run; the run's duration and
request limit end it. The built-in patterns and the CSV parser are those of `tritonop simulate`
(`tritonop.sim.traces`), so a load shape rehearsed in the simulator can be replayed against
the e2e data plane unchanged.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


class ProfileError(ValueError):
    """A profile string that does not follow the syntax above."""


@dataclass(frozen=True)
class Profile:
    """Offered load: a rate function (Poisson arrivals) or a fixed list of arrival times."""

    description: str
    rate: Callable[[float], float] | None = None
    """Requests per second at t seconds (None for a replayed trace)."""
    peak: float = 0.0
    """Upper bound of `rate` (the thinning envelope)."""
    duration: float = math.inf
    """Seconds after which the profile offers nothing more."""
    replay: tuple[float, ...] = ()
    """Arrival offsets of a trace, replayed as they are."""

    def arrivals(self, rng: random.Random) -> Iterator[float]:
        """Arrival offsets in seconds, increasing; endless for unbounded rate profiles."""
        if self.rate is None:
            yield from self.replay
            return
        if self.peak <= 0:
            return
        t = 0.0
        while True:
            t += rng.expovariate(self.peak)
            if t >= self.duration:
                return
            if rng.random() * self.peak < self.rate(t):
                yield t


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ProfileError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ProfileError(f"{what} {text!r} must be a finite number >= 0")
    return value


def constant(rate: float) -> Profile:
    """`rate` requests per second for ever."""
    return Profile(f"constant {rate:g}/s", rate=lambda _t: rate, peak=rate)


def step(first: float, changes: Sequence[tuple[float, float]]) -> Profile:
    """`first` req/s, then each (rate, at) of `changes` from `at` seconds on."""
    points = sorted(changes, key=lambda change: change[1])

    def rate(t: float) -> float:
        current = first
        for value, at in points:
            if t < at:
                break
            current = value
        return current

    text = " then ".join([f"{first:g}/s"] + [f"{value:g}/s at {at:g}s" for value, at in points])
    return Profile(f"step {text}", rate=rate, peak=max([first, *(v for v, _ in points)]))


def ramp(start: float, end: float, over: float) -> Profile:
    """Linear from `start` to `end` req/s over `over` seconds, then `end`."""

    def rate(t: float) -> float:
        if over <= 0 or t >= over:
            return end
        return start + (end - start) * t / over

    return Profile(f"ramp {start:g}/s to {end:g}/s over {over:g}s", rate=rate, peak=max(start, end))


def _at(part: str) -> tuple[float, float]:
    value, separator, at = part.partition("@")
    if not separator:
        raise ProfileError(f"{part!r} needs the form RATE@SECONDS")
    return _number(value, "rate"), _number(at, "time")


def parse_profile(spec: str, rng: random.Random | None = None) -> Profile:
    """A profile from its string form (see the module docstring)."""
    kind, _, rest = spec.strip().partition(":")
    parts = rest.split(":") if rest else []
    if kind == "constant" and len(parts) == 1:
        return constant(_number(parts[0], "rate"))
    if kind == "step" and len(parts) >= 2:
        return step(_number(parts[0], "rate"), [_at(part) for part in parts[1:]])
    if kind == "ramp" and len(parts) == 2:
        end, over = _at(parts[1])
        return ramp(_number(parts[0], "rate"), end, over)
    if kind == "pattern" and len(parts) == 1:
        return _simulator_pattern(parts[0], rng or random.Random())
    if kind == "trace" and rest:
        return _trace(Path(rest))
    raise ProfileError(
        f"unknown profile {spec!r}; use constant:R, step:R0:R1@T1[:R2@T2...], "
        "ramp:R0:R1@T, pattern:NAME or trace:PATH"
    )


def _simulator_pattern(name: str, rng: random.Random) -> Profile:
    from tritonop.sim import traces

    try:
        profile = traces.pattern(name, rng)
    except ValueError as error:
        raise ProfileError(str(error)) from None
    return Profile(
        f"pattern {name}", rate=profile.rate, peak=profile.peak, duration=profile.duration
    )


def _trace(path: Path) -> Profile:
    from tritonop.sim import traces

    try:
        arrivals = traces.parse_trace_csv(path.read_text())
    except OSError as error:
        raise ProfileError(f"cannot read trace {path}: {error}") from None
    except ValueError as error:
        raise ProfileError(f"trace {path}: {error}") from None
    duration = arrivals[-1] if arrivals else 0.0
    return Profile(
        f"trace {path.name} ({len(arrivals)} requests over {duration:.0f}s)",
        replay=tuple(arrivals),
        duration=duration,
    )
