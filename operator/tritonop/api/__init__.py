"""The InferenceService API: models, validation and the generated CRD."""

from tritonop.api.models import (
    GPU,
    Autoscaling,
    Behavior,
    Condition,
    InferenceServiceSpec,
    InferenceServiceStatus,
    ModelRepository,
    Panic,
    ScalingPolicy,
    ScalingRules,
    Targets,
)
from tritonop.api.validation import ParsedService, SpecError, parse_object, parse_spec

__all__ = [
    "GPU",
    "Autoscaling",
    "Behavior",
    "Condition",
    "InferenceServiceSpec",
    "InferenceServiceStatus",
    "ModelRepository",
    "Panic",
    "ParsedService",
    "ScalingPolicy",
    "ScalingRules",
    "SpecError",
    "Targets",
    "parse_object",
    "parse_spec",
]
