"""How long the service's own new pods take to serve: creation to Ready, from pod data.

Pure. The objective's headroom depends on the cold start (image pull, Triton start, model
load, readiness), which differs per model and cluster, so the policy learns it from the pods
it started rather than asking the user (`autoscaling.coldStartSeconds` overrides it).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

#: How many of the most recently started pods the estimate looks at.
RECENT_PODS = 5


def _timestamp(text: object) -> float | None:
    """RFC 3339 (as the API server writes it) to epoch seconds, or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def pod_start(pod: Mapping[str, Any]) -> tuple[float, float] | None:
    """(creation, Ready) times of a Ready pod, epoch seconds; None for a pod not Ready.

    Ready's lastTransitionTime is when the pod last became Ready: for a pod that never
    flapped, the end of its cold start.
    """
    created = _timestamp((pod.get("metadata") or {}).get("creationTimestamp"))
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            ready = _timestamp(condition.get("lastTransitionTime"))
            if created is not None and ready is not None:
                return created, ready
    return None


def cold_start_seconds(starts: Iterable[tuple[float, float]]) -> float | None:
    """The typical cold start of the latest RECENT_PODS pods: median of Ready - creation.

    Pods that were Ready at creation (none in a real cluster; the simulator's initial
    replicas) or whose times are out of order say nothing and are skipped. The median keeps
    one pod that waited long for a node from setting the estimate alone. None: no pod seen.
    """
    durations = [
        (ready, ready - created)
        for created, ready in starts
        if ready > created and ready - created < 86_400
    ]
    if not durations:
        return None
    latest = sorted(durations)[-RECENT_PODS:]
    return float(statistics.median(duration for _, duration in latest))
