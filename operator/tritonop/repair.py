"""The repair loop of one InferenceService: retries with backoff, and the periodic resync.

Events drive the operator, but events can be lost (a watch that re-lists, an operator that was
down) and a reconcile can fail (the API server refused a child, returned 5xx, was unreachable).
So every service also has this loop (a kopf daemon, handlers.py):

- after a failed reconcile it reconciles again when `retries` says the next attempt is due
  (5 s, doubling up to the resync interval: retries.py);
- otherwise it reconciles every `TRITONOP_RESYNC_INTERVAL_SECONDS` (default 300 s), which
  recreates a child deleted while the API server failed, notices a rotated credentials Secret
  (pods roll on its resourceVersion) and any other drift. A resync that finds nothing to change
  writes nothing.

A failure recorded by another reconcile (an event's, in a worker thread) wakes the loop so it
recomputes when to run. Nothing here needs kopf: unit tests drive it with a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tritonop import reconciler
from tritonop.api.validation import SpecError
from tritonop.autoscale.loop import StopFlag
from tritonop.drift import ChildVersions
from tritonop.retries import Retries
from tritonop.runtime import Runtime
from tritonop.status import ServiceKey
from tritonop.statusbook import StatusBook
from tritonop.view import ClusterView

log = logging.getLogger(__name__)


async def _sleep(stopped: StopFlag, wake: asyncio.Event, seconds: float) -> None:
    """Sleep up to `seconds`, until stopped or woken, whichever comes first."""
    waiters = {
        asyncio.ensure_future(stopped.wait(seconds)),
        asyncio.ensure_future(wake.wait()),
    }
    _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in pending:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    wake.clear()


def next_run(last_run: float, resync: float, due: float | None) -> float:
    """When the loop reconciles next: the retry when one is pending and earlier, else the
    resync after the last run (monotonic seconds)."""
    resync_at = last_run + resync
    return resync_at if due is None else min(due, resync_at)


async def run_repair(
    runtime: Runtime,
    book: StatusBook,
    retries: Retries,
    children: ChildVersions,
    key: ServiceKey,
    view: ClusterView,
    stopped: StopFlag,
) -> None:
    """Retry and resync one service until `stopped`."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def wake_up() -> None:
        loop.call_soon_threadsafe(wake.set)

    retries.watch(key, wake_up)
    last_run = runtime.clock.monotonic()
    while not stopped:
        failure = retries.pending(key)
        due = failure.due if failure is not None else None
        at = next_run(last_run, runtime.settings.resync_interval_seconds, due)
        now = runtime.clock.monotonic()
        if now < at:
            await _sleep(stopped, wake, at - now)
            continue
        body = view.service(key)
        if body is None:
            break
        last_run = now
        with contextlib.suppress(SpecError):  # reported on the service; retried on an edit
            if failure is not None:
                await asyncio.to_thread(
                    reconciler.reconcile, runtime, book, retries, view, body, "retry"
                )
            else:
                await asyncio.to_thread(
                    reconciler.resync, runtime, book, retries, view, children, body
                )
