"""What goes wrong with the local cluster, as exceptions the CLIs and tests can tell apart."""

from __future__ import annotations

from typing import Any


class ClusterError(RuntimeError):
    """Starting, stopping or talking to the local cluster failed."""


class ApiError(ClusterError):
    """The API server answered with an HTTP error; ``status`` and the decoded ``body`` kept."""

    def __init__(self, method: str, path: str, status: int, body: Any):
        self.status = status
        self.body = body
        msg = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{method} {path}: HTTP {status}: {msg}")
