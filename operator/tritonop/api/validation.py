"""Turn raw InferenceService objects into validated models, with errors a user can act on.

Admission (the CRD schema and its CEL rules) rejects most bad specs; this is the same judgement
for everything that reaches the operator another way: `tritonop render` on a file, objects that
predate a stricter CRD, or clusters where the CRD was installed by hand without validation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from tritonop import API_VERSION, KIND
from tritonop.api.models import DNS1035_PATTERN, MAX_NAME_LENGTH, InferenceServiceSpec


class SpecError(ValueError):
    """An InferenceService that cannot be reconciled as written; `problems` name field and fix."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.name = name
        self.problems = problems
        super().__init__(f"InferenceService {name}: " + "; ".join(problems))


@dataclass(frozen=True)
class ParsedService:
    """A validated InferenceService: identity plus spec, as plain data for the pure core."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: InferenceServiceSpec
    labels: dict[str, str]


def _location(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as the field path a user sees in YAML (spec.gpu.count)."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item.startswith(("function-", "str", "int", "float", "bool", "literal")):
            continue  # union branch names are pydantic internals
        else:
            parts.append(f".{item}" if parts else item)
    return "".join(parts)


def describe(error: ValidationError, prefix: str = "spec") -> list[str]:
    """One line per problem, `spec.path: message`, without pydantic's internal vocabulary."""
    lines = []
    for item in error.errors(include_url=False):
        where = _location((prefix, *item["loc"]))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field; check its spelling against `kubectl explain tis.spec`"
        elif item["type"] == "missing":
            message = "required field is missing"
        lines.append(f"{where}: {message}")
    return sorted(set(lines), key=lines.index)


def validate_name(name: str) -> list[str]:
    """The naming rule the CRD's root CEL rule enforces."""
    if len(name) > MAX_NAME_LENGTH or not re.match(DNS1035_PATTERN, name):
        return [
            f"metadata.name: {name!r} must be at most {MAX_NAME_LENGTH} characters of lowercase "
            "letters, digits and '-', starting with a letter (it names the Service and the pods)"
        ]
    return []


def parse_spec(name: str, spec: dict[str, Any] | None) -> InferenceServiceSpec:
    """Validate a spec mapping; raise SpecError listing every problem."""
    try:
        return InferenceServiceSpec.model_validate(spec or {})
    except ValidationError as error:
        raise SpecError(name, describe(error)) from None


def parse_object(obj: dict[str, Any]) -> ParsedService:
    """Validate a whole InferenceService object as read from YAML or the API."""
    metadata = obj.get("metadata") or {}
    name = str(metadata.get("name", ""))
    problems: list[str] = []
    if obj.get("apiVersion") != API_VERSION or obj.get("kind") != KIND:
        problems.append(
            f"apiVersion/kind: expected {API_VERSION} {KIND}, got "
            f"{obj.get('apiVersion')} {obj.get('kind')}"
        )
    problems += validate_name(name)
    try:
        spec = parse_spec(name, obj.get("spec"))
    except SpecError as error:
        problems += error.problems
    if problems:
        raise SpecError(name or "<unnamed>", problems)
    return ParsedService(
        name=name,
        namespace=str(metadata.get("namespace") or "default"),
        uid=str(metadata.get("uid", "")),
        generation=int(metadata.get("generation") or 0),
        spec=spec,
        labels=dict(metadata.get("labels") or {}),
    )
