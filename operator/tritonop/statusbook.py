"""The status each InferenceService last had, and the one door through which status is written.

Several writers change parts of one status: the reconcile (placement, URLs, children's state),
the Deployment and pod watch (replicas, readiness, the scheduler's reason) and the autoscaling
loop (desired replicas, metrics, scaling conditions). Each merges its part into the status *we*
last wrote, not into a watch event that may predate another writer's change, so one writer
never undoes another's fields; a per-service lock orders them. A merge that changes nothing is
not sent: an idle operator writes nothing.

The book only remembers; it is rebuilt from the live objects after a restart (a service's
first update starts from the status the caller saw).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tritonop.autoscale.types import ConditionFlag
from tritonop.runtime import Clock
from tritonop.status import ServiceKey, StatusFields, merge_status


class StatusWriter(Protocol):
    """Where merged statuses go; `k8s.Kube` writes them to the status subresource."""

    def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Write the whole status; False when the service no longer exists."""
        ...


@dataclass(frozen=True)
class StatusChange:
    """One writer's part of a status."""

    fields: StatusFields
    """The fields this writer owns (None removes one)."""
    flags: Iterable[ConditionFlag]
    """The conditions this writer owns; the others are kept."""
    generation: int
    """The metadata.generation the part was computed for (each condition's observedGeneration)."""
    riders: StatusFields = field(default_factory=StatusFields)
    """Fields that go with a write the other fields or flags call for, and never cause one
    (the reconcile's digest: bookkeeping worth carrying, not worth a write of its own)."""


Compute = Callable[[Mapping[str, Any]], StatusChange | None]
"""A writer's part, computed from the current status; None changes nothing."""


class StatusBook:
    """Statuses by (namespace, name), merged under a per-service lock and written when changed.

    Thread-safe: kopf runs synchronous handlers in worker threads and the autoscaling loop
    writes from another.
    """

    def __init__(self, writer: StatusWriter, clock: Clock) -> None:
        self._writer = writer
        self._clock = clock
        self._status: dict[ServiceKey, dict[str, Any]] = {}
        self._locks: dict[ServiceKey, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, key: ServiceKey) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def update(self, key: ServiceKey, seen: Mapping[str, Any] | None, compute: Compute) -> bool:
        """Merge `compute(current status)` into the status and write it; True when written.

        `compute` runs under the service's lock and reads the cluster as it is *then*: an event
        that arrives while another writer holds the lock is seen by the next one, never lost.
        `seen` is the status on the object the caller holds, used until the book knows better.
        """
        lock = self._lock(key)
        with lock:
            current = self._status.get(key)
            if current is None:
                current = dict(seen or {})
            change = compute(current)
            if change is None:
                return False
            merged = self._merged(current, change)
            changed = merged != current
            if changed and change.riders:
                merged = self._merged(merged, StatusChange(change.riders, (), change.generation))
            written = changed and self._writer.apply_status(key[0], key[1], merged)
            with self._guard:
                if (changed and not written) or self._locks.get(key) is not lock:
                    # The service is gone (the write found nothing) or was forgotten while
                    # this update ran: remember nothing of it.
                    self._status.pop(key, None)
                    self._locks.pop(key, None)
                else:
                    self._status[key] = merged
            return written

    def get(self, key: ServiceKey, seen: Mapping[str, Any] | None) -> dict[str, Any]:
        """The status as last written (or `seen`, before the first write), after an update
        in progress; reading creates nothing, so a read of a deleted service leaves no trace."""
        with self._guard:
            lock = self._locks.get(key)
        if lock is None:
            return dict(seen or {})
        with lock:
            return dict(self._status.get(key) or seen or {})

    def differs(self, key: ServiceKey, seen: Mapping[str, Any] | None, compute: Compute) -> bool:
        """Whether `compute` would change the status as last written, without waiting for a
        writer in progress: the autoscaling loop asks on the event loop, every interval, and
        skips the thread hop of a write when the answer is no. The write itself decides again
        under the service's lock."""
        with self._guard:
            current = self._status.get(key)
        if current is None:
            current = dict(seen or {})
        change = compute(current)
        if change is None:
            return False
        return self._merged(current, change) != current

    def _merged(self, current: Mapping[str, Any], change: StatusChange) -> dict[str, Any]:
        return merge_status(
            current,
            change.fields,
            change.flags,
            generation=change.generation,
            now=self._clock.wall(),
        )

    def __len__(self) -> int:
        """How many services the book remembers (the operator's /metrics shows it)."""
        with self._guard:
            return len(self._status)

    def forget(self, key: ServiceKey) -> None:
        """Drop a deleted service's status and lock."""
        with self._guard:
            self._status.pop(key, None)
            self._locks.pop(key, None)
