"""Work per key, run once per burst of requests: a key asked for again while it waits is not
queued twice (what controller-runtime's work queue does for a reconcile key).

A new service's Deployment and pod change several times within seconds (created, replicas
counted, pod scheduled, pod ready); mirroring each change into the service's status would be
one status write, and one watch event of the service for kopf to process, per change. Waiting
`delay` seconds after the first change and then mirroring the state as it is *then* folds a
burst into one write, at the cost of the status trailing the Deployment by that much.
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
        self._running: set[asyncio.Task[None]] = set()

    def request(self, key: Hashable, work: Callable[[], None]) -> None:
        """Run `work` for `key` soon (the latest `work` given for the key wins). Call from the
        event loop."""
        first = key not in self._pending
        self._pending[key] = work
        if first:
            asyncio.get_running_loop().call_later(self.delay, self._start, key)

    def _start(self, key: Hashable) -> None:
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
        """Wait for the work that has started (tests; the operator's shutdown)."""
        while self._running:
            await asyncio.gather(*list(self._running))
