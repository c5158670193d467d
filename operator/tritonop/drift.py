"""The periodic resync's shortcut: a service whose inputs and children have not changed since
its last healthy reconcile is neither rendered nor read back.

The resync (repair.py, every `TRITONOP_RESYNC_INTERVAL_SECONDS`) exists for what no watch
reports: a child deleted or edited while the operator was not looking, a rotated credentials
Secret. A full reconcile answers that by rendering every child and reading each one back, about
eight requests and a jinja/YAML render per service; at 1,000 services that was 80% of the
operator's steady CPU with nothing to do (e2e/bench/SCALE.md). Instead:

- every healthy reconcile leaves a fingerprint (`Retries.succeeded`) of what it read and what
  it left: the service's uid, generation, labels and spec, the node facts placement reads, the
  credentials Secret's version, whether KEDA is installed, and the version of each child as
  it read it or as the API server answered its write (the admin Secret included);
- the resync computes the same fingerprint from one or two metadata reads of Secrets by name
  (the operator never lists Secrets), kopf's index of Deployments and one metadata-only list
  per other child kind shared by every service (`ChildVersions`, at most
  `SNAPSHOT_AGE_FRACTION` of the resync interval old), and reconciles fully only when the two
  differ.

A child's version is its `metadata.generation` where the API server keeps one (it changes with
the spec, not with the status controllers write every few seconds: a Deployment's, a PDB's, an
HPA's), else its resourceVersion. Versions are taken from the API server's answers, never
guessed, so anyone else's edit or delete after the reconcile changes the fingerprint and is
repaired by the next resync that lists it: within 1.1 resync intervals. A reconcile that
scales the Deployment leaves no fingerprint (the scale answer carries no generation), nor does
one that fails: the next resync is a full one.

The fingerprint also rides, as `status.reconciledDigest`, on the status write a reconcile makes
anyway (it never causes one), so a restarted operator resumes each service as a resync would:
at 1,000 services a restart is then a few metadata reads per service instead of 1,000 full
reconciles at once, which were its CPU and its memory peak (e2e/bench/SCALE.md).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tritonop.runtime import KubeApi

#: Children whose versions come from the shared lists (the Deployment is in kopf's index;
#: Secrets are read by name only).
LISTED_KINDS: tuple[str, ...] = (
    "Service",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "HorizontalPodAutoscaler",
    "ScaledObject",
)

SNAPSHOT_AGE_FRACTION = 0.1
"""How old, as a fraction of the resync interval, the shared child lists may be when a resync
reads them: 30 s at the default 300 s, so 1,000 services cost five lists every 30 s instead of
a read of every child every 300 s."""

Versions = Mapping[tuple[str, str], str]
"""`object_version` by (namespace, name) of every object of one kind the operator manages."""


def object_version(metadata: Mapping[str, Any]) -> str:
    """What identifies an object's desired state: its generation where the API server keeps
    one, else its resourceVersion (a Service, a Secret)."""
    generation = metadata.get("generation")
    if generation:
        return f"g{generation}"
    return f"r{metadata.get('resourceVersion', '')}"


def child_lister(
    kube: KubeApi, namespaces: Sequence[str], labels: Mapping[str, str]
) -> Callable[[str], Versions]:
    """A lister for `ChildVersions`: one list of the whole cluster, or one per watched
    namespace (a namespaced install may list nothing else), of the objects with `labels`."""
    selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))

    def versions(kind: str) -> Versions:
        found: dict[tuple[str, str], str] = {}
        scopes: Sequence[str | None] = namespaces or [None]
        for namespace in scopes:
            for where, metadata in kube.list_metadata(kind, namespace, selector).items():
                found[where] = object_version(metadata)
        return found

    return versions


class ChildVersions:
    """The operator's children of each listed kind, as versions, refreshed together by
    whichever resync first finds them older than `max_age` (the others wait for that list)."""

    def __init__(
        self,
        lister: Callable[[str], Versions],
        monotonic: Callable[[], float],
        max_age: float,
    ) -> None:
        self._lister = lister
        self._monotonic = monotonic
        self._max_age = max_age
        self._lock = threading.Lock()
        self._taken_at: float | None = None
        self._versions: dict[str, Versions] = {}

    def version(self, kind: str, namespace: str, name: str) -> str | None:
        """The child's version as of a list at most `max_age` old; None when absent.

        A failed list raises (the caller falls back to a full reconcile) and is tried again by
        the next caller."""
        with self._lock:
            now = self._monotonic()
            if self._taken_at is None or now - self._taken_at >= self._max_age:
                self._versions = {kind: self._lister(kind) for kind in LISTED_KINDS}
                self._taken_at = now
            return self._versions[kind].get((namespace, name))


@dataclass(frozen=True)
class ResyncInputs:
    """Everything a reconcile of one service reads or leaves that can change without an event
    to it."""

    service: Mapping[str, Any]
    """uid, generation, labels and spec of the InferenceService."""
    placement: tuple[str, str, str]
    """The placement decision (mode, reason, message): what the nodes mean for the render
    (a node that changes no decision changes no fingerprint)."""
    secret_version: str | None
    """The credentials Secret's resourceVersion (None: not named, or missing)."""
    keda_available: bool
    admin_secret: str | None
    deployment: str | None
    children: tuple[tuple[str, str | None], ...]
    """(kind, version or None when absent) for each of `LISTED_KINDS`, in that order."""


def service_identity(body: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an InferenceService a reconcile reads (not its status or annotations)."""
    meta = body.get("metadata") or {}
    return {
        "uid": meta.get("uid"),
        "generation": meta.get("generation"),
        "labels": meta.get("labels") or {},
        "spec": body.get("spec") or {},
    }


def resync_inputs(
    body: Mapping[str, Any],
    placement: tuple[str, str, str],
    secret_version: str | None,
    keda_available: bool,
    versions: Mapping[str, str | None],
) -> ResyncInputs:
    """The inputs of one service, with `versions` by kind: the admin "Secret", the
    "Deployment" and each of `LISTED_KINDS` (None: absent). The reconcile and the resync both
    build them here, so the two digests can only differ in what they saw."""
    return ResyncInputs(
        service=service_identity(body),
        placement=placement,
        secret_version=secret_version,
        keda_available=keda_available,
        admin_secret=versions.get("Secret"),
        deployment=versions.get("Deployment"),
        children=tuple((kind, versions.get(kind)) for kind in LISTED_KINDS),
    )


def fingerprint(inputs: ResyncInputs) -> str:
    """A digest of `inputs`: equal digests mean a reconcile would find what the last one left."""
    text = json.dumps(asdict(inputs), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
