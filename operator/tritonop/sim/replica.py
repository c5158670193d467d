"""A discrete-event model of one Triton server replica serving one model.

Both the simulator (`tritonop simulate`, virtual time) and the e2e Triton emulator (real time,
one model per emulated pod) drive this class, so its semantics follow Triton's scheduler and
its counters follow Triton's metric definitions:

* `instances` model instances (Triton's instance_group count); each executes one batch at a
  time, and requests wait in one FIFO queue in front of them.
* Without dynamic batching (`max_batch_size == 1`) a free instance takes the oldest request.
  With it, a free instance takes up to `max_batch_size` queued requests at once; when fewer are
  queued it waits up to `max_queue_delay_ms` after the oldest request arrived for a fuller
  batch (Triton's max_queue_delay_microseconds), then runs what it has.
* A batch of n requests runs for `service_time * (1 + batch_overhead * (n - 1))`, where the
  service time is fixed (`service_time_cv == 0`) or lognormal with the configured mean and
  coefficient of variation, drawn from the caller's seeded `random.Random`.
* `pending_count` is what `nv_inference_pending_request_count` reports: requests queued and
  not yet executing. The cumulative counters are those of `nv_inference_request_success`,
  `nv_inference_count`, `nv_inference_exec_count`, `nv_inference_queue_duration_us`,
  `nv_inference_compute_infer_duration_us` and `nv_inference_request_duration_us`; like
  Triton's per-request statistics they are updated when a request completes, so
  `queue_duration_us / success_count` is always an average over finished requests.

Times are float seconds on any monotonic clock; the model never reads a clock itself.
"""

from __future__ import annotations

import copy
import heapq
import math
import random
from collections import deque
from dataclasses import dataclass

MICROSECONDS = 1_000_000.0


@dataclass(frozen=True)
class ReplicaConfig:
    """How one replica serves its model."""

    instances: int = 1
    """Model instances executing batches in parallel (Triton's instance_group count)."""
    service_time_ms: float = 50.0
    """Mean execution time of a batch of one request, in milliseconds."""
    service_time_cv: float = 0.0
    """Coefficient of variation of the service time: 0 is deterministic, else lognormal."""
    max_batch_size: int = 1
    """Largest batch the dynamic batcher forms; 1 disables dynamic batching."""
    max_queue_delay_ms: float = 0.0
    """How long the batcher waits after the oldest queued request for a fuller batch."""
    batch_overhead: float = 0.1
    """Extra execution time per additional request in a batch, as a fraction of one request's."""

    def __post_init__(self) -> None:
        if self.instances < 1:
            raise ValueError(f"instances must be >= 1, got {self.instances}")
        if self.service_time_ms <= 0:
            raise ValueError(f"service_time_ms must be > 0, got {self.service_time_ms}")
        if self.service_time_cv < 0:
            raise ValueError(f"service_time_cv must be >= 0, got {self.service_time_cv}")
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_queue_delay_ms < 0:
            raise ValueError(f"max_queue_delay_ms must be >= 0, got {self.max_queue_delay_ms}")
        if self.batch_overhead < 0:
            raise ValueError(f"batch_overhead must be >= 0, got {self.batch_overhead}")

    @property
    def capacity_rps(self) -> float:
        """Requests per second the replica completes when saturated without batching."""
        return self.instances * 1000.0 / self.service_time_ms

    @property
    def peak_capacity_rps(self) -> float:
        """Requests per second the replica completes at most: every batch full."""
        batch = self.max_batch_size
        batch_ms = self.service_time_ms * (1.0 + self.batch_overhead * (batch - 1))
        return self.instances * batch * 1000.0 / batch_ms


@dataclass(frozen=True, slots=True)
class Completion:
    """One finished request: when it arrived, started executing and ended (seconds)."""

    request_id: object
    arrival: float
    start: float
    end: float
    batch_size: int

    @property
    def latency(self) -> float:
        """End-to-end seconds inside the server (queue + execution)."""
        return self.end - self.arrival


