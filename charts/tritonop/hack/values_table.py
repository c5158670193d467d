#!/usr/bin/env python3
"""Generate the chart's values table from the comments in values.yaml, or check it is current.

    python charts/tritonop/hack/values_table.py          rewrite the tables
    python charts/tritonop/hack/values_table.py --check  exit 1 and name stale files

values.yaml is the one place a value is described: each key has a comment block directly
above it whose first line starts with "# --" (further "#" lines continue it; lines starting
with "##" are notes for the file's reader, not descriptions). The table goes between the
markers `<!-- chart-values:start -->` and `<!-- chart-values:end -->` in charts/tritonop/README.md
and, when it has them, in the repository's README.md.

Why a line parser instead of a YAML library with comment support: PyYAML drops comments and
the project does not depend on a round-trip YAML library. values.yaml is kept to the simple
block-mapping subset this parser understands, and `undescribed_keys` cross-checks the parser
against PyYAML's view of the same file, so a key the parser missed cannot go unnoticed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = CHART_DIR.parents[1]
VALUES = CHART_DIR / "values.yaml"
SCHEMA = CHART_DIR / "values.schema.json"
TARGETS = (CHART_DIR / "README.md", REPO_ROOT / "README.md")
START = "<!-- chart-values:start -->"
END = "<!-- chart-values:end -->"
REGENERATE = "python charts/tritonop/hack/values_table.py"

_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?: |$)")
_DESCRIPTION_START = re.compile(r"^ *# -- ?(?P<text>.*)$")
_CONTINUATION = re.compile(r"^ *#(?!#) ?(?P<text>.*)$")


@dataclass(frozen=True)
class ValueDoc:
    """One key of values.yaml: its dotted path and the description written above it."""

    path: str
    description: str


def described_keys(text: str) -> list[ValueDoc]:
    """Every mapping key of values.yaml, in file order, with its description ("" if none)."""
    docs: list[ValueDoc] = []
    parents: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    comment: list[str] | None = None  # the description block being collected
    for line in text.splitlines():
        if not line.strip():
            comment = None
            continue
        start = _DESCRIPTION_START.match(line)
        if start:
            comment = [start.group("text").strip()]
            continue
        continuation = _CONTINUATION.match(line)
        if continuation:
            if comment is not None:
                comment.append(continuation.group("text").strip())
            continue
        if line.lstrip().startswith("#"):  # a "##" note ends any description
            comment = None
            continue
        key_line = _KEY_LINE.match(line)
        if key_line is None:
            comment = None  # list items or continuation of a flow value: not keys
            continue
        indent = len(key_line.group("indent"))
        while parents and parents[-1][0] >= indent:
            parents.pop()
        path = ".".join([*(key for _, key in parents), key_line.group("key")])
        docs.append(ValueDoc(path, " ".join(part for part in comment or [] if part)))
        parents.append((indent, key_line.group("key")))
        comment = None
    return docs


def value_paths(values: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of every key in the loaded values, parents before children."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, Mapping):
            yield from value_paths(value, f"{path}.")


def undescribed_keys(text: str) -> list[str]:
    """Keys of values.yaml without a "# --" description, or that the line parser missed."""
    values = yaml.safe_load(text) or {}
    descriptions = {doc.path: doc.description for doc in described_keys(text)}
    return [path for path in value_paths(values) if not descriptions.get(path)]


def _lookup(values: Mapping[str, Any], path: str) -> Any:
    node: Any = values
    for key in path.split("."):
        node = node[key]
    return node


def schema_node(schema: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    """The values.schema.json node of a dotted values path; None when the schema lacks it."""
    node: Mapping[str, Any] = schema
    for key in path.split("."):
        properties = node.get("properties", {})
        if key not in properties:
            return None
        node = properties[key]
    return node


def _type_name(node: Mapping[str, Any]) -> str:
    kinds = node.get("type", "any")
    names = {"integer": "int", "boolean": "bool", "array": "list"}
    if isinstance(kinds, str):
        kinds = [kinds]
    text = " or ".join(names.get(kind, kind) for kind in kinds)
    if "enum" in node:
        text += " (" + ", ".join(json.dumps(choice) for choice in node["enum"]) + ")"
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_table(text: str, schema: Mapping[str, Any]) -> str:
    """The Markdown values table of the given values.yaml text; types come from the schema."""
    values = yaml.safe_load(text) or {}
    rows = [
        "| Key | Type | Default | Description |",
        "|-----|------|---------|-------------|",
    ]
    for doc in described_keys(text):
        value = _lookup(values, doc.path)
        # A section has no default of its own: its keys follow in their own rows.
        default = "" if isinstance(value, Mapping) and value else f"`{json.dumps(value)}`"
        node = schema_node(schema, doc.path)
        if node is None:
            raise ValueError(f"values.schema.json has no entry for {doc.path}")
        rows.append(
            f"| `{doc.path}` | {_cell(_type_name(node))} | {_cell(default)} | {_cell(doc.description)} |"
        )
    return "\n".join(rows) + "\n"


def replace_block(document: str, block: str) -> str | None:
    """The document with the text between the markers replaced; None without markers."""
    start = document.find(START)
    end = document.find(END)
    if start < 0 or end < start:
        return None
    generated = f"{START}\n<!-- generated by {REGENERATE} from charts/tritonop/values.yaml; do not edit -->\n"
    return document[:start] + generated + block + document[end:]


def expected_documents() -> dict[Path, str]:
    """Each target file that has the markers, with its up-to-date table."""
    values_text = VALUES.read_text()
    missing = undescribed_keys(values_text)
    if missing:
        raise ValueError(f"{VALUES}: keys without a '# --' description: {', '.join(missing)}")
    table = render_table(values_text, json.loads(SCHEMA.read_text()))
    documents: dict[Path, str] = {}
    for target in TARGETS:
        if not target.exists():
            continue
        updated = replace_block(target.read_text(), table)
        if updated is not None:
            documents[target] = updated
    return documents


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    args = parser.parse_args(argv)
    try:
        documents = expected_documents()
    except ValueError as error:
        print(error, file=sys.stderr)
        return 1
    stale = [path for path, text in documents.items() if path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"stale values table: {path.relative_to(REPO_ROOT)} (regenerate: {REGENERATE})", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(documents[path])
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
