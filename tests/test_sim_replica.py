"""The Triton replica model: queueing semantics, counters, batching, and queueing theory."""

from __future__ import annotations

import random

import pytest

from tritonop.sim.replica import Completion, ReplicaConfig, ReplicaModel


def _run_poisson(
    config: ReplicaConfig, rate: float, count: int, seed: int
) -> tuple[ReplicaModel, list[Completion]]:
    """Feed `count` Poisson arrivals at `rate` per second and drain the model."""
    rng = random.Random(seed)
    model = ReplicaModel(config, random.Random(seed + 1))
    done: list[Completion] = []
    now = 0.0
    for request in range(count):
        now += rng.expovariate(rate)
        done += model.advance(now)
        model.submit(now, request)
    while (upcoming := model.next_event_time()) is not None:
        done += model.advance(upcoming)
    return model, done


def test_single_request_runs_for_the_service_time() -> None:
    model = ReplicaModel(ReplicaConfig(service_time_ms=50.0), random.Random(0))
    model.submit(1.0, "a")
    assert model.pending_count == 0 and model.in_flight == 1
    assert model.next_event_time() == pytest.approx(1.05)
    assert model.advance(1.04) == []
    (done,) = model.advance(1.05)
    assert (done.request_id, done.arrival, done.start) == ("a", 1.0, 1.0)
    assert done.end == pytest.approx(1.05)
    assert model.in_flight == 0 and model.next_event_time() is None


def test_pending_counts_only_queued_requests_and_queue_is_fifo() -> None:
    model = ReplicaModel(ReplicaConfig(instances=2, service_time_ms=100.0), random.Random(0))
    for index in range(5):
        model.submit(0.0, index)
    # two execute, three wait: Triton's pending count excludes executing requests
    assert model.pending_count == 3
    assert model.executing_count == 2
    assert model.in_flight == 5
    done: list[Completion] = []
    while (upcoming := model.next_event_time()) is not None:
        done += model.advance(upcoming)
    assert [c.request_id for c in sorted(done, key=lambda c: (c.start, c.request_id))] == [
        0,
        1,
        2,
        3,
        4,
    ]
    starts = sorted(c.start for c in done)
    assert starts == pytest.approx([0.0, 0.0, 0.1, 0.1, 0.2])


def test_counters_follow_triton_definitions() -> None:
    model = ReplicaModel(ReplicaConfig(service_time_ms=100.0), random.Random(0))
    model.submit(0.0, "first")
    model.submit(0.0, "second")  # waits 100 ms behind the first
    model.advance(1.0)
    assert model.success_count == 2
    assert model.inference_count == 2
    assert model.exec_count == 2
    assert model.queue_duration_us == pytest.approx(100_000.0)
    assert model.compute_infer_duration_us == pytest.approx(200_000.0)
    assert model.request_duration_us == pytest.approx(100_000.0 + 200_000.0)


def test_conservation_every_request_completes_once_and_in_order_of_time() -> None:
    config = ReplicaConfig(instances=3, service_time_ms=40.0, service_time_cv=0.8)
    model, done = _run_poisson(config, rate=50.0, count=3_000, seed=3)
    assert sorted(c.request_id for c in done) == list(range(3_000))  # type: ignore[type-var]
    assert model.success_count == 3_000 and model.in_flight == 0
    for completion in done:
        assert completion.arrival <= completion.start < completion.end
    total_queue_us = sum((c.start - c.arrival) * 1e6 for c in done)
    total_request_us = sum((c.end - c.arrival) * 1e6 for c in done)
    assert model.queue_duration_us == pytest.approx(total_queue_us)
    assert model.request_duration_us == pytest.approx(total_request_us)
    assert model.request_duration_us == pytest.approx(
        model.queue_duration_us + model.compute_infer_duration_us
    )


def test_never_more_batches_executing_than_instances() -> None:
    model = ReplicaModel(ReplicaConfig(instances=2, service_time_ms=30.0), random.Random(0))
    rng = random.Random(9)
    now = 0.0
    for request in range(500):
        now += rng.expovariate(80.0)
        model.advance(now)
        model.submit(now, request)
        assert model.busy_instances <= 2
        assert model.executing_count <= 2
        # a request only waits when every instance is busy
        assert model.pending_count == 0 or model.busy_instances == 2


def test_seeded_rng_gives_identical_runs() -> None:
    config = ReplicaConfig(instances=2, service_time_ms=50.0, service_time_cv=0.5)
    first = _run_poisson(config, rate=30.0, count=500, seed=11)[1]
    second = _run_poisson(config, rate=30.0, count=500, seed=11)[1]
    other = _run_poisson(config, rate=30.0, count=500, seed=12)[1]
    assert first == second
    assert first != other


