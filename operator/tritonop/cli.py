"""Command line: `tritonop run | render | crd | simulate`.

This is one of the three modules allowed to do I/O: it reads files and prints. Each subcommand
parses its arguments, calls the pure core, and turns the result into text and an exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID_INPUT = 2


def _add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `tritonop simulate` (owned by the simulator)."""
    parser.add_argument("--spec", required=True, help="InferenceService YAML whose autoscaling is simulated")


def _simulate(args: argparse.Namespace) -> int:
    """Run the autoscaling simulator (owned by the simulator)."""
    print("tritonop simulate: not available yet", file=sys.stderr)
    return EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="tritonop", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
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
