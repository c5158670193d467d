"""Hostile metrics endpoints: aiohttp handlers that misbehave the ways a pod can (test only).

For the tests of the operator's metrics reader (tests/test_reader.py, tests/test_scrape_cli.py)
and its benchmark (e2e/bench/scrape.py): a response that never ends, and one that drips a
byte at a time. The emulator's own fault modes (`MetricsFault`) cover wrong answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MIB = 1024 * 1024
HARMLESS_CHUNK = b"nv_gpu_utilization 0.5\n" * 2850
"""64 KiB of valid lines: only the size of what follows is hostile."""


def endless(total_bytes: int = 200 * MIB, sent: list[int] | None = None) -> Handler:
    """A chunked response of `total_bytes` written as fast as the reader takes it; the count
    of bytes written goes to `sent[0]`, when given."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        written = 0
        with contextlib.suppress(ConnectionError):
            while written < total_bytes:
                await response.write(HARMLESS_CHUNK)
                written += len(HARMLESS_CHUNK)
                if sent is not None:
                    sent[:] = [written]
        return response

    return handler


def drip(every_s: float = 0.05, count: int = 1000) -> Handler:
    """A response that sends one byte every `every_s` seconds, `count` times."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(count):
                await response.write(b"#")
                await asyncio.sleep(every_s)
        return response

    return handler