class ReplicaModel:
    """One Triton replica: a FIFO queue in front of `instances` executors.

    Drive it with `submit` when a request arrives and `advance` to collect what finished;
    `next_event_time` says when something will happen next without outside input, so a
    real-time caller can sleep until then. `submit` first processes every event up to its
    `now`, keeping any completions for the next `advance` (and `next_event_time` reports them
    as due at once), so callers need not interleave the two calls in a particular order.
    """

    def __init__(self, config: ReplicaConfig, rng: random.Random) -> None:
        self.config = config
        self._rng = rng
        self._queue: deque[tuple[float, object]] = deque()
        # (end time, tie-breaker, start time, batch of (arrival, request_id))
        self._executing: list[tuple[float, int, float, list[tuple[float, object]]]] = []
        self._sequence = 0
        self._executing_requests = 0
        self._batch_deadline: float | None = None
        self._done: list[Completion] = []
        self._clock = -math.inf
        self._service_time_s = config.service_time_ms / 1000.0
        self._queue_delay_s = config.max_queue_delay_ms / 1000.0
        if config.service_time_cv > 0:
            sigma_squared = math.log1p(config.service_time_cv**2)
            self._lognormal_sigma = math.sqrt(sigma_squared)
            self._lognormal_mu = math.log(self._service_time_s) - sigma_squared / 2.0
        self._concurrency_seconds = 0.0
        self._concurrency_since = -math.inf
        self.success_count = 0
        self.inference_count = 0
        self.exec_count = 0
        self.queue_duration_us = 0.0
        self.compute_infer_duration_us = 0.0
        self.request_duration_us = 0.0

    def fork(self, rng: random.Random) -> ReplicaModel:
        """An independent copy in the same state that draws service times from `rng`.

        For what-if runs (the oracle tries replica counts on copies of the service): the
        copy's queue and executing batches are its own; the batches themselves are never
        mutated once started, so they are shared.
        """
        clone = copy.copy(self)
        clone._rng = rng
        clone._queue = deque(self._queue)
        clone._executing = list(self._executing)
        clone._done = list(self._done)
        return clone

    # ---------------------------------------------------------------- observation

    @property
    def pending_count(self) -> int:
        """Requests waiting in the queue, not yet executing (nv_inference_pending_request_count)."""
        return len(self._queue)

    @property
    def executing_count(self) -> int:
        """Requests currently executing on some instance."""
        return self._executing_requests

    @property
    def in_flight(self) -> int:
        """Requests accepted and not finished: queued plus executing."""
        return len(self._queue) + self._executing_requests

    @property
    def busy_instances(self) -> int:
        """Instances executing a batch right now."""
        return len(self._executing)

    def concurrency_seconds(self, now: float) -> float:
        """Integral of `in_flight` over time up to `now` (call after advancing to `now`).

        Its change over an interval divided by the interval's length is the average number of
        requests in flight: the concurrency Knative's queue-proxy reports.
        """
        if not self.in_flight:
            return self._concurrency_seconds
        return self._concurrency_seconds + self.in_flight * (now - self._concurrency_since)

    def next_event_time(self) -> float | None:
        """When the model next changes on its own (a batch ends or a batch delay expires)."""
        candidates: list[float] = []
        if self._done:
            candidates.append(self._done[0].end)
        if self._executing:
            candidates.append(self._executing[0][0])
        if self._batch_deadline is not None:
            candidates.append(self._batch_deadline)
        return min(candidates) if candidates else None

    # ---------------------------------------------------------------- driving

    def submit(self, now: float, request_id: object) -> None:
        """A request arrives at `now`; it starts at once if an instance is free."""
        self._process_until(now)
        self._account_concurrency(now)
        self._queue.append((now, request_id))
        self._dispatch(now)

    def advance(self, now: float) -> list[Completion]:
        """Process every event up to and including `now`; return the requests that finished."""
        self._process_until(now)
        done = self._done
        self._done = []
        return done

    # ---------------------------------------------------------------- internals

    def _process_until(self, now: float) -> None:
        if now < self._clock:
            raise ValueError(f"time went backwards: {now} < {self._clock}")
        executing = self._executing
        while True:
            next_end = executing[0][0] if executing else math.inf
            deadline = self._batch_deadline if self._batch_deadline is not None else math.inf
            event_time = min(next_end, deadline)
            if event_time > now:
                break
            if next_end <= deadline:
                self._finish(heapq.heappop(executing))
            else:
                self._batch_deadline = None
            self._dispatch(event_time)
        self._clock = now

    def _finish(self, batch: tuple[float, int, float, list[tuple[float, object]]]) -> None:
        end, _, start, requests = batch
        size = len(requests)
        self._account_concurrency(end)
        self._executing_requests -= size
        self.exec_count += 1
        self.success_count += size
        self.inference_count += size
        compute_us = (end - start) * MICROSECONDS
        for arrival, request_id in requests:
            self.queue_duration_us += (start - arrival) * MICROSECONDS
            self.compute_infer_duration_us += compute_us
            self.request_duration_us += (end - arrival) * MICROSECONDS
            self._done.append(Completion(request_id, arrival, start, end, size))

    def _account_concurrency(self, now: float) -> None:
        """Add in_flight x elapsed time before in_flight changes at `now`."""
        if self.in_flight:
            self._concurrency_seconds += self.in_flight * (now - self._concurrency_since)
        self._concurrency_since = now

    def _dispatch(self, now: float) -> None:
        """Hand queued requests to free instances, as Triton's scheduler would at `now`."""
        queue = self._queue
        max_batch = self.config.max_batch_size
        self._batch_deadline = None
        while queue and len(self._executing) < self.config.instances:
            if max_batch == 1:
                batch = [queue.popleft()]
            else:
                if len(queue) < max_batch and self._queue_delay_s > 0:
                    deadline = queue[0][0] + self._queue_delay_s
                    if now < deadline:
                        self._batch_deadline = deadline
                        return
                batch = [queue.popleft() for _ in range(min(max_batch, len(queue)))]
            self._start(now, batch)

    def _start(self, now: float, batch: list[tuple[float, object]]) -> None:
        if self.config.service_time_cv > 0:
            base = self._rng.lognormvariate(self._lognormal_mu, self._lognormal_sigma)
        else:
            base = self._service_time_s
        duration = base * (1.0 + self.config.batch_overhead * (len(batch) - 1))
        self._sequence += 1
        heapq.heappush(self._executing, (now + duration, self._sequence, now, batch))
        self._executing_requests += len(batch)
