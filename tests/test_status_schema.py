"""Every status the operator writes is a valid InferenceServiceStatus, field for field.

The CRD's structural schema prunes unknown fields silently, so a misspelt field would vanish
on the API server and nobody would notice. Here each writer runs on an in-memory cluster (the
reconcile in every autoscaling mode, with placement on GPU, CPU fallback and none, a missing
Secret and KEDA; the Deployment watch; an invalid spec; the autoscaling loop's decisions) and
every status it sent must survive a round trip through the pydantic model by alias: a field the
model does not know, or a value of the wrong type, changes the result.
"""

from __future__ import annotations

import typing
from typing import Any

import pytest

from fakes import FakeClock, FakeCluster, FakeSource, StopAfter, ready_pod
from tritonop.api.models import (
    InferenceServiceStatus,
    MetricsStatus,
    PlacementStatus,
    ScaleRecord,
)
from tritonop.api.validation import SpecError
from tritonop.autoscale.loop import run_autoscaler
from tritonop.reconciler import reconcile, refresh_workload
from tritonop.status import MetricsFields, PlacementFields, ScaleFields, StatusFields

H100 = "NVIDIA-H100-80GB-HBM3"
REPO = {"uri": "s3://m/t"}
TARGETS = {"targets": {"queueDepth": 4, "queueTimeMs": 50}}
SPECS: dict[str, dict[str, Any]] = {
    "fixed-gpu": {"modelRepository": REPO, "gpu": {"count": 1, "products": [H100]}},
    "fallback": {
        "modelRepository": REPO,
        "gpu": {"count": 1, "products": ["NVIDIA-B200"], "fallback": "CPU"},
    },
    "unplaceable": {"modelRepository": REPO, "gpu": {"count": 1, "products": ["NVIDIA-B200"]}},
    "secret": {
        "modelRepository": {**REPO, "secretRef": {"name": "absent"}},
        "gpu": {"count": 0},
    },
    "operator": {"modelRepository": REPO, "gpu": {"count": 0}, "autoscaling": TARGETS},
    "hpa": {
        "modelRepository": REPO,
        "gpu": {"count": 0},
        "autoscaling": {"mode": "HPA", **TARGETS},
    },
    "keda": {
        "modelRepository": REPO,
        "gpu": {"count": 0},
        "autoscaling": {"mode": "KEDA", **TARGETS},
    },
    "invalid": {"modelRepository": REPO, "gpu": {"count": -1}},
}


def round_trip(status: dict[str, Any]) -> dict[str, Any]:
    parsed = InferenceServiceStatus.model_validate(status)
    return parsed.model_dump(by_alias=True, exclude_none=True)


async def written_statuses() -> list[dict[str, Any]]:
    clock = FakeClock()
    cluster = FakeCluster()
    cluster.add_node("h100", gpus=8, product=H100)
    cluster.add_node("cpu")
    runtime = cluster.runtime(clock, autoscale_interval_seconds=5.0)
    book = cluster.book(clock)
    for name, spec in SPECS.items():
        body = cluster.add_service(name, spec)
        try:
            reconcile(runtime, book, cluster.retries, cluster.view(), body, "create")
        except SpecError:
            continue
        key = ("ml", name)
        cluster.roll_out(key)
        cluster.set_pods(key, ready_pod(f"{name}-a", "10.0.0.1"))
        refresh_workload(book, cluster.view(), key)
    key = ("ml", "operator")
    for signals in (
        {"queue_depth": 40.0, "queue_time_ms": 900.0, "request_rate": 80.0},  # scale up
        {"queue_depth": None, "queue_time_ms": None, "request_rate": None},  # metrics missing
        {"queue_depth": 0.0, "queue_time_ms": 0.0, "request_rate": 0.0},  # idle
    ):
        source = FakeSource(clock, **signals)
        await run_autoscaler(runtime, book, key, cluster.view(), source, StopAfter(clock, 1))
    return cluster.statuses


async def test_every_written_status_is_an_inference_service_status() -> None:
    statuses = await written_statuses()
    assert len(statuses) >= 2 * (len(SPECS) - 1) + 3
    seen: set[str] = set()
    for status in statuses:
        assert round_trip(status) == status
        seen |= set(status)
    aliases = {field.alias for field in InferenceServiceStatus.model_fields.values()}
    assert seen == aliases  # every field of the schema is written by some writer


@pytest.mark.parametrize(
    ("fields", "model"),
    [
        (StatusFields, InferenceServiceStatus),
        (PlacementFields, PlacementStatus),
        (MetricsFields, MetricsStatus),
        (ScaleFields, ScaleRecord),
    ],
)
def test_the_typed_fields_writers_use_are_the_crd_schema(fields: Any, model: Any) -> None:
    aliases = {field.alias or name for name, field in model.model_fields.items()}
    assert set(typing.get_type_hints(fields)) | {"conditions"} >= aliases
    assert set(typing.get_type_hints(fields)) <= aliases
