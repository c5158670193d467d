"""Load traces: the built-in patterns, Poisson arrivals that follow them, CSV traces."""

from __future__ import annotations

import math
import random

import pytest

from tritonop.sim.traces import (
    HOUR,
    PATTERNS,
    TraceError,
    parse_trace_csv,
    pattern,
    poisson_arrivals,
    rate_of,
)


def test_step_pattern() -> None:
    step = pattern("step", random.Random(0))
    assert [step.rate(t) for t in (0, 599.9, 600, 1799.9, 1800, 3599)] == [5, 5, 40, 40, 5, 5]


def test_ramp_pattern_climbs_and_falls() -> None:
    ramp = pattern("ramp", random.Random(0))
    assert ramp.rate(0) == pytest.approx(2)
    assert ramp.rate(900) == pytest.approx(31)
    assert ramp.rate(1800) == pytest.approx(60)
    assert ramp.rate(2700) == pytest.approx(31)


def test_diurnal_pattern_is_a_sine_between_5_and_50() -> None:
    diurnal = pattern("diurnal", random.Random(0))
    assert diurnal.rate(0) == pytest.approx(5)
    assert diurnal.rate(1800) == pytest.approx(50)
    assert diurnal.rate(900) == pytest.approx(27.5)


def test_spike_pattern_spikes_for_ten_seconds_every_five_minutes() -> None:
    spike = pattern("spike", random.Random(0))
    assert spike.rate(5) == 10  # no spike at the very start
    for start in range(300, 3600, 300):
        assert spike.rate(start) == spike.rate(start + 9.9) == 100
        assert spike.rate(start + 10) == spike.rate(start - 0.1) == 10


def test_bursty_pattern_alternates_calm_and_bursts_from_the_seed() -> None:
    bursty = pattern("bursty", random.Random(3))
    rates = [bursty.rate(t) for t in range(0, 3600, 5)]
    assert set(rates) == {2.0, 30.0}
    assert rates[0] == 2.0
    again = pattern("bursty", random.Random(3))
    assert [again.rate(t) for t in range(0, 3600, 5)] == rates
    other = pattern("bursty", random.Random(4))
    assert [other.rate(t) for t in range(0, 3600, 5)] != rates


def test_heavy_burst_pattern_has_ten_second_bursts_at_ten_times_the_mean() -> None:
    heavy = pattern("heavy-burst", random.Random(5))
    rates = [heavy.rate(t / 10) for t in range(36000)]
    assert set(rates) == {2.0, 50.0} and rates[0] == 2.0
    mean = sum(rates) / len(rates)
    assert 3.5 < mean < 6.0 and 8 < 50.0 / mean < 14  # bursts at ~10x the mean
    # every burst lasts exactly 10 s (shorter than any cold start the benchmark uses)
    bursts, length = [], 0
    for rate in rates:
        if rate == 50.0:
            length += 1
        elif length:
            bursts.append(length)
            length = 0
    assert len(bursts) >= 10 and set(bursts) == {100}
    again = pattern("heavy-burst", random.Random(5))
    assert [again.rate(t / 10) for t in range(36000)] == rates


def test_scaled_pattern_multiplies_rate_and_peak() -> None:
    step = pattern("step", random.Random(0), scale=0.2)
    assert step.rate(0) == pytest.approx(1.0) and step.rate(600) == pytest.approx(8.0)
    assert step.peak == pytest.approx(8.0)
    arrivals = poisson_arrivals(step, random.Random(1))
    assert len(arrivals) == pytest.approx(0.2 * (5 * 2400 + 40 * 1200), rel=0.05)
    with pytest.raises(ValueError, match="scale"):
        pattern("step", random.Random(0), scale=0)


def test_unknown_pattern_names_the_choices() -> None:
    with pytest.raises(ValueError, match="step, ramp"):
        pattern("sawtooth", random.Random(0))


@pytest.mark.parametrize("name", PATTERNS)
def test_poisson_arrivals_follow_the_rate(name: str) -> None:
    rng = random.Random(11)
    profile = pattern(name, rng)
    arrivals = poisson_arrivals(profile, rng)
    assert arrivals == sorted(arrivals)
    assert arrivals[0] >= 0 and arrivals[-1] < HOUR
    expected = sum(profile.rate(t + 0.5) for t in range(int(HOUR)))  # integral of the rate
    assert abs(len(arrivals) - expected) < 5 * math.sqrt(expected)


def test_poisson_arrivals_per_segment_of_the_step() -> None:
    rng = random.Random(5)
    arrivals = poisson_arrivals(pattern("step", rng), rng)
    busy = sum(1 for t in arrivals if 600 <= t < 1800)
    assert abs(busy - 48_000) < 5 * math.sqrt(48_000)
    per_ten_seconds = rate_of(arrivals, 10.0)
    assert per_ten_seconds[100] == pytest.approx(40, abs=10)


def test_csv_with_seconds() -> None:
    text = "time,tokens\n10.5,3\n10.0,7\n12.25,1\n\n"
    assert parse_trace_csv(text) == [0.0, 0.5, 2.25]


def test_csv_with_seven_fractional_digit_timestamps() -> None:
    text = (
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:50.9951690,396,109\n"
        "2023-11-16 18:16:00.0000001,879,46\n"
    )
    times = parse_trace_csv(text)
    assert times[0] == 0.0
    assert times[1] == pytest.approx(4.314579, abs=1e-6)
    assert times[2] == pytest.approx(13.3194101, abs=1e-6)


def test_csv_with_iso_timestamps_and_zone() -> None:
    text = "at\n2024-01-01T00:00:00Z\n2024-01-01T00:01:00.5+00:00\n"
    assert parse_trace_csv(text) == [0.0, 60.5]


def test_csv_errors_name_the_line() -> None:
    with pytest.raises(TraceError, match="line 3"):
        parse_trace_csv("t\n1.0\nyesterday\n")
    with pytest.raises(TraceError, match="empty"):
        parse_trace_csv("")
    with pytest.raises(TraceError, match="no requests"):
        parse_trace_csv("t\n")
