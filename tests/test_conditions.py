"""Condition types and reasons are API: one CamelCase word each, looked up by type, never by
position."""

from __future__ import annotations

import re

from tritonop import conditions as c
from tritonop.api.models import CONDITION_REASON_PATTERN
from tritonop.autoscale.types import ConditionFlag


def test_every_type_and_reason_is_one_camelcase_word() -> None:
    words = {
        name: value for name, value in vars(c).items() if name.isupper() and isinstance(value, str)
    }
    assert len(words) > 40
    for name, value in words.items():
        assert re.fullmatch(CONDITION_REASON_PATTERN, value) and value[0].isupper(), name


def test_the_summary_comes_first_and_every_type_has_a_place() -> None:
    assert c.CONDITION_ORDER[0] == c.READY
    assert len(set(c.CONDITION_ORDER)) == 6


def test_a_condition_is_found_by_type_wherever_it_is() -> None:
    status = {
        "conditions": [
            {"type": c.PLACED, "status": "True"},
            {"type": c.READY, "status": "False", "reason": c.ROLLOUT_IN_PROGRESS},
        ]
    }
    assert c.find_condition(status, c.READY)["reason"] == c.ROLLOUT_IN_PROGRESS
    assert c.find_condition(status, c.AVAILABLE) == {}
    assert c.find_condition(None, c.READY) == {}
    assert c.find_condition({"conditions": None}, c.READY) == {}


def test_with_condition_replaces_by_type_or_appends() -> None:
    placed = ConditionFlag(c.PLACED, True, "GPUNodesAvailable", "")
    ready = ConditionFlag(c.READY, False, c.ROLLOUT_IN_PROGRESS, "")
    secret = ConditionFlag(c.READY, False, c.SECRET_NOT_FOUND, "create it")
    assert c.with_condition([placed, ready], secret) == [placed, secret]
    assert c.with_condition([placed], secret) == [placed, secret]
