"""Command line: `tritonop run | render | crd | simulate | scrape`.

This is one of the three modules allowed to do I/O: it reads files and prints. Each subcommand
parses its arguments, calls the pure core, and turns the result into text and an exit status.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

if TYPE_CHECKING:
    from tritonop.api.models import Autoscaling
    from tritonop.autoscale.observe import PodScrape
    from tritonop.autoscale.types import Decision, Observation
    from tritonop.sim.engine import SimulationResult

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID_INPUT = 2


def _add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `tritonop simulate`: the spec, the load, the model of Triton, the policy."""
    from tritonop.sim.engine import BALANCERS
    from tritonop.sim.scenario import POLICIES, START_RULES
    from tritonop.sim.traces import PATTERNS

    parser.add_argument(
        "--spec", required=True, help="InferenceService YAML whose spec.autoscaling is simulated"
    )
    load = parser.add_mutually_exclusive_group(required=True)
    load.add_argument(
        "--trace",
        metavar="CSV",
        help="arrival trace: a CSV with a header whose first column is the arrival time, in "
        "seconds or as timestamps such as 2023-11-16 18:17:03.9799600 (other columns ignored)",
    )
    load.add_argument(
        "--pattern",
        choices=PATTERNS,
        help=f"built-in one-hour load: {', '.join(PATTERNS)} (Poisson arrivals)",
    )
    parser.add_argument(
        "--rate-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply the built-in pattern's rate by F (default 1)",
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="simulate only the first S seconds of the load"
    )
    parser.add_argument(
        "--service-time-ms",
        type=float,
        default=50.0,
        metavar="MS",
        help="mean execution time of one request on one model instance (default 50)",
    )
    parser.add_argument(
        "--service-time-cv",
        type=float,
        default=0.0,
        metavar="CV",
        help="coefficient of variation of the service time (default 0: constant)",
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        metavar="N",
        help="model instances per replica, executing in parallel (default 1)",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=1,
        metavar="N",
        help="dynamic batching: largest batch (default 1: no batching)",
    )
    parser.add_argument(
        "--cold-start-s",
        type=float,
        default=20.0,
        metavar="S",
        help="seconds from a new replica's creation to serving (default 20)",
    )
    parser.add_argument(
        "--slo-ms",
        type=float,
        default=None,
        metavar="MS",
        help=(
            "latency objective a request meets when served within it (default: the spec's "
            "autoscaling.objective.latencyMs, else 500)"
        ),
    )
    parser.add_argument(
        "--policy",
        default="operator",
        help=f"autoscaler: {', '.join(POLICIES)} (default operator)",
    )
    parser.add_argument(
        "--balancer",
        choices=BALANCERS,
        default="least-request",
        help="how requests reach replicas (default least-request, as an L7 proxy does)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=5.0,
        metavar="S",
        help="decision interval of every policy: the operator's TRITONOP_AUTOSCALE_INTERVAL_SECONDS,"
        " the HPA's sync period, the KPA's tick (default 5)",
    )
    parser.add_argument(
        "--metric-delay-s",
        type=float,
        default=0.0,
        metavar="S",
        help="age of the pods and metrics every policy sees when it decides (default 0)",
    )
    parser.add_argument(
        "--start",
        choices=START_RULES,
        default="warm",
        help="warm: autoscaled policies start with the replicas the first minute needs, static:N "
        "with N; cold: every policy starts at minReplicas and requests arriving before one "
        "interval plus one cold start are not scored (default warm)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of arrivals and service times")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", metavar="OUT.png", help="write load, replicas and latency")


