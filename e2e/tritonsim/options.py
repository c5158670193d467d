"""Command-line options of the emulator, accepting a Triton container's own arguments.

The pod runner starts each emulator from the args of the pod's `triton` container (what the
operator rendered for `tritonserver`), and a person starts one by hand with friendlier
flags; both go through `config_from_args`. tritonserver flags that change nothing here
(`--log-verbose`, `--grpc-port`, `--backend-config`, ...) are accepted and reported as ignored,
so a real pod's argument list never makes the emulator fail.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from typing import TypeVar

from .emulator import EmulatorConfig, ServiceSettings

#: The model served when the arguments do not name any (Triton would load every model of
#: the repository, which the emulator cannot list).
FALLBACK_MODEL = "simple"

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(text: str) -> bool:
    """tritonserver's boolean spelling (`--strict-readiness=true`)."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """Emulator flags plus the tritonserver flags that matter to an emulator.

    Every default is None so that `config_from_args` can tell "not given" from a value and
    fall back to a base configuration (the pod runner's per-service settings).
    """
    parser = argparse.ArgumentParser(
        prog="python -m e2e.tritonsim",
        description="Triton Inference Server emulator (KServe v2 HTTP + Triton metrics).",
        allow_abbrev=False,
    )
    add = parser.add_argument
    add("--host", "--http-address", dest="host", help="loopback address to bind (127.0.0.0/8)")
    add("--http-port", type=int, help="KServe v2 HTTP port (default 8000)")
    add("--metrics-port", type=int, help="Prometheus metrics port (default 8002)")
    add("--grpc-port", type=int, help="accepted for compatibility; no gRPC endpoint is served")
    add(
        "--load-model",
        action="append",
        dest="models",
        metavar="NAME",
        help="model to serve (repeatable); every model has simple's add/sub signature",
    )
    add("--model-repository", "--model-store", dest="repository", action="append")
    add("--model-control-mode", choices=["none", "poll", "explicit"])
    add("--strict-readiness", type=parse_bool, metavar="BOOL")
    add("--load-delay", type=float, metavar="SECONDS", help="seconds until models are READY")
    add("--service-time-ms", type=float, help="mean execution time of one request")
    add("--service-time-cv", type=float, help="coefficient of variation (0 = deterministic)")
    add("--instances", type=int, help="model instances executing in parallel")
    add("--max-batch-size", type=int, help="dynamic batcher's largest batch (1 = off)")
    add("--max-queue-delay-ms", type=float, help="dynamic batcher's wait for a fuller batch")
    add("--batch-overhead", type=float, help="extra time per additional batched request")
    add("--max-queue-size", type=int, help="reject beyond this many queued requests (0 = no)")
    add("--error-rate", type=float, help="fraction of executions in which the model raises")
    add("--seed", type=int, help="seed of the service-time randomness")
    add("--log-level", default="INFO", help="emulator log level")
    return parser


def pick(value: T | None, fallback: T) -> T:
    """The given value, or the fallback when the flag was not given."""
    return fallback if value is None else value


def _models(args: argparse.Namespace, base: EmulatorConfig) -> tuple[str, ...]:
    named = [name for name in (args.models or []) if name != "*"]
    if named:
        return tuple(dict.fromkeys(named))
    if args.models:  # only "*": every model of the repository
        return (FALLBACK_MODEL,)
    if args.model_control_mode == "explicit":
        return ()  # explicit control without --load-model loads nothing, like tritonserver
    if args.model_control_mode is None and args.repository is None:
        return base.models
    return (FALLBACK_MODEL,)


def config_from_args(
    argv: Sequence[str], base: EmulatorConfig | None = None
) -> tuple[EmulatorConfig, list[str]]:
    """An emulator configuration from command-line or container arguments.

    Returns the configuration and the arguments that were ignored (unknown tritonserver
    flags, or a leading `tritonserver` when a container's command and args are joined).
    """
    base = base or EmulatorConfig()
    args, ignored = build_parser().parse_known_args(list(argv))

    service: ServiceSettings = replace(
        base.service,
        service_time_ms=pick(args.service_time_ms, base.service.service_time_ms),
        service_time_cv=pick(args.service_time_cv, base.service.service_time_cv),
        instances=pick(args.instances, base.service.instances),
        max_batch_size=pick(args.max_batch_size, base.service.max_batch_size),
        max_queue_delay_ms=pick(args.max_queue_delay_ms, base.service.max_queue_delay_ms),
        batch_overhead=pick(args.batch_overhead, base.service.batch_overhead),
        max_queue_size=pick(args.max_queue_size, base.service.max_queue_size),
        error_rate=pick(args.error_rate, base.service.error_rate),
    )
    service.replica_config()  # validate early, with the message of the queueing model
    config = replace(
        base,
        host=pick(args.host, base.host),
        http_port=pick(args.http_port, base.http_port),
        metrics_port=pick(args.metrics_port, base.metrics_port),
        models=_models(args, base),
        load_delay_s=pick(args.load_delay, base.load_delay_s),
        strict_readiness=pick(args.strict_readiness, base.strict_readiness),
        service=service,
        seed=pick(args.seed, base.seed),
        model_repository=",".join(args.repository) if args.repository else base.model_repository,
    )
    return config, ignored
