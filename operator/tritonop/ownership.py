"""Whose object is it: the rule that the operator never writes what it does not control.

A child is written only when it does not exist yet or its controller ownerReference is this
InferenceService (by uid). Anything else of the same kind and name — a user's Service, a
Deployment of another tool, a child of an earlier InferenceService of the same name that the
garbage collector has not removed yet — is left exactly as it is, and the service says
`ResourceExists`, naming the object and its controller. Taking it over instead (server-side
apply with force) rewrites the object and hangs it on the InferenceService, so that deleting
the InferenceService makes the garbage collector delete the user's object.

Pure: the desired child, what the API server returned for its name, and the service's uid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def controller_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ownerReference marked controller, if any."""
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((owner for owner in owners if owner.get("controller")), None)


def conflict(desired: Mapping[str, Any], live: Mapping[str, Any] | None, uid: str) -> str | None:
    """Why `desired` may not be written over `live`; None when it may (absent, or ours)."""
    if live is None:
        return None
    controller = controller_of(live)
    if controller is not None and controller.get("uid") == uid:
        return None
    kind, name = desired["kind"], desired["metadata"]["name"]
    if controller is None:
        whose = "it has no controller"
    else:
        whose = f"it is controlled by {controller.get('kind')} {controller.get('name')}"
        if controller.get("kind") == desired.get("kind") or controller.get("name") == name:
            whose += f" (uid {controller.get('uid')})"
    return f"{kind} {name} already exists and this InferenceService does not control it ({whose})"


def conflicts_message(problems: Iterable[str]) -> str:
    """The ResourceExists message: every conflict, then the fix."""
    return (
        "; ".join(problems)
        + ". Nothing was written: rename the InferenceService, or remove or rename the existing "
        "object (the operator retries by itself)"
    )
