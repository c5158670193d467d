"""The one way the e2e harness waits: poll a condition until it holds or a deadline passes.

Nothing in e2e/ sleeps a fixed time to let something happen; every wait names what it waits
for, so a timeout says what did not happen, after how long, and what went wrong last (a probe
that raised while racing the thing it watches). Standard library only: the cluster module, the
Triton emulator's pod runner, the demo and the kind kit's check script all use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """What was waited for did not happen before the deadline.

    An AssertionError because in a test it is an expectation that failed (pytest reports it as
    a failure with the message, not as an error inside the harness).
    """


def wait_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.25,
    check: Callable[[], None] | None = None,
) -> T:
    """Call `probe` every `interval` seconds until it returns something truthy; return that.

    An exception from `probe` counts as "not yet" (probes race with what they watch: an object
    not created yet, a port not listening yet) and is reported if the deadline passes.
    `check` runs before each probe and its exceptions propagate at once: it is how a caller
    says "give up now" (the process we wait for exited) instead of waiting out the deadline.

    Raises WaitTimeout naming `what`, the timeout and the last error after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        if check is not None:
            check()
        try:
            value = probe()
            if value:
                return value
        except Exception as error:
            last_error = error
        if time.monotonic() >= deadline:
            detail = (
                f" (last error: {type(last_error).__name__}: {last_error})"
                if last_error is not None
                else ""
            )
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}{detail}")
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
