"""Autoscaler objects (HPA, KEDA ScaledObject) for an InferenceService's autoscaling mode.

Placeholder so that `render.render_children` works before this module exists: engineer
"metrics" owns this file and replaces it with the real HPA and KEDA rendering.
"""

from __future__ import annotations

from typing import Any

from tritonop.api.validation import ParsedService
from tritonop.config import Settings


def render_autoscaler(service: ParsedService, settings: Settings) -> list[dict[str, Any]]:
    """No autoscaler objects yet: Operator and None modes need none, HPA and KEDA are pending."""
    return []