def _simulate(args: argparse.Namespace) -> int:
    """Rehearse an autoscaling policy: read the spec and the load, simulate, report."""
    import json

    from tritonop import KIND
    from tritonop.api.validation import SpecError, parse_object
    from tritonop.sim.engine import ServiceConfig
    from tritonop.sim.plot import PlotUnavailable, figure
    from tritonop.sim.replica import ReplicaConfig
    from tritonop.sim.scenario import DEFAULT_AUTOSCALING, Scenario, run
    from tritonop.sim.traces import TraceError

    try:
        documents = [d for d in _read_documents(args.spec) if d.get("kind") == KIND]
        if not documents:
            raise ValueError(f"{args.spec}: no {KIND} in the file")
        service = parse_object(documents[0])
        autoscaling = service.spec.autoscaling
        if autoscaling is None or autoscaling.mode == "None":
            autoscaling = DEFAULT_AUTOSCALING
            print(
                f"{args.spec}: no autoscaling in the spec; simulating minReplicas 1, maxReplicas "
                f"{autoscaling.max_replicas}, targets queueDepth {autoscaling.targets.queue_depth:g}"
                f" and queueTimeMs {autoscaling.targets.queue_time_ms:g}",
                file=sys.stderr,
            )
        if args.slo_ms is None:
            objective = autoscaling.objective
            args.slo_ms = float(objective.latency_ms) if objective is not None else 500.0
        replica = ReplicaConfig(
            instances=args.instances,
            service_time_ms=args.service_time_ms,
            service_time_cv=args.service_time_cv,
            max_batch_size=args.max_batch_size,
        )
        arrivals, duration, load_name = _simulation_load(args)
        config = ServiceConfig(
            replica=replica,
            cold_start_s=args.cold_start_s,
            slo_ms=args.slo_ms,
            balancer=args.balancer,
            seed=args.seed,
            metric_delay_s=args.metric_delay_s,
        )
        scenario = Scenario(autoscaling, config, arrivals, duration, args.interval, args.start)
        result = run(args.policy, scenario)
    except (OSError, ValueError, SpecError, TraceError, yaml.YAMLError) as error:
        print(f"tritonop simulate: {error}", file=sys.stderr)
        return EXIT_INVALID_INPUT

    if args.json:
        print(json.dumps(result.summary()))
    else:
        print(_simulation_text(args, result, load_name))
    if args.plot:
        try:
            figure(result, f"{result.controller} on {load_name}").savefig(args.plot, dpi=100)
        except PlotUnavailable as error:
            print(f"tritonop simulate: {error}", file=sys.stderr)
            return EXIT_FAILURE
        except OSError as error:
            print(f"tritonop simulate: cannot write {args.plot}: {error}", file=sys.stderr)
            return EXIT_FAILURE
    return EXIT_OK


def _simulation_load(args: argparse.Namespace) -> tuple[list[float], float, str]:
    """Arrivals, duration and a name for `--trace` or `--pattern` (cut to `--duration`)."""
    from tritonop.sim.scenario import cut, pattern_arrivals, trace_duration
    from tritonop.sim.traces import parse_trace_csv

    if args.trace and args.rate_scale != 1.0:
        raise ValueError("--rate-scale applies to --pattern only (a trace is replayed as is)")
    if args.trace:
        arrivals = parse_trace_csv(Path(args.trace).read_text())
        duration = trace_duration(arrivals, args.interval)
        load_name = Path(args.trace).name
    else:
        arrivals, duration = pattern_arrivals(args.pattern, args.seed, args.rate_scale)
        load_name = f"pattern {args.pattern}"
    if args.duration is not None:
        if args.duration <= 0:
            raise ValueError("--duration must be positive")
        duration = min(duration, args.duration)
        arrivals = cut(arrivals, duration)
    return arrivals, duration, load_name


def _simulation_text(args: argparse.Namespace, result: SimulationResult, load_name: str) -> str:
    """The human-readable summary of one simulated run."""
    summary = result.summary()
    latency = summary["latency_ms"]
    assert isinstance(latency, dict)
    scored = ""
    if result.scored_from > 0:
        scored = (
            f" arriving after {result.scored_from:g} s "
            f"({result.slo_attainment_all * 100:.2f}% of all)"
        )
    return (
        f"policy {result.controller} on {load_name}: {result.requests} requests over "
        f"{result.duration:g} s; replicas of {args.instances} x {args.service_time_ms:g} ms, "
        f"cold start {args.cold_start_s:g} s, {args.balancer} balancing\n"
        f"  SLO {args.slo_ms:g} ms met by {result.slo_attainment * 100:.2f}% of requests"
        f"{scored}\n"
        f"  latency p50 {latency['p50']} ms, p95 {latency['p95']} ms, p99 {latency['p99']} ms\n"
        f"  {result.replica_seconds:.0f} replica-seconds (mean "
        f"{summary['mean_replicas']} replicas, max {result.max_replicas}), "
        f"{result.scale_events} scale events"
    )


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
    from tritonop.render.lockdown import admin_secret_name
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
            f"# In a cluster the operator also creates the Secret {admin_secret_name(service.name)}"
            " with a random Triton admin key (never rendered here).\n"
        )
        print(
            f"{service.name}: placement {placement.mode} ({placement.reason}): {placement.message}",
            file=sys.stderr,
        )
        sys.stdout.write("---\n")
        _dump_yaml(children, sys.stdout)
    return EXIT_OK


