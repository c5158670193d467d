"""`tritonop scrape`: the console script against real Triton pages, the emulator and hostile pods.

Pages are served from 127.0.0.1 by this test's event loop; the command runs as a subprocess
(the installed console script), so what is tested is what a user runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import random
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import tritonclient.http.aio as aioclient
from aiohttp import web
from e2e.tritonsim import EmulatorConfig, MetricsFault, ServiceSettings, TritonEmulator, hostile

from pages import free_port, ones_inputs

ROOT = Path(__file__).resolve().parents[1]
REAL = Path(__file__).parent / "fixtures" / "triton-metrics"
SPEC = ROOT / "manifests" / "examples" / "autoscaled.yaml"
TRITONOP = [sys.executable, "-m", "tritonop.cli"]
PYTHON_BACKEND = "triton-2.51-cpu-python-backend-under-load.txt"


def real_page(name: str) -> bytes:
    """A fixture as Triton serves it: Kura's file lacks the final newline Triton writes."""
    body = (REAL / name).read_bytes()
    return body if body.endswith(b"\n") else body + b"\n"


def advanced(page: bytes, successes: int, queued_us: int, pending: int) -> bytes:
    """The python-backend page a moment later: `simple` finished more and queues `pending`."""
    text = page.decode()
    for family, before, after in (
        ("nv_inference_request_success", 400, 400 + successes),
        ("nv_inference_count", 400, 400 + successes),
        ("nv_inference_exec_count", 400, 400 + successes),
        ("nv_inference_queue_duration_us", 347234812, 347234812 + queued_us),
        ("nv_inference_pending_request_count", 107, pending),
    ):
        line = f'{family}{{model="simple",version="1"}} '
        assert line + str(before) in text
        text = text.replace(line + str(before), line + str(after))
    return text.encode()


Pages = Callable[[int], bytes]
"""A page by how many times it was served before (0: the first read)."""
Handler = hostile.Handler


