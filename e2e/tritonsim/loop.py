"""An asyncio event loop in a daemon thread, for callers that are not async themselves.

The pod runner hosts every emulator in one such loop, and synchronous tests (tritonclient's
`tritonclient.http` client is blocking) start emulators in one while they call from the main
thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    """Run coroutines on a private event loop living in its own thread."""

    def __init__(self, name: str = "tritonsim-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run a coroutine on the loop and wait for its result from the calling thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, function: Any, *args: Any) -> None:
        """Schedule a plain callable on the loop (thread-safe, does not wait)."""
        self.loop.call_soon_threadsafe(function, *args)

    def close(self) -> None:
        """Cancel what still runs, stop the loop and join its thread."""
        if not self._thread.is_alive():
            return

        async def cancel_remaining() -> None:
            current = asyncio.current_task()
            tasks = [task for task in asyncio.all_tasks() if task is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_remaining(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def __enter__(self) -> BackgroundLoop:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
