"""When to try a service's reconcile again: bounded exponential backoff, kept in memory.

A reconcile that could not make the cluster right — the API server refused a child (4xx),
failed (5xx) or could not be reached, or a child's name is taken — is tried again by the
service's repair loop (repair.py), after 5 s, then 10, 20, ... up to the resync interval, and
never more often: a service that always fails costs one attempt per interval, not a storm.
A successful reconcile forgets the failures and leaves the fingerprint of what it saw, which
lets the next resync stop early when nothing changed (drift.py). Nothing here is written anywhere: kopf's own
retries would patch the InferenceService on every attempt.

Pure apart from the wake-up callbacks a repair loop registers, so that a failure recorded by
an event's reconcile (in a worker thread) makes the loop recompute when to run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not at run time: the metrics parser's process imports `backoff` only
    from tritonop.status import ServiceKey

#: The first retry's delay; each further failure doubles it, up to the resync interval.
FIRST_RETRY_SECONDS = 5.0


def backoff(attempts: int, ceiling: float) -> float:
    """Seconds to wait after the `attempts`-th failure in a row (attempts >= 1)."""
    return float(min(ceiling, FIRST_RETRY_SECONDS * 2 ** min(attempts - 1, 30)))


@dataclass(frozen=True)
class Failure:
    """Failures in a row of one service, and when to try again (monotonic seconds)."""

    attempts: int
    due: float


class Retries:
    """How each service's last reconcile ended: a failure streak, or a success with the
    fingerprint of what it left (drift.py: the resync compares it); thread-safe (reconciles
    run in worker threads)."""

    def __init__(self) -> None:
        self._failures: dict[ServiceKey, Failure] = {}
        self._fingerprints: dict[ServiceKey, str] = {}
        self._wakers: dict[ServiceKey, Callable[[], None]] = {}
        self._guard = threading.Lock()

    def failed(self, key: ServiceKey, now: float, ceiling: float) -> Failure:
        """Record one more failure; returns when the next attempt is due."""
        with self._guard:
            attempts = self._failures[key].attempts + 1 if key in self._failures else 1
            failure = Failure(attempts, now + backoff(attempts, ceiling))
            self._failures[key] = failure
            self._fingerprints.pop(key, None)
            waker = self._wakers.get(key)
        if waker is not None:
            waker()
        return failure

    def succeeded(self, key: ServiceKey, fingerprint: str | None = None) -> None:
        """Record a success; `fingerprint` of what it read and wrote, None when it cannot
        vouch for the whole state (a write whose result it did not see, an invalid spec)."""
        with self._guard:
            self._failures.pop(key, None)
            if fingerprint is None:
                self._fingerprints.pop(key, None)
            else:
                self._fingerprints[key] = fingerprint

    def fingerprint(self, key: ServiceKey) -> str | None:
        """What the service's last healthy reconcile left, if it could say."""
        with self._guard:
            return self._fingerprints.get(key)

    def pending(self, key: ServiceKey) -> Failure | None:
        """The service's failure streak, None when its last reconcile succeeded."""
        with self._guard:
            return self._failures.get(key)

    def watch(self, key: ServiceKey, waker: Callable[[], None]) -> None:
        """Call `waker` whenever a failure of `key` is recorded (the repair loop's wake-up)."""
        with self._guard:
            self._wakers[key] = waker

    def forget(self, key: ServiceKey) -> None:
        with self._guard:
            self._failures.pop(key, None)
            self._fingerprints.pop(key, None)
            self._wakers.pop(key, None)