@contextlib.asynccontextmanager
async def serving(routes: dict[str, Pages | Handler]) -> AsyncIterator[str]:
    """An aiohttp server on 127.0.0.1 with one path per route; yields its base URL."""
    app = web.Application()
    served: dict[str, int] = {}

    def handler_for(path: str, pages: Pages) -> Handler:
        async def handler(_: web.Request) -> web.Response:
            count = served.get(path, 0)
            served[path] = count + 1
            return web.Response(body=pages(count), content_type="text/plain")

        return handler

    for path, route in routes.items():
        is_handler = inspect.iscoroutinefunction(route)
        app.router.add_get(path, route if is_handler else handler_for(path, route))  # type: ignore[arg-type]
    runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def scrape(*args: str) -> tuple[int, Any, str, float]:
    """Run `tritonop scrape ARGS`; its exit code, parsed JSON (with --json), stderr, seconds."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *TRITONOP,
        "scrape",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    elapsed = time.monotonic() - started
    text = out.decode()
    parsed = json.loads(text) if "--json" in args and process.returncode == 0 else text
    return int(process.returncode or 0), parsed, err.decode(), elapsed


def problems_of(report: dict[str, Any], url: str) -> list[str]:
    return next(pod["problems"] for pod in report["pods"] if pod["url"] == url)


async def test_a_real_queue_reads_as_triton_counted_it() -> None:
    page = real_page(PYTHON_BACKEND)
    later = advanced(page, successes=20, queued_us=2_000_000, pending=110)
    async with serving({"/metrics": lambda n: page if n == 0 else later}) as base:
        code, report, _, _ = await scrape(
            "--json", "--interval", "0.5", "--timeout", "1", f"{base}/metrics"
        )
    assert code == 0
    assert report["pods"] == [{"url": f"{base}/metrics", "problems": []}]
    seen = report["observation"]
    assert seen["queue_depth"] == 110.0  # simple 110 + simple_dyn 0
    assert seen["queue_time_ms"] == pytest.approx(100.0)  # 2 s of queueing over 20 requests
    assert 20 / 1.5 <= seen["request_rate"] <= 20 / 0.5  # 20 over the interval (+ read time)
    assert seen["problems"] == []
    assert "decision" not in report


async def test_every_real_page_with_the_decision_of_the_spec() -> None:
    routes: dict[str, Pages | Handler] = {}
    for page in sorted(REAL.glob("*.txt")):
        body = real_page(page.name)
        routes[f"/{page.name}"] = lambda _, body=body: body
    async with serving(routes) as base:
        urls = [f"{base}{path}" for path in routes]
        code, report, _, _ = await scrape(
            "--json", "--spec", str(SPEC), "--replicas", "2", "--interval", "0.2", *urls
        )
    assert code == 0
    by_name = {Path(pod["url"]).name: pod["problems"] for pod in report["pods"]}
    for usable in (
        PYTHON_BACKEND,
        "triton-2.51-cpu-dynamic-batching-under-load.txt",
        "kura_triton24_reason_custom_metric.txt",  # summaries and a custom family beside
        "trtllm_readme_2311_base_zeros.txt",  # failures without a reason label
    ):
        assert by_name[usable] == [], usable
    assert by_name["gh2755_triton2003_help_type_no_samples.partial.txt"] == [
        "missing family nv_inference_pending_request_count (Triton older than 23.03, or metrics "
        "disabled?)"
    ]
    for partial in ("gh5296_ensemble_sixdecimal", "gh8561_triton_reason_labels"):
        assert by_name[f"{partial}.partial.txt"][0].startswith("missing family"), partial
    seen = report["observation"]
    assert seen["queue_depth"] == (107 + 36 + 0 + 0) / 4  # per reporting pod, all models
    assert seen["request_rate"] == 0.0  # the same pages twice: nothing finished between
    assert seen["queue_time_ms"] is None  # ...while requests wait: unknown, not zero
    assert len(seen["problems"]) == 3
    decision = report["decision"]
    assert decision["desired_replicas"] >= 2  # a queue of 36 per replica never scales down
    assert [flag["type"] for flag in decision["conditions"]] == [
        "AbleToScale",
        "ScalingActive",
        "ScalingLimited",
    ]
    active = decision["conditions"][1]
    assert (active["status"], active["reason"]) == ("False", "MissingMetrics")  # queue time
    assert set(decision["conditions"][0]) == {"type", "status", "reason", "message"}


async def test_the_text_report_names_each_url_and_the_signals() -> None:
    page = real_page("triton-2.51-cpu-dynamic-batching-under-load.txt")
    saved = (REAL / "kura_triton24_reason_custom_metric.txt").read_bytes()  # no final newline
    async with serving({"/ok": lambda _: page, "/cut": lambda _: saved}) as base:
        code, text, _, _ = await scrape("--interval", "0.2", f"{base}/ok", f"{base}/cut")
    assert code == 0
    assert text.splitlines() == [
        f"{base}/ok: ok",
        f"{base}/cut: problems",
        "  - parse error: the body ends inside a line "
        '(\'ty_long",version="1",quantile="0.999"} 0\'): it was cut short',
        "observation: queue depth 36 per pod, queue time unknown, request rate 0/s",
    ]


async def test_the_absurd_page_pair_is_invalid_metrics_and_the_policy_holds() -> None:
    def absurd(served: int) -> bytes:
        success = "1000" if served == 0 else "1000.000000005"
        queued = 1_000_000 + 5 * served
        pending = 7000 if served == 0 else 8000
        return (
            "# TYPE nv_inference_request_success counter\n"
            f'nv_inference_request_success{{model="simple",version="1"}} {success}\n'
            "# TYPE nv_inference_queue_duration_us counter\n"
            f'nv_inference_queue_duration_us{{model="simple",version="1"}} {queued}\n'
            "# TYPE nv_inference_pending_request_count gauge\n"
            f'nv_inference_pending_request_count{{model="simple",version="1"}} {pending}\n'
        ).encode()

    async with serving({"/metrics": absurd}) as base:
        code, report, _, _ = await scrape(
            "--json", "--spec", str(SPEC), "--interval", "0.2", f"{base}/metrics"
        )
    assert code == 0
    (problem,) = problems_of(report, f"{base}/metrics")
    assert problem.startswith("InvalidMetrics: model='simple' version='1': ")
    decision = report["decision"]
    assert decision["desired_replicas"] == 1  # held, within maxReplicas
    active = decision["conditions"][1]
    assert (active["status"], active["reason"]) == ("False", "InvalidMetrics")


async def test_a_hostile_page_is_reported_within_the_timeout() -> None:
    drip, endless = hostile.drip(), hostile.endless()
    async with serving({"/drip": drip, "/endless": endless}) as base:
        code, report, _, elapsed = await scrape(
            "--json", "--interval", "0.2", "--timeout", "0.5", f"{base}/drip", f"{base}/endless"
        )
    assert code == 0
    assert problems_of(report, f"{base}/drip") == ["timed out after 0.5s"]
    assert problems_of(report, f"{base}/endless") == [
        "MetricsTooLarge: the body is larger than 2097152 bytes (TRITONOP_SCRAPE_MAX_BYTES)"
    ]
    assert report["observation"]["queue_depth"] is None
    # two reads of at most 0.5 s each and the 0.2 s pause, plus the interpreter's start
    assert elapsed < 0.5 + 0.2 + 0.5 + 5.0


async def test_the_emulator_under_load_reads_as_it_served() -> None:
    block = random.randint(1, 254)
    port = free_port()
    config = EmulatorConfig(
        host=f"127.203.{block}.1",
        http_port=0,
        metrics_port=port,
        service=ServiceSettings(service_time_ms=20),
    )
    busy = TritonEmulator(config)
    garbled = TritonEmulator(
        EmulatorConfig(host=f"127.203.{block}.2", http_port=0, metrics_port=port)
    )
    await busy.start()
    await garbled.start()
    garbled.set_metrics_fault(MetricsFault.GARBAGE)
    client = aioclient.InferenceServerClient(busy.url)
    inputs = ones_inputs()

    async def load() -> None:  # 40 req/s, open loop, for at most ~6 s
        pending = []
        for _ in range(240):
            pending.append(asyncio.create_task(client.infer("simple", inputs)))
            await asyncio.sleep(0.025)
        await asyncio.gather(*pending)

    traffic = asyncio.create_task(load())
    try:
        await asyncio.sleep(0.5)
        code, report, _, _ = await scrape(
            "--json",
            "--spec",
            str(SPEC),
            "--interval",
            "1.5",
            busy.metrics_url,
            garbled.metrics_url,
        )
    finally:
        traffic.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await traffic
        await client.close()
        await busy.stop()
        await garbled.stop()
    assert code == 0
    assert problems_of(report, busy.metrics_url) == []
    assert problems_of(report, garbled.metrics_url)[0].startswith("parse error: not Prometheus")
    seen = report["observation"]
    assert 20 <= seen["request_rate"] <= 50  # 40 req/s offered, one instance of 20 ms keeps up
    assert seen["queue_time_ms"] is not None and 0 <= seen["queue_time_ms"] < 100
    assert seen["queue_depth"] is not None and seen["queue_depth"] >= 0
    assert report["decision"]["conditions"][1]["reason"] == "IncompleteMetrics"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ftp://x/metrics"], "is not an http:// or https:// URL"),
        (["--interval", "0", "http://127.0.0.1:1/metrics"], "--interval must be more than 0"),
        (["--timeout", "90", "http://127.0.0.1:1/metrics"], "--timeout must be more than 0"),
        (["--replicas", "3", "http://127.0.0.1:1/metrics"], "--replicas needs --spec"),
        (["--spec", "/nonexistent.yaml", "http://127.0.0.1:1/metrics"], "No such file"),
        (["--spec", str(ROOT / "pyproject.toml"), "http://127.0.0.1:1/m"], "tritonop scrape:"),
        ([], "the following arguments are required: URL"),
    ],
)
async def test_bad_arguments_exit_2_and_say_what_is_wrong(args: list[str], message: str) -> None:
    code, _, err, _ = await scrape(*args)
    assert code == 2
    assert message in err
