"""The one place that talks to the Kubernetes API server.

Every write is a server-side apply with field manager `tritonop` (children, the status of
InferenceServices, the scale of Deployments and the deletion cost of their pods) and is skipped when the live object already
holds the desired values, so a reconcile that changes nothing sends nothing. Reads, writes and
events are counted in the operator's /metrics by kind and verb.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from tritonop import API_VERSION, FIELD_MANAGER, KIND
from tritonop.autoscale.deletioncost import DELETION_COST
from tritonop.observability import API_THROTTLED, API_WRITES

log = logging.getLogger(__name__)

KEDA_CRD = "scaledobjects.keda.sh"


def is_subset(desired: Any, live: Any) -> bool:
    """True when every value in `desired` is present and equal in `live`.

    The API server adds defaults and canonicalises quantities ("0.5" becomes "500m"), so a
    plain equality would see a change on every reconcile; fields the server added are ignored
    and quantities compare by value.
    """
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        return all(key in live and is_subset(value, live[key]) for key, value in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return False
        return all(is_subset(d, item) for d, item in zip(desired, live, strict=True))
    if desired == live:
        return True
    if isinstance(desired, str | int | float) and isinstance(live, str | int | float):
        if isinstance(desired, bool) or isinstance(live, bool):
            return False
        try:
            return bool(parse_quantity(desired) == parse_quantity(live))
        except ValueError:
            return False
    return False


#: Accept header that makes the API server return only an object's metadata
#: (PartialObjectMetadata): how the operator reads a credentials Secret's version without
#: ever receiving its data.
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
LIST_PAGE_SIZE = 500
"""Objects per page of the operator's own lists (client-go's pager default)."""


def refused(error: ApiException) -> bool:
    """A 4xx the API server will answer again until something changes (the spec, an admission
    policy, a quota, RBAC): reported as ApplyFailed. 409 (a conflict of concurrent writers)
    and 429 (throttling) pass by themselves, like 5xx, and are only retried."""
    status = int(error.status or 0)
    return 400 <= status < 500 and status not in (409, 429)


def server_message(error: ApiException) -> str:
    """The API server's own words for a refused request (its Status message), never the
    request: Secret data cannot leak into status or logs this way."""
    try:
        status = json.loads(error.body or "{}")
    except ValueError:
        status = {}
    message = status.get("message") if isinstance(status, dict) else None
    return str(message or f"HTTP {error.status} {error.reason}")


@dataclass(frozen=True)
class ResourceType:
    """Where a kind lives in the REST API; the operator's kinds are fixed, so no discovery."""

    api_version: str
    plural: str
    namespaced: bool = True

    def path(
        self, namespace: str | None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        parts = [base]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
        if subresource:
            parts.append(subresource)
        return "/".join(parts)


RESOURCES: dict[str, ResourceType] = {
    "Deployment": ResourceType("apps/v1", "deployments"),
    "Service": ResourceType("v1", "services"),
    "PodDisruptionBudget": ResourceType("policy/v1", "poddisruptionbudgets"),
    "HorizontalPodAutoscaler": ResourceType("autoscaling/v2", "horizontalpodautoscalers"),
    "ScaledObject": ResourceType("keda.sh/v1alpha1", "scaledobjects"),
    "Secret": ResourceType("v1", "secrets"),
    "Pod": ResourceType("v1", "pods"),
    "NetworkPolicy": ResourceType("networking.k8s.io/v1", "networkpolicies"),
    KIND: ResourceType(API_VERSION, "inferenceservices"),
    "CustomResourceDefinition": ResourceType(
        "apiextensions.k8s.io/v1", "customresourcedefinitions", False
    ),
}


CONNECTION_POOL_SIZE = 32
"""HTTP connections kept to the API server: more than the threads that call at once (kopf's
handler pool and asyncio's, each min(32, CPUs + 4)), so a busy moment never discards one and
pays a new TLS handshake for the next request."""


class TokenBucket:
    """The client-side rate limit of client-go (flowcontrol's token bucket): `qps` requests per
    second on average, up to `burst` at once after a quiet spell.

    `acquire` reserves the next slot and sleeps until it comes, so callers in several threads
    queue in order. `qps` 0 turns the limit off. The clock and sleep are injectable so a test
    can see the schedule without waiting for it.
    """

    def __init__(
        self,
        qps: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.qps = qps
        self.burst = max(1, burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for one request's slot; returns the seconds waited."""
        if self.qps <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1
            wait = -self._tokens / self.qps if self._tokens < 0 else 0.0
        if wait > 0:
            API_THROTTLED.inc(wait)
            self._sleep(wait)
        return wait


def api_client() -> client.ApiClient:
    """A client configured from the pod's ServiceAccount, else the kubeconfig."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    return client.ApiClient(configuration)


class Kube:
    """A thin, counted, idempotent layer over the Kubernetes REST API for the operator's kinds.

    Every request first takes a slot of the client-side rate limit (`limit`), so the
    operator never sends the API server more than its configured QPS, however many services
    change at once (settings kube_api_qps and kube_api_burst).
    """

    def __init__(
        self, api: client.ApiClient | None = None, limit: TokenBucket | None = None
    ) -> None:
        self._api = api if api is not None else api_client()
        self._limit = limit if limit is not None else TokenBucket(0, 1)

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        accept: str = "application/json",
        query: list[tuple[str, str]] | None = None,
        decode: bool = True,
    ) -> dict[str, Any] | None:
        """One REST call; None for 404, the decoded body otherwise ({} when `decode` is off:
        a write's answer is the whole object, which no caller reads); ApiException on errors."""
        self._limit.acquire()
        request = self._api.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params={"Accept": accept, "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*request, _request_timeout=30)
        data = response.read()
        if response.status == 404:
            return None
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response, body=data.decode(errors="replace"))
        return dict(json.loads(data)) if data and decode else {}

    def _apply(
        self, path: str, body: dict[str, Any], decode: bool = False
    ) -> dict[str, Any] | None:
        """Server-side apply; None when the object is not there (404), else the written object
        (`decode`) or {}."""
        return self._request(
            "PATCH",
            path,
            body,
            content_type="application/apply-patch+yaml",
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            decode=decode,
        )

    # ---------------------------------------------------------------- reads

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The live object, or None when it (or its kind) does not exist."""
        return self._request("GET", RESOURCES[kind].path(namespace, name))

    def list_metadata(
        self, kind: str, namespace: str | None, label_selector: str
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """The metadata by (namespace, name) of every object of `kind` matching
        `label_selector`, in `namespace` or (None) the whole cluster; metadata only, in pages.
        Empty when the kind is not installed (KEDA's ScaledObject without KEDA)."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        token = ""
        while True:
            query = [("labelSelector", label_selector), ("limit", str(LIST_PAGE_SIZE))]
            if token:
                query.append(("continue", token))
            page = self._request(
                "GET", RESOURCES[kind].path(namespace), accept=METADATA_LIST, query=query
            )
            if page is None:
                return found
            for item in page.get("items") or []:
                meta = item.get("metadata") or {}
                meta.pop("managedFields", None)
                found[(str(meta.get("namespace")), str(meta.get("name")))] = meta
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                return found

    def crd_exists(self, name: str) -> bool:
        """Whether a CustomResourceDefinition is installed (e.g. KEDA's ScaledObject)."""
        return self.get("CustomResourceDefinition", None, name) is not None

    def secret_version(self, namespace: str, name: str) -> str | None:
        """A credentials Secret's resourceVersion (it changes with every change of the Secret),
        or None when the Secret does not exist. Only the metadata is requested: the operator
        never holds the credentials themselves."""
        metadata = self._request(
            "GET", RESOURCES["Secret"].path(namespace, name), accept=METADATA_ONLY
        )
        if metadata is None:
            return None
        return str((metadata.get("metadata") or {}).get("resourceVersion", ""))

    def admin_secret(
        self, namespace: str, secret_name: str, field: str
    ) -> tuple[str, dict[str, Any] | None]:
        """The Triton admin key in the service's admin Secret, or a new random one when the
        Secret (or its key) does not exist yet, and the Secret as read (None: absent). The
        reconcile then creates the Secret with the new key (`create`, so a racing reconcile's
        key is never overwritten). Hex, so that it never contains the ':', ',' or '=' that
        tritonserver's restriction syntax splits on. Never logged."""
        secret = self.get("Secret", namespace, secret_name)
        encoded = ((secret or {}).get("data") or {}).get(field)
        if encoded:
            try:
                return base64.b64decode(encoded, validate=True).decode(), secret
            except (binascii.Error, UnicodeDecodeError):
                pass  # not a key we wrote: replaced by a fresh one
        return secrets.token_hex(32), secret

    # ---------------------------------------------------------------- writes

    def apply(
        self, desired: dict[str, Any], live: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        """Server-side apply `desired` unless `live` (the object as the caller read it, None
        when it does not exist) already holds it; the written object's metadata as the API
        server answered, None when nothing was written.

        Applied with force: by the time it is called the caller has checked that the object
        is absent or controlled by the InferenceService (ownership.py), so the only other
        managers are people editing our own child, whose edits the operator's spec overrides.
        """
        kind = desired["kind"]
        meta = desired["metadata"]
        if live is not None and is_subset(desired, live):
            return None
        path = RESOURCES[kind].path(meta.get("namespace"), meta["name"])
        written = self._apply(path, desired, decode=True)
        API_WRITES.labels(kind=kind, verb="apply").inc()
        log.info("applied %s %s/%s", kind, meta.get("namespace"), meta["name"])
        return _metadata(written)

    def create(self, desired: dict[str, Any]) -> dict[str, Any] | None:
        """Create `desired`; the created object's metadata, None when it exists already
        (409): never overwrites.

        For children whose content the operator generates rather than derives from the spec
        (the admin Secret's random key): two reconciles of a new service running at once
        (kopf may run a create handler twice on a busy API server) would each apply their own
        key, the last write winning over pods started with the first. With a create, the
        loser's write is refused and the next reconcile reads the winner's key.
        """
        kind = desired["kind"]
        meta = desired["metadata"]
        try:
            created = self._request(
                "POST",
                RESOURCES[kind].path(meta.get("namespace")),
                desired,
                query=[("fieldManager", FIELD_MANAGER)],
            )
        except ApiException as error:
            if error.status == 409:
                log.info("%s %s/%s exists already: kept", kind, meta.get("namespace"), meta["name"])
                return None
            raise
        API_WRITES.labels(kind=kind, verb="create").inc()
        log.info("created %s %s/%s", kind, meta.get("namespace"), meta["name"])
        return _metadata(created)

    def delete_owned(self, kind: str, namespace: str, name: str, owner_uid: str) -> bool:
        """Delete a child the InferenceService no longer needs, only if it owns it."""
        live = self.get(kind, namespace, name)
        if live is None:
            return False
        owners = (live.get("metadata") or {}).get("ownerReferences") or []
        if not any(owner.get("uid") == owner_uid for owner in owners):
            return False
        self._request("DELETE", RESOURCES[kind].path(namespace, name), decode=False)
        API_WRITES.labels(kind=kind, verb="delete").inc()
        return True

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        """Set a Deployment's replicas through its scale subresource (server-side apply).

        Replicas are written apart from the Deployment's own apply so that the reconcile of
        the spec never carries (and so never resets) the autoscaler's value.
        """
        self._apply(
            RESOURCES["Deployment"].path(namespace, name, "scale"),
            {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"replicas": replicas},
            },
        )
        API_WRITES.labels(kind="Deployment", verb="scale").inc()

    def set_pod_deletion_cost(self, namespace: str, name: str, cost: int) -> bool:
        """Annotate a pod with `controller.kubernetes.io/pod-deletion-cost` (server-side apply
        of that one annotation); False when the pod is gone.

        The caller (autoscale/deletioncost.py) writes only pods whose value changes.
        """
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {DELETION_COST: str(cost)},
            },
        }
        if self._apply(RESOURCES["Pod"].path(namespace, name), body) is None:
            return False
        API_WRITES.labels(kind="Pod", verb="annotate").inc()
        return True

    def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Write an InferenceService's status; False when the service is gone.

        The caller (statusbook.py) knows the status it last wrote and only calls for a change.
        """
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": name, "namespace": namespace},
            "status": status,
        }
        if self._apply(RESOURCES[KIND].path(namespace, name, "status"), body) is None:
            return False  # deleted meanwhile: nothing to report on
        API_WRITES.labels(kind=KIND, verb="status").inc()
        return True

    def event(self, body: Mapping[str, Any], *, warning: bool, reason: str, message: str) -> None:
        """Post an Event on an InferenceService, once.

        Sent directly rather than through kopf's queue, which retries a refused Event for about
        a minute: an Event for a namespace being deleted is dropped at once instead.
        """
        meta = body.get("metadata") or {}
        namespace = str(meta.get("namespace"))
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": "Warning" if warning else "Normal",
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now[:19] + "Z",
            "lastTimestamp": now[:19] + "Z",
            "count": 1,
        }
        try:
            self._request("POST", f"/api/v1/namespaces/{namespace}/events", event, decode=False)
        except ApiException as error:
            if error.status in (403, 404):  # the namespace is gone or going: nobody will read it
                log.info(
                    "event %s on %s/%s dropped: %s",
                    reason,
                    namespace,
                    meta.get("name"),
                    error.reason,
                )
                return
            raise
        API_WRITES.labels(kind="Event", verb="create").inc()


def _metadata(written: Mapping[str, Any] | None) -> dict[str, Any]:
    """The metadata of a write's answer, without managedFields ({} if it carried none)."""
    meta = dict((written or {}).get("metadata") or {})
    meta.pop("managedFields", None)
    return meta


def namespace_terminating(error: ApiException) -> bool:
    """The API server refused to create something because its namespace is being deleted."""
    return error.status == 403 and "being terminated" in str(error.body or "")
