"""Command line: `tritonop run | render | crd | simulate`.

This is one of the three modules allowed to do I/O: it reads files and prints. Each subcommand
parses its arguments, calls the pure core, and turns the result into text and an exit status.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID_INPUT = 2


def _add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `tritonop simulate` (owned by the simulator)."""
    parser.add_argument(
        "--spec", required=True, help="InferenceService YAML whose autoscaling is simulated"
    )


def _simulate(args: argparse.Namespace) -> int:
    """Run the autoscaling simulator (owned by the simulator)."""
    print("tritonop simulate: not available yet", file=sys.stderr)
    return EXIT_FAILURE


def _dump_yaml(documents: Sequence[dict[str, Any]], out: TextIO) -> None:
    """Multi-document YAML in the keys' own order (stable, reviewable diffs)."""
    out.write(yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False))


def _read_documents(path: str) -> list[dict[str, Any]]:
    """YAML documents of a file (`-` is stdin); `kind: List` objects are flattened."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    documents: list[dict[str, Any]] = []
    for document in yaml.safe_load_all(text):
        if not document:
            continue
        if not isinstance(document, dict):
            raise ValueError(
                f"{path}: every YAML document must be a mapping, got {type(document).__name__}"
            )
        if document.get("kind", "").endswith("List") and "items" in document:
            documents.extend(document["items"] or [])
        else:
            documents.append(document)
    return documents


def _crd(args: argparse.Namespace) -> int:
    """Print the InferenceService CRD generated from the API models."""
    from tritonop.api.crd import crd

    _dump_yaml([crd()], sys.stdout)
    return EXIT_OK


def _render(args: argparse.Namespace) -> int:
    """Print the children of each InferenceService in a file, without a cluster."""
    from tritonop import KIND
    from tritonop.api.validation import SpecError, parse_object
    from tritonop.config import Settings
    from tritonop.placement import decide, node_info
    from tritonop.reconcile import initial_replicas
    from tritonop.render import render_children
    from tritonop.status import workload_state

    try:
        documents = _read_documents(args.file)
        nodes = (
            [node_info(n) for n in _read_documents(args.nodes) if n.get("kind") == "Node"]
            if args.nodes
            else None
        )
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"tritonop render: {error}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    overrides: dict[str, Any] = {"gpu_fallback": args.fallback} if args.fallback else {}
    settings = Settings(**overrides)
    services = [d for d in documents if d.get("kind") == KIND]
    if not services:
        print(f"tritonop render: no {KIND} in {args.file}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    parsed, problems = [], []
    for document in services:
        try:
            parsed.append(parse_object(document))
        except SpecError as error:
            problems.append(
                f"InferenceService {error.name}:\n" + "\n".join(f"  {p}" for p in error.problems)
            )
    if problems:
        print(
            "tritonop render: invalid input, nothing rendered\n" + "\n".join(problems),
            file=sys.stderr,
        )
        return EXIT_INVALID_INPUT
    for service in parsed:
        placement = decide(service.spec, nodes, settings.gpu_fallback)
        replicas = initial_replicas(service, workload_state(None, []))
        children = render_children(service, placement, settings, replicas=replicas)
        sys.stdout.write(
            f"# InferenceService {service.namespace}/{service.name}: placement {placement.mode} "
            f"({placement.reason}): {placement.message}\n"
        )
        print(
            f"{service.name}: placement {placement.mode} ({placement.reason}): {placement.message}",
            file=sys.stderr,
        )
        sys.stdout.write("---\n")
        _dump_yaml(children, sys.stdout)
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    """Start the operator (blocks until interrupted)."""
    import kopf
    from prometheus_client import start_http_server

    from tritonop import handlers
    from tritonop.config import Settings

    overrides: dict[str, Any] = {}
    if args.namespace:
        overrides["namespaces"] = ",".join(args.namespace)
    settings = Settings(**overrides)
    handlers.RUNTIME.settings = settings
    kopf.configure(
        verbose=settings.log_level == "DEBUG",
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger().setLevel(settings.log_level)
    start_http_server(settings.metrics_port, addr=settings.listen_address)
    namespaces = settings.namespace_list
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://{settings.listen_address}:{settings.health_port}/healthz",
        standalone=not settings.peering,
        peering_name=settings.peering or None,
    )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="tritonop", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    crd = commands.add_parser("crd", help="print the InferenceService CustomResourceDefinition")
    crd.set_defaults(handler=_crd)
    render = commands.add_parser(
        "render", help="print the objects the operator would create, without a cluster"
    )
    render.add_argument(
        "-f", "--file", required=True, help="YAML with InferenceServices ('-' for stdin)"
    )
    render.add_argument(
        "--nodes",
        help="YAML of Node objects (a List or several documents) to decide placement from; "
        "without it GPU capacity is assumed",
    )
    render.add_argument(
        "--fallback",
        choices=["CPU", "None"],
        help="the operator's default gpu.fallback (TRITONOP_GPU_FALLBACK)",
    )
    render.set_defaults(handler=_render)
    run = commands.add_parser("run", help="run the operator (settings from TRITONOP_* variables)")
    run.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="watch this namespace (repeatable); default: TRITONOP_NAMESPACES or the whole cluster",
    )
    run.set_defaults(handler=_run)
    simulate = commands.add_parser(
        "simulate", help="rehearse an autoscaling policy against a load trace, without a cluster"
    )
    _add_simulate_arguments(simulate)
    simulate.set_defaults(handler=_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tritonop` console script."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
