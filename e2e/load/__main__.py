"""`python -m e2e.load`: offer load to an InferenceService's pods (or fixed endpoints).

    python -m e2e.load --kubeconfig K --namespace N --name X --profile step:5:30@60 \\
        --duration 120 --max-requests 20000
    python -m e2e.load --endpoint 127.0.0.1:8000 --profile constant:20 --duration 10 \\
        --max-requests 500

Profiles: constant:R | step:R0:R1@T1[:R2@T2...] | ramp:R0:R1@T | pattern:NAME | trace:CSV
(requests per second, seconds from the start; see e2e/load/profiles.py). Both --duration and
--max-requests are required: every run is bounded in time and in count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from .generator import (
    Endpoint,
    EndpointSource,
    KubernetesEndpoints,
    LoadConfig,
    StaticEndpoints,
    is_loopback,
    run_load,
    summary_text,
)
from .profiles import ProfileError, parse_profile


def _endpoint(text: str) -> Endpoint:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected IP:PORT, got {text!r}")
    if not is_loopback(host):
        raise argparse.ArgumentTypeError(f"{host} is outside 127.0.0.0/8; refusing to dial it")
    return Endpoint(text, host, int(port))


def build_parser() -> argparse.ArgumentParser:
    """Arguments of the load generator."""
    parser = argparse.ArgumentParser(
        prog="python -m e2e.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_argument_group("target (an InferenceService, or fixed endpoints)")
    target.add_argument("--kubeconfig", help="kubeconfig of the cluster (default: $KUBECONFIG)")
    target.add_argument("--namespace", default="default")
    target.add_argument("--name", help="InferenceService name (its pods receive the load)")
    target.add_argument(
        "--endpoint", action="append", type=_endpoint, default=[], metavar="IP:PORT"
    )
    parser.add_argument("--profile", required=True, help="load profile, e.g. step:5:30@60")
    parser.add_argument("--duration", type=float, required=True, help="seconds (bound)")
    parser.add_argument("--max-requests", type=int, required=True, help="requests (bound)")
    parser.add_argument("--model", default="simple")
    parser.add_argument("--window", type=float, default=5.0, help="seconds between progress lines")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--no-probe", action="store_true", help="route to Ready pods unprobed")
    parser.add_argument(
        "--wait-for-pods",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wait this long for a first ready pod before starting the clock",
    )
    parser.add_argument("--json", type=Path, help="write the summary and windows here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one load run; exit 0 when it ran (errors are data, reported in the summary)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if bool(args.name) == bool(args.endpoint):
        parser.error("give either --name (with --namespace) or --endpoint")
    try:
        profile = parse_profile(args.profile)
        config = LoadConfig(
            profile=profile,
            duration_s=args.duration,
            max_requests=args.max_requests,
            model=args.model,
            window_s=args.window,
            request_timeout_s=args.timeout,
            probe_ready=not args.no_probe,
            wait_for_pods_s=args.wait_for_pods,
            seed=args.seed,
        )
    except (ProfileError, ValueError) as error:
        parser.error(str(error))
    source: EndpointSource
    if args.endpoint:
        source = StaticEndpoints(tuple(args.endpoint))
    else:
        source = KubernetesEndpoints(args.kubeconfig, args.namespace, args.name)
    print(f"offering {profile.description} for {args.duration:g}s (at most {args.max_requests})")
    result = asyncio.run(run_load(config, source))
    print(summary_text(result))
    if args.json is not None:
        document = {
            "profile": result.profile,
            "summary": asdict(result.summary),
            "windows": [asdict(window) for window in result.windows],
        }
        args.json.write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
