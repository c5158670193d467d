"""The never-rules of the layering (docs/design/layering.md), checked on the source text.

The pure core (models, rendering, placement, the autoscaling policy, the simulator) takes plain
data and returns plain data, so it can be tested, simulated and reasoned about without a
cluster. That holds only while no pure module imports a client library that talks to the world
(kopf, kubernetes, aiohttp) or an edge module that does. The imports are read with `ast`, not
by importing the package, so the check sees every import — module-level, inside functions,
`from x import y`, relative — whatever import side effects or lazy imports hide, and it names
the module, the line and the import it objects to.

An import under `if TYPE_CHECKING:` is exempt: it never runs, so the pure module still runs
without the library; it only lets a pure module name an edge type in an annotation.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "operator"
PACKAGE = SOURCE / "tritonop"
LAYERING_DOC = ROOT / "docs" / "design" / "layering.md"

#: Client libraries that do I/O (or register handlers) the moment they are used.
IO_LIBRARIES = frozenset({"kopf", "kubernetes", "aiohttp"})

#: The edges: the only modules that may import IO_LIBRARIES. Everything else under
#: operator/tritonop is pure. (Some are planned by issue 9 and may not exist yet.)
EDGE_MODULES = frozenset(
    {
        "tritonop.handlers",
        "tritonop.k8s",
        "tritonop.cli",
        "tritonop.reconciler",
        "tritonop.repair",
        "tritonop.view",
        "tritonop.autoscale.loop",
        "tritonop.autoscale.metrics",
    }
)

FIX = "keep I/O in an edge module and hand the pure code plain data (docs/design/layering.md)"


@dataclass(frozen=True)
class Import:
    """One import statement, resolved to the absolute names it may bind."""

    names: tuple[str, ...]  # `from a import b` may be module a.b or attribute b of a: both
    line: int
    text: str


def module_name(path: Path) -> str:
    """`operator/tritonop/autoscale/metrics.py` -> `tritonop.autoscale.metrics`."""
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of the tree except the bodies of `if TYPE_CHECKING:` blocks."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _base_of(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a (possibly relative) `from ... import` reads from."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    anchor = package[: len(package) - (node.level - 1)]
    return ".".join([*anchor, node.module] if node.module else anchor)


def _dynamic_import(call: ast.Call) -> str | None:
    """The module of `importlib.import_module("x")` or `__import__("x")` given as a literal."""
    func = call.func
    named = (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id == "__import__"
    )
    if not named or not call.args or not isinstance(call.args[0], ast.Constant):
        return None
    target = call.args[0].value
    return target if isinstance(target, str) and not target.startswith(".") else None


def imports_of(source: str, module: str, *, is_package: bool = False) -> list[Import]:
    """The imports that run when `module` (with this source) runs, sorted by line."""
    found: list[Import] = []
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = tuple(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _base_of(node, module, is_package)
            names = (base, *(f"{base}.{alias.name}" for alias in node.names))
        elif isinstance(node, ast.Call) and (dynamic := _dynamic_import(node)):
            names = (dynamic,)
        else:
            continue
        text = ast.get_source_segment(source, node) or ""
        found.append(Import(names=names, line=node.lineno, text=text))
    return sorted(found, key=lambda found_import: found_import.line)


def forbidden(name: str) -> str | None:
    """Why a pure module may not import `name`, or None when it may."""
    if name.split(".")[0] in IO_LIBRARIES:
        return f"the I/O library {name.split('.')[0]}"
    for edge in EDGE_MODULES:
        if name == edge or name.startswith(f"{edge}."):
            return f"the edge module {edge}"
    return None


def violations(module: str, source: str, where: str, *, is_package: bool = False) -> list[str]:
    """One message per forbidden import of `module`, located as `where:line`."""
    problems = []
    for found in imports_of(source, module, is_package=is_package):
        reasons = sorted({reason for name in found.names if (reason := forbidden(name))})
        problems += [
            f"{module} ({where}:{found.line}) imports {reason}: `{found.text}`"
            for reason in reasons
        ]
    return problems


# ------------------------------------------------------------------------------------------
# The rule on the real tree
# ------------------------------------------------------------------------------------------


def test_pure_modules_import_no_io_library_and_no_edge_module() -> None:
    problems = [
        problem
        for module, path in package_modules().items()
        if module not in EDGE_MODULES
        for problem in violations(
            module,
            path.read_text(),
            str(path.relative_to(ROOT)),
            is_package=path.name == "__init__.py",
        )
    ]
    assert not problems, "pure modules that reach the world:\n  " + "\n  ".join(
        [*problems, f"fix: {FIX}"]
    )


def test_the_scan_covers_the_pure_core() -> None:
    """A moved package would leave the rule above checking nothing."""
    modules = set(package_modules())
    assert {"tritonop.placement", "tritonop.api.models", "tritonop.autoscale.policy"} <= modules
    assert {"tritonop.k8s", "tritonop.handlers", "tritonop.cli"} <= modules & EDGE_MODULES


# ------------------------------------------------------------------------------------------
# The checker itself: every form of import is seen, and the message says what is wrong
# ------------------------------------------------------------------------------------------

EVERY_FORM = """
from __future__ import annotations
import importlib
import json, kopf as k
from typing import TYPE_CHECKING
from kubernetes.client import ApiException
from . import metrics
from .metrics import scrape
from .. import k8s
from ..api import models

