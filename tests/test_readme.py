"""The README's promises that can drift: its two commands, CI running the test command, and the
settings table covering every operator setting."""

from __future__ import annotations

import re
from pathlib import Path

from tritonop.config import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def first_commands() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert block, "README has no shell block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_first_two_commands_are_the_demo_and_the_tests() -> None:
    assert first_commands()[:2] == ["make demo", "make test"]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert first_commands()[1] in ci


def test_makefile_has_both_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_every_operator_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`TRITONOP_{name.upper()}`" in README, (
            f"TRITONOP_{name.upper()} missing from README"
        )
