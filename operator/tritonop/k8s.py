"""The one place that talks to the Kubernetes API server.

Every write is a server-side apply with field manager `tritonop` (children, the status of
InferenceServices and the scale of Deployments) and is skipped when the live object already
holds the desired values, so a reconcile that changes nothing sends nothing. Reads, writes and
events are counted in the operator's /metrics by kind and verb.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Mapping
from typing import Any, cast

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError
from kubernetes.utils import parse_quantity

from tritonop import API_VERSION, FIELD_MANAGER, KIND
from tritonop.observability import API_WRITES

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


def secret_digest(data: Mapping[str, str | bytes] | None) -> str:
    """A short stable digest of a Secret's data, for the pod-template annotation."""
    text = {k: v.decode() if isinstance(v, bytes) else v for k, v in (data or {}).items()}
    payload = json.dumps(text, sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


class Kube:
    """A thin, counted, idempotent layer over the Kubernetes API for the operator's needs."""

    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        if api_client is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api_client = client.ApiClient()
        self._api = api_client
        self._dynamic: DynamicClient | None = None
        self._lock = threading.Lock()

    @property
    def dynamic(self) -> DynamicClient:
        """The discovery-backed client, created on first use (discovery costs a few requests)."""
        with self._lock:
            if self._dynamic is None:
                self._dynamic = DynamicClient(self._api)
            return self._dynamic

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    # ---------------------------------------------------------------- reads

    def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""
        try:
            found = self._resource(api_version, kind).get(name=name, namespace=namespace)
        except NotFoundError:
            return None
        return dict(found.to_dict())

    def crd_exists(self, name: str) -> bool:
        """Whether a CustomResourceDefinition is installed (e.g. KEDA's ScaledObject)."""
        try:
            client.ApiextensionsV1Api(self._api).read_custom_resource_definition(name)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def kind_served(self, api_version: str, kind: str) -> bool:
        """Whether the API server serves a kind (discovery, refreshed once when missing)."""
        try:
            self._resource(api_version, kind)
            return True
        except ResourceNotFoundError:
            self.dynamic.resources.invalidate_cache()
            try:
                self._resource(api_version, kind)
                return True
            except ResourceNotFoundError:
                return False

    def secret_digest(self, namespace: str, name: str) -> str | None:
        """Digest of a Secret's data, or None when the Secret does not exist."""
        try:
            secret = client.CoreV1Api(self._api).read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return secret_digest(secret.data)

    # ---------------------------------------------------------------- writes

    def apply(self, desired: dict[str, Any], live: Mapping[str, Any] | None = None) -> bool:
        """Server-side apply `desired` unless `live` already holds it; True when written."""
        kind = desired["kind"]
        meta = desired["metadata"]
        if live is None:
            live = self.get(desired["apiVersion"], kind, meta.get("namespace"), meta["name"])
        if live is not None and is_subset(desired, live):
            return False
        self.dynamic.server_side_apply(
            self._resource(desired["apiVersion"], kind),
            body=desired,
            namespace=meta.get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )
        API_WRITES.labels(kind=kind, verb="apply").inc()
        log.info("applied %s %s/%s", kind, meta.get("namespace"), meta["name"])
        return True

    def delete_owned(
        self, api_version: str, kind: str, namespace: str, name: str, owner_uid: str
    ) -> bool:
        """Delete a child the InferenceService no longer needs, only if it owns it."""
        if not self.kind_served(api_version, kind):
            return False
        live = self.get(api_version, kind, namespace, name)
        if live is None:
            return False
        owners = (live.get("metadata") or {}).get("ownerReferences") or []
        if not any(owner.get("uid") == owner_uid for owner in owners):
            return False
        try:
            self._resource(api_version, kind).delete(name=name, namespace=namespace)
        except NotFoundError:
            return False
        API_WRITES.labels(kind=kind, verb="delete").inc()
        return True

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        """Set a Deployment's replicas through its scale subresource (server-side apply).

        Replicas are written apart from the Deployment's own apply so that the reconcile of
        the spec never carries (and so never resets) the autoscaler's value.
        """
        scale = self._resource("apps/v1", "Deployment").subresources["scale"]
        self.dynamic.server_side_apply(
            scale,
            body={
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"replicas": replicas},
            },
            name=name,
            namespace=namespace,
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )
        API_WRITES.labels(kind="Deployment", verb="scale").inc()

    def apply_status(
        self, namespace: str, name: str, live: Mapping[str, Any] | None, status: dict[str, Any]
    ) -> bool:
        """Write an InferenceService's status unless it equals the live one; True when written."""
        if live is not None and dict(live) == status:
            return False
        resource = self._resource(API_VERSION, KIND).subresources["status"]
        try:
            self.dynamic.server_side_apply(
                resource,
                body={
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "metadata": {"name": name, "namespace": namespace},
                    "status": status,
                },
                name=name,
                namespace=namespace,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )
        except NotFoundError:
            return False  # deleted meanwhile: nothing to report on
        API_WRITES.labels(kind=KIND, verb="status").inc()
        return True

    def event(self, body: Mapping[str, Any], *, warning: bool, reason: str, message: str) -> None:
        """Post an Event on an InferenceService (kopf batches and posts it)."""
        target = kopf.Body(cast(Any, dict(body)))  # kopf types bodies as TypedDicts
        if warning:
            kopf.warn(target, reason=reason, message=message)
        else:
            kopf.info(target, reason=reason, message=message)
        API_WRITES.labels(kind="Event", verb="create").inc()
