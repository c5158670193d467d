"""The operator image's Dockerfile, checked by structure (no container engine on these machines).

What is checked is what a reviewer would look for: a multi-stage build from a fully pinned base,
the package installed only from the wheel built from this repository (no test extras, no pip
cache, no compilers in the final image), a numeric non-root user that matches the chart, and an
entrypoint that runs `tritonop run`. A small parser turns the Dockerfile into stages of
(instruction, arguments) so each check reads like the rule it enforces.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "operator" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CHART_DEPLOYMENT = ROOT / "charts" / "tritonop" / "templates" / "deployment.yaml"


@dataclass
class Stage:
    """One FROM ... section: its base, its name and its instructions in order."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [arguments for name, arguments in self.instructions if name == instruction]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile (continuation lines joined)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or (stripped.startswith("#") and not pending):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = arguments.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            if instruction == "ARG" and "=" in arguments:
                key, _, value = arguments.partition("=")
                global_args[key.strip()] = value.strip()
        else:
            stages[-1].instructions.append((instruction, arguments.strip()))
    return global_args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse(DOCKERFILE.read_text())


def resolve(base: str, global_args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m.group(1) or m.group(2)], base)


def test_multi_stage_build_from_one_pinned_python_base(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    global_args, stages = dockerfile
    assert len(stages) >= 2, "build and runtime stages"
    assert stages[0].name == "build"
    bases = {resolve(stage.base, global_args) for stage in stages}
    assert len(bases) == 1, f"all stages share one base, got {bases}"
    (base,) = bases
    # Fully pinned: python:<major>.<minor>.<patch>-slim-<debian release>, optionally @sha256.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", base), (
        base
    )
    assert "latest" not in base


def test_runtime_stage_installs_only_the_wheel_built_from_this_repository(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    _, stages = dockerfile
    build, runtime = stages[0], stages[-1]
    copied = " ".join(build.all("COPY"))
    assert "pyproject.toml" in copied and "operator/tritonop" in copied
    build_runs = " ".join(build.all("RUN"))
    assert re.search(r"pip wheel [^&]*--no-deps[^&]*--wheel-dir /wheels \.", build_runs)
    runtime_runs = " ".join(runtime.all("RUN"))
    install = re.search(r"pip install ([^&]*)", runtime_runs)
    assert install, "the runtime stage pip-installs the package"
    words = shlex.split(install.group(1))
    assert "--no-index" in words, "nothing may come from an index in the runtime stage"
    assert "--find-links=/wheels" in words
    assert words[-1] == "tritonop", "the package itself, without extras"
    assert "from=build" in runtime_runs and "target=/wheels" in runtime_runs
    assert not runtime.all("COPY"), "the runtime stage copies nothing: the wheels are mounted"


def test_no_test_extras_no_pip_cache_no_compilers(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    _, stages = dockerfile
    text = DOCKERFILE.read_text()
    assert "[test]" not in text and ".[test" not in text
    for stage in stages:
        for run in stage.all("RUN"):
            for command in re.findall(r"pip (?:install|wheel)[^&]*", run):
                assert "--no-cache-dir" in command, command
        assert "PIP_NO_CACHE_DIR=1" in " ".join(stage.all("ENV"))
    runtime_runs = " ".join(stages[-1].all("RUN"))
    for compiler in ("gcc", "g++", "build-essential", "apt-get install", "clang"):
        assert compiler not in runtime_runs


def test_runs_as_the_numeric_non_root_user_the_chart_expects(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    _, stages = dockerfile
    users = stages[-1].all("USER")
    assert users, "the runtime stage sets USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0
    assert not group or (group.isdigit() and int(group) != 0)
    chart = CHART_DEPLOYMENT.read_text()
    assert set(re.findall(r"runAsUser: (\d+)", chart)) == {user}


def test_entrypoint_runs_the_operator_and_exposes_the_chart_ports(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    _, stages = dockerfile
    runtime = stages[-1]
    assert json.loads(runtime.all("ENTRYPOINT")[-1]) == ["tritonop"]
    assert json.loads(runtime.all("CMD")[-1]) == ["run"]
    exposed = {int(port.split("/")[0]) for line in runtime.all("EXPOSE") for port in line.split()}
    chart_ports = {
        int(port) for port in re.findall(r"containerPort: (\d+)", CHART_DEPLOYMENT.read_text())
    }
    assert exposed == chart_ports == {8080, 9090}


def test_oci_labels(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = dockerfile
    labels = " ".join(stages[-1].all("LABEL"))
    for key in ("title", "description", "version", "revision", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes (prefix dirs included)."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        matched = fnmatch.fnmatch(path, body) or path.startswith(body + "/")
        if body.startswith("**/"):
            matched = (
                matched
                or fnmatch.fnmatch(path, body[3:])
                or any(fnmatch.fnmatch(part, body[3:]) for part in path.split("/"))
            )
        if matched:
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_context_to_what_the_image_is_built_from() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    # Everything the Dockerfile copies is in the context ...
    _, stages = parse(DOCKERFILE.read_text())
    for stage in stages:
        for copy in stage.all("COPY"):
            words = [word for word in copy.split() if not word.startswith("--")]
            for source in words[:-1]:
                assert not _ignored(source, patterns), f"{source} is excluded from the context"
    assert not _ignored("operator/tritonop/templates/deployment.yaml.j2", patterns)
    # ... and nothing else: no VCS data, tests, charts, caches or build leftovers.
    for path in (
        ".git/config",
        "tests/test_chart.py",
        "e2e/conftest.py",
        "charts/tritonop/values.yaml",
        "operator/tritonop/__pycache__/cli.cpython-311.pyc",
        "operator/tritonop.egg-info/PKG-INFO",
        ".venv/bin/python",
        "operator/Dockerfile",
    ):
        assert _ignored(path, patterns), f"{path} would be sent to the build"
