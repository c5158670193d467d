"""Metrics-reader benchmark: event-loop lag while the operator's reader reads many big pages.

    python -m e2e.bench.scrape                       # 100 pods x 1 MiB, both kinds and parsers
    python -m e2e.bench.scrape --pods 40 --rounds 2 --parsers process
    python -m e2e.bench.scrape --json figures.json

A server process on 127.0.0.1 serves `--pods` pages of `--page-mib` MiB each (every pod its
own URL); this process reads all of them `--rounds` times through `MetricsReader` (the
operator's reader: same limits, same deadline, same bound on requests in flight), while a
ticker task on the same event loop measures how late its 10 ms sleeps wake up: the lag every
other coroutine of the operator (kopf's watches, /healthz, other services' loops) would see.

Page kinds:
  realistic: Triton-shaped: per model the autoscaling series (success, failure x4 reasons,
             counts, durations, pending), five summaries of five quantiles, GPU gauges; about
             a quarter of the lines are the autoscaling families the reader parses;
  worst:     nothing but autoscaling series (up to the reader's MAX_SERIES per page), the
             most parse work a page can ask for.
Parsers: `process` (the reader's own: one forkserver process) and `thread` (a one-thread pool
in this process, for comparison: prometheus-client's parser holds the GIL).

Also, once: one hostile pod sending an endless 200 MB response (elapsed time, RSS growth of
this process, the problem reported) and one slow-drip pod; and the time `decide()` takes on
the issue's absurd page pair (see `absurd_decisions`).

Prints figures; asserts nothing (speed targets are read, not asserted). Exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from e2e.tritonsim import hostile

from tritonop.autoscale.metrics import MetricsReader
from tritonop.autoscale.observe import MAX_MODEL_VERSIONS, MAX_SERIES, PodEndpoint, PodScrape

T = TypeVar("T")
MIB = 1024 * 1024
TICK_S = 0.010


# ------------------------------------------------------------------------------ pages


def realistic_page(size: int) -> bytes:
    """Triton-shaped lines for as many models as fit in `size` bytes."""
    lines: list[str] = []
    model = 0
    total = 0
    while total < size:
        name = f'model="model-{model:05d}",version="1"'
        block = [
            f"nv_inference_request_success{{{name}}} {model * 1000}",
            *(
                f'nv_inference_request_failure{{model="model-{model:05d}",reason="{r}",version="1"}} 0'
                for r in ("REJECTED", "CANCELED", "BACKEND", "OTHER")
            ),
            f"nv_inference_count{{{name}}} {model * 1000}",
            f"nv_inference_exec_count{{{name}}} {model * 500}",
            f"nv_inference_request_duration_us{{{name}}} {model * 90000}",
            f"nv_inference_queue_duration_us{{{name}}} {model * 40000}",
            f"nv_inference_compute_infer_duration_us{{{name}}} {model * 30000}",
            f"nv_inference_pending_request_count{{{name}}} {model % 7}",
        ]
        for summary in ("request", "queue", "compute_input", "compute_infer", "compute_output"):
            block.append(f"nv_inference_{summary}_summary_us_count{{{name}}} {model}")
            block.append(f"nv_inference_{summary}_summary_us_sum{{{name}}} {model * 77}")
            for quantile in ("0.5", "0.9", "0.95", "0.99", "0.999"):
                block.append(
                    f'nv_inference_{summary}_summary_us{{model="model-{model:05d}",'
                    f'quantile="{quantile}",version="1"}} 1234.5'
                )
        for gpu in range(2):
            block.append(f'nv_gpu_utilization{{gpu_uuid="GPU-{gpu}-{model}"}} 0.5')
        text = "\n".join(block) + "\n"
        lines.append(text)
        total += len(text)
        model += 1
    return "".join(lines).encode()


def worst_page(size: int) -> bytes:
    """Nothing but autoscaling series, in whole model blocks, as many as the reader parses
    (MAX_SERIES, MAX_MODEL_VERSIONS), padded to `size` with comments."""
    lines: list[str] = []
    total = series = 0
    for model in range(MAX_MODEL_VERSIONS):
        name = f'model="m{model:05d}",version="1"'
        block = [f"nv_inference_request_success{{{name}}} {model}"]
        block += [
            f'nv_inference_request_failure{{model="m{model:05d}",reason="{r}",version="1"}} 0'
            for r in ("REJECTED", "CANCELED", "BACKEND", "OTHER")
        ]
        block += [
            f"nv_inference_{family}{{{name}}} {model}"
            for family in (
                "count",
                "exec_count",
                "request_duration_us",
                "queue_duration_us",
                "compute_infer_duration_us",
                "pending_request_count",
            )
        ]
        text = "\n".join(block) + "\n"
        if total + len(text) > size or series + len(block) > MAX_SERIES:
            break
        lines.append(text)
        total += len(text)
        series += len(block)
    body = "".join(lines).encode()
    return body + b"#" * max(0, size - len(body) - 1) + b"\n"


PAGES: dict[str, Callable[[int], bytes]] = {"realistic": realistic_page, "worst": worst_page}


# ------------------------------------------------------------------------------ the server


def serve(kind: str, size: int, port: int, ready: Any) -> None:
    """The page server (a separate process, so its work does not run on the measured loop)."""
    page = PAGES[kind](size)

    hostile_pages = {"endless": hostile.endless(), "drip": hostile.drip()}

    async def handler(request: web.Request) -> web.StreamResponse:
        misbehaving = hostile_pages.get(request.query.get("hostile", ""))
        if misbehaving is not None:
            return await misbehaving(request)
        return web.Response(body=page, content_type="text/plain")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/metrics", handler)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


# ------------------------------------------------------------------------------ measuring


@dataclass
class Lag:
    samples: list[float]

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.samples) or [0.0]
        return {
            "max_ms": round(ordered[-1] * 1000, 1),
            "p99_ms": round(
                ordered[int(len(ordered) * 0.99) - 1 if len(ordered) > 1 else 0] * 1000, 1
            ),
            "median_ms": round(statistics.median(ordered) * 1000, 1),
        }


async def measured(work: Awaitable[T]) -> tuple[T, Lag]:
    """`work`'s result and the wake-up delays of a 10 ms ticker running beside it."""
    lag = Lag([])
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            expected = loop.time() + TICK_S
            await asyncio.sleep(TICK_S)
            lag.samples.append(max(0.0, loop.time() - expected))

    task = asyncio.create_task(ticker())
    try:
        result = await work
    finally:
        done.set()
        await task
    return result, lag


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