if TYPE_CHECKING:
    from tritonop.view import ClusterView
else:
    import aiohttp


def later() -> None:
    from tritonop.autoscale import loop
    importlib.import_module("kubernetes.config")
"""


def test_every_form_of_import_is_resolved_to_absolute_names() -> None:
    found = imports_of(EVERY_FORM, "tritonop.autoscale.policy")
    assert [(item.line, item.names) for item in found] == [
        (2, ("__future__", "__future__.annotations")),
        (3, ("importlib",)),
        (4, ("json", "kopf")),
        (5, ("typing", "typing.TYPE_CHECKING")),
        (6, ("kubernetes.client", "kubernetes.client.ApiException")),
        (7, ("tritonop.autoscale", "tritonop.autoscale.metrics")),
        (8, ("tritonop.autoscale.metrics", "tritonop.autoscale.metrics.scrape")),
        (9, ("tritonop", "tritonop.k8s")),
        (10, ("tritonop.api", "tritonop.api.models")),
        (15, ("aiohttp",)),  # the else branch runs; the TYPE_CHECKING body does not
        (19, ("tritonop.autoscale", "tritonop.autoscale.loop")),
        (20, ("kubernetes.config",)),
    ]


def test_relative_imports_of_a_package_init_start_at_the_package() -> None:
    (found,) = imports_of("from .metrics import scrape\n", "tritonop.autoscale", is_package=True)
    assert found.names[0] == "tritonop.autoscale.metrics"


def test_forbidden_names_the_library_or_the_edge_module() -> None:
    assert forbidden("kopf.on") == "the I/O library kopf"
    assert forbidden("kubernetes") == "the I/O library kubernetes"
    assert forbidden("tritonop.k8s.Kube") == "the edge module tritonop.k8s"
    assert forbidden("tritonop.autoscale.metrics") == "the edge module tritonop.autoscale.metrics"
    assert forbidden("tritonop.autoscale.metricsx") is None
    assert forbidden("tritonop.placement") is None and forbidden("prometheus_client") is None


def test_a_violation_names_module_line_and_import() -> None:
    source = (
        "import json\n\n\ndef nodes() -> None:\n"
        "    from tritonop.k8s import Kube\n"
        "    import aiohttp.web\n"
    )
    assert violations("tritonop.placement", source, "operator/tritonop/placement.py") == [
        "tritonop.placement (operator/tritonop/placement.py:5) imports the edge module "
        "tritonop.k8s: `from tritonop.k8s import Kube`",
        "tritonop.placement (operator/tritonop/placement.py:6) imports the I/O library "
        "aiohttp: `import aiohttp.web`",
    ]


# ------------------------------------------------------------------------------------------
# The module table in docs/design/layering.md says the same as this test
# ------------------------------------------------------------------------------------------

ROW = re.compile(r"^\| `(tritonop(?:\.\w+)*)(/?)` \|[^|]*\| (pure|edge) \|", re.M)


def documented_sides() -> dict[str, str]:
    """Module -> side from the table's rows; a name ending in / covers a whole package."""
    text = LAYERING_DOC.read_text()
    sides = {f"{name}/" if package else name: side for name, package, side in ROW.findall(text)}
    rows = [line for line in text.splitlines() if line.startswith("| `tritonop")]
    assert len(rows) == len(sides), f"a module row of {LAYERING_DOC.name} does not parse"
    return sides


def test_the_layering_doc_lists_every_module_on_its_side() -> None:
    sides = documented_sides()
    assert {name for name, side in sides.items() if side == "edge"} == EDGE_MODULES
    packages = [row.removesuffix("/") for row in sides if row.endswith("/")]
    undocumented = [
        module
        for module in package_modules()
        if module not in sides
        and not any(module == package or module.startswith(f"{package}.") for package in packages)
    ]
    assert not undocumented, f"add rows for {undocumented} to {LAYERING_DOC.relative_to(ROOT)}"
