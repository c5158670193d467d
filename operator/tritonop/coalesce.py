"""Work per key, run once per burst of requests: a key asked for again while it waits is not
queued twice (what controller-runtime's work queue does for a reconcile key).

A new service's Deployment and pod change several times within seconds (created, replicas
counted, pod scheduled, pod ready); mirroring each change into the service's status would be
one status write, and one watch event of the service for kopf to process, per change. Waiting
`delay` seconds after the first change and then mirroring the state as it is *then* folds a
burst into one write, at the cost of the status trailing the Deployment by that much.

On the operator's stop the work still waiting is dropped, not run (see `close`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable

log = logging.getLogger(__name__)


class Coalescer:
    """Runs `work()` for a key `delay` seconds after it is first requested; further requests
    for the key until then are folded into that run. The work is blocking (it writes through
    the API client): it runs in a worker thread, never on the event loop."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._pending: dict[Hashable, Callable[[], None]] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False

    def request(self, key: Hashable, work: Callable[[], None]) -> None:
        """Run `work` for `key` soon (the latest `work` given for the key wins). Call from the
        event loop. Ignored once the coalescer is closed."""
        if self._closed:
            return
        first = key not in self._pending
        self._pending[key] = work
        if first:
            self._timers[key] = asyncio.get_running_loop().call_later(self.delay, self._start, key)

    def _start(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        work = self._pending.pop(key, None)
        if work is not None:
            task = asyncio.get_running_loop().create_task(self._run(key, work))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, key: Hashable, work: Callable[[], None]) -> None:
        try:
            await asyncio.to_thread(work)
        except Exception:  # one key's failure must not stop the others; the next event retries
            log.exception("deferred work for %s failed", key)

    @property
    def waiting(self) -> int:
        """Keys whose work has not started yet."""
        return len(self._pending)

    async def drain(self) -> None:
        """Wait for the work that has started."""
        while self._running:
            await asyncio.gather(*list(self._running))

    async def close(self, timeout: float) -> int:
        """Stop for the operator's shutdown: drop the work that has not started, refuse new
        requests, and wait up to `timeout` seconds for the work already running (a thread in
        the middle of an API call cannot be cancelled; its write is left to finish rather than
        be cut off). Returns how many keys' work was dropped.

        Dropped, not run: the work mirrors cluster state into status, and the next operator's
        start reconciles every service from the cluster as it is then, so a dropped refresh is
        late, never lost. Running it instead could mean one status write per service on the
        way out (a burst of changes all waiting at once), through the rate-limited client,
        racing the pod's termination grace period and the next leader's own writes.
        """
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        dropped = len(self._pending)
        self._timers.clear()
        self._pending.clear()
        if self._running:
            _, still = await asyncio.wait(list(self._running), timeout=timeout)
            if still:
                log.warning("%d status refreshes still running at shutdown", len(still))
        if dropped:
            log.info("dropped %d pending status refreshes at shutdown", dropped)
        return dropped