def test_dynamic_batching_takes_up_to_max_batch_size_at_once() -> None:
    config = ReplicaConfig(service_time_ms=100.0, max_batch_size=4, batch_overhead=0.5)
    model = ReplicaModel(config, random.Random(0))
    model.submit(0.0, "head")  # starts alone: nothing else queued, no delay configured
    for index in range(6):
        model.submit(0.01, index)
    assert model.pending_count == 6
    first_wave = model.advance(0.1)
    assert [c.batch_size for c in first_wave] == [1]
    # at 0.1 the instance takes 4 of the 6 queued requests; 4 run for 100 ms * (1 + 0.5*3)
    assert model.pending_count == 2 and model.executing_count == 4
    second_wave = model.advance(0.1 + 0.25)
    assert [c.request_id for c in second_wave] == [0, 1, 2, 3]
    assert all(c.batch_size == 4 for c in second_wave)
    assert model.exec_count == 2 and model.success_count == 5
    assert model.compute_infer_duration_us == pytest.approx(100_000.0 + 4 * 250_000.0)


def test_batcher_waits_for_the_queue_delay_before_running_a_partial_batch() -> None:
    config = ReplicaConfig(service_time_ms=20.0, max_batch_size=4, max_queue_delay_ms=5.0)
    model = ReplicaModel(config, random.Random(0))
    model.submit(0.0, "a")
    assert model.pending_count == 1  # held for a fuller batch
    assert model.next_event_time() == pytest.approx(0.005)
    model.submit(0.002, "b")
    done = model.advance(0.005)
    assert done == []
    assert model.pending_count == 0 and model.executing_count == 2
    (first, second) = model.advance(1.0)
    assert first.start == pytest.approx(0.005) and first.batch_size == 2
    assert second.request_id == "b"


def test_full_batch_starts_without_waiting_for_the_delay() -> None:
    config = ReplicaConfig(service_time_ms=20.0, max_batch_size=2, max_queue_delay_ms=50.0)
    model = ReplicaModel(config, random.Random(0))
    model.submit(0.0, "a")
    model.submit(0.001, "b")
    assert model.pending_count == 0 and model.executing_count == 2


def test_submit_processes_earlier_events_and_keeps_their_completions() -> None:
    model = ReplicaModel(ReplicaConfig(service_time_ms=10.0), random.Random(0))
    model.submit(0.0, "a")
    model.submit(1.0, "b")  # "a" finished at 0.01; it must not delay "b"
    assert model.next_event_time() == pytest.approx(0.01)
    done = model.advance(1.0)
    assert [c.request_id for c in done] == ["a"]
    assert model.executing_count == 1 and model.pending_count == 0


def test_time_must_not_go_backwards() -> None:
    model = ReplicaModel(ReplicaConfig(), random.Random(0))
    model.advance(5.0)
    with pytest.raises(ValueError, match="backwards"):
        model.submit(4.0, "late")


def test_md1_mean_wait_matches_pollaczek_khinchine() -> None:
    # M/D/1 at utilisation 0.5: Wq = rho * S / (2 (1 - rho)) = 25 ms
    model, _ = _run_poisson(ReplicaConfig(service_time_ms=50.0), rate=10.0, count=20_000, seed=1)
    mean_wait_ms = model.queue_duration_us / model.success_count / 1000.0
    assert mean_wait_ms == pytest.approx(25.0, rel=0.1)


def test_mg1_mean_wait_matches_pollaczek_khinchine_with_variable_service() -> None:
    # M/G/1: Wq = lambda E[S^2] / (2 (1 - rho)), E[S^2] = S^2 (1 + cv^2); cv 1 at rho 0.5: 50 ms
    config = ReplicaConfig(service_time_ms=50.0, service_time_cv=1.0)
    model, _ = _run_poisson(config, rate=10.0, count=40_000, seed=2)
    mean_wait_ms = model.queue_duration_us / model.success_count / 1000.0
    mean_service_ms = model.compute_infer_duration_us / model.success_count / 1000.0
    assert mean_service_ms == pytest.approx(50.0, rel=0.05)
    assert mean_wait_ms == pytest.approx(50.0, rel=0.15)


def test_invalid_configuration_is_rejected() -> None:
    with pytest.raises(ValueError, match="instances"):
        ReplicaConfig(instances=0)
    with pytest.raises(ValueError, match="service_time_ms"):
        ReplicaConfig(service_time_ms=0)


def test_concurrency_seconds_is_littles_law_area() -> None:
    # the integral of in-flight requests equals the summed time requests spent in the server
    config = ReplicaConfig(instances=2, service_time_ms=40.0, service_time_cv=0.5)
    model, done = _run_poisson(config, rate=30.0, count=2_000, seed=5)
    end = max(c.end for c in done)
    assert model.concurrency_seconds(end) == pytest.approx(sum(c.latency for c in done))


def test_concurrency_seconds_counts_requests_still_in_flight() -> None:
    model = ReplicaModel(ReplicaConfig(service_time_ms=1000.0), random.Random(0))
    model.submit(10.0, "a")
    model.submit(10.5, "b")
    model.advance(10.75)
    # a: 0.75 s so far, b: 0.25 s so far
    assert model.concurrency_seconds(10.75) == pytest.approx(1.0)


def test_capacity_with_and_without_full_batches() -> None:
    config = ReplicaConfig(instances=2, service_time_ms=50.0, max_batch_size=4, batch_overhead=0.1)
    assert config.capacity_rps == pytest.approx(40.0)
    # a full batch of 4 takes 50 ms * 1.3 on each of 2 instances
    assert config.peak_capacity_rps == pytest.approx(2 * 4 / 0.065)
    assert ReplicaConfig().peak_capacity_rps == ReplicaConfig().capacity_rps == 20.0
