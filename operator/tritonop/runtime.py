"""The process's dependencies: settings, the API client and the clock, built once and handed down.

`tritonop run` builds one `Runtime` and hands it, through kopf's `memo`, to every handler; the
handler bodies (reconciler.py, autoscale/loop.py) take it as an argument. Nothing reads a
module global or the system clock behind the caller's back, so a unit test hands in an
in-memory API and a clock it moves itself, and runs a reconcile or an autoscaling interval
without kopf or a cluster.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from tritonop.config import Settings


class Clock(Protocol):
    """Both times the operator needs: one for intervals, one for the timestamps it writes."""

    def monotonic(self) -> float:
        """Seconds that never jump (autoscaling intervals, durations, the policy's windows)."""
        ...

    def wall(self) -> str:
        """Now as Kubernetes writes timestamps: RFC 3339 in whole seconds, UTC, with a Z."""
        ...


class SystemClock:
    """The machine's clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> str:
        return datetime.now(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeApi(Protocol):
    """What the handler bodies ask of the API server; `k8s.Kube` is the implementation.

    Every write is idempotent and skipped when the cluster already holds it, so a caller may
    repeat it freely (see k8s.py).
    """

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The live object of one of the operator's kinds, None when it does not exist."""
        ...

    def secret_version(self, namespace: str, name: str) -> str | None:
        """A Secret's resourceVersion (read as metadata only); None when it does not exist."""
        ...

    def list_metadata(
        self, kind: str, namespace: str | None, label_selector: str
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Metadata by (namespace, name) of the objects of `kind` with those labels in
        `namespace` (None: every namespace); empty when the kind is not installed."""
        ...

    def crd_exists(self, name: str) -> bool:
        """Whether a CustomResourceDefinition is installed."""
        ...

    def admin_secret(
        self, namespace: str, secret_name: str, field: str
    ) -> tuple[str, dict[str, Any] | None]:
        """The Triton admin key in a service's admin Secret (or a new random one), and the
        Secret as read (None: absent)."""
        ...

    def apply(
        self, desired: dict[str, Any], live: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        """Server-side apply `desired` unless `live` (None: absent) holds it; the written
        object's metadata, None when nothing was written."""
        ...

    def create(self, desired: dict[str, Any]) -> dict[str, Any] | None:
        """Create `desired` unless it exists (then None): never overwrites; the created
        object's metadata."""
        ...

    def delete_owned(self, kind: str, namespace: str, name: str, owner_uid: str) -> bool:
        """Delete a child if the InferenceService `owner_uid` owns it; True if deleted."""
        ...

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        """Set a Deployment's replicas through its scale subresource."""
        ...

    def set_pod_deletion_cost(self, namespace: str, name: str, cost: int) -> bool:
        """Annotate a pod's pod-deletion-cost; False when the pod is gone."""
        ...

    def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Write an InferenceService's status; False when the service is gone."""
        ...

    def event(self, body: Mapping[str, Any], *, warning: bool, reason: str, message: str) -> None:
        """Post an Event on the InferenceService `body`."""
        ...


@dataclass(frozen=True)
class Runtime:
    """What every handler body depends on, fixed for the life of the process."""

    settings: Settings
    kube: KubeApi
    clock: Clock
