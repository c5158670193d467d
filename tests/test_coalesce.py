"""The coalescer folds a burst of requests for one key into one run, after its delay, with the
work given last; other keys run on their own, and a failing run does not stop them. On the
operator's stop the waiting work is dropped and the running work finishes, within a bound."""

from __future__ import annotations

import asyncio
import threading
import time
from functools import partial

from tritonop.coalesce import Coalescer


async def test_a_burst_for_one_key_runs_once_with_the_latest_work() -> None:
    ran: list[str] = []
    threads: set[int] = set()

    def work(label: str) -> None:
        threads.add(threading.get_ident())
        ran.append(label)

    coalescer = Coalescer(delay=0.05)
    for label in ("first", "second", "third"):
        coalescer.request(("ml", "a"), partial(work, label))
    coalescer.request(("ml", "b"), lambda: work("b"))
    assert ran == [] and coalescer.waiting == 2
    await asyncio.sleep(0.15)
    await coalescer.drain()
    assert sorted(ran) == ["b", "third"]
    assert threading.get_ident() not in threads  # blocking work stays off the event loop
    coalescer.request(("ml", "a"), lambda: work("later"))  # after the run: a new one
    await asyncio.sleep(0.15)
    await coalescer.drain()
    assert ran[-1] == "later" and coalescer.waiting == 0


async def test_a_failing_run_does_not_stop_the_others() -> None:
    ran: list[str] = []

    def fail() -> None:
        raise RuntimeError("API server unreachable")

    coalescer = Coalescer(delay=0.01)
    coalescer.request("bad", fail)
    coalescer.request("good", lambda: ran.append("good"))
    await asyncio.sleep(0.1)
    await coalescer.drain()
    assert ran == ["good"]


async def test_closing_drops_the_waiting_work_and_lets_the_running_work_finish() -> None:
    ran: list[str] = []
    writing = threading.Event()

    def slow_write() -> None:
        writing.set()
        time.sleep(0.1)  # an API call in flight when the operator stops
        ran.append("running")

    coalescer = Coalescer(delay=0.01)
    coalescer.request("running", slow_write)
    await asyncio.to_thread(writing.wait, 1.0)
    coalescer.request("waiting", lambda: ran.append("waiting"))
    assert await coalescer.close(timeout=1.0) == 1
    assert ran == ["running"] and coalescer.waiting == 0
    coalescer.request("after", lambda: ran.append("after"))  # an event during the shutdown
    await asyncio.sleep(0.05)
    assert ran == ["running"] and coalescer.waiting == 0


async def test_closing_waits_for_running_work_no_longer_than_its_timeout() -> None:
    release = threading.Event()

    def hang() -> None:  # an API call that hangs
        release.wait(5.0)

    coalescer = Coalescer(delay=0.0)
    coalescer.request("stuck", hang)
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await coalescer.close(timeout=0.1)
    assert time.monotonic() - started < 1.0
    release.set()
    await coalescer.drain()