def _metrics_app(token_file: str) -> Any:
    """The WSGI app of /metrics: prometheus-client's, behind a bearer token when configured.

    The token file is read on every request, so a rotated Secret (the kubelet updates the
    mounted file) takes effect without a restart; a missing or empty file refuses everyone.
    """
    import hmac

    from prometheus_client import make_wsgi_app

    metrics = make_wsgi_app()
    if not token_file:
        return metrics

    def authenticated(environ: dict[str, Any], start_response: Any) -> Any:
        try:
            token = Path(token_file).read_text().strip()
        except OSError:
            token = ""
        presented = str(environ.get("HTTP_AUTHORIZATION", ""))
        if token and hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
            return metrics(environ, start_response)
        start_response(
            "401 Unauthorized",
            [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Bearer realm="tritonop"')],
        )
        return [b"a bearer token is required (TRITONOP_METRICS_TOKEN_FILE)\n"]

    return authenticated


def serve_metrics(address: str, port: int, token_file: str) -> Any:
    """Serve /metrics from a daemon thread; returns the server (its `shutdown()` stops it)."""
    import threading
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes are not worth a log line each."""

    server = make_server(
        address, port, _metrics_app(token_file), server_class=Server, handler_class=QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def _run(args: argparse.Namespace) -> int:
    """Start the operator (blocks until interrupted)."""
    import kopf

    from tritonop.config import Settings
    from tritonop.handlers import Memo  # importing registers the handlers with kopf
    from tritonop.k8s import Kube, TokenBucket
    from tritonop.runtime import Runtime, SystemClock

    overrides: dict[str, Any] = {}
    if args.namespace:
        overrides["namespaces"] = ",".join(args.namespace)
    settings = Settings(**overrides)
    kopf.configure(
        verbose=settings.log_level == "DEBUG",
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger().setLevel(settings.log_level)
    if settings.log_level != "DEBUG":
        # kopf reports every handled watch event ("Handler ... succeeded") and aiohttp every
        # liveness probe at INFO: at scale that drowns the operator's own decisions. Their
        # warnings and errors (failed handlers, retries) still show.
        for chatty in ("kopf.objects", "aiohttp.access"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
    serve_metrics(settings.listen_address, settings.metrics_port, settings.metrics_token_file)
    namespaces = settings.namespace_list
    limit = TokenBucket(settings.kube_api_qps, settings.kube_api_burst)
    runtime = Runtime(settings=settings, kube=Kube(limit=limit), clock=SystemClock())
    kopf.run(
        memo=Memo.build(runtime),
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://{settings.listen_address}:{settings.health_port}/healthz",
        standalone=not settings.peering,
        peering_name=settings.peering or None,
    )
    return EXIT_OK


# ------------------------------------------------------------------------------ scrape


def _add_scrape_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `tritonop scrape`: the pages, the pause between reads, the spec to judge by."""
    parser.add_argument(
        "urls",
        nargs="+",
        metavar="URL",
        help="Triton metrics URLs, e.g. http://10.1.2.3:8002/metrics",
    )
    parser.add_argument(
        "--spec",
        metavar="FILE",
        help="InferenceService YAML: restrict to its autoscaling.models and print the policy's "
        "decision",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        metavar="N",
        help="current replicas for the decision (needs --spec; default: one per URL)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds between the two reads, over which rates are measured (default 2)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="deadline of each read of all URLs (default TRITONOP_SCRAPE_TIMEOUT_SECONDS, 2)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _scrape_arguments_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments of `tritonop scrape`, if anything."""
    from urllib.parse import urlsplit

    for url in args.urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"{url!r} is not an http:// or https:// URL"
    if len(set(args.urls)) != len(args.urls):
        return "a URL is given twice"
    if not 0 < args.interval <= 600:
        return f"--interval must be more than 0 and at most 600 seconds, got {args.interval:g}"
    if args.timeout is not None and not 0 < args.timeout <= 30:
        return f"--timeout must be more than 0 and at most 30 seconds, got {args.timeout:g}"
    if args.replicas is not None and (args.spec is None or args.replicas < 0):
        return "--replicas needs --spec and must be >= 0"
    return None


def _scrape_spec(path: str) -> Autoscaling:
    """spec.autoscaling of the first InferenceService in `path` (ValueError when there is none)."""
    from tritonop import KIND
    from tritonop.api.validation import parse_object

    documents = [d for d in _read_documents(path) if d.get("kind") == KIND]
    if not documents:
        raise ValueError(f"{path}: no {KIND} in the file")
    autoscaling = parse_object(documents[0]).spec.autoscaling
    if autoscaling is None:
        raise ValueError(f"{path}: the InferenceService has no spec.autoscaling to decide with")
    return autoscaling


async def _read_twice(
    args: argparse.Namespace, models: Sequence[str]
) -> tuple[dict[str, PodScrape], Observation]:
    """Read every URL twice, `--interval` apart, with the operator's reader; observe the pair.

    Returns the first read's scrapes and the Observation (per-URL problems are its entries).
    """
    import asyncio
    import time

    from tritonop.autoscale.metrics import reader_for
    from tritonop.autoscale.observe import PodEndpoint, observe, remember
    from tritonop.config import Settings

    overrides = {} if args.timeout is None else {"scrape_timeout_seconds": args.timeout}
    reader = reader_for(Settings(**overrides), time.monotonic)
    pages = [(PodEndpoint(url, url), url) for url in args.urls]
    try:
        first = await reader.scrape(pages)
        await asyncio.sleep(args.interval)
        second = await reader.scrape(pages)
    finally:
        await reader.close()
    observation = observe(
        remember({}, first),
        second,
        ready_replicas=len(args.urls),
        starting_replicas=0,
        models=models,
        now=time.monotonic(),
    )
    return first, observation


def scrape_report(
    urls: Sequence[str],
    first: Mapping[str, PodScrape],
    observation: Observation,
    decision: Decision | None,
) -> dict[str, Any]:
    """The JSON shape of `tritonop scrape`: pods, the observation and (with --spec) the decision.

    A URL's problems are its entries in the observation's problems (the second read and the
    interval), preceded by its first read's failure when that differed (its rates are then
    unknown: they need two reads).
    """
    pods = []
    for url in urls:
        problems = [
            problem.removeprefix(f"{url}: ")
            for problem in observation.problems
            if problem.startswith(f"{url}: ")
        ]
        earlier = first[url].error
        if earlier is not None and earlier not in problems:
            problems.insert(0, f"first read: {earlier}")
        pods.append({"url": url, "problems": problems})
    report: dict[str, Any] = {
        "pods": pods,
        "observation": {
            "queue_depth": observation.queue_depth,
            "queue_time_ms": observation.queue_time_ms,
            "request_rate": observation.request_rate,
            "problems": list(observation.problems),
        },
    }
    if decision is not None:
        report["decision"] = {
            "desired_replicas": decision.desired_replicas,
            "reason": decision.reason,
            "conditions": [
                {
                    "type": flag.type,
                    "status": "True" if flag.status else "False",
                    "reason": flag.reason,
                    "message": flag.message,
                }
                for flag in decision.conditions
            ],
        }
    return report


def _format_scrape(report: dict[str, Any], replicas: int | None) -> str:
    """`tritonop scrape`'s report as text: per URL, the observation, the decision."""

    def shown(value: float | None, unit: str) -> str:
        return "unknown" if value is None else f"{value:.6g}{unit}"

    lines = []
    for pod in report["pods"]:
        lines.append(f"{pod['url']}: " + ("ok" if not pod["problems"] else "problems"))
        lines += [f"  - {problem}" for problem in pod["problems"]]
    seen = report["observation"]
    lines.append(
        f"observation: queue depth {shown(seen['queue_depth'], ' per pod')}, queue time "
        f"{shown(seen['queue_time_ms'], ' ms')}, request rate {shown(seen['request_rate'], '/s')}"
    )
    decision = report.get("decision")
    if decision is not None:
        lines.append(f"decision for {replicas} replicas: {decision['desired_replicas']}")
        lines.append(f"  {decision['reason']}")
        for flag in decision["conditions"]:
            lines.append(f"  {flag['type']}={flag['status']} {flag['reason']}: {flag['message']}")
    return "\n".join(lines)


def _scrape(args: argparse.Namespace) -> int:
    """What the operator sees from these pods: read each twice, print problems and signals."""
    import asyncio
    import json

    from pydantic import ValidationError

    from tritonop.api.validation import SpecError
    from tritonop.autoscale.policy import PolicyState, decide

    problem = _scrape_arguments_problem(args)
    if problem is not None:
        print(f"tritonop scrape: {problem}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    try:
        autoscaling = _scrape_spec(args.spec) if args.spec else None
        first, observation = asyncio.run(
            _read_twice(args, autoscaling.models if autoscaling is not None else ())
        )
    except (OSError, ValueError, SpecError, yaml.YAMLError, ValidationError) as error:
        print(f"tritonop scrape: {error}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    decision = None
    replicas = len(args.urls) if args.replicas is None else args.replicas
    if autoscaling is not None:
        # One interval without history: no stabilization window or restart hold holds it.
        decision, _ = decide(
            autoscaling, replicas, observation, PolicyState(), observation.time, args.interval
        )
    report = scrape_report(args.urls, first, observation, decision)
    print(json.dumps(report) if args.json else _format_scrape(report, replicas))
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
    scrape = commands.add_parser(
        "scrape",
        help="what the operator sees from these Triton pods: read each twice with its reader",
    )
    _add_scrape_arguments(scrape)
    scrape.set_defaults(handler=_scrape)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tritonop` console script."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