@dataclass
class Row:
    page: str
    parser: str
    pods: int
    page_bytes: int
    round: int
    seconds: float
    parsed: int
    problems: dict[str, int]
    lag: dict[str, float]


async def rounds(
    kind: str, parser: str, port: int, args: argparse.Namespace, size: int
) -> list[Row]:
    executor: Executor | None = ThreadPoolExecutor(1) if parser == "thread" else None
    reader = MetricsReader(
        timeout=args.timeout, max_bytes=2 * MIB, concurrency=args.concurrency, parser=executor
    )
    pages = [
        (PodEndpoint(f"pod-{i}", "127.0.0.1"), f"http://127.0.0.1:{port}/metrics?pod={i}")
        for i in range(args.pods)
    ]
    rows = []
    try:
        for number in range(1, args.rounds + 1):
            started = time.monotonic()
            scrapes, lag = await measured(reader.scrape(pages))
            elapsed = time.monotonic() - started
            problems: dict[str, int] = {}
            for scrape in scrapes.values():
                if scrape.error:
                    word = scrape.error.split(":")[0].split(" after")[0]
                    problems[word] = problems.get(word, 0) + 1
            rows.append(
                Row(
                    kind,
                    parser,
                    args.pods,
                    size,
                    number,
                    round(elapsed, 2),
                    sum(1 for s in scrapes.values() if s.sample is not None),
                    problems,
                    lag.summary(),
                )
            )
            await asyncio.sleep(0.5)
    finally:
        await reader.close()
        if executor is not None:
            executor.shutdown()
    return rows


async def hostile_pods(port: int, timeout: float) -> dict[str, Any]:
    """One endless and one slow-drip pod, each alone, through a default reader."""
    figures: dict[str, Any] = {}
    for mode in ("endless", "drip"):
        reader = MetricsReader(timeout=timeout, max_bytes=2 * MIB, concurrency=16)
        pod = PodEndpoint(mode, "127.0.0.1")
        baseline = peak = rss_bytes()
        started = time.monotonic()
        task = asyncio.ensure_future(
            reader.scrape([(pod, f"http://127.0.0.1:{port}/metrics?hostile={mode}")])
        )
        while not task.done():
            peak = max(peak, rss_bytes())
            await asyncio.sleep(0.005)
        scrape: PodScrape = task.result()[mode]
        figures[mode] = {
            "seconds": round(time.monotonic() - started, 3),
            "rss_growth_mb": round((peak - baseline) / 1e6, 1),
            "problem": scrape.error,
        }
        await reader.close()
    return figures


