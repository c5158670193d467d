"""The data-plane sampler's question about a step's backlog (e2e/dataplane.py), which the step
scenario waits on before it checks the SLO."""

from __future__ import annotations

from typing import cast

from e2e.dataplane import ClusterView, QueueSample, Timeline
from e2e.tritonsim.podrunner import PodRunner


def timeline(*samples: tuple[float, dict[str, int], int]) -> Timeline:
    """A Timeline holding these queue samples, never started (nothing is read)."""
    sampled = Timeline(cast(PodRunner, None), cast(ClusterView, None), "ns", "svc")
    sampled.queue.extend(QueueSample(t, pending, ready) for t, pending, ready in samples)
    return sampled


def test_drained_needs_every_pod_below_the_bound_for_the_whole_stretch() -> None:
    # The first pod holds the backlog while the new ones idle: the average is low, not drained.
    samples = timeline(
        (0.0, {"a": 40, "b": 0, "c": 0}, 3),
        (1.0, {"a": 12, "b": 0, "c": 0}, 3),
        (2.0, {"a": 3, "b": 1, "c": 0}, 3),
        (3.0, {"a": 5, "b": 0, "c": 0}, 3),
        (4.0, {"a": 2, "b": 0, "c": 1}, 3),
        (5.5, {"a": 0, "b": 0, "c": 0}, 3),
        (6.0, {"a": 1, "b": 1, "c": 0}, 3),
    )
    assert samples.drained(4, after=0.0, lasting=2) == 4.0
    assert samples.drained(4, after=0.0, lasting=3) is None
    assert samples.drained(5, after=0.0, lasting=3) == 2.0


def test_drained_ignores_samples_before_the_step_and_without_ready_servers() -> None:
    samples = timeline(
        (0.0, {"a": 0}, 1),
        (1.0, {"a": 0, "b": 0}, 0),
        (2.0, {"a": 0, "b": 0}, 2),
        (5.0, {"a": 0, "b": 0}, 2),
    )
    assert samples.drained(4, after=0.5, lasting=2) == 2.0
    assert samples.drained(4, after=4.0, lasting=2) is None
    assert timeline().drained(4, after=0.0, lasting=0) is None
