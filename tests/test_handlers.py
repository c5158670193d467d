"""The kopf glue: what handlers.py registers and how kopf's arguments reach the handler bodies.

kopf passes each index to handlers as a keyword argument named after its index handler, and
ClusterView picks them out by its field names: the two must agree, or every handler fails at
run time. kopf's registry is read through its (private) per-kind registries, as kopf's own
tests do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import kopf
from prometheus_client import generate_latest

from fakes import FakeClock, FakeCluster
from tritonop import handlers
from tritonop.autoscale.metrics import PrometheusSource, ScrapeSource
from tritonop.autoscale.observe import MetricsTarget
from tritonop.view import ClusterView


def registered() -> dict[str, list[str]]:
    registry = kopf.get_default_registry()
    kinds: dict[str, Any] = {
        "activity": registry._activities,
        "changing": registry._changing,
        "indexing": registry._indexing,
        "spawning": registry._spawning,
        "watching": registry._watching,
    }
    return {
        kind: [
            h.fn.__name__ for h in each.get_all_handlers() if h.fn.__module__ == handlers.__name__
        ]
        for kind, each in kinds.items()
    }


def test_the_indexes_are_named_as_the_view_reads_them() -> None:
    assert registered()["indexing"] == [f.name for f in dataclasses.fields(ClusterView)]


def test_every_handler_takes_what_kopf_adds_later() -> None:
    names = {name for each in registered().values() for name in each}
    assert names == {
        "configure", "watch_loop_lag", "release", "node_index", "pod_index", "deployment_index",
        "service_index", "reconcile", "forget", "autoscaler", "repair", "nodes_changed",
        "keda_crd_changed", "deployment_changed", "pod_changed",
    }  # fmt: skip
    for name in names:
        parameters = inspect.signature(getattr(handlers, name)).parameters.values()
        assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters), name


def test_the_view_takes_the_indexes_from_the_handler_arguments() -> None:
    cluster = FakeCluster()
    live = cluster.view()
    kwargs = {field.name: getattr(live, field.name) for field in dataclasses.fields(ClusterView)}
    view = ClusterView.of({**kwargs, "body": {}, "logger": None, "memo": None})
    assert view == live


async def test_the_memo_chooses_the_metrics_source_on_the_runtimes_clock() -> None:
    cluster, clock = FakeCluster(), FakeClock(42.0)
    scrape = handlers.Memo.build(cluster.runtime(clock))
    assert isinstance(scrape.metrics, ScrapeSource)
    observation = await scrape.metrics.observe(MetricsTarget("ml", "svc", (), 0))
    await scrape.metrics.close()
    assert observation.time == 42.0
    prometheus = handlers.Memo.build(cluster.runtime(clock, prometheus_url="http://p:9090"))
    assert isinstance(prometheus.metrics, PrometheusSource)


# kopf's decorators type the handlers as its callback protocol; they are plain coroutines.
startup = cast(Callable[..., Awaitable[None]], handlers.watch_loop_lag)
cleanup = cast(Callable[..., Awaitable[None]], handlers.release)


async def test_the_memo_measures_event_loop_lag_into_the_operators_metrics() -> None:
    memo = handlers.Memo.build(FakeCluster().runtime(FakeClock()))
    memo.lag.tick, memo.lag.window = 0.01, 0.5
    await startup(memo=memo)
    await asyncio.sleep(0.05)
    time.sleep(0.3)  # a handler that blocks the loop
    await asyncio.sleep(0.3)  # the window (started 0.65 s ago) has ended, the next one has not
    await cleanup(memo=memo)
    text = generate_latest().decode()
    lag = [
        line for line in text.splitlines() if line.startswith("tritonop_event_loop_lag_seconds ")
    ]
    assert lag and float(lag[0].split()[1]) >= 0.25


async def test_the_stop_drops_waiting_status_refreshes() -> None:
    """A status refresh still waiting when the operator stops is not written on the way out:
    the next start reconciles every service from the cluster."""
    cluster = FakeCluster()
    memo = handlers.Memo.build(cluster.runtime(FakeClock()))
    ran: list[str] = []
    memo.refresher.request(("ml", "svc"), lambda: ran.append("refresh"))
    await startup(memo=memo)
    await cleanup(memo=memo)
    await asyncio.sleep(memo.refresher.delay + 0.1)
    assert ran == [] and memo.refresher.waiting == 0