def absurd_decisions(repeats: int = 200) -> dict[str, Any]:
    """How long `decide()` takes on the issue's absurd page pair, and on a whole-number variant.

    issue:   successes +5e-9, queue time +5 µs, pending 7,000 -> 8,000 (the reader's findings
             hold it: a fraction in a count);
    whole:   successes +1, queue time +5 µs, pending 7,000 -> 8,000 (plausible page by page;
             the policy's own bound on demand holds it).
    """
    from tritonop.api.models import Autoscaling
    from tritonop.autoscale.observe import PodScrape, observe, parse_triton_metrics
    from tritonop.autoscale.policy import PolicyState, decide

    spec = Autoscaling.model_validate(
        {"minReplicas": 1, "maxReplicas": 8, "targets": {"queueDepth": 4, "queueTimeMs": 50}}
    )

    def page(success: str, queued: int, pending: int) -> bytes:
        return (
            f'nv_inference_request_success{{model="m",version="1"}} {success}\n'
            f'nv_inference_queue_duration_us{{model="m",version="1"}} {queued}\n'
            f'nv_inference_pending_request_count{{model="m",version="1"}} {pending}\n'
        ).encode()

    figures: dict[str, Any] = {}
    for name, later in (("issue", "1000.000000005"), ("whole", "1001")):
        scrapes = [
            {
                pod: PodScrape(pod, f"10.0.0.{i}", t, sample=parse_triton_metrics(body))
                for i, pod in enumerate(("a", "b"))
            }
            for t, body in (
                (100.0, page("1000", 1_000_000, 7000)),
                (105.0, page(later, 1_000_005, 8000)),
            )
        ]
        seen = observe(
            scrapes[0], scrapes[1], ready_replicas=2, starting_replicas=0, models=(), now=105.0
        )
        took = []
        for _ in range(repeats):
            started = time.perf_counter()
            decision, _ = decide(spec, 2, seen, PolicyState(), 105.0, 5.0)
            took.append(time.perf_counter() - started)
        active = next(flag for flag in decision.conditions if flag.type == "ScalingActive")
        figures[name] = {
            "decide_ms_max": round(max(took) * 1000, 3),
            "decide_ms_median": round(statistics.median(took) * 1000, 3),
            "desired_replicas": decision.desired_replicas,
            "scaling_active": f"{active.status} {active.reason}",
        }
    return figures


def start_server(kind: str, size: int) -> tuple[BaseProcess, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=serve, args=(kind, size, port, ready), daemon=True)
    process.start()
    if not ready.wait(30):
        raise SystemExit("the page server did not start")
    return process, port


async def run(args: argparse.Namespace) -> dict[str, Any]:
    size = int(args.page_mib * MIB)
    results: dict[str, Any] = {"rows": [], "hostile": None, "absurd": absurd_decisions()}
    for name, figures in results["absurd"].items():
        print(f"absurd pair ({name}): {figures}", flush=True)
    for kind in args.pages.split(","):
        process, port = start_server(kind, size)
        try:
            for parser in args.parsers.split(","):
                for row in await rounds(kind, parser, port, args, size):
                    print(
                        f"{row.page:9} {row.parser:7} {row.pods} pods x {row.page_bytes / MIB:.2f} MiB "
                        f"round {row.round}: {row.seconds:5.2f} s, {row.parsed:3} parsed, "
                        f"problems {row.problems or '-'}; loop lag max {row.lag['max_ms']} ms, "
                        f"p99 {row.lag['p99_ms']} ms, median {row.lag['median_ms']} ms",
                        flush=True,
                    )
                    results["rows"].append(asdict(row))
            if results["hostile"] is None:
                found = await hostile_pods(port, args.timeout)
                results["hostile"] = found
                for mode, figures in found.items():
                    print(f"hostile {mode}: {figures}", flush=True)
        finally:
            process.terminate()
            process.join(5)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--page-mib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=2.0, help="the reader's deadline")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--pages", default="realistic,worst")
    parser.add_argument("--parsers", default="process,thread")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
